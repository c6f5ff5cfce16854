//! Asking a destination what it holds: one trait, a CloudTrail Lake, a CloudWatch Logs and an
//! in-memory implementation.

use std::time::Instant;

use async_trait::async_trait;
use serde::Serialize;

use super::holdings::{Holdings, Scope};

/// How far beyond an entry's own time its event may carry a different `eventTime` (an object row
/// without a timestamp gets its time from `ttl`, read at another moment) or reach the destination
/// (ingestion): every question to a destination is this much wider than the scope on both sides.
pub const PAD_SECONDS: i64 = 86_400;

/// One question put to the destination, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueryRecord {
    /// The query's id (CloudTrail Lake), or a description of the read (CloudWatch Logs).
    pub id: String,
    /// Where it asked: the event data store, or the log group.
    pub target: String,
    /// The span of time it covered, RFC 3339.
    pub from: String,
    pub to: String,
    /// Rows or events it returned.
    pub rows: u64,
    /// What the destination scanned (CloudTrail Lake bills by it; 0 where nothing is billed so).
    pub bytes_scanned: u64,
}

/// What a destination answered.
#[derive(Debug, Default)]
pub struct Answer {
    pub holdings: Holdings,
    pub queries: Vec<QueryRecord>,
    pub bytes_scanned: u64,
}

/// Why a destination could not say what it holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// Only a change of permissions or settings fixes it; the text names which.
    #[error("{0}")]
    Denied(String),
    /// No AWS credentials to sign with: the text names the fix.
    #[error("{0}")]
    Unsigned(String),
    /// The destination failed or did not answer; a later try may work.
    #[error("{0}")]
    Failed(String),
    /// The run's time ran out before the answer was complete.
    #[error("{0}")]
    OutOfTime(String),
}

/// A destination that can be asked which of this shipper's events it holds.
#[async_trait]
pub trait Inventory: Send + Sync {
    /// Every event of this shipper the destination holds for entries whose time falls in `scope`
    /// (the questions are padded by `PAD_SECONDS`; rows outside the scope still match entries).
    /// `now` bounds when events can have reached it; `until`: give up then, cancelling what runs.
    async fn holdings(&self, scope: Scope, now: i64, until: Option<Instant>) -> Result<Answer, InventoryError>;
    /// Where it asks, for the report: `{"type": …, …}`.
    fn destination(&self) -> serde_json::Value;
    /// Where it asks, safe to log.
    fn describe(&self) -> String;
}

/// `[from, to)` cut into slices of at most `step` seconds, in order.
pub fn slices(from: i64, to: i64, step: i64) -> Vec<(i64, i64)> {
    let step = step.max(1);
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let end = (at.saturating_add(step)).min(to);
        out.push((at, end));
        at = end;
    }
    out
}

/// The span of time a question about `scope` must cover: events' own times padded on both sides,
/// and up to `now` (padded), since an entry shipped late reaches the destination late.
pub fn padded(scope: Scope, now: i64) -> (i64, i64) {
    (scope.since - PAD_SECONDS, scope.until.max(now) + PAD_SECONDS)
}

pub fn rfc3339(t: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_cut_into_slices_that_cover_them_exactly() {
        assert_eq!(slices(0, 10, 4), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(slices(5, 5, 4), vec![]);
        assert_eq!(slices(0, 3, 0), vec![(0, 1), (1, 2), (2, 3)]);
    }

    #[test]
    fn questions_are_padded_and_reach_now() {
        let scope = Scope {
            since: 1_000_000,
            until: 1_100_000,
        };
        assert_eq!(padded(scope, 1_050_000), (1_000_000 - PAD_SECONDS, 1_100_000 + PAD_SECONDS));
        assert_eq!(padded(scope, 2_000_000), (1_000_000 - PAD_SECONDS, 2_000_000 + PAD_SECONDS));
    }
}
