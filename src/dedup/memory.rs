//! An in-process store with the same semantics as Redis, for tests and dry runs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Claim, Commit, DedupStore, Settlement, StoreError, Swap, commit_decision};

#[derive(Default)]
pub struct MemoryStore {
    keys: Mutex<HashMap<String, (String, Option<Instant>)>>,
    /// The store's clock less this machine's, in milliseconds (tests of a machine whose clock is off).
    clock_offset_ms: AtomicI64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Time left on a key, if it has an expiry (for tests of TTL mirroring).
    pub fn ttl(&self, key: &str) -> Option<Duration> {
        let keys = self.keys.lock().unwrap();
        keys.get(key)
            .and_then(|(_, exp)| exp.map(|e| e.saturating_duration_since(Instant::now())))
    }

    /// Sets the store's clock this many seconds ahead of this machine's (behind, when negative), as a
    /// machine whose clock is off sees it.
    pub fn set_clock_offset(&self, seconds: i64) {
        self.clock_offset_ms.store(seconds * 1_000, Ordering::Relaxed);
    }

    /// Forgets everything, as a store that comes back empty does.
    pub fn flush(&self) {
        self.keys.lock().unwrap().clear();
    }

    /// Every live key and its value (tests).
    pub fn entries(&self) -> Vec<(String, String)> {
        let mut keys = self.keys.lock().unwrap();
        let now = Instant::now();
        keys.retain(|_, (_, exp)| exp.is_none_or(|e| e > now));
        keys.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect()
    }

    /// Ends every claim now, as a lease running out does (tests of runs that died holding claims).
    pub fn lapse_claims(&self) -> usize {
        let mut keys = self.keys.lock().unwrap();
        let before = keys.len();
        keys.retain(|_, (value, _)| !value.starts_with(super::CLAIM_PREFIX));
        before - keys.len()
    }

    fn live<'a>(map: &'a mut HashMap<String, (String, Option<Instant>)>, key: &str) -> Option<&'a String> {
        if map.get(key).is_some_and(|(_, exp)| exp.is_some_and(|e| e <= Instant::now())) {
            map.remove(key);
        }
        map.get(key).map(|(v, _)| v)
    }
}

#[async_trait]
impl DedupStore for MemoryStore {
    async fn claim(&self, keys: &[String], token: &str, lease: Duration) -> Result<Vec<Claim>, StoreError> {
        let mut map = self.keys.lock().unwrap();
        Ok(keys
            .iter()
            .map(|k| {
                let claim = Claim::from_previous(Self::live(&mut map, k).map(String::as_str), token);
                if claim == Claim::Ours {
                    map.insert(k.clone(), (token.to_string(), Some(Instant::now() + lease)));
                }
                claim
            })
            .collect())
    }

    async fn settle(&self, s: &Settlement, token: &str) -> Result<Vec<Commit>, StoreError> {
        let mut map = self.keys.lock().unwrap();
        let mut commits = Vec::with_capacity(s.marks.len());
        for (key, mark, ttl) in &s.marks {
            let (commit, write) = commit_decision(Self::live(&mut map, key).map(String::as_str), token);
            if write {
                map.insert(key.clone(), (mark.value(), Some(Instant::now() + Duration::from_secs(*ttl))));
            }
            commits.push(commit);
        }
        for (key, value, ttl) in &s.records {
            map.insert(key.clone(), (value.clone(), Some(Instant::now() + Duration::from_secs(*ttl))));
        }
        for key in &s.releases {
            if Self::live(&mut map, key).is_some_and(|v| v == token) {
                map.remove(key);
            }
        }
        Ok(commits)
    }

    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(Self::live(&mut self.keys.lock().unwrap(), key).cloned())
    }

    async fn put(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), StoreError> {
        self.keys
            .lock()
            .unwrap()
            .insert(key.to_string(), (value.to_string(), ttl.map(|t| Instant::now() + t)));
        Ok(())
    }

    async fn swap(&self, swaps: &[Swap]) -> Result<Vec<bool>, StoreError> {
        let mut map = self.keys.lock().unwrap();
        Ok(swaps
            .iter()
            .map(|swap| {
                let applies = swap.applies_to(Self::live(&mut map, &swap.key).map(String::as_str));
                if applies {
                    match &swap.new {
                        Some((value, ttl)) => {
                            let expires = ttl.map(|t| Instant::now() + Duration::from_secs(t));
                            map.insert(swap.key.clone(), (value.clone(), expires));
                        }
                        None => {
                            map.remove(&swap.key);
                        }
                    }
                }
                applies
            })
            .collect())
    }

    fn describe(&self) -> String {
        "in-memory store".into()
    }

    async fn clock_ms(&self) -> Result<i64, StoreError> {
        Ok(chrono::Utc::now().timestamp_millis() + self.clock_offset_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_keeps_the_contract() {
        super::super::contract::run_all(&super::MemoryStore::new()).await;
    }
}
