//! Fault injection, end to end: the real binary against loopback fakes of Kong and CloudTrail (and a
//! raw TCP proxy that cuts connections) and a real redis-server that the tests stop, slow down and
//! restart. Every test asserts the same three things:
//! - no entry is lost: each is in CloudTrail (or dead-lettered) by the end, or provably left for the
//!   next run with its claim released;
//! - no duplicate, except where CloudTrail accepted a call whose answer never arrived (and, after a
//!   store failure, exactly the entries whose "shipped" mark could not be written: see each test);
//! - the exit status and the summary tell the truth: `read = shipped + already_shipped + held +
//!   rejected + failed`, and a failed run says why, naming the setting to fix where there is one.

#[path = "support/cut_proxy.rs"]
mod cut_proxy;
mod support;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const VERSION: &str = "3.8.1.0";

fn adds_up(ran: &Ran) {
    let s = |f| ran.count(f);
    assert_eq!(
        s("read"),
        s("shipped") + s("already_shipped") + s("held") + s("rejected") + s("failed") + s("deferred"),
        "the summary adds up: {}",
        ran.stderr
    );
}

fn spawn_bin(args: &[&str], env: &HashMap<String, String>) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for keep in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.spawn().expect("the binary starts")
}

async fn finished(child: tokio::process::Child) -> Ran {
    let out = child.wait_with_output().await.unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A redis-server started by the test on a given port and directory (to restart one with its data).
struct Restarted(std::process::Child);

impl Restarted {
    fn on(port: u16, dir: &std::path::Path) -> Restarted {
        // Wrapped at once, so that a server that never answers is still killed when the test fails.
        let server = Restarted(support::redis_server::command(port, dir, None).spawn().unwrap());
        let start = Instant::now();
        loop {
            let pong = std::process::Command::new("redis-cli")
                .args(["-p", &port.to_string(), "PING"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
                .unwrap_or(false);
            if pong {
                return server;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "redis-server did not restart");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Setup {
    kong: FakeKong,
    ct: FakeCloudTrail,
    redis: RedisServer,
    env: HashMap<String, String>,
    want: HashSet<String>,
    requests: Vec<Value>,
    objects: Vec<Value>,
    /// Where the CLI's default files go (never the real home).
    _state: tempfile::TempDir,
}

async fn setup(n: usize) -> Setup {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, n, true);
    let state = tempfile::tempdir().unwrap();
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("XDG_STATE_HOME".into(), state.path().display().to_string());
    let want = ids(&requests, &objects);
    Setup {
        kong,
        ct,
        redis,
        env,
        want,
        requests,
        objects,
        _state: state,
    }
}

// ---------------------------------------------------------------- Kong

#[tokio::test]
async fn kong_500s_and_429_with_retry_after_are_retried_and_lose_nothing() {
    let s = setup(40).await;
    s.kong.with(|k| {
        k.faults.extend([
            support::Fault::Status(500),
            support::Fault::Status(502),
            support::Fault::TooManyRequests { retry_after_secs: 1 },
            support::Fault::Status(503),
        ])
    });
    let ran = run_bin(&["run"], &s.env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    adds_up(&ran);
    assert_eq!(ran.count("shipped"), s.want.len() as u64);
    assert!(
        ran.stderr.contains("HTTP 500") && ran.stderr.contains("HTTP 429"),
        "each retry is logged: {}",
        ran.stderr
    );
    let seconds: f64 = ran.summary()["seconds"].parse().unwrap();
    assert!(seconds >= 1.0, "Retry-After: 1 was honoured ({seconds} s)");
    exactly_once(&s.ct, &s.want);
}

#[tokio::test]
async fn a_kong_that_times_out_fails_the_run_cleanly_and_one_slow_answer_is_retried() {
    let s = setup(20).await;
    let mut env = s.env.clone();
    env.insert("KONG_TIMEOUT_SECONDS".into(), "1".into());
    env.insert("MAX_ATTEMPTS".into(), "2".into());

    // Every page answer takes longer than the timeout: the run gives up, having claimed nothing.
    s.kong.with(|k| k.latency = Duration::from_millis(2_500));
    let stuck = run_bin(&["run"], &env).await;
    assert_eq!(stuck.code, 1, "{}", stuck.stderr);
    adds_up(&stuck);
    assert!(
        stuck.stderr.contains("timed out") && stuck.stderr.contains("failed after 2 tries"),
        "{}",
        stuck.stderr
    );
    assert_eq!(stuck.summary()["status"], "failed");
    assert!(s.ct.accepted().is_empty());
    assert_eq!(s.redis.inflight(), 0);

    // One slow answer: retried, everything ships once.
    s.kong.with(|k| {
        k.latency = Duration::ZERO;
        k.faults.push_back(support::Fault::Delay(Duration::from_millis(2_500)));
    });
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stderr.contains("timed out"), "{}", ran.stderr);
    exactly_once(&s.ct, &s.want);
}

#[tokio::test]
async fn a_connection_cut_mid_body_is_retried() {
    let s = setup(30).await;
    let proxy = cut_proxy::CutProxy::start(s.kong.addr, 2).await;
    let mut env = s.env.clone();
    env.insert("KONG_ADMIN_API".into(), proxy.url());
    env.insert("KONG_PAGE_SIZE".into(), "20".into());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(proxy.cuts(), 2, "two answers were cut");
    assert!(ran.stderr.contains("retrying"), "{}", ran.stderr);
    adds_up(&ran);
    exactly_once(&s.ct, &s.want);
}

#[tokio::test]
async fn an_html_page_or_broken_json_stops_the_run_clearly_and_the_next_run_completes() {
    let s = setup(30).await;
    let mut env = s.env.clone();
    env.insert("KONG_PAGE_SIZE".into(), "10".into());
    // The first page of requests is fine, the second is a proxy's HTML page.
    let requests_next = |faults: [support::Fault; 2]| s.kong.with(|k| k.kind_faults.entry("requests".into()).or_default().extend(faults));
    requests_next([support::Fault::Delay(Duration::ZERO), support::Fault::HtmlPage]);
    let first = run_bin(&["run"], &env).await;
    assert_eq!(first.code, 1, "{}", first.stderr);
    adds_up(&first);
    assert!(
        first.stderr.contains("KONG_ADMIN_API") && first.stderr.contains("text/html"),
        "names the setting to check: {}",
        first.stderr
    );
    assert!(first.count("read") > 0);
    assert_eq!(
        first.count("shipped"),
        first.count("read"),
        "what was claimed before the bad page is shipped"
    );
    assert_eq!(s.redis.inflight(), 0, "no claim is left behind");

    // Next: a page whose JSON is broken.
    requests_next([
        support::Fault::Delay(Duration::ZERO),
        support::Fault::ExtraEntry("{\"request_id\":".into()),
    ]);
    let second = run_bin(&["run"], &env).await;
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert!(second.stderr.contains("did not answer with Kong's JSON"), "{}", second.stderr);
    assert_eq!(s.redis.inflight(), 0);

    let third = run_bin(&["run"], &env).await;
    assert_eq!(third.code, 0, "{}", third.stderr);
    adds_up(&third);
    exactly_once(&s.ct, &s.want);
}

/// An `offset` that is not a cursor (a number) is an error of the run naming the page, never the end
/// of the trail: the pages after it would go unread, and the sweep be recorded as done.
#[tokio::test]
async fn an_offset_that_is_not_a_cursor_stops_the_run_instead_of_ending_the_trail() {
    let s = setup(30).await;
    let mut env = s.env.clone();
    env.insert("KONG_PAGE_SIZE".into(), "10".into());
    s.kong.with(|k| {
        k.kind_faults
            .entry("requests".into())
            .or_default()
            .push_back(support::Fault::NumericOffset)
    });
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("/audit/requests") && ran.stderr.contains("not a cursor"),
        "{}",
        ran.stderr
    );
    assert!(
        s.redis.get("kong-audit-shipper:watermark:sweep").is_empty(),
        "the sweep is not recorded as done"
    );
    let second = run_bin(&["run"], &env).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    exactly_once(&s.ct, &s.want);
}

/// A page larger than anything Kong sends (64 MiB: a proxy's error page, a runaway payload) stops
/// the run with an error naming the page and the fix, instead of exhausting a Lambda's memory; what
/// was read before ships, and nothing moves past the page.
#[tokio::test]
async fn a_page_too_large_to_read_stops_the_run_naming_the_page() {
    let s = setup(20).await;
    let huge = format!(r#"{{"request_id":"HUGE","payload":"{}"}}"#, "x".repeat(65 * 1024 * 1024));
    s.kong.with(|k| {
        k.kind_faults
            .entry("objects".into())
            .or_default()
            .push_back(support::Fault::ExtraEntry(huge))
    });
    let ran = run_bin(&["run"], &s.env).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    adds_up(&ran);
    let line = ran.summary()["error"].clone();
    assert!(
        ran.stderr.contains("/audit/objects") && ran.stderr.contains("more than 67108864 bytes") && ran.stderr.contains("KONG_PAGE_SIZE"),
        "{line}"
    );
    assert!(s.redis.watermark("object").is_none(), "nothing moves past the page");
    let second = run_bin(&["run"], &s.env).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    exactly_once(&s.ct, &s.want);
}

#[tokio::test]
async fn a_malformed_entry_is_dead_lettered_with_its_reason_and_the_rest_ships() {
    let s = setup(20).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dl.ndjson");
    let mut env = s.env.clone();
    env.insert("DEAD_LETTER_FILE".into(), file.display().to_string());
    s.kong.with(|k| {
        k.kind_faults
            .entry("requests".into())
            .or_default()
            .push_back(support::Fault::ExtraEntry(
                r#"{"method":"DELETE","path":"/default/services/x","status":204}"#.into(),
            ))
    });
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    adds_up(&ran);
    assert_eq!((ran.count("rejected"), ran.count("shipped")), (1, s.want.len() as u64));
    let letter: Value = serde_json::from_str(std::fs::read_to_string(&file).unwrap().trim()).unwrap();
    assert_eq!(letter["code"], "Unmappable");
    assert!(letter["reason"].as_str().unwrap().contains("'request_id' is missing"), "{letter}");
    assert_eq!(letter["entry"]["path"], "/default/services/x", "the whole entry");
    exactly_once(&s.ct, &s.want);
}

#[tokio::test]
async fn an_offset_that_stops_working_fails_the_run_keeps_what_shipped_and_the_next_run_completes() {
    let s = setup(30).await;
    let mut env = s.env.clone();
    env.insert("KONG_PAGE_SIZE".into(), "10".into());
    s.kong.with(|k| {
        k.kind_faults
            .entry("requests".into())
            .or_default()
            .extend([support::Fault::Delay(Duration::ZERO), support::Fault::BrokenOffset])
    });
    let first = run_bin(&["run"], &env).await;
    assert_eq!(first.code, 1, "{}", first.stderr);
    adds_up(&first);
    assert!(
        first.stderr.contains("HTTP 400") && first.stderr.contains("invalid offset"),
        "{}",
        first.stderr
    );
    let shipped = first.count("shipped");
    assert!(shipped > 0 && shipped == first.count("read"), "{}", first.stderr);
    assert_eq!(s.redis.marked("shipped"), shipped as usize, "what shipped stays marked shipped");
    assert_eq!(s.redis.inflight(), 0);

    let second = run_bin(&["run"], &env).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    adds_up(&second);
    assert_eq!(second.count("shipped"), s.want.len() as u64 - shipped);
    exactly_once(&s.ct, &s.want);
}

#[tokio::test]
async fn entries_expiring_during_a_run_ship_if_read_and_never_disturb_the_paging() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 60, true);
    // One more entry that Kong keeps for one more second only: its key must not outlive it.
    let now = chrono::Utc::now().timestamp();
    kong.add("requests", &[json!({"request_id": "SHORT000000000000000000000000001", "request_timestamp": now - 2_591_999, "method": "GET", "path": "/", "status": 200, "ttl": 1})]);
    let state = tempfile::tempdir().unwrap();
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("XDG_STATE_HOME".into(), state.path().display().to_string());
    env.insert("KONG_PAGE_SIZE".into(), "10".into());
    kong.with(|k| k.latency = Duration::from_millis(300));
    let child = spawn_bin(&["run"], &env);
    until("the first page of requests", Duration::from_secs(10), || {
        kong.with(|k| k.answered.iter().any(|q| q.starts_with("/audit/requests")))
    })
    .await;
    // Kong deletes the oldest request (read on the first page) and the 10 newest (not read yet).
    let by_time: Vec<&str> = requests.iter().map(|r| r["request_id"].as_str().unwrap()).collect();
    let gone_unread: Vec<&str> = by_time[50..].to_vec();
    kong.expire("requests", by_time[0]);
    for id in &gone_unread {
        kong.expire("requests", id);
    }
    let ran = finished(child).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    adds_up(&ran);
    let mut want = ids(&requests, &objects);
    want.insert("req-SHORT000000000000000000000000001".into());
    for id in &gone_unread {
        want.remove(&format!("req-{id}"));
    }
    assert!(want.contains(&format!("req-{}", by_time[0])), "read before it expired: shipped");
    exactly_once(&ct, &want);
    // The mark outlives Kong's row by the grace, never by more.
    let ttl = redis.ttl("kong-audit-shipper:request:SHORT000000000000000000000000001");
    assert!(
        (1..=1 + kong_audit_shipper::ship::MARK_GRACE_SECONDS as i64).contains(&ttl),
        "{ttl}"
    );
}

// ---------------------------------------------------------------- Redis

#[tokio::test]
async fn redis_down_at_start_stops_before_any_work() {
    let mut s = setup(10).await;
    s.redis.stop();
    let ran = run_bin(&["run"], &s.env).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains(&format!("127.0.0.1:{}", s.redis.port)), "{}", ran.stderr);
    assert!(s.kong.audit_queries().is_empty() && s.ct.accepted().is_empty());
}

/// Redis dies while a batch is at CloudTrail. The run fails (its claims and its settle fail) and says
/// that entries were shipped but not recorded. Redis comes back with the data of its last snapshot
/// (taken just before it died: the claims of the run, no marks yet). The next run ships everything
/// not held by those claims; once the dead run's claims lapse, a run ships what they held.
/// Allowed duplicates: exactly the entries of the batch CloudTrail accepted while Redis was down (their
/// "shipped" marks could not be written, so nothing can tell they were shipped). Nothing else.
#[tokio::test]
async fn redis_down_mid_run_fails_the_run_and_after_a_restart_with_its_data_nothing_is_lost() {
    let mut s = setup(200).await;
    let mut env = s.env.clone();
    env.insert("PUT_CONCURRENCY".into(), "1".into());
    env.insert("KONG_PAGE_SIZE".into(), "50".into());
    s.ct.with(|c| c.latency = Duration::from_millis(1_500));
    let child = spawn_bin(&["run"], &env);
    until("the first put", Duration::from_secs(20), || s.ct.with(|c| c.received >= 1)).await;
    assert_eq!(s.redis.cli(&["SAVE"]).unwrap(), "OK");
    s.redis.stop();
    let first = finished(child).await;
    assert_eq!(first.code, 1, "{}", first.stderr);
    adds_up(&first);
    assert!(
        first.stderr.contains("entries were shipped but could not be recorded"),
        "says that a batch may come again: {}",
        first.stderr
    );
    let lost_settle: HashSet<String> = s.ct.accepted_ids().into_keys().collect();
    assert_eq!(lost_settle.len(), first.count("shipped") as usize);
    assert!(!lost_settle.is_empty());

    let _back = Restarted::on(s.redis.port, s.redis.dir.path());
    let held = s.redis.inflight();
    assert!(held >= lost_settle.len(), "the snapshot has the dead run's claims ({held})");
    let second = run_bin(&["run"], &env).await;
    assert_eq!(second.code, 1, "held entries are not shipped: {}", second.stderr);
    adds_up(&second);
    assert_eq!(second.count("held"), held as u64, "claims of the dead run are respected");
    assert!(
        second.stderr.contains("CLAIM_LEASE_SECONDS"),
        "says when to run again: {}",
        second.stderr
    );
    assert!(
        s.ct.accepted_ids().values().all(|n| *n == 1),
        "no duplicate while the dead run's claims hold"
    );

    assert_eq!(s.redis.lapse_claims(), held);
    let third = run_bin(&["run"], &env).await;
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert_eq!(third.count("shipped"), held as u64);
    let counts = s.ct.accepted_ids();
    let twice: HashSet<String> = counts.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id.clone()).collect();
    assert_eq!(twice, lost_settle, "duplicates are exactly the batch whose settle was lost");
    assert!(counts.values().all(|n| *n <= 2));
    assert_eq!(counts.keys().cloned().collect::<HashSet<_>>(), s.want, "nothing lost");
}

/// Redis comes back empty (no persistence, a new node, a `FLUSHALL`): the store has no record of its
/// life, so the next run asks the destination what it holds and marks those entries instead of
/// shipping Kong's retained trail again; entries written meanwhile wait until the destination has had
/// time to ingest what was shipped before the loss, then ship. When only the marks are lost (evicted
/// under a `volatile-*` policy, which spares the watermark because it has no TTL, and the record of the
/// store's life), incremental reads limit the re-shipping to the overlap window, as the second half
/// shows.
#[tokio::test]
async fn redis_restarted_empty_is_rebuilt_from_the_destination_and_a_surviving_watermark_limits_a_partial_loss_to_the_overlap() {
    let mut s = setup(90).await;
    let first = run_bin(&["run"], &s.env).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    exactly_once(&s.ct, &s.want);

    let port = s.redis.port;
    s.redis.stop();
    let empty = tempfile::tempdir().unwrap();
    let _fresh = Restarted::on(port, empty.path());
    let now = chrono::Utc::now().timestamp();
    let new: Vec<Value> = (0..3)
        .map(|i| json!({"request_id": format!("AFTER{i:027}"), "request_timestamp": now - 30, "method": "GET", "path": "/", "status": 200, "ttl": 2_591_000}))
        .collect();
    s.kong.add("requests", &new);
    let second = run_bin(&["run"], &s.env).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    adds_up(&second);
    assert_eq!(
        (second.count("shipped"), second.count("rebuilt"), second.count("deferred")),
        (0, s.want.len() as u64, 3),
        "nothing shipped again; what the destination does not show yet waits: {}",
        second.stderr
    );
    assert!(s.ct.accepted_ids().values().all(|n| *n == 1), "no duplicate");
    // The next run, once the destination has had time to ingest (here: at once), ships the new ones.
    let mut settled = s.env.clone();
    settled.insert("RECONCILE_SETTLE_SECONDS".into(), "0".into());
    let third = run_bin(&["run"], &settled).await;
    assert_eq!(
        (third.code, third.count("shipped"), third.count("deferred")),
        (0, 3, 0),
        "{}",
        third.stderr
    );
    let mut want = s.want.clone();
    want.extend(new.iter().map(|r| format!("req-{}", r["request_id"].as_str().unwrap())));
    exactly_once(&s.ct, &want);
    assert_eq!(s.redis.get("kong-audit-shipper:store:life").split('@').next(), Some("whole"));
    s.want = want;
    s.requests.extend(new);

    // Only the marks are lost; the watermarks (and the sweep's record) survive.
    let deleted: usize = s
        .redis
        .cli(&[
            "EVAL",
            "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do if not string.find(k, ':watermark:', 1, true) then redis.call('DEL', k) n = n + 1 end end return n",
            "0",
            "kong-audit-shipper:*",
        ])
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(deleted, s.want.len() + 1, "the marks and the record of the store's life");
    // Reads resume at the watermark, less the overlap where rows could still arrive late.
    let resume = |kind: &str| {
        let (at, read_at) = s.redis.watermark(kind).unwrap();
        at.min(read_at.unwrap() - 3)
    };
    let (wr, wo) = (resume("request"), resume("object"));
    let mut env = s.env.clone();
    env.insert("OVERLAP_SECONDS".into(), "3".into());
    let fourth = run_bin(&["run"], &env).await;
    assert_eq!(fourth.code, 0, "{}", fourth.stderr);
    adds_up(&fourth);
    let since = |entries: &[Value], w: i64| entries.iter().filter(|e| e["request_timestamp"].as_i64().unwrap() >= w).count();
    let window = since(&s.requests, wr) + since(&s.objects, wo);
    assert_eq!(
        fourth.count("shipped"),
        window as u64,
        "exactly the entries from where reads resume, again"
    );
    assert!(window < s.want.len() / 4, "{window} of {}", s.want.len());
}

/// A store rebuilt empty without a flood: `run --since T` ships only what is newer than `T`, and no
/// later run (the daily sweep included) goes back before it.
#[tokio::test]
async fn a_rebuilt_store_with_run_since_ships_nothing_older_than_the_floor() {
    let mut s = setup(60).await;
    let first = run_bin(&["run"], &s.env).await;
    assert_eq!(first.code, 0, "{}", first.stderr);

    let port = s.redis.port;
    s.redis.stop();
    let empty = tempfile::tempdir().unwrap();
    let _fresh = Restarted::on(port, empty.path());
    // Entries written while the store was being rebuilt.
    let now = chrono::Utc::now().timestamp();
    let new: Vec<Value> = (0..5)
        .map(|i| json!({"request_id": format!("AFTER{i:027}"), "request_timestamp": now - 30, "method": "GET", "path": "/", "status": 200, "ttl": 2_591_000}))
        .collect();
    s.kong.add("requests", &new);
    let since = (now - 60).to_string();
    let ran = run_bin(&["run", "--since", &since], &s.env).await;
    assert_eq!((ran.code, ran.count("shipped"), ran.count("read")), (0, 5, 5), "{}", ran.stderr);
    assert!(
        s.kong
            .audit_queries()
            .iter()
            .rev()
            .take(2)
            .all(|q| q.contains(&format!("after={since}"))),
        "Kong is asked for nothing older: {:?}",
        s.kong.audit_queries()
    );
    // A later run, and a full read, respect the floor too.
    let later = run_bin(&["run"], &s.env).await;
    assert_eq!((later.code, later.count("shipped")), (0, 0), "{}", later.stderr);
    let mut full = s.env.clone();
    full.insert("FULL_READ".into(), "true".into());
    let whole = run_bin(&["run"], &full).await;
    assert_eq!(
        (whole.code, whole.count("shipped"), whole.count("read")),
        (0, 0, 5),
        "{}",
        whole.stderr
    );
    let counts = s.ct.accepted_ids();
    assert!(counts.values().all(|n| *n == 1), "no entry shipped twice");
    assert_eq!(counts.len(), s.want.len() + 5);

    let future = run_bin(&["run", "--since", &(now + 3_600).to_string()], &s.env).await;
    assert_eq!(future.code, 2, "{}", future.stderr);
    assert!(future.stderr.contains("in the future"), "{}", future.stderr);
}

#[tokio::test]
async fn a_slow_redis_is_tolerated() {
    let s = setup(120).await;
    let mut env = s.env.clone();
    env.insert("KONG_PAGE_SIZE".into(), "25".into());
    let port = s.redis.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    // Redis answers nothing for 300 ms out of every 350 ms while the run goes on.
    let pauser = std::thread::spawn(move || {
        let mut pauses = 0;
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = std::process::Command::new("redis-cli")
                .args(["-p", &port.to_string(), "CLIENT", "PAUSE", "300", "ALL"])
                .output();
            pauses += 1;
            std::thread::sleep(Duration::from_millis(350));
        }
        pauses
    });
    let ran = run_bin(&["run"], &env).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let pauses = pauser.join().unwrap();
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(pauses >= 2, "Redis was paused {pauses} times during the run");
    adds_up(&ran);
    exactly_once(&s.ct, &s.want);
}

// ---------------------------------------------------------------- CloudTrail

#[tokio::test]
async fn whole_call_5xx_and_throttling_are_retried_without_duplicates() {
    let s = setup(80).await;
    s.ct.with(|c| {
        c.faults.extend([
            CallFault::Status(500, "InternalServerException"),
            CallFault::Status(503, "ServiceUnavailableException"),
            CallFault::Status(429, "ThrottlingException"),
            CallFault::Status(502, "BadGateway"),
        ])
    });
    let ran = run_bin(&["run"], &s.env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    adds_up(&ran);
    assert!(ran.count("retried") > 0);
    exactly_once(&s.ct, &s.want);
}

#[tokio::test]
async fn entries_failed_in_one_call_are_retried_together_in_one_call() {
    // An hourly run's few hundred entries are all queued before the first answer: what one failed
    // call held must go out again as one call, not one call per entry as each one's retry comes.
    for fault in [
        CallFault::Status(500, "InternalServerException"),
        CallFault::EveryEvent("InternalFailure"),
    ] {
        let s = setup(40).await;
        assert!(s.want.len() <= 100, "one call holds the whole trail");
        let mut env = s.env.clone();
        env.insert("PUT_CONCURRENCY".into(), "1".into());
        s.ct.with(|c| c.faults.push_back(fault));
        let ran = run_bin(&["run"], &env).await;
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        adds_up(&ran);
        assert_eq!(ran.count("retried"), s.want.len() as u64);
        assert_eq!(s.ct.with(|c| c.calls), 2, "the failed call, then one retry: {}", ran.stderr);
        exactly_once(&s.ct, &s.want);
    }
}

#[tokio::test]
async fn per_event_throttling_and_internal_failures_are_retried_and_exhausted_retries_release_the_entries() {
    let s = setup(60).await;
    let mut env = s.env.clone();
    env.insert("PUT_CONCURRENCY".into(), "1".into());
    s.ct.with(|c| {
        c.faults
            .extend([CallFault::FirstEvents(10, "Throttling"), CallFault::EveryEvent("InternalFailure")])
    });
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.count("retried") >= 10, "{}", ran.count("retried"));
    exactly_once(&s.ct, &s.want);

    // Throttling only slows a batch down: more throttled rounds than MAX_ATTEMPTS still ship.
    let throttled = setup(20).await;
    let mut env = throttled.env.clone();
    env.insert("MAX_ATTEMPTS".into(), "2".into());
    env.insert("PUT_CONCURRENCY".into(), "1".into());
    throttled
        .ct
        .with(|c| c.faults.extend(std::iter::repeat_n(CallFault::EveryEvent("Throttling"), 4)));
    let slowed = run_bin(&["run"], &env).await;
    assert_eq!(slowed.code, 0, "{}", slowed.stderr);
    adds_up(&slowed);
    assert!(slowed.count("retried") > 0);
    exactly_once(&throttled.ct, &throttled.want);

    // Failures that are not throttling use up MAX_ATTEMPTS: those entries are released.
    let fresh = setup(20).await;
    let mut env = fresh.env.clone();
    env.insert("MAX_ATTEMPTS".into(), "2".into());
    env.insert("PUT_CONCURRENCY".into(), "1".into());
    fresh
        .ct
        .with(|c| c.faults.extend(std::iter::repeat_n(CallFault::EveryEvent("InternalFailure"), 4)));
    let gave_up = run_bin(&["run"], &env).await;
    assert_eq!(gave_up.code, 1, "{}", gave_up.stderr);
    adds_up(&gave_up);
    assert!(gave_up.count("failed") > 0);
    assert_eq!(fresh.redis.inflight(), 0, "released for the next run");
    // Failed together, retried together: the two calls MAX_ATTEMPTS allows used two of the faults.
    assert_eq!(fresh.ct.with(|c| c.calls), 2);
    fresh.ct.with(|c| c.faults.clear());
    let next = run_bin(&["run"], &env).await;
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert_eq!(next.count("shipped"), gave_up.count("failed"));
    exactly_once(&fresh.ct, &fresh.want);
}

#[tokio::test]
async fn permanent_per_event_errors_are_dead_lettered_with_their_code_and_never_retried() {
    let s = setup(30).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dl.ndjson");
    let mut env = s.env.clone();
    env.insert("DEAD_LETTER_FILE".into(), file.display().to_string());
    let mut victims: Vec<&String> = s.want.iter().collect();
    victims.sort();
    let codes = ["InvalidData", "FieldTooLong", "InvalidChecksum"];
    s.ct.with(|c| {
        for (id, code) in victims.iter().zip(codes) {
            c.refuse.insert(id.to_string(), code);
        }
    });
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    adds_up(&ran);
    assert_eq!(ran.count("rejected"), 3);
    let letters: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: HashSet<&str> = letters.iter().map(|l| l["code"].as_str().unwrap()).collect();
    assert_eq!(got, codes.into_iter().collect());
    for code in codes {
        assert_eq!(s.redis.marked(&format!("rejected:{code}")), 1);
    }
    let calls = s.ct.with(|c| c.calls);
    let again = run_bin(&["run"], &env).await;
    assert_eq!((again.code, s.ct.with(|c| c.calls)), (0, calls), "not retried: {}", again.stderr);
    let mut want = s.want.clone();
    victims.iter().take(3).for_each(|v| {
        want.remove(*v);
    });
    exactly_once(&s.ct, &want);
}

#[tokio::test]
async fn an_answer_lost_after_acceptance_duplicates_exactly_that_batch() {
    let s = setup(150).await;
    let mut env = s.env.clone();
    env.insert("PUT_CONCURRENCY".into(), "1".into());
    // The first call is answered; the second is accepted and its answer lost.
    s.ct.with(|c| c.faults.extend([CallFault::FirstEvents(0, "none"), CallFault::AcceptThenLose]));
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    adds_up(&ran);
    let lost: HashSet<String> = s.ct.with(|c| c.lost_batches.concat()).into_iter().collect();
    assert!(lost.len() >= 50, "a whole batch: {}", lost.len());
    let counts = s.ct.accepted_ids();
    let twice: HashSet<String> = counts.iter().filter(|(_, n)| **n == 2).map(|(id, _)| id.clone()).collect();
    assert_eq!(twice, lost, "the only duplicates are the ids of the call whose answer was lost");
    assert!(counts.values().all(|n| *n <= 2));
    assert_eq!(counts.into_keys().collect::<HashSet<_>>(), s.want);
}

#[tokio::test]
async fn a_wrong_channel_fails_naming_channel_arn_and_releases_every_claim() {
    let s = setup(60).await;
    let mut env = s.env.clone();
    env.insert(
        "CHANNEL_ARN".into(),
        "arn:aws:cloudtrail:us-east-1:123456789012:channel/no-such-channel".into(),
    );
    env.insert("KONG_PAGE_SIZE".into(), "20".into());
    let ran = run_bin(&["run"], &env).await;
    assert_ne!(ran.code, 0);
    adds_up(&ran);
    assert!(ran.stderr.contains("CHANNEL_ARN"), "{}", ran.stderr);
    assert!(s.ct.accepted().is_empty());
    assert_eq!(s.redis.inflight(), 0, "every claim released");
    assert_eq!(s.redis.marked("shipped"), 0);
    let fixed = run_bin(&["run"], &s.env).await;
    assert_eq!(fixed.code, 0, "{}", fixed.stderr);
    exactly_once(&s.ct, &s.want);
}

#[tokio::test]
async fn no_aws_credentials_fail_the_run_at_once_saying_so_and_release_every_claim() {
    let s = setup(30).await;
    let mut env = s.env.clone();
    env.remove("AWS_ACCESS_KEY_ID");
    env.remove("AWS_SECRET_ACCESS_KEY");
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    adds_up(&ran);
    // Retrying cannot find credentials: the first call says so and the run stops (it used to retry
    // every entry until its attempts ran out, then report a transient failure).
    assert_eq!(ran.count("retried"), 0, "{}", ran.stderr);
    assert!(ran.stderr.contains("no usable AWS credentials"), "{}", ran.stderr);
    assert_eq!(ran.summary()["status"], "failed");
    assert_eq!(s.redis.inflight(), 0, "every claim released");
    assert_eq!(s.redis.marked("shipped"), 0);
    let fixed = run_bin(&["run"], &s.env).await;
    assert_eq!(fixed.code, 0, "{}", fixed.stderr);
    exactly_once(&s.ct, &s.want);
}

#[tokio::test]
async fn a_missing_external_id_fails_naming_channel_external_id() {
    let s = setup(20).await;
    s.ct.with(|c| c.external_id = Some("kong-audit-ext-42".into()));
    let ran = run_bin(&["run"], &s.env).await;
    assert_ne!(ran.code, 0);
    adds_up(&ran);
    assert!(ran.stderr.contains("CHANNEL_EXTERNAL_ID"), "{}", ran.stderr);
    assert_eq!(s.redis.inflight(), 0);
    let mut env = s.env.clone();
    env.insert("CHANNEL_EXTERNAL_ID".into(), "kong-audit-ext-42".into());
    let fixed = run_bin(&["run"], &env).await;
    assert_eq!(fixed.code, 0, "{}", fixed.stderr);
    exactly_once(&s.ct, &s.want);
}

// ---------------------------------------------------------------- Time

#[tokio::test]
async fn three_runs_at_once_under_throttling_ship_every_entry_exactly_once() {
    let s = setup(400).await;
    s.ct.with(|c| {
        c.quota_per_second = 6;
        c.latency = Duration::from_millis(10);
    });
    let mut env = s.env.clone();
    env.insert("KONG_PAGE_SIZE".into(), "40".into());
    let (a, b, c) = tokio::join!(run_bin(&["run"], &env), run_bin(&["run"], &env), run_bin(&["run"], &env));
    for r in [&a, &b, &c] {
        // A run that found entries another run held says so and exits 1; nothing failed.
        assert_eq!(r.code, i32::from(r.count("held") > 0), "{}", r.stderr);
        assert_eq!(r.count("failed"), 0, "{}", r.stderr);
        adds_up(r);
    }
    assert_eq!(a.count("shipped") + b.count("shipped") + c.count("shipped"), s.want.len() as u64);
    assert!(s.ct.with(|c| c.throttled_calls) > 0, "the quota did throttle");
    exactly_once(&s.ct, &s.want);
}

/// The process dies (SIGKILL) after CloudTrail accepted a batch and before the marks are written.
/// Its claims stay until their lease ends: a run right after ships nothing twice (it counts the held
/// entries as taken). After the lease the held entries are shipped again: for the batch CloudTrail had
/// accepted, that is the one duplicate no client can avoid (it never learned the outcome).
#[tokio::test]
async fn a_process_killed_between_put_and_settle_duplicates_only_the_accepted_batch_and_only_after_the_lease() {
    let s = setup(150).await;
    let mut env = s.env.clone();
    env.insert("PUT_CONCURRENCY".into(), "1".into());
    s.ct.with(|c| c.faults.push_back(CallFault::AcceptThenDelay(Duration::from_secs(60))));
    let mut child = spawn_bin(&["run"], &env);
    until("CloudTrail to accept the first batch", Duration::from_secs(20), || {
        !s.ct.with(|c| c.lost_batches.is_empty())
    })
    .await;
    child.start_kill().unwrap();
    let killed = finished(child).await;
    assert_eq!(killed.code, -1, "killed by a signal");
    let accepted: HashSet<String> = s.ct.with(|c| c.lost_batches.concat()).into_iter().collect();
    let held = s.redis.inflight();
    assert!(held >= accepted.len(), "the accepted batch is still claimed ({held})");

    let right_after = run_bin(&["run"], &env).await;
    assert_eq!(
        right_after.code, 1,
        "held entries are not reported as shipped: {}",
        right_after.stderr
    );
    adds_up(&right_after);
    assert_eq!(right_after.count("held"), held as u64);
    assert_eq!(right_after.count("already_shipped"), 0);
    assert!(
        s.ct.accepted_ids().values().all(|n| *n == 1),
        "nothing shipped twice while the claims hold"
    );

    assert_eq!(s.redis.lapse_claims(), held, "the lease ends");
    let after_lease = run_bin(&["run"], &env).await;
    assert_eq!(after_lease.code, 0, "{}", after_lease.stderr);
    let counts = s.ct.accepted_ids();
    let twice: HashSet<String> = counts.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id.clone()).collect();
    assert_eq!(twice, accepted, "the only duplicates are the batch accepted before the kill");
    assert_eq!(counts.into_keys().collect::<HashSet<_>>(), s.want, "nothing lost");
}

/// CLAIM_LEASE_SECONDS accepts 60, but no put starts on a claim with less than 60 s left: with the
/// minimum lease nothing would ever be shipped. (Fails until ship.rs uses a margin below the lease.)
#[tokio::test]
async fn the_minimum_lease_still_ships() {
    let s = setup(10).await;
    let mut env = s.env.clone();
    env.insert("CLAIM_LEASE_SECONDS".into(), "60".into());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    exactly_once(&s.ct, &s.want);
}
