//! Kong's public keys: read from PEM, one or more per setting, each known by the SHA-256 of its
//! SubjectPublicKeyInfo DER (`openssl pkey -pubin -in public.pem -outform DER | sha256sum`).
//!
//! Kong signs with whatever key `audit_log_signing_key` holds: RSA (PKCS#1 v1.5) or, since Kong
//! signs through `resty.openssl.pkey`, EC (ECDSA, the signature DER-encoded). The digest is SHA-256
//! whatever the key. Keys come as SubjectPublicKeyInfo `PUBLIC KEY` blocks (what
//! `openssl pkey -in private.pem -pubout` writes, for RSA and EC alike), PKCS#1 `RSA PUBLIC KEY`
//! blocks, or `EC PUBLIC KEY` blocks: a label OpenSSL never writes but other tools do, around the
//! same SubjectPublicKeyInfo.
//!
//! The PEM reader is this small one: the PEM readers already in the tree skip `RSA PUBLIC KEY`
//! blocks without a word, and a key given but silently ignored would make every row `invalid`.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::PublicEncryptingKey;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA256_ASN1, ECDSA_P521_SHA256_ASN1, EcdsaVerificationAlgorithm, ParsedPublicKey,
    RSA_PKCS1_2048_8192_SHA256,
};
use base64::Engine;

/// What a key is, and so what its signatures are: RSA PKCS#1 v1.5 or ECDSA, over SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa { bits: usize },
    Ec(Curve),
}

/// The named curves an EC key may be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    fn named(oid: &[u8]) -> Option<Curve> {
        match oid {
            OID_P256 => Some(Curve::P256),
            OID_P384 => Some(Curve::P384),
            OID_P521 => Some(Curve::P521),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    pub fn bits(self) -> usize {
        match self {
            Curve::P256 => 256,
            Curve::P384 => 384,
            Curve::P521 => 521,
        }
    }

    /// ECDSA on this curve with a SHA-256 digest, the signature DER-encoded: what OpenSSL makes of
    /// Kong's `pkey:sign(text, "SHA256")` with an EC key, on any curve.
    fn algorithm(self) -> &'static EcdsaVerificationAlgorithm {
        match self {
            Curve::P256 => &ECDSA_P256_SHA256_ASN1,
            Curve::P384 => &ECDSA_P384_SHA256_ASN1,
            Curve::P521 => &ECDSA_P521_SHA256_ASN1,
        }
    }
}

/// `RSA-2048`, `EC P-256`.
impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyType::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyType::Ec(curve) => write!(f, "EC {}", curve.name()),
        }
    }
}

/// One public key Kong's signing key pairs with.
pub struct PublicKey {
    parsed: ParsedPublicKey,
    fingerprint: String,
    key_type: KeyType,
}

impl PublicKey {
    /// A key from a SubjectPublicKeyInfo's DER: RSA, or EC on P-256, P-384 or P-521.
    pub fn from_spki(der: &[u8]) -> Result<PublicKey, String> {
        match spki_algorithm(der) {
            Some(SpkiAlgorithm::Rsa) => PublicKey::from_rsa_der(der),
            Some(SpkiAlgorithm::Ec { curve }) => PublicKey::from_ec_spki(der, curve),
            Some(SpkiAlgorithm::Other(oid)) => Err(format!(
                "{}: the shipper checks signatures made with RSA and EC (P-256, P-384, P-521) keys",
                other_algorithm(oid)
            )),
            // A PKCS#1 key under the SubjectPublicKeyInfo label, as some tools write it.
            None if is_pkcs1_rsa(der) => PublicKey::from_rsa_der(der),
            None => Err("not a public key (neither a SubjectPublicKeyInfo nor a PKCS#1 RSA key)".into()),
        }
    }

    /// An RSA key from DER: SubjectPublicKeyInfo or PKCS#1 `RSAPublicKey`.
    pub fn from_rsa_der(der: &[u8]) -> Result<PublicKey, String> {
        let parsed = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der).map_err(|e| format!("not an RSA public key ({e})"))?;
        let spki = parsed
            .as_der()
            .map_err(|_| "not an RSA public key (cannot encode it as SubjectPublicKeyInfo)".to_string())?;
        let bits = match PublicEncryptingKey::from_der(spki.as_ref()) {
            Ok(key) => key.key_size_bits(),
            Err(e) if e.description_() == "TooSmall" => {
                return Err("an RSA key of fewer than 2048 bits: too weak to prove anything, and refused".into());
            }
            Err(e) if e.description_() == "TooLarge" => return Err("an RSA key of more than 8192 bits".into()),
            Err(e) => return Err(format!("not a usable RSA public key ({e})")),
        };
        Ok(PublicKey::with(parsed, spki.as_ref(), KeyType::Rsa { bits }))
    }

    fn from_ec_spki(der: &[u8], curve: Option<&[u8]>) -> Result<PublicKey, String> {
        let curve = match curve {
            None => {
                return Err("an EC key with explicit curve parameters instead of a named curve (openssl ec -pubin -in public.pem -param_enc named_curve -pubout writes the named form)".into());
            }
            Some(oid) => Curve::named(oid).ok_or_else(|| {
                format!(
                    "an EC key on the curve {}: the shipper checks EC keys on P-256, P-384 and P-521",
                    oid_text(oid)
                )
            })?,
        };
        let parsed =
            ParsedPublicKey::new(curve.algorithm(), der).map_err(|e| format!("not a usable EC {} public key ({e})", curve.name()))?;
        let spki = parsed
            .as_der()
            .map_err(|_| format!("not a usable EC {} public key (cannot encode it again)", curve.name()))?;
        Ok(PublicKey::with(parsed, spki.as_ref(), KeyType::Ec(curve)))
    }

    fn with(parsed: ParsedPublicKey, spki: &[u8], key_type: KeyType) -> PublicKey {
        let fingerprint = format!("sha256:{}", crate::event::hex_sha256(spki));
        PublicKey {
            parsed,
            fingerprint,
            key_type,
        }
    }

    /// `sha256:` and the hex SHA-256 of the key's SubjectPublicKeyInfo DER.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The RSA modulus, or the EC curve's size, in bits.
    pub fn bits(&self) -> usize {
        match self.key_type {
            KeyType::Rsa { bits } => bits,
            KeyType::Ec(curve) => curve.bits(),
        }
    }

    /// Kong's signature over `message` with this key's private half: RSA PKCS#1 v1.5, or ECDSA
    /// DER-encoded, over SHA-256.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.parsed.verify_sig(message, signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.key_type, self.fingerprint)
    }
}

// Object identifiers, as the contents of their DER encoding.
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]; // 1.2.840.113549.1.1.1
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]; // 1.2.840.10045.2.1
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]; // 1.2.840.10045.3.1.7
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22]; // 1.3.132.0.34
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23]; // 1.3.132.0.35

/// The algorithm a SubjectPublicKeyInfo names.
enum SpkiAlgorithm<'a> {
    Rsa,
    /// An EC key, with its named curve's OID (`None`: explicit curve parameters).
    Ec {
        curve: Option<&'a [u8]>,
    },
    Other(&'a [u8]),
}

/// What `SEQUENCE { SEQUENCE { OID algorithm, parameters }, BIT STRING key }` says; `None` when
/// the DER is not shaped so (a PKCS#1 key, or junk). Reading the algorithm first lets the error
/// for an unsupported key say what it is.
fn spki_algorithm(der: &[u8]) -> Option<SpkiAlgorithm<'_>> {
    const SEQUENCE: u8 = 0x30;
    const BIT_STRING: u8 = 0x03;
    const OID: u8 = 0x06;
    let (spki, after) = der_element(der, SEQUENCE)?;
    let (algorithm, rest) = der_element(spki, SEQUENCE)?;
    let (_, rest) = der_element(rest, BIT_STRING)?;
    if !after.is_empty() || !rest.is_empty() {
        return None;
    }
    let (oid, parameters) = der_element(algorithm, OID)?;
    Some(match oid {
        OID_RSA_ENCRYPTION => SpkiAlgorithm::Rsa,
        OID_EC_PUBLIC_KEY => SpkiAlgorithm::Ec {
            curve: der_element(parameters, OID).map(|(curve, _)| curve),
        },
        other => SpkiAlgorithm::Other(other),
    })
}

/// Whether the DER is shaped as PKCS#1's `SEQUENCE { INTEGER modulus, INTEGER exponent }`.
fn is_pkcs1_rsa(der: &[u8]) -> bool {
    const INTEGER: u8 = 0x02;
    let Some((key, after)) = der_element(der, 0x30) else {
        return false;
    };
    let rest = der_element(key, INTEGER).and_then(|(_, rest)| der_element(rest, INTEGER));
    after.is_empty() && rest.is_some_and(|(_, rest)| rest.is_empty())
}

/// The contents of the DER element at the start of `input` if it has this tag, and what follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if found != tag {
        return None;
    }
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |len, b| len << 8 | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// A key of another algorithm, named when it is a common one.
fn other_algorithm(oid: &[u8]) -> String {
    match oid {
        [0x2b, 0x65, 0x70] => "an Ed25519 key".into(),
        [0x2b, 0x65, 0x71] => "an Ed448 key".into(),
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a] => "an RSA-PSS key".into(),
        [0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01] => "a DSA key".into(),
        _ => format!("a key of the algorithm {}", oid_text(oid)),
    }
}

/// An OID in dotted form (`1.3.132.0.10`), from the contents of its DER encoding.
fn oid_text(oid: &[u8]) -> String {
    let mut arcs: Vec<String> = Vec::new();
    let mut value: u64 = 0;
    for &byte in oid.iter().take(64) {
        value = value.saturating_mul(128) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first.to_string());
                value -= first * 40;
            }
            arcs.push(value.to_string());
            value = 0;
        }
    }
    arcs.join(".")
}

/// Why the keys could not be read. The messages never quote key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not PEM text, and not a readable file '{path}': {problem}")]
    Unreadable { path: String, problem: String },
    #[error(
        "{source_name} holds no PEM public key: expected one or more -----BEGIN PUBLIC KEY----- (openssl pkey -in private.pem -pubout), -----BEGIN RSA PUBLIC KEY----- or -----BEGIN EC PUBLIC KEY----- blocks"
    )]
    NoKey { source_name: String },
    #[error("{source_name}, the block at line {line}: {problem}")]
    Block { source_name: String, line: usize, problem: String },
}

/// The keys of a setting's value: PEM text itself, or the path of a PEM file.
pub fn load(value: &str) -> Result<Vec<PublicKey>, KeyError> {
    let value = value.trim();
    if value.contains("-----BEGIN") {
        // An environment variable may carry the PEM on one line, with `\n` for its line breaks.
        let text = if value.contains('\n') {
            value.to_string()
        } else {
            value.replace("\\n", "\n")
        };
        return parse_pem(&text, "the PEM text");
    }
    let text = std::fs::read_to_string(value).map_err(|e| KeyError::Unreadable {
        path: value.to_string(),
        problem: e.to_string(),
    })?;
    parse_pem(&text, &format!("file '{value}'"))
}

/// Every public key in the PEM text, in order, each once.
pub fn parse_pem(text: &str, source_name: &str) -> Result<Vec<PublicKey>, KeyError> {
    let block_error = |line: usize, problem: String| KeyError::Block {
        source_name: source_name.to_string(),
        line,
        problem,
    };
    let mut keys: Vec<PublicKey> = Vec::new();
    let mut open: Option<(String, usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let number = n + 1;
        if let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) {
            if let Some((_, start, _)) = open {
                return Err(block_error(start, "has no END line before the next BEGIN".into()));
            }
            open = Some((label.to_string(), number, String::new()));
            continue;
        }
        let Some((label, start, body)) = open.as_mut() else {
            // Text around the blocks (comments, `openssl` output) is allowed.
            continue;
        };
        if let Some(end) = line.strip_prefix("-----END ").and_then(|l| l.strip_suffix("-----")) {
            if end != label {
                return Err(block_error(*start, format!("BEGIN {label} is closed by END {end}")));
            }
            let key = block_key(label, body).map_err(|p| block_error(*start, p))?;
            if let Some(key) = key.filter(|key| !keys.iter().any(|k| k.fingerprint == key.fingerprint)) {
                keys.push(key);
            }
            open = None;
        } else if line.contains(':') {
            return Err(block_error(
                *start,
                "has headers (an encrypted or non-standard PEM); give the plain public key".into(),
            ));
        } else {
            body.push_str(line);
        }
    }
    if let Some((_, start, _)) = open {
        return Err(block_error(start, "has no END line".into()));
    }
    if keys.is_empty() {
        return Err(KeyError::NoKey {
            source_name: source_name.to_string(),
        });
    }
    Ok(keys)
}

fn block_key(label: &str, body: &str) -> Result<Option<PublicKey>, String> {
    let read: fn(&[u8]) -> Result<PublicKey, String> = match label {
        "PUBLIC KEY" | "EC PUBLIC KEY" => PublicKey::from_spki,
        "RSA PUBLIC KEY" => PublicKey::from_rsa_der,
        // `openssl ecparam -genkey` writes the curve's name before the key: not key material.
        "EC PARAMETERS" => return Ok(None),
        l if l.contains("PRIVATE KEY") => {
            return Err(format!(
                "is a private key ({l}): give Kong's public key instead (openssl pkey -in private.pem -pubout), and keep the private key on Kong"
            ));
        }
        "CERTIFICATE" => {
            return Err("is a certificate: give the public key (openssl x509 -in cert.pem -pubkey -noout)".into());
        }
        other => return Err(format!("is a {other}, not a PUBLIC KEY, RSA PUBLIC KEY or EC PUBLIC KEY")),
    };
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("is not valid base64 ({e})"))?;
    read(&der).map(Some).map_err(|p| format!("is {p}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256K1_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P521_SHA512_ASN1_SIGNING,
        EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair as _,
    };
    use std::sync::OnceLock;

    pub fn pem(label: &str, der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }

    /// Two RSA-2048 key pairs, generated once for all unit tests.
    pub fn pairs() -> &'static [KeyPair; 2] {
        static PAIRS: OnceLock<[KeyPair; 2]> = OnceLock::new();
        PAIRS.get_or_init(|| {
            [
                KeyPair::generate(KeySize::Rsa2048).unwrap(),
                KeyPair::generate(KeySize::Rsa2048).unwrap(),
            ]
        })
    }

    pub fn spki_pem(pair: &KeyPair) -> String {
        pem("PUBLIC KEY", pair.public_key().as_der().unwrap().as_ref())
    }

    pub fn pkcs1_pem(pair: &KeyPair) -> String {
        pem("RSA PUBLIC KEY", pair.public_key().as_ref())
    }

    /// A fresh EC key pair on the curve of this signing algorithm.
    pub fn ec_pair(algorithm: &'static EcdsaSigningAlgorithm) -> EcdsaKeyPair {
        EcdsaKeyPair::generate(algorithm).unwrap()
    }

    pub fn ec_spki(pair: &EcdsaKeyPair) -> Vec<u8> {
        pair.public_key().as_der().unwrap().as_ref().to_vec()
    }

    #[test]
    fn both_pem_forms_give_the_same_key_and_fingerprint() {
        let pair = &pairs()[0];
        let a = parse_pem(&spki_pem(pair), "t").unwrap();
        let b = parse_pem(&pkcs1_pem(pair), "t").unwrap();
        assert_eq!((a.len(), b.len()), (1, 1));
        assert_eq!(a[0].fingerprint(), b[0].fingerprint());
        let spki = pair.public_key().as_der().unwrap();
        assert_eq!(a[0].fingerprint(), format!("sha256:{}", crate::event::hex_sha256(spki.as_ref())));
        assert_eq!(a[0].bits(), 2048);
    }

    #[test]
    fn several_keys_with_text_around_them_are_read_in_order_and_duplicates_once() {
        let [one, two] = pairs();
        let text = format!(
            "current key:\n{}\nprevious key (rotated out in March):\n{}{}",
            spki_pem(two),
            pkcs1_pem(one),
            spki_pem(two)
        );
        let keys = parse_pem(&text, "t").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].fingerprint(), parse_pem(&spki_pem(one), "t").unwrap()[0].fingerprint());
    }

    #[test]
    fn the_setting_takes_pem_text_one_line_pem_or_a_path() {
        let pair = &pairs()[0];
        let text = spki_pem(pair);
        assert_eq!(load(&text).unwrap().len(), 1);
        assert_eq!(load(&text.replace('\n', "\\n")).unwrap().len(), 1, "one line with \\n escapes");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kong.pub");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(load(path.to_str().unwrap()).unwrap().len(), 1);
        let e = load("/no/such/key.pem").unwrap_err();
        assert!(matches!(e, KeyError::Unreadable { .. }), "{e}");
        assert!(e.to_string().contains("/no/such/key.pem"), "{e}");
    }

    #[test]
    fn malformed_pem_is_refused_with_the_line_and_never_quotes_a_private_key() {
        let pair = &pairs()[0];
        let good = spki_pem(pair);
        let cases: Vec<(String, &str)> = vec![
            ("hello".into(), "holds no PEM public key"),
            (good.replace("-----END PUBLIC KEY-----\n", ""), "no END line"),
            (good.replace("END PUBLIC KEY", "END RSA PUBLIC KEY"), "closed by END"),
            (good.replacen("MII", "M!I", 1), "not valid base64"),
            (pem("PUBLIC KEY", b"\x30\x03\x02\x01\x01"), "is not a public key"),
            (pem("RSA PUBLIC KEY", b"junk"), "not an RSA public key"),
            (pem("CERTIFICATE", b"x"), "is a certificate"),
            (
                format!("{good}-----BEGIN PUBLIC KEY-----\nProc-Type: 4,ENCRYPTED\n-----END PUBLIC KEY-----\n"),
                "has headers",
            ),
        ];
        for (text, expected) in cases {
            let e = parse_pem(&text, "KONG").unwrap_err().to_string();
            assert!(e.contains(expected), "{expected:?} not in {e:?}");
        }
        let private = pem("PRIVATE KEY", b"SECRETSECRETSECRET");
        let e = parse_pem(&private, "t").unwrap_err().to_string();
        assert!(e.contains("is a private key") && e.contains("line 1"), "{e}");
        assert!(!e.contains("U0VDUkVU"), "never quotes the key: {e}");
    }

    #[test]
    fn keys_under_2048_bits_are_refused() {
        // RSA-1024 SubjectPublicKeyInfo (a throwaway key made for this test).
        let small = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC2aCIwjoFrQfWI63LL1npUR93X9tTuuaq6HFb34KWeqqB0+PWrI92y8f2oSyBNYYPEUIVm2FasOAcRGsFH8nspg8B2rC0h4Mh51s5BGqPuEmL+XHLBUW9WmYT154aJkayVdxUn3OgMu7q7rDHOFOZuaCL46H2xn3DLhD85heWhbwIDAQAB";
        let text = format!("-----BEGIN PUBLIC KEY-----\n{small}\n-----END PUBLIC KEY-----\n");
        let e = parse_pem(&text, "t").unwrap_err().to_string();
        assert!(e.contains("fewer than 2048 bits"), "{e}");
    }

    #[test]
    fn ec_keys_on_each_curve_are_read_with_their_type_and_fingerprint_under_both_labels() {
        for (algorithm, key_type) in [
            (&ECDSA_P256_SHA256_ASN1_SIGNING, "EC P-256"),
            (&ECDSA_P384_SHA384_ASN1_SIGNING, "EC P-384"),
            (&ECDSA_P521_SHA512_ASN1_SIGNING, "EC P-521"),
        ] {
            let spki = ec_spki(&ec_pair(algorithm));
            let keys = parse_pem(&pem("PUBLIC KEY", &spki), "t").unwrap();
            assert_eq!(keys[0].key_type().to_string(), key_type);
            assert_eq!(keys[0].fingerprint(), format!("sha256:{}", crate::event::hex_sha256(&spki)));
            let labelled = parse_pem(&pem("EC PUBLIC KEY", &spki), "t").unwrap();
            assert_eq!(labelled[0].fingerprint(), keys[0].fingerprint(), "{key_type}");
            assert_eq!(format!("{:?}", keys[0]), format!("PublicKey({key_type} {})", keys[0].fingerprint()));
        }
        assert_eq!(
            parse_pem(&pem("PUBLIC KEY", &ec_spki(&ec_pair(&ECDSA_P384_SHA384_ASN1_SIGNING))), "t").unwrap()[0].bits(),
            384
        );
    }

    #[test]
    fn rsa_and_ec_keys_mix_in_one_bundle_and_a_pkcs1_key_under_the_spki_label_still_reads() {
        let rsa = &pairs()[0];
        let ec = ec_spki(&ec_pair(&ECDSA_P256_SHA256_ASN1_SIGNING));
        // What `openssl ecparam -genkey` writes before a key is no key, and no error.
        let text = format!(
            "old RSA key:\n{}new EC key:\n-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
            spki_pem(rsa),
            pem("PUBLIC KEY", &ec)
        );
        let keys = parse_pem(&text, "t").unwrap();
        let types: Vec<String> = keys.iter().map(|k| k.key_type().to_string()).collect();
        assert_eq!(types, ["RSA-2048", "EC P-256"]);
        let mislabelled = parse_pem(&pem("PUBLIC KEY", rsa.public_key().as_ref()), "t").unwrap();
        assert_eq!(mislabelled[0].fingerprint(), keys[0].fingerprint());
    }

    #[test]
    fn ec_keys_that_cannot_be_checked_are_refused_saying_what_they_are() {
        let good = ec_spki(&ec_pair(&ECDSA_P256_SHA256_ASN1_SIGNING));
        let mut off_curve = good.clone();
        *off_curve.last_mut().unwrap() ^= 1;
        // SEQUENCE { SEQUENCE { ecPublicKey, SEQUENCE {} }, BIT STRING }: explicit curve parameters.
        let explicit = [
            &[0x30, 0x12, 0x30, 0x0b, 0x06, 0x07][..],
            OID_EC_PUBLIC_KEY,
            &[0x30, 0x00, 0x03, 0x03, 0x00, 0x04, 0x01],
        ]
        .concat();
        // An Ed25519 SubjectPublicKeyInfo (RFC 8410), the key bytes zero.
        let ed25519 = [
            &[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00][..],
            &[0; 32],
        ]
        .concat();
        let cases: Vec<(String, &str)> = vec![
            (pem("PUBLIC KEY", &off_curve), "is not a usable EC P-256 public key"),
            (pem("EC PUBLIC KEY", &good[..good.len() - 1]), "is not a public key"),
            (pem("EC PUBLIC KEY", &explicit), "explicit curve parameters"),
            (
                pem("PUBLIC KEY", &ec_spki(&ec_pair(&ECDSA_P256K1_SHA256_ASN1_SIGNING))),
                "an EC key on the curve 1.3.132.0.10: the shipper checks EC keys on P-256, P-384 and P-521",
            ),
            (
                pem("PUBLIC KEY", &ed25519),
                "is an Ed25519 key: the shipper checks signatures made with RSA and EC",
            ),
            (pem("EC PRIVATE KEY", b"SECRETSECRETSECRET"), "is a private key (EC PRIVATE KEY)"),
        ];
        for (text, expected) in cases {
            let e = parse_pem(&text, "KONG").unwrap_err().to_string();
            assert!(
                e.contains(expected) && e.contains("the block at line 1"),
                "{expected:?} not in {e:?}"
            );
            assert!(!e.contains("U0VDUkVU"), "never quotes a key: {e}");
        }
    }

    #[test]
    fn oids_are_written_dotted() {
        assert_eq!(oid_text(OID_P256), "1.2.840.10045.3.1.7");
        assert_eq!(oid_text(OID_P384), "1.3.132.0.34");
        assert_eq!(oid_text(OID_RSA_ENCRYPTION), "1.2.840.113549.1.1.1");
        assert_eq!(oid_text(&[0x88, 0x37]), "2.999");
    }
}
