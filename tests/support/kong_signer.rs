//! Signs audit rows the way Kong does, for the fake Kong and the tests: RSA PKCS#1 v1.5 over SHA-256
//! of the values of the fields a row has when Kong signs it (in the log phase, before the database
//! adds `request_timestamp`, `ttl` and an object's `id`), in sorted key order, nil ones left out,
//! joined with `|`; the signature in standard padded base64.
//!
//! Written from Kong's behaviour as a list of the fields Kong signs, apart from the shipper's rule
//! ("every field except those added later"), so that the tests check the one against the other.
#![allow(dead_code)]

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The fields of a request row when Kong 3.x signs it, sorted.
pub const REQUEST_FIELDS: &[&str] = &[
    "client_ip",
    "method",
    "path",
    "payload",
    "rbac_user_id",
    "rbac_user_name",
    "removed_from_payload",
    "request_id",
    "request_source",
    "status",
    "workspace",
];

/// The fields of an object row when Kong 3.x signs it, sorted.
pub const OBJECT_FIELDS: &[&str] = &[
    "dao_name",
    "entity",
    "entity_key",
    "operation",
    "rbac_user_id",
    "removed_from_entity",
    "request_id",
];

/// The signed fields of an endpoint: `requests` or `objects`.
pub fn fields_of(kind: &str) -> &'static [&'static str] {
    if kind == "requests" { REQUEST_FIELDS } else { OBJECT_FIELDS }
}

/// A Kong signing key (`audit_log_signing_key`), generated on the spot.
pub struct KongSigner {
    pair: KeyPair,
}

impl KongSigner {
    /// A fresh RSA-2048 key, as `openssl genrsa 2048` makes for Kong.
    pub fn generate() -> KongSigner {
        KongSigner {
            pair: KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"),
        }
    }

    /// The public key as `openssl rsa -pubout` writes it (SubjectPublicKeyInfo, `PUBLIC KEY`).
    pub fn public_key_pem(&self) -> String {
        pem("PUBLIC KEY", self.pair.public_key().as_der().expect("SPKI").as_ref())
    }

    /// The public key in PKCS#1 (`RSA PUBLIC KEY`).
    pub fn rsa_public_key_pem(&self) -> String {
        pem("RSA PUBLIC KEY", self.pair.public_key().as_ref())
    }

    /// `sha256:` and the hex SHA-256 of the SubjectPublicKeyInfo DER.
    pub fn fingerprint(&self) -> String {
        let spki = self.pair.public_key().as_der().expect("SPKI");
        let hex: String = Sha256::digest(spki.as_ref()).iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// The text Kong signs: the values of `fields` (sorted names) the row has, nulls left out.
    pub fn signed_text(fields: &[&str], row: &Value) -> String {
        let mut values = Vec::new();
        for name in fields {
            match &row[*name] {
                Value::Null => {}
                Value::String(s) => values.push(s.clone()),
                Value::Number(n) => values.push(n.as_i64().expect("Kong's numbers are integers").to_string()),
                other => panic!("Kong cannot sign field {name} = {other}"),
            }
        }
        values.join("|")
    }

    /// Base64 of the RSA PKCS#1 v1.5 SHA-256 signature over `text`.
    pub fn signature_over(&self, text: &str) -> String {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), text.as_bytes(), &mut signature)
            .expect("RSA signing");
        base64::engine::general_purpose::STANDARD.encode(signature)
    }

    /// Signs a row of `requests` or `objects` as Kong does, in place.
    pub fn sign(&self, kind: &str, row: &mut Value) {
        self.sign_fields(fields_of(kind), row);
    }

    /// Signs over exactly these fields (a newer Kong may sign more).
    pub fn sign_fields(&self, fields: &[&str], row: &mut Value) {
        let text = Self::signed_text(fields, row);
        row["signature"] = Value::String(self.signature_over(&text));
    }
}

impl std::fmt::Debug for KongSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KongSigner({})", self.fingerprint())
    }
}

pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}
