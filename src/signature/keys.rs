//! Kong's public keys: read from PEM (SubjectPublicKeyInfo `PUBLIC KEY`, as `openssl rsa -pubout`
//! writes it, or PKCS#1 `RSA PUBLIC KEY`), one or more per setting, each known by the SHA-256 of
//! its SubjectPublicKeyInfo DER (`openssl pkey -pubin -in public.pem -outform DER | sha256sum`).
//!
//! The PEM reader is this small one: the PEM readers already in the tree skip `RSA PUBLIC KEY`
//! blocks without a word, and a key given but silently ignored would make every row `invalid`.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::PublicEncryptingKey;
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::Engine;

/// One public key Kong's signing key pairs with.
pub struct PublicKey {
    parsed: ParsedPublicKey,
    fingerprint: String,
    bits: usize,
}

impl PublicKey {
    /// An RSA public key from DER: SubjectPublicKeyInfo or PKCS#1 `RSAPublicKey`.
    pub fn from_der(der: &[u8]) -> Result<PublicKey, String> {
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
        let fingerprint = format!("sha256:{}", crate::event::hex_sha256(spki.as_ref()));
        Ok(PublicKey { parsed, fingerprint, bits })
    }

    /// `sha256:` and the hex SHA-256 of the key's SubjectPublicKeyInfo DER.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn bits(&self) -> usize {
        self.bits
    }

    /// RSA PKCS#1 v1.5 with SHA-256 over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.parsed.verify_sig(message, signature).is_ok()
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey(RSA-{} {})", self.bits, self.fingerprint)
    }
}

/// Why the keys could not be read. The messages never quote key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not PEM text, and not a readable file '{path}': {problem}")]
    Unreadable { path: String, problem: String },
    #[error(
        "{source_name} holds no PEM public key: expected one or more -----BEGIN PUBLIC KEY----- (openssl rsa -in private.pem -pubout) or -----BEGIN RSA PUBLIC KEY----- blocks"
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
            if !keys.iter().any(|k| k.fingerprint == key.fingerprint) {
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

fn block_key(label: &str, body: &str) -> Result<PublicKey, String> {
    match label {
        "PUBLIC KEY" | "RSA PUBLIC KEY" => {}
        l if l.contains("PRIVATE KEY") => {
            return Err(format!(
                "is a private key ({l}): give Kong's public key instead (openssl rsa -in private.pem -pubout), and keep the private key on Kong"
            ));
        }
        "CERTIFICATE" => {
            return Err("is a certificate: give the public key (openssl x509 -in cert.pem -pubkey -noout)".into());
        }
        other => return Err(format!("is a {other}, not a PUBLIC KEY or RSA PUBLIC KEY")),
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("is not valid base64 ({e})"))?;
    PublicKey::from_der(&der).map_err(|p| format!("is {p}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;
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
            (pem("PUBLIC KEY", b"\x30\x03\x02\x01\x01"), "not an RSA public key"),
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
}
