//! `kong-audit-shipper check` end to end: the real binary against the loopback fakes of Kong and
//! CloudTrail and a real redis-server; every ✗ path says what to fix, and no secret is printed.

mod support;

use std::collections::HashMap;

use support::redis_server::free_port;
use support::*;

const TOKEN: &str = "kong-t0ken-do-not-print";
const REDIS_PASSWORD: &str = "redis-pw-do-not-print";

struct Setup {
    kong: FakeKong,
    ct: FakeCloudTrail,
    redis: RedisServer,
}

/// Kong with RBAC on, Redis with a password: everything a real deployment has.
async fn setup() -> (Setup, HashMap<String, String>) {
    let kong = FakeKong::start("3.8.1.0").await;
    kong.with(|s| s.token = Some(TOKEN.into()));
    load_trail(&kong, 5, true);
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start_with(Some(REDIS_PASSWORD), None);
    let mut env = env_for(&kong, &ct, None);
    env.insert("KONG_ADMIN_TOKEN".into(), TOKEN.into());
    env.insert("REDIS_URL".into(), format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0", redis.port));
    (Setup { kong, ct, redis }, env)
}

/// The line of one check (`✓ Name: ...`, `✗ Name: ...` or `- Name: ...`), and its fix when it failed.
fn check<'a>(ran: &'a Ran, name: &str) -> (&'a str, Option<&'a str>) {
    let lines: Vec<&str> = ran.stdout.lines().collect();
    let i = lines
        .iter()
        .position(|l| {
            l.get(l.char_indices().nth(2).map_or(0, |(i, _)| i)..)
                .is_some_and(|rest| rest.starts_with(&format!("{name}:")))
        })
        .unwrap_or_else(|| panic!("no line for {name:?} in:\n{}", ran.stdout));
    let fix = lines.get(i + 1).and_then(|l| l.trim_start().strip_prefix("fix: "));
    (lines[i], fix)
}

fn assert_passed(ran: &Ran, name: &str) -> String {
    let (line, fix) = check(ran, name);
    assert!(line.starts_with("✓ "), "{name} should pass:\n{}", ran.stdout);
    assert!(fix.is_none());
    line.to_string()
}

/// Asserts the check failed and its fix mentions `fix_has`; returns (line, fix).
fn assert_failed(ran: &Ran, name: &str, fix_has: &str) -> (String, String) {
    let (line, fix) = check(ran, name);
    assert!(line.starts_with("✗ "), "{name} should fail:\n{}", ran.stdout);
    let fix = fix.unwrap_or_else(|| panic!("no fix under the ✗ line of {name}:\n{}", ran.stdout));
    assert!(fix.contains(fix_has), "the fix of {name} should mention {fix_has:?}: {fix}");
    (line.to_string(), fix.to_string())
}

fn assert_no_secret(ran: &Ran) {
    for secret in [TOKEN, REDIS_PASSWORD, "test-secret"] {
        assert!(
            !ran.stdout.contains(secret) && !ran.stderr.contains(secret),
            "{secret} printed:\n{}\n{}",
            ran.stdout,
            ran.stderr
        );
    }
}

#[tokio::test]
async fn every_check_passes_against_a_working_setup() {
    let (s, env) = setup().await;
    let ran = run_bin(&["check"], &env).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let kong = assert_passed(&ran, "Kong");
    assert!(kong.contains(&s.kong.url()) && kong.contains("version 3.8.1.0"), "{kong}");
    assert!(assert_passed(&ran, "Kong audit logging").contains("on"));
    assert!(assert_passed(&ran, "Kong access to /audit/requests").contains("token accepted"));
    assert!(assert_passed(&ran, "Kong access to /audit/objects").contains("token accepted"));
    let store = assert_passed(&ran, "Store");
    assert!(
        store.contains(&format!("Redis at redis://127.0.0.1:{}/0", s.redis.port)) && store.contains("writable"),
        "{store}"
    );
    let channel = assert_passed(&ran, "Channel");
    assert!(
        channel.contains(fake_cloudtrail::CHANNEL_ARN) && channel.contains("recipient account 123456789012"),
        "{channel}"
    );
    assert!(assert_passed(&ran, "AWS credentials").contains("access key AKID…"));
    assert!(assert_passed(&ran, "AWS region").contains("us-east-1"));
    assert!(assert_passed(&ran, "Redis eviction policy").contains("noeviction"));
    assert!(
        !ran.stdout.contains('✗') && ran.stdout.contains("All 9 checks passed."),
        "{}",
        ran.stdout
    );
    assert_no_secret(&ran);
    assert!(s.redis.keys("*").is_empty(), "the probe key is deleted: {:?}", s.redis.keys("*"));
    assert_eq!(s.ct.with(|c| c.calls), 0, "check sends nothing to CloudTrail");
}

#[tokio::test]
async fn a_wrong_token_fails_both_endpoints_and_every_other_check_still_runs() {
    let (s, mut env) = setup().await;
    env.insert("KONG_ADMIN_TOKEN".into(), "not-the-token".into());
    let ran = run_bin(&["check"], &env).await;
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    for endpoint in ["/audit/requests", "/audit/objects"] {
        let (line, _) = assert_failed(&ran, &format!("Kong access to {endpoint}"), "set KONG_ADMIN_TOKEN");
        assert!(line.contains("HTTP 401"), "{line}");
    }
    assert_passed(&ran, "Store");
    assert_passed(&ran, "Channel");
    assert_passed(&ran, "AWS credentials");
    assert!(ran.stdout.contains("2 of 8 checks failed"), "{}", ran.stdout);
    assert!(!ran.stdout.contains("not-the-token") && !ran.stderr.contains("not-the-token"));
    assert_no_secret(&ran);
    drop(s);
}

#[tokio::test]
async fn a_missing_token_says_this_kong_requires_one() {
    let (_s, mut env) = setup().await;
    env.remove("KONG_ADMIN_TOKEN");
    let ran = run_bin(&["check"], &env).await;
    assert_eq!(ran.code, 1);
    let (line, _) = assert_failed(&ran, "Kong access to /audit/requests", "KONG_ADMIN_TOKEN");
    assert!(line.contains("requires one"), "{line}");
}

#[tokio::test]
async fn audit_logging_off_is_reported_with_the_kong_conf_setting() {
    let (s, env) = setup().await;
    s.kong.with(|k| k.audit_enabled = false);
    let ran = run_bin(&["check"], &env).await;
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    let (line, _) = assert_failed(&ran, "Kong audit logging", "audit_log = on");
    assert!(line.contains("off"), "{line}");
    assert_passed(&ran, "Kong");
    assert!(check(&ran, "Kong access to /audit/requests").0.starts_with("- "), "{}", ran.stdout);
}

#[tokio::test]
async fn an_unreachable_kong_is_reported_and_the_other_checks_still_run() {
    let (_s, mut env) = setup().await;
    let url = format!("http://127.0.0.1:{}", free_port());
    env.insert("KONG_ADMIN_API".into(), url.clone());
    let started = std::time::Instant::now();
    let ran = run_bin(&["check"], &env).await;
    assert_eq!(ran.code, 1);
    let (line, fix) = assert_failed(&ran, "Kong", "check KONG_ADMIN_API");
    assert!(line.contains("Connection refused") && fix.contains(&url), "{line}\n{fix}");
    assert!(check(&ran, "Kong audit logging").0.starts_with("- "));
    assert_passed(&ran, "Store");
    assert_passed(&ran, "AWS region");
    assert!(started.elapsed().as_secs() < 15, "check answers quickly: {:?}", started.elapsed());
}

#[tokio::test]
async fn kong_settings_that_cannot_work_are_named() {
    let (_s, mut env) = setup().await;
    env.remove("KONG_ADMIN_API");
    let ran = run_bin(&["check"], &env).await;
    assert_eq!(ran.code, 1);
    assert_failed(&ran, "Kong", "set KONG_ADMIN_API");
}

#[tokio::test]
async fn redis_down_is_reported_with_the_url_to_check() {
    let (mut s, env) = setup().await;
    s.redis.stop();
    let ran = run_bin(&["check"], &env).await;
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    let shown = format!("redis://127.0.0.1:{}/0", s.redis.port);
    let (line, fix) = assert_failed(&ran, "Store", "check REDIS_URL");
    assert!(line.contains(&format!("Redis at {shown} is not reachable")), "{line}");
    assert!(fix.contains(&shown), "{fix}");
    assert!(check(&ran, "Redis eviction policy").0.starts_with("- "), "{}", ran.stdout);
    assert_passed(&ran, "Kong");
    assert_no_secret(&ran);
}

/// A Redis that may evict keys when full deletes marks (their entries ship again) and claims: check
/// says so, with the policy to set; without a memory limit nothing is evicted, and check says that.
#[tokio::test]
async fn an_evicting_redis_is_reported_with_noeviction_as_the_fix() {
    let (s, env) = setup().await;
    s.redis.cli(&["CONFIG", "SET", "maxmemory-policy", "volatile-lru"]).unwrap();
    let unlimited = run_bin(&["check"], &env).await;
    assert_eq!(unlimited.code, 0, "{}", unlimited.stdout);
    assert!(assert_passed(&unlimited, "Redis eviction policy").contains("volatile-lru with no maxmemory limit"));

    s.redis.cli(&["CONFIG", "SET", "maxmemory", "100mb"]).unwrap();
    let ran = run_bin(&["check"], &env).await;
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    let (line, fix) = assert_failed(&ran, "Redis eviction policy", "noeviction");
    assert!(line.contains("volatile-lru with maxmemory 100 MiB"), "{line}");
    assert!(fix.contains("parameter group"), "{fix}");
    assert_passed(&ran, "Store");
    assert_no_secret(&ran);

    s.redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]).unwrap();
    let fixed = run_bin(&["check"], &env).await;
    assert_eq!(fixed.code, 0, "{}", fixed.stdout);
    assert!(assert_passed(&fixed, "Redis eviction policy").contains("maxmemory 100 MiB"));
}

#[tokio::test]
async fn a_wrong_redis_password_is_told_apart_from_redis_down() {
    let (s, mut env) = setup().await;
    env.insert("REDIS_URL".into(), format!("redis://:wrong-pw@127.0.0.1:{}/0", s.redis.port));
    let ran = run_bin(&["check"], &env).await;
    assert_eq!(ran.code, 1);
    assert_failed(&ran, "Store", "REDIS_PASSWORD");
    assert!(!ran.stdout.contains("wrong-pw") && !ran.stderr.contains("wrong-pw"));
}

#[tokio::test]
async fn a_malformed_channel_arn_is_reported_with_where_to_find_the_right_one() {
    let (_s, mut env) = setup().await;
    env.insert("CHANNEL_ARN".into(), "arn:aws:cloudtrail:us-east-1:1234:channel/x".into());
    let ran = run_bin(&["check"], &env).await;
    assert_eq!(ran.code, 1);
    let (line, fix) = assert_failed(&ran, "Channel", "set CHANNEL_ARN");
    assert!(line.contains("12-digit account id"), "{line}");
    assert!(fix.contains("list-channels"), "{fix}");
    assert_passed(&ran, "Kong");
}

#[tokio::test]
async fn no_aws_credentials_is_reported_with_the_ways_to_give_them() {
    let (_s, mut env) = setup().await;
    env.remove("AWS_ACCESS_KEY_ID");
    env.remove("AWS_SECRET_ACCESS_KEY");
    let ran = run_bin(&["check"], &env).await;
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    let (line, _) = assert_failed(&ran, "AWS credentials", "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    assert!(line.contains("none found"), "{line}");
    assert_failed(&ran, "AWS credentials", "AWS_PROFILE");
    assert_passed(&ran, "AWS region");
    assert_passed(&ran, "Kong");
}

#[tokio::test]
async fn without_redis_the_embedded_file_store_is_checked_and_created_owner_only() {
    let (_s, mut env) = setup().await;
    env.remove("REDIS_URL");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/state.redb");
    env.insert("STATE_FILE".into(), path.display().to_string());
    let ran = run_bin(&["check"], &env).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let store = assert_passed(&ran, "Store");
    assert!(
        store.contains(&format!("embedded file store at {}", path.display())) && store.contains("REDIS_URL"),
        "{store}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[tokio::test]
async fn a_state_file_held_by_another_process_is_a_clear_failure() {
    let (_s, mut env) = setup().await;
    env.remove("REDIS_URL");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    env.insert("STATE_FILE".into(), path.display().to_string());
    // This test process holds the file, as a running backfill would.
    let held = kong_audit_shipper::dedup::FileStore::open(&path).await.unwrap();
    let ran = run_bin(&["check"], &env).await;
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    let (line, _) = assert_failed(&ran, "Store", "REDIS_URL");
    assert!(
        line.contains(&format!(
            "another kong-audit-shipper holds {}; wait for it or use Redis to share state between runs",
            path.display()
        )),
        "{line}"
    );
    drop(held);
    let ran = run_bin(&["check"], &env).await;
    assert_eq!(ran.code, 0, "free again once the other process is done:\n{}", ran.stdout);
}
