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

    fn error(&self, e: RedisError) -> StoreError {
        StoreError {
            location: self.location.clone(),
            detail: describe(&e),
        }
    }
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
    async fn claim(&self, keys: &[String], token: &str, lease: Duration) -> Result<Vec<bool>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("SET")
                .arg(key)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(lease.as_millis() as u64);
        }
        let answers: Vec<Option<String>> = pipe.query_async(&mut self.conn.clone()).await.map_err(|e| self.error(e))?;
        Ok(answers.into_iter().map(|a| a.is_some()).collect())
    }

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
