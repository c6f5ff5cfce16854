//! Secrets stay secret, and files holding whole audit entries are readable by their owner only.

mod support;

use std::os::unix::fs::PermissionsExt;

use clap::Parser;
use kong_audit_shipper::cli::Cli;
use support::*;

const TOKEN: &str = "kong-t0ken-DO-NOT-LEAK";
const PASSWORD: &str = "redis-pa55-DO-NOT-LEAK";
const URL_PASSWORD: &str = "url-pa55-DO-NOT-LEAK";
const AWS_SECRET: &str = "aws-s3cret-DO-NOT-LEAK";

fn leaks(text: &str) -> Vec<&'static str> {
    [TOKEN, PASSWORD, URL_PASSWORD, AWS_SECRET]
        .into_iter()
        .filter(|s| text.contains(s))
        .collect()
}

/// `Settings` derives `Debug`, so any `{:?}` of the settings (or of the parsed command line) would
/// print the token and passwords if they were plain strings: they are `Sensitive`, whose `Debug`
/// redacts them.
#[test]
fn debug_output_of_the_settings_hides_every_secret() {
    let cli = Cli::try_parse_from([
        "kong-audit-shipper",
        "--kong-admin-token",
        TOKEN,
        "--redis-password",
        PASSWORD,
        "--redis-url",
        &format!("redis://app:{URL_PASSWORD}@cache:6379/0"),
        "run",
    ])
    .unwrap();
    for shown in [format!("{:?}", cli.settings), format!("{:#?}", cli.settings), format!("{cli:?}")] {
        assert!(leaks(&shown).is_empty(), "{:?} in {shown}", leaks(&shown));
        assert!(shown.contains("kong_admin_token"), "the fields are still listed: {shown}");
    }
}

#[tokio::test]
async fn no_secret_reaches_stdout_or_stderr_even_at_trace_level_and_when_everything_fails() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start_with(Some(PASSWORD), None);
    load_trail(&kong, 5, true);
    kong.with(|k| k.token = Some(TOKEN.into()));
    let state = tempfile::tempdir().unwrap();
    let mut env = env_for(&kong, &ct, None);
    env.insert("XDG_STATE_HOME".into(), state.path().display().to_string());
    env.insert("KONG_ADMIN_TOKEN".into(), TOKEN.into());
    env.insert("AWS_SECRET_ACCESS_KEY".into(), AWS_SECRET.into());
    env.insert("RUST_LOG".into(), "trace".into());
    env.insert("REDIS_HOST".into(), format!("127.0.0.1:{}", redis.port));
    env.insert("REDIS_PASSWORD".into(), PASSWORD.into());

    // Everything works: the token goes to Kong, the password to Redis, the key signs requests.
    let ok = run_bin(&["run"], &env).await;
    assert_eq!(ok.code, 0, "{}", &ok.stderr[ok.stderr.len().saturating_sub(3000)..]);
    assert!(
        leaks(&ok.stderr).is_empty() && leaks(&ok.stdout).is_empty(),
        "{:?}",
        leaks(&ok.stderr)
    );

    // A wrong Redis password (in a URL), a wrong channel: errors with chains, none with a secret.
    let mut bad = env.clone();
    bad.remove("REDIS_HOST");
    bad.remove("REDIS_PASSWORD");
    bad.insert(
        "REDIS_URL".into(),
        format!("redis://default:{URL_PASSWORD}@127.0.0.1:{}/0", redis.port),
    );
    let refused = run_bin(&["run"], &bad).await;
    assert_eq!(refused.code, 2, "{}", &refused.stderr[refused.stderr.len().saturating_sub(3000)..]);
    assert!(leaks(&refused.stderr).is_empty(), "{:?}", leaks(&refused.stderr));

    let mut wrong_channel = env.clone();
    wrong_channel.insert(
        "CHANNEL_ARN".into(),
        "arn:aws:cloudtrail:us-east-1:123456789012:channel/other".into(),
    );
    kong.add("requests", &[serde_json::json!({"request_id": "SEC00000000000000000000000000001", "request_timestamp": chrono::Utc::now().timestamp(), "method": "GET", "path": "/", "status": 200})]);
    let failed = run_bin(&["run"], &wrong_channel).await;
    assert_ne!(failed.code, 0);
    assert!(leaks(&failed.stderr).is_empty(), "{:?}", leaks(&failed.stderr));
}

#[tokio::test]
async fn dead_letter_files_are_private_even_under_a_permissive_umask() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    kong.add_raw("requests", [r#"{"method":"GET","path":"/no-key"}"#.to_string()]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("letters/dead.ndjson");
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("DEAD_LETTER_FILE".into(), file.display().to_string());
    // umask 000 would make a plain create 0666 (and a directory 0777).
    let out = tokio::process::Command::new("sh")
        .args(["-c", &format!("umask 000; exec '{BIN}' run")])
        .env_clear()
        .envs(&env)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    assert_eq!(mode(&file.with_extension("ndjson.lock")), 0o600);

    // `recover` writes its output the same way.
    let output = dir.path().join("entries.ndjson");
    let input = dir.path().join("empty.ndjson");
    std::fs::write(&input, "").unwrap();
    let rec = tokio::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "umask 000; exec '{BIN}' recover --input '{}' --output '{}'",
                input.display(),
                output.display()
            ),
        ])
        .output()
        .await
        .unwrap();
    assert!(rec.status.success());
    assert_eq!(mode(&output), 0o600);
}

/// A Kong or a Redis on another machine over plain text is refused before anything connects (exit 2,
/// the setting and the fix named); the same names on loopback are what every other suite runs on.
#[tokio::test]
async fn plain_text_to_another_machine_stops_the_run_before_it_connects() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut env = env_for(&kong, &ct, None);
    env.insert("XDG_STATE_HOME".into(), state.path().display().to_string());

    // `.invalid` never resolves: a run that tried to connect would fail some other way.
    let mut http_kong = env.clone();
    http_kong.insert("KONG_ADMIN_API".into(), "http://kong.invalid:8001".into());
    let refused = run_bin(&["run"], &http_kong).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("KONG_ADMIN_API") && refused.stderr.contains("ALLOW_INSECURE_TRANSPORT=true"),
        "{}",
        refused.stderr
    );

    let mut plain_redis = env.clone();
    plain_redis.insert("REDIS_URL".into(), format!("redis://default:{URL_PASSWORD}@cache.invalid:6379/0"));
    let refused = run_bin(&["run"], &plain_redis).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("REDIS_URL")
            && refused.stderr.contains("rediss://")
            && refused.stderr.contains("ALLOW_INSECURE_TRANSPORT=true"),
        "{}",
        refused.stderr
    );
    assert!(leaks(&refused.stderr).is_empty(), "{}", refused.stderr);
}
