//! Redis (or Valkey, or ElastiCache): pipelined `SET NX PX` claims and `SET EX` marks.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, RedisError};

use super::{Claim, DedupStore, Settlement, StoreError};
use crate::config::RedisConfig;

/// Deletes a key only while it still holds our claim, so a release never removes a shipped mark
/// or another run's claim.
const RELEASE_IF_OURS: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

pub struct RedisStore {
    conn: ConnectionManager,
    location: String,
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
        let store = RedisStore { conn, location };
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

    fn error(&self, e: RedisError) -> StoreError {
        StoreError {
            location: self.location.clone(),
            detail: describe(&e),
        }
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
    async fn claim_detailed(&self, keys: &[String], token: &str, lease: Duration) -> Result<Vec<Claim>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // SET NX, then GET in the same pipeline: the value says who holds a key we did not get.
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("SET")
                .arg(key)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(lease.as_millis() as u64);
            pipe.cmd("GET").arg(key);
        }
        let answers: Vec<Option<String>> = pipe.query_async(&mut self.conn.clone()).await.map_err(|e| self.error(e))?;
        Ok(answers
            .chunks(2)
            .map(|pair| match (&pair[0], pair.get(1).and_then(Option::as_deref)) {
                (Some(_), _) => Claim::Ours,
                (None, Some(v)) if v.starts_with("inflight:") && v != token => Claim::HeldByOther,
                (None, _) => Claim::Done,
            })
            .collect())
    }

    async fn settle(&self, s: &Settlement, token: &str) -> Result<(), StoreError> {
        if s.marks.is_empty() && s.releases.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (key, mark, ttl) in &s.marks {
            pipe.cmd("SET").arg(key).arg(mark.value()).arg("EX").arg(*ttl).ignore();
        }
        for key in &s.releases {
            pipe.cmd("EVAL").arg(RELEASE_IF_OURS).arg(1).arg(key).arg(token).ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await.map_err(|e| self.error(e))
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

    fn describe(&self) -> String {
        format!("Redis at {}", self.location)
    }
}
