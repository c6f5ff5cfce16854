//! Test support: loopback fakes of Kong, Konnect and CloudTrail, a real redis-server, and the binary.
#![allow(dead_code)]

pub mod fake_cloudtrail;
pub mod fake_kong;
pub mod fake_konnect;
pub mod fake_lake;
pub mod redis_server;

use std::collections::{HashMap, HashSet};
use std::process::Output;

#[allow(unused_imports)]
pub use fake_cloudtrail::{CallFault, FakeCloudTrail};
#[allow(unused_imports)]
pub use fake_kong::{FakeKong, Fault};
pub use redis_server::RedisServer;

pub const BIN: &str = env!("CARGO_BIN_EXE_kong-audit-shipper");

/// The environment a run gets: fakes for Kong and CloudTrail, fake AWS credentials, nothing from
/// the machine's own AWS configuration.
pub fn env_for(kong: &FakeKong, cloudtrail: &FakeCloudTrail, redis: Option<&RedisServer>) -> HashMap<String, String> {
    let mut env = env_without_source(cloudtrail, redis);
    env.insert("KONG_ADMIN_API".into(), kong.url());
    env
}

/// `env_for` without a source: the caller says what the run reads (Konnect, say).
pub fn env_without_source(cloudtrail: &FakeCloudTrail, redis: Option<&RedisServer>) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("CHANNEL_ARN", fake_cloudtrail::CHANNEL_ARN.to_string()),
        ("AWS_ENDPOINT_URL_CLOUDTRAIL_DATA", cloudtrail.url()),
        ("AWS_ENDPOINT_URL_CLOUDTRAIL", cloudtrail.url()),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST".into()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ("RETRY_INITIAL_MS", "20".into()),
        ("RETRY_MAX_MS", "200".into()),
        ("RUST_LOG", "info".into()),
        ("NO_COLOR", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(r) = redis {
        env.insert("REDIS_URL".into(), r.url());
    }
    // The CLI's default files (dead letters, embedded store) never land in the real home.
    env.insert("XDG_STATE_HOME".into(), tempfile::tempdir().unwrap().keep().display().to_string());
    env
}

/// `env` for a binary whose clock is off by `skew` (libfaketime's offset: `-1h`, `+1h`): its wall
/// clock only, so its timers and deadlines keep real time. scripts/test installs libfaketime.
pub fn with_clock_off(env: &HashMap<String, String>, skew: &str) -> HashMap<String, String> {
    let lib = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketimeMT.so.1"))
        .find(|lib| lib.exists())
        .expect("libfaketime (Debian package libfaketime; scripts/test installs it)");
    let mut env = env.clone();
    env.insert("LD_PRELOAD".into(), lib.display().to_string());
    env.insert("FAKETIME".into(), skew.into());
    env.insert("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into());
    env
}

/// The environment of a run shipping to CloudWatch Logs at `endpoint`, log group `group` (no CHANNEL_ARN).
pub fn logs_env(kong: &FakeKong, ct: &FakeCloudTrail, endpoint: &str, group: &str, redis: Option<&RedisServer>) -> HashMap<String, String> {
    let mut env = env_for(kong, ct, redis);
    env.remove("CHANNEL_ARN");
    env.insert("CLOUDWATCH_LOG_GROUP".into(), group.into());
    env.insert("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS".into(), endpoint.into());
    env
}

/// A CloudWatch Logs client of the service at `endpoint`, for the tests' own calls.
pub fn logs_client(endpoint: &str) -> aws_sdk_cloudwatchlogs::Client {
    use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "test-secret", None, None, "test"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_cloudwatchlogs::Client::from_conf(conf)
}

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    fn from(out: Output) -> Ran {
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The `summary ...` line, parsed into its fields.
    pub fn summary(&self) -> HashMap<String, String> {
        self.last_line("summary")
    }

    /// The `reconcile status=…` line, parsed into its fields.
    pub fn reconciled(&self) -> HashMap<String, String> {
        self.last_line("reconcile")
    }

    /// The last `<name> status=…` line of stderr, parsed into its fields.
    fn last_line(&self, name: &str) -> HashMap<String, String> {
        let start = format!("{name} status=");
        let line = self
            .stderr
            .lines()
            .rev()
            .find_map(|l| l.find(&start).map(|i| &l[i..]))
            .unwrap_or_else(|| panic!("no {name} line in stderr:\n{}", self.stderr));
        line.split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn count(&self, field: &str) -> u64 {
        self.summary()
            .get(field)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in summary:\n{}", self.stderr))
    }
}

/// Runs the real binary with exactly this environment (plus PATH and HOME).
pub async fn run_bin(args: &[&str], env: &HashMap<String, String>) -> Ran {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args).env_clear().envs(env);
    for keep in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(keep) {
            cmd.env(keep, v);
        }
    }
    Ran::from(cmd.output().await.expect("the binary runs"))
}

/// A sample trail loaded into the fake Kong; returns (requests, objects).
pub fn load_trail(kong: &FakeKong, n: usize, with_object_timestamps: bool) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let start = chrono::Utc::now().timestamp() - 86_400;
    let (requests, objects) = fake_kong::sample_trail(n, start, with_object_timestamps);
    kong.add("requests", &requests);
    kong.add("objects", &objects);
    (requests, objects)
}

/// PutAuditEvents ids of a trail.
pub fn ids(requests: &[serde_json::Value], objects: &[serde_json::Value]) -> HashSet<String> {
    requests
        .iter()
        .map(|r| format!("req-{}", r["request_id"].as_str().unwrap()))
        .chain(objects.iter().map(|o| format!("obj-{}", o["id"].as_str().unwrap())))
        .collect()
}

/// Every id in CloudTrail exactly once, and nothing else.
pub fn exactly_once(ct: &FakeCloudTrail, want: &HashSet<String>) {
    let counts = ct.accepted_ids();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "duplicates: {twice:?}");
    let got: HashSet<String> = counts.into_keys().collect();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(want).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, unexpected {extra:?}");
}
