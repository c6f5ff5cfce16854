//! A loopback fake of Konnect's `GET /v3/audit-logs`, keeping the spec's rules: bearer token, the
//! three entry shapes, inclusive `filter[ts][gte]`/`filter[ts][lte]`, `page[size]` up to 1,000,
//! opaque `page[after]` cursors handed out in `meta.page.next` as paths without `/v3`, newest first,
//! `application/problem+json` for 400/401/403. Besides: entries inserted between page fetches, entries
//! stamped in the past (late), retention, 429 with and without `Retry-After`, 5xx, delays.
//!
//! It also checks the client: every query is recorded, and what a walk must not do (brackets not
//! encoded, an unknown parameter, a bound missing, filters or size changed between the pages of one
//! walk) is answered 400 and kept in `violations`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde_json::value::RawValue;
use serde_json::{Value, json};

pub const TOKEN: &str = "kpat_FAKEfakeFAKEfake0123456789";

/// An injected answer for the next request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answers normally: queued before another fault, it aims that one at a later request.
    Pass,
    /// This status with a JSON body (a 5xx, say).
    Status(u16),
    /// 429 with this `Retry-After` (seconds or an HTTP date), or none.
    TooManyRequests { retry_after: Option<String> },
    /// 403 as the spec gives it.
    Forbidden,
    /// 400 as the spec gives it, naming a parameter.
    BadRequest,
    /// A proxy's HTML page with a 200.
    Html,
    /// Waits this long, then answers normally.
    Delay(Duration),
    /// Answers normally, with the cursor of the answer before as `next`.
    RepeatCursor,
    /// Answers normally, without `meta`.
    NoMeta,
}

/// How cursors point into the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorMode {
    /// After the last entry served (by time, then insertion): stable while entries arrive.
    Keyset,
    /// After the first n entries of the window: an entry inserted ahead of the position pushes an
    /// entry already served into the next page (served twice), never one unread out of reach.
    Offset,
}

/// The shape of `meta.page.next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStyle {
    /// The spec's example: `/audit-logs?page[after]=…`, no `/v3`.
    Path,
    /// `/audit-logs?page%5Bafter%5D=…`.
    EncodedPath,
    /// A full URL with `/v3` and the filters.
    Url,
    /// The cursor alone.
    Bare,
    /// `meta.next` instead of `meta.page.next`.
    TopLevel,
}

#[derive(Debug, Clone)]
struct Stored {
    raw: String,
    ts: DateTime<Utc>,
    seq: u64,
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Filters {
    gte: DateTime<Utc>,
    lte: DateTime<Utc>,
    kind: Option<String>,
    size: usize,
}

#[derive(Debug, Clone, Copy)]
enum Position {
    Keyset(DateTime<Utc>, u64),
    Offset(usize),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    /// Path and query exactly as sent.
    pub uri: String,
    /// The decoded query parameters, in order.
    pub params: Vec<(String, String)>,
}

impl Received {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
pub struct KonnectState {
    pub token: String,
    /// Entries older than this (by `ts`, against the real clock) are deleted before every answer.
    pub retention: Option<chrono::Duration>,
    pub cursor_mode: CursorMode,
    pub next_style: NextStyle,
    /// Serve each entry with its members in another order on every read.
    pub shuffle_fields: bool,
    entries: Vec<Stored>,
    next_seq: u64,
    pub faults: VecDeque<Fault>,
    /// After each page answered, the next batch of entries is inserted: entries arriving during a walk.
    pub inserts_after_page: VecDeque<Vec<String>>,
    pub received: Vec<Received>,
    /// What a client did that a walk must not do.
    pub violations: Vec<String>,
    cursors: HashMap<String, (Filters, Position)>,
    last_cursor: Option<String>,
    reads: u64,
    /// Pages answered with 200.
    pub pages: u64,
    /// How long every answer takes (benchmarks).
    pub latency: Duration,
    /// Konnect's clock less the real one: every answer's `Date` and the retention follow it (tests
    /// stamp entries by `FakeKonnect::now`).
    pub clock_offset: chrono::Duration,
}

#[derive(Clone)]
pub struct FakeKonnect {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<KonnectState>>,
    prefix: String,
}

impl FakeKonnect {
    pub async fn start() -> FakeKonnect {
        Self::start_with_prefix("").await
    }

    /// Serves `<prefix>/v3/audit-logs` (a proxy that mounts Konnect below a path).
    pub async fn start_with_prefix(prefix: &str) -> FakeKonnect {
        let state = Arc::new(Mutex::new(KonnectState {
            token: TOKEN.to_string(),
            retention: None,
            cursor_mode: CursorMode::Keyset,
            next_style: NextStyle::Path,
            shuffle_fields: false,
            entries: Vec::new(),
            next_seq: 0,
            faults: VecDeque::new(),
            inserts_after_page: VecDeque::new(),
            received: Vec::new(),
            violations: Vec::new(),
            cursors: HashMap::new(),
            last_cursor: None,
            reads: 0,
            pages: 0,
            latency: Duration::ZERO,
            clock_offset: chrono::Duration::zero(),
        }));
        let app = Router::new()
            .route(&format!("{prefix}/v3/audit-logs"), get(audit_logs))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeKonnect {
            addr,
            state,
            prefix: prefix.to_string(),
        }
    }

    /// The base URL, what `KONNECT_API_URL` takes.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.prefix)
    }

    /// Konnect's clock (the real one, unless `clock_offset` moves it).
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.with(|s| s.clock_offset)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut KonnectState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Adds entries as JSON values (their `ts` places them).
    pub fn add(&self, entries: &[Value]) {
        self.add_raw(entries.iter().map(Value::to_string));
    }

    /// Adds entries given as JSON text; each must carry an RFC 3339 `ts`.
    pub fn add_raw(&self, texts: impl IntoIterator<Item = String>) {
        self.with(|s| {
            for raw in texts {
                s.insert(raw);
            }
        });
    }

    /// Queues a fault for the next request.
    pub fn fault(&self, fault: Fault) {
        self.with(|s| s.faults.push_back(fault));
    }

    pub fn received(&self) -> Vec<Received> {
        self.with(|s| s.received.clone())
    }

    pub fn violations(&self) -> Vec<String> {
        self.with(|s| s.violations.clone())
    }

    pub fn len(&self) -> usize {
        self.with(|s| s.entries.len())
    }
}

impl KonnectState {
    fn insert(&mut self, raw: String) {
        let v: Value = serde_json::from_str(&raw).expect("a fake entry is JSON");
        let ts = v["ts"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .expect("a fake entry has an RFC 3339 ts")
            .with_timezone(&Utc);
        self.entries.push(Stored {
            raw,
            ts,
            seq: self.next_seq,
            kind: v["type"].as_str().unwrap_or("authentication").to_string(),
        });
        self.next_seq += 1;
    }

    fn issue_cursor(&mut self, filters: Filters, position: Position) -> String {
        let n = self.cursors.len();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{{\"page\":{n},\"r\":{}}}", fastrand::u32(..)));
        self.cursors.insert(token.clone(), (filters, position));
        token
    }

    /// An entry's text, its members in another order on each read when asked to.
    fn serve(&self, raw: &str) -> String {
        if !self.shuffle_fields {
            return raw.to_string();
        }
        let Ok(members) = serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(raw) else {
            return raw.to_string();
        };
        let mut members: Vec<_> = members.into_iter().collect();
        let n = members.len().max(1);
        members.rotate_left(self.reads as usize % n);
        if self.reads % 2 == 1 {
            members.reverse();
        }
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v.get()))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

fn problem(status: u16, title: &str, detail: &str, invalid: Option<(&str, &str)>) -> Response {
    let mut body = json!({
        "status": status,
        "title": title,
        "instance": format!("kong:trace:{}", fastrand::u64(1_000_000_000..9_999_999_999)),
        "detail": detail,
    });
    if let Some((field, reason)) = invalid {
        body["invalid_parameters"] = json!([{ "field": field, "rule": "invalid", "source": "query", "reason": reason }]);
    }
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

const KNOWN_PARAMS: [&str; 6] = [
    "filter[ts][gte]",
    "filter[ts][lte]",
    "filter[type]",
    "page[size]",
    "page[after]",
    "page[before]",
];

/// Every answer carries Konnect's clock in its `Date`, as any HTTP server's does.
async fn audit_logs(state: State<Arc<Mutex<KonnectState>>>, query: RawQuery, headers: HeaderMap) -> Response {
    let offset = state.lock().unwrap().clock_offset;
    let mut response = answer(state, query, headers).await;
    let date = (Utc::now() + offset).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    response.headers_mut().insert("date", HeaderValue::from_str(&date).unwrap());
    response
}

async fn answer(State(state): State<Arc<Mutex<KonnectState>>>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let query = query.unwrap_or_default();
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let (fault, latency) = {
        let mut s = state.lock().unwrap();
        s.received.push(Received {
            at: Instant::now(),
            uri: format!("/v3/audit-logs?{query}"),
            params: params.clone(),
        });
        (s.faults.pop_front(), s.latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut repeat_cursor = false;
    let mut no_meta = false;
    match fault {
        Some(Fault::Status(code)) => {
            return (
                StatusCode::from_u16(code).unwrap(),
                [("content-type", "application/json")],
                json!({"message": "An unexpected error occurred"}).to_string(),
            )
                .into_response();
        }
        Some(Fault::TooManyRequests { retry_after }) => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                [("content-type", "application/json")],
                json!({"message": "API rate limit exceeded"}).to_string(),
            )
                .into_response();
            if let Some(after) = retry_after {
                r.headers_mut().insert("retry-after", HeaderValue::from_str(&after).unwrap());
            }
            return r;
        }
        Some(Fault::Forbidden) => {
            return problem(403, "Forbidden", "You do not have permission to perform this action", None);
        }
        Some(Fault::BadRequest) => {
            return problem(
                400,
                "Bad Request",
                "Invalid Parameters",
                Some(("filter[ts][gte]", "is not a valid date-time")),
            );
        }
        Some(Fault::Html) => {
            return (
                StatusCode::OK,
                [("content-type", "text/html")],
                "<html><body><h1>Welcome to nginx!</h1></body></html>",
            )
                .into_response();
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::RepeatCursor) => repeat_cursor = true,
        Some(Fault::NoMeta) => no_meta = true,
        Some(Fault::Pass) | None => {}
    }

    let mut s = state.lock().unwrap();
    let expected = format!("Bearer {}", s.token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return problem(401, "Unauthorized", "Unauthorized", None);
    }
    if let Some(keep) = s.retention {
        let oldest = Utc::now() + s.clock_offset - keep;
        s.entries.retain(|e| e.ts >= oldest);
    }

    // The query, read strictly: what the client sent must be exactly a walk's parameters.
    let violation = |s: &mut KonnectState, field: &str, reason: String| {
        s.violations.push(format!("{field}: {reason} (query {query})"));
        problem(400, "Bad Request", "Invalid Parameters", Some((field, &reason)))
    };
    if query.contains('[') || query.contains(']') {
        return violation(&mut s, "query", "brackets are not percent-encoded".into());
    }
    let mut seen = HashMap::new();
    for (k, v) in &params {
        if !KNOWN_PARAMS.contains(&k.as_str()) {
            return violation(&mut s, k, "unknown parameter".into());
        }
        if seen.insert(k.clone(), v.clone()).is_some() {
            return violation(&mut s, k, "given twice".into());
        }
    }
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, String> {
        seen.get(name)
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| format!("{v:?} is not an RFC 3339 date-time"))
            })
            .transpose()
    };
    let (gte, lte) = match (time("filter[ts][gte]"), time("filter[ts][lte]")) {
        (Ok(Some(gte)), Ok(Some(lte))) => (gte, lte),
        (Err(e), _) => return violation(&mut s, "filter[ts][gte]", e),
        (_, Err(e)) => return violation(&mut s, "filter[ts][lte]", e),
        _ => return violation(&mut s, "filter[ts]", "a walk must fix both bounds".into()),
    };
    let size = match seen.get("page[size]").map(|v| v.parse::<usize>()) {
        None => 20,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return violation(&mut s, "page[size]", "must be an integer from 1 to 1000".into()),
    };
    let filters = Filters {
        gte,
        lte,
        kind: seen.get("filter[type]").cloned(),
        size,
    };
    let position = match seen.get("page[after]") {
        None => None,
        Some(cursor) => match s.cursors.get(cursor).cloned() {
            None => return violation(&mut s, "page[after]", format!("{cursor:?} is not a cursor this server gave")),
            Some((issued, _)) if issued != filters => {
                return violation(
                    &mut s,
                    "page[after]",
                    format!("the filters or the size changed within a walk: {issued:?} then {filters:?}"),
                );
            }
            Some((_, position)) => Some(position),
        },
    };

    // Newest first, by time then by insertion.
    let mut window: Vec<&Stored> = s
        .entries
        .iter()
        .filter(|e| gte <= e.ts && e.ts <= lte && filters.kind.as_ref().is_none_or(|k| *k == e.kind))
        .collect();
    window.sort_by_key(|e| std::cmp::Reverse((e.ts, e.seq)));
    let skip = match position {
        None => 0,
        Some(Position::Offset(n)) => n,
        Some(Position::Keyset(ts, seq)) => window.partition_point(|e| (e.ts, e.seq) >= (ts, seq)),
    };
    let rest = &window[skip.min(window.len())..];
    let served: Vec<Stored> = rest.iter().take(size).map(|e| (*e).clone()).collect();
    let more = rest.len() > size;
    let next_position = match s.cursor_mode {
        CursorMode::Keyset => served.last().map(|e| Position::Keyset(e.ts, e.seq)),
        CursorMode::Offset => Some(Position::Offset(skip + served.len())),
    };
    let mut next = match (more, next_position) {
        (true, Some(p)) => Some(s.issue_cursor(filters.clone(), p)),
        _ => None,
    };
    if repeat_cursor {
        next = s.last_cursor.clone().or(next);
    }
    if next.is_some() {
        s.last_cursor = next.clone();
    }
    s.reads += 1;
    let data: Vec<String> = served.iter().map(|e| s.serve(&e.raw)).collect();
    let next_text = next.map(|c| match s.next_style {
        NextStyle::Path | NextStyle::TopLevel => format!("/audit-logs?page[after]={c}"),
        NextStyle::EncodedPath => format!("/audit-logs?page%5Bafter%5D={c}"),
        NextStyle::Url => {
            let filters: Vec<String> = params
                .iter()
                .filter(|(k, _)| k != "page[after]")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("https://us.api.konghq.com/v3/audit-logs?{}&page[after]={c}", filters.join("&"))
        }
        NextStyle::Bare => c,
    });
    let page = json!({
        "first": "/audit-logs",
        "next": next_text,
        "previous": Value::Null,
        "size": served.len(),
    });
    let meta = match (no_meta, s.next_style) {
        (true, _) => None,
        (false, NextStyle::TopLevel) => Some(json!({ "next": next_text })),
        (false, _) => Some(json!({ "page": page })),
    };
    let mut body = format!("{{\"data\":[{}]", data.join(","));
    if let Some(meta) = meta {
        body.push_str(&format!(",\"meta\":{meta}"));
    }
    body.push('}');
    s.pages += 1;
    if let Some(batch) = s.inserts_after_page.pop_front() {
        for raw in batch {
            s.insert(raw);
        }
    }
    (StatusCode::OK, [("content-type", "application/json")], body).into_response()
}

/// The three shapes.
pub const TYPES: [&str; 3] = ["authentication", "authorization", "gateway_access"];

/// An RFC 3339 time, in UTC or with an offset, with milliseconds.
pub fn rfc3339(t: DateTime<Utc>, offset_minutes: i32) -> String {
    let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
    t.with_timezone(&offset).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A base64url Ed25519-sized signature, unique per `n`.
pub fn signature(n: u64) -> String {
    use sha2::{Digest, Sha512};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha512::digest(n.to_le_bytes()))
}

/// An entry of one of the three shapes as the spec gives it, its `trace_id` `t<n>` (what tests
/// identify it by). Unsigned entries are keyed by their digest instead.
pub fn entry(kind: &str, n: u64, ts: &str, signed: bool) -> Value {
    let mut e = match kind {
        "authentication" => {
            let ok = !n.is_multiple_of(4);
            let mut e = json!({
                "type": "authentication",
                "successful": ok,
                "outcome": if ok { "success" } else { "invalid_password" },
                "authentication_type": (["sso", "pat", "spat", "basic"][n as usize % 4]),
                "org_id": "6945c4c4-1b2c-4d5e-8f90-0123456789ab",
                "client_ip": format!("10.0.{}.{}", n % 250, (n / 250) % 250),
                "uri": "/v2/auth/login",
                "user_agent": "Mozilla/5.0",
                "trace_id": format!("t{n}"),
                "ts": ts,
            });
            if ok {
                e["principal_id"] = json!(format!("user_{n:016x}"));
            }
            e
        }
        "authorization" => json!({
            "type": "authorization",
            "service": "servicehub",
            "resource": format!("krn:kong:gateway:us-west-2:a123456789012:{n:08x}"),
            "action": (["kong.gateway.request", "list", "read"][n as usize % 3]),
            "granted": !n.is_multiple_of(5),
            "org_id": "6945c4c4-1b2c-4d5e-8f90-0123456789ab",
            "principal_id": format!("user_{n:016x}"),
            "actor_id": "",
            "client_ip": "127.0.0.1",
            "uri": "/v2/api/endpoint",
            "user_agent": "kongctl/1.14",
            "trace_id": format!("t{n}"),
            "ts": ts,
        }),
        _ => json!({
            "type": "gateway_access",
            "org_id": "6945c4c4-1b2c-4d5e-8f90-0123456789ab",
            "principal_id": format!("user_{n:016x}"),
            "actor_id": format!("user_{:016x}", n + 1),
            "client_ip": "2001:db8::7",
            "trace_id": format!("t{n}"),
            "user_agent": "grpc-go/1.54.0",
            "method": (["GET", "POST", "DELETE"][n as usize % 3]),
            "uri": "/v2/gateway/services",
            "query": "filter=active",
            "status_code": ([200, 201, 404, 500][n as usize % 4]),
            "ts": ts,
        }),
    };
    if signed {
        e["signature"] = json!(signature(n));
    }
    e
}

/// `n` entries of the three shapes spread evenly over `[from, to]`, one in seven unsigned, one in
/// five stamped with a `+02:00` offset.
pub fn trail(n: u64, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Value> {
    let span = (to - from).num_milliseconds().max(0);
    (0..n)
        .map(|i| {
            let at = from + chrono::Duration::milliseconds(if n > 1 { span * i as i64 / (n as i64 - 1) } else { 0 });
            let offset = if i % 5 == 0 { 120 } else { 0 };
            entry(TYPES[i as usize % 3], i, &rfc3339(at, offset), i % 7 != 0)
        })
        .collect()
}
