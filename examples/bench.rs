//! The benchmark: the real release binary against in-process loopback fakes of Kong (5 ms per page)
//! and CloudTrail (20 ms per call, 100 calls/s quota answered with 429 ThrottlingException beyond
//! it) and a real redis-server. Prints one Markdown table (BENCHMARKS.md keeps the last one).
//!
//!     cargo run --release --example bench            # full size, a few minutes
//!     cargo run --release --example bench -- 0.1     # everything at a tenth of the size
//!
//! The shipper runs as a child process so that its peak RSS is its own, not the fakes'.

#[path = "support/bench_run.rs"]
mod bench_run;
#[path = "../tests/support/fake_cloudtrail.rs"]
mod fake_cloudtrail;
#[path = "../tests/support/fake_cloudwatch_logs.rs"]
mod fake_cloudwatch_logs;
#[path = "../tests/support/fake_kong.rs"]
mod fake_kong;
#[path = "../tests/support/fake_lake.rs"]
mod fake_lake;
#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::collections::HashMap;
use std::time::Duration;

use fake_cloudtrail::FakeCloudTrail;
use fake_kong::FakeKong;
use redis_server::RedisServer;
use serde_json::Value;

/// One run, with the calls that reached the destination and those it throttled.
struct Measured {
    run: bench_run::Measured,
    put_calls: u64,
    throttled: u64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.run.rate()
    }

    /// One row of the table.
    fn row(&self, scenario: &str, entries: &str) -> String {
        let r = &self.run;
        format!(
            "| {scenario} | {entries} | {:.2} | {:.0} | {} | {} | {} | {:.1} | {} |",
            r.seconds,
            r.rate(),
            r.count("pages"),
            self.put_calls,
            r.count("store_round_trips"),
            r.peak_rss_mib,
            self.throttled
        )
    }
}

async fn ship(bin: &std::path::Path, env: &HashMap<String, String>, ct: &FakeCloudTrail) -> Measured {
    let throttled_before = ct.with(|s| s.throttled_calls);
    let run = bench_run::ship(bin, env).await;
    Measured {
        put_calls: run.count("put_calls"),
        run,
        throttled: ct.with(|s| s.throttled_calls) - throttled_before,
    }
}

async fn fakes(requests: usize) -> (FakeKong, FakeCloudTrail, Vec<Value>, Vec<Value>) {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let start = chrono::Utc::now().timestamp() - 86_400;
    let (r, o) = fake_kong::sample_trail(requests, start, true);
    kong.add("requests", &r);
    kong.add("objects", &o);
    kong.with(|s| s.latency = Duration::from_millis(5));
    ct.with(|s| {
        s.latency = Duration::from_millis(20);
        s.quota_per_second = 100;
        s.count_only = true;
        // Nothing here asks what the destination holds (a first install finds it empty).
        s.lake.enabled = false;
    });
    (kong, ct, r, o)
}

/// Marks every entry shipped and saves the watermarks and the last sweep, as after earlier runs.
async fn pre_ship(redis: &RedisServer, requests: &[Value], objects: &[Value]) {
    use kong_audit_shipper::dedup::{DedupStore, Mark, RedisStore, Settlement};
    let store = RedisStore::connect(&redis.config()).await.unwrap();
    for (kind, entries, key) in [("request", requests, "request_id"), ("object", objects, "id")] {
        for chunk in entries.chunks(10_000) {
            let marks = chunk
                .iter()
                .map(|e| {
                    (
                        format!("kong-audit-shipper:{kind}:{}", e[key].as_str().unwrap()),
                        Mark::Shipped { at: 1, run: "r".into() },
                        86_400,
                    )
                })
                .collect();
            store
                .settle(
                    &Settlement {
                        marks,
                        ..Default::default()
                    },
                    "bench",
                )
                .await
                .unwrap();
        }
        let newest = entries.iter().filter_map(|e| e["request_timestamp"].as_i64()).max().unwrap();
        let read_at = chrono::Utc::now().timestamp() - 3_600;
        store
            .put(
                &format!("kong-audit-shipper:watermark:{kind}"),
                &format!("{newest}@{read_at}"),
                None,
            )
            .await
            .unwrap();
    }
    let swept = (chrono::Utc::now().timestamp() - 3_600).to_string();
    store.put("kong-audit-shipper:watermark:sweep", &swept, None).await.unwrap();
}

/// A destination that holds every entry of a trail of `requests` requests (and their objects) but ten,
/// with `kong-audit-shipper reconcile` asked about it; then a run on an empty store. Returns both runs
/// and how many entries the destination holds.
async fn reconcile_scenario(
    bin: &std::path::Path,
    requests: usize,
) -> (bench_run::Measured, bench_run::Measured, bench_run::Measured, usize) {
    let (kong, ct, r, o) = fakes(requests).await;
    let every = ((r.len() + o.len()) / 10).max(1);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut events = Vec::with_capacity(r.len() + o.len());
    for (i, (kind, entry, key)) in r
        .iter()
        .map(|e| ("request", e, "request_id"))
        .chain(o.iter().map(|e| ("object", e, "id")))
        .enumerate()
    {
        if i % every == every / 2 {
            continue;
        }
        let uid = entry[key].as_str().unwrap().to_string();
        let ts = entry["request_timestamp"].as_i64().unwrap();
        events.push(fake_lake::LakeEvent {
            id: format!("{}-{uid}", &kind[..3]),
            uid,
            kind: Some(kind.to_string()),
            part: None,
            parts: None,
            event_time: kong_audit_shipper::event::format_event_time(ts),
            event_source: kong_audit_shipper::event::EVENT_SOURCE.into(),
            // Accepted a few seconds after it was stamped, and never later than now (the trail's
            // newest rows are stamped ahead of the clock).
            ingested_ms: (ts * 1000 + 5_000).min(now_ms - 1_000),
        });
    }
    let held = events.len();
    ct.with(|s| {
        s.lake.events = events;
        s.lake.enabled = true;
        s.lake.running_polls = 2;
    });
    let redis = RedisServer::start();
    let env = bench_run::env(&kong, &ct, &redis);
    let recon = bench_run::measure(bin, &["reconcile"], &env, "reconcile status=").await;
    eprintln!("reconcile: {}", recon.summary);
    // The same on a bad day: one call in ten throttled, and five of the account's ten query slots
    // held by other users at the start.
    ct.with(|s| {
        s.lake.throttle_every = 10;
        s.lake.foreign_running = 5;
    });
    let throttled = bench_run::measure(bin, &["reconcile"], &env, "reconcile status=").await;
    eprintln!("reconcile, throttled: {}", throttled.summary);
    ct.with(|s| {
        s.lake.throttle_every = 0;
        s.lake.foreign_running = 0;
    });
    let rebuilt = bench_run::ship(bin, &env).await;
    eprintln!("rebuild: {}", rebuilt.summary);
    drop((kong, ct, redis));
    (recon, throttled, rebuilt, held)
}

fn print_reconcile(recon: &bench_run::Measured, throttled: &bench_run::Measured, rebuilt: &bench_run::Measured, held: usize) {
    println!("\n| scenario | entries in the destination | wall s | Lake queries | bytes scanned | peak RSS MiB | result |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| reconcile, all Kong holds | {held} | {:.2} | {} | {} | {:.1} | kong={} found={} missing={} |",
        recon.seconds,
        recon.count("queries"),
        recon.count("bytes_scanned"),
        recon.peak_rss_mib,
        recon.count("kong"),
        recon.count("found"),
        recon.count("missing")
    );
    println!(
        "| reconcile, 1 call in 10 throttled, 5 of 10 query slots taken | {held} | {:.2} | {} | {} | {:.1} | kong={} found={} missing={} |",
        throttled.seconds,
        throttled.count("queries"),
        throttled.count("bytes_scanned"),
        throttled.peak_rss_mib,
        throttled.count("kong"),
        throttled.count("found"),
        throttled.count("missing")
    );
    println!(
        "| run on a store that came back empty | {held} | {:.2} | — | — | {:.1} | rebuilt={} shipped={} deferred={} |",
        rebuilt.seconds,
        rebuilt.peak_rss_mib,
        rebuilt.count("rebuilt"),
        rebuilt.count("shipped"),
        rebuilt.count("deferred")
    );
}

#[tokio::main]
async fn main() {
    let scale: f64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1.0);
    let n = |x: usize| ((x as f64 * scale) as usize).max(10);
    let bin = bench_run::binary();
    // `-- <scale> reconcile`: only the reconcile rows.
    if std::env::args().nth(2).as_deref() == Some("reconcile") {
        let (recon, throttled, rebuilt, held) = reconcile_scenario(&bin, n(500_000)).await;
        print_reconcile(&recon, &throttled, &rebuilt, held);
        return;
    }
    let mut table = Vec::new();

    // 1. Backfill from empty state, our defaults.
    let (kong, ct, r, o) = fakes(n(100_000)).await;
    let redis = RedisServer::start();
    let ours = ship(&bin, &bench_run::env(&kong, &ct, &redis), &ct).await;
    eprintln!("backfill (defaults): {:.0} entries/s", ours.rate());
    // 2. The same with the 2023 proof of concept's settings: 100 per page, one call at a time, full
    //    read, and a `GET /` before every page (emulated as a second 5 ms round trip per page).
    redis.cli(&["FLUSHALL"]);
    kong.with(|s| s.latency = Duration::from_millis(10));
    let mut poc_env = bench_run::env(&kong, &ct, &redis);
    poc_env
        .extend([("KONG_PAGE_SIZE", "100"), ("PUT_CONCURRENCY", "1"), ("FULL_READ", "true")].map(|(k, v)| (k.to_string(), v.to_string())));
    let poc = ship(&bin, &poc_env, &ct).await;
    eprintln!("backfill (proof-of-concept settings): {:.0} entries/s", poc.rate());
    let total = r.len() + o.len();
    drop((kong, ct, redis));

    table.push(ours.row("backfill, defaults", &total.to_string()));
    table.push(poc.row("backfill, proof-of-concept settings", &total.to_string()));

    // 2b. The same backfill while CloudTrail throttles 5 % of events and fails 5 % of calls (500).
    let (kong, ct, _, _) = fakes(n(100_000)).await;
    ct.with(|s| {
        s.random_event_refusal = Some((0.05, "Throttling"));
        s.random_call_failure = Some((0.05, 500, "InternalServerException"));
        s.rng = Some(fastrand::Rng::with_seed(42));
    });
    let redis = RedisServer::start();
    let faulty = ship(&bin, &bench_run::env(&kong, &ct, &redis), &ct).await;
    eprintln!("backfill (5 % throttled, 5 % 500): {:.0} entries/s", faulty.rate());
    table.push(faulty.row("backfill, 5 % events throttled + 5 % calls 500", &total.to_string()));
    drop((kong, ct, redis));

    // 2c. One run with a time budget in a long backlog of both endpoints.
    let (kong, ct, r, o) = fakes(n(250_000)).await;
    let redis = RedisServer::start();
    let mut budget_env = bench_run::env(&kong, &ct, &redis);
    budget_env.extend([("MAX_RUN_SECONDS", "30"), ("DEADLINE_MARGIN_SECONDS", "10")].map(|(k, v)| (k.to_string(), v.to_string())));
    let budgeted = ship(&bin, &budget_env, &ct).await;
    let shipped_requests = ct.with(|s| s.accepted_request_count);
    table.push(budgeted.row(
        "one run, MAX_RUN_SECONDS=30, backlog",
        &format!("{} of {}", budgeted.run.count("shipped"), r.len() + o.len()),
    ));
    drop((kong, ct, redis));

    // 2d. The same backfill to CloudWatch Logs: the fake PutLogEvents answers in 30 ms (its calls carry
    //     up to 10,000 events and 1 MiB), every call checked against the service's limits.
    let (kong, ct, r, o) = fakes(n(100_000)).await;
    let logs = fake_cloudwatch_logs::FakeLogs::start().await;
    logs.with(|s| {
        s.latency = Duration::from_millis(30);
        s.count_only = true;
    });
    let redis = RedisServer::start();
    let mut logs_env = bench_run::env(&kong, &ct, &redis);
    logs_env.remove("CHANNEL_ARN");
    logs_env.insert("CLOUDWATCH_LOG_GROUP".into(), fake_cloudwatch_logs::GROUP.into());
    logs_env.insert("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS".into(), logs.url());
    let mut to_logs = ship(&bin, &logs_env, &ct).await;
    let violations = logs.with(|s| {
        // The calls column counts what reached the service: PutLogEvents calls, and those throttled.
        (to_logs.put_calls, to_logs.throttled) = (s.put_calls, s.throttled_calls);
        s.violations.len()
    });
    assert_eq!(violations, 0, "the shipper broke a PutLogEvents rule");
    eprintln!("backfill to CloudWatch Logs: {:.0} entries/s", to_logs.rate());
    table.push(to_logs.row("backfill, CloudWatch Logs (PutLogEvents calls)", &(r.len() + o.len()).to_string()));
    drop((kong, ct, logs, redis));

    // 3. Steady state: 500,000 retained and shipped, 1,000 new.
    let (kong, ct, r, o) = fakes(n(250_000)).await;
    let redis = RedisServer::start();
    pre_ship(&redis, &r, &o).await;
    let now = chrono::Utc::now().timestamp();
    let (new_r, new_o) = fake_kong::sample_trail(500, now - 60, true);
    let rename = |v: &[Value], field: &str, tag: &str| -> Vec<Value> {
        v.iter()
            .map(|e| {
                let mut e = e.clone();
                e[field] = Value::String(format!("{tag}{}", &e[field].as_str().unwrap()[3..]));
                e["request_timestamp"] = now.into();
                e
            })
            .collect()
    };
    let (new_r, new_o) = (rename(&new_r, "request_id", "NEW"), rename(&new_o, "id", "new"));
    kong.add("requests", &new_r);
    kong.add("objects", &new_o);
    let retained = r.len() + o.len();
    let incremental = ship(&bin, &bench_run::env(&kong, &ct, &redis), &ct).await;
    for (kind, entries, key) in [("request", &new_r, "request_id"), ("object", &new_o, "id")] {
        for e in entries {
            redis.cli(&["DEL", &format!("kong-audit-shipper:{kind}:{}", e[key].as_str().unwrap())]);
        }
    }
    let mut full_env = bench_run::env(&kong, &ct, &redis);
    full_env.insert("FULL_READ".into(), "true".into());
    let full = ship(&bin, &full_env, &ct).await;
    // The daily sweep: an incremental run whose last sweep is a day old reads the whole trail.
    let day_ago = (chrono::Utc::now().timestamp() - 86_401).to_string();
    redis.cli(&["SET", "kong-audit-shipper:watermark:sweep", &day_ago]);
    let sweep = ship(&bin, &bench_run::env(&kong, &ct, &redis), &ct).await;
    drop((kong, ct, redis));
    let fresh = format!("{retained} + {} new", new_r.len() + new_o.len());
    table.push(incremental.row("steady state, incremental", &fresh));
    table.push(full.row("steady state, full read", &fresh));
    table.push(sweep.row("steady state, daily sweep", &fresh));

    // 4. Peak RSS of a 1,000,000-entry backfill.
    let (kong, ct, r, o) = fakes(n(500_000)).await;
    let redis = RedisServer::start();
    let million = ship(&bin, &bench_run::env(&kong, &ct, &redis), &ct).await;
    table.push(million.row("backfill, 1M", &(r.len() + o.len()).to_string()));
    drop((kong, ct, redis));

    // 5. Reconcile of 1,000,000 entries against CloudTrail Lake, ten of them lost by the destination;
    //    then a store that comes back empty, rebuilt from the destination by the next run.
    let (recon, recon_throttled, rebuilt, held) = reconcile_scenario(&bin, n(500_000)).await;

    println!(
        "Machine: {} cores; scale {scale}; Kong 5 ms per page, CloudTrail 20 ms per call and 100 calls/s.\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "| scenario | entries | wall s | shipped/s | Kong pages | PutAuditEvents calls | Redis round trips | peak RSS MiB | calls throttled |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &table {
        println!("{row}");
    }
    println!(
        "\nBackfill speed-up over the proof-of-concept settings: {:.2}×",
        ours.rate() / poc.rate().max(0.001)
    );
    println!(
        "The same backfill to CloudWatch Logs (30 ms per PutLogEvents call): {:.0} entries/s, {:.2}× the CloudTrail Lake row.",
        to_logs.rate(),
        to_logs.rate() / ours.rate().max(0.001)
    );
    println!(
        "Partial throttling (5 % of events, 5 % of calls 500): {:.0} entries/s, {:.2}× the clean rate of {:.0}/s.",
        faulty.rate(),
        faulty.rate() / ours.rate().max(0.001),
        ours.rate()
    );
    println!(
        "One budgeted run (30 s, stops claiming after 20 s) in a backlog: {} shipped, {} requests and {} objects.",
        budgeted.run.count("shipped"),
        shipped_requests,
        budgeted.run.count("shipped") - shipped_requests
    );
    print_reconcile(&recon, &recon_throttled, &rebuilt, held);
    println!(
        "Steady state: incremental read {} pages in {:.2} s; full read {} pages in {:.2} s ({:.1}× the pages); the daily sweep {} pages in {:.2} s.",
        incremental.run.count("pages"),
        incremental.run.seconds,
        full.run.count("pages"),
        full.run.seconds,
        full.run.count("pages") as f64 / incremental.run.count("pages").max(1) as f64,
        sweep.run.count("pages"),
        sweep.run.seconds
    );
}
