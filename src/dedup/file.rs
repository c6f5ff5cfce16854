//! The embedded store: one redb file on the local disk, for the CLI when no Redis is configured.
//!
//! Same protocol and semantics as Redis (see the module above): every key holds
//! `(value, expires_at_ms)` (0: never expires) and an expired key reads as absent. Each call is one
//! write transaction, committed durably before it returns. Expired keys are swept when the file is
//! opened, so the file never outgrows Kong's own retention by more than one run.
//!
//! redb locks the file for one process: a second process opening it gets a clear error instead of
//! sharing (or corrupting) it. Runs that must share claims, such as the Lambda and a backfill, use Redis.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Claim, Commit, DedupStore, Settlement, StoreError, Swap, commit_decision};

/// key → (value, expires_at in epoch milliseconds, 0 for never).
const KEYS: TableDefinition<&str, (&str, u64)> = TableDefinition::new("keys");

pub struct FileStore {
    db: Arc<Database>,
    path: PathBuf,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn expiry(now: u64, ttl: Duration) -> u64 {
    now.saturating_add(ttl.as_millis().max(1) as u64)
}

fn live(expires_at: u64, now: u64) -> bool {
    expires_at == 0 || expires_at > now
}

impl FileStore {
    /// Opens (or creates, with its parent directories) the store file, readable by its owner only,
    /// and sweeps the keys that expired since the last run.
    pub async fn open(path: impl Into<PathBuf>) -> Result<FileStore, StoreError> {
        let path = path.into();
        let shown = path.clone();
        tokio::task::spawn_blocking(move || Self::open_blocking(path))
            .await
            .map_err(|e| StoreError {
                location: shown.display().to_string(),
                detail: format!("the open task failed: {e}"),
            })?
    }

    fn open_blocking(path: PathBuf) -> Result<FileStore, StoreError> {
        let err = |detail: String| StoreError {
            location: path.display().to_string(),
            detail,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dirs(dir).map_err(|e| err(format!("cannot create the directory {}: {e}", dir.display())))?;
        }
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(|e| err(format!("cannot open: {e}")))?;
        let db = Database::builder().create_file(file).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => err(format!(
                "another kong-audit-shipper holds {}; wait for it or use Redis to share state between runs",
                path.display()
            )),
            other => err(format!(
                "cannot use it as a kong-audit-shipper state file (redb): {other}; move it away or set STATE_FILE to another path"
            )),
        })?;
        let store = FileStore { db: Arc::new(db), path };
        let swept = store.sweep_blocking()?;
        if swept > 0 {
            tracing::debug!(path = %store.path.display(), swept, "expired keys removed from the embedded store");
        }
        Ok(store)
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes every expired key; returns how many. Also creates the table on first use.
    fn sweep_blocking(&self) -> Result<usize, StoreError> {
        let now = now_ms();
        let mut swept = 0;
        self.write(|table| {
            table.retain(|_, (_, expires_at)| {
                let keep = live(expires_at, now);
                swept += usize::from(!keep);
                keep
            })?;
            Ok(())
        })?;
        Ok(swept)
    }

    /// Live keys and their values (tests and operators; the file is small).
    pub async fn entries(&self) -> Result<Vec<(String, String)>, StoreError> {
        let db = self.db.clone();
        self.blocking(move || {
            let now = now_ms();
            let txn = db.begin_read().map_err(redb::Error::from)?;
            let table = match txn.open_table(KEYS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                let (value, expires_at) = v.value();
                if live(expires_at, now) {
                    out.push((k.value().to_string(), value.to_string()));
                }
            }
            Ok(out)
        })
        .await
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            location: self.path.display().to_string(),
            detail: e.to_string(),
        }
    }

    /// One durable write transaction on the keys table.
    fn write<R>(&self, f: impl FnOnce(&mut redb::Table<&str, (&str, u64)>) -> Result<R, redb::Error>) -> Result<R, StoreError> {
        write_txn(&self.db, f).map_err(|e| self.error(e))
    }

    /// Runs blocking redb work off the async threads.
    async fn blocking<R: Send + 'static>(&self, f: impl FnOnce() -> Result<R, redb::Error> + Send + 'static) -> Result<R, StoreError> {
        match tokio::task::spawn_blocking(f).await {
            Ok(result) => result.map_err(|e| self.error(e)),
            Err(e) => Err(self.error(format!("the store task failed: {e}"))),
        }
    }
}

fn write_txn<R>(db: &Database, f: impl FnOnce(&mut redb::Table<&str, (&str, u64)>) -> Result<R, redb::Error>) -> Result<R, redb::Error> {
    let txn = db.begin_write()?;
    let result = {
        let mut table = txn.open_table(KEYS)?;
        f(&mut table)?
    };
    txn.commit()?;
    Ok(result)
}

/// The live value of a key in an open table.
fn get_live(table: &impl ReadableTable<&'static str, (&'static str, u64)>, key: &str, now: u64) -> Result<Option<String>, redb::Error> {
    Ok(table.get(key)?.and_then(|guard| {
        let (value, expires_at) = guard.value();
        live(expires_at, now).then(|| value.to_string())
    }))
}

/// Creates missing directories readable by their owner only (existing ones are left as they are).
fn create_private_dirs(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[async_trait]
impl DedupStore for FileStore {
    /// A claim left by another run (a backfill stopped with Ctrl-C, say) reads as held until its
    /// lease lapses, never as done: that entry may not have been shipped.
    async fn claim(&self, keys: &[String], token: &str, lease: Duration) -> Result<Vec<Claim>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (db, keys, token) = (self.db.clone(), keys.to_vec(), token.to_string());
        self.blocking(move || {
            write_txn(&db, |table| {
                let now = now_ms();
                let until = expiry(now, lease);
                let mut claims = Vec::with_capacity(keys.len());
                for key in &keys {
                    let claim = Claim::from_previous(get_live(table, key, now)?.as_deref(), &token);
                    if claim == Claim::Ours {
                        table.insert(key.as_str(), (token.as_str(), until))?;
                    }
                    claims.push(claim);
                }
                Ok(claims)
            })
        })
        .await
    }

    async fn settle(&self, s: &Settlement, token: &str) -> Result<Vec<Commit>, StoreError> {
        if s.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.db.clone();
        let marks: Vec<(String, String, u64)> = s.marks.iter().map(|(k, m, ttl)| (k.clone(), m.value(), *ttl)).collect();
        let (records, releases, token) = (s.records.clone(), s.releases.clone(), token.to_string());
        self.blocking(move || {
            write_txn(&db, |table| {
                let now = now_ms();
                let mut commits = Vec::with_capacity(marks.len());
                for (key, value, ttl) in &marks {
                    let (commit, write) = commit_decision(get_live(table, key, now)?.as_deref(), &token);
                    if write {
                        table.insert(key.as_str(), (value.as_str(), expiry(now, Duration::from_secs(*ttl))))?;
                    }
                    commits.push(commit);
                }
                for (key, value, ttl) in &records {
                    table.insert(key.as_str(), (value.as_str(), expiry(now, Duration::from_secs(*ttl))))?;
                }
                for key in &releases {
                    if get_live(table, key, now)?.as_deref() == Some(token.as_str()) {
                        table.remove(key.as_str())?;
                    }
                }
                Ok(commits)
            })
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let (db, key) = (self.db.clone(), key.to_string());
        self.blocking(move || {
            let txn = db.begin_read().map_err(redb::Error::from)?;
            match txn.open_table(KEYS) {
                Ok(table) => get_live(&table, &key, now_ms()),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn put(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), StoreError> {
        let (db, key, value) = (self.db.clone(), key.to_string(), value.to_string());
        self.blocking(move || {
            write_txn(&db, |table| {
                let expires_at = ttl.map_or(0, |t| expiry(now_ms(), t));
                table.insert(key.as_str(), (value.as_str(), expires_at))?;
                Ok(())
            })
        })
        .await
    }

    async fn swap(&self, swaps: &[Swap]) -> Result<Vec<bool>, StoreError> {
        if swaps.is_empty() {
            return Ok(Vec::new());
        }
        let (db, swaps) = (self.db.clone(), swaps.to_vec());
        self.blocking(move || {
            write_txn(&db, |table| {
                let now = now_ms();
                let mut applied = Vec::with_capacity(swaps.len());
                for swap in &swaps {
                    let applies = swap.applies_to(get_live(table, &swap.key, now)?.as_deref());
                    if applies {
                        match &swap.new {
                            Some((value, ttl)) => {
                                let expires_at = ttl.map_or(0, |t| expiry(now, Duration::from_secs(t)));
                                table.insert(swap.key.as_str(), (value.as_str(), expires_at))?;
                            }
                            None => {
                                table.remove(swap.key.as_str())?;
                            }
                        }
                    }
                    applied.push(applies);
                }
                Ok(applied)
            })
        })
        .await
    }

    fn describe(&self) -> String {
        format!("embedded store at {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::Mark;

    #[tokio::test]
    async fn file_store_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("state.redb")).await.unwrap();
        crate::dedup::contract::run_all(&store).await;
    }

    #[tokio::test]
    async fn the_file_and_its_directories_are_created_for_the_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/state.redb");
        let store = FileStore::open(&path).await.unwrap();
        assert_eq!(store.path(), path);
        assert_eq!(store.describe(), format!("embedded store at {}", path.display()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600, "the state file is owner-only");
            assert_eq!(mode(&dir.path().join("a/b")), 0o700);
            assert_eq!(mode(&dir.path().join("a")), 0o700);
        }
    }

    #[tokio::test]
    async fn a_second_opener_gets_a_clear_error_and_state_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let first = FileStore::open(&path).await.unwrap();
        let keys = vec!["k:shipped".to_string(), "k:claimed".to_string(), "k:short".to_string()];
        assert_eq!(
            first.claim(&keys, "inflight:r1", Duration::from_secs(600)).await.unwrap(),
            vec![Claim::Ours; 3]
        );
        let s = Settlement {
            marks: vec![
                ("k:shipped".into(), Mark::Shipped { at: 1, run: "r".into() }, 3600),
                ("k:short".into(), Mark::Shipped { at: 1, run: "r".into() }, 1),
            ],
            ..Default::default()
        };
        first.settle(&s, "inflight:r1").await.unwrap();

        let err = FileStore::open(&path).await.err().expect("the file is locked").to_string();
        assert!(
            err.contains(&format!("another kong-audit-shipper holds {}", path.display()))
                && err.contains("wait for it or use Redis to share state between runs"),
            "{err}"
        );

        drop(first);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let again = FileStore::open(&path).await.unwrap();
        assert_eq!(again.get("k:shipped").await.unwrap().as_deref(), Some("shipped@1:r"));
        assert_eq!(again.get("k:claimed").await.unwrap().as_deref(), Some("inflight:r1"));
        assert_eq!(again.get("k:short").await.unwrap(), None, "expired marks read as absent");
        let mut live = again.entries().await.unwrap();
        live.sort();
        assert_eq!(
            live,
            vec![
                ("k:claimed".to_string(), "inflight:r1".to_string()),
                ("k:shipped".to_string(), "shipped@1:r".to_string())
            ]
        );
        // The sweep on open removed the expired key from the file itself.
        let txn = again.db.begin_read().unwrap();
        let table = txn.open_table(KEYS).unwrap();
        assert!(table.get("k:short").unwrap().is_none());
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_store_is_refused_with_the_setting_to_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
        let err = FileStore::open(&path).await.err().expect("refused").to_string();
        assert!(err.contains("STATE_FILE"), "{err}");
        assert!(
            std::fs::read_to_string(&path).unwrap().starts_with("these are my notes"),
            "left untouched"
        );
    }

    #[tokio::test]
    async fn concurrent_claims_from_many_tasks_are_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileStore::open(dir.path().join("s.redb")).await.unwrap());
        let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
        let mut tasks = Vec::new();
        for run in 0..8 {
            let (store, keys) = (store.clone(), keys.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .claim(&keys, &format!("inflight:{run}"), Duration::from_secs(60))
                    .await
                    .unwrap()
            }));
        }
        let mut wins = vec![0; keys.len()];
        for t in tasks {
            for (i, claim) in t.await.unwrap().into_iter().enumerate() {
                wins[i] += usize::from(claim == Claim::Ours);
            }
        }
        assert!(wins.iter().all(|w| *w == 1), "every key claimed exactly once: {wins:?}");
    }
}
