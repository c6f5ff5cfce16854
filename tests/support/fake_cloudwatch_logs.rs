//! A loopback fake of CloudWatch Logs' JSON 1.1 protocol (`X-Amz-Target: Logs_20140328.<Operation>`):
//! PutLogEvents, CreateLogStream, DescribeLogStreams, FilterLogEvents, CreateLogGroup. The real AWS SDK
//! talks to it through `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`.
//!
//! PutLogEvents keeps the service's documented rules: at most 10,000 events and 1,048,576 bytes (each
//! message's UTF-8 bytes + 26), events in chronological order spanning at most 24 hours
//! (`InvalidParameterException` otherwise, and the violation is recorded: the tests expect none);
//! events older than 14 days or the group's retention, or more than 2 hours ahead, are skipped and
//! reported in `rejectedLogEventsInfo` (indexes as AWS documents them: `tooNewLogEventStartIndex`
//! the first too new, the end indexes exclusive) while the rest are stored; a missing group or stream
//! is `ResourceNotFoundException`. Scripted faults: whole-call errors, throttling by a calls-per-second
//! quota, answers lost after the events were stored.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const GROUP: &str = "/kong/audit";
pub const DAY_MS: i64 = 86_400_000;

/// A scripted answer for the next PutLogEvents call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The whole call fails with this HTTP status and error type, nothing stored.
    Status(u16, &'static str),
    /// The events are stored (as the service would), then the answer is lost (HTTP 500).
    AcceptThenLose,
}

#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub stream: String,
    pub timestamp: i64,
    pub message: String,
    pub ingestion_time: i64,
    pub event_id: u64,
}

#[derive(Debug, Default)]
pub struct Group {
    pub retention_days: Option<i64>,
    /// Stream name → creation time.
    pub streams: BTreeMap<String, i64>,
}

#[derive(Debug, Default)]
pub struct LogsState {
    pub groups: BTreeMap<String, Group>,
    pub events: Vec<StoredEvent>,
    pub faults: VecDeque<Fault>,
    /// PutLogEvents calls allowed per second (0: no limit); more are `ThrottlingException`.
    pub quota_per_second: u32,
    window: Option<(Instant, u32)>,
    /// Every call received, by operation.
    pub calls: Vec<String>,
    pub put_calls: u64,
    pub throttled_calls: u64,
    /// Events skipped into `rejectedLogEventsInfo`, and the calls that reported some.
    pub skipped_events: u64,
    pub calls_with_skips: u64,
    /// The messages of each call stored by `AcceptThenLose`, whose answer was lost.
    pub lost_batches: Vec<Vec<String>>,
    /// Rules broken by a client (the tests expect none).
    pub violations: Vec<String>,
    /// Operations answered with `AccessDeniedException` (the role lacks `logs:<Operation>`).
    pub denied: Vec<&'static str>,
    /// A message holding this text makes the call invalid (an event the service refuses).
    pub poison: Option<String>,
    /// Answer every call after this long.
    pub latency: Duration,
    /// Keep only counts (benchmarks).
    pub count_only: bool,
    pub stored_count: u64,
    /// FilterLogEvents: how long after ingestion an event can be read back.
    pub filter_visible_after: Duration,
    /// FilterLogEvents answers an empty page with a token before each page of events (the service may).
    pub filter_empty_pages: bool,
    next_id: u64,
}

#[derive(Clone)]
pub struct FakeLogs {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<LogsState>>,
}

impl FakeLogs {
    /// A fake with the log group `GROUP` (retention: never expire) and no stream.
    pub async fn start() -> FakeLogs {
        let fake = Self::start_empty().await;
        fake.with(|s| s.groups.insert(GROUP.into(), Group::default()));
        fake
    }

    /// A fake with no log group at all.
    pub async fn start_empty() -> FakeLogs {
        let state = Arc::new(Mutex::new(LogsState::default()));
        let app = Router::new().route("/", post(handle)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeLogs { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut LogsState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn events(&self) -> Vec<StoredEvent> {
        self.with(|s| s.events.clone())
    }

    pub fn create_stream(&self, name: &str) {
        self.with(|s| s.groups.get_mut(GROUP).unwrap().streams.insert(name.into(), now_ms()));
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/x-amz-json-1.1")],
        json!({ "__type": kind, "message": message }).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, [("content-type", "application/x-amz-json-1.1")], body.to_string()).into_response()
}

fn invalid(s: &mut LogsState, message: String) -> Response {
    s.violations.push(message.clone());
    error(400, "InvalidParameterException", &message)
}

async fn handle(State(state): State<Arc<Mutex<LogsState>>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let op = target.strip_prefix("Logs_20140328.").unwrap_or(&target).to_string();
    let latency = state.lock().unwrap().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return error(400, "SerializationException", "the body is not JSON"),
    };
    let mut s = state.lock().unwrap();
    s.calls.push(op.clone());
    if s.denied.contains(&op.as_str()) {
        let message = format!(
            "User: arn:aws:sts::{ACCOUNT}:assumed-role/kong-audit-shipper/fn is not authorized to perform: logs:{op} on resource: arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{GROUP}:log-stream:"
        );
        return error(400, "AccessDeniedException", &message);
    }
    match op.as_str() {
        "PutLogEvents" => put_log_events(&mut s, &request),
        "CreateLogStream" => create_log_stream(&mut s, &request),
        "DescribeLogStreams" => describe_log_streams(&s, &request),
        "FilterLogEvents" => filter_log_events(&mut s, &request),
        "CreateLogGroup" => {
            let name = request["logGroupName"].as_str().unwrap_or_default().to_string();
            if s.groups.contains_key(&name) {
                return error(400, "ResourceAlreadyExistsException", "The specified log group already exists");
            }
            s.groups.insert(name, Group::default());
            ok(json!({}))
        }
        other => error(400, "UnknownOperationException", &format!("{other} is not faked")),
    }
}

fn put_log_events(s: &mut LogsState, request: &Value) -> Response {
    s.put_calls += 1;
    if s.quota_per_second > 0 {
        let now = Instant::now();
        let (start, count) = s.window.get_or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        *count += 1;
        if *count > s.quota_per_second {
            s.throttled_calls += 1;
            return error(400, "ThrottlingException", "Rate exceeded");
        }
    }
    let fault = s.faults.pop_front();
    if let Some(Fault::Status(status, kind)) = fault {
        if kind == "ThrottlingException" {
            s.throttled_calls += 1;
        }
        return error(status, kind, "injected");
    }
    let group_name = request["logGroupName"].as_str().unwrap_or_default();
    let stream = request["logStreamName"].as_str().unwrap_or_default().to_string();
    let Some(group) = s.groups.get(group_name) else {
        return error(400, "ResourceNotFoundException", "The specified log group does not exist.");
    };
    if !group.streams.contains_key(&stream) {
        return error(400, "ResourceNotFoundException", "The specified log stream does not exist.");
    }
    let retention = group.retention_days;
    let events = request["logEvents"].as_array().cloned().unwrap_or_default();
    if events.is_empty() || events.len() > 10_000 {
        return invalid(s, format!("{} events in one call (1 to 10,000)", events.len()));
    }
    let mut bytes = 0;
    let mut times = Vec::with_capacity(events.len());
    for e in &events {
        let (Some(t), Some(m)) = (e["timestamp"].as_i64(), e["message"].as_str()) else {
            return invalid(s, "an event without timestamp or message".into());
        };
        if m.is_empty() || m.len() + 26 > 1_048_576 {
            return invalid(s, format!("an event of {} bytes", m.len()));
        }
        bytes += m.len() + 26;
        times.push(t);
    }
    if bytes > 1_048_576 {
        return invalid(s, format!("{bytes} bytes in one call (at most 1,048,576)"));
    }
    if times.windows(2).any(|w| w[0] > w[1]) {
        return invalid(
            s,
            "Log events in a single PutLogEvents request must be in chronological order.".into(),
        );
    }
    if times[times.len() - 1] - times[0] > DAY_MS {
        return invalid(
            s,
            "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.".into(),
        );
    }
    if let Some(p) = s.poison.clone()
        && events.iter().any(|e| e["message"].as_str().unwrap_or_default().contains(&p))
    {
        return error(400, "InvalidParameterException", "Log event message is not valid (injected).");
    }
    let now = now_ms();
    let expired_before = retention.map(|d| now - d * DAY_MS);
    let mut info = serde_json::Map::new();
    let mut kept = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let t = times[i];
        if expired_before.is_some_and(|before| t < before) {
            info.insert("expiredLogEventEndIndex".into(), json!(i + 1));
        } else if t < now - 14 * DAY_MS {
            info.insert("tooOldLogEventEndIndex".into(), json!(i + 1));
        } else if t > now + 2 * 3_600_000 {
            info.entry("tooNewLogEventStartIndex").or_insert(json!(i));
        } else {
            kept.push((t, e["message"].as_str().unwrap().to_string()));
        }
    }
    let skipped = (events.len() - kept.len()) as u64;
    if skipped > 0 {
        s.skipped_events += skipped;
        s.calls_with_skips += 1;
    }
    let messages: Vec<String> = kept.iter().map(|(_, m)| m.clone()).collect();
    for (timestamp, message) in kept {
        s.next_id += 1;
        s.stored_count += 1;
        if !s.count_only {
            let event_id = s.next_id;
            s.events.push(StoredEvent {
                stream: stream.clone(),
                timestamp,
                message,
                ingestion_time: now,
                event_id,
            });
        }
    }
    if let Some(Fault::AcceptThenLose) = fault {
        s.lost_batches.push(messages);
        return error(500, "ServiceUnavailableException", "the answer was lost");
    }
    let mut answer = json!({ "nextSequenceToken": format!("{:056}", s.next_id) });
    if !info.is_empty() {
        answer["rejectedLogEventsInfo"] = Value::Object(info);
    }
    ok(answer)
}

fn create_log_stream(s: &mut LogsState, request: &Value) -> Response {
    let group_name = request["logGroupName"].as_str().unwrap_or_default();
    let stream = request["logStreamName"].as_str().unwrap_or_default().to_string();
    let Some(group) = s.groups.get_mut(group_name) else {
        return error(400, "ResourceNotFoundException", "The specified log group does not exist.");
    };
    if group.streams.contains_key(&stream) {
        return error(400, "ResourceAlreadyExistsException", "The specified log stream already exists");
    }
    group.streams.insert(stream, now_ms());
    ok(json!({}))
}

fn stream_arn(group: &str, stream: &str) -> String {
    format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:{stream}")
}

fn describe_log_streams(s: &LogsState, request: &Value) -> Response {
    let group_name = request["logGroupName"].as_str().unwrap_or_default();
    let prefix = request["logStreamNamePrefix"].as_str().unwrap_or_default();
    let Some(group) = s.groups.get(group_name) else {
        return error(400, "ResourceNotFoundException", "The specified log group does not exist.");
    };
    let limit = request["limit"].as_u64().unwrap_or(50) as usize;
    let streams: Vec<Value> = group
        .streams
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .take(limit)
        .map(|(name, created)| {
            json!({
                "logStreamName": name,
                "creationTime": created,
                "arn": stream_arn(group_name, name),
                "storedBytes": 0,
            })
        })
        .collect();
    ok(json!({ "logStreams": streams }))
}

/// Pages of `limit` events (default 10,000, at most that) in time order; `nextToken` is the next
/// index, or, with `filter_empty_pages`, first a token to an empty page.
fn filter_log_events(s: &mut LogsState, request: &Value) -> Response {
    let group_name = request["logGroupName"].as_str().unwrap_or_default();
    if !s.groups.contains_key(group_name) {
        return error(400, "ResourceNotFoundException", "The specified log group does not exist.");
    }
    let start = request["startTime"].as_i64().unwrap_or(i64::MIN);
    let end = request["endTime"].as_i64().unwrap_or(i64::MAX);
    let limit = request["limit"].as_u64().unwrap_or(10_000) as usize;
    if !(1..=10_000).contains(&limit) {
        return invalid(s, format!("FilterLogEvents limit {limit} is not 1 to 10000"));
    }
    let token = request["nextToken"].as_str().unwrap_or_default();
    let (empty_first, from): (bool, usize) = match token.strip_prefix('e') {
        Some(at) => (false, at.parse().unwrap_or(0)),
        None => (s.filter_empty_pages, token.parse().unwrap_or(0)),
    };
    if empty_first {
        return ok(json!({ "events": [], "searchedLogStreams": [], "nextToken": format!("e{from}") }));
    }
    let visible_before = now_ms() - s.filter_visible_after.as_millis() as i64;
    let mut matching: Vec<&StoredEvent> = s
        .events
        .iter()
        .filter(|e| e.timestamp >= start && e.timestamp <= end && e.ingestion_time <= visible_before)
        .collect();
    matching.sort_by_key(|e| (e.timestamp, e.event_id));
    let page: Vec<Value> = matching
        .iter()
        .skip(from)
        .take(limit)
        .map(|e| {
            json!({
                "logStreamName": e.stream,
                "timestamp": e.timestamp,
                "message": e.message,
                "ingestionTime": e.ingestion_time,
                "eventId": e.event_id.to_string(),
            })
        })
        .collect();
    let mut answer = json!({ "events": page, "searchedLogStreams": [] });
    if from + limit < matching.len() {
        answer["nextToken"] = json!((from + limit).to_string());
    }
    ok(answer)
}

/// How often each message was stored.
pub fn counts(events: &[StoredEvent]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for e in events {
        *counts.entry(e.message.clone()).or_insert(0) += 1;
    }
    counts
}
