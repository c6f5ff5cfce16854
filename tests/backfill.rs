//! `kong-audit-shipper backfill`: time windows (Kong's filters or the client's), dry runs,
//! progress, the embedded store, and running beside `run`.

mod support;

use std::collections::HashSet;

use serde_json::Value;
use support::*;

fn window_of(requests: &[Value], objects: &[Value], since: i64, until: i64) -> usize {
    let in_window = |e: &Value| e["request_timestamp"].as_i64().is_some_and(|t| t >= since && t < until);
    requests.iter().filter(|e| in_window(e)).count() + objects.iter().filter(|e| in_window(e)).count()
}

#[tokio::test]
async fn a_window_is_read_with_kongs_filters_where_it_has_them() {
    let kong = FakeKong::start("3.7.1.2").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 300, true);
    let t0 = requests[0]["request_timestamp"].as_i64().unwrap();
    let (since, until) = (t0 + 20, t0 + 60);
    let env = env_for(&kong, &ct, Some(&redis));
    let ran = run_bin(
        &[
            "backfill",
            "--since",
            &since.to_string(),
            "--until",
            &chrono::DateTime::from_timestamp(until, 0).unwrap().to_rfc3339(),
        ],
        &env,
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let expected = window_of(&requests, &objects, since, until);
    assert!(expected > 50);
    assert_eq!(ran.count("shipped"), expected as u64);
    assert_eq!(ct.accepted().len(), expected);
    assert!(
        kong.audit_queries()
            .iter()
            .all(|q| q.contains(&format!("after={since}")) && q.contains(&format!("before={until}")))
    );
    assert!(
        redis.get("kong-audit-shipper:watermark:request").is_empty(),
        "a backfill does not move the watermark"
    );
}

#[tokio::test]
async fn a_window_is_filtered_by_the_client_on_a_kong_without_filters() {
    let kong = FakeKong::start("3.3.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 200, true);
    let t0 = requests[0]["request_timestamp"].as_i64().unwrap();
    let (since, until) = (t0 + 10, t0 + 30);
    let ran = run_bin(
        &["backfill", "--since", &since.to_string(), "--until", &until.to_string()],
        &env_for(&kong, &ct, Some(&redis)),
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.count("shipped"), window_of(&requests, &objects, since, until) as u64);
    assert!(kong.audit_queries().iter().all(|q| !q.contains("after=")));
}

#[tokio::test]
async fn a_dry_run_prints_the_events_and_touches_nothing() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let state = tempfile::tempdir().unwrap();
    let (requests, objects) = load_trail(&kong, 60, true);
    let mut env = env_for(&kong, &ct, None);
    env.remove("CHANNEL_ARN");
    env.insert("STATE_FILE".into(), state.path().join("state.redb").display().to_string());
    let ran = run_bin(&["backfill", "--dry-run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let lines: Vec<Value> = ran.stdout.lines().map(|l| serde_json::from_str(l).expect("NDJSON")).collect();
    assert_eq!(lines.len(), requests.len() + objects.len());
    let uids: HashSet<&str> = lines.iter().map(|l| l["UID"].as_str().unwrap()).collect();
    assert!(uids.contains(requests[3]["request_id"].as_str().unwrap()));
    // One stream, oldest first across both endpoints; the oldest entry is the first request.
    assert_eq!(lines[0]["additionalEventData"]["kongAuditEntry"], requests[0]);
    let times: Vec<&str> = lines.iter().map(|l| l["eventTime"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
    assert_eq!(ct.with(|s| s.calls), 0, "nothing sent");
    assert!(!state.path().join("state.redb").exists(), "nothing claimed");
}

#[tokio::test]
async fn a_dry_run_to_a_file_creates_it_for_its_owner_only() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    load_trail(&kong, 10, true);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.ndjson");
    let ran = run_bin(
        &["backfill", "--dry-run", "--output", out.to_str().unwrap()],
        &env_for(&kong, &ct, None),
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count() as u64, ran.count("read"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn without_redis_the_embedded_store_remembers_what_was_shipped() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let (requests, objects) = load_trail(&kong, 40, true);
    let state = tempfile::tempdir().unwrap();
    let mut env = env_for(&kong, &ct, None);
    env.insert("STATE_FILE".into(), state.path().join("nested/state.redb").display().to_string());
    let first = run_bin(&["backfill"], &env).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.count("shipped"), (requests.len() + objects.len()) as u64);
    let second = run_bin(&["backfill"], &env).await;
    assert_eq!(
        (second.count("shipped"), second.count("already_shipped")),
        (0, first.count("shipped"))
    );
}

#[tokio::test]
async fn progress_shows_as_log_lines_off_a_terminal_and_as_a_bar_on_one() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    load_trail(&kong, 500, true);
    ct.with(|s| s.latency = std::time::Duration::from_millis(300));
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("PUT_CONCURRENCY".into(), "1".into());
    let ran = run_bin(&["backfill", "--progress-seconds", "1"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let progress: Vec<&str> = ran.stderr.lines().filter(|l| l.contains("progress: read")).collect();
    assert!(progress.len() >= 2, "periodic progress lines: {}", ran.stderr);
    assert!(progress[0].contains("shipped") && progress[0].contains("/s"));

    // On a terminal (a pseudo-terminal from util-linux `script`): a live bar.
    redis.cli(&["FLUSHALL"]);
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &format!("{} backfill", support::BIN), "/dev/null"])
        .env_clear()
        .envs(&env)
        .env("PATH", std::env::var("PATH").unwrap())
        .env("TERM", "xterm-256color")
        .env("HOME", std::env::var("HOME").unwrap());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("read ") && screen.contains("· shipped "), "bar drawn: {screen}");
    assert!(screen.contains("summary status=ok"));
}

#[tokio::test]
async fn a_backfill_beside_the_hourly_run_ships_every_entry_once() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 500, true);
    ct.with(|s| s.latency = std::time::Duration::from_millis(10));
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("KONG_PAGE_SIZE".into(), "50".into());
    let (a, b) = tokio::join!(run_bin(&["run"], &env), run_bin(&["backfill"], &env));
    for r in [&a, &b] {
        // Entries the other held are reported as held (exit 1), never as shipped.
        assert_eq!(r.code, i32::from(r.count("held") > 0), "{}", r.stderr);
        assert_eq!(r.count("failed"), 0, "{}", r.stderr);
    }
    assert_eq!(a.count("shipped") + b.count("shipped"), (requests.len() + objects.len()) as u64);
    let after = run_bin(&["run"], &env).await;
    assert_eq!(
        (after.code, after.count("shipped"), after.count("held")),
        (0, 0, 0),
        "{}",
        after.stderr
    );
    let counts = ct.accepted_ids();
    assert_eq!(counts.len(), requests.len() + objects.len());
    assert!(counts.values().all(|n| *n == 1));
}
