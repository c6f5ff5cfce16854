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
use fake_konnect::FakeKonnect;
use redis_server::RedisServer;

/// The binary's environment: the fakes, fake AWS credentials, nothing of the machine's AWS setup.
fn env(konnect: &FakeKonnect, ct: &FakeCloudTrail, redis: &RedisServer) -> HashMap<String, String> {
    [
        ("KONNECT_API_URL", konnect.url()),
        ("KONNECT_TOKEN", fake_konnect::TOKEN.to_string()),
        ("CHANNEL_ARN", fake_cloudtrail::CHANNEL_ARN.to_string()),
        ("AWS_ENDPOINT_URL_CLOUDTRAIL_DATA", ct.url()),
        ("AWS_ENDPOINT_URL_CLOUDTRAIL", ct.url()),
        ("AWS_ACCESS_KEY_ID", "AKIDBENCH".into()),
        ("AWS_SECRET_ACCESS_KEY", "bench".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ("REDIS_URL", redis.url()),
        ("RUST_LOG", "warn,kong_audit_shipper=info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
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
