//! Signs audit rows the way Kong does, for the fake Kong and the tests: the values of the fields a
//! row has when Kong signs it (in the log phase, before the database adds `request_timestamp`,
//! `ttl` and an object's `id`), in sorted key order, nil ones left out, joined with `|`, signed over
//! SHA-256 with the key `audit_log_signing_key` holds (RSA PKCS#1 v1.5, or ECDSA DER-encoded for an
//! EC key, as OpenSSL signs for `resty.openssl.pkey`); the signature in standard padded base64.
//!
//! Written from Kong's behaviour as a list of the fields Kong signs, apart from the shipper's rule
//! ("every field except those added later"), so that the tests check the one against the other.
#![allow(dead_code)]

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P521_SHA512_ASN1_SIGNING, EcdsaKeyPair, EcdsaSigningAlgorithm,
    KeyPair as _, RSA_PKCS1_SHA256,
};
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

/// The kinds of key `audit_log_signing_key` may hold that the tests sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KongKey {
    /// `openssl genrsa 2048`, as Kong's documentation has it.
    Rsa2048,
    /// `openssl ecparam -genkey -name prime256v1` (or `secp384r1`, `secp521r1`).
    EcP256,
    EcP384,
    EcP521,
}

enum Key {
    Rsa(KeyPair),
    /// The private key in PKCS#8, and the public key's SubjectPublicKeyInfo.
    Ec {
        pkcs8: Vec<u8>,
        spki: Vec<u8>,
    },
}

/// A Kong signing key (`audit_log_signing_key`), generated on the spot.
pub struct KongSigner {
    key: Key,
    kind: KongKey,
}

impl KongSigner {
    /// A fresh RSA-2048 key, as `openssl genrsa 2048` makes for Kong.
    pub fn generate() -> KongSigner {
        KongSigner::generate_key(KongKey::Rsa2048)
    }

    /// A fresh key of this kind.
    pub fn generate_key(kind: KongKey) -> KongSigner {
        let ec = |curve: &'static EcdsaSigningAlgorithm| {
            // The key pair's own digest is never used: signing goes through `ecdsa_sha256`.
            let pair = EcdsaKeyPair::generate(curve).expect("EC key generation");
            Key::Ec {
                pkcs8: pair.to_pkcs8v1().expect("PKCS#8").as_ref().to_vec(),
                spki: pair.public_key().as_der().expect("SPKI").as_ref().to_vec(),
            }
        };
        let key = match kind {
            KongKey::Rsa2048 => Key::Rsa(KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation")),
            KongKey::EcP256 => ec(&ECDSA_P256_SHA256_ASN1_SIGNING),
            KongKey::EcP384 => ec(&ECDSA_P384_SHA384_ASN1_SIGNING),
            KongKey::EcP521 => ec(&ECDSA_P521_SHA512_ASN1_SIGNING),
        };
        KongSigner { key, kind }
    }

    pub fn kind(&self) -> KongKey {
        self.kind
    }

    /// The public key's SubjectPublicKeyInfo DER.
    pub fn spki(&self) -> Vec<u8> {
        match &self.key {
            Key::Rsa(pair) => pair.public_key().as_der().expect("SPKI").as_ref().to_vec(),
            Key::Ec { spki, .. } => spki.clone(),
        }
    }

    /// The public key as `openssl pkey -pubout` writes it (SubjectPublicKeyInfo, `PUBLIC KEY`).
    pub fn public_key_pem(&self) -> String {
        pem("PUBLIC KEY", &self.spki())
    }

    /// The public key in PKCS#1 (`RSA PUBLIC KEY`): RSA keys only.
    pub fn rsa_public_key_pem(&self) -> String {
        match &self.key {
            Key::Rsa(pair) => pem("RSA PUBLIC KEY", pair.public_key().as_ref()),
            Key::Ec { .. } => panic!("an EC key has no PKCS#1 form"),
        }
    }

    /// The public key under the `EC PUBLIC KEY` label some tools write (the same SubjectPublicKeyInfo).
    pub fn ec_public_key_pem(&self) -> String {
        assert!(matches!(self.key, Key::Ec { .. }), "an RSA key is no EC PUBLIC KEY");
        pem("EC PUBLIC KEY", &self.spki())
    }

    /// `sha256:` and the hex SHA-256 of the SubjectPublicKeyInfo DER.
    pub fn fingerprint(&self) -> String {
        let hex: String = Sha256::digest(self.spki()).iter().map(|b| format!("{b:02x}")).collect();
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

    /// Base64 of the signature over `text`: RSA PKCS#1 v1.5, or ECDSA DER-encoded, over SHA-256.
    pub fn signature_over(&self, text: &str) -> String {
        let signature = match &self.key {
            Key::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), text.as_bytes(), &mut signature)
                    .expect("RSA signing");
                signature
            }
            Key::Ec { pkcs8, .. } => ecdsa_sha256(pkcs8, text.as_bytes()),
        };
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

/// ECDSA over the SHA-256 of `message`, DER-encoded: what OpenSSL's `EVP_DigestSign` gives for
/// Kong's `pkey:sign(text, "SHA256")` with an EC key, on any curve. aws-lc-rs's signing API pairs
/// P-384 with SHA-384 only (and P-521 with SHA-512), so this calls the C library it is built on.
fn ecdsa_sha256(pkcs8: &[u8], message: &[u8]) -> Vec<u8> {
    use aws_lc_sys as ffi;
    let mut signature = vec![0u8; 160]; // the DER of two 66-byte integers fits
    let mut len = signature.len();
    // SAFETY: every pointer passed is valid for the call (the buffers outlive it, `len` is the
    // buffer's size), and what the library allocates is freed once, on every path.
    let signed = unsafe {
        let mut cbs = std::mem::MaybeUninit::<ffi::CBS>::uninit();
        ffi::CBS_init(cbs.as_mut_ptr(), pkcs8.as_ptr(), pkcs8.len());
        let key = ffi::EVP_parse_private_key(cbs.as_mut_ptr());
        assert!(!key.is_null(), "the generated PKCS#8 key parses");
        let ctx = ffi::EVP_MD_CTX_new();
        assert!(!ctx.is_null(), "a digest context");
        let signed = ffi::EVP_DigestSignInit(ctx, std::ptr::null_mut(), ffi::EVP_sha256(), std::ptr::null_mut(), key) == 1
            && ffi::EVP_DigestSign(ctx, signature.as_mut_ptr(), &mut len, message.as_ptr(), message.len()) == 1;
        ffi::EVP_MD_CTX_free(ctx);
        ffi::EVP_PKEY_free(key);
        signed
    };
    assert!(signed, "ECDSA signing");
    signature.truncate(len);
    signature
}

pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}
