//! Dead letters end to end: the real binary, loopback fakes of Kong, CloudTrail and SQS, a real
//! redis-server. Refused entries land whole in the file or the queue, marked so they are not retried;
//! `redrive` ships them once the cause is gone and removes exactly the letters that shipped.

#[path = "support/fake_sqs.rs"]
mod fake_sqs;
mod support;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

use fake_sqs::FakeSqs;
use serde_json::{Value, json};
use support::*;

const VERSION: &str = "3.8.1.0";

fn letters_in(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn request(id: &str, now: i64) -> Value {
    json!({"request_id": id, "request_timestamp": now - 60, "method": "POST", "path": "/default/services", "payload": "{\"name\":\"s\"}", "status": 201, "client_ip": "10.0.0.1", "ttl": 2_591_000})
}

#[tokio::test]
async fn refused_entries_land_whole_in_a_private_file_and_redrive_ships_them_once_fixed() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 30, true);
    let total = requests.len() + objects.len();
    // Two entries CloudTrail refuses, one entry that cannot be mapped at all (no key).
    let refused: Vec<String> = [&requests[3], &requests[11]]
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    ct.with(|s| {
        for id in &refused {
            s.refuse.insert(format!("req-{id}"), "InvalidData");
        }
    });
    let malformed = r#"{"request_id":null,"method":"GET","path":"/x","request_timestamp":1700000000}"#;
    kong.add_raw("requests", [malformed.to_string()]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not/yet/there/dead-letters.ndjson");
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("DEAD_LETTER_FILE".into(), file.display().to_string());

    let first = run_bin(&["run"], &env).await;
    assert_eq!(first.code, 1, "rejections make the run fail: {}", first.stderr);
    assert_eq!(
        (
            first.count("read"),
            first.count("shipped"),
            first.count("rejected"),
            first.count("failed")
        ),
        (total as u64 + 1, total as u64 - 2, 3, 0)
    );
    assert_eq!(mode(&file), 0o600, "the file holds whole audit entries: owner only");
    let letters = letters_in(&file);
    assert_eq!(letters.len(), 3);
    let by_key: HashMap<&str, &Value> = letters.iter().map(|l| (l["key"].as_str().unwrap(), l)).collect();
    for (id, original) in refused.iter().zip([&requests[3], &requests[11]]) {
        let l = by_key[id.as_str()];
        assert_eq!((l["kind"].as_str(), l["code"].as_str()), (Some("request"), Some("InvalidData")));
        assert_eq!(&l["entry"], original, "the whole entry is in the letter");
        assert_eq!(redis.get(&format!("kong-audit-shipper:request:{id}")), "rejected:InvalidData");
    }
    let unmappable = letters
        .iter()
        .find(|l| l["code"] == "Unmappable")
        .expect("the malformed entry is dead-lettered");
    assert!(unmappable["reason"].as_str().unwrap().contains("'request_id'"), "{unmappable}");
    let raw_line = std::fs::read_to_string(&file).unwrap();
    assert!(raw_line.contains(malformed), "its bytes are kept verbatim");

    // Nothing is retried while the cause remains.
    let calls = ct.with(|s| s.calls);
    let again = run_bin(&["run"], &env).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(ct.with(|s| s.calls), calls);
    assert_eq!(letters_in(&file).len(), 3, "no letter written twice");

    // The cause is fixed: redrive ships the two, keeps the one that still cannot be mapped.
    ct.with(|s| s.refuse.clear());
    let redrive = run_bin(&["redrive"], &env).await;
    assert_eq!(redrive.code, 1, "one letter is left: {}", redrive.stderr);
    assert!(
        redrive
            .stderr
            .contains("redrive letters=3 shipped=2 refused_again=1 left=0 problems=0"),
        "{}",
        redrive.stderr
    );
    let left = letters_in(&file);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["code"], "Unmappable");
    assert_eq!(mode(&file), 0o600, "the rewritten file is still private");
    for id in &refused {
        assert!(redis.get(&format!("kong-audit-shipper:request:{id}")).starts_with("shipped@"));
    }
    let counts = ct.accepted_ids();
    assert_eq!(counts.len(), total, "every entry that can be shipped is in CloudTrail");
    assert!(counts.values().all(|n| *n == 1), "exactly once, redriven ones included");

    // A second redrive has nothing to ship and changes nothing.
    let second = run_bin(&["redrive", "--input", file.to_str().unwrap()], &env).await;
    assert!(second.stderr.contains("letters=1 shipped=0 refused_again=1"), "{}", second.stderr);
    assert_eq!(ct.accepted().len(), total);
}

#[tokio::test]
async fn without_redis_a_backfill_dead_letters_into_the_embedded_store_and_redrive_uses_it_too() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let (requests, objects) = load_trail(&kong, 10, true);
    let victim = requests[4]["request_id"].as_str().unwrap().to_string();
    ct.with(|s| s.refuse.insert(format!("req-{victim}"), "InvalidRecipient"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dl.ndjson");
    let mut env = env_for(&kong, &ct, None);
    env.insert("STATE_FILE".into(), dir.path().join("state.redb").display().to_string());
    env.insert("DEAD_LETTER_FILE".into(), file.display().to_string());
    let backfill = run_bin(&["backfill"], &env).await;
    assert_eq!((backfill.code, backfill.count("rejected")), (1, 1), "{}", backfill.stderr);
    assert_eq!(letters_in(&file).len(), 1);

    ct.with(|s| s.refuse.clear());
    let redrive = run_bin(&["redrive"], &env).await;
    assert_eq!(redrive.code, 0, "{}", redrive.stderr);
    assert!(redrive.stderr.contains("redrive letters=1 shipped=1"), "{}", redrive.stderr);
    assert!(letters_in(&file).is_empty());
    let counts = ct.accepted_ids();
    assert_eq!(counts.len(), requests.len() + objects.len());
    assert!(counts.values().all(|n| *n == 1));
    let again = run_bin(&["backfill"], &env).await;
    assert_eq!(
        (again.code, again.count("shipped")),
        (0, 0),
        "the store knows it is shipped: {}",
        again.stderr
    );
}

#[tokio::test]
async fn without_a_setting_the_cli_writes_letters_beside_its_state() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    kong.add_raw("objects", ["[\"not an object\"]".to_string()]);
    let home = tempfile::tempdir().unwrap();
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("XDG_STATE_HOME".into(), home.path().display().to_string());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!((ran.code, ran.count("rejected")), (1, 1), "{}", ran.stderr);
    let file = home.path().join("kong-audit-shipper/dead-letters.ndjson");
    let letters = letters_in(&file);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["entry"], json!(["not an object"]));
    assert!(letters[0]["reason"].as_str().unwrap().contains("not a JSON object"));
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()) & 0o077, 0, "the directory is private too");
    assert!(
        ran.stderr.contains("dead-letters.ndjson"),
        "the start says where letters go: {}",
        ran.stderr
    );
}

#[tokio::test]
async fn letters_go_to_the_queue_in_parts_when_large_and_redrive_deletes_what_shipped() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let sqs = FakeSqs::start().await;
    let now = chrono::Utc::now().timestamp();
    let mut big = request("BIG0000000000000000000000000000A", now);
    big["payload"] = Value::String(format!("{{\"certificate\":\"{}\"}}", "Zé\\u0001\u{ffff}".repeat(90_000)));
    let small: Vec<Value> = (0..12).map(|i| request(&format!("SMALL{i:027}"), now)).collect();
    kong.add("requests", std::slice::from_ref(&big));
    kong.add("requests", &small);
    ct.with(|s| {
        s.refuse.insert("req-BIG0000000000000000000000000000A".into(), "FieldTooLong");
        for r in &small[..11] {
            s.refuse.insert(format!("req-{}", r["request_id"].as_str().unwrap()), "InvalidData");
        }
    });
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("DEAD_LETTER_QUEUE_URL".into(), fake_sqs::QUEUE_URL.into());
    env.insert("AWS_ENDPOINT_URL_SQS".into(), sqs.url());

    let first = run_bin(&["run"], &env).await;
    assert_eq!(
        (first.code, first.count("rejected"), first.count("failed")),
        (1, 12, 0),
        "{}",
        first.stderr
    );
    let bodies = sqs.bodies();
    let parts: Vec<Value> = bodies
        .iter()
        .filter_map(|b| serde_json::from_str::<Value>(b).ok())
        .filter(|v| v.get("kongAuditShipperLetterPart").is_some())
        .collect();
    assert!(parts.len() >= 2, "the large letter is split: {} parts", parts.len());
    assert!(bodies.iter().all(|b| b.len() <= 262_144));
    assert_eq!(bodies.len() - parts.len(), 11, "one message per small letter");
    assert!(
        sqs.with(|s| s.calls.iter().all(|c| c == "AmazonSQS.SendMessageBatch")),
        "{:?}",
        sqs.with(|s| s.calls.clone())
    );

    ct.with(|s| s.refuse.clear());
    let redrive = run_bin(&["redrive"], &env).await;
    assert_eq!(redrive.code, 0, "{}", redrive.stderr);
    assert!(
        redrive.stderr.contains("redrive letters=12 shipped=12 refused_again=0 left=0"),
        "{}",
        redrive.stderr
    );
    assert!(sqs.bodies().is_empty(), "every message of a shipped letter is deleted");
    // The large entry now arrived whole; its parts after the first, accepted in the first run while
    // the head was refused, arrived twice (identical, so `recover` writes the entry once).
    let counts = ct.accepted_ids();
    for (id, n) in &counts {
        if *n > 1 {
            assert!(id.starts_with("req-BIG0000000000000000000000000000A-p"), "{id} x{n}");
        }
    }
    let big_text = big.to_string();
    let data: Vec<String> = ct.accepted().into_iter().map(|(_, d)| d).collect();
    let back = kong_audit_shipper::event::recover(data.iter().map(String::as_str));
    assert!(back.problems.is_empty(), "{:?}", back.problems);
    assert!(
        back.entries.iter().any(|e| e.json == big_text),
        "the large entry is recovered byte for byte"
    );
}

#[tokio::test]
async fn a_queue_that_fails_loses_nothing_the_entries_wait_for_the_next_run() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let sqs = FakeSqs::start().await;
    let now = chrono::Utc::now().timestamp();
    let entries: Vec<Value> = (0..5).map(|i| request(&format!("Q{i:031}"), now)).collect();
    kong.add("requests", &entries);
    ct.with(|s| {
        s.refuse
            .insert(format!("req-{}", entries[2]["request_id"].as_str().unwrap()), "InvalidData")
    });
    sqs.with(|s| s.fail_next_calls = 100);
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("DEAD_LETTER_QUEUE_URL".into(), fake_sqs::QUEUE_URL.into());
    env.insert("AWS_ENDPOINT_URL_SQS".into(), sqs.url());

    let first = run_bin(&["run"], &env).await;
    assert_eq!(first.code, 1, "{}", first.stderr);
    assert_eq!((first.count("shipped"), first.count("rejected"), first.count("failed")), (4, 0, 1));
    assert!(first.stderr.contains("cannot dead-letter"), "{}", first.stderr);
    let key = format!("kong-audit-shipper:request:{}", entries[2]["request_id"].as_str().unwrap());
    assert_eq!(redis.get(&key), "", "not marked: the next run tries again");

    sqs.with(|s| s.fail_next_calls = 0);
    let second = run_bin(&["run"], &env).await;
    assert_eq!(
        (second.count("rejected"), second.count("already_shipped")),
        (1, 4),
        "{}",
        second.stderr
    );
    assert_eq!(sqs.bodies().len(), 1);
    assert_eq!(redis.get(&key), "rejected:InvalidData");
}

#[tokio::test]
async fn a_malformed_queue_url_stops_before_any_work_naming_the_setting() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("DEAD_LETTER_QUEUE_URL".into(), "kong-audit-shipper-rejected".into());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("DEAD_LETTER_QUEUE_URL"), "{}", ran.stderr);
    assert!(kong.audit_queries().is_empty());
}

/// The log names a dead letter (kind, key, code, reason) but never holds its entry: a request body
/// may carry anything, and the log group is kept far longer than the queue. The letter itself, in
/// the file, is whole.
#[tokio::test]
async fn the_log_names_a_dead_letter_without_its_entry() {
    const BODY: &str = "customer-secret-in-a-request-body-7f3a";
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let mut refused = request("REFUSED00000000000000000000000A1", chrono::Utc::now().timestamp());
    refused["payload"] = Value::String(format!("{{\"password\":\"{BODY}\"}}"));
    kong.add("requests", std::slice::from_ref(&refused));
    ct.with(|s| {
        s.refuse.insert("req-REFUSED00000000000000000000000A1".into(), "InvalidData");
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dead-letters.ndjson");
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("DEAD_LETTER_FILE".into(), file.display().to_string());

    for format in ["text", "json"] {
        env.insert("LOG_FORMAT".into(), format.into());
        redis.cli(&["FLUSHALL"]);
        let ran = run_bin(&["run"], &env).await;
        assert_eq!((ran.code, ran.count("rejected")), (1, 1), "{}", ran.stderr);
        let line = ran
            .stderr
            .lines()
            .find(|l| l.contains("rejected for good"))
            .unwrap_or_else(|| panic!("no dead-letter line in {format}: {}", ran.stderr));
        assert!(
            line.contains("REFUSED00000000000000000000000A1") && line.contains("InvalidData") && line.contains("request"),
            "the line names the letter: {line}"
        );
        assert!(
            !ran.stderr.contains(BODY),
            "the entry's body is not in the {format} log: {}",
            ran.stderr
        );
        assert!(!ran.stdout.contains(BODY), "nor on stdout: {}", ran.stdout);
    }
    assert!(
        std::fs::read_to_string(&file).unwrap().contains(BODY),
        "the letter holds the whole entry"
    );
}

/// `run --since T` sets a floor below which no run reads Kong; the letters of entries older than it
/// are still the operator's to redrive: redrive ships them. (It used to clear their `rejected:` marks
/// and then drop them under the floor, silently.)
#[tokio::test]
async fn redrive_ships_letters_older_than_the_floor_set_by_run_since() {
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let now = chrono::Utc::now().timestamp();
    let old = json!({"request_id": "OLDLETTER000000000000000000000001", "request_timestamp": now - 7_200, "method": "POST", "path": "/default/services", "status": 201, "ttl": 2_580_000});
    kong.add("requests", std::slice::from_ref(&old));
    ct.with(|s| {
        s.refuse.insert("req-OLDLETTER000000000000000000000001".into(), "InvalidData");
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dead-letters.ndjson");
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("DEAD_LETTER_FILE".into(), file.display().to_string());
    let first = run_bin(&["run"], &env).await;
    assert_eq!((first.code, first.count("rejected")), (1, 1), "{}", first.stderr);

    let floor = run_bin(&["run", "--since", &(now - 60).to_string()], &env).await;
    assert_eq!(floor.code, 0, "{}", floor.stderr);
    ct.with(|s| s.refuse.clear());
    let redrive = run_bin(&["redrive"], &env).await;
    assert_eq!(redrive.code, 0, "{}", redrive.stderr);
    assert!(redrive.stderr.contains("letters=1 shipped=1"), "{}", redrive.stderr);
    assert_eq!(ct.accepted_ids().get("req-OLDLETTER000000000000000000000001"), Some(&1));
    assert!(letters_in(&file).is_empty());
}
