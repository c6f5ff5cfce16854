//! The Konnect source's benchmark: the real release binary reading the fake of Konnect's
//! `GET /v3/audit-logs` (tests/support/fake_konnect.rs: newest first, cursors as paths, 5 ms a page,
//! 1,000 entries a page), shipping to the fakes of CloudTrail (20 ms per call, 100 calls/s) or
//! CloudWatch Logs (30 ms per call), with a real redis-server. Prints one Markdown table
//! (BENCHMARKS.md keeps the last one).
//!
//!     cargo run --release --example bench-konnect            # full size, about a minute
//!     cargo run --release --example bench-konnect -- 0.1     # a tenth of the size

#[path = "support/bench_run.rs"]
mod bench_run;
#[path = "../tests/support/fake_cloudtrail.rs"]
mod fake_cloudtrail;
#[path = "../tests/support/fake_cloudwatch_logs.rs"]
mod fake_cloudwatch_logs;
#[path = "../tests/support/fake_kong.rs"]
mod fake_kong;
#[path = "../tests/support/fake_konnect.rs"]
mod fake_konnect;
#[path = "../tests/support/fake_lake.rs"]
mod fake_lake;
#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use fake_cloudtrail::FakeCloudTrail;
use fake_konnect::{FakeKonnect, Fault};
use redis_server::RedisServer;

/// The binary's environment: the fakes, fake AWS credentials, nothing of the machine's AWS setup.
fn env(konnect: &FakeKonnect, ct: &FakeCloudTrail, redis: &RedisServer) -> HashMap<String, String> {
    let mut env = bench_run::env_without_source(ct, redis);
    env.insert("KONNECT_API_URL".into(), konnect.url());
    env.insert("KONNECT_TOKEN".into(), fake_konnect::TOKEN.to_string());
    env
}

/// A fake Konnect holding `n` entries of the three shapes over the last six days, 5 ms a page.
async fn konnect(n: u64) -> FakeKonnect {
    let fake = FakeKonnect::start().await;
    let now = Utc::now();
    fake.add(&fake_konnect::trail(
        n,
        now - chrono::Duration::days(6),
        now - chrono::Duration::minutes(5),
    ));
    fake.with(|s| {
        s.retention = Some(chrono::Duration::days(7));
        s.latency = Duration::from_millis(5);
    });
    fake
}

async fn cloudtrail() -> FakeCloudTrail {
    let ct = FakeCloudTrail::start().await;
    ct.with(|s| {
        s.latency = Duration::from_millis(20);
        s.quota_per_second = 100;
        s.count_only = true;
        s.lake.enabled = false;
    });
    ct
}

fn row(scenario: &str, entries: &str, m: &bench_run::Measured, put_calls: u64) -> String {
    format!(
        "| {scenario} | {entries} | {:.2} | {:.0} | {} | {} | {} | {:.1} |",
        m.seconds,
        m.rate(),
        m.count("pages"),
        put_calls,
        m.count("store_round_trips"),
        m.peak_rss_mib,
    )
}

#[tokio::main]
async fn main() {
    let scale: f64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1.0);
    let n = ((200_000.0 * scale) as u64).max(100);
    let bin = bench_run::binary();
    let mut table = Vec::new();

    // 1. A first run: everything Konnect keeps, to CloudTrail Lake.
    let fake = konnect(n).await;
    let ct = cloudtrail().await;
    let redis = RedisServer::start();
    let first = bench_run::ship(&bin, &env(&fake, &ct, &redis)).await;
    assert_eq!(first.count("shipped"), n, "{}", first.summary);
    eprintln!("Konnect → CloudTrail Lake: {:.0} entries/s ({})", first.rate(), first.summary);
    table.push(row(
        "first run, 6 days retained, to CloudTrail Lake",
        &n.to_string(),
        &first,
        first.count("put_calls"),
    ));

    // 1b. The same first run on a bad day: CloudTrail throttles 5 % of events and fails 5 % of calls,
    // Konnect answers one request in twenty with a 503.
    let bad_fake = konnect(n).await;
    bad_fake.with(|s| {
        for i in 0..2_000 {
            s.faults.push_back(if i % 20 == 19 { Fault::Status(503) } else { Fault::Pass });
        }
    });
    let bad_ct = cloudtrail().await;
    bad_ct.with(|s| {
        s.rng = Some(fastrand::Rng::with_seed(42));
        s.random_event_refusal = Some((0.05, "Throttling"));
        s.random_call_failure = Some((0.05, 500, "InternalServerError"));
    });
    let bad_redis = RedisServer::start();
    let bad = bench_run::ship(&bin, &env(&bad_fake, &bad_ct, &bad_redis)).await;
    assert_eq!(bad.count("shipped"), n, "{}", bad.summary);
    eprintln!(
        "Konnect → CloudTrail Lake on a bad day: {:.0} entries/s, {:.2}x the clean run ({})",
        bad.rate(),
        bad.rate() / first.rate(),
        bad.summary
    );
    table.push(row(
        &format!(
            "first run, bad day (5 % events throttled, 5 % calls failed, 5 % Konnect 503): {:.2}x",
            bad.rate() / first.rate()
        ),
        &n.to_string(),
        &bad,
        bad.count("put_calls"),
    ));
    drop((bad_fake, bad_ct, bad_redis));

    // 2. The steady state: an hourly run after 999 new entries; then the daily sweep.
    let now = Utc::now();
    let new: Vec<_> = (0..999u64)
        .map(|i| {
            // Stamped in the last five minutes: within the overlap of the run before.
            let at = now - chrono::Duration::seconds(90 + (i as i64 % 200));
            fake_konnect::entry(
                fake_konnect::TYPES[i as usize % 3],
                10_000_000 + i,
                &fake_konnect::rfc3339(at, 0),
                true,
            )
        })
        .collect();
    fake.add(&new);
    let hourly = bench_run::ship(&bin, &env(&fake, &ct, &redis)).await;
    assert_eq!(hourly.count("shipped"), 999, "{}", hourly.summary);
    let sweep_key = format!("kong-audit-shipper:konnect-127-0-0-1-{}:watermark:sweep", fake.addr.port());
    let day_ago = (Utc::now().timestamp() - 86_401).to_string();
    redis.cli(&["SET", &sweep_key, &day_ago]);
    let sweep = bench_run::ship(&bin, &env(&fake, &ct, &redis)).await;
    assert_eq!(sweep.count("already_shipped") as u64, n + 999, "{}", sweep.summary);
    let fresh = format!("{n} retained + 999 new");
    table.push(row("steady state, hourly run", &fresh, &hourly, hourly.count("put_calls")));
    table.push(row("steady state, daily sweep", &fresh, &sweep, sweep.count("put_calls")));
    drop((fake, ct, redis));

    // 3. To CloudWatch Logs: calls of up to 10,000 events, so the source sets the pace.
    let fake = konnect(n).await;
    let ct = cloudtrail().await;
    let logs = fake_cloudwatch_logs::FakeLogs::start().await;
    logs.with(|s| {
        s.latency = Duration::from_millis(30);
        s.count_only = true;
    });
    let redis = RedisServer::start();
    let mut logs_env = env(&fake, &ct, &redis);
    logs_env.remove("CHANNEL_ARN");
    logs_env.insert("CLOUDWATCH_LOG_GROUP".into(), fake_cloudwatch_logs::GROUP.into());
    logs_env.insert("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS".into(), logs.url());
    let to_logs = bench_run::ship(&bin, &logs_env).await;
    let (calls, violations) = logs.with(|s| (s.put_calls, s.violations.len()));
    assert_eq!(violations, 0, "the shipper broke a PutLogEvents rule");
    assert_eq!(to_logs.count("shipped"), n, "{}", to_logs.summary);
    eprintln!("Konnect → CloudWatch Logs: {:.0} entries/s ({})", to_logs.rate(), to_logs.summary);
    table.push(row(
        "first run, 6 days retained, to CloudWatch Logs",
        &n.to_string(),
        &to_logs,
        calls,
    ));
    drop((fake, ct, logs, redis));

    println!(
        "Machine: {} cores; scale {scale}; Konnect 5 ms and 1,000 entries a page; CloudTrail 20 ms per call and 100 calls/s; CloudWatch Logs 30 ms per call.\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!("| scenario | entries | wall s | shipped/s | Konnect pages | put calls | Redis round trips | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|");
    for row in &table {
        println!("{row}");
    }
}
