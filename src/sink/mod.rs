//! Where events go: CloudTrail Lake (PutAuditEvents) or CloudWatch Logs (PutLogEvents), behind one trait.

mod batch;
mod cloudtrail;
pub mod cloudwatch_logs;
pub mod credentials;
mod memory;
mod ndjson;

use async_trait::async_trait;

pub use batch::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS, split_into_calls, wire_size};
pub use cloudtrail::{CloudTrailSink, checksum, load_sdk_config};
pub use cloudwatch_logs::CloudWatchLogsSink;
pub use memory::MemorySink;
pub use ndjson::NdjsonSink;

use crate::event::AuditEvent;

/// One event the sink did not store, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub id: String,
    pub code: String,
    pub message: String,
    pub kind: RefusalKind,
}

/// What a refusal means for the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The destination asked to slow down: send the event again, more slowly.
    Throttled,
    /// Not stored this time; a later try may store it.
    Retryable,
    /// Refused for good: the entry is dead-lettered.
    Permanent,
}

impl Refusal {
    /// A refusal from PutAuditEvents' `failed[]`, classified by its error code.
    pub fn from_cloudtrail(id: impl Into<String>, code: impl Into<String>, message: impl Into<String>) -> Refusal {
        let code = code.into();
        let kind = match code.as_str() {
            "Throttling" => RefusalKind::Throttled,
            "InternalFailure" => RefusalKind::Retryable,
            _ => RefusalKind::Permanent,
        };
        Refusal {
            id: id.into(),
            code,
            message: message.into(),
            kind,
        }
    }

    /// A later try may turn this into success.
    pub fn is_transient(&self) -> bool {
        self.kind != RefusalKind::Permanent
    }

    pub fn is_throttling(&self) -> bool {
        self.kind == RefusalKind::Throttled
    }
}

/// The most one call of a sink may carry; the cycle packs calls to these limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    pub max_events: usize,
    /// Counted with `Sink::event_size`.
    pub max_bytes: usize,
}

impl CallLimits {
    /// PutAuditEvents: 100 events and 1 MB per call.
    pub const CLOUDTRAIL: CallLimits = CallLimits {
        max_events: MAX_BATCH_EVENTS,
        max_bytes: MAX_BATCH_BYTES,
    };
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
    /// Whoever reads the destination has gone on purpose (a dry run piped into `head`): stop
    /// putting, as after `Fatal`; it is not a failure of the destination.
    #[error("{0}")]
    Closed(String),
}

#[async_trait]
pub trait Sink: Send + Sync {
    /// Sends at most `limits()` in one call (the cycle packs calls that fit).
    async fn put(&self, events: &[AuditEvent]) -> Result<PutReport, SinkError>;
    /// Where events go, safe to log.
    fn describe(&self) -> String;
    /// The most one `put` may carry.
    fn limits(&self) -> CallLimits {
        CallLimits::CLOUDTRAIL
    }
    /// What an event counts against `CallLimits::max_bytes`.
    fn event_size(&self, event: &AuditEvent) -> usize {
        wire_size(event)
    }
}
