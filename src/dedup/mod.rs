//! The dedup store: which entries are shipped, and which are being shipped right now by some run.
//!
//! Protocol, per entry key:
//! - `claim`: set `inflight:<run>` only if the key is absent, for a lease, and learn what the key
//!   held otherwise, in one atomic step. Fails if shipped, rejected or claimed by another run.
//! - `settle`: after the put, mark shipped (or rejected) with the entry's remaining Kong TTL while
//!   this run still holds the claim, and release our claims on everything else so the next run
//!   retries it. Records (the accepted parts of an entry shipped in parts) are written as they are.

mod clock;
mod file;
mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use clock::StoreClock;
pub use file::FileStore;
pub use memory::MemoryStore;
pub use redis::{MemoryPolicy, RedisStore};

/// What a settled key records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// The destination listed the entry as stored, at this time (epoch seconds), to this run:
    /// `reconcile` does not call an entry missing while the destination may still be ingesting it,
    /// and a release that expects an older mark never deletes this one (the run makes it unique).
    Shipped { at: i64, run: String },
    /// The destination was found holding the entry (a store rebuilt from it, or `reconcile --repair`).
    Found,
    /// The destination (or the mapping) refused the entry for good; it was dead-lettered with this reason code.
    Rejected(String),
}

impl Mark {
    pub fn value(&self) -> String {
        match self {
            Mark::Shipped { at, run } => format!("{SHIPPED}@{at}:{run}"),
            Mark::Found => FOUND.into(),
            Mark::Rejected(code) => format!("{REJECTED_PREFIX}{code}"),
        }
    }
}

/// The value of a shipped entry's key (`shipped@<time>:<run>`; plain `shipped` from older versions).
pub const SHIPPED: &str = "shipped";
/// The value of an entry's key when the destination was found holding it.
pub const FOUND: &str = "found";

/// What an entry's key holds, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// Shipped by a run, accepted at this time (unknown for marks of older versions).
    Shipped {
        at: Option<i64>,
    },
    /// Found in the destination.
    Found,
    Rejected(String),
    /// Claimed by a run that is shipping it now.
    Claimed(String),
    /// Something this program does not write.
    Other(String),
}

impl KeyState {
    pub fn parse(value: &str) -> KeyState {
        if value == SHIPPED {
            return KeyState::Shipped { at: None };
        }
        if let Some(rest) = value.strip_prefix(SHIPPED).and_then(|v| v.strip_prefix('@'))
            && let Ok(at) = rest.split_once(':').map_or(rest, |(at, _)| at).parse()
        {
            return KeyState::Shipped { at: Some(at) };
        }
        if value == FOUND {
            return KeyState::Found;
        }
        if let Some(code) = value.strip_prefix(REJECTED_PREFIX) {
            return KeyState::Rejected(code.to_string());
        }
        if let Some(run) = value.strip_prefix(CLAIM_PREFIX) {
            return KeyState::Claimed(run.to_string());
        }
        KeyState::Other(value.to_string())
    }

    /// The destination holds the entry (as far as the store knows).
    pub fn is_shipped(&self) -> bool {
        matches!(self, KeyState::Shipped { .. } | KeyState::Found)
    }
}

/// A conditional write: applied only while the key holds `expected` (`None`: nothing). `new` is the
/// value and its seconds to live (`None`: no expiry) to write, or `None` to delete the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swap {
    pub key: String,
    pub expected: Option<String>,
    pub new: Option<(String, Option<u64>)>,
}

impl Swap {
    /// Writes `value` for `ttl` seconds where the key holds nothing.
    pub fn create(key: impl Into<String>, value: impl Into<String>, ttl: Option<u64>) -> Swap {
        Swap {
            key: key.into(),
            expected: None,
            new: Some((value.into(), ttl)),
        }
    }

    /// Deletes the key while it holds `expected`.
    pub fn delete(key: impl Into<String>, expected: impl Into<String>) -> Swap {
        Swap {
            key: key.into(),
            expected: Some(expected.into()),
            new: None,
        }
    }

    /// Whether the swap applies to a key holding `current`.
    pub fn applies_to(&self, current: Option<&str>) -> bool {
        current == self.expected.as_deref()
    }
}
/// The prefix of a rejected entry's key value.
pub const REJECTED_PREFIX: &str = "rejected:";
/// The prefix of a claim's value: `inflight:<run>`.
pub const CLAIM_PREFIX: &str = "inflight:";

/// The claim value of one run: `inflight:<run>`.
pub fn claim_token(run_id: &str) -> String {
    format!("{CLAIM_PREFIX}{run_id}")
}

#[derive(Debug, Default)]
pub struct Settlement {
    /// `(key, mark, seconds to live)`: the key dies when Kong deletes the row. Written only where
    /// this run's claim still holds the key, or nothing does (see `Commit`).
    pub marks: Vec<(String, Mark, u64)>,
    /// `(key, value, seconds to live)`: plain records, written whatever the key held.
    pub records: Vec<(String, String, u64)>,
    /// Keys we claimed and did not ship: deleted only if our claim still holds them.
    pub releases: Vec<String>,
}

impl Settlement {
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty() && self.records.is_empty() && self.releases.is_empty()
    }
}

/// What became of one mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// Our claim held the key; it holds the mark now.
    Committed,
    /// Our lease had run out and nothing held the key: it holds the mark now (leaving it empty would
    /// ship the entry again), but the entry was unguarded for a while.
    LeaseLapsed,
    /// Our lease had run out and the key holds this now (another run's claim, or its mark): left as
    /// it is. Another run may ship the entry too.
    Lost(String),
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
    /// This run already holds it (the same entry read twice in one run).
    AlreadyOurs,
}

impl Claim {
    /// What a key's previous value (none: the claim took it) means for a run with this token.
    pub fn from_previous(previous: Option<&str>, token: &str) -> Claim {
        match previous {
            None => Claim::Ours,
            Some(v) if v == token => Claim::AlreadyOurs,
            Some(v) if v.starts_with(CLAIM_PREFIX) => Claim::HeldByOther,
            Some(_) => Claim::Done,
        }
    }
}

#[async_trait]
pub trait DedupStore: Send + Sync {
    /// Claims each key for `lease`, atomically per key, in one round trip.
    async fn claim(&self, keys: &[String], token: &str, lease: Duration) -> Result<Vec<Claim>, StoreError>;
    /// Marks, records and releases in one round trip; one `Commit` per mark, in order.
    async fn settle(&self, settlement: &Settlement, token: &str) -> Result<Vec<Commit>, StoreError>;
    /// The value stored under a key, if any (for `check`, tests and operators).
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// The values of several keys.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(key).await?);
        }
        Ok(values)
    }
    /// Plain value write, used for the watermark and the writability check.
    async fn put(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), StoreError>;
    /// Conditional writes and deletes in one round trip, each atomic; says which applied.
    async fn swap(&self, swaps: &[Swap]) -> Result<Vec<bool>, StoreError>;
    /// Where the store is, safe to log.
    fn describe(&self) -> String;
    /// The store's clock, in milliseconds since the epoch (see `StoreClock`); this machine's where
    /// the store keeps no clock of its own.
    async fn clock_ms(&self) -> Result<i64, StoreError> {
        Ok(chrono::Utc::now().timestamp_millis())
    }
}

/// A mark's commit, decided from what the key holds now: the rule every store applies atomically.
/// Returns the outcome and whether to write the mark.
pub fn commit_decision(current: Option<&str>, token: &str) -> (Commit, bool) {
    match current {
        Some(v) if v == token => (Commit::Committed, true),
        None => (Commit::LeaseLapsed, true),
        Some(other) => (Commit::Lost(other.to_string()), false),
    }
}

/// The store contract every implementation passes; the tests run it against each implementation.
pub mod contract;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_previous_value_says_who_has_the_entry() {
        let me = "inflight:me";
        assert_eq!(Claim::from_previous(None, me), Claim::Ours);
        assert_eq!(Claim::from_previous(Some(me), me), Claim::AlreadyOurs);
        assert_eq!(Claim::from_previous(Some("inflight:other"), me), Claim::HeldByOther);
        assert_eq!(Claim::from_previous(Some("shipped"), me), Claim::Done);
        assert_eq!(Claim::from_previous(Some("rejected:InvalidData"), me), Claim::Done);
    }

    #[test]
    fn a_mark_is_written_over_our_claim_or_nothing_never_over_another_run() {
        let me = "inflight:me";
        assert_eq!(commit_decision(Some(me), me), (Commit::Committed, true));
        assert_eq!(commit_decision(None, me), (Commit::LeaseLapsed, true));
        assert_eq!(
            commit_decision(Some("inflight:other"), me),
            (Commit::Lost("inflight:other".into()), false)
        );
        assert_eq!(commit_decision(Some("shipped"), me), (Commit::Lost("shipped".into()), false));
    }

    #[test]
    fn key_values_read_back_as_what_they_record() {
        let shipped = Mark::Shipped { at: 17, run: "r1".into() };
        assert_eq!(shipped.value(), "shipped@17:r1");
        assert_eq!(KeyState::parse(&shipped.value()), KeyState::Shipped { at: Some(17) });
        assert_eq!(KeyState::parse("shipped@17"), KeyState::Shipped { at: Some(17) });
        assert_eq!(
            KeyState::parse("shipped"),
            KeyState::Shipped { at: None },
            "marks of older versions"
        );
        assert_eq!(KeyState::parse(&Mark::Found.value()), KeyState::Found);
        assert_eq!(KeyState::parse("rejected:InvalidData"), KeyState::Rejected("InvalidData".into()));
        assert_eq!(KeyState::parse("inflight:r1"), KeyState::Claimed("r1".into()));
        assert_eq!(KeyState::parse("shipped@x"), KeyState::Other("shipped@x".into()));
        assert!(KeyState::parse("found").is_shipped() && !KeyState::parse("inflight:x").is_shipped());
        for done in [shipped, Mark::Found, Mark::Rejected("X".into())] {
            assert_eq!(Claim::from_previous(Some(&done.value()), "inflight:me"), Claim::Done);
        }
    }
}
