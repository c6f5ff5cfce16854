//! The sink's decisions against an in-memory service that keeps PutLogEvents' rules (as AWS documents
//! them: the skipped-range indexes exclusive at the old end, inclusive at the new) and plays scripted
//! faults.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::request::{LogEvent, Skipped};
use super::*;

const DAY: i64 = 86_400_000;

#[derive(Default)]
struct State {
    group_exists: bool,
    stream_exists: bool,
    /// Days the group keeps events (`None`: the documented 14-day limit only).
    retention_days: Option<i64>,
    /// Answers for the next PutLogEvents calls, before anything else is looked at.
    faults: VecDeque<CallError>,
    /// Events stored and the call then answered with this error (the answer lost).
    lose_answers: VecDeque<CallError>,
    /// A message containing this makes the call invalid.
    poison: Option<String>,
    stored: Vec<LogEvent>,
    calls: usize,
    creates: usize,
    violations: Vec<String>,
}

#[derive(Default)]
struct Service(Mutex<State>);

impl Service {
    fn ready() -> Arc<Service> {
        let s = Service::default();
        {
            let mut st = s.0.lock().unwrap();
            st.group_exists = true;
            st.stream_exists = true;
        }
        Arc::new(s)
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }

    fn stored_ids(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for e in self.with(|s| s.stored.clone()) {
            *counts.entry(e.id).or_insert(0) += 1;
        }
        counts
    }
}

#[async_trait]
impl LogsApi for Service {
    async fn put_log_events(&self, events: &[LogEvent]) -> Result<Skipped, CallError> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut s = self.0.lock().unwrap();
        s.calls += 1;
        if let Some(fault) = s.faults.pop_front() {
            return Err(fault);
        }
        if !s.group_exists || !s.stream_exists {
            return Err(CallError::NotFound("The specified log stream does not exist.".into()));
        }
        let bytes: usize = events.iter().map(|e| e.message.len() + 26).sum();
        let ordered = events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp);
        let span = events.last().map_or(0, |l| l.timestamp - events[0].timestamp);
        if events.is_empty() || events.len() > 10_000 || bytes > 1_048_576 || !ordered || span > DAY {
            s.violations
                .push(format!("{} events, {bytes} bytes, ordered {ordered}, span {span}", events.len()));
            return Err(CallError::Invalid("InvalidParameterException".into()));
        }
        if let Some(p) = s.poison.clone()
            && events.iter().any(|e| e.message.contains(&p))
        {
            return Err(CallError::Invalid("PutLogEvents: InvalidParameterException: bad event".into()));
        }
        let expired_before = s.retention_days.map(|d| now - d * DAY);
        let (mut info, mut keep) = (Skipped::default(), Vec::new());
        for (i, e) in events.iter().enumerate() {
            if expired_before.is_some_and(|t| e.timestamp < t) {
                info.expired_end = Some(i as i32 + 1);
            } else if e.timestamp < now - 14 * DAY {
                info.too_old_end = Some(i as i32 + 1);
            } else if e.timestamp > now + 2 * 3_600_000 {
                info.too_new_start.get_or_insert(i as i32);
            } else {
                keep.push(e.clone());
            }
        }
        s.stored.extend(keep);
        if let Some(lost) = s.lose_answers.pop_front() {
            return Err(lost);
        }
        Ok(info)
    }

    async fn create_log_stream(&self) -> Result<(), CallError> {
        let mut s = self.0.lock().unwrap();
        s.creates += 1;
        if !s.group_exists {
            return Err(CallError::NotFound("The specified log group does not exist.".into()));
        }
        if s.stream_exists {
            return Err(CallError::AlreadyExists);
        }
        s.stream_exists = true;
        Ok(())
    }

    async fn describe_log_streams(&self, _prefix: Option<&str>) -> Result<Vec<StreamInfo>, CallError> {
        let s = self.0.lock().unwrap();
        if !s.group_exists {
            return Err(CallError::NotFound("The specified log group does not exist.".into()));
        }
        Ok(if s.stream_exists {
            vec![StreamInfo {
                name: "s".into(),
                arn: Some("arn:aws:logs:us-east-1:123456789012:log-group:g:log-stream:s".into()),
            }]
        } else {
            Vec::new()
        })
    }
}

fn sink_over(api: &Arc<Service>) -> CloudWatchLogsSink {
    let logs = LogsConfig {
        group: "g".into(),
        stream: "s".into(),
    };
    CloudWatchLogsSink::with_api(api.clone(), &logs, Some("us-east-1".into()))
}

fn ev(id: &str, age_ms: i64) -> AuditEvent {
    let now = chrono::Utc::now().timestamp_millis();
    let time = chrono::DateTime::from_timestamp_millis(now - age_ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ");
    AuditEvent {
        id: id.into(),
        event_data: format!(r#"{{"eventTime":"{time}","UID":"{id}","additionalEventData":{{"kongAuditEntry":{{"request_id":"{id}"}}}}}}"#),
    }
}

/// Entries over 30 days, newest first (the order does not matter to the sink).
fn month(n: usize) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| ev(&format!("e{i}"), (i as i64) * 30 * DAY / n as i64 + 60_000))
        .collect()
}

fn ids(events: &[AuditEvent]) -> Vec<String> {
    let mut ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn a_month_goes_out_in_calls_of_a_day_each_and_every_event_is_answered() {
    let api = Service::ready();
    let sink = sink_over(&api);
    let events = month(300);
    let report = sink.put(&events).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(sorted(report.successful), ids(&events));
    api.with(|s| {
        assert!(s.violations.is_empty(), "{:?}", s.violations);
        // 16 days older than the window share its edge; then one call per day.
        assert!((13..=16).contains(&s.calls), "{} calls", s.calls);
        let clamped = s.stored.iter().filter(|e| e.message.contains("logTimestampClamped")).count();
        assert!(clamped > 100 && clamped < 200, "{clamped}");
    });
    assert_eq!(api.stored_ids().values().max(), Some(&1), "each event once");
}

#[tokio::test]
async fn a_group_that_keeps_three_days_gets_everything_in_a_narrower_window() {
    let api = Service::ready();
    api.with(|s| s.retention_days = Some(3));
    let sink = sink_over(&api);
    let events = month(120);
    let report = sink.put(&events).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(sorted(report.successful), ids(&events));
    let stored = api.stored_ids();
    assert_eq!(stored.len(), events.len(), "nothing lost");
    // Only the edge of each skipped range may be stored twice: the price of reading the index
    // inclusively, paid once (the next put is narrow from the start).
    let twice = stored.values().filter(|n| **n > 1).count();
    assert!(twice <= 1, "{twice} duplicates");
    let calls = api.with(|s| s.calls);
    let again = month(40);
    let again: Vec<AuditEvent> = again
        .into_iter()
        .map(|mut e| {
            e.id = format!("b{}", e.id);
            e
        })
        .collect();
    let report = sink.put(&again).await.unwrap();
    assert_eq!(report.successful.len(), 40);
    assert_eq!(api.with(|s| s.calls) - calls, 1, "narrow from the start: one call, nothing skipped");
}

#[tokio::test]
async fn events_the_service_keeps_skipping_are_never_counted_as_stored() {
    let api = Service::ready();
    api.with(|s| s.retention_days = Some(0));
    let sink = sink_over(&api);
    let events = month(20);
    let report = sink.put(&events).await.unwrap();
    assert!(report.successful.is_empty());
    assert_eq!(report.failed.len(), 20);
    assert!(
        report
            .failed
            .iter()
            .all(|r| r.kind == RefusalKind::Retryable && r.code == "ExpiredLogEvent"),
        "{:?}",
        report.failed
    );
}

#[tokio::test]
async fn a_missing_stream_is_created_and_a_missing_group_is_named() {
    let api = Service::ready();
    api.with(|s| s.stream_exists = false);
    let sink = sink_over(&api);
    let report = sink.put(&month(5)).await.unwrap();
    assert_eq!(report.successful.len(), 5);
    assert_eq!(api.with(|s| s.creates), 1);

    let gone = Service::ready();
    gone.with(|s| {
        s.group_exists = false;
        s.stream_exists = false;
    });
    match sink_over(&gone).put(&month(5)).await {
        Err(SinkError::Fatal(text)) => assert!(text.starts_with("CLOUDWATCH_LOG_GROUP") && text.contains("'g'"), "{text}"),
        other => panic!("{other:?}"),
    }
    let err = sink_over(&gone).prepare(&Backoff::default()).await.unwrap_err();
    assert!(err.starts_with("CLOUDWATCH_LOG_GROUP"), "{err}");
}

#[tokio::test]
async fn prepare_creates_the_stream_and_names_the_account() {
    let api = Service::ready();
    api.with(|s| s.stream_exists = false);
    assert_eq!(sink_over(&api).prepare(&Backoff::default()).await.unwrap(), "123456789012");
    assert!(api.with(|s| s.stream_exists));
    assert_eq!(
        sink_over(&api).prepare(&Backoff::default()).await.unwrap(),
        "123456789012",
        "an existing stream is fine"
    );
    assert_eq!(api.with(|s| s.creates), 1);
}

#[tokio::test]
async fn a_throttled_put_is_throttled_whole_only_when_nothing_was_stored() {
    let api = Service::ready();
    api.with(|s| {
        s.faults
            .push_back(CallError::Throttled("ThrottlingException: Rate exceeded".into()))
    });
    assert!(matches!(sink_over(&api).put(&month(40)).await, Err(SinkError::Throttled(_))));
    assert!(api.stored_ids().is_empty());

    // The second call of a put is throttled: the first call's events are stored and reported so,
    // the others are throttled (and the calls after it not sent).
    let api = Service::ready();
    let sink = failing(&api, 2, 2, CallError::Throttled("ThrottlingException: Rate exceeded".into()));
    let events = month(60);
    let report = sink.put(&events).await.unwrap();
    assert!(!report.successful.is_empty());
    assert_eq!(report.successful.len() + report.failed.len(), events.len());
    assert!(report.failed.iter().all(|r| r.kind == RefusalKind::Throttled));
    let stored = api.stored_ids();
    assert_eq!(stored.len(), report.successful.len());
    assert!(report.successful.iter().all(|id| stored.contains_key(id)));
    assert_eq!(api.with(|s| s.calls), 1, "no call after the throttled one");
}

/// A sink whose PutLogEvents calls number `from..=until` (from 1) fail with `error`; the others go to `inner`.
fn failing(inner: &Arc<Service>, from: usize, until: usize, error: CallError) -> CloudWatchLogsSink {
    let api = Arc::new(Failing {
        inner: inner.clone(),
        from,
        until,
        error,
        calls: Mutex::new(0),
    });
    let logs = LogsConfig {
        group: "g".into(),
        stream: "s".into(),
    };
    CloudWatchLogsSink::with_api(api, &logs, None)
}

struct Failing {
    inner: Arc<Service>,
    from: usize,
    until: usize,
    error: CallError,
    calls: Mutex<usize>,
}

#[async_trait]
impl LogsApi for Failing {
    async fn put_log_events(&self, events: &[LogEvent]) -> Result<Skipped, CallError> {
        let n = {
            let mut c = self.calls.lock().unwrap();
            *c += 1;
            *c
        };
        if (self.from..=self.until).contains(&n) {
            return Err(self.error.clone());
        }
        self.inner.put_log_events(events).await
    }
    async fn create_log_stream(&self) -> Result<(), CallError> {
        self.inner.create_log_stream().await
    }
    async fn describe_log_streams(&self, prefix: Option<&str>) -> Result<Vec<StreamInfo>, CallError> {
        self.inner.describe_log_streams(prefix).await
    }
}

#[tokio::test]
async fn a_lost_answer_is_a_transient_failure_of_the_whole_put() {
    let api = Service::ready();
    api.with(|s| {
        s.lose_answers
            .push_back(CallError::Transient("PutLogEvents did not complete: timeout".into()))
    });
    let events: Vec<AuditEvent> = (0..10).map(|i| ev(&format!("e{i}"), 60_000)).collect();
    assert!(matches!(sink_over(&api).put(&events).await, Err(SinkError::Transient(_))));
    assert_eq!(
        api.stored_ids().len(),
        10,
        "stored, but the client cannot know: the cycle sends them again"
    );
}

#[tokio::test]
async fn one_invalid_event_is_isolated_and_refused_for_good_once_others_were_stored() {
    let api = Service::ready();
    let sink = sink_over(&api);
    // Before anything was stored, an invalid call may be the configuration's fault: retried, not dead-lettered.
    api.with(|s| s.poison = Some("poison".into()));
    let mut lone = ev("p0", 60_000);
    lone.event_data = lone.event_data.replace("\"UID\"", "\"poison\":1,\"UID\"");
    let report = sink.put(std::slice::from_ref(&lone)).await.unwrap();
    assert_eq!((report.failed.len(), report.failed[0].kind), (1, RefusalKind::Retryable));
    // The invalid event first in line does not hold back the others.
    let mut first = vec![lone.clone()];
    first.extend((0..7).map(|i| ev(&format!("f{i}"), 60_000)));
    let report = sink.put(&first).await.unwrap();
    assert_eq!(report.successful.len(), 7);
    assert_eq!(report.failed.len(), 1);

    let mut events: Vec<AuditEvent> = (0..64).map(|i| ev(&format!("e{i}"), 60_000 + i)).collect();
    events[37].event_data = events[37].event_data.replace("\"UID\"", "\"poison\":1,\"UID\"");
    let report = sink.put(&events).await.unwrap();
    assert_eq!(report.successful.len(), 63);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(
        (report.failed[0].id.as_str(), report.failed[0].kind),
        ("e37", RefusalKind::Permanent)
    );
    assert!(report.failed[0].message.contains("bad event"));
    assert!(api.with(|s| s.calls) <= 6 + 1 + 2 * 7, "found by halving");
    // Now that events were stored, the lone invalid event is refused for good.
    let report = sink.put(std::slice::from_ref(&lone)).await.unwrap();
    assert_eq!(report.failed[0].kind, RefusalKind::Permanent);
}

#[tokio::test]
async fn a_service_that_calls_every_event_invalid_stops_the_run_instead_of_dead_lettering() {
    let api = Service::ready();
    api.with(|s| s.poison = Some("\"UID\"".into()));
    let events: Vec<AuditEvent> = (0..5000).map(|i| ev(&format!("e{i}"), 60_000)).collect();
    match sink_over(&api).put(&events).await {
        Err(SinkError::Fatal(text)) => assert!(text.contains("every call is refused as invalid"), "{text}"),
        other => panic!("{other:?}"),
    }
    assert!(api.with(|s| s.calls) <= 1 + 2 * HALVING_BUDGET);
}

#[tokio::test]
async fn a_fatal_error_after_some_calls_stored_events_leaves_the_rest_to_retry_then_stops() {
    let api = Service::ready();
    let denied = CallError::Fatal("PutLogEvents refused: access denied: the role needs logs:PutLogEvents".into());
    let sink = failing(&api, 2, usize::MAX, denied);
    let report = sink.put(&month(60)).await.unwrap();
    assert!(!report.successful.is_empty());
    assert!(
        report
            .failed
            .iter()
            .all(|r| r.kind == RefusalKind::Retryable && r.code.contains("logs:PutLogEvents"))
    );
    match sink.put(&month(5)).await {
        Err(SinkError::Fatal(text)) => assert!(text.contains("logs:PutLogEvents"), "{text}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_event_larger_than_logs_takes_is_refused_for_good_and_the_rest_go() {
    let api = Service::ready();
    let mut events = month(3);
    events[1].event_data = events[1]
        .event_data
        .replace("\"UID\"", &format!("\"pad\":\"{}\",\"UID\"", "x".repeat(MAX_BYTES)));
    let report = sink_over(&api).put(&events).await.unwrap();
    assert_eq!(report.successful.len(), 2);
    assert_eq!(
        (report.failed[0].code.as_str(), report.failed[0].kind),
        ("EventTooLarge", RefusalKind::Permanent)
    );
}

#[test]
fn limits_and_sizes_are_the_services() {
    let api = Service::ready();
    let sink = sink_over(&api);
    assert_eq!(
        sink.limits(),
        CallLimits {
            max_events: 10_000,
            max_bytes: 1_048_576
        }
    );
    let e = AuditEvent {
        id: "a".into(),
        event_data: "é".into(),
    };
    assert_eq!(sink.event_size(&e), 2 + 26);
    assert!(sink.describe().contains("group g stream s"));
}
