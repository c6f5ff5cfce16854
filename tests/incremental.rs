//! Incremental reads: the watermark never skips an entry (same-second ties, late rows, a cut-short
//! run, failed entries, entries held by another run, entries arriving during the run), and the
//! hourly run reads pages in proportion to new entries, not retained ones.

mod support;

use std::sync::Arc;

use kong_audit_shipper::config::KongConfig;
use kong_audit_shipper::dead_letter::LogDeadLetters;
use kong_audit_shipper::dedup::RedisStore;
use kong_audit_shipper::kong::KongClient;
use kong_audit_shipper::ship::{ShipOptions, Shipper};
use kong_audit_shipper::sink::MemorySink;
use kong_audit_shipper::summary::Counters;
use serde_json::{Value, json};
use support::*;

const VERSION: &str = "3.9.1.0";

fn request(id: &str, ts: i64) -> Value {
    json!({"request_id": id, "request_timestamp": ts, "method": "PATCH", "path": "/routes/r1", "status": 200, "client_ip": "10.1.2.3", "ttl": 2_000_000})
}

fn shipped_exactly_once(ct: &FakeCloudTrail, expected: usize) {
    let counts = ct.accepted_ids();
    assert_eq!(counts.len(), expected, "distinct entries shipped");
    assert!(
        counts.values().all(|n| *n == 1),
        "an entry was shipped twice: {:?}",
        counts.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_hourly_run_reads_only_pages_with_new_entries() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 3_000, true);
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("KONG_PAGE_SIZE".into(), "100".into());
    // The sample trail holds 3 requests (and about as many objects) per second: a 30 s overlap
    // re-reads about 180 rows.
    env.insert("OVERLAP_SECONDS".into(), "30".into());
    let first = run_bin(&["run"], &env).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let full_pages = first.count("pages");
    assert!(full_pages > 40, "{full_pages}");
    let (mark, read_at) = redis.watermark("request").expect("a watermark is saved");
    let read_at = read_at.expect("with the time its region was read");
    assert_eq!(
        mark,
        requests.iter().map(|r| r["request_timestamp"].as_i64().unwrap()).max().unwrap()
    );

    let now = chrono::Utc::now().timestamp();
    kong.add(
        "requests",
        &(0..10).map(|i| request(&format!("NEWREQ{i:026}"), now)).collect::<Vec<_>>(),
    );
    let before = kong.audit_queries().len();
    let second = run_bin(&["run"], &env).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.count("shipped"), 10);
    assert!(
        second.count("pages") <= 6,
        "a handful of pages, not {full_pages}: {}",
        second.count("pages")
    );
    // The overlap is read again only as far as rows could still arrive late: within 30 s of when the
    // first run read there (the trail is a day old, so from the watermark itself).
    let from = mark.min(read_at - 30);
    assert_eq!(from, mark);
    let queries: Vec<String> = kong.audit_queries()[before..].to_vec();
    assert!(
        queries.iter().all(|q| q.contains(&format!("after={from}"))),
        "reads from the watermark: {queries:?}"
    );
    shipped_exactly_once(&ct, requests.len() + objects.len() + 10);
}

#[tokio::test]
async fn same_second_ties_across_pages_and_late_arrivals_in_that_second_are_not_skipped() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let t = chrono::Utc::now().timestamp() - 50;
    kong.add("requests", &(0..25).map(|i| request(&format!("TIE{i:029}"), t)).collect::<Vec<_>>());
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("KONG_PAGE_SIZE".into(), "10".into());
    env.insert("OVERLAP_SECONDS".into(), "0".into());
    assert_eq!(run_bin(&["run"], &env).await.count("shipped"), 25);
    // Five more rows stamped with the same second arrive after the run.
    kong.add(
        "requests",
        &(25..30).map(|i| request(&format!("TIE{i:029}"), t)).collect::<Vec<_>>(),
    );
    let again = run_bin(&["run"], &env).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        again.count("shipped"),
        5,
        "even with no overlap, the watermark's own second is read again"
    );
    shipped_exactly_once(&ct, 30);
}

#[tokio::test]
async fn late_rows_inside_the_overlap_are_shipped_and_a_full_read_catches_older_ones() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let t = chrono::Utc::now().timestamp() - 10;
    kong.add("requests", &[request("BASE0000000000000000000000000001", t)]);
    let env = env_for(&kong, &ct, Some(&redis));
    assert_eq!(run_bin(&["run"], &env).await.count("shipped"), 1);
    // A node with a slow clock writes a row 100 s in the past, another one 1000 s in the past.
    kong.add(
        "requests",
        &[
            request("LATE0000000000000000000000000100", t - 100),
            request("LATE0000000000000000000000001000", t - 1_000),
        ],
    );
    let incremental = run_bin(&["run"], &env).await;
    assert_eq!(incremental.count("shipped"), 1, "the row inside the 300 s overlap is shipped");
    // The row beyond the overlap needs a full read; it is then shipped, and nothing twice.
    let mut full = env.clone();
    full.insert("FULL_READ".into(), "true".into());
    let ran = run_bin(&["run"], &full).await;
    assert_eq!((ran.code, ran.count("shipped")), (0, 1), "{}", ran.stderr);
    shipped_exactly_once(&ct, 3);
}

#[tokio::test]
async fn a_run_cut_short_by_kong_failing_leaves_nothing_behind() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 300, true);
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("KONG_PAGE_SIZE".into(), "50".into());
    env.insert("MAX_ATTEMPTS".into(), "2".into());
    // The third page of requests fails for good.
    kong.with(|s| {
        s.kind_faults.entry("requests".into()).or_default().extend([
            Fault::Delay(std::time::Duration::ZERO),
            Fault::Delay(std::time::Duration::ZERO),
            Fault::Status(500),
            Fault::Status(500),
        ])
    });
    let cut = run_bin(&["run"], &env).await;
    assert_eq!(cut.code, 1, "{}", cut.stderr);
    assert!(
        cut.count("shipped") >= 100 && cut.count("shipped") < 300,
        "{}",
        cut.count("shipped")
    );
    let (mark, _) = redis.watermark("request").unwrap();
    let unshipped_oldest = requests
        .iter()
        .filter(|r| {
            !ct.accepted_ids()
                .contains_key(&format!("req-{}", r["request_id"].as_str().unwrap()))
        })
        .map(|r| r["request_timestamp"].as_i64().unwrap())
        .min()
        .unwrap();
    assert!(
        mark <= unshipped_oldest,
        "watermark {mark} passed an unshipped entry at {unshipped_oldest}"
    );
    let rest = run_bin(&["run"], &env).await;
    assert_eq!(rest.code, 0, "{}", rest.stderr);
    shipped_exactly_once(&ct, requests.len() + objects.len());
}

#[tokio::test]
async fn entries_that_fail_to_ship_hold_the_watermark_back_until_they_are_shipped() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let t = chrono::Utc::now().timestamp() - 4_000;
    let entries: Vec<Value> = (0..20).map(|i| request(&format!("FAIL{i:028}"), t + i * 60)).collect();
    kong.add("requests", &entries);
    // The oldest entry meets InternalFailure on every try: it is released, not marked.
    ct.with(|s| s.refuse.insert("req-FAIL0000000000000000000000000000".into(), "InternalFailure"));
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("MAX_ATTEMPTS".into(), "2".into());
    env.insert("OVERLAP_SECONDS".into(), "0".into());
    let first = run_bin(&["run"], &env).await;
    assert_eq!(
        (first.code, first.count("failed"), first.count("shipped")),
        (1, 1, 19),
        "{}",
        first.stderr
    );
    assert_eq!(redis.watermark("request").unwrap().0, t, "the watermark stays at the failed entry");
    ct.with(|s| s.refuse.clear());
    let second = run_bin(&["run"], &env).await;
    assert_eq!((second.code, second.count("shipped")), (0, 1), "{}", second.stderr);
    assert_eq!(redis.watermark("request").unwrap().0, t + 19 * 60);
    shipped_exactly_once(&ct, 20);
}

async fn library_shipper(kong: &FakeKong, redis: &RedisServer, sink: Arc<MemorySink>) -> Shipper {
    let kong_cfg = KongConfig {
        base_url: kong.url().parse().unwrap(),
        token: None,
        root_ca_pem: None,
        tls_insecure: false,
        page_size: 100,
        timeout: std::time::Duration::from_secs(5),
    };
    let redis_cfg = redis.config();
    Shipper {
        source: Arc::new(KongClient::new(&kong_cfg, Default::default()).unwrap()),
        store: Arc::new(RedisStore::connect(&redis_cfg).await.unwrap()),
        sink,
        dead_letters: Arc::new(LogDeadLetters),
        recipient_account_id: fake_cloudtrail::ACCOUNT.into(),
        signatures: Default::default(),
        inventory: None,
    }
}

#[tokio::test]
async fn an_entry_another_run_holds_is_not_passed_by_the_watermark() {
    let kong = FakeKong::start(VERSION).await;
    let redis = RedisServer::start();
    let t = chrono::Utc::now().timestamp() - 1_000;
    kong.add(
        "requests",
        &(0..5).map(|i| request(&format!("HELD{i:028}"), t + i)).collect::<Vec<_>>(),
    );
    // Another run has claimed the second-oldest entry and may still fail to ship it.
    redis.cli(&[
        "SET",
        "kong-audit-shipper:request:HELD0000000000000000000000000001",
        "inflight:other-run",
        "PX",
        "600000",
    ]);
    let sink = Arc::new(MemorySink::new());
    let shipper = library_shipper(&kong, &redis, sink.clone()).await;
    let opts = ShipOptions {
        incremental: true,
        overlap: std::time::Duration::ZERO,
        ..ShipOptions::default()
    };
    let summary = shipper.run(&opts, Arc::new(Counters::default())).await;
    assert_eq!((summary.shipped, summary.already_shipped, summary.held), (4, 0, 1));
    assert_eq!(summary.status(), "partial", "held is not shipped");
    assert_eq!(
        redis.watermark("request").unwrap().0,
        t + 1,
        "held entry keeps the watermark at its second"
    );
    // The other run fails and releases it; the next incremental run ships it.
    redis.cli(&["DEL", "kong-audit-shipper:request:HELD0000000000000000000000000001"]);
    let summary = shipper.run(&opts, Arc::new(Counters::default())).await;
    assert_eq!(summary.shipped, 1);
    assert_eq!(sink.accepted().len(), 5);
}

#[tokio::test]
async fn entries_arriving_during_a_run_are_shipped_by_it_or_the_next() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let start = chrono::Utc::now().timestamp() - 600;
    kong.add(
        "requests",
        &(0..200).map(|i| request(&format!("EARLY{i:027}"), start + i)).collect::<Vec<_>>(),
    );
    kong.with(|s| s.latency = std::time::Duration::from_millis(40));
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("KONG_PAGE_SIZE".into(), "20".into());
    let writer = {
        let kong = kong.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                tokio::time::sleep(std::time::Duration::from_millis(15)).await;
                // Some rows land in the future of the walk, some (late nodes) in its past.
                let ts = if i % 2 == 0 { chrono::Utc::now().timestamp() } else { start + 10 };
                kong.add("requests", &[request(&format!("DURING{i:026}"), ts)]);
            }
        })
    };
    let first = run_bin(&["run"], &env).await;
    writer.await.unwrap();
    assert_eq!(first.code, 0, "{}", first.stderr);
    let mut full = env.clone();
    full.insert("FULL_READ".into(), "true".into());
    let second = run_bin(&["run"], &full).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    shipped_exactly_once(&ct, 240);
}

#[tokio::test]
async fn a_kong_without_filters_is_read_in_full_every_time_and_ships_nothing_twice() {
    let kong = FakeKong::start("3.6.1.4").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 200, false);
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("KONG_PAGE_SIZE".into(), "50".into());
    let first = run_bin(&["run"], &env).await;
    let second = run_bin(&["run"], &env).await;
    assert_eq!((first.code, second.code), (0, 0));
    assert_eq!(
        first.count("pages"),
        second.count("pages"),
        "no filters: the whole trail both times"
    );
    assert_eq!(second.count("shipped"), 0);
    assert_eq!(redis.watermark("request"), None, "no watermark without filters");
    shipped_exactly_once(&ct, requests.len() + objects.len());
}
