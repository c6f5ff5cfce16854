//! What the benchmarks share: the release binary, the environment that points it at the fakes, and
//! one run of it measured (wall time, peak RSS, the summary line's counts).
#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::fake_cloudtrail::{self, FakeCloudTrail};
use crate::fake_kong::FakeKong;
use crate::redis_server::RedisServer;

/// Builds the release binary (the benchmark itself may be built with other features) and returns it.
pub fn binary() -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--bin", "kong-audit-shipper"])
        .status()
        .expect("cargo");
    assert!(status.success(), "cargo build --release failed");
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("kong-audit-shipper")
}

/// The binary's environment: the fakes, fake AWS credentials, nothing of the machine's AWS setup.
pub fn env(kong: &FakeKong, ct: &FakeCloudTrail, redis: &RedisServer) -> HashMap<String, String> {
    let mut env = env_without_source(ct, redis);
    env.insert("KONG_ADMIN_API".into(), kong.url());
    env
}

/// `env` without a source: the caller says what the run reads.
pub fn env_without_source(ct: &FakeCloudTrail, redis: &RedisServer) -> HashMap<String, String> {
    [
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

/// One `kong-audit-shipper run`.
pub struct Measured {
    pub seconds: f64,
    pub peak_rss_mib: f64,
    /// The run's `summary …` line.
    pub summary: String,
}

impl Measured {
    /// A count of the summary line (0 when absent).
    pub fn count(&self, name: &str) -> u64 {
        self.summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn rate(&self) -> f64 {
        self.count("shipped") as f64 / self.seconds.max(0.001)
    }
}

/// Runs the binary as a child process (so that its peak RSS is its own), polling its VmHWM until it
/// exits.
pub async fn ship(bin: &std::path::Path, env: &HashMap<String, String>) -> Measured {
    measure(bin, &["run"], env, "summary status=").await
}

/// Runs the binary with `args`, measured; `marker` starts the line to keep (`summary status=`,
/// `reconcile status=`).
pub async fn measure(bin: &std::path::Path, args: &[&str], env: &HashMap<String, String>, marker: &str) -> Measured {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .args(args)
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
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
            peak_kib = peak_kib.max(line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0));
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let text = reader.await.unwrap();
    let summary = text
        .lines()
        .rev()
        .find_map(|l| l.find(marker).map(|i| l[i..].to_string()))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    if !summary.contains("status=ok") && !summary.contains("status=complete") {
        eprintln!("warning: {} did not end ok: {summary}", args.join(" "));
    }
    Measured {
        seconds,
        peak_rss_mib: peak_kib as f64 / 1024.0,
        summary,
    }
}
