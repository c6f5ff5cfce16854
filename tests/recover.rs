//! I3, lossless: the original entry comes back, byte for byte, from what was shipped.
//! - a property over arbitrary entries *as text* (any values, any spelling: whitespace, escapes,
//!   number forms, duplicate keys, huge strings that force numbered parts), in any event order;
//! - the real binary: entries shipped by `run` to the fake CloudTrail, exported in the shapes an
//!   operator gets (plain eventData lines, rows wrapping it as an object or a string, shuffled, with
//!   an unavoidable duplicate), then `recover`, compared with the bytes the fake Kong served.

#[path = "support/arb_json.rs"]
mod arb_json;
mod support;

use kong_audit_shipper::event::{MapContext, map_entry, recover};
use kong_audit_shipper::kong::{Entry, EntryKind};
use proptest::prelude::*;
use serde_json::{Value, json};
use support::*;

fn ctx() -> MapContext {
    MapContext {
        recipient_account_id: "123456789012".into(),
        record_ttl: 2_592_000,
        now: 1_750_000_000,
        signatures: Default::default(),
    }
}

fn kinds() -> impl Strategy<Value = EntryKind> {
    prop_oneof![Just(EntryKind::Request), Just(EntryKind::Object)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_entry_comes_back_byte_for_byte_from_its_events_in_any_order(
        (kind, text) in kinds().prop_flat_map(|k| (Just(k), arb_json::entry_text(k.key_field(), true, 9_000))),
        rotate in any::<proptest::sample::Index>(),
        reverse in any::<bool>(),
    ) {
        let entry = Entry::parse(kind, &text).expect("generated text is JSON");
        // Whitespace around the whole value is not part of it (Kong's array holds none).
        let exact = text.trim_matches(|c: char| c == ' ' || c == '\n' || c == '\t' || c == '\r');
        prop_assert_eq!(entry.raw.get(), exact);
        let events = match map_entry(&entry, &ctx()) {
            Ok(events) => events,
            // Only entries the mapping refuses (a number it cannot represent, nesting beyond the
            // parser's limit) may fail, and those are dead-lettered whole, with this reason.
            Err(e) => {
                prop_assert!(entry.problem.is_some(), "refused without a problem: {}", e);
                return Ok(());
            }
        };
        let mut lines: Vec<&str> = events.iter().map(|e| e.event_data.as_str()).collect();
        let n = lines.len();
        lines.rotate_left(rotate.index(n));
        if reverse {
            lines.reverse();
        }
        let back = recover(lines);
        prop_assert!(back.problems.is_empty(), "{:?}", back.problems);
        prop_assert_eq!(back.entries.len(), 1);
        prop_assert_eq!(back.entries[0].kind, kind);
        prop_assert!(back.entries[0].json == exact, "{} parts; bytes differ", n);
    }
}

#[test]
fn the_property_covers_parts_and_whole_entries() {
    // Guard against a generator that never produces oversize entries: the property above would
    // then prove nothing about parts.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = arb_json::entry_text("request_id", true, 9_000);
    let (mut parts, mut whole) = (0, 0);
    for _ in 0..300 {
        let text = strategy.new_tree(&mut runner).unwrap().current();
        let entry = Entry::parse(EntryKind::Request, &text).unwrap();
        match map_entry(&entry, &ctx()).map(|e| e.len()) {
            Ok(1) => whole += 1,
            Ok(_) => parts += 1,
            Err(_) => {}
        }
    }
    assert!(parts >= 10 && whole >= 100, "parts {parts}, whole {whole}");
}

/// Hand-written entries in the forms Kong (and anything in front of it) may send.
fn odd_entries() -> Vec<(&'static str, String)> {
    let huge = "\\u00e9x\\\"y\\n".repeat(40_000);
    vec![
        ("requests", r#"{"request_id":"ODD000000000000000000000000000A1","method":"POST","path":"/default/services","status":201,"request_timestamp":1750000000,"ttl":2591000,"x":2.50,"y":1E+2,"z":-0,"w":"\u00e9\/é"}"#.to_string()),
        ("requests", "{ \"request_id\" : \"ODD000000000000000000000000000B2\" ,\t\"method\":\"GET\", \"path\":\"/\", \"status\":200, \"request_timestamp\":1750000000 }".to_string()),
        ("requests", format!(r#"{{"request_id":"ODD000000000000000000000000000C3","method":"PATCH","path":"/default/plugins/1","payload":"{huge}","status":200,"request_timestamp":1750000001,"ttl":2591000}}"#)),
        ("objects", format!(r#"{{"id":"0dd00000-0000-4000-8000-0000000000d4","request_id":"ODD000000000000000000000000000C3","dao_name":"plugins","operation":"update","entity":"{huge}","request_timestamp":1750000001,"ttl":2591000}}"#)),
        ("objects", r#"{"id":"0dd00000-0000-4000-8000-0000000000e5","request_id":"r","dao_name":"consumers","operation":"create","entity":"{\"username\":\"\ud83d\ude00 \u0000\"}","request_timestamp":1750000002,"extra":{"nested":[null,{"a":[1,2,{"b":"c"}]}]}}"#.to_string()),
    ]
}

#[tokio::test]
async fn entries_shipped_by_the_binary_are_recovered_by_the_binary_byte_for_byte() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 60, true);
    let mut served: Vec<String> = requests.iter().chain(&objects).map(Value::to_string).collect();
    for (kind, text) in odd_entries() {
        kong.add_raw(kind, [text.clone()]);
        served.push(text);
    }
    // One batch is accepted and its answer lost: its events reach CloudTrail twice.
    ct.with(|s| s.faults.push_back(CallFault::AcceptThenLose));
    let state = tempfile::tempdir().unwrap();
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("XDG_STATE_HOME".into(), state.path().display().to_string());
    env.insert("KONG_PAGE_SIZE".into(), "25".into());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ct.with(|s| s.violations.is_empty()), "{:?}", ct.with(|s| s.violations.clone()));
    let accepted = ct.accepted();
    assert!(accepted.len() > served.len(), "parts and the lost answer add events");

    // The export: shuffled, in three shapes, with blank lines.
    let mut lines: Vec<String> = Vec::new();
    for (i, (_, data)) in accepted.iter().enumerate() {
        lines.push(match i % 3 {
            0 => data.clone(),
            1 => format!(r#"{{"eventID":"{i:032x}","eventData":{data}}}"#),
            _ => json!({"eventID": format!("{i:032x}"), "eventData": data}).to_string(),
        });
        if i % 17 == 0 {
            lines.push(String::new());
        }
    }
    fastrand::seed(7);
    fastrand::shuffle(&mut lines);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("export.ndjson");
    let output = dir.path().join("entries.ndjson");
    std::fs::write(&input, lines.join("\n")).unwrap();

    let out = run_bin(
        &["recover", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()],
        &env,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let recovered = std::fs::read_to_string(&output).unwrap();
    let mut got: Vec<&str> = recovered.lines().collect();
    let mut want: Vec<&str> = served.iter().map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got.len(), want.len(), "each entry once, duplicates skipped");
    assert!(got == want, "every entry byte for byte");
    assert!(out.stderr.contains("duplicates_skipped="), "{}", out.stderr);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&output).unwrap().permissions().mode() & 0o777, 0o600);

    // stdin and stdout work the same.
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["recover"]).stdin(std::fs::File::open(&input).unwrap());
    let piped = cmd.output().unwrap();
    assert!(piped.status.success());
    assert_eq!(String::from_utf8(piped.stdout).unwrap().lines().count(), served.len());
}

#[tokio::test]
async fn recover_names_each_problem_with_its_line_and_fails() {
    let text = format!(
        r#"{{"id":"o-split","dao_name":"plugins","operation":"update","request_timestamp":1750000000,"entity":"{}"}}"#,
        "x".repeat(60_000)
    );
    let entry = Entry::parse(EntryKind::Object, &text).unwrap();
    let events = map_entry(&entry, &ctx()).unwrap();
    assert!(events.len() >= 3);
    let whole = map_entry(
        &Entry::parse(EntryKind::Request, r#"{"request_id":"ok-1","request_timestamp":1750000000}"#).unwrap(),
        &ctx(),
    )
    .unwrap()
    .remove(0);
    let tampered = whole
        .event_data
        .replace("ok-1\",\"request_timestamp", "ok-1\" ,\"request_timestamp");
    let lines = [
        events[0].event_data.clone(),
        "this is not JSON".to_string(),
        events[2].event_data.clone(),
        tampered,
        whole.event_data.clone(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = run_bin(&["recover", "--input", input.to_str().unwrap()], &Default::default()).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.stdout, "{\"request_id\":\"ok-1\",\"request_timestamp\":1750000000}\n",
        "good entries still come out"
    );
    assert!(out.stderr.contains("line 2: not a kong-audit-shipper event"), "{}", out.stderr);
    assert!(
        out.stderr.contains("line 4: request ok-1: the entry does not match its SHA-256"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(&format!("object o-split: parts [2] of {} are missing", events.len())),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("problems=3"), "{}", out.stderr);
}
