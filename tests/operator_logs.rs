//! What an operator reads: the real binary's log lines, written to a pipe as a log collector, a
//! file or `| head` would see them. Plain text (no colour codes off a terminal), errors as their
//! message and causes (no `Debug` dump of SDK structures), no AWS SDK credential-chain chatter,
//! a dry run that says only what applies to it and stops quietly when its reader goes.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// `env_for` without `NO_COLOR`: the binary alone must know that a pipe gets no colour.
fn env_without_no_color(kong: &FakeKong, ct: &FakeCloudTrail, redis: Option<&RedisServer>) -> HashMap<String, String> {
    let mut env = env_for(kong, ct, redis);
    env.remove("NO_COLOR");
    env
}

fn assert_plain(stderr: &str) {
    assert!(!stderr.contains('\u{1b}'), "colour codes written to a pipe:\n{stderr}");
}

/// Markers of a `Debug` dump of an SDK error (raw response, body, nested structs).
fn assert_no_debug_dump(text: &str) {
    for marker in [
        "ServiceError(",
        "ServiceError {",
        "raw: Response",
        "SdkBody",
        "ErrorMetadata {",
        "ProviderError(",
    ] {
        assert!(!text.contains(marker), "a Debug dump ({marker}) in:\n{text}");
    }
}

/// An AWS config file whose only profile gets its credentials from a command that fails: the SDK's
/// credential chain then has something to complain about, without any network.
fn broken_profile() -> (tempfile::TempDir, HashMap<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(&config, "[profile broken]\ncredential_process = /bin/false\nregion = us-east-1\n").unwrap();
    let env = [
        ("AWS_CONFIG_FILE", config.display().to_string()),
        ("AWS_PROFILE", "broken".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    (dir, env)
}

#[tokio::test]
async fn a_500_from_cloudtrail_is_one_short_readable_line_without_colour() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    load_trail(&kong, 20, true);
    let env = env_without_no_color(&kong, &ct, Some(&redis));
    ct.with(|c| c.faults.push_back(CallFault::Status(500, "InternalServerError")));

    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_plain(&ran.stderr);
    assert_no_debug_dump(&ran.stderr);
    let line = ran
        .stderr
        .lines()
        .find(|l| l.contains("HTTP 500"))
        .unwrap_or_else(|| panic!("no line about the 500:\n{}", ran.stderr));
    // What happened, the service's code and message, and what the run does about it.
    assert!(
        line.contains("WARN") && line.contains("PutAuditEvents: HTTP 500 InternalServerError: injected") && line.contains("retrying"),
        "{line}"
    );
    assert!(line.len() < 300, "{} characters: {line}", line.len());
}

#[tokio::test]
async fn the_sdk_credential_chain_stays_out_of_check_and_run() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    load_trail(&kong, 5, true);
    let (_dir, profile) = broken_profile();
    let mut env = env_without_no_color(&kong, &ct, Some(&redis));
    env.remove("AWS_ACCESS_KEY_ID");
    env.remove("AWS_SECRET_ACCESS_KEY");
    env.extend(profile.clone());

    // check: the ✗ line says what is missing; the SDK's own warnings are not interleaved with it.
    let checked = run_bin(&["check"], &env).await;
    assert_eq!(checked.code, 1, "{}", checked.stdout);
    assert!(checked.stdout.contains("✗ AWS credentials: none found"), "{}", checked.stdout);
    assert!(checked.stderr.trim().is_empty(), "check wrote log lines:\n{}", checked.stderr);
    assert_no_debug_dump(&checked.stdout);

    // run: its own lines name the problem, each short; no chain warnings, no dump.
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert_eq!(ran.summary()["status"], "failed");
    assert_plain(&ran.stderr);
    assert_no_debug_dump(&ran.stderr);
    for chatter in ["provider failed to provide credentials", "failed to load base credentials"] {
        assert!(!ran.stderr.contains(chatter), "SDK chatter ({chatter}):\n{}", ran.stderr);
    }
    let about_credentials: Vec<&str> = ran.stderr.lines().filter(|l| l.contains("loading credentials")).collect();
    assert!(!about_credentials.is_empty(), "{}", ran.stderr);
    for line in about_credentials {
        assert!(line.len() < 400, "{} characters: {line}", line.len());
    }
    assert_eq!(ct.with(|c| c.calls), 0);

    // Asked for by name, the SDK's warnings are there (the filter only sets a default).
    env.insert("RUST_LOG".into(), "info,aws_config=warn".into());
    let verbose = run_bin(&["check"], &env).await;
    assert!(verbose.stderr.contains("WARN"), "{}", verbose.stderr);
}

#[tokio::test]
async fn a_dry_run_announces_no_dead_letter_file() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    load_trail(&kong, 5, true);
    let env = env_without_no_color(&kong, &ct, None);
    let ran = run_bin(&["backfill", "--dry-run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_plain(&ran.stderr);
    assert!(
        !ran.stderr.contains("dead-letter file") && !ran.stderr.contains("dead-letters.ndjson"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("a dry run stores no dead letters"), "{}", ran.stderr);
    let state = std::path::Path::new(&env["XDG_STATE_HOME"]).join("kong-audit-shipper");
    assert!(!state.join("dead-letters.ndjson").exists());
}

/// `backfill --dry-run | head -n 3`: the reader stops after three lines; the backfill ends at once,
/// exit 0, with no error, warning or failed summary. (Multi-threaded: this test reads the pipe with
/// blocking calls while the fake Kong serves.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_into_head_stops_quietly_with_exit_0() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    // Far more output than a pipe holds (64 KiB), so the writes meet the closed pipe.
    let (requests, objects) = load_trail(&kong, 3000, true);
    let all_pages = requests.len().div_ceil(100) + objects.len().div_ceil(100);
    let mut env = env_without_no_color(&kong, &ct, None);
    env.insert("KONG_PAGE_SIZE".into(), "100".into());
    let mut child = Command::new(BIN)
        .args(["backfill", "--dry-run"])
        .env_clear()
        .envs(&env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut stderr = child.stderr.take().unwrap();
    for _ in 0..3 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        if !line.starts_with('{') {
            let _ = child.kill();
            let mut log = String::new();
            stderr.read_to_string(&mut log).unwrap();
            panic!("not an event: {line:?}\n{log}");
        }
    }
    drop(stdout);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still running after its reader left");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert_plain(&log);
    for noise in ["ERROR", "WARN entries", "status=failed", "Broken pipe"] {
        assert!(!log.contains(noise), "{noise} after the reader left:\n{log}");
    }
    // It stopped reading Kong too, instead of paging through the rest of the trail.
    let asked = kong.with(|k| k.log.len());
    assert!(
        asked < all_pages / 4,
        "{asked} Kong requests of {all_pages} pages for a reader that took 3 lines"
    );
}
