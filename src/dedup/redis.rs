//! Redis (or Valkey, or ElastiCache): one pipelined round trip claims a page, one settles a batch.
//!
//! A claim is one atomic command per key, `SET key token NX PX lease GET` (Redis and Valkey 7 and
//! later): it takes the key if it is free and otherwise says what holds it, with no gap in which a
//! release could make a held entry read as done. On older servers, which refuse that combination,
//! a script does the same. A mark is written by a script only while our claim (or nothing) holds
//! the key, and says so when another run's claim or mark is there instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, RedisError};

use super::{Claim, Commit, DedupStore, Settlement, StoreError, Swap};
use crate::config::RedisConfig;

/// Deletes a key only while it still holds our claim, so a release never removes a shipped mark
/// or another run's claim.
const RELEASE_IF_OURS: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// `SET NX PX GET` for servers older than 7: returns the previous value, or nil when it took the key.
const CLAIM_SCRIPT: &str =
    "local v = redis.call('GET', KEYS[1]) if v then return v end redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return false";

/// Writes the mark (ARGV[2], EX ARGV[3]) where our claim (ARGV[1]) or nothing holds the key; returns
/// 1 (ours), 2 (nothing held it) or what holds it instead (left alone). See `commit_decision`.
const COMMIT_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) \
if v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end \
if not v then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 2 end \
return v";

/// A conditional write (see `Swap`): ARGV[1] is `1` when the key must hold ARGV[2], `0` when it must
/// be absent; ARGV[3] is `set` (ARGV[4], EX ARGV[5] unless `0`) or `del`. Returns 1 when applied.
const SWAP_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) \
if ARGV[1] == '1' then if v ~= ARGV[2] then return 0 end elseif v then return 0 end \
if ARGV[3] == 'del' then redis.call('DEL', KEYS[1]) \
elseif ARGV[5] == '0' then redis.call('SET', KEYS[1], ARGV[4]) \
else redis.call('SET', KEYS[1], ARGV[4], 'EX', ARGV[5]) end \
return 1";

pub struct RedisStore {
    conn: ConnectionManager,
    location: String,
    /// The server refused `SET … NX … GET` (older than 7): claims go through `CLAIM_SCRIPT`.
    script_claims: AtomicBool,
}

impl RedisStore {
    pub async fn connect(config: &RedisConfig) -> Result<RedisStore, StoreError> {
        let location = config.display_url();
        let err = |detail: String| StoreError {
            location: location.clone(),
            detail,
        };
        if config.tls_insecure {
            tracing::warn!("REDIS_TLS_INSECURE is set: Redis's TLS certificate is NOT verified");
        }
        let scheme = if config.tls { "rediss" } else { "redis" };
        let host = if config.host.contains(':') {
            format!("[{}]", config.host)
        } else {
            config.host.clone()
        };
        let fragment = if config.tls && config.tls_insecure { "#insecure" } else { "" };
        let info = format!("{scheme}://{host}:{}/{}{fragment}", config.port, config.db)
            .into_connection_info()
            .map_err(|e| err(format!("invalid address: {}", describe(&e))))?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &config.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &config.password {
            settings = settings.set_password(password.expose());
        }
        let info = info.set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|e| err(describe(&e)))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = tokio::time::timeout(Duration::from_secs(15), ConnectionManager::new_with_config(client, manager_config))
            .await
            .map_err(|_| err("timed out connecting".into()))?
            .map_err(|e| err(format!("cannot connect: {}", describe(&e))))?;
        let store = RedisStore {
            conn,
            location,
            script_claims: AtomicBool::new(false),
        };
        let mut probe = store.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut probe)
            .await
            .map_err(|e| store.error(e))?;
        Ok(store)
    }

    /// Carries over the marks of Kong's 2023 proof of concept, which stored each shipped request as a
    /// bare `request_id` key holding `1` that expires with the entry: each becomes
    /// `<prefix>request:<id> = shipped` with the same expiry, so the switch ships no request twice.
    /// Returns `(imported, already present)`. The old keys are left for the old shipper.
    pub async fn import_proof_of_concept_marks(&self, prefix: &str) -> Result<(u64, u64), StoreError> {
        let mut conn = self.conn.clone();
        let (mut cursor, mut imported, mut present) = (0u64, 0u64, 0u64);
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error(e))?;
            let candidates: Vec<String> = keys
                .into_iter()
                .filter(|k| looks_like_request_id(k) && !k.starts_with(prefix))
                .collect();
            if !candidates.is_empty() {
                let mut read = redis::pipe();
                for key in &candidates {
                    read.cmd("GET").arg(key).cmd("PTTL").arg(key);
                }
                let answers: Vec<redis::Value> = read.query_async(&mut conn).await.map_err(|e| self.error(e))?;
                let mut write = redis::pipe();
                let mut writes = 0;
                for (key, pair) in candidates.iter().zip(answers.chunks(2)) {
                    let value: Option<String> = redis::FromRedisValue::from_redis_value(pair[0].clone()).unwrap_or(None);
                    let pttl: i64 = redis::FromRedisValue::from_redis_value(pair[1].clone()).unwrap_or(-2);
                    if value.as_deref() == Some("1") && pttl > 0 {
                        write
                            .cmd("SET")
                            .arg(format!("{prefix}request:{key}"))
                            .arg("shipped")
                            .arg("PX")
                            .arg(pttl)
                            .arg("NX");
                        writes += 1;
                    }
                }
                if writes > 0 {
                    let set: Vec<redis::Value> = write.query_async(&mut conn).await.map_err(|e| self.error(e))?;
                    let written = set.iter().filter(|v| !matches!(v, redis::Value::Nil)).count() as u64;
                    imported += written;
                    present += set.len() as u64 - written;
                }
            }
            cursor = next;
            if cursor == 0 {
                return Ok((imported, present));
            }
        }
    }

    /// Claims through the script even where the server takes `SET … NX … GET` (tests of the path
    /// older servers take).
    pub fn use_script_claims(&self) {
        self.script_claims.store(true, Ordering::Relaxed);
    }

    /// The server's memory limit and what it does when the limit is reached, from `INFO memory`
    /// (ElastiCache refuses `CONFIG GET`, but answers `INFO`).
    pub async fn memory_policy(&self) -> Result<MemoryPolicy, StoreError> {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.error(e))?;
        MemoryPolicy::from_info(&info).ok_or_else(|| StoreError {
            location: self.location.clone(),
            detail: "INFO memory reports no maxmemory_policy".into(),
        })
    }

    async fn claim_with(&self, keys: &[String], token: &str, lease: Duration, script: bool) -> Result<Vec<Option<String>>, RedisError> {
        let lease_ms = lease.as_millis().max(1) as u64;
        let mut pipe = redis::pipe();
        for key in keys {
            if script {
                pipe.cmd("EVAL").arg(CLAIM_SCRIPT).arg(1).arg(key).arg(token).arg(lease_ms);
            } else {
                pipe.cmd("SET").arg(key).arg(token).arg("NX").arg("PX").arg(lease_ms).arg("GET");
            }
        }
        pipe.query_async(&mut self.conn.clone()).await
    }

    fn error(&self, e: RedisError) -> StoreError {
        StoreError {
            location: self.location.clone(),
            detail: describe(&e),
        }
    }
}

/// A Redis server's memory limit (`maxmemory`, 0: none) and eviction policy (`maxmemory-policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPolicy {
    pub max_bytes: u64,
    pub policy: String,
}

impl MemoryPolicy {
    fn from_info(info: &str) -> Option<MemoryPolicy> {
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':').map(str::trim))
        };
        Some(MemoryPolicy {
            max_bytes: field("maxmemory").and_then(|v| v.parse().ok()).unwrap_or(0),
            policy: field("maxmemory_policy")?.to_string(),
        })
    }

    /// Whether a full server may delete keys to make room: every policy but `noeviction` may, and
    /// every key this program writes has an expiry, so even the `volatile-*` policies take them. An
    /// evicted mark ships its entry again; an evicted claim lets a second run ship it at once.
    pub fn may_evict(&self) -> bool {
        self.policy != "noeviction"
    }
}

/// Kong's request ids: 32 letters and digits (allow a little more, never a key with a `:`).
fn looks_like_request_id(key: &str) -> bool {
    (16..=64).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Redis errors as text, with anything that looks like a credential left out.
fn describe(e: &RedisError) -> String {
    let text = e.to_string();
    if text.contains('@') {
        crate::config::redact_userinfo(&text)
    } else {
        text
    }
}

#[async_trait]
impl DedupStore for RedisStore {
    async fn claim(&self, keys: &[String], token: &str, lease: Duration) -> Result<Vec<Claim>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let script = self.script_claims.load(Ordering::Relaxed);
        let previous = match self.claim_with(keys, token, lease, script).await {
            // Servers before 7 refuse NX together with GET (a syntax error), and nothing is written.
            Err(e) if !script && e.to_string().to_ascii_lowercase().contains("syntax error") => {
                tracing::info!(store = %self.location, "this Redis predates SET … NX … GET: claims use a script");
                self.script_claims.store(true, Ordering::Relaxed);
                self.claim_with(keys, token, lease, true).await
            }
            other => other,
        }
        .map_err(|e| self.error(e))?;
        Ok(previous.iter().map(|p| Claim::from_previous(p.as_deref(), token)).collect())
    }

    async fn settle(&self, s: &Settlement, token: &str) -> Result<Vec<Commit>, StoreError> {
        if s.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (key, mark, ttl) in &s.marks {
            pipe.cmd("EVAL")
                .arg(COMMIT_SCRIPT)
                .arg(1)
                .arg(key)
                .arg(token)
                .arg(mark.value())
                .arg((*ttl).max(1));
        }
        for (key, value, ttl) in &s.records {
            pipe.cmd("SET").arg(key).arg(value).arg("EX").arg((*ttl).max(1)).ignore();
        }
        for key in &s.releases {
            pipe.cmd("EVAL").arg(RELEASE_IF_OURS).arg(1).arg(key).arg(token).ignore();
        }
        let answers: Vec<redis::Value> = pipe.query_async(&mut self.conn.clone()).await.map_err(|e| self.error(e))?;
        Ok(answers
            .into_iter()
            .take(s.marks.len())
            .map(|answer| match answer {
                redis::Value::Int(1) => Commit::Committed,
                redis::Value::Int(_) => Commit::LeaseLapsed,
                other => Commit::Lost(redis::FromRedisValue::from_redis_value(other).unwrap_or_else(|_| "?".to_string())),
            })
            .collect())
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.error(e))
    }

    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.error(e))
    }

    async fn put(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        cmd.query_async::<()>(&mut self.conn.clone()).await.map_err(|e| self.error(e))
    }

    async fn swap(&self, swaps: &[Swap]) -> Result<Vec<bool>, StoreError> {
        if swaps.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for swap in swaps {
            let (op, value, ttl) = match &swap.new {
                Some((value, ttl)) => ("set", value.as_str(), ttl.map_or(0, |t| t.max(1))),
                None => ("del", "", 0),
            };
            pipe.cmd("EVAL")
                .arg(SWAP_SCRIPT)
                .arg(1)
                .arg(&swap.key)
                .arg(if swap.expected.is_some() { "1" } else { "0" })
                .arg(swap.expected.as_deref().unwrap_or(""))
                .arg(op)
                .arg(value)
                .arg(ttl);
        }
        let applied: Vec<i64> = pipe.query_async(&mut self.conn.clone()).await.map_err(|e| self.error(e))?;
        Ok(applied.into_iter().map(|n| n == 1).collect())
    }

    fn describe(&self) -> String {
        format!("Redis at {}", self.location)
    }

    async fn clock_ms(&self) -> Result<i64, StoreError> {
        let (seconds, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.error(e))?;
        Ok(seconds * 1_000 + micros / 1_000)
    }
}

#[cfg(test)]
mod memory_policy_tests {
    use super::MemoryPolicy;

    #[test]
    fn the_policy_is_read_from_info_memory() {
        let info = "# Memory\r\nused_memory:1\r\nmaxmemory:104857600\r\nmaxmemory_human:100.00M\r\nmaxmemory_policy:volatile-lru\r\n";
        let p = MemoryPolicy::from_info(info).unwrap();
        assert_eq!((p.max_bytes, p.policy.as_str(), p.may_evict()), (104_857_600, "volatile-lru", true));
        let p = MemoryPolicy::from_info("maxmemory:0\r\nmaxmemory_policy:noeviction\r\n").unwrap();
        assert!(!p.may_evict());
        assert!(MemoryPolicy::from_info("used_memory:1\r\n").is_none());
    }
}
