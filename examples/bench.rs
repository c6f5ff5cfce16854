//! The benchmark: the real release binary against in-process loopback fakes of Kong (5 ms per page)
//! and CloudTrail (20 ms per call, 100 calls/s quota answered with 429 ThrottlingException beyond
//! it) and a real redis-server. Prints one Markdown table (BENCHMARKS.md keeps the last one).
//!
//!     cargo run --release --example bench            # full size, a few minutes
//!     cargo run --release --example bench -- 0.1     # everything at a tenth of the size
//!
//! The shipper runs as a child process so that its peak RSS is its own, not the fakes'.

#[path = "../tests/support/fake_cloudtrail.rs"]
mod fake_cloudtrail;
#[path = "../tests/support/fake_cloudwatch_logs.rs"]
mod fake_cloudwatch_logs;
#[path = "../tests/support/fake_kong.rs"]
mod fake_kong;
#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fake_cloudtrail::FakeCloudTrail;
use fake_kong::FakeKong;
use redis_server::RedisServer;
use serde_json::Value;

struct Measured {
    seconds: f64,
    shipped: u64,
    read: u64,
    pages: u64,
    put_calls: u64,
    store_round_trips: u64,
    peak_rss_mib: f64,
    throttled: u64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.shipped as f64 / self.seconds.max(0.001)
    }

    /// One row of the table.
    fn row(&self, scenario: &str, entries: &str) -> String {
        format!(
            "| {scenario} | {entries} | {:.2} | {:.0} | {} | {} | {} | {:.1} | {} |",
            self.seconds,
            self.rate(),
            self.pages,
            self.put_calls,
            self.store_round_trips,
            self.peak_rss_mib,
            self.throttled
        )
    }
}

fn binary() -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--bin", "kong-audit-shipper"])
        .status()
        .expect("cargo");
    assert!(status.success(), "cargo build --release failed");
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("kong-audit-shipper")
}

/// Runs the binary, polling its peak RSS (VmHWM) until it exits.
async fn ship(bin: &std::path::Path, env: &HashMap<String, String>, kong: &FakeKong, ct: &FakeCloudTrail) -> Measured {
    let throttled_before = ct.with(|s| s.throttled_calls);
    let started = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .arg("run")
        .env_clear()
        .envs(env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let pid = child.id().unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        let mut stderr = stderr;
        stderr.read_to_string(&mut text).await.unwrap();
        text
    });
    let mut peak_kib = 0u64;
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
                peak_kib = peak_kib.max(line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0));
            }
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let text = reader.await.unwrap();
    let line = text
        .lines()
        .rev()
        .find_map(|l| l.find("summary status=").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    if !line.contains("status=ok") {
        eprintln!("warning: run did not end ok: {line}");
    }
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let _ = kong;
    Measured {
        seconds,
        shipped: field("shipped"),
        read: field("read"),
        pages: field("pages"),
        put_calls: field("put_calls"),
        store_round_trips: field("store_round_trips"),
        peak_rss_mib: peak_kib as f64 / 1024.0,
        throttled: ct.with(|s| s.throttled_calls) - throttled_before,
    }
}

fn env(kong: &FakeKong, ct: &FakeCloudTrail, redis: &RedisServer) -> HashMap<String, String> {
    [
        ("KONG_ADMIN_API", kong.url()),
        ("CHANNEL_ARN", fake_cloudtrail::CHANNEL_ARN.to_string()),
        ("AWS_ENDPOINT_URL_CLOUDTRAIL_DATA", ct.url()),
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
                        Mark::Shipped,
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

#[tokio::main]
async fn main() {
    let scale: f64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1.0);
    let n = |x: usize| ((x as f64 * scale) as usize).max(10);
    let bin = binary();
    let mut table = Vec::new();

    // 1. Backfill from empty state, our defaults.
    let (kong, ct, r, o) = fakes(n(100_000)).await;
    let redis = RedisServer::start();
    let ours = ship(&bin, &env(&kong, &ct, &redis), &kong, &ct).await;
    eprintln!("backfill (defaults): {:.0} entries/s", ours.rate());
    // 2. The same with the 2023 proof of concept's settings: 100 per page, one call at a time, full
    //    read, and a `GET /` before every page (emulated as a second 5 ms round trip per page).
    redis.cli(&["FLUSHALL"]);
    kong.with(|s| s.latency = Duration::from_millis(10));
    let mut poc_env = env(&kong, &ct, &redis);
    poc_env
        .extend([("KONG_PAGE_SIZE", "100"), ("PUT_CONCURRENCY", "1"), ("FULL_READ", "true")].map(|(k, v)| (k.to_string(), v.to_string())));
    let poc = ship(&bin, &poc_env, &kong, &ct).await;
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
    let faulty = ship(&bin, &env(&kong, &ct, &redis), &kong, &ct).await;
    eprintln!("backfill (5 % throttled, 5 % 500): {:.0} entries/s", faulty.rate());
    table.push(faulty.row("backfill, 5 % events throttled + 5 % calls 500", &total.to_string()));
    drop((kong, ct, redis));

    // 2c. One run with a time budget in a long backlog of both endpoints.
    let (kong, ct, r, o) = fakes(n(250_000)).await;
    let redis = RedisServer::start();
    let mut budget_env = env(&kong, &ct, &redis);
    budget_env.extend([("MAX_RUN_SECONDS", "30"), ("DEADLINE_MARGIN_SECONDS", "10")].map(|(k, v)| (k.to_string(), v.to_string())));
    let budgeted = ship(&bin, &budget_env, &kong, &ct).await;
    let shipped_requests = ct.with(|s| s.accepted_request_count);
    table.push(budgeted.row(
        "one run, MAX_RUN_SECONDS=30, backlog",
        &format!("{} of {}", budgeted.shipped, r.len() + o.len()),
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
    let mut logs_env = env(&kong, &ct, &redis);
    logs_env.remove("CHANNEL_ARN");
    logs_env.insert("CLOUDWATCH_LOG_GROUP".into(), fake_cloudwatch_logs::GROUP.into());
    logs_env.insert("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS".into(), logs.url());
    let mut to_logs = ship(&bin, &logs_env, &kong, &ct).await;
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
    let incremental = ship(&bin, &env(&kong, &ct, &redis), &kong, &ct).await;
    for (kind, entries, key) in [("request", &new_r, "request_id"), ("object", &new_o, "id")] {
        for e in entries {
            redis.cli(&["DEL", &format!("kong-audit-shipper:{kind}:{}", e[key].as_str().unwrap())]);
        }
    }
    let mut full_env = env(&kong, &ct, &redis);
    full_env.insert("FULL_READ".into(), "true".into());
    let full = ship(&bin, &full_env, &kong, &ct).await;
    // The daily sweep: an incremental run whose last sweep is a day old reads the whole trail.
    let day_ago = (chrono::Utc::now().timestamp() - 86_401).to_string();
    redis.cli(&["SET", "kong-audit-shipper:watermark:sweep", &day_ago]);
    let sweep = ship(&bin, &env(&kong, &ct, &redis), &kong, &ct).await;
    drop((kong, ct, redis));
    let fresh = format!("{retained} + {} new", new_r.len() + new_o.len());
    table.push(incremental.row("steady state, incremental", &fresh));
    table.push(full.row("steady state, full read", &fresh));
    table.push(sweep.row("steady state, daily sweep", &fresh));

    // 4. Peak RSS of a 1,000,000-entry backfill.
    let (kong, ct, r, o) = fakes(n(500_000)).await;
    let redis = RedisServer::start();
    let million = ship(&bin, &env(&kong, &ct, &redis), &kong, &ct).await;
    table.push(million.row("backfill, 1M", &(r.len() + o.len()).to_string()));
    drop((kong, ct, redis));

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
        budgeted.shipped,
        shipped_requests,
        budgeted.shipped - shipped_requests
    );
    println!(
        "Steady state: incremental read {} pages in {:.2} s; full read {} pages in {:.2} s ({:.1}× the pages); the daily sweep {} pages in {:.2} s.",
        incremental.pages,
        incremental.seconds,
        full.pages,
        full.seconds,
        full.pages as f64 / incremental.pages.max(1) as f64,
        sweep.pages,
        sweep.seconds
    );
    let _ = (ours.read, million.read);
}
