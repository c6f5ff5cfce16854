//! CloudWatch Logs: which of this shipper's events the log group holds, read with `FilterLogEvents`.
//!
//! Each log event's message is the eventData the shipper sent, so its `UID`, kind and part are read
//! from it: exact, and without Logs Insights' cap on rows. The span is cut into days read side by
//! side; `startTime` and `endTime` are milliseconds, both inclusive; a page may be empty while a
//! token still follows. The whole group is read, not only the shipper's stream: a stream renamed
//! since would otherwise make every earlier event look missing, and `--repair` ship it again.
//! Timestamps the sink clamped into Logs' window (entries older than 14 days) lie after the entry's
//! own time, never after its shipping: the span reaches from the scope's start to now, padded.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::task::JoinSet;

use super::holdings::{HeldEvents, Holdings, Scope};
use super::inventory::{Answer, Inventory, InventoryError, QueryRecord, padded, rfc3339, slices};
use crate::kong::EntryKind;
use crate::retry::Backoff;
use crate::sink::cloudwatch_logs::{CallError, Op};

/// Events per `FilterLogEvents` page (the service's maximum).
pub const PAGE_EVENTS: i32 = 10_000;
const DAY_MS: i64 = 86_400_000;

/// One page of `FilterLogEvents`.
#[derive(Debug, Clone, Default)]
pub struct FilterPage {
    pub messages: Vec<String>,
    pub next_token: Option<String>,
}

/// The one call reconciliation makes on a log group; `SdkFilter` is the real one.
#[async_trait]
pub trait FilterApi: Send + Sync {
    /// Events with timestamps in `[start_ms, end_ms]` (both inclusive), one page.
    async fn filter(&self, start_ms: i64, end_ms: i64, token: Option<&str>) -> Result<FilterPage, CallError>;
}

pub struct SdkFilter {
    pub client: aws_sdk_cloudwatchlogs::Client,
    pub group: String,
}

#[async_trait]
impl FilterApi for SdkFilter {
    async fn filter(&self, start_ms: i64, end_ms: i64, token: Option<&str>) -> Result<FilterPage, CallError> {
        let out = self
            .client
            .filter_log_events()
            .log_group_name(&self.group)
            .start_time(start_ms)
            .end_time(end_ms)
            .limit(PAGE_EVENTS)
            .set_next_token(token.map(str::to_string))
            .send()
            .await
            .map_err(|e| crate::sink::cloudwatch_logs::classify(Op::FilterLogEvents, &self.group, &e))?;
        Ok(FilterPage {
            messages: out.events().iter().filter_map(|e| e.message().map(str::to_string)).collect(),
            next_token: out.next_token().filter(|t| !t.is_empty()).map(str::to_string),
        })
    }
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "UID", borrow)]
    uid: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "eventSource", borrow)]
    event_source: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "eventTime", borrow)]
    event_time: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "additionalEventData")]
    extra: Option<Extra>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Extra {
    kong_entry_kind: Option<EntryKind>,
    kong_audit_entry_part: Option<u32>,
    kong_audit_entry_parts: Option<u32>,
}

/// What a log event's message says it carries: `None` for a message that is not one of this
/// shipper's events (of Kong's audit trail, or of Konnect's).
pub fn parse_message(message: &str) -> Option<HeldEvents> {
    let m: Message = serde_json::from_str(message).ok()?;
    let extra = m.extra?;
    let kind = extra.kong_entry_kind?;
    if m.event_source.as_deref() != Some(kind.event_source()) {
        return None;
    }
    Some(HeldEvents {
        kind,
        uid: m.uid?.into_owned(),
        part: extra.kong_audit_entry_part,
        parts: extra.kong_audit_entry_parts,
        event_time: m
            .event_time
            .and_then(|t| chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%SZ").ok())
            .map(|t| t.and_utc().timestamp()),
        count: 1,
    })
}

pub struct LogsInventory {
    api: Arc<dyn FilterApi>,
    group: String,
    concurrency: usize,
    backoff: Backoff,
    /// The kinds of entries asked about (one source's): events of others are not this trail's.
    kinds: Arc<Vec<EntryKind>>,
}

impl LogsInventory {
    pub fn new(api: Arc<dyn FilterApi>, group: &str, concurrency: usize, backoff: Backoff) -> LogsInventory {
        LogsInventory {
            api,
            group: group.to_string(),
            concurrency: concurrency.clamp(1, 8),
            backoff,
            kinds: Arc::new(EntryKind::ALL.to_vec()),
        }
    }

    /// Asks about entries of these kinds (Kong's by default).
    pub fn of_kinds(mut self, kinds: Vec<EntryKind>) -> LogsInventory {
        if !kinds.is_empty() {
            self.kinds = Arc::new(kinds);
        }
        self
    }
}

/// Reads one slice `[from_ms, to_ms]` to its last page.
async fn read_slice(
    api: Arc<dyn FilterApi>,
    backoff: Backoff,
    (from_ms, to_ms): (i64, i64),
    scope: Scope,
    kinds: Arc<Vec<EntryKind>>,
    until: Option<Instant>,
) -> Result<(Holdings, u64), InventoryError> {
    let mut holdings = Holdings::new(scope);
    let (mut token, mut read) = (None::<String>, 0u64);
    let mut seen = HashSet::new();
    loop {
        let mut tries = 0;
        let page = loop {
            tries += 1;
            match api.filter(from_ms, to_ms, token.as_deref()).await {
                Ok(page) => break page,
                Err(CallError::Throttled(why) | CallError::Transient(why)) => {
                    match backoff.wait(tries, None, until).filter(|_| tries < backoff.attempts.max(1) * 2) {
                        Some(wait) => tokio::time::sleep(wait).await,
                        None if until.is_some_and(|u| Instant::now() >= u) => {
                            return Err(InventoryError::OutOfTime(format!("out of time reading the log group ({why})")));
                        }
                        None => return Err(InventoryError::Failed(format!("FilterLogEvents failed after {tries} tries: {why}"))),
                    }
                }
                Err(CallError::NotFound(why)) => {
                    return Err(InventoryError::Denied(format!(
                        "CLOUDWATCH_LOG_GROUP: the log group does not exist in this account and region ({why})"
                    )));
                }
                Err(e) => return Err(InventoryError::Denied(e.text())),
            }
        };
        for message in &page.messages {
            read += 1;
            match parse_message(message) {
                Some(held) if kinds.contains(&held.kind) => holdings.add(&held),
                _ => holdings.unreadable += 1,
            }
        }
        match page.next_token {
            Some(next) if !seen.insert(next.clone()) => {
                return Err(InventoryError::Failed("FilterLogEvents repeated a page token".into()));
            }
            Some(next) => token = Some(next),
            None => return Ok((holdings, read)),
        }
    }
}

#[async_trait]
impl Inventory for LogsInventory {
    async fn holdings(&self, scope: Scope, now: i64, until: Option<Instant>) -> Result<Answer, InventoryError> {
        let (from, to) = padded(scope, now);
        let mut todo: Vec<(i64, i64)> = slices(from * 1000, to * 1000, DAY_MS)
            .into_iter()
            .map(|(a, b)| (a, b - 1))
            .rev()
            .collect();
        let total = todo.len();
        let mut answer = Answer {
            holdings: Holdings::new(scope),
            ..Answer::default()
        };
        let mut running = JoinSet::new();
        let mut failure = None;
        loop {
            while failure.is_none() && running.len() < self.concurrency {
                let Some(slice) = todo.pop() else { break };
                let (api, backoff, kinds) = (self.api.clone(), self.backoff, self.kinds.clone());
                running.spawn(async move { (slice, read_slice(api, backoff, slice, scope, kinds, until).await) });
            }
            let Some(joined) = running.join_next().await else { break };
            match joined {
                Ok(((a, b), Ok((holdings, read)))) => {
                    answer.queries.push(QueryRecord {
                        id: format!("FilterLogEvents {}..{}", a, b),
                        target: self.group.clone(),
                        from: rfc3339(a / 1000),
                        to: rfc3339((b + 1) / 1000),
                        rows: read,
                        bytes_scanned: 0,
                    });
                    tracing::debug!(read, "log group read {} of {total}", answer.queries.len());
                    answer.holdings.merge(holdings);
                }
                Ok((_, Err(e))) => {
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    failure.get_or_insert(InventoryError::Failed(format!("a FilterLogEvents task failed: {e}")));
                }
            }
        }
        answer.queries.sort_by(|a, b| a.from.cmp(&b.from));
        match failure {
            Some(e) => Err(e),
            None => Ok(answer),
        }
    }

    fn destination(&self) -> serde_json::Value {
        serde_json::json!({"type": "cloudwatch_logs", "log_group": self.group})
    }

    fn describe(&self) -> String {
        format!("CloudWatch Logs log group {}", self.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_as_held_events_and_others_are_set_aside() {
        let m = r#"{"UID":"o1","eventSource":"kong-gateway","eventTime":"2023-11-14T22:13:20Z","additionalEventData":{"kongEntryKind":"object","kongAuditEntryPart":2,"kongAuditEntryParts":3,"kongAuditEntryText":"…"}}"#;
        assert_eq!(
            parse_message(m),
            Some(HeldEvents {
                kind: EntryKind::Object,
                uid: "o1".into(),
                part: Some(2),
                parts: Some(3),
                event_time: Some(1_700_000_000),
                count: 1
            })
        );
        assert!(parse_message(r#"{"UID":"x","eventSource":"other","additionalEventData":{"kongEntryKind":"request"}}"#).is_none());
        assert!(parse_message("not json").is_none());
        assert!(parse_message(r#"{"UID":"x","eventSource":"kong-gateway"}"#).is_none());
        let konnect = r#"{"UID":"c2ln","eventSource":"konnect.konghq.com","eventTime":"2023-11-14T22:13:20Z","additionalEventData":{"kongEntryKind":"konnect"}}"#;
        assert_eq!(
            parse_message(konnect).map(|h| (h.kind, h.uid)),
            Some((EntryKind::Konnect, "c2ln".to_string()))
        );
        assert!(
            parse_message(&konnect.replace("konnect.konghq.com", "kong-gateway")).is_none(),
            "each kind under its own eventSource"
        );
    }
}
