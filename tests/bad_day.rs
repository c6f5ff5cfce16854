//! The bad days an earlier version lost entries on or slowed to a crawl, each replayed end to end
//! against the real binary, loopback fakes of Kong and CloudTrail, and a real redis-server:
//!
//! - a Kong node whose clock runs an hour ahead, or an hour behind;
//! - CloudTrail throttling 5 % of events and failing 5 % of calls;
//! - a run stopped by its time budget in a long backlog of both endpoints;
//! - a dead-letter queue that hangs while the run's time runs out;
//! - an oversize entry whose parts ship in different runs;
//! - entries another run holds;
//! - a run long enough for Kong's `ttl` to move on;
//! - a sweep of a long trail that cannot finish within one run.

#[path = "support/fake_sqs.rs"]
mod fake_sqs;
mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use kong_audit_shipper::event::recover;
use serde_json::{Value, json};
use support::*;

const VERSION: &str = "3.8.1.0";
const PREFIX: &str = "kong-audit-shipper:";

fn request(id: &str, ts: i64) -> Value {
    json!({"request_id": id, "request_timestamp": ts, "method": "PATCH", "path": "/routes/r1", "status": 200, "client_ip": "10.1.2.3", "ttl": 2_000_000})
}

struct Setup {
    kong: FakeKong,
    ct: FakeCloudTrail,
    redis: RedisServer,
    env: HashMap<String, String>,
}

async fn setup() -> Setup {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let env = env_for(&kong, &ct, Some(&redis));
    Setup { kong, ct, redis, env }
}

/// Rows stamped an hour ahead by one node must not move the watermark past the rows the other nodes
/// write meanwhile. (The watermark used to take the newest timestamp read: `now + 3600`, and the next
/// runs read from `now + 3300` on.)
#[tokio::test]
async fn a_node_an_hour_ahead_does_not_make_runs_skip_the_other_nodes_rows() {
    let s = setup().await;
    let now = chrono::Utc::now().timestamp();
    let mut want = HashSet::new();
    for i in 0..10 {
        let id = format!("EARLY{i:027}");
        s.kong.add("requests", &[request(&id, now - 100 + i)]);
        want.insert(format!("req-{id}"));
    }
    s.kong.add("requests", &[request("AHEAD000000000000000000000000001", now + 3_600)]);
    want.insert("req-AHEAD000000000000000000000000001".into());
    let first = run_bin(&["run"], &s.env).await;
    assert_eq!((first.code, first.count("shipped")), (0, 11), "{}", first.stderr);
    assert!(
        first.stderr.contains("Kong stamps rows ahead of this shipper's clock") && first.stderr.contains("ahead_seconds="),
        "the skew is reported: {}",
        first.stderr
    );
    let (mark, _) = s.redis.watermark("request").unwrap();
    assert!(mark <= chrono::Utc::now().timestamp(), "never ahead of our clock: {mark}");

    // The other nodes go on writing, stamped with the right time.
    for i in 0..5 {
        let id = format!("LATER{i:027}");
        s.kong.add("requests", &[request(&id, chrono::Utc::now().timestamp())]);
        want.insert(format!("req-{id}"));
    }
    let second = run_bin(&["run"], &s.env).await;
    assert_eq!((second.code, second.count("shipped")), (0, 5), "{}", second.stderr);
    // The row from the future is read again (cheaply) until our clock passes it.
    assert!(second.count("already_shipped") >= 1, "{}", second.stderr);
    exactly_once(&s.ct, &want);
}

/// Rows stamped an hour behind land below the watermark less the overlap; the daily sweep reads the
/// whole trail and ships them, with no operator involved. (They used to need a `FULL_READ` by hand.)
#[tokio::test]
async fn a_node_an_hour_behind_is_caught_by_the_daily_sweep() {
    let s = setup().await;
    let now = chrono::Utc::now().timestamp();
    let mut want = HashSet::new();
    for i in 0..10 {
        let id = format!("NORMAL{i:026}");
        s.kong.add("requests", &[request(&id, now - 50 + i)]);
        want.insert(format!("req-{id}"));
    }
    let first = run_bin(&["run"], &s.env).await;
    assert_eq!((first.code, first.count("shipped")), (0, 10), "{}", first.stderr);
    assert!(!s.redis.get(&format!("{PREFIX}watermark:sweep")).is_empty(), "the first run swept");

    // A node whose clock is an hour behind writes rows now.
    for i in 0..3 {
        let id = format!("BEHIND{i:026}");
        s.kong.add("requests", &[request(&id, now - 3_600 + i)]);
        want.insert(format!("req-{id}"));
    }
    let hourly = run_bin(&["run"], &s.env).await;
    assert_eq!(
        (hourly.code, hourly.count("shipped")),
        (0, 0),
        "beyond the 300 s overlap: {}",
        hourly.stderr
    );

    // A day later the sweep is due.
    s.redis
        .cli(&["SET", &format!("{PREFIX}watermark:sweep"), &(now - 86_401).to_string()]);
    let daily = run_bin(&["run"], &s.env).await;
    assert_eq!((daily.code, daily.count("shipped")), (0, 3), "{}", daily.stderr);
    assert!(daily.stderr.contains("sweeping the whole trail"), "{}", daily.stderr);
    exactly_once(&s.ct, &want);
}

/// 5 % of events throttled and 5 % of calls failed: everything ships exactly once, and the events
/// that failed rejoin full calls instead of going out as calls of their own (the calls of a collapse).
#[tokio::test]
async fn throttled_events_and_failed_calls_rejoin_full_calls_and_ship_exactly_once() {
    let s = setup().await;
    let (requests, objects) = load_trail(&s.kong, 1_500, true);
    s.ct.with(|c| {
        c.random_event_refusal = Some((0.05, "Throttling"));
        c.random_call_failure = Some((0.05, 500, "InternalServerException"));
        c.rng = Some(fastrand::Rng::with_seed(7));
    });
    let ran = run_bin(&["run"], &s.env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.count("retried") > 50, "faults were met: {}", ran.count("retried"));
    exactly_once(&s.ct, &ids(&requests, &objects));
    let sizes = s.ct.with(|c| c.call_sizes.clone());
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    assert!(mean >= 80.0, "calls carry {mean:.1} events on average: {sizes:?}");
}

/// A run stopped by its time budget in a backlog of both endpoints has shipped the oldest entries of
/// both, lost nothing, and exits 0 as `partial`; the next runs ship the rest. (Endpoints used to be
/// read one after the other, so a budgeted run shipped requests and starved objects.)
#[tokio::test]
async fn a_run_stopped_by_its_budget_ships_the_oldest_of_both_endpoints() {
    let s = setup().await;
    let (requests, objects) = load_trail(&s.kong, 3_000, true);
    s.kong.with(|k| k.latency = Duration::from_millis(100));
    let mut env = s.env.clone();
    env.insert("KONG_PAGE_SIZE".into(), "20".into());
    env.insert("MAX_RUN_SECONDS".into(), "4".into());
    env.insert("DEADLINE_MARGIN_SECONDS".into(), "2".into());
    let first = run_bin(&["run"], &env).await;
    assert_eq!(first.code, 0, "stopped at the budget, nothing lost: {}", first.stderr);
    assert!(first.stderr.contains("status=partial") && first.stderr.contains("stopped_early=true"));
    assert_eq!(s.redis.inflight(), 0, "no claim left behind");
    assert_eq!(first.count("failed"), 0);

    let shipped: HashSet<String> = s.ct.accepted_ids().into_keys().collect();
    let time = |e: &Value| e["request_timestamp"].as_i64().unwrap();
    let all: Vec<(String, i64)> = requests
        .iter()
        .map(|r| (format!("req-{}", r["request_id"].as_str().unwrap()), time(r)))
        .chain(objects.iter().map(|o| (format!("obj-{}", o["id"].as_str().unwrap()), time(o))))
        .collect();
    type Shipped<'a> = Vec<&'a (String, i64)>;
    let (done, left): (Shipped, Shipped) = all.iter().partition(|(id, _)| shipped.contains(id));
    assert!(!left.is_empty(), "the budget did stop the run");
    assert!(done.iter().any(|(id, _)| id.starts_with("req-")) && done.iter().any(|(id, _)| id.starts_with("obj-")));
    let newest_shipped = done.iter().map(|(_, t)| *t).max().unwrap();
    let oldest_left = left.iter().map(|(_, t)| *t).min().unwrap();
    assert!(
        newest_shipped <= oldest_left,
        "the oldest of both: shipped up to {newest_shipped}, left from {oldest_left}"
    );

    let mut runs = 1;
    loop {
        let next = run_bin(&["run"], &env).await;
        assert_eq!(next.code, 0, "{}", next.stderr);
        runs += 1;
        if next.stderr.contains("status=ok") {
            break;
        }
        assert!(runs < 30, "the backlog never drained");
    }
    exactly_once(&s.ct, &ids(&requests, &objects));
}

/// The time budget bounds the tail too: a dead-letter queue that hangs cannot keep the run past its
/// end, and what CloudTrail accepted is committed first. (A dead-letter send used to get 40 s after
/// the deadline, and the Lambda was killed before its commits.)
#[tokio::test]
async fn a_hanging_dead_letter_queue_cannot_hold_a_run_past_its_budget() {
    let s = setup().await;
    let sqs = fake_sqs::FakeSqs::start().await;
    sqs.with(|q| q.latency = Duration::from_secs(60));
    let now = chrono::Utc::now().timestamp();
    let entries: Vec<Value> = (0..20).map(|i| request(&format!("TAIL{i:028}"), now - 100 + i)).collect();
    s.kong.add("requests", &entries);
    let victim = format!("req-{}", entries[3]["request_id"].as_str().unwrap());
    s.ct.with(|c| c.refuse.insert(victim.clone(), "InvalidData"));
    let mut env = s.env.clone();
    env.insert("DEAD_LETTER_QUEUE_URL".into(), fake_sqs::QUEUE_URL.into());
    env.insert("AWS_ENDPOINT_URL_SQS".into(), sqs.url());
    env.insert("MAX_RUN_SECONDS".into(), "6".into());
    env.insert("DEADLINE_MARGIN_SECONDS".into(), "4".into());
    let started = Instant::now();
    let ran = run_bin(&["run"], &env).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "the run ended within its budget (6 s, plus start-up): {took:?}"
    );
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert_eq!((ran.count("shipped"), ran.count("failed")), (19, 1), "{}", ran.stderr);
    assert_eq!(s.redis.marked("shipped"), 19, "commits came first");
    assert_eq!(s.redis.inflight(), 0, "the entry whose letter was not stored is released");

    sqs.with(|q| q.latency = Duration::ZERO);
    let again = run_bin(&["run"], &env).await;
    assert_eq!(again.count("rejected"), 1, "{}", again.stderr);
    assert_eq!(sqs.bodies().len(), 1);
}

/// An entry too large for one event goes out as parts. When one part fails, the next run sends only
/// that part, although Kong's `ttl` changed in between: CloudTrail holds each part once, and they
/// reassemble into one entry, exactly as first read. (All parts used to be sent again, with ids and a
/// SHA-256 that changed with `ttl`: two versions of the entry in the Lake.)
#[tokio::test]
async fn parts_of_an_oversize_entry_ship_once_each_across_runs() {
    let s = setup().await;
    let now = chrono::Utc::now().timestamp();
    let big = |ttl: i64| {
        format!(
            r#"{{"id":"BIG-0001","request_id":"R1","request_timestamp":{},"dao_name":"plugins","operation":"update","entity":{},"ttl":{ttl}}}"#,
            now - 100,
            serde_json::to_string(&"é\"x".repeat(20_000)).unwrap()
        )
    };
    let first_read = big(2_000_000);
    s.kong.add_raw("objects", [first_read.clone()]);
    s.ct.with(|c| c.refuse.insert("obj-BIG-0001-p2".into(), "InternalFailure"));
    let mut env = s.env.clone();
    env.insert("MAX_ATTEMPTS".into(), "2".into());
    let first = run_bin(&["run"], &env).await;
    assert_eq!((first.code, first.count("failed")), (1, 1), "{}", first.stderr);
    let parts_first = s.ct.accepted_ids();
    assert!(
        parts_first.len() >= 2 && !parts_first.contains_key("obj-BIG-0001-p2"),
        "{parts_first:?}"
    );
    assert!(
        !s.redis.get(&format!("{PREFIX}parts:object:BIG-0001")).is_empty(),
        "accepted parts remembered"
    );

    // Days later Kong's ttl for the row is smaller, and part 2 goes through.
    s.kong.expire("objects", "BIG-0001");
    s.kong.add_raw("objects", [big(1_700_000)]);
    s.ct.with(|c| c.refuse.clear());
    let second = run_bin(&["run"], &env).await;
    assert_eq!((second.code, second.count("shipped")), (0, 1), "{}", second.stderr);
    let counts = s.ct.accepted_ids();
    assert!(counts.values().all(|n| *n == 1), "each part once: {counts:?}");
    assert_eq!(counts.len(), parts_first.len() + 1);

    let events: Vec<String> = s.ct.accepted().into_iter().map(|(_, data)| data).collect();
    let back = recover(events.iter().map(String::as_str));
    assert!(back.problems.is_empty(), "{:?}", back.problems);
    assert_eq!(back.entries.len(), 1, "one entry, not two versions");
    assert_eq!(back.entries[0].json, first_read, "exactly as first read");
}

/// Entries another run holds are counted as held, not shipped: the CLI exits 1 and says when to run
/// again. (They used to count as already shipped, with exit 0, although nobody may ship them.)
#[tokio::test]
async fn entries_another_run_holds_are_held_not_shipped() {
    let s = setup().await;
    let now = chrono::Utc::now().timestamp();
    let entries: Vec<Value> = (0..6).map(|i| request(&format!("HOLD{i:028}"), now - 100 + i)).collect();
    s.kong.add("requests", &entries);
    let key = format!("{PREFIX}request:{}", entries[2]["request_id"].as_str().unwrap());
    s.redis.cli(&["SET", &key, "inflight:a-backfill-that-was-stopped", "PX", "600000"]);
    let ran = run_bin(&["run"], &s.env).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert_eq!((ran.count("shipped"), ran.count("held"), ran.count("already_shipped")), (5, 1, 0));
    assert!(ran.stderr.contains("status=partial"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("run again") && ran.stderr.contains("CLAIM_LEASE_SECONDS"),
        "{}",
        ran.stderr
    );

    s.redis.cli(&["DEL", &key]);
    let after = run_bin(&["run"], &s.env).await;
    assert_eq!(
        (after.code, after.count("shipped"), after.count("held")),
        (0, 1, 0),
        "{}",
        after.stderr
    );
}

/// A mark dies with Kong's row (plus a short grace) however long the run took: its TTL is the `ttl`
/// read, less the time since it was read, plus the grace. (Marks used to be written with the `ttl` as
/// read, outliving the row by the run.)
#[tokio::test]
async fn marks_expire_with_kongs_rows_however_long_the_run_took() {
    let s = setup().await;
    let now = chrono::Utc::now().timestamp();
    let mut entry = request("SLOWRUN0000000000000000000000001", now - 10);
    entry["ttl"] = json!(100_000);
    s.kong.add("requests", &[entry]);
    s.ct.with(|c| c.latency = Duration::from_millis(2_200));
    let ran = run_bin(&["run"], &s.env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let ttl = s.redis.ttl(&format!("{PREFIX}request:SLOWRUN0000000000000000000000001"));
    let grace = kong_audit_shipper::ship::MARK_GRACE_SECONDS as i64;
    assert!(
        (90_000 + grace..=99_998 + grace).contains(&ttl),
        "ttl 100000 read, at least 2.2 s before the commit, plus the grace: {ttl}"
    );
}

/// A sweep over a trail too long for one run's budget goes on where the last run stopped: every run
/// makes progress, and the sweep completes. (Restarting from the oldest entry each time, a slow Kong
/// would never get past the same first pages.)
#[tokio::test]
async fn a_sweep_too_long_for_one_budget_goes_on_from_where_it_stopped() {
    let s = setup().await;
    let (requests, objects) = load_trail(&s.kong, 1_200, true);
    s.kong.with(|k| k.latency = Duration::from_millis(60));
    let mut env = s.env.clone();
    env.insert("KONG_PAGE_SIZE".into(), "20".into());
    env.insert("MAX_RUN_SECONDS".into(), "3".into());
    env.insert("DEADLINE_MARGIN_SECONDS".into(), "2".into());
    let mut shipped_per_run = Vec::new();
    for run in 0.. {
        assert!(run < 30, "the sweep never completed: {shipped_per_run:?}");
        let ran = run_bin(&["run"], &env).await;
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        shipped_per_run.push(ran.count("shipped"));
        if ran.stderr.contains("sweep complete") {
            break;
        }
        assert!(ran.count("shipped") > 0, "run {run} made no progress: {}", ran.stderr);
        let at = s.redis.get(&format!("{PREFIX}watermark:sweep:at:request"));
        assert!(!at.is_empty(), "the sweep's position is kept between runs");
    }
    assert!(!s.redis.get(&format!("{PREFIX}watermark:sweep")).is_empty());
    exactly_once(&s.ct, &ids(&requests, &objects));
}

/// On a Kong without timestamp filters there is no time order to merge by: the endpoints take turns
/// page by page, so a budgeted run still ships from both.
#[tokio::test]
async fn without_filters_a_budgeted_run_reads_both_endpoints_in_turn() {
    let kong = FakeKong::start("3.6.1.4").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 3_000, false);
    kong.with(|k| k.latency = Duration::from_millis(100));
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("KONG_PAGE_SIZE".into(), "20".into());
    env.insert("MAX_RUN_SECONDS".into(), "4".into());
    env.insert("DEADLINE_MARGIN_SECONDS".into(), "2".into());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stderr.contains("status=partial"), "{}", ran.stderr);
    let shipped = ct.accepted_ids();
    let requests_shipped = shipped.keys().filter(|id| id.starts_with("req-")).count();
    let objects_shipped = shipped.len() - requests_shipped;
    assert!(
        requests_shipped > 0 && objects_shipped > 0 && requests_shipped.abs_diff(objects_shipped) <= 40,
        "page for page: {requests_shipped} requests, {objects_shipped} objects"
    );
    assert!(shipped.len() < requests.len() + objects.len());
}

// ---------------------------------------------------------------- the protocol's edges

/// Where a read stood is told by Kong's clock, the one that stamps the rows: with the shipper's
/// clock an hour ahead of Kong's, a row that lands late a minute behind the newest one read is
/// still inside the overlap of the next run. (By the shipper's clock the overlap was spent an hour
/// ago, and the row waited for the daily sweep.)
#[tokio::test]
async fn a_shipper_clock_ahead_of_kongs_does_not_eat_the_overlap() {
    let s = setup().await;
    s.kong.with(|k| k.clock_offset = -3_600);
    let kong_now = chrono::Utc::now().timestamp() - 3_600;
    s.kong
        .add("requests", &[request("KONGCLOCK00000000000000000000001", kong_now - 10)]);
    let first = run_bin(&["run"], &s.env).await;
    assert_eq!((first.code, first.count("shipped")), (0, 1), "{}", first.stderr);
    // A row written a little late, stamped a minute before the newest one read.
    s.kong
        .add("requests", &[request("KONGCLOCK00000000000000000000002", kong_now - 70)]);
    let second = run_bin(&["run"], &s.env).await;
    assert_eq!((second.code, second.count("shipped")), (0, 1), "{}", second.stderr);
    assert!(
        !second.stderr.contains("sweeping the whole trail"),
        "the overlap, not a sweep: {}",
        second.stderr
    );
}

/// A Kong that answers `GET /` with 429 and `Retry-After: 300` again and again: the run stops when
/// its time is up, not seven Retry-Afters later.
#[tokio::test]
async fn a_kong_that_keeps_saying_retry_later_does_not_hold_a_run_past_its_budget() {
    let s = setup().await;
    s.kong.with(|k| {
        k.root_faults
            .extend(std::iter::repeat_n(support::Fault::TooManyRequests { retry_after_secs: 300 }, 10))
    });
    let mut env = s.env.clone();
    env.insert("MAX_RUN_SECONDS".into(), "4".into());
    env.insert("DEADLINE_MARGIN_SECONDS".into(), "2".into());
    env.insert("RETRY_MAX_MS".into(), "600000".into());
    let started = Instant::now();
    let ran = run_bin(&["run"], &env).await;
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("time ran out"), "{}", ran.stderr);
}

/// A sweep interval longer than half of Kong's retention would let rows behind the overlap expire
/// unread: refused before any work, naming both.
#[tokio::test]
async fn a_sweep_interval_longer_than_half_kongs_retention_is_refused() {
    let s = setup().await;
    s.kong.with(|k| k.record_ttl = 36_000);
    let mut env = s.env.clone();
    env.insert("SWEEP_INTERVAL_SECONDS".into(), "86400".into());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    for name in ["SWEEP_INTERVAL_SECONDS", "audit_log_record_ttl (36000 s)", "18000"] {
        assert!(ran.stderr.contains(name), "names {name}: {}", ran.stderr);
    }
    assert!(s.ct.accepted().is_empty());
    env.insert("SWEEP_INTERVAL_SECONDS".into(), "18000".into());
    assert_eq!(run_bin(&["run"], &env).await.code, 0);
}

/// Kong may serve a row whose `ttl` has run out (a node's clock ahead of the database's, a cleanup
/// not yet run): it is shipped once, and its mark outlives the next reads. (Its mark used to live one
/// second, and every read shipped it again.)
#[tokio::test]
async fn a_row_served_already_expired_is_not_shipped_again_on_every_read() {
    let s = setup().await;
    let now = chrono::Utc::now().timestamp();
    let mut row = request("EXPIRED0000000000000000000000001", now - 2_592_010);
    row["ttl"] = json!(-10);
    s.kong.add("requests", &[row]);
    let mut env = s.env.clone();
    env.insert("FULL_READ".into(), "true".into());
    let first = run_bin(&["run"], &env).await;
    assert_eq!((first.code, first.count("shipped")), (0, 1), "{}", first.stderr);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let second = run_bin(&["run"], &env).await;
    assert_eq!(
        (second.code, second.count("shipped"), second.count("already_shipped")),
        (0, 0, 1),
        "{}",
        second.stderr
    );
    assert!(s.redis.ttl(&format!("{PREFIX}request:EXPIRED0000000000000000000000001")) > 3_600);
    assert_eq!(s.ct.accepted().len(), 1);
}
