//! The dedup store: which entries are shipped, and which are being shipped right now by some run.
//!
//! Protocol, per entry key:
//! - `claim`: set `inflight:<run>` only if the key is absent, for a lease. Fails if shipped or claimed.
//! - `settle`: after the put, mark shipped (or rejected) with the entry's remaining Kong TTL, and
//!   release our claims on everything else so the next run retries it.

mod file;
mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use file::FileStore;
pub use memory::MemoryStore;
pub use redis::RedisStore;

/// What a settled key records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// CloudTrail listed the entry as successful.
    Shipped,
    /// CloudTrail (or the mapping) refused the entry for good; it was dead-lettered with this reason code.
    Rejected(String),
}

impl Mark {
    pub fn value(&self) -> String {
        match self {
            Mark::Shipped => "shipped".into(),
            Mark::Rejected(code) => format!("rejected:{code}"),
        }
    }
}

#[derive(Debug, Default)]
pub struct Settlement {
    /// `(key, mark, seconds to live)`: the key dies when Kong deletes the row.
    pub marks: Vec<(String, Mark, u64)>,
    /// Keys we claimed and did not ship: deleted only if our claim still holds them.
    pub releases: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("dedup store {location}: {detail}")]
pub struct StoreError {
    pub location: String,
    pub detail: String,
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The entry is ours to ship.
    Ours,
    /// Shipped or rejected by an earlier run.
    Done,
    /// Another run holds it right now; it may still fail there, so it is not yet handled.
    HeldByOther,
}

#[async_trait]
pub trait DedupStore: Send + Sync {
    /// Claims each key for `lease` (one round trip): `Ours` where the claim is ours, `Done` where the
    /// key was shipped or rejected, `HeldByOther` where another run holds it right now.
    async fn claim_detailed(&self, keys: &[String], token: &str, lease: Duration) -> Result<Vec<Claim>, StoreError>;
    /// `claim_detailed`, reduced to "is it ours".
    async fn claim(&self, keys: &[String], token: &str, lease: Duration) -> Result<Vec<bool>, StoreError> {
        let claims = self.claim_detailed(keys, token, lease).await?;
        Ok(claims.into_iter().map(|c| c == Claim::Ours).collect())
    }
    /// Marks and releases in one round trip.
    async fn settle(&self, settlement: &Settlement, token: &str) -> Result<(), StoreError>;
    /// The value stored under a key, if any (for `check`, tests and operators).
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Plain value write, used for the watermark and the writability check.
    async fn put(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), StoreError>;
    /// Where the store is, safe to log.
    fn describe(&self) -> String;
}

/// The claim value of one run: `inflight:<run>`.
pub fn claim_token(run_id: &str) -> String {
    format!("inflight:{run_id}")
}

/// The contract every store passes; the tests run it against each implementation.
pub mod contract;
