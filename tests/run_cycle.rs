//! `kong-audit-shipper run` end to end: the real binary against loopback fakes of Kong and
//! CloudTrail (through the real AWS SDK) and a real redis-server.

mod support;

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use support::*;

const VERSION: &str = "3.8.1.0";

/// The original entries, keyed by their PutAuditEvents id, as JSON text.
fn originals(requests: &[Value], objects: &[Value]) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for r in requests {
        m.insert(format!("req-{}", r["request_id"].as_str().unwrap()), r.to_string());
    }
    for o in objects {
        m.insert(format!("obj-{}", o["id"].as_str().unwrap()), o.to_string());
    }
    m
}

fn kong_entry(event_data: &str) -> Value {
    let v: Value = serde_json::from_str(event_data).unwrap();
    v["additionalEventData"]["kongAuditEntry"].clone()
}

#[tokio::test]
async fn ships_both_endpoints_in_full_then_nothing_then_only_what_is_new() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 450, true);
    let total = requests.len() + objects.len();
    assert!(objects.len() > requests.len() / 2, "the trail has many objects");
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("KONG_PAGE_SIZE".into(), "100".into());

    let first = run_bin(&["run"], &env).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.count("read"), total as u64);
    assert_eq!(first.count("shipped"), total as u64);
    assert_eq!(first.count("failed") + first.count("rejected"), 0);
    assert!(first.count("pages") >= (total / 100) as u64, "read across many pages");

    // Every entry arrived exactly once, with the original entry inside, and nothing else arrived.
    let expected = originals(&requests, &objects);
    let accepted = ct.accepted();
    assert_eq!(accepted.len(), total);
    let ids: HashSet<&str> = accepted.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), total, "no id twice");
    for (id, data) in &accepted {
        let original: Value = serde_json::from_str(&expected[id]).unwrap();
        assert_eq!(kong_entry(data), original, "{id}: kongAuditEntry equals the original");
    }
    assert!(
        ct.with(|s| s.violations.is_empty()),
        "schema violations: {:?}",
        ct.with(|s| s.violations.clone())
    );

    // Every page URL was built by the client: explicit size, sort and the previous offset.
    for q in kong.audit_queries() {
        assert!(
            q.contains("size=100") && q.contains("sort_by=request_timestamp") && q.contains("sort_desc=false"),
            "{q}"
        );
    }

    let second = run_bin(&["run"], &env).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    // It reads again only the newest second (a day-old trail: no row can still arrive late there).
    assert_eq!(second.count("shipped"), 0);
    assert_eq!(second.count("already_shipped"), second.count("read"));
    assert!(second.count("read") < total as u64 / 10, "{}", second.stderr);
    assert_eq!(ct.accepted().len(), total, "a second run ships nothing");

    let now = chrono::Utc::now().timestamp();
    let fresh_requests: Vec<Value> = (0..4)
        .map(|i| json!({"request_id": format!("NEW{i:029}"), "request_timestamp": now, "method": "POST", "path": "/services", "status": 201, "client_ip": "127.0.0.1", "ttl": 2591999}))
        .collect();
    let fresh_objects: Vec<Value> = (0..3)
        .map(|i| json!({"id": format!("aaaaaaaa-0000-4000-8000-00000000000{i}"), "request_id": "NEW00000000000000000000000000000", "request_timestamp": now, "dao_name": "services", "operation": "create", "entity": "{}", "ttl": 2591999}))
        .collect();
    kong.add("requests", &fresh_requests);
    kong.add("objects", &fresh_objects);
    let third = run_bin(&["run"], &env).await;
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert_eq!(third.count("shipped"), 7);
    let counts = ct.accepted_ids();
    assert_eq!(counts.len(), total + 7);
    assert!(counts.values().all(|n| *n == 1), "every entry shipped exactly once");
}

#[tokio::test]
async fn objects_sharing_a_request_id_are_all_shipped_and_keyed_by_their_own_id() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let now = chrono::Utc::now().timestamp();
    let objects: Vec<Value> = (0..5)
        .map(|i| json!({"id": format!("0b1e0000-0000-4000-8000-00000000000{i}"), "request_id": "SHARED0000000000000000000000000X", "request_timestamp": now, "dao_name": "routes", "operation": "create", "entity": format!("{{\"n\":{i}}}"), "ttl": 1000 + i}))
        .collect();
    kong.add("objects", &objects);
    let ran = run_bin(&["run"], &env_for(&kong, &ct, Some(&redis))).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.count("shipped"), 5);
    assert_eq!(ct.accepted().len(), 5);
    let keys = redis.keys("kong-audit-shipper:object:*");
    assert_eq!(keys.len(), 5, "{keys:?}");
    assert!(redis.keys("*SHARED*").is_empty(), "objects are not keyed by request_id");
}

#[tokio::test]
async fn store_keys_live_exactly_as_long_as_kong_keeps_the_entry() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let now = chrono::Utc::now().timestamp();
    kong.add("requests", &[
        json!({"request_id": "TTL000000000000000000000000000A1", "request_timestamp": now - 100, "method": "GET", "path": "/", "status": 200, "ttl": 86_400}),
        // A Kong that omits `ttl`: request_timestamp + audit_log_record_ttl - now.
        json!({"request_id": "TTL000000000000000000000000000B2", "request_timestamp": now - 1_000, "method": "GET", "path": "/", "status": 200}),
    ]);
    kong.with(|s| s.record_ttl = 7_200);
    let ran = run_bin(&["run"], &env_for(&kong, &ct, Some(&redis))).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let with_ttl = redis.ttl("kong-audit-shipper:request:TTL000000000000000000000000000A1");
    let grace = kong_audit_shipper::ship::MARK_GRACE_SECONDS as i64;
    assert!(
        (86_390 + grace..=86_400 + grace).contains(&with_ttl),
        "TTL {with_ttl} mirrors the entry's ttl 86400, plus the grace"
    );
    let derived = redis.ttl("kong-audit-shipper:request:TTL000000000000000000000000000B2");
    assert!(
        (6_190 + grace..=6_200 + grace).contains(&derived),
        "TTL {derived} is 7200 - 1000 s, plus the grace"
    );
    assert!(
        redis
            .get("kong-audit-shipper:request:TTL000000000000000000000000000A1")
            .starts_with("shipped@")
    );
}

#[tokio::test]
async fn throttled_events_and_failed_calls_lose_nothing_and_duplicate_nothing() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 150, true);
    let total = requests.len() + objects.len();
    ct.with(|s| {
        s.faults.push_back(CallFault::FirstEvents(30, "Throttling"));
        s.faults.push_back(CallFault::Status(503, "ServiceUnavailableException"));
        s.faults.push_back(CallFault::EveryEvent("InternalFailure"));
        s.faults.push_back(CallFault::Status(429, "ThrottlingException"));
        s.faults.push_back(CallFault::Status(500, "InternalServerException"));
    });
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("PUT_CONCURRENCY".into(), "1".into());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.count("shipped"), total as u64);
    assert!(ran.count("retried") >= 30, "retries are counted: {}", ran.count("retried"));
    let counts = ct.accepted_ids();
    assert_eq!(counts.len(), total);
    assert!(counts.values().all(|n| *n == 1), "no duplicates");
}

#[tokio::test]
async fn a_permanent_rejection_is_reported_kept_from_retries_and_blocks_nothing_else() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 40, true);
    let total = requests.len() + objects.len();
    let victim = requests[7]["request_id"].as_str().unwrap().to_string();
    ct.with(|s| s.refuse.insert(format!("req-{victim}"), "InvalidData"));
    let env = env_for(&kong, &ct, Some(&redis));

    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 1, "a rejection makes the run fail: {}", ran.stderr);
    assert_eq!((ran.count("rejected"), ran.count("shipped")), (1, total as u64 - 1));
    assert!(
        ran.stderr.contains("ERROR") && ran.stderr.contains(&victim) && ran.stderr.contains("InvalidData"),
        "{}",
        ran.stderr
    );
    assert!(
        !ran.stderr.contains(r#""path":"/default/"#),
        "the log names the letter, the entry itself is in the dead letters: {}",
        ran.stderr
    );
    assert_eq!(redis.get(&format!("kong-audit-shipper:request:{victim}")), "rejected:InvalidData");

    let calls_before = ct.with(|s| s.calls);
    let again = run_bin(&["run"], &env).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!((again.count("shipped"), again.count("rejected")), (0, 0));
    assert_eq!(ct.with(|s| s.calls), calls_before, "the rejected entry is not sent again");
    let mut full = env.clone();
    full.insert("FULL_READ".into(), "true".into());
    let whole = run_bin(&["run"], &full).await;
    assert_eq!((whole.code, whole.count("already_shipped")), (0, total as u64), "{}", whole.stderr);
    assert_eq!(ct.with(|s| s.calls), calls_before, "not even when the whole trail is read");
}

#[tokio::test]
async fn two_runs_at_the_same_moment_ship_every_entry_exactly_once() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 600, true);
    let total = requests.len() + objects.len();
    // Slow enough calls, one at a time, that each run takes over a second alone: however loaded the
    // machine, the two processes are at work together.
    ct.with(|s| s.latency = std::time::Duration::from_millis(100));
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("KONG_PAGE_SIZE".into(), "50".into());
    env.insert("PUT_CONCURRENCY".into(), "1".into());
    let (a, b) = tokio::join!(run_bin(&["run"], &env), run_bin(&["run"], &env));
    for r in [&a, &b] {
        assert_eq!(r.code, i32::from(r.count("held") > 0), "{}", r.stderr);
        assert_eq!(r.count("failed"), 0, "{}", r.stderr);
    }
    assert_eq!(a.count("shipped") + b.count("shipped"), total as u64);
    assert!(
        a.count("shipped") > 0 && b.count("shipped") > 0,
        "both runs did work: {} / {}",
        a.count("shipped"),
        b.count("shipped")
    );
    let counts = ct.accepted_ids();
    assert_eq!(counts.len(), total);
    assert!(counts.values().all(|n| *n == 1), "no entry shipped twice");
}

#[tokio::test]
async fn a_wrong_token_fails_clearly_marks_nothing_and_never_shows_the_token() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    load_trail(&kong, 5, true);
    kong.with(|s| s.token = Some("the-right-token".into()));
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("KONG_ADMIN_TOKEN".into(), "sup3r-s3cret-wr0ng".into());
    env.insert("RUST_LOG".into(), "debug".into());
    let ran = run_bin(&["run"], &env).await;
    assert_ne!(ran.code, 0);
    assert!(
        ran.stderr.contains("KONG_ADMIN_TOKEN") && ran.stderr.contains("401"),
        "{}",
        ran.stderr
    );
    assert!(
        !ran.stderr.contains("sup3r-s3cret-wr0ng") && !ran.stdout.contains("sup3r-s3cret-wr0ng"),
        "token leaked"
    );
    assert!(redis.keys("*").is_empty());
    assert!(ct.accepted().is_empty());

    env.insert("KONG_ADMIN_TOKEN".into(), "the-right-token".into());
    let ok = run_bin(&["run"], &env).await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(!ok.stderr.contains("the-right-token"));
}

#[tokio::test]
async fn a_kong_without_audit_logging_says_so() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    kong.with(|s| s.audit_enabled = false);
    let ran = run_bin(&["run"], &env_for(&kong, &ct, Some(&redis))).await;
    assert_ne!(ran.code, 0);
    assert!(
        ran.stderr.contains("404") && ran.stderr.contains("audit_log = on"),
        "{}",
        ran.stderr
    );
    let keys = redis.keys("*");
    assert!(keys.iter().all(|k| k == "kong-audit-shipper:store:life"), "no marks: {keys:?}");
}

#[tokio::test]
async fn an_unreachable_redis_stops_before_any_work_without_leaking_its_password() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    load_trail(&kong, 5, true);
    let mut env = env_for(&kong, &ct, None);
    let port = support::redis_server::free_port();
    env.insert("REDIS_URL".into(), format!("redis://app:pa55w0rd-xyz@127.0.0.1:{port}/0"));
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains(&format!("127.0.0.1:{port}")),
        "names where Redis was expected: {}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("pa55w0rd-xyz"), "password leaked: {}", ran.stderr);
    assert!(ct.accepted().is_empty());
    assert!(kong.audit_queries().is_empty(), "nothing read before the store is reachable");
}

#[tokio::test]
async fn legacy_redis_settings_and_a_password_protected_redis_work() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start_with(Some("auth-t0ken-123"), None);
    load_trail(&kong, 10, true);
    let mut env = env_for(&kong, &ct, None);
    env.insert("REDIS_HOST".into(), format!("127.0.0.1:{}", redis.port));
    env.insert("REDIS_DB".into(), "3".into());
    env.insert("REDIS_PASSWORD".into(), "auth-t0ken-123".into());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(!ran.stderr.contains("auth-t0ken-123"));
    let entry_keys = redis.cli(&["-n", "3", "KEYS", "kong-audit-shipper:*:*"]).unwrap();
    let entry_keys = entry_keys
        .lines()
        .filter(|k| !k.contains(":watermark:") && !k.ends_with(":store:life"))
        .count();
    assert_eq!(entry_keys as u64, ran.count("shipped"), "one key per shipped entry, in database 3");
}

#[tokio::test]
async fn missing_or_malformed_settings_stop_before_any_work_naming_the_setting() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let base = env_for(&kong, &ct, Some(&redis));
    for (name, value, expect) in [
        ("CHANNEL_ARN", None, "CHANNEL_ARN"),
        ("CHANNEL_ARN", Some("arn:aws:cloudtrail:us-east-1:42:channel/x"), "CHANNEL_ARN"),
        ("KONG_ADMIN_API", None, "KONG_ADMIN_API"),
        ("KONG_ADMIN_API", Some("not a url"), "KONG_ADMIN_API"),
        ("REDIS_URL", None, "REDIS_URL"),
        ("REDIS_URL", Some("http://localhost:6379"), "REDIS_URL"),
        ("KONG_PAGE_SIZE", Some("5000"), "KONG_PAGE_SIZE"),
    ] {
        let mut env = base.clone();
        match value {
            Some(v) => env.insert(name.into(), v.into()),
            None => env.remove(name),
        };
        let ran = run_bin(&["run"], &env).await;
        assert_eq!(ran.code, 2, "{name}={value:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(expect), "{name}={value:?} names the setting: {}", ran.stderr);
    }
    assert!(kong.audit_queries().is_empty());
    assert!(redis.keys("*").is_empty());
}

#[tokio::test]
async fn a_kong_without_filters_is_read_in_full_in_key_order() {
    let kong = FakeKong::start("3.4.3.2").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 120, false);
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("KONG_PAGE_SIZE".into(), "25".into());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.count("shipped"), (requests.len() + objects.len()) as u64);
    let queries = kong.audit_queries();
    assert!(
        queries.iter().any(|q| q.starts_with("/audit/objects") && q.contains("sort_by=id")),
        "{queries:?}"
    );
    assert!(queries.iter().all(|q| !q.contains("after=")), "no filters on versions without them");
    assert!(ct.with(|s| s.violations.is_empty()), "{:?}", ct.with(|s| s.violations.clone()));
}
