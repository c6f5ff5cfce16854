//! CloudWatch Logs as the destination (PutLogEvents), for teams without a CloudTrail Lake event data
//! store. Each log event's message is the eventData JSON the CloudTrail sink sends, so `recover` and
//! queries work the same on both; its timestamp is the entry's time in milliseconds.
//!
//! PutLogEvents is not PutAuditEvents, and this file bridges the two:
//! - one `put` may become several calls: events are sorted, split where a call would span more than
//!   24 hours or pass 10,000 events or 1,048,576 bytes (`request`), and each call's answer is read
//!   event by event into the one `PutReport`;
//! - the service silently skips events outside its time window (older than 14 days or the group's
//!   retention, more than 2 hours ahead) and reports them in `rejectedLogEventsInfo`: timestamps are
//!   clamped into the window (the message records the original), what is still reported skipped is
//!   sent once more in a narrower window, and anything skipped after that is a retryable refusal:
//!   never counted as stored;
//! - a missing stream is created and the call repeated; a missing group stops the run, named;
//! - an `InvalidParameterException` (which valid names and these requests should never meet) is
//!   narrowed down by halving the call, so one bad event cannot hold back the others; that event is
//!   refused for good (dead-lettered) only once the service has stored others, proving the
//!   configuration sound; until then it is retried, so nothing is dead-lettered for a cause that is
//!   not the event's. Halving has a budget per put; spent without anything ever stored, the run
//!   stops with the service's message.
//!
//! Files: `client` (the SDK client), `request` (timestamps, clamping, sort, split, pack), `service`
//! (the calls), `errors` (what a failure means), `healthcheck` (group, stream, account: for `check`
//! and the start of a run).

pub mod client;
mod errors;
mod healthcheck;
mod request;
mod service;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

pub use errors::{CallError, Failure, Op, classify, decide};
pub use healthcheck::{Health, UNKNOWN_ACCOUNT, account_of};
pub use request::{EVENT_OVERHEAD, MAX_BYTES, MAX_EVENTS, MAX_SPAN_MS, Window};
pub use service::{LogsApi, SdkLogs, StreamInfo};

use super::{CallLimits, PutReport, Refusal, RefusalKind, Sink, SinkError};
use crate::config::LogsConfig;
use crate::event::AuditEvent;
use crate::retry::Backoff;
use request::{LogEvent, SkipReason};

/// How often one `put` may halve a call the service called invalid (each halving costs two calls).
const HALVING_BUDGET: usize = 64;

pub struct CloudWatchLogsSink {
    api: Arc<dyn LogsApi>,
    group: String,
    stream: String,
    region: Option<String>,
    /// Set once the service skipped events inside the documented window (a retention under 14 days,
    /// or a clock off by an hour or more): from then on timestamps go into `Window::narrow`.
    narrow: AtomicBool,
    /// Set once any call stored events: the group, stream and permissions are sound, so an event the
    /// service still calls invalid is the event's own fault.
    stored_once: AtomicBool,
}

impl CloudWatchLogsSink {
    pub fn new(sdk: &aws_config::SdkConfig, logs: &LogsConfig) -> CloudWatchLogsSink {
        let api = SdkLogs {
            client: client::client(sdk),
            group: logs.group.clone(),
            stream: logs.stream.clone(),
        };
        Self::with_api(Arc::new(api), logs, client::region(sdk))
    }

    /// Over any implementation of the calls (tests script one).
    pub fn with_api(api: Arc<dyn LogsApi>, logs: &LogsConfig, region: Option<String>) -> CloudWatchLogsSink {
        CloudWatchLogsSink {
            api,
            group: logs.group.clone(),
            stream: logs.stream.clone(),
            region,
            narrow: AtomicBool::new(false),
            stored_once: AtomicBool::new(false),
        }
    }

    /// Before the first run: the group exists, the stream exists (created when missing). Returns the
    /// account that owns the group, the `recipientAccountId` of every event: the account the record
    /// lives in, as the channel owner's is for CloudTrail Lake.
    pub async fn prepare(&self, backoff: &Backoff) -> Result<String, String> {
        healthcheck::prepare(self.api.as_ref(), &self.group, &self.stream, backoff).await
    }

    /// What `check` reports: one DescribeLogStreams, nothing created.
    pub async fn health(&self) -> Result<Health, CallError> {
        healthcheck::health(self.api.as_ref(), &self.group, &self.stream).await
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    fn window(&self, now_ms: i64) -> Window {
        if self.narrow.load(Ordering::SeqCst) {
            Window::narrow(now_ms)
        } else {
            Window::documented(now_ms)
        }
    }
}

/// Why the calls of a `put` stopped: the events not yet answered get this.
#[derive(Debug, Clone)]
struct Stop {
    kind: RefusalKind,
    code: String,
    message: String,
    fatal: bool,
}

impl Stop {
    fn from(e: CallError) -> Stop {
        let message = e.text();
        // The cycle keeps a retryable refusal's code as the entry's problem: give it the whole story.
        let (kind, code, fatal) = match &e {
            CallError::Throttled(_) => (RefusalKind::Throttled, "ThrottlingException".to_string(), false),
            CallError::Fatal(_) => (RefusalKind::Retryable, message.clone(), true),
            _ => (RefusalKind::Retryable, message.clone(), false),
        };
        Stop {
            kind,
            code,
            message,
            fatal,
        }
    }

    fn refuse(&self, call: Vec<LogEvent>, report: &mut PutReport) {
        for e in call {
            report.failed.push(Refusal {
                id: e.id,
                code: self.code.clone(),
                message: self.message.clone(),
                kind: self.kind,
            });
        }
    }

    fn into_error(self) -> SinkError {
        match (self.fatal, self.kind) {
            (true, _) => SinkError::Fatal(self.message),
            (false, RefusalKind::Throttled) => SinkError::Throttled(self.message),
            _ => SinkError::Transient(self.message),
        }
    }
}

/// What one round of calls came to, besides the report.
#[derive(Default)]
struct Round {
    /// Events the service skipped: (index in the put, id, why).
    skipped: Vec<(usize, String, SkipReason)>,
    stop: Option<Stop>,
    /// Refusals not caused by `stop` (an event too large or invalid).
    own_refusals: usize,
    halvings: usize,
    stream_created: bool,
}

impl CloudWatchLogsSink {
    /// Sends `events` (indexes into the put) in as many calls as they need.
    async fn round(&self, events: &[AuditEvent], indexes: &[usize], report: &mut PutReport, round: &mut Round) {
        let now = chrono::Utc::now().timestamp_millis();
        let window = self.window(now);
        let mut log_events = Vec::with_capacity(indexes.len());
        for &i in indexes {
            let e = request::log_event(i, &events[i], window, now);
            if request::event_size(&e.message) > MAX_BYTES {
                round.own_refusals += 1;
                report.failed.push(Refusal {
                    id: e.id,
                    code: "EventTooLarge".into(),
                    message: format!("the event is larger than the {MAX_BYTES} bytes a CloudWatch Logs event may be"),
                    kind: RefusalKind::Permanent,
                });
            } else {
                log_events.push(e);
            }
        }
        let mut work: VecDeque<Vec<LogEvent>> = request::calls(log_events).into();
        while let Some(call) = work.pop_front() {
            if let Some(stop) = &round.stop {
                stop.refuse(call, report);
                continue;
            }
            match self.api.put_log_events(&call).await {
                Ok(info) => {
                    let timestamps: Vec<i64> = call.iter().map(|e| e.timestamp).collect();
                    let skipped: HashMap<usize, SkipReason> = request::skipped(info, &timestamps, now).into_iter().collect();
                    if skipped.len() < call.len() {
                        self.stored_once.store(true, Ordering::SeqCst);
                    }
                    for (i, e) in call.into_iter().enumerate() {
                        match skipped.get(&i) {
                            Some(why) => round.skipped.push((e.source, e.id, *why)),
                            None => report.successful.push(e.id),
                        }
                    }
                }
                Err(CallError::NotFound(detail)) if !round.stream_created => {
                    round.stream_created = true;
                    tracing::info!(group = %self.group, stream = %self.stream, problem = %detail, "creating the log stream");
                    match healthcheck::create_stream(self.api.as_ref(), &self.group).await {
                        Ok(()) => work.push_front(call),
                        Err(e) => {
                            let stop = Stop::from(e);
                            stop.refuse(call, report);
                            round.stop = Some(stop);
                        }
                    }
                }
                Err(CallError::Invalid(detail)) if call.len() > 1 && round.halvings < HALVING_BUDGET => {
                    round.halvings += 1;
                    let mut first = call;
                    let second = first.split_off(first.len() / 2);
                    tracing::warn!(events = first.len() + second.len(), problem = %detail, "the call was refused as invalid: halving it");
                    work.push_front(second);
                    work.push_front(first);
                }
                Err(CallError::Invalid(detail)) if call.len() == 1 => {
                    // Refused for good only once the service has stored other events: until then the
                    // cause may be the configuration's, and the event is tried again.
                    round.own_refusals += 1;
                    let e = call.into_iter().next().expect("one event");
                    let permanent = self.stored_once.load(Ordering::SeqCst);
                    report.failed.push(Refusal {
                        id: e.id,
                        code: "InvalidParameterException".into(),
                        message: detail,
                        kind: if permanent {
                            RefusalKind::Permanent
                        } else {
                            RefusalKind::Retryable
                        },
                    });
                }
                Err(CallError::Invalid(detail)) if !self.stored_once.load(Ordering::SeqCst) => {
                    // Every part of the call is refused and nothing was ever stored: not the events.
                    let stop = Stop::from(CallError::Fatal(format!(
                        "{detail} (every call is refused as invalid: check CLOUDWATCH_LOG_GROUP and CLOUDWATCH_LOG_STREAM)"
                    )));
                    stop.refuse(call, report);
                    round.stop = Some(stop);
                }
                Err(e) => {
                    let stop = Stop::from(e);
                    stop.refuse(call, report);
                    round.stop = Some(stop);
                }
            }
        }
    }
}

#[async_trait]
impl Sink for CloudWatchLogsSink {
    async fn put(&self, events: &[AuditEvent]) -> Result<PutReport, SinkError> {
        let mut report = PutReport::default();
        let mut round = Round::default();
        let all: Vec<usize> = (0..events.len()).collect();
        self.round(events, &all, &mut report, &mut round).await;
        // Skipped inside the documented window: the group keeps less, or a clock is off.
        if !round.skipped.is_empty() && !self.narrow.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                group = %self.group,
                events = round.skipped.len(),
                "CloudWatch Logs skipped events inside the 14 days it documents (the log group's retention is shorter, or a clock is off by an hour or more): from now on, timestamps are kept within the last 23 hours (each message keeps its true eventTime)"
            );
        }
        if !round.skipped.is_empty() && round.stop.is_none() {
            let again: Vec<usize> = std::mem::take(&mut round.skipped).into_iter().map(|(i, _, _)| i).collect();
            self.round(events, &again, &mut report, &mut round).await;
        }
        for (_, id, why) in round.skipped.drain(..) {
            report.failed.push(Refusal {
                id,
                code: why.code().into(),
                message: why.explain().into(),
                kind: RefusalKind::Retryable,
            });
        }
        // Nothing stored, and nothing refused on its own or the cause is the configuration: the put
        // as a whole failed.
        if let Some(stop) = round.stop.take() {
            let only_stopped = round.own_refusals == 0 && report.failed.iter().all(|r| r.code == stop.code);
            if report.successful.is_empty() && (only_stopped || stop.fatal) {
                return Err(stop.into_error());
            }
        }
        Ok(report)
    }

    fn describe(&self) -> String {
        match &self.region {
            Some(r) => format!("CloudWatch Logs group {} stream {} ({r})", self.group, self.stream),
            None => format!("CloudWatch Logs group {} stream {}", self.group, self.stream),
        }
    }

    fn limits(&self) -> CallLimits {
        CallLimits {
            max_events: MAX_EVENTS,
            max_bytes: MAX_BYTES,
        }
    }

    fn event_size(&self, event: &AuditEvent) -> usize {
        request::event_size(&event.event_data)
    }
}

#[cfg(test)]
mod tests;
