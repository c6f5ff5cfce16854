//! Where events go. CloudTrail Lake today; the trait keeps other destinations possible.

mod batch;
mod cloudtrail;
mod memory;
mod ndjson;

use async_trait::async_trait;

pub use batch::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS, split_into_calls, wire_size as batch_wire_size};
pub use cloudtrail::{CloudTrailSink, checksum, load_sdk_config};
pub use memory::MemorySink;
pub use ndjson::NdjsonSink;

use crate::event::AuditEvent;

/// One event the sink refused, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub id: String,
    pub code: String,
    pub message: String,
}

impl Refusal {
    /// CloudTrail's per-event codes that a later try may turn into success.
    pub fn is_transient(&self) -> bool {
        matches!(self.code.as_str(), "Throttling" | "InternalFailure")
    }

    pub fn is_throttling(&self) -> bool {
        self.code == "Throttling"
    }
}

/// What one call reported, event by event. Ids in neither list are treated as not shipped.
#[derive(Debug, Default, Clone)]
pub struct PutReport {
    pub successful: Vec<String>,
    pub failed: Vec<Refusal>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// CloudTrail asked us to slow down; the call may be repeated once we have.
    #[error("{0}")]
    Throttled(String),
    /// The whole call failed in a way a retry may fix (5xx, network).
    #[error("{0}")]
    Transient(String),
    /// The whole call failed in a way only a change of configuration fixes.
    #[error("{0}")]
    Fatal(String),
}

#[async_trait]
pub trait Sink: Send + Sync {
    /// Sends at most `MAX_BATCH_EVENTS` events and `MAX_BATCH_BYTES` bytes in one call.
    async fn put(&self, events: &[AuditEvent]) -> Result<PutReport, SinkError>;
    /// Where events go, safe to log.
    fn describe(&self) -> String;
}
