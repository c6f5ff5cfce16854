//! CloudTrail's control plane as CloudTrail Lake queries need it (awsJson 1.1 on `POST /`, beside the
//! fake PutAuditEvents): `GetChannel`, `StartQuery`, `DescribeQuery`, `GetQueryResults`,
//! `CancelQuery`, answered from the events the fake accepted.
//!
//! It keeps Lake's rules as far as the shipper's query uses them: the SQL is parsed (the `FROM` must
//! name one of the channel's event data stores; the four time bounds are applied; `GROUP BY 1, 2, 3,
//! 4` with `min(eventData.eventTime)` and `count(*)`), at most 10 queries run at once
//! (`MaxConcurrentQueriesException`), a query is `QUEUED` then `RUNNING` for some polls before
//! `FINISHED`, results come in pages of at most `MaxQueryResults` (1 to 1,000) with a `NextToken`,
//! and an accepted event becomes visible only `ingestion_delay` after it was accepted. The top-level
//! `eventTime` is the time of ingestion (the reading least kind to a query bounded by the event's own
//! time). Scripted: access denied per operation, queries that fail or time out, bytes scanned.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::response::Response;
use serde_json::{Value, json};

use super::fake_cloudtrail::{CloudTrailState, error};

pub const STORE_ID: &str = "0f2d8a7e-1b2c-4d5e-8f90-123456789abc";
pub const STORE_ARN: &str = "arn:aws:cloudtrail:us-east-1:123456789012:eventdatastore/0f2d8a7e-1b2c-4d5e-8f90-123456789abc";

/// One accepted event as Lake's columns see it.
#[derive(Debug, Clone)]
pub struct LakeEvent {
    pub id: String,
    pub uid: String,
    pub kind: Option<String>,
    pub part: Option<String>,
    pub parts: Option<String>,
    /// `eventData.eventTime`, as sent.
    pub event_time: String,
    pub event_source: String,
    /// Accepted, epoch milliseconds (the top-level `eventTime`).
    pub ingested_ms: i64,
}

impl LakeEvent {
    /// What Lake keeps of an accepted event; `None` for eventData that is not JSON.
    pub fn of(id: &str, event_data: &str, ingested_ms: i64) -> Option<LakeEvent> {
        let v: Value = serde_json::from_str(event_data).ok()?;
        let extra = |name: &str| {
            v["additionalEventData"].get(name).map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        Some(LakeEvent {
            id: id.to_string(),
            uid: v["UID"].as_str()?.to_string(),
            kind: extra("kongEntryKind"),
            part: extra("kongAuditEntryPart"),
            parts: extra("kongAuditEntryParts"),
            event_time: v["eventTime"].as_str()?.to_string(),
            event_source: v["eventSource"].as_str().unwrap_or_default().to_string(),
            ingested_ms,
        })
    }
}

#[derive(Debug, Clone)]
pub struct FakeQuery {
    pub statement: String,
    pub polls: u32,
    pub status: &'static str,
    pub rows: Vec<Value>,
    pub bytes_scanned: i64,
    pub error: Option<String>,
}

#[derive(Debug)]
pub struct LakeState {
    /// The channel's destinations (event data store ARNs).
    pub stores: Vec<String>,
    /// What Lake holds, in the order accepted.
    pub events: Vec<LakeEvent>,
    /// How long after acceptance an event becomes visible to queries.
    pub ingestion_delay: Duration,
    /// Polls of `DescribeQuery` a query stays `RUNNING` (the first answer is always `QUEUED`).
    pub running_polls: u32,
    /// Operations answered with `AccessDeniedException`.
    pub denied: Vec<&'static str>,
    /// Queries whose ingestion span is longer than this time out (seconds; 0: never).
    pub time_out_spans_over: i64,
    /// The next `n` queries fail.
    pub fail_next: u32,
    pub queries: BTreeMap<String, FakeQuery>,
    /// Every statement received, in order.
    pub statements: Vec<String>,
    /// Calls received, by operation.
    pub calls: HashMap<String, u64>,
    /// Most queries seen running at once.
    pub most_running: usize,
    /// Bytes "scanned" per visible event a query looks at.
    pub bytes_per_event: i64,
    /// Keep events for queries (off in benchmarks that never query).
    pub enabled: bool,
    /// Queries of other users of the account running now: they count toward the limit of 10, and one
    /// of them ends each time a `StartQuery` is refused for it.
    pub foreign_running: usize,
    /// Every `n`th call of any operation is answered `ThrottlingException` (0: never).
    pub throttle_every: u64,
    /// Calls answered `ThrottlingException` or `MaxConcurrentQueriesException`.
    pub refused: u64,
    /// Rules the client broke (tests expect none).
    pub violations: Vec<String>,
    next_id: u64,
}

impl Default for LakeState {
    fn default() -> Self {
        LakeState {
            stores: vec![STORE_ARN.to_string()],
            events: Vec::new(),
            ingestion_delay: Duration::ZERO,
            running_polls: 0,
            denied: Vec::new(),
            time_out_spans_over: 0,
            fail_next: 0,
            queries: BTreeMap::new(),
            statements: Vec::new(),
            calls: HashMap::new(),
            most_running: 0,
            bytes_per_event: 1_000,
            enabled: true,
            foreign_running: 0,
            throttle_every: 0,
            refused: 0,
            violations: Vec::new(),
            next_id: 0,
        }
    }
}

impl LakeState {
    /// Forgets the events with these PutAuditEvents ids (a destination that lost them).
    pub fn remove(&mut self, ids: &std::collections::HashSet<String>) -> usize {
        let before = self.events.len();
        self.events.retain(|e| !ids.contains(&e.id));
        before - self.events.len()
    }

    fn running(&self) -> usize {
        self.foreign_running
            + self
                .queries
                .values()
                .filter(|q| q.status == "QUEUED" || q.status == "RUNNING")
                .count()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ok(body: Value) -> Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::OK,
        [("content-type", "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

/// One control-plane call.
pub fn handle(s: &mut CloudTrailState, target: &str, body: &[u8]) -> Response {
    let op = target.rsplit('.').next().unwrap_or(target).to_string();
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let lake = &mut s.lake;
    *lake.calls.entry(op.clone()).or_default() += 1;
    let all_calls: u64 = lake.calls.values().sum();
    if lake.throttle_every > 0 && all_calls.is_multiple_of(lake.throttle_every) {
        lake.refused += 1;
        return error(400, "ThrottlingException", "Rate exceeded");
    }
    if lake.denied.contains(&op.as_str()) {
        return error(
            400,
            "AccessDeniedException",
            &format!("User: arn:aws:sts::123456789012:assumed-role/kong-audit-shipper/fn is not authorized to perform: cloudtrail:{op}"),
        );
    }
    match op.as_str() {
        "GetChannel" => {
            if request["Channel"].as_str() != Some(s.channel_arn.as_str()) {
                return error(400, "ChannelNotFoundException", "The specified channel was not found.");
            }
            let destinations: Vec<Value> = lake
                .stores
                .iter()
                .map(|arn| json!({"Type": "EVENT_DATA_STORE", "Location": arn}))
                .collect();
            ok(json!({"ChannelArn": s.channel_arn, "Name": "kong", "Source": "Custom", "Destinations": destinations}))
        }
        "StartQuery" => start_query(lake, &request),
        "DescribeQuery" => describe_query(lake, &request),
        "GetQueryResults" => get_query_results(lake, &request),
        "CancelQuery" => {
            let id = request["QueryId"].as_str().unwrap_or_default();
            match lake.queries.get_mut(id) {
                Some(q) if q.status == "QUEUED" || q.status == "RUNNING" => {
                    q.status = "CANCELLED";
                    ok(json!({"QueryId": id, "QueryStatus": "CANCELLED"}))
                }
                Some(_) => error(400, "InactiveQueryException", "The query is not running."),
                None => error(400, "QueryIdNotFoundException", "The query ID does not exist."),
            }
        }
        other => error(400, "UnknownOperationException", &format!("{other} is not faked")),
    }
}

/// The parts of the shipper's statement the fake evaluates.
struct Parsed {
    store: String,
    ingested: (i64, i64),
    event_time: (String, String),
    source: String,
}

fn parse(statement: &str) -> Result<Parsed, String> {
    let after = |marker: &str| -> Result<String, String> {
        let at = statement.find(marker).ok_or(format!("no `{marker}`"))? + marker.len();
        let rest = &statement[at..];
        let end = rest.find('\'').ok_or(format!("unterminated `{marker}`"))?;
        Ok(rest[..end].to_string())
    };
    let lake_time = |t: &str| -> Result<i64, String> {
        chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
            .map(|t| t.and_utc().timestamp())
            .map_err(|e| format!("'{t}' is not a Lake timestamp: {e}"))
    };
    if !statement.starts_with("SELECT ") || !statement.ends_with("GROUP BY 1, 2, 3, 4") {
        return Err("not the shipper's statement".into());
    }
    let store = statement
        .split(" FROM ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .ok_or("no FROM")?
        .to_string();
    Ok(Parsed {
        store,
        ingested: (
            lake_time(&after("WHERE eventTime >= '")?)?,
            lake_time(&after("AND eventTime < '")?)?,
        ),
        event_time: (after("eventData.eventTime >= '")?, after("eventData.eventTime < '")?),
        source: after("eventData.eventSource = '")?,
    })
}

fn start_query(lake: &mut LakeState, request: &Value) -> Response {
    let statement = request["QueryStatement"].as_str().unwrap_or_default().to_string();
    lake.statements.push(statement.clone());
    let parsed = match parse(&statement) {
        Ok(p) => p,
        Err(e) => {
            lake.violations.push(format!("{e}: {statement}"));
            return error(400, "InvalidQueryStatementException", &e);
        }
    };
    if !lake.stores.iter().any(|arn| arn.ends_with(&format!("/{}", parsed.store))) {
        return error(
            400,
            "EventDataStoreNotFoundException",
            "The specified event data store was not found.",
        );
    }
    if lake.running() >= 10 {
        lake.refused += 1;
        lake.foreign_running = lake.foreign_running.saturating_sub(1);
        return error(
            400,
            "MaxConcurrentQueriesException",
            "You are already running the maximum number of concurrent queries.",
        );
    }
    lake.next_id += 1;
    let id = format!("q{:08}-0000-4000-8000-000000000000", lake.next_id);
    let now = now_ms();
    let visible = |e: &&LakeEvent| e.ingested_ms + lake.ingestion_delay.as_millis() as i64 <= now;
    let in_span = |e: &&LakeEvent| {
        let s = e.ingested_ms / 1000;
        s >= parsed.ingested.0 && s < parsed.ingested.1
    };
    let scanned: Vec<&LakeEvent> = lake.events.iter().filter(visible).filter(in_span).collect();
    // (uid, kind, part, parts) → (the earliest eventTime, how many)
    type Group = (String, Option<String>, Option<String>, Option<String>);
    let mut groups: BTreeMap<Group, (String, u64)> = BTreeMap::new();
    for e in scanned
        .iter()
        .filter(|e| e.event_source == parsed.source && e.event_time >= parsed.event_time.0 && e.event_time < parsed.event_time.1)
    {
        let g = groups
            .entry((e.uid.clone(), e.kind.clone(), e.part.clone(), e.parts.clone()))
            .or_insert((e.event_time.clone(), 0));
        g.0 = g.0.clone().min(e.event_time.clone());
        g.1 += 1;
    }
    let rows = groups
        .into_iter()
        .map(|((uid, kind, part, parts), (time, count))| {
            let mut row = vec![json!({"uid": uid})];
            for (name, value) in [("kind", kind), ("part", part), ("parts", parts)] {
                if let Some(v) = value {
                    row.push(json!({ name: v }));
                }
            }
            row.push(json!({"event_time": time}));
            row.push(json!({"events": count.to_string()}));
            Value::Array(row)
        })
        .collect();
    let span = parsed.ingested.1 - parsed.ingested.0;
    let (status, error) = if lake.fail_next > 0 {
        lake.fail_next -= 1;
        ("FAILED", Some("injected failure".to_string()))
    } else if lake.time_out_spans_over > 0 && span > lake.time_out_spans_over {
        ("TIMED_OUT", None)
    } else {
        ("QUEUED", None)
    };
    lake.queries.insert(
        id.clone(),
        FakeQuery {
            statement,
            polls: 0,
            status,
            rows,
            bytes_scanned: scanned.len() as i64 * lake.bytes_per_event,
            error,
        },
    );
    lake.most_running = lake.most_running.max(lake.running());
    ok(json!({"QueryId": id}))
}

fn describe_query(lake: &mut LakeState, request: &Value) -> Response {
    let id = request["QueryId"].as_str().unwrap_or_default();
    let running_polls = lake.running_polls;
    let Some(q) = lake.queries.get_mut(id) else {
        return error(400, "QueryIdNotFoundException", "The query ID does not exist.");
    };
    q.polls += 1;
    if q.status == "QUEUED" && q.polls > 1 {
        q.status = "RUNNING";
    }
    if q.status == "RUNNING" && q.polls > running_polls {
        q.status = "FINISHED";
    }
    let mut answer = json!({
        "QueryId": id,
        "QueryString": q.statement,
        "QueryStatus": q.status,
        "QueryStatistics": {"EventsMatched": q.rows.len(), "EventsScanned": q.bytes_scanned / 1000, "BytesScanned": q.bytes_scanned, "ExecutionTimeInMillis": 10},
    });
    if let Some(e) = &q.error {
        answer["ErrorMessage"] = json!(e);
    }
    ok(answer)
}

fn get_query_results(lake: &mut LakeState, request: &Value) -> Response {
    let id = request["QueryId"].as_str().unwrap_or_default();
    let max = request["MaxQueryResults"].as_i64().unwrap_or(1_000);
    if !(1..=1_000).contains(&max) {
        lake.violations.push(format!("MaxQueryResults {max}"));
        return error(400, "InvalidMaxResultsException", "MaxQueryResults must be 1 to 1000.");
    }
    let Some(q) = lake.queries.get(id) else {
        return error(400, "QueryIdNotFoundException", "The query ID does not exist.");
    };
    if q.status != "FINISHED" {
        lake.violations.push(format!("results of query {id} asked while {}", q.status));
        return error(400, "InactiveQueryException", "The query is not finished.");
    }
    let from: usize = request["NextToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = q.rows.iter().skip(from).take(max as usize).cloned().collect();
    let mut answer = json!({
        "QueryStatus": "FINISHED",
        "QueryResultRows": page,
        "QueryStatistics": {"ResultsCount": page.len(), "TotalResultsCount": q.rows.len(), "BytesScanned": q.bytes_scanned},
    });
    if from + (max as usize) < q.rows.len() {
        answer["NextToken"] = json!((from + max as usize).to_string());
    }
    ok(answer)
}
