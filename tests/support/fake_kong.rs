//! A loopback fake of Kong's Admin API audit endpoints: versioned behaviour, keyset paging, filters,
//! RBAC token, fault injection, rows signed as Kong signs them. Shared by the tests, the `fake-kong`
//! example and the benchmark.
#![allow(dead_code)]

#[path = "kong_signer.rs"]
pub mod kong_signer;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};

use kong_signer::KongSigner;

/// An injected answer for the next audit request.
#[derive(Debug, Clone)]
pub enum Fault {
    Status(u16),
    TooManyRequests {
        retry_after_secs: u64,
    },
    HtmlPage,
    /// Waits this long before answering normally.
    Delay(Duration),
    /// Answers normally but puts this text in `data` as an extra entry.
    ExtraEntry(String),
    /// Answers with a cursor that Kong then refuses (400).
    BrokenOffset,
    /// Answers with an `offset` that is not a string (a proxy rewriting the body, a Kong bug).
    NumericOffset,
}

#[derive(Debug, Clone)]
struct Row {
    raw: String,
    key: String,
    ts: Option<i64>,
}

#[derive(Debug)]
pub struct KongState {
    pub version: String,
    pub record_ttl: i64,
    pub token: Option<String>,
    pub audit_enabled: bool,
    /// Added to every page answer.
    pub latency: Duration,
    requests: Vec<Row>,
    objects: Vec<Row>,
    sorted: HashMap<(&'static str, &'static str), Vec<usize>>,
    pub faults: VecDeque<Fault>,
    /// Faults for one endpoint only (`requests` or `objects`), taken before `faults`: the two
    /// endpoints are read at the same time, so only these target one of them for sure.
    pub kind_faults: HashMap<String, VecDeque<Fault>>,
    /// Path and query of every request received, in order.
    pub log: Vec<String>,
    /// Path and query of every page answered with entries, in order (after `latency`).
    pub answered: Vec<String>,
    pub page_hits: u64,
    /// Signs this share of the rows added from now on, as Kong does with `audit_log_signing_key`.
    pub signing: Option<Signing>,
    /// Faults for `GET /`.
    pub root_faults: VecDeque<Fault>,
    /// Kong's clock less the real one, in seconds: the `Date` of `GET /` says so.
    pub clock_offset: i64,
}

#[derive(Debug, Clone)]
pub struct Signing {
    pub signer: Arc<KongSigner>,
    /// 0.0 to 1.0, spread evenly over the rows in the order they are added.
    pub share: f64,
    /// Rows added since signing began.
    pub added: u64,
}

#[derive(Clone)]
pub struct FakeKong {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<KongState>>,
}

fn has_filters(version: &str) -> bool {
    let nums: Vec<u32> = version
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .take(4)
        .collect();
    let v = [
        nums.first().copied().unwrap_or(0),
        nums.get(1).copied().unwrap_or(0),
        nums.get(2).copied().unwrap_or(0),
        nums.get(3).copied().unwrap_or(0),
    ];
    match (v[0], v[1]) {
        (m, _) if m > 3 => true,
        (3, n) if n >= 7 => true,
        (3, 6) => v >= [3, 6, 1, 5],
        (3, 5) => v >= [3, 5, 0, 5],
        (3, 4) => v >= [3, 4, 3, 9],
        _ => false,
    }
}

impl FakeKong {
    pub async fn start(version: &str) -> FakeKong {
        Self::start_on("127.0.0.1:0", version).await
    }

    pub async fn start_on(bind: &str, version: &str) -> FakeKong {
        let state = Arc::new(Mutex::new(KongState {
            version: version.to_string(),
            record_ttl: 2_592_000,
            token: None,
            audit_enabled: true,
            latency: Duration::ZERO,
            requests: Vec::new(),
            objects: Vec::new(),
            sorted: HashMap::new(),
            faults: VecDeque::new(),
            kind_faults: HashMap::new(),
            log: Vec::new(),
            answered: Vec::new(),
            page_hits: 0,
            signing: None,
            root_faults: VecDeque::new(),
            clock_offset: 0,
        }));
        let app = Router::new()
            .route("/", get(root))
            .route("/audit/{kind}", get(audit))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeKong { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut KongState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Adds entries given as JSON text (anything, even malformed entries).
    pub fn add_raw(&self, kind: &str, texts: impl IntoIterator<Item = String>) {
        self.with(|s| {
            let key_field = if kind == "requests" { "request_id" } else { "id" };
            let rows = if kind == "requests" { &mut s.requests } else { &mut s.objects };
            for raw in texts {
                let v: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
                let key = match &v[key_field] {
                    Value::String(k) => k.clone(),
                    Value::Null => format!("~{}", rows.len()),
                    other => other.to_string(),
                };
                rows.push(Row {
                    ts: v["request_timestamp"].as_i64(),
                    key,
                    raw,
                });
            }
            s.sorted.clear();
        });
    }

    pub fn add(&self, kind: &str, entries: &[Value]) {
        let signing = self.with(|s| {
            let now = s.signing.clone();
            if let Some(g) = s.signing.as_mut() {
                g.added += entries.len() as u64;
            }
            now
        });
        match signing {
            None => self.add_raw(kind, entries.iter().map(|e| e.to_string())),
            Some(g) => self.add_raw(kind, signed_texts(&g, kind, entries)),
        }
    }

    /// From now on, signs `share` of the rows added (0.0 to 1.0) with a key generated here, and
    /// returns the signer (its public key is what `KONG_AUDIT_SIGNING_PUBLIC_KEY` takes).
    pub fn sign_rows(&self, share: f64) -> Arc<KongSigner> {
        let signer = Arc::new(KongSigner::generate());
        self.sign_rows_with(signer.clone(), share);
        signer
    }

    /// Signs `share` of the rows added from now on with this signer (a rotated key, for example).
    pub fn sign_rows_with(&self, signer: Arc<KongSigner>, share: f64) {
        self.with(|s| {
            s.signing = Some(Signing {
                signer,
                share: share.clamp(0.0, 1.0),
                added: 0,
            })
        });
    }

    /// Changes a stored row, as someone with write access to Kong's database could; its signature
    /// stays as it was. Returns false when no row has that key.
    pub fn tamper(&self, kind: &str, key: &str, change: impl FnOnce(&mut Value)) -> bool {
        self.with(|s| {
            let rows = if kind == "requests" { &mut s.requests } else { &mut s.objects };
            let Some(row) = rows.iter_mut().find(|r| r.key == key) else {
                return false;
            };
            let mut value: Value = serde_json::from_str(&row.raw).expect("a stored row is JSON");
            change(&mut value);
            row.ts = value["request_timestamp"].as_i64();
            row.raw = value.to_string();
            s.sorted.clear();
            true
        })
    }

    /// Removes an entry, as Kong does when its TTL runs out.
    pub fn expire(&self, kind: &str, key: &str) {
        self.with(|s| {
            let rows = if kind == "requests" { &mut s.requests } else { &mut s.objects };
            rows.retain(|r| r.key != key);
            s.sorted.clear();
        });
    }

    pub fn audit_queries(&self) -> Vec<String> {
        self.with(|s| s.log.iter().filter(|l| l.starts_with("/audit/")).cloned().collect())
    }
}

async fn root(State(state): State<Arc<Mutex<KongState>>>, headers: HeaderMap) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(denied) = check_token(&s, &headers) {
        return denied;
    }
    if let Some(Fault::TooManyRequests { retry_after_secs }) = s.root_faults.pop_front() {
        return too_many_requests(retry_after_secs);
    }
    let body = json!({
        "tagline": "Welcome to kong",
        "version": s.version,
        "configuration": { "audit_log": s.audit_enabled, "audit_log_record_ttl": s.record_ttl },
    });
    let mut r = json_response(StatusCode::OK, body.to_string());
    let kong_now = chrono::Utc::now() + chrono::Duration::seconds(s.clock_offset);
    let date = kong_now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    r.headers_mut().insert("date", HeaderValue::from_str(&date).unwrap());
    r
}

fn check_token(s: &KongState, headers: &HeaderMap) -> Option<Response> {
    let expected = s.token.as_deref()?;
    let given = headers.get("kong-admin-token").and_then(|v| v.to_str().ok());
    (given != Some(expected)).then(|| {
        json_response(
            StatusCode::UNAUTHORIZED,
            json!({"message": "Invalid credentials. Token or User credentials required"}).to_string(),
        )
    })
}

fn too_many_requests(retry_after_secs: u64) -> Response {
    let mut r = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"message": "API rate limit exceeded"}).to_string(),
    );
    r.headers_mut()
        .insert("retry-after", HeaderValue::from_str(&retry_after_secs.to_string()).unwrap());
    r
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [("content-type", "application/json; charset=utf-8")], body).into_response()
}

async fn audit(
    State(state): State<Arc<Mutex<KongState>>>,
    Path(kind): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (fault, latency, uri) = {
        let mut s = state.lock().unwrap();
        let uri = format!("/audit/{kind}{}", query.as_deref().map(|q| format!("?{q}")).unwrap_or_default());
        s.log.push(uri.clone());
        s.page_hits += 1;
        let fault = match s.kind_faults.get_mut(&kind).and_then(VecDeque::pop_front) {
            Some(f) => Some(f),
            None => s.faults.pop_front(),
        };
        (fault, s.latency, uri)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut extra = None;
    let mut numeric_offset = false;
    match fault {
        Some(Fault::Status(code)) => {
            return json_response(
                StatusCode::from_u16(code).unwrap(),
                json!({"message": "An unexpected error occurred"}).to_string(),
            );
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => return too_many_requests(retry_after_secs),
        Some(Fault::HtmlPage) => {
            return (
                StatusCode::OK,
                [("content-type", "text/html")],
                "<html><body><h1>Welcome to nginx!</h1></body></html>",
            )
                .into_response();
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::ExtraEntry(text)) => extra = Some(text),
        Some(Fault::BrokenOffset) => {
            return json_response(StatusCode::BAD_REQUEST, json!({"message": "invalid offset"}).to_string());
        }
        Some(Fault::NumericOffset) => numeric_offset = true,
        None => {}
    }
    let mut s = state.lock().unwrap();
    if let Some(denied) = check_token(&s, &headers) {
        return denied;
    }
    if !s.audit_enabled || !(kind == "requests" || kind == "objects") {
        return json_response(StatusCode::NOT_FOUND, json!({"message": "Not found"}).to_string());
    }
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    match page(&mut s, &kind, &params) {
        Ok((rows, offset)) => {
            s.answered.push(uri);
            let mut data: Vec<String> = rows;
            if let Some(e) = extra {
                data.push(e);
            }
            // Like Kong before 3.9: `next` drops the filters and flips the sort. Clients must not follow it.
            let next = offset.as_ref().map(|o| format!("/audit/{kind}?offset={o}&sort_desc=true"));
            let mut body = format!("{{\"data\":[{}],\"next\":{}", data.join(","), serde_json::to_string(&next).unwrap());
            if let Some(o) = offset {
                if numeric_offset {
                    body.push_str(",\"offset\":42");
                } else {
                    body.push_str(&format!(",\"offset\":{}", serde_json::to_string(&o).unwrap()));
                }
            }
            body.push('}');
            json_response(StatusCode::OK, body)
        }
        Err(message) => json_response(StatusCode::BAD_REQUEST, json!({ "message": message }).to_string()),
    }
}

/// The rows' JSON texts, `share` of them signed (row `n` since signing began is signed when the
/// share's running total passes a whole number there). Signing is slow (about a millisecond a row),
/// so large batches use every core.
fn signed_texts(signing: &Signing, kind: &str, entries: &[Value]) -> Vec<String> {
    let signed = |n: u64| ((n + 1) as f64 * signing.share).floor() > (n as f64 * signing.share).floor();
    let one = |(i, e): (usize, &Value)| {
        if signed(signing.added + i as u64) {
            let mut row = e.clone();
            signing.signer.sign(kind, &mut row);
            row.to_string()
        } else {
            e.to_string()
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if entries.len() < 64 || threads == 1 {
        return entries.iter().enumerate().map(one).collect();
    }
    let per = entries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = entries
            .chunks(per)
            .enumerate()
            .map(|(c, chunk)| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, e)| one((c * per + i, e)))
                        .collect::<Vec<String>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().expect("a signing thread")).collect()
    })
}

/// Keyset paging over `(sort value, key)`, like Kong's Postgres strategy.
fn page(s: &mut KongState, kind: &str, params: &HashMap<String, String>) -> Result<(Vec<String>, Option<String>), String> {
    let filters = has_filters(&s.version);
    let size: usize = match params.get("size") {
        None => 100,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or("size must be an integer between 1 and 1000")?,
    };
    let key_field = if kind == "requests" { "request_id" } else { "id" };
    // Objects have no request_timestamp before the versions with filters.
    let sort_by: &'static str = match params.get("sort_by").map(String::as_str) {
        Some("request_timestamp") if kind == "requests" || filters => "request_timestamp",
        Some(f) if f == key_field => key_field,
        Some(other) => return Err(format!("invalid option (sort_by: cannot order by unknown field '{other}')")),
        None if filters => "request_timestamp",
        None => key_field,
    };
    let desc = params.get("sort_desc").map(|v| v == "true").unwrap_or(filters);
    let parse_time = |v: &String| -> Result<i64, String> {
        v.parse::<i64>().or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%SZ")
                .map(|t| t.and_utc().timestamp())
                .map_err(|_| format!("date param: '{v}' does not match expected format: YYYY-MM-DDTHH:MI:SSZ"))
        })
    };
    let after = if filters {
        params.get("after").map(parse_time).transpose()?
    } else {
        None
    };
    let before = if filters {
        params.get("before").map(parse_time).transpose()?
    } else {
        None
    };
    let by_time = sort_by == "request_timestamp";
    let order_key = |r: &Row| -> (i64, String) { (if by_time { r.ts.unwrap_or(0) } else { 0 }, r.key.clone()) };
    let index_key = (
        if kind == "requests" { "requests" } else { "objects" },
        if by_time { "time" } else { "key" },
    );
    if !s.sorted.contains_key(&index_key) {
        let rows = if kind == "requests" { &s.requests } else { &s.objects };
        let mut idx: Vec<usize> = (0..rows.len()).collect();
        idx.sort_by_cached_key(|i| order_key(&rows[*i]));
        s.sorted.insert(index_key, idx);
    }
    let rows = if kind == "requests" { &s.requests } else { &s.objects };
    let idx = &s.sorted[&index_key];
    let cursor: Option<(i64, String)> = match params.get("offset") {
        None => None,
        Some(o) => {
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(o.trim_end_matches('='))
                .map_err(|_| "invalid offset")?;
            let v: (i64, String) = serde_json::from_slice(&bytes).map_err(|_| "invalid offset")?;
            Some(v)
        }
    };
    let in_filter = |r: &Row| after.is_none_or(|a| r.ts.unwrap_or(0) >= a) && before.is_none_or(|b| r.ts.unwrap_or(0) < b);
    let mut out = Vec::new();
    let mut last = None;
    let mut more = false;
    let ordered: Box<dyn Iterator<Item = &usize>> = if desc { Box::new(idx.iter().rev()) } else { Box::new(idx.iter()) };
    // Skip to the cursor with a binary search in ascending order.
    let start = match (&cursor, desc) {
        (Some(c), false) => idx.partition_point(|i| order_key(&rows[*i]) <= *c),
        (Some(c), true) => idx.len() - idx.partition_point(|i| order_key(&rows[*i]) < *c),
        (None, _) => 0,
    };
    for i in ordered.skip(start) {
        let r = &rows[*i];
        if !in_filter(r) {
            continue;
        }
        if out.len() == size {
            more = true;
            break;
        }
        out.push(r.raw.clone());
        last = Some(order_key(r));
    }
    let offset = if more {
        last.map(|k| base64::engine::general_purpose::STANDARD_NO_PAD.encode(serde_json::to_vec(&k).unwrap()))
    } else {
        None
    };
    Ok((out, offset))
}

/// A realistic trail: `n` admin requests, every other one changing one to three entities.
pub fn sample_trail(n: usize, start_ts: i64, with_object_timestamps: bool) -> (Vec<Value>, Vec<Value>) {
    let mut requests = Vec::with_capacity(n);
    let mut objects = Vec::new();
    let daos = ["services", "routes", "plugins", "consumers", "upstreams"];
    for i in 0..n {
        let request_id = format!("Rq{i:030}");
        let ts = start_ts + (i as i64) / 3;
        let dao = daos[i % daos.len()];
        let writes = i % 2 == 0;
        let method = if writes { ["POST", "PATCH", "DELETE"][i % 3] } else { "GET" };
        let entity_id = format!("{:08x}-0000-4000-8000-{:012x}", i, i);
        let path = if method == "POST" {
            format!("/default/{dao}")
        } else {
            format!("/default/{dao}/{entity_id}")
        };
        requests.push(json!({
            "client_ip": format!("10.0.{}.{}", i % 250, (i / 250) % 250),
            "method": method,
            "path": path,
            "payload": if method == "GET" { Value::Null } else { Value::String(json!({"name": format!("{dao}-{i}"), "enabled": true}).to_string()) },
            "rbac_user_id": "9f3c3c1e-2a1b-4d8e-9c2f-7a0e1d2c3b4a",
            "rbac_user_name": "ops-bot",
            "removed_from_payload": null,
            "request_id": request_id,
            "request_source": null,
            "request_timestamp": ts,
            "signature": null,
            "status": if method == "POST" { 201 } else if method == "DELETE" { 204 } else { 200 },
            "ttl": 2_592_000 - 60 - (n - i) as i64 / 10,
            "workspace": "1065b6d6-219f-4002-b3e9-334fc3eff46c",
        }));
        if writes {
            let operation = ["create", "update", "delete"][i % 3];
            for k in 0..(1 + i % 3) {
                let mut o = json!({
                    "id": format!("{:08x}-{:04x}-4000-8000-{:012x}", i, k, i * 7 + k),
                    "request_id": request_id,
                    "entity_key": entity_id,
                    "dao_name": dao,
                    "operation": operation,
                    "entity": json!({"id": entity_id, "name": format!("{dao}-{i}"), "k": k}).to_string(),
                    "removed_from_entity": null,
                    "rbac_user_id": "9f3c3c1e-2a1b-4d8e-9c2f-7a0e1d2c3b4a",
                    "signature": null,
                    "ttl": 2_592_000 - 60 - (n - i) as i64 / 10,
                });
                if with_object_timestamps {
                    o["request_timestamp"] = json!(ts);
                }
                objects.push(o);
            }
        }
    }
    (requests, objects)
}
