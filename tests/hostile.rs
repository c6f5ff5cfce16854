//! I6, bad input never crashes a run and never vanishes.
//! - A property over hostile entries (not objects, no key, keys of any shape, known fields of the
//!   wrong type, numbers no float holds, lone surrogate escapes, nesting past parser limits, control
//!   characters, huge strings): the mapping never panics, and every entry either maps to events that
//!   pass CloudTrail's schema rules (the same checks the fake CloudTrail enforces) and give the entry
//!   back, or is refused with a reason (which the cycle dead-letters, whole).
//! - The real binary on a hand-made hostile page: nothing crashes, each entry is shipped or in the
//!   dead-letter file with its reason, and the summary adds up.

#[path = "support/arb_json.rs"]
mod arb_json;
mod support;

use std::collections::{HashMap, HashSet};

use kong_audit_shipper::dead_letter::file::from_json;
use kong_audit_shipper::event::{MapContext, map_entry, recover};
use kong_audit_shipper::kong::{Entry, EntryKind};
use kong_audit_shipper::sink::{MAX_BATCH_BYTES, checksum, wire_size};
use proptest::prelude::*;
use support::fake_cloudtrail::validate;
use support::*;

fn ctx() -> MapContext {
    MapContext {
        recipient_account_id: fake_cloudtrail::ACCOUNT.into(),
        record_ttl: 2_592_000,
        now: chrono::Utc::now().timestamp(),
        signatures: Default::default(),
    }
}

/// Everything that must hold for one entry, whatever it is.
fn check(kind: EntryKind, text: &str) -> Result<bool, TestCaseError> {
    let Ok(entry) = Entry::parse(kind, text) else {
        // Not JSON at all: Kong's page would not parse; not an entry.
        return Ok(false);
    };
    match map_entry(&entry, &ctx()) {
        Err(reason) => {
            prop_assert!(!reason.0.trim().is_empty(), "a refusal always says why");
            prop_assert!(entry.problem.is_some(), "refused, yet the entry had no problem: {}", reason);
            Ok(false)
        }
        Ok(events) => {
            prop_assert!(!events.is_empty());
            let mut ids = HashSet::new();
            for e in &events {
                prop_assert!(ids.insert(e.id.clone()), "id {} twice", e.id);
                if let Some((code, why)) = validate(&e.id, &e.event_data, Some(&checksum(&e.event_data))) {
                    return Err(TestCaseError::fail(format!("{code}: {why} (event {})", e.id)));
                }
                prop_assert!(wire_size(e) <= MAX_BATCH_BYTES, "an event must fit one call");
            }
            let back = recover(events.iter().map(|e| e.event_data.as_str()));
            prop_assert!(back.problems.is_empty(), "{:?}", back.problems);
            prop_assert!(
                back.entries.len() == 1 && back.entries[0].json == entry.raw.get(),
                "the entry comes back whole"
            );
            Ok(true)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_entry_is_mapped_schema_valid_or_refused_with_a_reason(
        (kind, text) in prop_oneof![Just(EntryKind::Request), Just(EntryKind::Object)]
            .prop_flat_map(|k| (Just(k), arb_json::hostile_entry_text(k.key_field(), 6_000))),
    ) {
        check(kind, &text)?;
    }

    #[test]
    fn keyed_entries_of_any_shape_are_always_shipped(
        (kind, text) in prop_oneof![Just(EntryKind::Request), Just(EntryKind::Object)]
            .prop_flat_map(|k| (Just(k), arb_json::entry_text(k.key_field(), true, 6_000))),
    ) {
        let entry = Entry::parse(kind, &text).unwrap();
        let shipped = check(kind, &text)?;
        // Only what a float cannot hold or a parser cannot nest may be refused.
        prop_assert!(shipped || entry.problem.is_some());
    }
}

fn hostile_page() -> Vec<(&'static str, String)> {
    let t = chrono::Utc::now().timestamp() - 3_600;
    let deep = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
    let big = "é\\u0001\\\"".repeat(40_000);
    let mut v: Vec<(&'static str, String)> = vec![
        ("requests", format!(r#"{{"request_id":"H-surrogate","method":"GET","path":"/","status":200,"request_timestamp":{t},"note":"\ud800"}}"#)),
        ("requests", format!(r#"{{"request_id":"H-bignum","method":"GET","path":"/","status":200,"request_timestamp":{t},"n":1e400}}"#)),
        ("requests", format!(r#"{{"request_id":"H-deep200","method":"GET","path":"/","request_timestamp":{t},"x":{}}}"#, deep(200))),
        ("requests", format!(r#"{{"request_id":"H-deep5000","request_timestamp":{t},"x":{}}}"#, deep(5_000))),
        ("requests", format!(r#"{{"request_id":"H-deep100","method":"GET","path":"/","request_timestamp":{t},"x":{}}}"#, deep(100))),
        ("requests", format!(r#"{{"request_id":"H-300k","method":"POST","path":"/default/certificates","payload":"{big}","status":201,"request_timestamp":{t}}}"#)),
        ("requests", format!(r#"{{"request_id":"H-300k-path","method":"GET","path":"/{}","status":404,"request_timestamp":{t}}}"#, "p".repeat(300_000))),
        ("requests", r#"["request_id","H-array"]"#.to_string()),
        ("requests", "null".to_string()),
        ("requests", "42".to_string()),
        ("requests", r#""just a string""#.to_string()),
        ("requests", format!(r#"{{"request_id":"a/b c?d#e","method":"DELETE","path":"/x","status":204,"request_timestamp":{t}}}"#)),
        ("requests", format!(r#"{{"request_id":"ключ-🔑","method":"GET","path":"/","status":200,"request_timestamp":{t}}}"#)),
        ("requests", format!(r#"{{"request_id":"{}","method":"GET","path":"/","request_timestamp":{t}}}"#, "L".repeat(2_000))),
        ("requests", format!(r#"{{"request_id":12345,"method":"GET","path":"/","request_timestamp":{t}}}"#)),
        ("requests", format!(r#"{{"request_id":"","method":"GET","path":"/","request_timestamp":{t}}}"#)),
        ("requests", format!(r#"{{"method":"GET","path":"/no-key","request_timestamp":{t}}}"#)),
        ("requests", format!(r#"{{"request_id":"H-ctl\u0001\u001f","s":"\u0000\b\f","method":"G\u0000ET","path":"/\u0007","request_timestamp":{t}}}"#)),
        ("requests", format!(r#"{{"request_id":"H-dup-a","request_id":"H-dup-b","method":"GET","path":"/","request_timestamp":{t}}}"#)),
        ("requests", r#"{"request_id":"H-time","request_timestamp":"yesterday","ttl":-5,"status":"teapot","method":7,"path":["x"]}"#.to_string()),
        ("requests", format!(r#"{{"request_id":"H-ip","client_ip":"<script>alert(1)</script>","rbac_user_id":"{}","method":"GET","path":"/","request_timestamp":{t}}}"#, "u".repeat(5_000))),
        ("requests", format!(r#"{{ "request_id" : "H-spaces" , "method" : "GET" , "path" : "/" , "request_timestamp" : {t} }}"#)),
        ("objects", format!(r#"{{"id":"0b000000-0000-4000-8000-00000000000a","dao_name":null,"operation":{{"x":1}},"entity":"{big}","request_timestamp":{t}}}"#)),
        ("objects", r#"{"id":{"nested":"id"},"dao_name":"x"}"#.to_string()),
        ("objects", "[]".to_string()),
        ("objects", r#"{"id":"0b000000-0000-4000-8000-00000000000b","entity":"{\"a\":1e400}","entity_key":"k","dao_name":"routes","operation":"create"}"#.to_string()),
    ];
    // Padding of ordinary entries, so hostile ones share pages and batches with good ones.
    for i in 0..30 {
        v.push((
            "requests",
            format!(r#"{{"request_id":"H-ok-{i:03}","method":"GET","path":"/","status":200,"request_timestamp":{t}}}"#),
        ));
    }
    v
}

#[tokio::test]
async fn a_hostile_page_never_crashes_the_run_and_every_entry_is_shipped_or_dead_lettered_with_its_reason() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let page = hostile_page();
    for (kind, text) in &page {
        kong.add_raw(kind, [text.clone()]);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dead-letters.ndjson");
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("DEAD_LETTER_FILE".into(), file.display().to_string());
    env.insert("KONG_PAGE_SIZE".into(), "7".into());
    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 1, "rejections are reported, the run completes: {}", ran.stderr);
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    let (read, shipped, already, rejected, failed) = (
        ran.count("read"),
        ran.count("shipped"),
        ran.count("already_shipped"),
        ran.count("rejected"),
        ran.count("failed"),
    );
    assert_eq!(read, page.len() as u64);
    assert_eq!(read, shipped + already + rejected + failed, "the summary adds up");
    assert_eq!((already, failed), (0, 0));

    // Shipped: the entry comes back from CloudTrail's events. Dead-lettered: the letter holds it.
    let data: Vec<String> = ct.accepted().into_iter().map(|(_, d)| d).collect();
    let back = recover(data.iter().map(String::as_str));
    assert!(back.problems.is_empty(), "{:?}", back.problems);
    let in_cloudtrail: HashSet<&str> = back.entries.iter().map(|e| e.json.as_str()).collect();
    let letters: Vec<_> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| from_json(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let dead: HashMap<&str, (&str, &str)> = letters
        .iter()
        .map(|l| (l.entry.get(), (l.code.as_str(), l.reason.as_str())))
        .collect();
    assert_eq!(letters.len() as u64, rejected);
    assert_eq!(back.entries.len() as u64, shipped);
    for (_, text) in &page {
        let shipped = in_cloudtrail.contains(text.as_str());
        let letter = dead.get(text.as_str());
        assert!(shipped ^ letter.is_some(), "exactly one home for {}", &text[..text.len().min(80)]);
        if let Some((code, reason)) = letter {
            assert!(
                !code.is_empty() && !reason.trim().is_empty(),
                "a reason for {}",
                &text[..text.len().min(80)]
            );
        }
    }
    // What must have shipped did: odd ids, huge values and paths, control characters, duplicate keys.
    for must in [
        "a/b c?d#e",
        "ключ-🔑",
        "H-300k\"",
        "H-300k-path",
        "H-ctl",
        "H-dup-b",
        "H-time",
        "H-ip",
        "H-spaces",
        "H-deep100",
    ] {
        assert!(
            page.iter().any(|(_, t)| t.contains(must) && in_cloudtrail.contains(t.as_str())),
            "{must} was shipped"
        );
    }
    assert!(ct.with(|s| s.violations.is_empty()), "{:?}", ct.with(|s| s.violations.clone()));
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("'request_id' is missing")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("not a JSON object")), "{reasons:?}");
}
