//! CloudWatch Logs as the destination, end to end: the real binary (and once the Lambda handler, in
//! process) against a loopback fake of the CloudWatch Logs JSON 1.1 API that keeps PutLogEvents' rules
//! (tests/support/fake_cloudwatch_logs.rs), a fake Kong and a real redis-server. The shipping test also
//! runs against moto's server mode, an implementation nobody here wrote.
//!
//! What moto does differently from the real API (moto 5.2, read from its source and seen here): it
//! checks the order of a call's events and the 14-day / 2-hour window, but neither the 24-hour span,
//! nor the sizes and counts, nor the group's retention; it reports `tooOldLogEventEndIndex` as the
//! index of the *last* old event (AWS documents it as exclusive) and `tooNewLogEventStartIndex` as the
//! last too-new index (AWS: the first). The sink reads both so that no skipped event counts as stored.

#[path = "support/fake_cloudwatch_logs.rs"]
mod fake_cloudwatch_logs;
#[path = "support/moto_server.rs"]
mod moto_server;
mod support;

use std::collections::{HashMap, HashSet};

use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Credentials, Region};
use fake_cloudwatch_logs::{ACCOUNT, DAY_MS, FakeLogs, Fault, GROUP};
use moto_server::MotoServer;
use serde_json::{Value, json};
use support::*;

const VERSION: &str = "3.8.1.0";

/// `n` requests and their objects, spread over the last 30 days as Kong keeps them; returns every entry.
fn month_trail(kong: &FakeKong, n: usize) -> Vec<Value> {
    let now = chrono::Utc::now().timestamp();
    let (mut requests, mut objects) = fake_kong::sample_trail(n, 0, true);
    let span = 30 * 86_400 - 1_200;
    let step = span / n as i64;
    let mut at = HashMap::new();
    for (i, r) in requests.iter_mut().enumerate() {
        let ts = now - span + i as i64 * step;
        r["request_timestamp"] = json!(ts);
        r["ttl"] = json!(2_592_000 - (now - ts));
        at.insert(r["request_id"].as_str().unwrap().to_string(), ts);
    }
    for o in &mut objects {
        let ts = at[o["request_id"].as_str().unwrap()];
        o["request_timestamp"] = json!(ts);
        o["ttl"] = json!(2_592_000 - (now - ts));
    }
    kong.add("requests", &requests);
    kong.add("objects", &objects);
    requests.into_iter().chain(objects).collect()
}

/// The key of an entry: its kind and its own id.
fn entry_key(entry: &Value) -> (String, String) {
    match entry.get("id").and_then(Value::as_str) {
        Some(id) if entry.get("dao_name").is_some() => ("object".into(), id.into()),
        _ => ("request".into(), entry["request_id"].as_str().unwrap().into()),
    }
}

/// The environment of a run shipping to CloudWatch Logs at `endpoint` (no CHANNEL_ARN).
fn logs_env(kong: &FakeKong, ct: &FakeCloudTrail, endpoint: &str, redis: Option<&RedisServer>) -> HashMap<String, String> {
    support::logs_env(kong, ct, endpoint, GROUP, redis)
}

/// A client of the service at `endpoint`, for the tests' own calls (creating a group, exporting).
fn client(endpoint: &str) -> aws_sdk_cloudwatchlogs::Client {
    support::logs_client(endpoint)
}

/// Every event of the group, as `aws logs filter-log-events` pages through them: (timestamp, message).
async fn export(endpoint: &str) -> Vec<(i64, String)> {
    let logs = client(endpoint);
    let mut events = Vec::new();
    let mut token = None;
    loop {
        let page = logs
            .filter_log_events()
            .log_group_name(GROUP)
            .set_next_token(token)
            .send()
            .await
            .expect("FilterLogEvents");
        events.extend(
            page.events()
                .iter()
                .map(|e| (e.timestamp().unwrap(), e.message().unwrap().to_string())),
        );
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return events;
        }
    }
}

fn time_ms(event_time: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(event_time, "%Y-%m-%dT%H:%M:%SZ")
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// Every entry stored exactly once, whole; each timestamp the entry's time, or clamped into the
/// window with the original in the message; `eventTime` and the entry verbatim. Returns how many
/// were clamped.
fn assert_month_stored(entries: &[Value], stored: &[(i64, String)], recipient: &str) -> usize {
    let now = chrono::Utc::now().timestamp_millis();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut clamped = 0;
    let by_key: HashMap<(String, String), &Value> = entries.iter().map(|e| (entry_key(e), e)).collect();
    for (timestamp, message) in stored {
        let v: Value = serde_json::from_str(message).expect("each message is the eventData JSON");
        let extra = &v["additionalEventData"];
        let key = (
            extra["kongEntryKind"].as_str().unwrap().to_string(),
            v["UID"].as_str().unwrap().to_string(),
        );
        *seen.entry(key.clone()).or_insert(0) += 1;
        let entry = by_key.get(&key).unwrap_or_else(|| panic!("{key:?} is no entry of the trail"));
        assert_eq!(&extra["kongAuditEntry"], *entry, "the entry, verbatim");
        let t = entry["request_timestamp"].as_i64().unwrap() * 1000;
        assert_eq!(time_ms(v["eventTime"].as_str().unwrap()), t, "eventTime is the entry's time");
        assert_eq!(v["recipientAccountId"], recipient);
        match extra.get("logTimestampClamped") {
            None => assert_eq!(*timestamp, t, "the timestamp is the entry's time in ms"),
            Some(c) => {
                clamped += 1;
                assert_eq!(c["originalTimestamp"].as_i64(), Some(t));
                assert_eq!(c["reason"], "tooOld");
                assert!(t < now - 13 * DAY_MS, "only what the window does not take is clamped");
                assert!(*timestamp > t && *timestamp > now - 14 * DAY_MS, "clamped into the window");
            }
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    assert_eq!(seen.len(), entries.len(), "every entry stored");
    assert!(clamped > 0 && clamped < entries.len());
    clamped
}

#[tokio::test]
async fn a_30_day_trail_ships_whole_and_once_in_day_sized_calls_and_a_second_run_ships_nothing() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let logs = FakeLogs::start().await;
    let redis = RedisServer::start();
    let entries = month_trail(&kong, 300);
    let env = logs_env(&kong, &ct, &logs.url(), Some(&redis));

    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.count("shipped"), entries.len() as u64);
    logs.with(|s| {
        assert!(s.violations.is_empty(), "{:?}", s.violations);
        assert_eq!(s.skipped_events, 0, "clamping leaves the service nothing to skip");
        assert!(s.calls.iter().any(|c| c == "CreateLogStream"), "the missing stream was created");
        assert!(s.put_calls >= 13, "one call per day of the last 14: {}", s.put_calls);
    });
    let stored: Vec<(i64, String)> = logs.events().into_iter().map(|e| (e.timestamp, e.message)).collect();
    let clamped = assert_month_stored(&entries, &stored, ACCOUNT);
    assert!(clamped > entries.len() / 3, "{clamped}");
    assert_eq!(ct.with(|s| s.calls), 0, "nothing went to CloudTrail");
    assert!(ran.stderr.contains(&format!("CloudWatch Logs group {GROUP}")), "{}", ran.stderr);

    let again = run_bin(&["run"], &env).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.count("shipped"), 0);
    let mut full = env.clone();
    full.insert("FULL_READ".into(), "true".into());
    let full = run_bin(&["run"], &full).await;
    assert_eq!(full.code, 0, "{}", full.stderr);
    assert_eq!((full.count("shipped"), full.count("already_shipped")), (0, entries.len() as u64));
    assert_eq!(logs.with(|s| s.stored_count), entries.len() as u64, "a second run ships nothing");
}

#[tokio::test]
async fn the_same_trail_ships_whole_and_once_to_moto() {
    let moto = MotoServer::start();
    client(&moto.url())
        .create_log_group()
        .log_group_name(GROUP)
        .send()
        .await
        .expect("CreateLogGroup on moto");
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let entries = month_trail(&kong, 200);
    let env = logs_env(&kong, &ct, &moto.url(), Some(&redis));
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.count("shipped"), entries.len() as u64);
    // moto enforces the window and the order: anything it skipped would be missing here.
    let stored = export(&moto.url()).await;
    assert_month_stored(&entries, &stored, ACCOUNT);

    let again = run_bin(&["run"], &env).await;
    assert_eq!((again.code, again.count("shipped")), (0, 0), "{}", again.stderr);
    assert_eq!(export(&moto.url()).await.len(), stored.len());

    // recover on moto's export gives back what Kong served.
    let served: Vec<String> = entries.iter().map(Value::to_string).collect();
    assert_recovered(&stored, &served).await;
}

/// `recover` on an export, in the two shapes Logs gives (FilterLogEvents' events as JSON lines, and
/// an export to S3's `TIMESTAMP MESSAGE` lines), returns exactly the `served` texts.
async fn assert_recovered(stored: &[(i64, String)], served: &[String]) {
    let mut lines: Vec<String> = stored
        .iter()
        .enumerate()
        .map(|(i, (t, m))| {
            if i % 2 == 0 {
                json!({"logStreamName": "kong-audit-shipper", "timestamp": t, "message": m, "ingestionTime": t, "eventId": i.to_string()})
                    .to_string()
            } else {
                let at = chrono::DateTime::from_timestamp_millis(*t).unwrap();
                format!("{} {m}", at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            }
        })
        .collect();
    fastrand::seed(11);
    fastrand::shuffle(&mut lines);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("export.ndjson");
    let output = dir.path().join("entries.ndjson");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = run_bin(
        &["recover", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()],
        &HashMap::new(),
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let recovered = std::fs::read_to_string(&output).unwrap();
    let mut got: Vec<&str> = recovered.lines().collect();
    let mut want: Vec<&str> = served.iter().map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "every entry byte for byte");
}

#[tokio::test]
async fn recover_gives_back_every_entry_byte_for_byte_from_a_logs_export() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let logs = FakeLogs::start().await;
    let redis = RedisServer::start();
    let entries = month_trail(&kong, 60);
    let mut served: Vec<String> = entries.iter().map(Value::to_string).collect();
    // Entries as text: odd spellings, and one so large it travels in numbered parts.
    let now = chrono::Utc::now().timestamp();
    let odd = [
        format!(
            r#"{{ "request_id" : "odd-1", "request_timestamp":{}, "method":"PATCH","path":"/a/b",  "payload":"{{\"x\":1.50e3}}", "ttl": 100 }}"#,
            now - 20 * 86_400
        ),
        format!(
            r#"{{"request_id":"odd-big","request_timestamp":{},"method":"POST","path":"/x","payload":"{}"}}"#,
            now - 60,
            "y".repeat(70_000)
        ),
    ];
    kong.add_raw("requests", odd.iter().cloned());
    served.extend(odd.iter().cloned());
    let env = logs_env(&kong, &ct, &logs.url(), Some(&redis));
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let stored = export(&logs.url()).await;
    assert!(stored.len() > served.len(), "the large entry went in parts");
    assert_recovered(&stored, &served).await;
}

#[tokio::test]
async fn throttling_and_lost_answers_lose_nothing_and_duplicate_only_what_a_lost_answer_stored() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let logs = FakeLogs::start().await;
    let redis = RedisServer::start();
    let entries = month_trail(&kong, 300);
    logs.with(|s| {
        s.faults.extend([
            Fault::Status(400, "ThrottlingException"),
            Fault::AcceptThenLose,
            Fault::Status(503, "ServiceUnavailableException"),
            Fault::Status(400, "ThrottlingException"),
            Fault::Status(400, "ThrottlingException"),
            Fault::AcceptThenLose,
            Fault::Status(500, "InternalFailure"),
        ]);
        s.quota_per_second = 20;
    });
    let mut env = logs_env(&kong, &ct, &logs.url(), Some(&redis));
    env.insert("KONG_PAGE_SIZE".into(), "50".into());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.count("shipped"), entries.len() as u64);
    assert!(ran.count("retried") > 0);
    let (lost, throttled, violations) = logs.with(|s| (s.lost_batches.clone(), s.throttled_calls, s.violations.clone()));
    assert!(violations.is_empty(), "{violations:?}");
    assert!(throttled >= 3 && lost.len() == 2, "{throttled} throttled, {} lost", lost.len());
    let counts = fake_cloudwatch_logs::counts(&logs.events());
    let keys = |messages: &mut dyn Iterator<Item = &String>| -> HashSet<(String, String)> {
        messages
            .map(|m| {
                let v: Value = serde_json::from_str(m).unwrap();
                entry_key(&v["additionalEventData"]["kongAuditEntry"])
            })
            .collect()
    };
    let stored = keys(&mut counts.keys());
    let wanted: HashSet<(String, String)> = entries.iter().map(entry_key).collect();
    assert_eq!(stored, wanted, "nothing lost");
    // A message is stored once, plus once for each lost answer that carried it.
    for (message, n) in &counts {
        let lost_with_it = lost.iter().filter(|batch| batch.contains(message)).count();
        assert!(*n <= 1 + lost_with_it, "stored {n} times, in {lost_with_it} lost answers");
    }
    assert!(counts.values().any(|n| *n > 1), "the lost answers did store their events");
}

#[tokio::test]
async fn a_group_that_keeps_seven_days_still_gets_every_entry() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let logs = FakeLogs::start().await;
    logs.with(|s| s.groups.get_mut(GROUP).unwrap().retention_days = Some(7));
    let redis = RedisServer::start();
    let entries = month_trail(&kong, 200);
    let ran = run_bin(&["run"], &logs_env(&kong, &ct, &logs.url(), Some(&redis))).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.count("shipped"), entries.len() as u64);
    assert!(ran.stderr.contains("retention is shorter"), "{}", ran.stderr);
    let events = logs.events();
    let (skips, violations) = logs.with(|s| (s.calls_with_skips, s.violations.clone()));
    assert!(violations.is_empty(), "{violations:?}");
    assert!(skips > 0, "the service skipped what the group does not keep");
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for e in &events {
        let v: Value = serde_json::from_str(&e.message).unwrap();
        *seen.entry(entry_key(&v["additionalEventData"]["kongAuditEntry"])).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), entries.len(), "nothing lost");
    // The one event at the edge of each skipped range may be stored twice (the index is read as
    // inclusive, so that nothing skipped counts as stored); nothing else.
    let twice = seen.values().filter(|n| **n > 1).count() as u64;
    assert!(twice <= skips, "{twice} duplicates for {skips} calls with skipped events");
}

#[tokio::test]
async fn configuration_errors_exit_2_and_name_the_setting() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let logs = FakeLogs::start().await;
    let redis = RedisServer::start();
    month_trail(&kong, 10);
    let env = logs_env(&kong, &ct, &logs.url(), Some(&redis));

    let mut both = env.clone();
    both.insert("CHANNEL_ARN".into(), fake_cloudtrail::CHANNEL_ARN.into());
    for args in [&["run"][..], &["backfill"][..], &["redrive"][..]] {
        let ran = run_bin(args, &both).await;
        assert_eq!(ran.code, 2, "{args:?}: {}", ran.stderr);
        assert!(
            ran.stderr.contains("CHANNEL_ARN") && ran.stderr.contains("CLOUDWATCH_LOG_GROUP") && ran.stderr.contains("both are set"),
            "{}",
            ran.stderr
        );
    }

    let mut bad = env.clone();
    bad.insert("CLOUDWATCH_LOG_GROUP".into(), "kong audit".into());
    let ran = run_bin(&["run"], &bad).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("CLOUDWATCH_LOG_GROUP") && ran.stderr.contains("'kong audit'"),
        "{}",
        ran.stderr
    );

    let empty = FakeLogs::start_empty().await;
    let ran = run_bin(&["run"], &logs_env(&kong, &ct, &empty.url(), Some(&redis))).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("CLOUDWATCH_LOG_GROUP: the log group '/kong/audit' does not exist"),
        "{}",
        ran.stderr
    );
    assert!(
        redis.keys("kong-audit-shipper:*").is_empty(),
        "nothing claimed before the destination is known to work"
    );
    assert_eq!(logs.with(|s| s.calls.len()), 0);
}

#[tokio::test]
async fn access_denied_names_the_iam_action_and_loses_nothing() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let logs = FakeLogs::start().await;
    let redis = RedisServer::start();
    let entries = month_trail(&kong, 30);
    let env = logs_env(&kong, &ct, &logs.url(), Some(&redis));

    logs.with(|s| s.denied = vec!["DescribeLogStreams"]);
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("logs:DescribeLogStreams") && ran.stderr.contains("not authorized"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("ErrorMetadata"), "no Debug dump: {}", ran.stderr);

    logs.with(|s| s.denied = vec!["PutLogEvents"]);
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let summary = ran.stderr.lines().find(|l| l.contains("summary status=")).unwrap();
    assert!(
        summary.contains("error=") && summary.contains("logs:PutLogEvents") && summary.contains(GROUP),
        "{summary}"
    );
    assert!(
        summary.contains("is not authorized to perform"),
        "the service's own message: {summary}"
    );
    assert!(!summary.contains("Error {"), "no Debug dump: {summary}");
    assert_eq!(ran.count("shipped"), 0);
    assert!(logs.events().is_empty());
    let marks: Vec<String> = redis
        .keys("kong-audit-shipper:*")
        .into_iter()
        .filter(|k| redis.get(k).starts_with("shipped@"))
        .collect();
    assert!(marks.is_empty(), "nothing marked shipped: {marks:?}");

    logs.with(|s| s.denied.clear());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(logs.events().len(), entries.len(), "once allowed, everything ships");
}

#[tokio::test]
async fn no_aws_credentials_stop_before_any_work_saying_so() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let logs = FakeLogs::start().await;
    let redis = RedisServer::start();
    let entries = month_trail(&kong, 10);
    let mut env = logs_env(&kong, &ct, &logs.url(), Some(&redis));
    env.remove("AWS_ACCESS_KEY_ID");
    env.remove("AWS_SECRET_ACCESS_KEY");

    // The stream is looked up at start: without credentials that fails at once, with the fix, and
    // is not retried as if the connection had dropped.
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("no usable AWS credentials"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("retrying"), "{}", ran.stderr);
    assert!(logs.events().is_empty());
    assert!(redis.keys("kong-audit-shipper:*").is_empty(), "nothing claimed");

    let ran = run_bin(&["run"], &logs_env(&kong, &ct, &logs.url(), Some(&redis))).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(logs.events().len(), entries.len());
}

#[tokio::test]
async fn an_existing_stream_is_written_as_it_is() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let logs = FakeLogs::start().await;
    logs.create_stream("eu-control-plane");
    let redis = RedisServer::start();
    let entries = month_trail(&kong, 20);
    let mut env = logs_env(&kong, &ct, &logs.url(), Some(&redis));
    env.insert("CLOUDWATCH_LOG_STREAM".into(), "eu-control-plane".into());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(logs.with(|s| !s.calls.iter().any(|c| c == "CreateLogStream")));
    let events = logs.events();
    assert_eq!(events.len(), entries.len());
    assert!(events.iter().all(|e| e.stream == "eu-control-plane"));
}

/// The line of one `check` (`✓ Name: ...` / `✗ Name: ...`) and the fix below a ✗.
fn check_line<'a>(ran: &'a Ran, name: &str) -> (&'a str, Option<&'a str>) {
    let lines: Vec<&str> = ran.stdout.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains(&format!(" {name}: ")))
        .unwrap_or_else(|| panic!("no line for {name:?} in:\n{}", ran.stdout));
    (lines[i], lines.get(i + 1).and_then(|l| l.trim_start().strip_prefix("fix: ")))
}

#[tokio::test]
async fn check_tests_the_log_group_that_is_configured() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let logs = FakeLogs::start().await;
    let redis = RedisServer::start();
    month_trail(&kong, 5);
    let env = logs_env(&kong, &ct, &logs.url(), Some(&redis));
    let ran = run_bin(&["check"], &env).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let (line, _) = check_line(&ran, "CloudWatch Logs");
    assert!(line.starts_with("✓ "), "{}", ran.stdout);
    assert!(line.contains(GROUP) && line.contains("will be created by the first run"), "{line}");
    assert!(!ran.stdout.contains("Channel:"), "no channel is configured:\n{}", ran.stdout);
    assert!(logs.with(|s| s.calls == ["DescribeLogStreams"]), "check creates nothing");

    let empty = FakeLogs::start_empty().await;
    let ran = run_bin(&["check"], &logs_env(&kong, &ct, &empty.url(), Some(&redis))).await;
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    let (line, fix) = check_line(&ran, "CloudWatch Logs");
    assert!(line.starts_with("✗ ") && line.contains("does not exist"), "{line}");
    assert!(
        fix.is_some_and(|f| f.contains("create the log group") && f.contains("Terraform")),
        "{}",
        ran.stdout
    );

    logs.with(|s| s.denied = vec!["DescribeLogStreams"]);
    let ran = run_bin(&["check"], &env).await;
    let (_, fix) = check_line(&ran, "CloudWatch Logs");
    assert!(fix.is_some_and(|f| f.contains("logs:PutLogEvents")), "{}", ran.stdout);

    let mut both = env.clone();
    both.insert("CHANNEL_ARN".into(), fake_cloudtrail::CHANNEL_ARN.into());
    let ran = run_bin(&["check"], &both).await;
    assert_eq!(ran.code, 1);
    let (line, _) = check_line(&ran, "Destination");
    assert!(
        line.starts_with("✗ ") && line.contains("CHANNEL_ARN") && line.contains("CLOUDWATCH_LOG_GROUP"),
        "{line}"
    );
}

fn letters(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn summary_and_dead_letters_are_the_same_for_both_destinations() {
    // The same trail twice: to CloudTrail, which refuses one object; to Logs, which calls that
    // object's event invalid. Plus one entry nobody can map.
    let mut outcomes = Vec::new();
    let mut logs_of_runs = Vec::new();
    for to_logs in [false, true] {
        let kong = FakeKong::start(VERSION).await;
        let ct = FakeCloudTrail::start().await;
        let logs = FakeLogs::start().await;
        let redis = RedisServer::start();
        let (requests, objects) = load_trail(&kong, 40, true);
        kong.add_raw(
            "requests",
            [r#"{"request_id":null,"method":"GET","path":"/x","request_timestamp":1700000000}"#.to_string()],
        );
        let refused = objects[7]["id"].as_str().unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dead-letters.ndjson");
        let mut env = if to_logs {
            logs.with(|s| s.poison = Some(refused.clone()));
            logs_env(&kong, &ct, &logs.url(), Some(&redis))
        } else {
            ct.with(|s| {
                s.refuse.insert(format!("obj-{refused}"), "InvalidData");
            });
            env_for(&kong, &ct, Some(&redis))
        };
        env.insert("DEAD_LETTER_FILE".into(), file.display().to_string());
        let ran = run_bin(&["run"], &env).await;
        let summary: Vec<u64> = ["read", "shipped", "already_shipped", "held", "rejected", "failed"]
            .iter()
            .map(|f| ran.count(f))
            .collect();
        let letters = letters(&file);
        // Each run has its own trail (stamped from its own clock): the letters are compared by key
        // across runs, and by content with the run's own entry.
        let object = letters.iter().find(|l| l["kind"] == "object").expect("the refused object's letter");
        assert_eq!(object["entry"], objects[7], "the whole entry is in the letter");
        let mut dead: Vec<(String, String)> = letters
            .iter()
            .map(|l| (l["kind"].as_str().unwrap().to_string(), l["key"].as_str().unwrap_or("").to_string()))
            .collect();
        dead.sort();
        assert_eq!(summary[1], (requests.len() + objects.len() - 1) as u64, "{}", ran.stderr);
        let marked = redis.get(&format!("kong-audit-shipper:object:{refused}"));
        outcomes.push((ran.code, summary, dead, marked.starts_with("rejected:")));
        logs_of_runs.push(ran.stderr);
    }
    assert_eq!(
        outcomes[0], outcomes[1],
        "the cycle is the same whatever the destination:\n{}\n---\n{}",
        logs_of_runs[0], logs_of_runs[1]
    );
    let (code, summary, dead, marked) = &outcomes[1];
    assert_eq!((*code, summary[4], dead.len(), *marked), (1, 2, 2, true));
}

#[tokio::test]
async fn the_lambda_handler_ships_to_logs_and_its_metrics_count_the_same() {
    use kong_audit_shipper::lambda::{Handler, RunFailed};
    use lambda_runtime::{Context, LambdaEvent};
    use std::sync::Arc;

    let kong = FakeKong::start(VERSION).await;
    let logs = FakeLogs::start().await;
    let (requests, objects) = load_trail(&kong, 20, true);
    let refused = objects[3]["id"].as_str().unwrap().to_string();
    logs.with(|s| s.poison = Some(refused.clone()));
    let dir = tempfile::tempdir().unwrap();
    let cli = <kong_audit_shipper::cli::Cli as clap::Parser>::try_parse_from([
        "kong-audit-shipper",
        "--kong-admin-api",
        &kong.url(),
        "--cloudwatch-log-group",
        GROUP,
        "--retry-initial-ms",
        "20",
        "--retry-max-ms",
        "200",
    ])
    .unwrap();
    let settings = cli.settings;
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "test-secret", None, None, "test"))
        .endpoint_url(logs.url())
        .load()
        .await;
    let Some(kong_audit_shipper::config::Destination::CloudWatchLogs(config)) = settings.destination().ok() else {
        panic!("the settings name CloudWatch Logs");
    };
    let sink = kong_audit_shipper::sink::CloudWatchLogsSink::new(&sdk, &config);
    let account = sink.prepare(&settings.backoff()).await.unwrap();
    assert_eq!(account, ACCOUNT);
    let shipper = kong_audit_shipper::ship::Shipper {
        source: Arc::new(kong_audit_shipper::kong::KongClient::new(&settings.kong_config().unwrap(), settings.backoff()).unwrap()),
        store: Arc::new(kong_audit_shipper::dedup::MemoryStore::new()),
        sink: Arc::new(sink),
        dead_letters: Arc::new(kong_audit_shipper::dead_letter::FileDeadLetters::new(dir.path().join("dl.ndjson"))),
        recipient_account_id: account,
        signatures: Default::default(),
        inventory: Some(Arc::new(kong_audit_shipper::reconcile::LogsInventory::new(
            Arc::new(kong_audit_shipper::reconcile::SdkFilter {
                client: kong_audit_shipper::sink::cloudwatch_logs::client::client(&sdk),
                group: GROUP.into(),
            }),
            GROUP,
            5,
            settings.backoff(),
        ))),
    };
    let handler = Handler::new(shipper, &settings, "kong-audit-shipper".into());
    let answer = handler.invoke(LambdaEvent::new(json!({}), Context::default())).await;
    let Err(RunFailed::Run(summary)) = answer else {
        panic!("a rejected entry makes the invocation an error");
    };
    let total = (requests.len() + objects.len()) as u64;
    assert_eq!((summary.read, summary.shipped, summary.rejected), (total, total - 1, 1));
    let emf: Value = serde_json::from_str(&summary.emf("kong-audit-shipper", 1)).unwrap();
    assert_eq!((emf["Shipped"].as_u64(), emf["Rejected"].as_u64()), (Some(total - 1), Some(1)));
    assert_eq!(logs.events().len() as u64, total - 1);
    let dead = letters(&dir.path().join("dl.ndjson"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["entry"], objects[3]);
}
