//! The verdict on one row: does Kong's signature cover it as it reads now, and under which key?

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::canonical::signed_texts;
use super::keys::{self, KeyError, PublicKey};
use crate::kong::{Entry, EntryKind};

/// What `additionalEventData.kongSignature` says about a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Verdict {
    /// One of the configured keys verifies the signature over the row as read.
    Valid {
        #[serde(rename = "keyFingerprint")]
        key_fingerprint: String,
    },
    /// The row carries a signature that no configured key verifies over the row as read: altered
    /// after Kong signed it, or signed by a key that is not configured.
    Invalid { reason: String },
    /// The row carries no signature (`audit_log_signing_key` was not set when Kong wrote it).
    Unsigned,
    /// The row carries a signature, but no key is configured to check it.
    Unchecked,
}

impl Verdict {
    pub fn status(&self) -> &'static str {
        match self {
            Verdict::Valid { .. } => "valid",
            Verdict::Invalid { .. } => "invalid",
            Verdict::Unsigned => "unsigned",
            Verdict::Unchecked => "unchecked",
        }
    }

    fn invalid(reason: impl Into<String>) -> Verdict {
        Verdict::Invalid { reason: reason.into() }
    }
}

/// Checks rows against Kong's public keys; without keys, every signed row is `unchecked`.
#[derive(Debug, Default)]
pub struct Verifier {
    keys: Vec<PublicKey>,
}

impl Verifier {
    pub fn new(keys: Vec<PublicKey>) -> Verifier {
        Verifier { keys }
    }

    /// From a setting's value: PEM text or the path of a PEM file, one or more keys.
    pub fn from_setting(value: &str) -> Result<Verifier, KeyError> {
        keys::load(value).map(Verifier::new)
    }

    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// The verdict on an entry as Kong returned it.
    pub fn check(&self, entry: &Entry) -> Verdict {
        self.check_fields(entry.kind, &entry.fields)
    }

    /// The verdict on a row's parsed fields.
    pub fn check_fields(&self, kind: EntryKind, fields: &serde_json::Map<String, Value>) -> Verdict {
        let encoded = match fields.get("signature") {
            None | Some(Value::Null) => return Verdict::Unsigned,
            Some(_) if self.keys.is_empty() => return Verdict::Unchecked,
            Some(Value::String(s)) => s,
            Some(other) => {
                let what = match other {
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::Array(_) => "an array",
                    _ => "an object",
                };
                return Verdict::invalid(format!("the signature is {what}, not base64 text"));
            }
        };
        let signature = match base64::engine::general_purpose::STANDARD.decode(encoded) {
            Ok(bytes) => bytes,
            Err(e) => return Verdict::invalid(format!("the signature is not standard padded base64 ({e})")),
        };
        let texts = match signed_texts(kind, fields) {
            Ok(texts) => texts,
            Err(unsignable) => return Verdict::invalid(unsignable.to_string()),
        };
        let verifies = |key: &&PublicKey| texts.iter().any(|text| key.verifies(text.as_bytes(), &signature));
        match self.keys.iter().find(verifies) {
            Some(key) => Verdict::Valid {
                key_fingerprint: key.fingerprint().to_string(),
            },
            None if self.keys.len() == 1 => Verdict::invalid(
                "the signature does not match the row under the configured key: the row was altered after Kong signed it, or Kong signed it with another key",
            ),
            None => Verdict::invalid(format!(
                "the signature does not match the row under any of the {} configured keys: the row was altered after Kong signed it, or Kong signed it with another key",
                self.keys.len()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::tests::{pairs, pkcs1_pem, spki_pem};
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeyPair;
    use aws_lc_rs::signature::RSA_PKCS1_SHA256;
    use serde_json::json;

    fn sign(pair: &KeyPair, kind: EntryKind, row: &mut Value) {
        let text = super::super::canonical::signed_text(kind, row.as_object().unwrap()).unwrap();
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), text.as_bytes(), &mut sig)
            .unwrap();
        row["signature"] = base64::engine::general_purpose::STANDARD.encode(sig).into();
    }

    fn entry(kind: EntryKind, row: &Value) -> Entry {
        Entry::parse(kind, &row.to_string()).unwrap()
    }

    fn verifier(pems: &[String]) -> Verifier {
        Verifier::from_setting(&pems.concat()).unwrap()
    }

    #[test]
    fn every_status_and_the_key_that_verified() {
        let [a, b] = pairs();
        let v = verifier(&[spki_pem(a), pkcs1_pem(b)]);
        let fingerprint = |i: usize| v.keys()[i].fingerprint().to_string();
        let mut by_a = json!({"request_id": "r1", "method": "POST", "path": "/services", "status": 201, "payload": null, "ttl": 5, "request_timestamp": 1});
        sign(a, EntryKind::Request, &mut by_a);
        let mut by_b = json!({"id": "o1", "request_id": "r1", "dao_name": "services", "operation": "create", "entity": "{}", "ttl": 5});
        sign(b, EntryKind::Object, &mut by_b);
        assert_eq!(
            v.check(&entry(EntryKind::Request, &by_a)),
            Verdict::Valid {
                key_fingerprint: fingerprint(0)
            }
        );
        assert_eq!(
            v.check(&entry(EntryKind::Object, &by_b)),
            Verdict::Valid {
                key_fingerprint: fingerprint(1)
            }
        );
        // ttl and request_timestamp change after signing without touching the verdict.
        by_a["ttl"] = json!(4);
        by_a["request_timestamp"] = json!(1_700_000_000);
        assert_eq!(v.check(&entry(EntryKind::Request, &by_a)).status(), "valid");

        let mut altered = by_a.clone();
        altered["status"] = json!(200);
        let Verdict::Invalid { reason } = v.check(&entry(EntryKind::Request, &altered)) else {
            panic!("altered row verified")
        };
        assert!(reason.contains("any of the 2 configured keys"), "{reason}");
        assert_eq!(
            verifier(&[spki_pem(b)]).check(&entry(EntryKind::Request, &by_a)).status(),
            "invalid"
        );

        let unsigned = json!({"request_id": "r2", "signature": null});
        assert_eq!(v.check(&entry(EntryKind::Request, &unsigned)), Verdict::Unsigned);
        assert_eq!(Verifier::default().check(&entry(EntryKind::Request, &unsigned)), Verdict::Unsigned);
        assert_eq!(Verifier::default().check(&entry(EntryKind::Request, &by_a)), Verdict::Unchecked);
    }

    #[test]
    fn an_ec_key_beside_an_rsa_key_verifies_its_rows_and_an_objects_expire_counts_either_way() {
        use super::super::keys::tests::{ec_pair, ec_spki, pem};
        use aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let ec = ec_pair(&ECDSA_P256_SHA256_ASN1_SIGNING);
        let v = verifier(&[spki_pem(&pairs()[0]), pem("PUBLIC KEY", &ec_spki(&ec))]);
        let ec_sign = |text: &str| {
            let sig = ec.sign(&SystemRandom::new(), text.as_bytes()).unwrap();
            base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
        };
        let mut row = json!({"id": "o1", "request_id": "r1", "dao_name": "consumers", "operation": "create",
            "entity": "{}", "expire": 1544723418009_u64});
        let object = |row: &Value| entry(EntryKind::Object, row);
        // Signed with expire in the text, as the first audit code is said to have signed objects.
        row["signature"] = ec_sign("consumers|{}|1544723418009|create|r1").into();
        let valid = Verdict::Valid {
            key_fingerprint: v.keys()[1].fingerprint().to_string(),
        };
        assert_eq!(v.check(&object(&row)), valid);
        let mut altered = row.clone();
        altered["expire"] = json!(1544723418010_u64);
        assert_eq!(
            v.check(&object(&altered)).status(),
            "invalid",
            "expire is covered when it was signed"
        );
        // Signed without it, as a reading of that code has it: valid too.
        row["signature"] = ec_sign("consumers|{}|create|r1").into();
        assert_eq!(v.check(&object(&row)), valid);
        row["operation"] = json!("delete");
        assert_eq!(v.check(&object(&row)).status(), "invalid");
    }

    #[test]
    fn odd_signatures_and_unsignable_rows_are_invalid_with_a_reason() {
        let [a, _] = pairs();
        let v = verifier(&[spki_pem(a)]);
        for (signature, expected) in [
            (json!(42), "the signature is a number"),
            (json!("not base64!"), "not standard padded base64"),
            (json!("c2lnbmF0dXJl"), "does not match the row under the configured key"),
        ] {
            let row = json!({"request_id": "r", "signature": signature});
            let Verdict::Invalid { reason } = v.check(&entry(EntryKind::Request, &row)) else {
                panic!("{signature} was not invalid")
            };
            assert!(reason.contains(expected), "{reason}");
        }
        let mut nested = json!({"request_id": "r", "path": "/x"});
        sign(a, EntryKind::Request, &mut nested);
        nested["extra"] = json!({"added": "later"});
        let Verdict::Invalid { reason } = v.check(&entry(EntryKind::Request, &nested)) else {
            panic!("nested value verified")
        };
        assert!(reason.contains("field 'extra' is an object"), "{reason}");
    }

    #[test]
    fn verdicts_serialize_as_the_event_field() {
        let valid = Verdict::Valid {
            key_fingerprint: "sha256:ab".into(),
        };
        assert_eq!(
            serde_json::to_string(&valid).unwrap(),
            r#"{"status":"valid","keyFingerprint":"sha256:ab"}"#
        );
        assert_eq!(serde_json::to_string(&Verdict::Unsigned).unwrap(), r#"{"status":"unsigned"}"#);
        assert_eq!(
            serde_json::to_string(&Verdict::invalid("x")).unwrap(),
            r#"{"status":"invalid","reason":"x"}"#
        );
        let back: Verdict = serde_json::from_str(r#"{"status":"unchecked"}"#).unwrap();
        assert_eq!(back, Verdict::Unchecked);
    }
}
