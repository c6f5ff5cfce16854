//! A loopback fake of the CloudTrail Data endpoint (PutAuditEvents, restJson), strict about the
//! integration schema and limits, with scripted faults and an optional calls-per-second quota.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const ACCOUNT: &str = "123456789012";
pub const CHANNEL_ARN: &str = "arn:aws:cloudtrail:us-east-1:123456789012:channel/0f2d8a7e-kong-audit";

/// A scripted answer for the next call.
#[derive(Debug, Clone)]
pub enum CallFault {
    /// The whole call fails with this HTTP status and error type.
    Status(u16, &'static str),
    /// The events are accepted, then the answer is lost (500).
    AcceptThenLose,
    /// Every event of the call fails with this per-event code.
    EveryEvent(&'static str),
    /// The first `n` events of the call fail with this code; the rest are accepted.
    FirstEvents(usize, &'static str),
    /// The events are accepted, then the answer waits this long (a client killed meanwhile never
    /// learns the outcome).
    AcceptThenDelay(Duration),
}

#[derive(Debug, Default)]
pub struct CloudTrailState {
    pub channel_arn: String,
    pub external_id: Option<String>,
    pub faults: VecDeque<CallFault>,
    /// Events with these ids always fail with the given code.
    pub refuse: HashMap<String, &'static str>,
    /// Accepted events, in order: (id, eventData).
    pub accepted: Vec<(String, String)>,
    pub calls: u64,
    /// Calls that arrived, counted before `latency` (a call in progress is already counted).
    pub received: u64,
    /// The ids of each call accepted by `AcceptThenLose`/`AcceptThenDelay`, whose answer was lost.
    pub lost_batches: Vec<Vec<String>>,
    pub throttled_calls: u64,
    pub latency: Duration,
    /// PutAuditEvents calls allowed per second (0: no limit).
    pub quota_per_second: u32,
    window: Option<(Instant, u32)>,
    /// Schema violations seen (the test fails if any appear where none are expected).
    pub violations: Vec<String>,
    /// Keep only counts, not event bodies (benchmarks).
    pub count_only: bool,
    pub accepted_count: u64,
    /// Of `accepted_count`, the events of `/audit/requests` entries (ids `req-…`).
    pub accepted_request_count: u64,
    /// A share of events (0..1) refused with this per-event code, at random (seeded).
    pub random_event_refusal: Option<(f64, &'static str)>,
    /// A share of calls (0..1) failed whole with this status and error type, at random (seeded).
    pub random_call_failure: Option<(f64, u16, &'static str)>,
    /// The random faults' generator; seed it for a repeatable run.
    pub rng: Option<fastrand::Rng>,
    /// Events per call, one entry per call that was answered event by event.
    pub call_sizes: Vec<usize>,
    /// CloudTrail Lake: the event data store behind the channel, and its queries.
    pub lake: super::fake_lake::LakeState,
}

impl CloudTrailState {
    /// An accepted event, kept (or only counted) and made queryable.
    fn keep(&mut self, id: &str, data: &str) {
        if !self.count_only {
            self.accepted.push((id.to_string(), data.to_string()));
        }
        if self.lake.enabled
            && let Some(e) = super::fake_lake::LakeEvent::of(id, data, chrono::Utc::now().timestamp_millis())
        {
            self.lake.events.push(e);
        }
    }
}

#[derive(Clone)]
pub struct FakeCloudTrail {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<CloudTrailState>>,
}

impl FakeCloudTrail {
    pub async fn start() -> FakeCloudTrail {
        let state = Arc::new(Mutex::new(CloudTrailState {
            channel_arn: CHANNEL_ARN.into(),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/PutAuditEvents", post(put_audit_events))
            .route("/", post(control_plane))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeCloudTrail { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut CloudTrailState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn accepted(&self) -> Vec<(String, String)> {
        self.with(|s| s.accepted.clone())
    }

    /// How often each id was accepted.
    pub fn accepted_ids(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for (id, _) in self.accepted() {
            *counts.entry(id).or_insert(0) += 1;
        }
        counts
    }
}

/// CloudTrail's own API (awsJson 1.1, `AWS_ENDPOINT_URL_CLOUDTRAIL`): the Lake queries.
async fn control_plane(State(state): State<Arc<Mutex<CloudTrailState>>>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    super::fake_lake::handle(&mut state.lock().unwrap(), &target, &body)
}

pub fn error(status: u16, kind: &str, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap();
    (
        code,
        [("content-type", "application/x-amz-json-1.1"), ("x-amzn-errortype", kind)],
        json!({ "__type": kind, "message": message }).to_string(),
    )
        .into_response()
}

async fn put_audit_events(State(state): State<Arc<Mutex<CloudTrailState>>>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let latency = {
        let mut s = state.lock().unwrap();
        s.received += 1;
        s.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (delay, response) = answer(&state, query, body);
    if let Some(wait) = delay {
        tokio::time::sleep(wait).await;
    }
    response
}

/// The answer to one call, and how long to hold it back.
fn answer(state: &Mutex<CloudTrailState>, query: Option<String>, body: Bytes) -> (Option<Duration>, Response) {
    let mut s = state.lock().unwrap();
    s.calls += 1;
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
            return (None, error(429, "ThrottlingException", "Rate exceeded"));
        }
    }
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    if params.get("channelArn") != Some(&s.channel_arn) {
        return (None, error(404, "ChannelNotFound", "The specified channel was not found."));
    }
    if s.external_id.is_some() && params.get("externalId") != s.external_id.as_ref() {
        return (
            None,
            error(
                403,
                "AccessDeniedException",
                "User is not authorized to perform: cloudtrail-data:PutAuditEvents",
            ),
        );
    }
    if body.len() > 1_000_000 {
        return (None, error(400, "ValidationException", "request larger than 1 MB"));
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return (None, error(400, "SerializationException", "bad body")),
    };
    let events = request["auditEvents"].as_array().cloned().unwrap_or_default();
    if events.is_empty() || events.len() > 100 {
        return (None, error(400, "ValidationException", "auditEvents must have 1 to 100 members"));
    }
    let mut ids = HashSet::new();
    for e in &events {
        if !ids.insert(e["id"].as_str().unwrap_or_default().to_string()) {
            return (
                None,
                error(
                    400,
                    "DuplicatedAuditEventId",
                    "Two or more entries in the request have the same event ID.",
                ),
            );
        }
    }
    if let Some((share, status, kind)) = s.random_call_failure
        && s.rng.get_or_insert_with(fastrand::Rng::new).f64() < share
    {
        return (None, error(status, kind, "injected at random"));
    }
    let fault = s.faults.pop_front();
    match fault {
        Some(CallFault::Status(status, kind)) => return (None, error(status, kind, "injected")),
        Some(CallFault::AcceptThenLose) => {
            accept_and_lose_the_answer(&mut s, &events);
            return (None, error(500, "InternalServerException", "response lost"));
        }
        Some(CallFault::AcceptThenDelay(wait)) => {
            accept_and_lose_the_answer(&mut s, &events);
            return (Some(wait), error(500, "InternalServerException", "answered too late"));
        }
        _ => {}
    }
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for (n, e) in events.iter().enumerate() {
        let id = e["id"].as_str().unwrap_or_default().to_string();
        let data = e["eventData"].as_str().unwrap_or_default();
        let random = s
            .random_event_refusal
            .and_then(|(share, code)| (s.rng.get_or_insert_with(fastrand::Rng::new).f64() < share).then_some(code));
        let injected = match &fault {
            Some(CallFault::EveryEvent(code)) => Some(*code),
            Some(CallFault::FirstEvents(k, code)) if n < *k => Some(*code),
            _ => s.refuse.get(&id).copied().or(random),
        };
        let verdict = injected
            .map(|c| (c, "injected".to_string()))
            .or_else(|| validate(&id, data, e["eventDataChecksum"].as_str()));
        match verdict {
            Some((code, message)) => {
                if message != "injected" {
                    s.violations.push(format!("{id}: {code}: {message}"));
                }
                failed.push(json!({"id": id, "errorCode": code, "errorMessage": message}));
            }
            None => {
                s.accepted_count += 1;
                s.accepted_request_count += u64::from(id.starts_with("req-"));
                s.keep(&id, data);
                successful.push(json!({"id": id, "eventID": format!("{:032x}", s.accepted_count)}));
            }
        }
    }
    s.call_sizes.push(events.len());
    let ok = (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({"successful": successful, "failed": failed}).to_string(),
    )
        .into_response();
    (None, ok)
}

/// Accepts every event of a call whose answer the client will not see, and remembers the batch.
fn accept_and_lose_the_answer(s: &mut CloudTrailState, events: &[Value]) {
    let mut ids = Vec::new();
    for e in events {
        let id = e["id"].as_str().unwrap_or_default().to_string();
        ids.push(id.clone());
        s.keep(&id, e["eventData"].as_str().unwrap_or_default());
    }
    s.lost_batches.push(ids);
}

/// The integration schema's rules, as AWS documents them. `None` when the event is valid, else the
/// per-event error code CloudTrail would give and why. (Public so property tests check the same rules.)
pub fn validate(id: &str, data: &str, checksum: Option<&str>) -> Option<(&'static str, String)> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Some(("InvalidData", format!("id {id:?} does not match [-_A-Za-z0-9]{{1,128}}")));
    }
    if let Some(sum) = checksum {
        let expected = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data.as_bytes()));
        if sum != expected {
            return Some(("InvalidChecksum", "checksum mismatch".into()));
        }
    }
    let v: Value = match serde_json::from_str(data) {
        Ok(Value::Object(m)) => Value::Object(m),
        _ => return Some(("InvalidData", "eventData is not a JSON object".into())),
    };
    for (path, max) in [
        ("/version", 256),
        ("/userIdentity/type", 128),
        ("/userIdentity/principalId", 1024),
        ("/eventSource", 1024),
        ("/eventName", 1024),
        ("/eventTime", 64),
        ("/UID", 1024),
        ("/recipientAccountId", 12),
    ] {
        match v.pointer(path) {
            Some(Value::String(s)) if s.len() <= max => {}
            Some(Value::String(_)) => return Some(("FieldTooLong", format!("{path} too long"))),
            _ => return Some(("FieldNotFound", format!("{path} missing"))),
        }
    }
    for (path, max) in [("/userAgent", 1024), ("/errorCode", 256), ("/errorMessage", 256)] {
        if let Some(s) = v.pointer(path)
            && s.as_str().is_none_or(|s| s.len() > max)
        {
            return Some(("FieldTooLong", format!("{path} too long or not a string")));
        }
    }
    let time = v["eventTime"].as_str().unwrap();
    if chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%dT%H:%M:%SZ").is_err() || time.len() != 20 {
        return Some(("InvalidData", format!("eventTime {time:?} is not yyyy-MM-ddTHH:mm:ssZ")));
    }
    if v["recipientAccountId"] != ACCOUNT {
        return Some(("InvalidRecipient", "recipientAccountId is not the channel owner".into()));
    }
    if let Some(ip) = v.get("sourceIPAddress")
        && ip.as_str().and_then(|s| s.parse::<std::net::IpAddr>().ok()).is_none()
    {
        return Some(("InvalidData", "sourceIPAddress is not an IP address".into()));
    }
    for (field, max) in [
        ("additionalEventData", 28_000),
        ("requestParameters", 100_000),
        ("responseElements", 100_000),
    ] {
        if let Some(member) = v.get(field) {
            if !member.is_object() {
                return Some(("InvalidData", format!("{field} is not an object")));
            }
            if member.to_string().len() > max {
                return Some(("FieldTooLong", format!("{field} larger than {max} bytes")));
            }
        }
    }
    None
}
