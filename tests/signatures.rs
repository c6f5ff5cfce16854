//! Kong's audit signatures, proven on rows signed here, as Kong signs them, with keys generated here.
//!
//! - Verdicts: rows altered after signing (a path, a payload byte, a status, an operation, an entity
//!   byte, a field filled in or removed) are `invalid` on both endpoints; fields Kong adds after
//!   signing (`ttl`, `request_timestamp`, an object's `id`) change nothing; two keys in rotation name
//!   the key that verified; nulls, unicode and Kong's JSON escapes verify; unsigned rows are
//!   `unsigned`; without a key, `unchecked`; a newer Kong that signs another field still verifies;
//!   any entry with any signature maps without a panic to an event CloudTrail accepts.
//! - EC keys (P-256, P-384, P-521: ECDSA over SHA-256, DER, as OpenSSL signs for Kong) verify their
//!   rows and catch tampering and rows of another key, alone or in one bundle with RSA keys through
//!   a rotation; any row signed with any key verifies under the mixed bundle and any change breaks
//!   it; an object row signed with its legacy `expire` verifies, and its `expire` is then covered.
//! - End to end, with the real binary: a run against a fake Kong that signs three rows in four ships
//!   every row with its verdict in eventData, counts the verdicts in the summary, logs each invalid
//!   row at error level with its key, and still exits 0; `verify` against Kong and against an export
//!   of shipped events (a tampered line included) exits 1 and names the row; `verify` over a trail
//!   signed with RSA then EC counts the rows of each key; a malformed key setting (an EC key off its
//!   curve or on another curve included) stops every command with exit 2, naming the setting; `check`
//!   names each key's type and fingerprint.

#[path = "support/arb_json.rs"]
mod arb_json;
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kong_audit_shipper::event::{MapContext, hex_sha256, map_entry_detailed};
use kong_audit_shipper::kong::{Entry, EntryKind};
use kong_audit_shipper::signature::canonical::signed_texts;
use kong_audit_shipper::signature::{PublicKey, Verdict, Verifier};
use kong_audit_shipper::sink::checksum;
use proptest::prelude::*;
use serde_json::{Value, json};
use support::fake_cloudtrail::validate;
use support::fake_kong::kong_signer::{KongKey, KongSigner, OBJECT_FIELDS, REQUEST_FIELDS};
use support::*;

fn ctx(verifier: Verifier) -> MapContext {
    MapContext {
        recipient_account_id: fake_cloudtrail::ACCOUNT.into(),
        record_ttl: 2_592_000,
        now: chrono::Utc::now().timestamp(),
        signatures: Arc::new(verifier),
    }
}

fn verifier(pems: &[String]) -> Verifier {
    Verifier::from_setting(&pems.concat()).expect("the test's keys load")
}

/// The `kongSignature` every event of the row carries (they must all agree), from the row's JSON text.
fn shipped_verdict(ctx: &MapContext, kind: EntryKind, text: &str) -> Value {
    let entry = Entry::parse(kind, text).unwrap();
    let mapped = map_entry_detailed(&entry, ctx).unwrap();
    let verdicts: Vec<Value> = mapped
        .events
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.event_data).unwrap()["additionalEventData"]["kongSignature"].clone())
        .collect();
    assert!(verdicts.iter().all(|v| *v == verdicts[0]), "parts disagree: {verdicts:?}");
    assert_eq!(verdicts[0], serde_json::to_value(&mapped.signature).unwrap());
    verdicts[0].clone()
}

fn request_row(id: &str) -> Value {
    json!({
        "client_ip": "10.1.2.3", "method": "POST", "path": "/default/services?tags=prod",
        "payload": "{\"name\":\"billing\",\"url\":\"http://billing.internal:8080\"}",
        "rbac_user_id": "9f3c3c1e-2a1b-4d8e-9c2f-7a0e1d2c3b4a", "rbac_user_name": "ops-bot",
        "removed_from_payload": null, "request_id": id, "request_source": null,
        "request_timestamp": 1_700_000_000, "signature": null, "status": 201, "ttl": 2_591_000,
        "workspace": "1065b6d6-219f-4002-b3e9-334fc3eff46c"
    })
}

fn object_row(id: &str) -> Value {
    json!({
        "id": id, "request_id": "OjOcUBvt6q6XJlX3dd6BSpy1uUkTyctC", "request_timestamp": 1_700_000_000,
        "entity_key": "8e1f6a7b-0a2c-4d3e-9f00-123456789abc", "dao_name": "services", "operation": "create",
        "entity": "{\"id\":\"8e1f6a7b-0a2c-4d3e-9f00-123456789abc\",\"name\":\"billing\",\"port\":8080}",
        "removed_from_entity": null, "rbac_user_id": "9f3c3c1e-2a1b-4d8e-9c2f-7a0e1d2c3b4a",
        "signature": null, "ttl": 2_591_000
    })
}

fn status(v: &Value) -> &str {
    v["status"].as_str().unwrap_or("none")
}

/// A change made to a row after Kong signed it.
type Alteration = Box<dyn Fn(&mut Value)>;

#[test]
fn rows_altered_after_signing_are_invalid_on_both_endpoints_and_fields_added_later_change_nothing() {
    let kong = KongSigner::generate();
    let ctx = ctx(verifier(&[kong.public_key_pem()]));
    let mut request = request_row("Rq-signed");
    kong.sign("requests", &mut request);
    let mut object = object_row("0b1c2d3e-0000-4000-8000-000000000001");
    kong.sign("objects", &mut object);

    let valid = json!({"status": "valid", "keyFingerprint": kong.fingerprint()});
    assert_eq!(shipped_verdict(&ctx, EntryKind::Request, &request.to_string()), valid);
    assert_eq!(shipped_verdict(&ctx, EntryKind::Object, &object.to_string()), valid);

    // What the database adds after Kong signed is not covered: a new read, a migration.
    let mut later = request.clone();
    later["ttl"] = json!(12);
    later["request_timestamp"] = json!(1);
    assert_eq!(shipped_verdict(&ctx, EntryKind::Request, &later.to_string()), valid);
    let mut renumbered = object.clone();
    renumbered["id"] = json!("ffffffff-0000-4000-8000-000000000009");
    renumbered["ttl"] = Value::Null;
    assert_eq!(shipped_verdict(&ctx, EntryKind::Object, &renumbered.to_string()), valid);

    let altered_requests: Vec<(&str, Alteration)> = vec![
        ("a path", Box::new(|r| r["path"] = json!("/default/services?tags=dev"))),
        (
            "a payload byte",
            Box::new(|r| {
                let p = r["payload"].as_str().unwrap().replacen("8080", "8081", 1);
                r["payload"] = json!(p);
            }),
        ),
        ("the status", Box::new(|r| r["status"] = json!(200))),
        ("the status as text", Box::new(|r| r["status"] = json!("201 "))),
        ("a null filled in", Box::new(|r| r["removed_from_payload"] = json!("password"))),
        ("a field removed", Box::new(|r| r["workspace"] = Value::Null)),
        ("the user", Box::new(|r| r["rbac_user_name"] = json!("alice"))),
    ];
    for (what, alter) in &altered_requests {
        let mut row = request.clone();
        alter(&mut row);
        let v = shipped_verdict(&ctx, EntryKind::Request, &row.to_string());
        assert_eq!(status(&v), "invalid", "{what}: {v}");
        assert!(v["reason"].as_str().unwrap().contains("altered after Kong signed it"), "{v}");
        assert!(v.get("keyFingerprint").is_none());
    }
    let altered_objects: Vec<(&str, Alteration)> = vec![
        ("the operation", Box::new(|o| o["operation"] = json!("delete"))),
        (
            "an entity byte",
            Box::new(|o| {
                let e = o["entity"].as_str().unwrap().replacen("8080", "9080", 1);
                o["entity"] = json!(e);
            }),
        ),
        ("the dao", Box::new(|o| o["dao_name"] = json!("routes"))),
        ("the request it belongs to", Box::new(|o| o["request_id"] = json!("another"))),
    ];
    for (what, alter) in &altered_objects {
        let mut row = object.clone();
        alter(&mut row);
        assert_eq!(
            status(&shipped_verdict(&ctx, EntryKind::Object, &row.to_string())),
            "invalid",
            "{what}"
        );
    }
    // A request row is not an object row: the same fields, another rule (the object's id is signed
    // when it is a request's field).
    let mut with_id = request.clone();
    with_id["id"] = json!("x");
    assert_eq!(status(&shipped_verdict(&ctx, EntryKind::Request, &with_id.to_string())), "invalid");
}

#[test]
fn two_keys_in_rotation_each_row_names_the_key_that_signed_it() {
    let (old, new) = (KongSigner::generate(), KongSigner::generate());
    // Both forms of PEM, in one file, as an operator keeps them during a rotation.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kong-audit-keys.pem");
    std::fs::write(
        &path,
        format!(
            "# current\n{}# before 2026-11-01\n{}",
            new.public_key_pem(),
            old.rsa_public_key_pem()
        ),
    )
    .unwrap();
    let both = ctx(Verifier::from_setting(path.to_str().unwrap()).unwrap());
    let only_new = ctx(verifier(&[new.public_key_pem()]));

    let (mut before, mut after) = (request_row("Rq-old-key"), request_row("Rq-new-key"));
    old.sign("requests", &mut before);
    new.sign("requests", &mut after);
    let (mut old_object, mut new_object) = (object_row("o-old"), object_row("o-new"));
    old.sign("objects", &mut old_object);
    new.sign("objects", &mut new_object);
    for (kind, row, signer) in [
        (EntryKind::Request, &before, &old),
        (EntryKind::Request, &after, &new),
        (EntryKind::Object, &old_object, &old),
        (EntryKind::Object, &new_object, &new),
    ] {
        let v = shipped_verdict(&both, kind, &row.to_string());
        assert_eq!(v, json!({"status": "valid", "keyFingerprint": signer.fingerprint()}));
    }
    assert_ne!(old.fingerprint(), new.fingerprint());
    // Once the old key is dropped from the setting, its rows no longer verify.
    assert_eq!(
        status(&shipped_verdict(&only_new, EntryKind::Request, &before.to_string())),
        "invalid"
    );
    assert_eq!(status(&shipped_verdict(&only_new, EntryKind::Request, &after.to_string())), "valid");
}

/// The EC keys Kong's `resty.openssl.pkey` signs with: ECDSA over SHA-256, whatever the curve.
const EC_KEYS: [KongKey; 3] = [KongKey::EcP256, KongKey::EcP384, KongKey::EcP521];

#[test]
fn ec_keys_sign_as_kong_does_and_tampered_rows_and_rows_of_another_key_are_invalid() {
    for kind in EC_KEYS {
        let kong = KongSigner::generate_key(kind);
        let ctx = ctx(verifier(&[kong.public_key_pem()]));
        let mut request = request_row("Rq-ec");
        kong.sign("requests", &mut request);
        let mut object = object_row("0b1c2d3e-0000-4000-8000-0000000000ec");
        kong.sign("objects", &mut object);
        // What OpenSSL gives Kong for an EC key: a DER SEQUENCE of two INTEGERs, not raw r||s.
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(request["signature"].as_str().unwrap())
            .unwrap();
        assert_eq!((der[0], der.len() < 140), (0x30, true), "{kind:?}: {der:02x?}");

        let valid = json!({"status": "valid", "keyFingerprint": kong.fingerprint()});
        assert_eq!(shipped_verdict(&ctx, EntryKind::Request, &request.to_string()), valid, "{kind:?}");
        assert_eq!(shipped_verdict(&ctx, EntryKind::Object, &object.to_string()), valid, "{kind:?}");
        let mut later = request.clone();
        later["ttl"] = json!(1);
        later["request_timestamp"] = json!(2);
        assert_eq!(shipped_verdict(&ctx, EntryKind::Request, &later.to_string()), valid, "{kind:?}");

        let tampered: [(EntryKind, Value); 4] = [
            (EntryKind::Request, {
                let mut r = request.clone();
                r["path"] = json!("/default/services?tags=dev");
                r
            }),
            (EntryKind::Request, {
                let mut r = request.clone();
                r["status"] = json!(200);
                r
            }),
            (EntryKind::Object, {
                let mut o = object.clone();
                o["operation"] = json!("delete");
                o
            }),
            (EntryKind::Object, {
                let mut o = object.clone();
                o["rbac_user_id"] = Value::Null;
                o
            }),
        ];
        for (entry_kind, row) in &tampered {
            let v = shipped_verdict(&ctx, *entry_kind, &row.to_string());
            assert_eq!(status(&v), "invalid", "{kind:?}: {v}");
            assert!(v["reason"].as_str().unwrap().contains("altered after Kong signed it"), "{v}");
        }

        // Rows of another key of the same curve, or of an RSA key, under this key alone.
        let other = KongSigner::generate_key(kind);
        let mut by_other = request_row("Rq-other-ec");
        other.sign("requests", &mut by_other);
        let mut by_rsa = request_row("Rq-rsa");
        KongSigner::generate().sign("requests", &mut by_rsa);
        for row in [&by_other, &by_rsa] {
            let v = shipped_verdict(&ctx, EntryKind::Request, &row.to_string());
            assert_eq!(status(&v), "invalid", "{kind:?}: {v}");
            assert!(v["reason"].as_str().unwrap().contains("under the configured key"), "{v}");
        }
    }
}

#[test]
fn one_bundle_mixes_rsa_and_ec_keys_through_a_rotation_and_names_the_key_of_each_row() {
    let (rsa, p256, p384) = (
        KongSigner::generate(),
        KongSigner::generate_key(KongKey::EcP256),
        KongSigner::generate_key(KongKey::EcP384),
    );
    // All three PEM forms in one file, as an operator keeps them from RSA to EC.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kong-audit-keys.pem");
    std::fs::write(
        &path,
        format!(
            "# current (P-384)\n{}# before (P-256)\n{}# first (RSA)\n{}",
            p384.public_key_pem(),
            p256.ec_public_key_pem(),
            rsa.rsa_public_key_pem()
        ),
    )
    .unwrap();
    let all = ctx(Verifier::from_setting(path.to_str().unwrap()).unwrap());
    let types: Vec<String> = all.signatures.keys().iter().map(|k| k.key_type().to_string()).collect();
    assert_eq!(types, ["EC P-384", "EC P-256", "RSA-2048"]);
    let ec_only = ctx(verifier(&[p384.public_key_pem(), p256.public_key_pem()]));
    for (i, signer) in [&rsa, &p256, &p384].into_iter().enumerate() {
        let mut request = request_row(&format!("Rq-rotation-{i}"));
        signer.sign("requests", &mut request);
        let mut object = object_row(&format!("o-rotation-{i}"));
        signer.sign("objects", &mut object);
        for (kind, row) in [(EntryKind::Request, &request), (EntryKind::Object, &object)] {
            let v = shipped_verdict(&all, kind, &row.to_string());
            assert_eq!(v, json!({"status": "valid", "keyFingerprint": signer.fingerprint()}), "{signer:?}");
            let expected = if signer.kind() == KongKey::Rsa2048 { "invalid" } else { "valid" };
            assert_eq!(status(&shipped_verdict(&ec_only, kind, &row.to_string())), expected, "{signer:?}");
        }
        let mut altered = request.clone();
        altered["method"] = json!("PUT");
        let v = shipped_verdict(&all, EntryKind::Request, &altered.to_string());
        assert!(v["reason"].as_str().unwrap().contains("any of the 3 configured keys"), "{v}");
    }
}

/// An object row as Kong Enterprise's first audit code wrote it (2018 to April 2019): the legacy
/// `expire` (milliseconds), no `request_timestamp`, no `ttl`.
fn legacy_object_row() -> Value {
    json!({
        "dao_name": "consumers",
        "entity": "{\"created_at\":1542131418000,\"id\":\"16787ed7-d805-434a-9cec-5e5a3e5c9e4f\",\"username\":\"bob\",\"type\":0}",
        "entity_key": "16787ed7-d805-434a-9cec-5e5a3e5c9e4f",
        "expire": 1_544_723_418_009_u64,
        "id": "7ebabee7-2b09-445d-bc1f-2092c4ddc4be",
        "operation": "create",
        "request_id": "59fpTWlpUtHJ0qnAWBzQRHRDv7i5DwK2",
        "signature": null
    })
}

#[test]
fn an_object_row_signed_with_its_legacy_expire_verifies_and_its_expire_is_then_covered() {
    let kong = KongSigner::generate();
    let key = &PublicKey::from_spki(&kong.spki()).unwrap();
    let ctx = ctx(verifier(&[kong.public_key_pem()]));
    let mut fields = OBJECT_FIELDS.to_vec();
    fields.push("expire");
    fields.sort_unstable();
    let mut row = legacy_object_row();
    kong.sign_fields(&fields, &mut row);
    let valid = json!({"status": "valid", "keyFingerprint": kong.fingerprint()});
    assert_eq!(shipped_verdict(&ctx, EntryKind::Object, &row.to_string()), valid);

    // The signature covers the text with expire, not the one a rule leaving expire out builds.
    use base64::Engine;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(row["signature"].as_str().unwrap())
        .unwrap();
    let texts = signed_texts(EntryKind::Object, row.as_object().unwrap()).unwrap();
    assert_eq!(
        texts[1],
        KongSigner::signed_text(OBJECT_FIELDS, &row),
        "the second text leaves expire out"
    );
    assert!(texts[0].contains("|1544723418009|"), "{}", texts[0]);
    assert!(key.verifies(texts[0].as_bytes(), &signature));
    assert!(!key.verifies(texts[1].as_bytes(), &signature));

    // Signed with expire, expire is covered: altered, the row is invalid.
    let mut altered = row.clone();
    altered["expire"] = json!(1_600_000_000_000_u64);
    assert_eq!(status(&shipped_verdict(&ctx, EntryKind::Object, &altered.to_string())), "invalid");
    // A row signed without expire (expire set after signing) verifies too, and so does today's row.
    let mut without = legacy_object_row();
    kong.sign("objects", &mut without);
    assert_eq!(shipped_verdict(&ctx, EntryKind::Object, &without.to_string()), valid);
    // A request row's expire keeps its rule: set at insert, never signed.
    let mut request = json!({
        "client_ip": "127.0.0.1", "expire": 1_544_723_418_013_u64, "method": "POST", "path": "/consumers",
        "payload": "{\"username\": \"bob\"}", "request_id": "59fpTWlpUtHJ0qnAWBzQRHRDv7i5DwK2",
        "request_timestamp": 1_542_131_418_014_u64, "status": 201, "workspace": "fd51ce6e-59c0-4b6b-b991-aa708a9ff4d2"
    });
    kong.sign("requests", &mut request);
    assert_eq!(shipped_verdict(&ctx, EntryKind::Request, &request.to_string()), valid);
}

#[test]
fn nulls_unicode_pipes_and_kongs_json_escapes_verify() {
    let kong = KongSigner::generate();
    let ctx = ctx(verifier(&[kong.rsa_public_key_pem()]));
    let mut row = json!({
        "client_ip": "2001:db8::7", "method": "PATCH",
        "path": "/équipe/consumers/名前?note=a|b",
        "payload": "{\"bio\":\"Grüße 👋 \\\"quoted\\\"\\nnew line\",\"tags\":[\"α\",\"β\"]}",
        "rbac_user_id": null, "rbac_user_name": "zoë", "removed_from_payload": null,
        "request_id": "Rq-unicode", "request_source": "kong-manager", "request_timestamp": 1_700_000_000,
        "signature": null, "status": 200, "ttl": 100, "workspace": null
    });
    kong.sign("requests", &mut row);
    let serde_text = row.to_string();
    assert_eq!(status(&shipped_verdict(&ctx, EntryKind::Request, &serde_text)), "valid");
    // Kong's encoder writes `/` as `\/` and may escape non-ASCII: the same row, other bytes.
    let escaped: String = serde_text
        .replace('/', "\\/")
        .chars()
        .map(|c| {
            if (c as u32) > 0x7f && (c as u32) < 0xffff {
                format!("\\u{:04x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect();
    assert_ne!(escaped, serde_text);
    assert_eq!(status(&shipped_verdict(&ctx, EntryKind::Request, &escaped)), "valid");
}

#[test]
fn unsigned_rows_are_unsigned_and_signed_rows_without_a_key_are_unchecked() {
    let kong = KongSigner::generate();
    let with_key = ctx(verifier(&[kong.public_key_pem()]));
    let without_key = ctx(Verifier::default());
    let unsigned = request_row("Rq-unsigned");
    let mut no_field = object_row("o-no-signature-field");
    no_field.as_object_mut().unwrap().remove("signature");
    let mut signed = request_row("Rq-signed");
    kong.sign("requests", &mut signed);
    for c in [&with_key, &without_key] {
        assert_eq!(
            shipped_verdict(c, EntryKind::Request, &unsigned.to_string()),
            json!({"status": "unsigned"})
        );
        assert_eq!(
            shipped_verdict(c, EntryKind::Object, &no_field.to_string()),
            json!({"status": "unsigned"})
        );
    }
    assert_eq!(
        shipped_verdict(&without_key, EntryKind::Request, &signed.to_string()),
        json!({"status": "unchecked"})
    );
}

#[test]
fn a_newer_kong_that_signs_another_field_still_verifies() {
    let kong = KongSigner::generate();
    let ctx = ctx(verifier(&[kong.public_key_pem()]));
    let mut row = request_row("Rq-newer-kong");
    row["client_cert_subject"] = json!("CN=ops");
    row["zz_attempt"] = json!(2);
    let mut fields = REQUEST_FIELDS.to_vec();
    fields.extend(["client_cert_subject", "zz_attempt"]);
    fields.sort_unstable();
    kong.sign_fields(&fields, &mut row);
    assert_eq!(status(&shipped_verdict(&ctx, EntryKind::Request, &row.to_string())), "valid");
}

#[test]
fn every_part_of_an_entry_too_large_for_one_event_carries_the_verdict() {
    let kong = KongSigner::generate();
    let ctx = ctx(verifier(&[kong.public_key_pem()]));
    let mut row = request_row("Rq-big");
    row["payload"] = json!(format!("{{\"certificate\":\"{}\"}}", "A".repeat(90_000)));
    kong.sign("requests", &mut row);
    let entry = Entry::parse(EntryKind::Request, &row.to_string()).unwrap();
    let mapped = map_entry_detailed(&entry, &ctx).unwrap();
    assert!(mapped.events.len() > 3, "shipped in parts");
    assert_eq!(status(&shipped_verdict(&ctx, EntryKind::Request, &row.to_string())), "valid");
}

#[test]
fn the_lambdas_answer_counts_the_verdicts() {
    let summary = kong_audit_shipper::summary::Summary {
        read: 4,
        shipped: 4,
        signatures_valid: 3,
        signatures_invalid: 1,
        ..Default::default()
    };
    let answer = serde_json::to_value(kong_audit_shipper::lambda::Response {
        status: summary.status(),
        summary,
    })
    .unwrap();
    assert_eq!(answer["status"], "ok", "invalid signatures do not fail a run");
    assert_eq!(
        (answer["signatures_valid"].as_u64(), answer["signatures_invalid"].as_u64()),
        (Some(3), Some(1))
    );
}

/// A JSON value for `signature`: base64 of any bytes, any text, or not text at all.
fn any_signature() -> impl Strategy<Value = String> {
    use base64::Engine;
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600).prop_map(|b| json!(base64::engine::general_purpose::STANDARD.encode(b)).to_string()),
        proptest::collection::vec(any::<u8>(), 256..=256)
            .prop_map(|b| json!(base64::engine::general_purpose::STANDARD.encode(b)).to_string()),
        any::<String>().prop_map(|s| json!(s).to_string()),
        Just("null".to_string()),
        Just("12".to_string()),
        Just("[\"c2ln\"]".to_string()),
        Just("{\"sig\":1}".to_string()),
        ecdsa_shaped_signature(),
    ]
}

/// A DER `SEQUENCE { INTEGER r, INTEGER s }` of random integers of a curve's size: shaped as an
/// ECDSA signature, so that verification goes past the parsing.
fn ecdsa_shaped_signature() -> impl Strategy<Value = String> {
    use base64::Engine;
    (prop_oneof![Just(32usize), Just(48), Just(66)], any::<[u8; 66]>(), any::<[u8; 66]>()).prop_map(|(n, r, s)| {
        let integer = |bytes: &[u8]| {
            let mut v = vec![0x02, bytes.len() as u8 + 1, 0x00];
            v.extend_from_slice(bytes);
            v
        };
        let body = [integer(&r[..n]), integer(&s[..n])].concat();
        let mut der = if body.len() < 128 {
            vec![0x30, body.len() as u8]
        } else {
            vec![0x30, 0x81, body.len() as u8]
        };
        der.extend(body);
        json!(base64::engine::general_purpose::STANDARD.encode(der)).to_string()
    })
}

/// One Kong signing key of each kind, generated once for the whole run.
fn property_signers() -> &'static [KongSigner; 4] {
    static SIGNERS: std::sync::OnceLock<[KongSigner; 4]> = std::sync::OnceLock::new();
    SIGNERS.get_or_init(|| [KongKey::Rsa2048, KongKey::EcP256, KongKey::EcP384, KongKey::EcP521].map(KongSigner::generate_key))
}

/// The keys every property case verifies with: an RSA key and an EC key on each curve.
fn property_verifier() -> Arc<Verifier> {
    static VERIFIER: std::sync::OnceLock<Arc<Verifier>> = std::sync::OnceLock::new();
    VERIFIER
        .get_or_init(|| {
            let pems: Vec<String> = property_signers().iter().map(KongSigner::public_key_pem).collect();
            Arc::new(verifier(&pems))
        })
        .clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_entry_with_any_signature_maps_to_an_accepted_event_with_a_reasoned_verdict(
        (kind, text, signature) in prop_oneof![Just(EntryKind::Request), Just(EntryKind::Object)]
            .prop_flat_map(|k| (Just(k), arb_json::hostile_entry_text(k.key_field(), 3_000), any_signature())),
    ) {
        // The signature goes first into objects; anything else stays as it is.
        let text = match text.find('{').filter(|_| text.trim_start().starts_with('{')) {
            Some(at) => {
                let rest = text[at + 1..].trim_start();
                let comma = if rest.starts_with('}') { "" } else { "," };
                format!("{}{{\"signature\":{signature}{comma}{}", &text[..at], &text[at + 1..])
            }
            None => text,
        };
        let Ok(entry) = Entry::parse(kind, &text) else { return Ok(()) };
        let ctx = MapContext { signatures: property_verifier(), ..ctx(Verifier::default()) };
        let verdict = ctx.signatures.check(&entry);
        prop_assert!(!matches!(verdict, Verdict::Valid { .. } | Verdict::Unchecked), "{verdict:?}");
        if let Verdict::Invalid { reason } = &verdict {
            prop_assert!(!reason.is_empty() && reason.len() < 400, "{reason}");
        }
        if let Ok(mapped) = map_entry_detailed(&entry, &ctx) {
            prop_assert_eq!(&mapped.signature, &verdict);
            for e in &mapped.events {
                if let Some((code, why)) = validate(&e.id, &e.event_data, Some(&checksum(&e.event_data))) {
                    return Err(TestCaseError::fail(format!("{code}: {why} (event {})", e.id)));
                }
                let data: Value = serde_json::from_str(&e.event_data).unwrap();
                prop_assert_eq!(data["additionalEventData"]["kongSignature"]["status"].as_str(), Some(verdict.status()));
            }
        }
    }
}

/// The name of a field Kong may sign (`request_id` aside, which every row gets).
fn signed_name() -> impl Strategy<Value = String> {
    "[a-z_]{1,12}".prop_filter("a field Kong adds after signing", |n| {
        !matches!(
            n.as_str(),
            "signature" | "ttl" | "request_timestamp" | "expire" | "id" | "request_id"
        )
    })
}

/// A value Kong may sign: text, or an integer Lua writes as plain digits.
fn signed_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => any::<String>().prop_map(Value::from),
        1 => (-99_999_999_999_999i64..=99_999_999_999_999).prop_map(Value::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_row_kong_signs_with_any_key_verifies_under_the_mixed_bundle_and_any_change_breaks_it(
        kind in prop_oneof![Just(EntryKind::Request), Just(EntryKind::Object)],
        signer in 0usize..4,
        fields in proptest::collection::btree_map(signed_name(), signed_value(), 0..8),
        request_id in "[A-Za-z0-9]{1,32}",
        changed in any::<proptest::sample::Index>(),
    ) {
        let signer = &property_signers()[signer];
        let mut row: serde_json::Map<String, Value> = fields.into_iter().collect();
        row.insert("request_id".into(), json!(request_id));
        let mut row = Value::Object(row);
        // Every field, in byte order.
        let mut names: Vec<String> = row.as_object().unwrap().keys().cloned().collect();
        names.sort_unstable();
        let signed: Vec<&str> = names.iter().map(String::as_str).collect();
        signer.sign_fields(&signed, &mut row);
        let verifier = property_verifier();
        let verdict = verifier.check(&Entry::parse(kind, &row.to_string()).unwrap());
        prop_assert_eq!(verdict, Verdict::Valid { key_fingerprint: signer.fingerprint() });

        // Any one value changed after signing.
        let name = signed[changed.index(signed.len())].to_string();
        let value = &mut row[&name];
        *value = match value.take() {
            Value::String(s) => json!(format!("{s}x")),
            Value::Number(n) => json!(n.as_i64().unwrap() + 1),
            other => other,
        };
        let verdict = verifier.check(&Entry::parse(kind, &row.to_string()).unwrap());
        prop_assert_eq!(verdict.status(), "invalid", "{} changed", name);
    }
}

// ---- the real binary ----

/// What `signing_kong_fixture` loaded: the signer, the trail, and the rows altered after signing.
struct SignedTrail {
    signer: Arc<KongSigner>,
    requests: Vec<Value>,
    objects: Vec<Value>,
    altered: Vec<(&'static str, String)>,
}

/// A fake Kong whose rows are signed three in four, with two requests and one object altered after
/// signing (all three in the trail's first ten seconds).
fn signing_kong_fixture(kong: &FakeKong, n: usize) -> SignedTrail {
    let signer = kong.sign_rows(0.75);
    let (requests, objects) = load_trail(kong, n, true);
    let mut altered = Vec::new();
    let mut alter = |kind: &'static str, key: &str, change: &dyn Fn(&mut Value)| {
        let mut was_signed = false;
        assert!(kong.tamper(kind, key, |row| {
            was_signed = !row["signature"].is_null();
            change(row);
        }));
        if was_signed {
            altered.push((kind, key.to_string()));
        }
        was_signed
    };
    let mut paths = 0;
    let mut payloads = 0;
    for r in requests.iter().take(30) {
        let key = r["request_id"].as_str().unwrap();
        if paths == 0 {
            paths += usize::from(alter("requests", key, &|row| row["path"] = json!("/default/consumers")));
        } else if payloads == 0 && r["payload"].is_string() {
            payloads += usize::from(alter("requests", key, &|row| {
                let p = row["payload"].as_str().unwrap().replacen("true", "fals", 1);
                row["payload"] = json!(p);
            }));
        }
    }
    for o in objects.iter().take(20) {
        let other_operation = |row: &mut Value| {
            row["operation"] = json!(if row["operation"] == "delete" { "create" } else { "delete" });
        };
        if alter("objects", o["id"].as_str().unwrap(), &other_operation) {
            break;
        }
    }
    assert_eq!(altered.len(), 3, "two requests and one object altered: {altered:?}");
    SignedTrail {
        signer,
        requests,
        objects,
        altered,
    }
}

fn with_key(mut env: HashMap<String, String>, pem: &str) -> HashMap<String, String> {
    env.insert("KONG_AUDIT_SIGNING_PUBLIC_KEY".into(), pem.into());
    env
}

/// Only what `verify` needs: Kong and the key. No AWS, no Redis, no channel.
fn verify_env(kong: &FakeKong, pem: &str) -> (HashMap<String, String>, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let env = [
        ("KONG_ADMIN_API", kong.url()),
        ("KONG_AUDIT_SIGNING_PUBLIC_KEY", pem.to_string()),
        ("XDG_STATE_HOME", state.path().display().to_string()),
        ("RUST_LOG", "info".into()),
        ("NO_COLOR", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    (env, state)
}

#[tokio::test]
async fn a_run_ships_every_row_with_its_verdict_counts_them_and_still_exits_0() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let SignedTrail {
        signer,
        requests,
        objects,
        altered,
    } = signing_kong_fixture(&kong, 120);
    let ran = run_bin(&["run"], &with_key(env_for(&kong, &ct, Some(&redis)), &signer.public_key_pem())).await;
    assert_eq!(ran.code, 0, "invalid signatures do not change the exit status:\n{}", ran.stderr);
    let total = requests.len() + objects.len();
    assert_eq!(ran.count("shipped"), total as u64, "invalid rows are shipped too");

    let altered_keys: HashSet<&str> = altered.iter().map(|(_, k)| k.as_str()).collect();
    let mut seen = HashMap::<String, u64>::new();
    let accepted = ct.accepted();
    assert_eq!(accepted.len(), total);
    for (_, data) in &accepted {
        let d: Value = serde_json::from_str(data).unwrap();
        let extra = &d["additionalEventData"];
        let entry = &extra["kongAuditEntry"];
        let uid = d["UID"].as_str().unwrap();
        let expected = if entry["signature"].is_null() {
            json!({"status": "unsigned"})
        } else if altered_keys.contains(uid) {
            extra["kongSignature"].clone()
        } else {
            json!({"status": "valid", "keyFingerprint": signer.fingerprint()})
        };
        assert_eq!(extra["kongSignature"], expected, "{uid}");
        *seen.entry(status(&extra["kongSignature"]).to_string()).or_default() += 1;
        if altered_keys.contains(uid) {
            assert_eq!(status(&extra["kongSignature"]), "invalid", "{uid}");
        }
    }
    assert_eq!(seen["invalid"], 3);
    assert!(
        seen["unsigned"] > total as u64 / 5 && seen["unsigned"] < total as u64 / 3,
        "a quarter unsigned: {seen:?}"
    );
    assert_eq!(ran.count("signatures_valid"), seen["valid"]);
    assert_eq!(ran.count("signatures_invalid"), 3);
    for (kind, key) in &altered {
        let line = ran
            .stderr
            .lines()
            .find(|l| l.contains("ERROR") && l.contains("Kong's signature does not verify") && l.contains(key.as_str()))
            .unwrap_or_else(|| panic!("no error line for {kind} {key}:\n{}", ran.stderr));
        let field = if *kind == "requests" { "request_id" } else { "id" };
        assert!(line.contains(&format!("key_field=\"{field}\"")), "{line}");
    }
    assert!(
        ran.stderr.contains(&signer.fingerprint()),
        "the start names the key it verifies with"
    );

    // The same trail without a key, to another destination: nothing is checked, nothing is
    // counted, everything ships.
    redis.cli(&["FLUSHALL"]);
    let other = FakeCloudTrail::start().await;
    let ran = run_bin(&["run"], &env_for(&kong, &other, Some(&redis))).await;
    assert_eq!((ran.code, ran.count("shipped")), (0, total as u64), "{}", ran.stderr);
    assert_eq!((ran.count("signatures_valid"), ran.count("signatures_invalid")), (0, 0));
    let second: Vec<Value> = other.accepted().iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    assert!(
        second
            .iter()
            .all(|d| matches!(status(&d["additionalEventData"]["kongSignature"]), "unchecked" | "unsigned"))
    );
}

#[tokio::test]
async fn verify_reads_kong_names_each_invalid_row_and_exits_1_and_0_when_the_window_has_none() {
    let kong = FakeKong::start("3.8.1.0").await;
    let SignedTrail {
        signer,
        requests,
        objects,
        altered,
    } = signing_kong_fixture(&kong, 150);
    let (env, state) = verify_env(&kong, &signer.public_key_pem());
    let ran = run_bin(&["verify"], &env).await;
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let invalid: Vec<&str> = ran.stdout.lines().filter(|l| l.starts_with("invalid ")).collect();
    assert_eq!(invalid.len(), 3, "{}", ran.stdout);
    for (kind, key) in &altered {
        let field = if *kind == "requests" { "request request_id" } else { "object id" };
        assert!(
            invalid.iter().any(|l| l.starts_with(&format!("invalid {field}={key}: "))),
            "{kind} {key} not named:\n{}",
            ran.stdout
        );
    }
    let total = (requests.len() + objects.len()) as u64;
    let totals = ran.stdout.lines().last().unwrap();
    assert!(totals.starts_with(&format!("verify rows={total} valid=")), "{totals}");
    assert!(totals.contains(" invalid=3 "), "{totals}");
    assert!(
        ran.stdout.contains(&format!("valid key={} rows=", signer.fingerprint())),
        "{}",
        ran.stdout
    );
    assert!(!ran.stdout.contains("unsigned request"), "unsigned rows are counted, not listed");
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0, "no store, no dead-letter file");

    // After the altered rows' time: nothing invalid in the window.
    let t0 = requests[0]["request_timestamp"].as_i64().unwrap();
    let ran = run_bin(&["verify", "--since", &(t0 + 20).to_string()], &env).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.lines().last().unwrap().contains(" invalid=0 "), "{}", ran.stdout);
    // Up to then: the three again, and with --require-signed the unsigned rows fail too.
    let ran = run_bin(&["verify", "--until", &(t0 + 10).to_string(), "--require-signed"], &env).await;
    assert_eq!(ran.code, 1);
    assert_eq!(
        ran.stdout.lines().filter(|l| l.starts_with("invalid ")).count(),
        3,
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.lines().any(|l| l.starts_with("unsigned request request_id=")),
        "{}",
        ran.stdout
    );
    let clean_but_unsigned = run_bin(&["verify", "--since", &(t0 + 20).to_string(), "--require-signed"], &env).await;
    assert_eq!(clean_but_unsigned.code, 1, "{}", clean_but_unsigned.stdout);

    // The wrong key: every signed row is invalid.
    let (env, _state) = verify_env(&kong, &KongSigner::generate().public_key_pem());
    let ran = run_bin(&["verify", "--since", &(t0 + 20).to_string()], &env).await;
    assert_eq!(ran.code, 1);
    assert!(ran.stdout.lines().last().unwrap().contains(" valid=0 "), "{}", ran.stdout);
}

#[tokio::test]
async fn verify_reads_a_trail_signed_with_rsa_then_with_an_ec_key_and_counts_the_rows_of_each() {
    let kong = FakeKong::start("3.8.1.0").await;
    let (rsa, ec) = (
        Arc::new(KongSigner::generate()),
        Arc::new(KongSigner::generate_key(KongKey::EcP384)),
    );
    let start = chrono::Utc::now().timestamp() - 86_400;
    let (requests, objects) = fake_kong::sample_trail(60, start, true);
    let (r, o) = (requests.len() / 2, objects.len() / 2);
    // Kong's signing key switched from RSA to EC half-way through the trail.
    kong.sign_rows_with(rsa.clone(), 1.0);
    kong.add("requests", &requests[..r]);
    kong.add("objects", &objects[..o]);
    kong.sign_rows_with(ec.clone(), 1.0);
    kong.add("requests", &requests[r..]);
    kong.add("objects", &objects[o..]);
    let total = requests.len() + objects.len();
    let by_rsa = r + o;

    let (env, _state) = verify_env(&kong, &format!("{}{}", ec.ec_public_key_pem(), rsa.public_key_pem()));
    let ran = run_bin(&["verify"], &env).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    for (signer, rows) in [(&rsa, by_rsa), (&ec, total - by_rsa)] {
        let line = format!("valid key={} rows={rows}", signer.fingerprint());
        assert!(ran.stdout.lines().any(|l| l == line), "{line} not in:\n{}", ran.stdout);
    }
    assert_eq!(
        ran.stdout.lines().last().unwrap(),
        format!("verify rows={total} valid={total} invalid=0 unsigned=0 problems=0")
    );

    // The RSA key dropped too early: its rows are invalid, each named.
    let (env, _state) = verify_env(&kong, &ec.public_key_pem());
    let ran = run_bin(&["verify"], &env).await;
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    assert_eq!(
        ran.stdout.lines().filter(|l| l.starts_with("invalid ")).count(),
        by_rsa,
        "{}",
        ran.stdout
    );
}

#[tokio::test]
async fn verify_input_rechecks_an_export_of_shipped_events_and_names_a_tampered_line() {
    let kong = FakeKong::start("3.8.1.0").await;
    let signer = kong.sign_rows(1.0);
    let (requests, objects) = load_trail(&kong, 30, true);
    let mut big = request_row("Rq-big-certificate");
    big["request_timestamp"] = requests[5]["request_timestamp"].clone();
    big["payload"] = json!(format!("{{\"cert\":\"{}\"}}", "Q".repeat(80_000)));
    kong.add("requests", &[big]);
    let total = requests.len() + objects.len() + 1;

    // The events exactly as they would be shipped, from a dry run (no AWS needed).
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("events.ndjson");
    let (env, _state) = verify_env(&kong, &signer.public_key_pem());
    let ran = run_bin(&["backfill", "--dry-run", "--output", export.to_str().unwrap()], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.count("signatures_valid"), total as u64);
    let lines: Vec<String> = std::fs::read_to_string(&export).unwrap().lines().map(str::to_string).collect();
    assert!(lines.len() > total, "the big entry is shipped in parts");

    let check = async |lines: &[String]| {
        std::fs::write(&export, lines.join("\n") + "\n").unwrap();
        run_bin(&["verify", "--input", export.to_str().unwrap()], &env).await
    };
    let ran = check(&lines).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(
        ran.stdout.lines().last().unwrap(),
        format!("verify rows={total} valid={total} invalid=0 unsigned=0 problems=0")
    );

    // As CloudTrail Lake query results give them: eventData as a string member.
    let wrapped: Vec<String> = lines.iter().map(|l| json!({"eventID": "e", "eventData": l}).to_string()).collect();
    assert_eq!(check(&wrapped).await.code, 0);

    // One line altered, with its SHA-256 brought in line: only the signature can tell.
    let victim = lines
        .iter()
        .position(|l| l.contains("\"kongEntryKind\":\"request\"") && l.contains("\"kongAuditEntry\":"))
        .unwrap();
    let mut event: Value = serde_json::from_str(&lines[victim]).unwrap();
    let uid = event["UID"].as_str().unwrap().to_string();
    event["additionalEventData"]["kongAuditEntry"]["path"] = json!("/default/plugins");
    let entry_text = event["additionalEventData"]["kongAuditEntry"].to_string();
    event["additionalEventData"]["kongAuditEntrySha256"] = json!(hex_sha256(entry_text.as_bytes()));
    let mut tampered = lines.clone();
    tampered[victim] = event.to_string();
    let ran = check(&tampered).await;
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    assert!(
        ran.stdout
            .lines()
            .any(|l| l.starts_with(&format!("invalid request request_id={uid}: the signature does not match"))),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.lines().last().unwrap().contains(" invalid=1 "), "{}", ran.stdout);

    // Altered without fixing the SHA-256: named by its line.
    let mut careless = lines.clone();
    let entry_at = lines[victim].find("\"kongAuditEntry\":").unwrap();
    let (head, entry) = lines[victim].split_at(entry_at);
    careless[victim] = format!("{head}{}", entry.replacen("\"method\":\"", "\"method\":\"X", 1));
    assert_ne!(careless[victim], lines[victim]);
    let ran = check(&careless).await;
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    assert!(
        ran.stdout.contains(&format!(
            "problem line {}: request {uid}: the entry does not match its SHA-256",
            victim + 1
        )),
        "{}",
        ran.stdout
    );
}

#[tokio::test]
async fn a_malformed_key_setting_stops_every_command_with_exit_2_naming_the_setting() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let secret_looking =
        "-----BEGIN PRIVATE KEY-----\nTUlJRXZRSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NCS2N3Z2dTakFnRUFBb0lCQVFD\n-----END PRIVATE KEY-----\n";
    // A P-384 key whose point is not on the curve: its last byte changed.
    let off_curve = {
        let mut spki = KongSigner::generate_key(KongKey::EcP384).spki();
        *spki.last_mut().unwrap() ^= 1;
        support::fake_kong::kong_signer::pem("PUBLIC KEY", &spki)
    };
    // A key on a curve Kong could use but the shipper does not check.
    let secp256k1 = {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::{ECDSA_P256K1_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
        let pair = EcdsaKeyPair::generate(&ECDSA_P256K1_SHA256_ASN1_SIGNING).unwrap();
        support::fake_kong::kong_signer::pem("EC PUBLIC KEY", pair.public_key().as_der().unwrap().as_ref())
    };
    for (value, expected) in [
        (
            "-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----",
            "not valid base64",
        ),
        (
            "/etc/kong/no-such-audit-key.pem",
            "not a readable file '/etc/kong/no-such-audit-key.pem'",
        ),
        (secret_looking, "is a private key"),
        ("   ", "is set but empty"),
        (off_curve.as_str(), "the block at line 1: is not a usable EC P-384 public key"),
        (
            secp256k1.as_str(),
            "is an EC key on the curve 1.3.132.0.10: the shipper checks EC keys on P-256, P-384 and P-521",
        ),
    ] {
        for args in [&["run"][..], &["backfill", "--dry-run"], &["verify"], &["verify", "--input", "-"]] {
            let ran = run_bin(args, &with_key(env_for(&kong, &ct, None), value)).await;
            assert_eq!(ran.code, 2, "{args:?} {value:?}: {}", ran.stderr);
            assert!(ran.stderr.contains("KONG_AUDIT_SIGNING_PUBLIC_KEY"), "{args:?}: {}", ran.stderr);
            assert!(ran.stderr.contains(expected), "{args:?} {expected:?}: {}", ran.stderr);
            assert!(!ran.stderr.contains("TUlJRXZR"), "a private key is never echoed");
        }
    }
    assert_eq!(kong.audit_queries().len(), 0, "nothing was read");
    assert_eq!(ct.accepted().len(), 0, "nothing was shipped");
    let ran = run_bin(&["verify"], &env_for(&kong, &ct, None)).await;
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr.contains("KONG_AUDIT_SIGNING_PUBLIC_KEY") && ran.stderr.contains("not set"),
        "{}",
        ran.stderr
    );
}

#[tokio::test]
async fn check_reads_the_keys_and_names_the_setting_when_they_are_malformed() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let signer = KongSigner::generate();
    let ran = run_bin(&["check"], &with_key(env_for(&kong, &ct, None), &signer.rsa_public_key_pem())).await;
    let line = ran
        .stdout
        .lines()
        .find(|l| l.contains("Kong audit signing keys"))
        .unwrap_or_else(|| panic!("{}", ran.stdout));
    assert!(
        line.starts_with('✓') && line.contains(&format!("RSA-2048 {}", signer.fingerprint())),
        "{line}"
    );
    // EC keys are reported as RSA ones are, beside them.
    let ec = KongSigner::generate_key(KongKey::EcP384);
    let bundle = format!("{}{}", signer.public_key_pem(), ec.ec_public_key_pem());
    let ran = run_bin(&["check"], &with_key(env_for(&kong, &ct, None), &bundle)).await;
    let line = ran.stdout.lines().find(|l| l.contains("Kong audit signing keys")).unwrap();
    assert!(
        line.starts_with('✓')
            && line.contains(&format!(
                "2 key(s): RSA-2048 {}, EC P-384 {}",
                signer.fingerprint(),
                ec.fingerprint()
            )),
        "{line}"
    );
    let ran = run_bin(&["check"], &with_key(env_for(&kong, &ct, None), "/no/such/kong.pub")).await;
    assert_eq!(ran.code, 1);
    assert!(
        ran.stdout
            .contains("✗ Kong audit signing keys: KONG_AUDIT_SIGNING_PUBLIC_KEY (--kong-audit-signing-public-key): not PEM text, and not a readable file '/no/such/kong.pub'"),
        "{}",
        ran.stdout
    );
    let without = run_bin(&["check"], &env_for(&kong, &ct, None)).await;
    assert!(
        !without.stdout.contains("signing keys"),
        "no line without the setting: {}",
        without.stdout
    );
}
