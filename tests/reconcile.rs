//! `reconcile` and the store rebuilt from the destination, end to end: the real binary against a fake
//! Kong, a real redis-server, and fakes of CloudTrail Lake's queries (tests/support/fake_lake.rs) and
//! of CloudWatch Logs' FilterLogEvents; moto's FilterLogEvents as a second opinion.
//!
//! Each test removes events from the destination (as a destination that lost them would), or delays
//! their ingestion, and checks that `reconcile` names exactly what is lacking, that `--repair` sends
//! exactly that, and that a store that comes back empty ships nothing twice.

#[path = "support/fake_cloudwatch_logs.rs"]
mod fake_cloudwatch_logs;
#[path = "support/moto_server.rs"]
mod moto_server;
mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fake_cloudwatch_logs::{FakeLogs, GROUP};
use serde_json::{Value, json};
use support::fake_lake::{STORE_ARN, STORE_ID};
use support::*;

const VERSION: &str = "3.8.1.0";

struct Setup {
    kong: FakeKong,
    ct: FakeCloudTrail,
    redis: RedisServer,
    env: HashMap<String, String>,
    want: HashSet<String>,
    /// Where the report and the CLI's default files go.
    dir: tempfile::TempDir,
}

/// A trail of `n` requests with their objects, plus one object too large for one event (`BIG…`,
/// shipped in parts), shipped once.
async fn shipped(n: usize) -> Setup {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, n, true);
    let now = chrono::Utc::now().timestamp();
    kong.add("objects", &[big_object(now - 3_600)]);
    let dir = tempfile::tempdir().unwrap();
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("XDG_STATE_HOME".into(), dir.path().display().to_string());
    let mut want = ids(&requests, &objects);
    let first = run_bin(&["run"], &env).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    want.extend(parts_of_big(&ct));
    exactly_once(&ct, &want);
    Setup {
        kong,
        ct,
        redis,
        env,
        want,
        dir,
    }
}

const BIG: &str = "b1600000-0000-4000-8000-000000000001";

fn big_object(ts: i64) -> Value {
    json!({
        "id": BIG, "request_id": "Rq999999999999999999999999999999", "dao_name": "plugins", "operation": "create",
        "entity_key": "k", "entity": json!({"config": "x".repeat(70_000)}).to_string(),
        "request_timestamp": ts, "ttl": 2_588_000,
    })
}

/// The event ids the big object was shipped under (`obj-BIG`, `obj-BIG-p2`, …).
fn parts_of_big(ct: &FakeCloudTrail) -> Vec<String> {
    let ids: Vec<String> = ct
        .accepted_ids()
        .into_keys()
        .filter(|id| id.starts_with(&format!("obj-{BIG}")))
        .collect();
    assert!(ids.len() >= 3, "the big object goes in parts: {ids:?}");
    ids
}

fn report(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn field(ran: &Ran, name: &str) -> String {
    ran.reconciled()
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name}:\n{}", ran.stderr))
}

fn num(ran: &Ran, name: &str) -> u64 {
    field(ran, name).parse().unwrap()
}

/// Ids accepted by the destination after `before` (a count of accepted events).
fn sent_since(ct: &FakeCloudTrail, before: usize) -> Vec<String> {
    ct.accepted().into_iter().skip(before).map(|(id, _)| id).collect()
}

fn entry_refs(list: &Value) -> HashSet<(String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap().to_string(), e["key"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn reconcile_names_exactly_what_the_destination_lost_and_repair_sends_exactly_that() {
    let s = shipped(30).await;
    let mut env = s.env.clone();
    env.insert("RECONCILE_SETTLE_SECONDS".into(), "0".into());
    let all: Vec<String> = {
        let mut ids: Vec<String> = s.want.iter().cloned().collect();
        ids.sort();
        ids
    };
    let requests: Vec<&String> = all.iter().filter(|id| id.starts_with("req-")).collect();
    let objects: Vec<&String> = all.iter().filter(|id| id.starts_with("obj-") && !id.contains(BIG)).collect();
    let lost: HashSet<String> = [
        requests[0].clone(),
        requests[7].clone(),
        objects[3].clone(),
        format!("obj-{BIG}-p2"),
    ]
    .into_iter()
    .collect();
    assert_eq!(s.ct.with(|c| c.lake.remove(&lost)), 4);

    let out = s.dir.path().join("report.json");
    let ran = run_bin(&["reconcile", "--output", out.to_str().unwrap()], &env).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert_eq!(field(&ran, "status"), "incomplete");
    let entries = (s.want.len() - parts_of_big(&s.ct).len() + 1) as u64;
    assert_eq!(
        (
            num(&ran, "kong"),
            num(&ran, "found"),
            num(&ran, "missing"),
            num(&ran, "partial"),
            num(&ran, "pending")
        ),
        (entries, entries - 4, 3, 1, 0),
        "{}",
        ran.stderr
    );
    let r = report(&out);
    let key = |id: &str| {
        let (kind, key) = id.split_once('-').unwrap();
        (if kind == "req" { "request" } else { "object" }.to_string(), key.to_string())
    };
    let want_missing: HashSet<(String, String)> = lost.iter().filter(|id| !id.contains(BIG)).map(|id| key(id)).collect();
    assert_eq!(entry_refs(&r["missing"]), want_missing);
    assert_eq!(r["partial"], json!([{"kind": "object", "key": BIG, "missing_parts": [2]}]));
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["counts"]["missing"], 3);
    assert!(r["program"].as_str().unwrap().starts_with("kong-audit-shipper "));
    assert_eq!(r["destination"]["event_data_stores"], json!([STORE_ARN]));
    assert!(!r["queries"].as_array().unwrap().is_empty());
    assert!(
        r["days"]
            .as_object()
            .unwrap()
            .values()
            .map(|d| d["kong"].as_u64().unwrap())
            .sum::<u64>()
            == entries
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let before = s.ct.accepted().len();
    let repaired = run_bin(&["reconcile", "--repair"], &env).await;
    assert_eq!(repaired.code, 0, "{}", repaired.stderr);
    assert_eq!(field(&repaired, "status"), "repaired");
    let sent: Vec<String> = sent_since(&s.ct, before);
    assert_eq!(sent.len(), 4, "nothing else is sent: {sent:?}");
    assert_eq!(sent.into_iter().collect::<HashSet<_>>(), lost);

    let again = run_bin(&["reconcile"], &env).await;
    assert_eq!((again.code, field(&again, "status")), (0, "complete".into()), "{}", again.stderr);
    assert_eq!(
        (num(&again, "missing"), num(&again, "partial"), num(&again, "found")),
        (0, 0, entries)
    );
    // The store's marks are right again: a run sends nothing.
    let run = run_bin(&["run"], &env).await;
    assert_eq!((run.code, run.count("shipped")), (0, 0), "{}", run.stderr);
    assert!(s.ct.with(|c| c.lake.violations.is_empty() && c.violations.is_empty()));
}

#[tokio::test]
async fn an_ingestion_delay_longer_than_the_run_is_pending_never_a_reship() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 20, true);
    ct.with(|c| c.lake.ingestion_delay = Duration::from_secs(600));
    let env = env_for(&kong, &ct, Some(&redis));
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let total = (requests.len() + objects.len()) as u64;

    let checked = run_bin(&["reconcile"], &env).await;
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    assert_eq!(
        (num(&checked, "pending"), num(&checked, "missing"), num(&checked, "found")),
        (total, 0, 0),
        "{}",
        checked.stderr
    );
    let before = ct.accepted().len();
    let repair = run_bin(&["reconcile", "--repair"], &env).await;
    assert_eq!(repair.code, 0, "{}", repair.stderr);
    assert_eq!(ct.accepted().len(), before, "nothing pending is sent again");
    // Once the settle time is over, what the destination still does not show is missing.
    let mut late = env.clone();
    late.insert("RECONCILE_SETTLE_SECONDS".into(), "0".into());
    let overdue = run_bin(&["reconcile"], &late).await;
    assert_eq!((overdue.code, num(&overdue, "missing")), (1, total), "{}", overdue.stderr);
}

/// A run on a machine whose clock is an hour off (a backfill from a laptop, say) stamps what it
/// shipped by the store's clock. A repair on a right clock minutes later holds what the destination
/// is still ingesting pending: stamped an hour behind, it looked an hour old and was sent again. Once
/// the settle time is over it is missing: stamped an hour ahead, it stayed pending an hour longer.
#[tokio::test]
async fn what_a_run_with_its_clock_an_hour_off_shipped_is_judged_by_the_stores_clock() {
    for skew in ["-1h", "+1h"] {
        let kong = FakeKong::start(VERSION).await;
        let ct = FakeCloudTrail::start().await;
        let redis = RedisServer::start();
        let (requests, objects) = load_trail(&kong, 10, true);
        ct.with(|c| c.lake.ingestion_delay = Duration::from_secs(600));
        let env = env_for(&kong, &ct, Some(&redis));
        let ran = run_bin(&["run"], &with_clock_off(&env, skew)).await;
        assert_eq!(ran.code, 0, "{skew}: {}", ran.stderr);
        assert!(ran.stderr.contains("differs from the store's"), "{skew}: {}", ran.stderr);
        let total = (requests.len() + objects.len()) as u64;

        let before = ct.accepted().len();
        let repair = run_bin(&["reconcile", "--repair"], &env).await;
        assert_eq!(
            (repair.code, num(&repair, "pending"), num(&repair, "missing")),
            (0, total, 0),
            "{skew}: {}",
            repair.stderr
        );
        assert_eq!(ct.accepted().len(), before, "{skew}: nothing still being ingested is sent again");

        let mut late = env.clone();
        late.insert("RECONCILE_SETTLE_SECONDS".into(), "0".into());
        let overdue = run_bin(&["reconcile"], &late).await;
        assert_eq!((overdue.code, num(&overdue, "missing")), (1, total), "{skew}: {}", overdue.stderr);
    }
}

#[tokio::test]
async fn queries_span_the_window_a_day_at_a_time_page_their_results_and_split_on_timeouts() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 700, true);
    let total = requests.len() + objects.len();
    assert!(total > 1_000, "more rows than one page");
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("RECONCILE_CONCURRENCY".into(), "10".into());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    ct.with(|c| {
        c.lake.running_polls = 3;
        c.lake.time_out_spans_over = 43_200;
        c.lake.statements.clear();
        c.lake.calls.clear();
        c.lake.most_running = 0;
        c.lake.queries.clear();
    });
    let since = chrono::Utc::now().timestamp() - 3 * 86_400;
    let checked = run_bin(&["reconcile", "--since", &since.to_string()], &env).await;
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    assert_eq!((num(&checked, "found"), num(&checked, "missing")), (total as u64, 0));
    let (statements, calls, most, violations, finished) = ct.with(|c| {
        (
            c.lake.statements.clone(),
            c.lake.calls.clone(),
            c.lake.most_running,
            c.lake.violations.clone(),
            c.lake.queries.values().filter(|q| q.status == "FINISHED").count(),
        )
    });
    assert!(violations.is_empty(), "{violations:?}");
    assert!(statements.iter().all(|q| q.contains(&format!("FROM {STORE_ID} WHERE"))));
    // From three days back (less a day of padding) to now (plus a day): days that time out are
    // asked again as halves.
    let halves = statements.iter().filter(|q| q.contains(" 12:00:00'")).count();
    assert!(halves >= 5, "{statements:#?}");
    assert!(most <= 10, "at most ten queries at once: {most}");
    assert!(
        calls["GetQueryResults"] as usize > finished,
        "a query of more than 1,000 rows is paged: {calls:?}, {finished} finished"
    );
    assert!(
        calls["DescribeQuery"] >= 2 * calls["StartQuery"],
        "queued and running queries are waited for"
    );
    assert!(num(&checked, "bytes_scanned") > 0);
    assert!(
        calls.get("GetChannel").copied().unwrap_or(0) == 1,
        "the store comes from the channel"
    );
}

#[tokio::test]
async fn a_failed_query_or_a_missing_permission_is_an_error_never_a_complete_trail() {
    let s = shipped(10).await;
    s.ct.with(|c| c.lake.fail_next = 1);
    let failed = run_bin(&["reconcile"], &s.env).await;
    assert_eq!(
        (failed.code, field(&failed, "status")),
        (1, "incomplete".into()),
        "{}",
        failed.stderr
    );
    assert!(
        failed
            .stderr
            .lines()
            .any(|l| l.contains("reconcile status=incomplete") && l.contains("error=") && l.contains("injected failure")),
        "{}",
        failed.stderr
    );

    s.ct.with(|c| c.lake.denied = vec!["StartQuery"]);
    let denied = run_bin(&["reconcile"], &s.env).await;
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    assert!(
        denied.stderr.contains("cloudtrail:StartQuery"),
        "names the permission: {}",
        denied.stderr
    );

    // The store can be named instead of asked of the channel.
    s.ct.with(|c| c.lake.denied = vec!["GetChannel"]);
    let mut env = s.env.clone();
    let by_channel = run_bin(&["reconcile"], &env).await;
    assert!(
        by_channel.code == 1 && by_channel.stderr.contains("cloudtrail:GetChannel"),
        "{}",
        by_channel.stderr
    );
    env.insert("EVENT_DATA_STORE".into(), STORE_ARN.into());
    let named = run_bin(&["reconcile"], &env).await;
    assert_eq!((named.code, field(&named, "status")), (0, "complete".into()), "{}", named.stderr);
    env.insert("EVENT_DATA_STORE".into(), "x' OR 1=1".into());
    let bad = run_bin(&["reconcile"], &env).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("EVENT_DATA_STORE"), "{}", bad.stderr);
}

/// A store lost while the destination was still ingesting the last run's events: the rebuild marks
/// what the destination shows, leaves the rest until it has had time to ingest, then marks what
/// arrived and ships only what is truly new. Nothing is shipped twice, also when the run that finds
/// the store lost runs on a machine an hour behind: the rebuild's start is recorded by the store's
/// clock, so a run on a right clock minutes later does not take the settle time for passed (and
/// ship again what the destination is still ingesting).
#[tokio::test]
async fn a_store_lost_while_the_destination_is_still_ingesting_ships_nothing_twice() {
    for rebuilder_skew in [None, Some("-1h")] {
        store_lost_while_ingesting(rebuilder_skew).await;
    }
}

async fn store_lost_while_ingesting(rebuilder_skew: Option<&str>) {
    let mut s = shipped(20).await;
    // What the first run shipped was ingested long ago; what the next run ships is still ingesting.
    s.ct.with(|c| {
        for e in &mut c.lake.events {
            e.ingested_ms -= 3_600_000;
        }
        c.lake.ingestion_delay = Duration::from_secs(1_800);
    });
    let now = chrono::Utc::now().timestamp();
    let batch: Vec<Value> = (0..4)
        .map(|i| json!({"request_id": format!("LATE{i:028}"), "request_timestamp": now - 20, "method": "GET", "path": "/", "status": 200, "ttl": 2_591_000}))
        .collect();
    s.kong.add("requests", &batch);
    let second = run_bin(&["run"], &s.env).await;
    assert_eq!((second.code, second.count("shipped")), (0, 4), "{}", second.stderr);

    s.redis.cli(&["FLUSHALL"]).unwrap();
    let newer: Vec<Value> = (0..2)
        .map(|i| json!({"request_id": format!("NEW{i:029}"), "request_timestamp": now - 10, "method": "GET", "path": "/", "status": 200, "ttl": 2_591_000}))
        .collect();
    s.kong.add("requests", &newer);
    let rebuilder = rebuilder_skew.map_or_else(|| s.env.clone(), |skew| with_clock_off(&s.env, skew));
    let rebuilding = run_bin(&["run"], &rebuilder).await;
    assert_eq!(rebuilding.code, 0, "{}", rebuilding.stderr);
    assert_eq!(
        (
            rebuilding.count("shipped"),
            rebuilding.count("rebuilt"),
            rebuilding.count("deferred")
        ),
        (0, s.want.len() as u64 - parts_of_big(&s.ct).len() as u64 + 1, 6),
        "{}",
        rebuilding.stderr
    );
    // Too soon to look again: still nothing sent.
    let soon = run_bin(&["run"], &s.env).await;
    assert_eq!(
        (soon.code, soon.count("shipped"), soon.count("deferred")),
        (0, 0, 6),
        "{rebuilder_skew:?}: {}",
        soon.stderr
    );
    // The destination has ingested; the settle time has passed.
    s.ct.with(|c| c.lake.ingestion_delay = Duration::ZERO);
    let mut settled = s.env.clone();
    settled.insert("RECONCILE_SETTLE_SECONDS".into(), "1".into());
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let after = run_bin(&["run"], &settled).await;
    assert_eq!(
        (after.code, after.count("shipped"), after.count("rebuilt"), after.count("deferred")),
        (0, 2, 4, 0),
        "{}",
        after.stderr
    );
    let counts = s.ct.accepted_ids();
    assert!(counts.values().all(|n| *n == 1), "nothing shipped twice");
    s.want.extend(
        batch
            .iter()
            .chain(&newer)
            .map(|r| format!("req-{}", r["request_id"].as_str().unwrap())),
    );
    exactly_once(&s.ct, &s.want);
    assert!(s.redis.get("kong-audit-shipper:store:life").starts_with("whole@"));
}

/// A lost store and a destination that cannot be asked: the run ships only the overlap, fails, and
/// names the fix; `reconcile --repair` rebuilds the store once it can ask, and nothing ships twice.
#[tokio::test]
async fn a_lost_store_the_destination_cannot_rebuild_ships_only_the_overlap_until_reconcile_repairs_it() {
    let mut s = shipped(20).await;
    s.redis.cli(&["FLUSHALL"]).unwrap();
    s.ct.with(|c| c.lake.denied = vec!["StartQuery"]);
    let now = chrono::Utc::now().timestamp();
    let fresh = json!({"request_id": "FRESH000000000000000000000000001", "request_timestamp": now - 5, "method": "GET", "path": "/", "status": 200, "ttl": 2_591_000});
    s.kong.add("requests", std::slice::from_ref(&fresh));
    let mut env = s.env.clone();
    env.insert("OVERLAP_SECONDS".into(), "60".into());
    let degraded = run_bin(&["run"], &env).await;
    assert_eq!(degraded.code, 1, "{}", degraded.stderr);
    assert_eq!(degraded.count("shipped"), 1, "only the overlap: {}", degraded.stderr);
    for fix in ["reconcile --repair", "run --since", "cloudtrail:StartQuery"] {
        assert!(degraded.stderr.contains(fix), "names {fix}: {}", degraded.stderr);
    }
    let again = run_bin(&["run"], &env).await;
    assert_eq!((again.code, again.count("shipped")), (1, 0), "{}", again.stderr);

    s.ct.with(|c| c.lake.denied.clear());
    let mut settled = env.clone();
    settled.insert("RECONCILE_SETTLE_SECONDS".into(), "0".into());
    let repaired = run_bin(&["reconcile", "--repair"], &settled).await;
    assert_eq!(repaired.code, 0, "{}", repaired.stderr);
    assert!(s.redis.get("kong-audit-shipper:store:life").starts_with("whole@"));
    let run = run_bin(&["run"], &env).await;
    assert_eq!((run.code, run.count("shipped")), (0, 0), "{}", run.stderr);
    s.want.insert("req-FRESH000000000000000000000000001".into());
    exactly_once(&s.ct, &s.want);
}

#[tokio::test]
async fn duplicates_and_entries_kong_has_deleted_are_counted_not_repaired() {
    let s = shipped(10).await;
    let (some_id, data) = s.ct.accepted().into_iter().find(|(id, _)| id.starts_with("req-")).unwrap();
    // The same event twice (an answer lost after acceptance), and an event of an entry Kong deleted.
    let gone = data.replace(&some_id[4..], "GONE0000000000000000000000000001");
    s.ct.with(|c| {
        let at = chrono::Utc::now().timestamp_millis();
        c.lake.events.push(support::fake_lake::LakeEvent::of(&some_id, &data, at).unwrap());
        c.lake
            .events
            .push(support::fake_lake::LakeEvent::of("req-GONE0000000000000000000000000001", &gone, at).unwrap());
    });
    let before = s.ct.accepted().len();
    let ran = run_bin(&["reconcile", "--repair"], &s.env).await;
    assert_eq!((ran.code, field(&ran, "status")), (0, "complete".into()), "{}", ran.stderr);
    assert_eq!((num(&ran, "duplicates"), num(&ran, "extra")), (1, 1), "{}", ran.stderr);
    assert_eq!(s.ct.accepted().len(), before, "nothing sent");
}

// ---------------------------------------------------------------- CloudWatch Logs

fn logs_env(kong: &FakeKong, ct: &FakeCloudTrail, endpoint: &str, redis: &RedisServer) -> HashMap<String, String> {
    support::logs_env(kong, ct, endpoint, GROUP, Some(redis))
}

#[tokio::test]
async fn logs_reconcile_reads_every_page_names_what_was_lost_and_repair_sends_exactly_that() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let logs = FakeLogs::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 30, true);
    let total = (requests.len() + objects.len()) as u64;
    let mut env = logs_env(&kong, &ct, &logs.url(), &redis);
    env.insert("RECONCILE_SETTLE_SECONDS".into(), "0".into());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    logs.with(|s| s.filter_empty_pages = true);
    let clean = run_bin(&["reconcile"], &env).await;
    assert_eq!(
        (clean.code, num(&clean, "found"), num(&clean, "missing")),
        (0, total, 0),
        "{}",
        clean.stderr
    );

    // The group loses three events.
    let lost: Vec<String> = logs.with(|s| {
        let gone: Vec<String> = s.events.iter().step_by(17).take(3).map(|e| e.message.clone()).collect();
        s.events.retain(|e| !gone.contains(&e.message));
        gone
    });
    let uid = |m: &String| serde_json::from_str::<Value>(m).unwrap()["UID"].as_str().unwrap().to_string();
    let lost_uids: HashSet<String> = lost.iter().map(uid).collect();
    let out = tempfile::NamedTempFile::new().unwrap();
    let checked = run_bin(&["reconcile", "--output", out.path().to_str().unwrap()], &env).await;
    assert_eq!((checked.code, num(&checked, "missing")), (1, 3), "{}", checked.stderr);
    let r = report(out.path());
    let named: HashSet<String> = entry_refs(&r["missing"]).into_iter().map(|(_, k)| k).collect();
    assert_eq!(named, lost_uids);
    assert_eq!(r["destination"], json!({"type": "cloudwatch_logs", "log_group": GROUP}));

    let before = logs.events().len();
    let repaired = run_bin(&["reconcile", "--repair"], &env).await;
    assert_eq!(
        (repaired.code, field(&repaired, "status")),
        (0, "repaired".into()),
        "{}",
        repaired.stderr
    );
    let after = logs.events();
    assert_eq!(after.len(), before + 3);
    let resent: HashSet<String> = after.iter().skip(before).map(|e| uid(&e.message)).collect();
    assert_eq!(resent, lost_uids, "exactly the lost entries");
    let again = run_bin(&["reconcile"], &env).await;
    assert_eq!((again.code, field(&again, "status")), (0, "complete".into()), "{}", again.stderr);
    assert!(logs.with(|s| s.violations.is_empty()));
    assert!(
        logs.with(|s| s.calls.iter().all(|c| c != "StartQuery")),
        "no Logs Insights, no row cap"
    );
}

#[tokio::test]
async fn moto_agrees_that_a_trail_shipped_to_logs_is_complete() {
    let moto = moto_server::MotoServer::start();
    support::logs_client(&moto.url())
        .create_log_group()
        .log_group_name(GROUP)
        .send()
        .await
        .expect("CreateLogGroup on moto");
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 25, true);
    let total = (requests.len() + objects.len()) as u64;
    let env = logs_env(&kong, &ct, &moto.url(), &redis);
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let checked = run_bin(&["reconcile"], &env).await;
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    // Accepted seconds ago: pending or found, never missing.
    assert_eq!(num(&checked, "missing"), 0, "{}", checked.stderr);
    assert_eq!(num(&checked, "found") + num(&checked, "pending"), total);
    assert_eq!(
        num(&checked, "found"),
        total,
        "moto shows what it stored at once: {}",
        checked.stderr
    );
}

// ---------------------------------------------------------------- Lambda

/// The Lambda handler in process, over the fakes (`extra` flags added to its settings).
async fn lambda_handler(kong: &FakeKong, ct: &FakeCloudTrail, redis: &RedisServer, extra: &[&str]) -> kong_audit_shipper::lambda::Handler {
    use std::sync::Arc;

    use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Credentials, Region};
    use kong_audit_shipper::reconcile::{LakeInventory, SdkLake, Stores};

    let mut args = vec![
        "kong-audit-shipper".to_string(),
        "--kong-admin-api".into(),
        kong.url(),
        "--channel-arn".into(),
        support::fake_cloudtrail::CHANNEL_ARN.into(),
        "--retry-initial-ms".into(),
        "20".into(),
        "--retry-max-ms".into(),
        "200".into(),
        "--reconcile-settle-seconds".into(),
        "0".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let settings = <kong_audit_shipper::cli::Cli as clap::Parser>::try_parse_from(args)
        .unwrap()
        .settings;
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "test-secret", None, None, "test"))
        .endpoint_url(ct.url())
        .load()
        .await;
    let channel = settings.channel_config().unwrap();
    let shipper = kong_audit_shipper::ship::Shipper {
        source: Arc::new(kong_audit_shipper::kong::KongClient::new(&settings.kong_config().unwrap(), settings.backoff()).unwrap()),
        store: Arc::new(kong_audit_shipper::dedup::RedisStore::connect(&redis.config()).await.unwrap()),
        sink: Arc::new(kong_audit_shipper::sink::CloudTrailSink::new(&sdk, &channel)),
        dead_letters: Arc::new(kong_audit_shipper::dead_letter::LogDeadLetters),
        recipient_account_id: channel.account_id.clone(),
        signatures: Default::default(),
        inventory: Some(Arc::new(LakeInventory::new(
            Arc::new(SdkLake::new(&sdk, &channel.region)),
            &channel.arn,
            Stores::OfChannel(channel.arn.clone()),
            5,
            settings.backoff(),
        ))),
    };
    kong_audit_shipper::lambda::Handler::new(shipper, &settings, "kong-audit-shipper".into())
}

/// The Lambda handler, in process: `{"action": "reconcile"}` compares the last
/// `RECONCILE_WINDOW_SECONDS` and repairs; with `"repair": false` an incomplete trail is an error
/// whose message is the reconcile line; an unknown action is refused, never taken for a run.
#[tokio::test]
async fn the_lambda_reconciles_on_its_daily_event_and_repairs() {
    use kong_audit_shipper::lambda::{Outcome, RunFailed};
    use lambda_runtime::{Context, LambdaEvent};

    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 12, true);
    let handler = lambda_handler(&kong, &ct, &redis, &[]).await;
    let invoke = |payload: Value| handler.invoke(LambdaEvent::new(payload, Context::default()));

    assert!(matches!(invoke(json!({})).await, Ok(Outcome::Run(_))));
    let total = (requests.len() + objects.len()) as u64;
    let lost: HashSet<String> = [
        format!("req-{}", requests[2]["request_id"].as_str().unwrap()),
        format!("obj-{}", objects[1]["id"].as_str().unwrap()),
    ]
    .into();
    ct.with(|c| c.lake.remove(&lost));

    let Err(RunFailed::Reconcile(line)) = invoke(json!({"action": "reconcile", "repair": false})).await else {
        panic!("an incomplete trail is an error of the invocation");
    };
    assert!(line.contains("status=incomplete") && line.contains("missing=2"), "{line}");

    let before = ct.accepted().len();
    let Ok(Outcome::Reconcile(answer)) = invoke(json!({"action": "reconcile"})).await else {
        panic!("a repaired trail is a success");
    };
    assert_eq!(
        (answer.status, answer.counts.entries.missing, answer.counts.entries.kong),
        ("repaired", 2, total)
    );
    assert_eq!(answer.repair_shipped, Some(2));
    let sent: HashSet<String> = sent_since(&ct, before).into_iter().collect();
    assert_eq!(sent, lost);
    let body = serde_json::to_value(&answer).unwrap();
    assert_eq!((body["status"].as_str(), body["missing"].as_u64()), (Some("repaired"), Some(2)));

    assert!(matches!(invoke(json!({"action": "reconcil"})).await, Err(RunFailed::Event(_))));
}

// ---------------------------------------------------------------- bad days

/// A throttling CloudTrail, and an account whose other users already run nine queries: every question
/// is asked again until answered, and the answer is whole.
#[tokio::test]
async fn a_throttled_lake_with_its_query_slots_taken_still_gives_a_whole_answer() {
    let s = shipped(15).await;
    s.ct.with(|c| {
        c.lake.foreign_running = 9;
        c.lake.throttle_every = 7;
        c.lake.refused = 0;
    });
    let mut env = s.env.clone();
    env.insert("RECONCILE_CONCURRENCY".into(), "10".into());
    let ran = run_bin(&["reconcile"], &env).await;
    assert_eq!((ran.code, field(&ran, "status")), (0, "complete".into()), "{}", ran.stderr);
    let entries = (s.want.len() - parts_of_big(&s.ct).len() + 1) as u64;
    assert_eq!(num(&ran, "found"), entries);
    assert!(s.ct.with(|c| c.lake.refused) >= 10, "it was refused, and asked again");
}

/// Two repairs at once send each lost entry once: the claims of the cycle keep them apart.
#[tokio::test]
async fn two_repairs_at_once_send_each_lost_entry_once() {
    let s = shipped(25).await;
    let mut env = s.env.clone();
    env.insert("RECONCILE_SETTLE_SECONDS".into(), "0".into());
    let lost: HashSet<String> = s.want.iter().filter(|id| id.starts_with("req-")).take(6).cloned().collect();
    s.ct.with(|c| c.lake.remove(&lost));
    let before = s.ct.accepted().len();
    let (a, b) = tokio::join!(run_bin(&["reconcile", "--repair"], &env), run_bin(&["reconcile", "--repair"], &env));
    for r in [&a, &b] {
        assert!(r.code == 0 || r.stderr.contains("held"), "{}", r.stderr);
    }
    let sent = sent_since(&s.ct, before);
    assert_eq!(sent.len(), 6, "each once: {sent:?}");
    assert_eq!(sent.into_iter().collect::<HashSet<_>>(), lost);
    let after = run_bin(&["reconcile"], &env).await;
    assert_eq!((after.code, field(&after, "status")), (0, "complete".into()), "{}", after.stderr);
}

/// Rows a node stamped an hour ahead, or an hour behind, are compared like any other: the window's
/// questions reach a day past now and a day before its start.
#[tokio::test]
async fn rows_stamped_by_skewed_clocks_are_found_and_their_loss_is_named() {
    let s = shipped(5).await;
    let now = chrono::Utc::now().timestamp();
    let skewed: Vec<Value> = [("AHEAD", now + 3_600), ("BEHIND", now - 3_600)]
        .iter()
        .map(|(tag, ts)| json!({"request_id": format!("{tag}{:026}", 1), "request_timestamp": ts, "method": "GET", "path": "/", "status": 200, "ttl": 2_591_000}))
        .collect();
    s.kong.add("requests", &skewed);
    let mut env = s.env.clone();
    env.insert("RECONCILE_SETTLE_SECONDS".into(), "0".into());
    env.insert("FULL_READ".into(), "true".into());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!((ran.code, ran.count("shipped")), (0, 2), "{}", ran.stderr);
    let checked = run_bin(&["reconcile"], &env).await;
    assert_eq!((checked.code, num(&checked, "missing")), (0, 0), "{}", checked.stderr);
    let ahead: HashSet<String> = [format!("req-AHEAD{:026}", 1)].into();
    s.ct.with(|c| c.lake.remove(&ahead));
    let lost = run_bin(&["reconcile"], &env).await;
    assert_eq!((lost.code, num(&lost, "missing")), (1, 1), "{}", lost.stderr);
}

/// A Kong that answers `GET /` with 429 and `Retry-After: 300` again and again: the reconcile stops
/// when the invocation's time is up, incomplete, not seven Retry-Afters later.
#[tokio::test]
async fn a_kong_that_keeps_saying_retry_later_does_not_hold_a_reconcile_past_its_deadline() {
    let (kong, _ct, _redis, handler) = four_second_lambda().await;
    kong.with(|k| {
        k.root_faults
            .extend(std::iter::repeat_n(support::Fault::TooManyRequests { retry_after_secs: 300 }, 10))
    });
    let (took, line) = failed_reconcile(&handler).await;
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(line.contains("status=incomplete"), "{line}");
}

/// A trail of five, and the in-process Lambda with four seconds an invocation (two kept back).
async fn four_second_lambda() -> (FakeKong, FakeCloudTrail, RedisServer, kong_audit_shipper::lambda::Handler) {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    load_trail(&kong, 5, true);
    // The deadline of `Context::default()` is unknown: MAX_RUN_SECONDS bounds the invocation.
    let handler = lambda_handler(&kong, &ct, &redis, &["--max-run-seconds", "4", "--deadline-margin-seconds", "2"]).await;
    (kong, ct, redis, handler)
}

/// Invokes the daily reconcile, which must fail; returns how long it took and its reconcile line.
async fn failed_reconcile(handler: &kong_audit_shipper::lambda::Handler) -> (Duration, String) {
    use kong_audit_shipper::lambda::RunFailed;
    use lambda_runtime::{Context, LambdaEvent};

    let started = std::time::Instant::now();
    let answer = handler
        .invoke(LambdaEvent::new(json!({"action": "reconcile"}), Context::default()))
        .await;
    let Err(RunFailed::Reconcile(line)) = answer else {
        panic!("a reconcile cut short is an error of the invocation");
    };
    (started.elapsed(), line)
}

/// A reconcile whose queries cannot finish before the invocation's deadline cancels them and says
/// so: an incomplete trail, never a complete one, and the invocation returns in time.
#[tokio::test]
async fn queries_still_running_at_the_deadline_are_cancelled_and_the_answer_is_incomplete() {
    let (_kong, ct, _redis, handler) = four_second_lambda().await;
    ct.with(|c| c.lake.running_polls = 100_000);
    let (took, line) = failed_reconcile(&handler).await;
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(line.contains("status=incomplete") && line.contains("cancelled"), "{line}");
    assert!(
        ct.with(|c| c.lake.calls.get("CancelQuery").copied().unwrap_or(0)) > 0,
        "the queries were cancelled"
    );
}
