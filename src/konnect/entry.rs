//! One Konnect audit-log entry as Konnect sent it: the verbatim bytes, a parsed view, its key and time.
//!
//! Entries have no id. An entry is keyed by its `signature` (Konnect signs every entry; Ed25519 is
//! deterministic, so one entry keeps one signature), and where there is none by the SHA-256 of the
//! whole entry's canonical JSON: members sorted at every level, no whitespace. Never by a partial
//! fingerprint such as org, `trace_id` and time: an authorization check and the request it guarded
//! share a `trace_id`, and often a millisecond.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::kong::{Entry, EntryKind};

/// Prefix of a key made from the entry's content, when it carries no signature.
pub const DIGEST_KEY_PREFIX: &str = "sha256-";

/// The `type` of an entry (the spec's discriminator).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LogType {
    /// `authentication`: a login or a token use, successful or not.
    Authentication,
    /// `authorization`: a permission check on a resource, granted or denied.
    Authorization,
    /// `gateway_access`: a request to Konnect's API, with its status.
    GatewayAccess,
    /// A type this version does not know (or an entry without `type` whose shape says nothing):
    /// shipped all the same, with the generic fields.
    Other(String),
}

impl LogType {
    pub fn as_str(&self) -> &str {
        match self {
            LogType::Authentication => "authentication",
            LogType::Authorization => "authorization",
            LogType::GatewayAccess => "gateway_access",
            LogType::Other(t) => t,
        }
    }

    fn parse(text: &str) -> LogType {
        match text {
            "authentication" => LogType::Authentication,
            "authorization" => LogType::Authorization,
            "gateway_access" => LogType::GatewayAccess,
            other => LogType::Other(other.to_string()),
        }
    }

    /// The spec does not list `type` among an authentication entry's required fields: an entry
    /// without it is told by its shape.
    fn of(fields: &Map<String, Value>) -> LogType {
        if let Some(t) = fields.get("type").and_then(Value::as_str) {
            return LogType::parse(t);
        }
        let has = |f: &str| fields.contains_key(f);
        if has("authentication_type") || has("successful") || has("outcome") {
            LogType::Authentication
        } else if has("granted") {
            LogType::Authorization
        } else if has("status_code") && has("method") {
            LogType::GatewayAccess
        } else {
            LogType::Other("unknown".into())
        }
    }
}

#[derive(Debug, Clone)]
pub struct KonnectEntry {
    /// Exactly the bytes Konnect sent for this entry.
    pub raw: Box<RawValue>,
    /// `signature`, or `sha256-<hex>` of the canonical JSON.
    pub key: String,
    /// The parsed members; empty when the entry is not a JSON object.
    pub fields: Map<String, Value>,
    pub log_type: LogType,
    /// `ts` with its offset applied and its fraction kept; `None` when missing or not RFC 3339.
    pub ts: Option<DateTime<Utc>>,
    /// Why this entry cannot be shipped as an event, if it cannot (it is then dead-lettered whole).
    pub problem: Option<String>,
}

impl KonnectEntry {
    pub fn from_raw(raw: Box<RawValue>) -> KonnectEntry {
        let value = match serde_json::from_str::<Value>(raw.get()) {
            Ok(value) => value,
            Err(e) => {
                // Valid JSON no parser here can hold as values (a number beyond f64): the bytes are
                // still the entry, and they are what is kept and keyed.
                let key = digest_key(raw.get().as_bytes());
                return KonnectEntry {
                    raw,
                    key,
                    fields: Map::new(),
                    log_type: LogType::Other("unknown".into()),
                    ts: None,
                    problem: Some(format!("the entry cannot be read as JSON values ({e}); it is kept verbatim")),
                };
            }
        };
        let key = match value.get("signature") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                let mut canonical = String::with_capacity(raw.get().len());
                write_canonical(&value, &mut canonical);
                digest_key(canonical.as_bytes())
            }
        };
        let Value::Object(fields) = value else {
            return KonnectEntry {
                raw,
                key,
                fields: Map::new(),
                log_type: LogType::Other("unknown".into()),
                ts: None,
                problem: Some("the entry is not a JSON object".into()),
            };
        };
        let ts = entry_time(&fields);
        KonnectEntry {
            log_type: LogType::of(&fields),
            raw,
            key,
            fields,
            ts,
            problem: None,
        }
    }

    /// Parse one entry from JSON text (tests, recovery).
    pub fn parse(json: &str) -> Result<KonnectEntry, serde_json::Error> {
        Ok(KonnectEntry::from_raw(RawValue::from_string(json.to_string())?))
    }

    /// The entry as the cycle carries every entry (its kind `Konnect`), bytes, key and fields kept.
    pub fn into_entry(self) -> Entry {
        Entry {
            kind: EntryKind::Konnect,
            raw: self.raw,
            key: self.key,
            fields: self.fields,
            problem: self.problem,
            signature: None,
        }
    }

    /// The entry back from the cycle's form (for mapping): the same bytes, key and fields.
    pub fn from_entry(entry: &Entry) -> KonnectEntry {
        KonnectEntry {
            raw: entry.raw.clone(),
            key: entry.key.clone(),
            log_type: if entry.fields.is_empty() {
                LogType::Other("unknown".into())
            } else {
                LogType::of(&entry.fields)
            },
            ts: entry_time(&entry.fields),
            fields: entry.fields.clone(),
            problem: entry.problem.clone(),
        }
    }

    /// Konnect's signature of the entry, when it carries one.
    pub fn signature(&self) -> Option<&str> {
        self.str_field("signature").filter(|s| !s.is_empty())
    }

    /// `ts` in epoch seconds (rounded down).
    pub fn epoch_seconds(&self) -> Option<i64> {
        self.ts.map(|t| t.timestamp())
    }

    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// A non-empty string field.
    pub fn text_field(&self, name: &str) -> Option<&str> {
        self.str_field(name).filter(|s| !s.is_empty())
    }

    /// A boolean, also when sent as `"true"` / `"false"` (Konnect's webhook has done both).
    pub fn bool_field(&self, name: &str) -> Option<bool> {
        match self.fields.get(name)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.trim() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// An integer, also when sent as a numeric string.
    pub fn int_field(&self, name: &str) -> Option<i64> {
        match self.fields.get(name)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// `ts` of an entry's members, with its offset applied and its fraction kept; `None` when missing or
/// not RFC 3339.
pub fn entry_time(fields: &Map<String, Value>) -> Option<DateTime<Utc>> {
    fields
        .get("ts")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// JSON with the members of every object sorted by name and no whitespace: one text per value,
/// whatever the order and spacing it was sent with.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(members) => {
            let mut names: Vec<&String> = members.keys().collect();
            names.sort();
            out.push('{');
            for (i, name) in names.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(name.clone()).to_string());
                out.push(':');
                write_canonical(&members[name], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn digest_key(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    format!("{DIGEST_KEY_PREFIX}{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTHZ: &str = r#"{"type":"authorization","signature":"sig-A_1","service":"servicehub","resource":"krn:kong:gateway:us-west-2:a1:cp","action":"kong.gateway.request","granted":true,"org_id":"o1","ts":"2023-03-21T09:29:14.52Z","principal_id":"user_1","trace_id":"12345678"}"#;

    #[test]
    fn the_signature_is_the_key_and_the_bytes_are_kept() {
        let e = KonnectEntry::parse(AUTHZ).unwrap();
        assert_eq!(e.key, "sig-A_1");
        assert_eq!(e.raw.get(), AUTHZ);
        assert_eq!(e.log_type, LogType::Authorization);
        assert_eq!(e.epoch_seconds(), Some(1_679_390_954));
        assert_eq!(e.ts.unwrap().timestamp_subsec_millis(), 520);
        assert!(e.problem.is_none());
    }

    #[test]
    fn without_a_signature_the_key_is_a_digest_of_the_whole_entry_in_any_member_order() {
        let a = r#"{"type":"gateway_access","ts":"2023-03-21T09:30:22.15Z","method":"POST","uri":"/v2/x","status_code":201,"nested":{"b":1,"a":[{"y":2,"x":1}]}}"#;
        let b = r#"{ "nested" : { "a" : [ { "x" : 1 , "y" : 2 } ] , "b" : 1 } , "uri":"/v2/x","status_code":201,"method":"POST","ts":"2023-03-21T09:30:22.15Z","type":"gateway_access"}"#;
        let (ka, kb) = (KonnectEntry::parse(a).unwrap().key, KonnectEntry::parse(b).unwrap().key);
        assert!(ka.starts_with("sha256-") && ka.len() == 7 + 64, "{ka}");
        assert_eq!(ka, kb);
        // Any change anywhere is another entry: the whole entry is the key, not a fingerprint.
        let c = a.replace("\"x\":1", "\"x\":3");
        assert_ne!(KonnectEntry::parse(&c).unwrap().key, ka);
        // An empty or non-string signature is no key.
        let empty = r#"{"type":"authentication","signature":"","ts":"2023-03-21T09:28:45Z"}"#;
        assert!(KonnectEntry::parse(empty).unwrap().key.starts_with("sha256-"));
        let null = r#"{"type":"authentication","signature":null,"ts":"2023-03-21T09:28:45Z"}"#;
        assert!(KonnectEntry::parse(null).unwrap().key.starts_with("sha256-"));
    }

    #[test]
    fn two_entries_of_one_trace_in_one_millisecond_keep_two_keys() {
        let authz = r#"{"type":"authorization","org_id":"o","trace_id":"t1","ts":"2026-08-01T10:00:00.123Z","action":"read","granted":true,"principal_id":"p"}"#;
        let access = r#"{"type":"gateway_access","org_id":"o","trace_id":"t1","ts":"2026-08-01T10:00:00.123Z","method":"GET","uri":"/v2/x","status_code":200,"principal_id":"p"}"#;
        assert_ne!(KonnectEntry::parse(authz).unwrap().key, KonnectEntry::parse(access).unwrap().key);
    }

    #[test]
    fn timestamps_with_offsets_are_the_same_instant_in_utc() {
        let at = |ts: &str| {
            KonnectEntry::parse(&format!(r#"{{"type":"authorization","ts":"{ts}"}}"#))
                .unwrap()
                .ts
        };
        assert_eq!(at("2026-08-01T12:30:00.5+02:00"), at("2026-08-01T10:30:00.500Z"));
        assert_eq!(at("2026-08-01T10:30:00-00:00").unwrap().timestamp(), 1_785_580_200);
        // Before 1970 the seconds still round down.
        let e = KonnectEntry::parse(r#"{"type":"authorization","ts":"1969-12-31T23:59:59.5Z"}"#).unwrap();
        assert_eq!(e.epoch_seconds(), Some(-1));
        assert_eq!(at("yesterday"), None);
        assert_eq!(at("2026-08-01 10:30:00"), None);
    }

    #[test]
    fn the_type_is_told_by_the_shape_when_missing() {
        let kind = |t: &str| KonnectEntry::parse(t).unwrap().log_type;
        assert_eq!(
            kind(r#"{"successful":false,"outcome":"invalid_password"}"#),
            LogType::Authentication
        );
        assert_eq!(kind(r#"{"granted":false}"#), LogType::Authorization);
        assert_eq!(kind(r#"{"method":"GET","status_code":200}"#), LogType::GatewayAccess);
        assert_eq!(kind(r#"{"type":"portal_login"}"#), LogType::Other("portal_login".into()));
        assert_eq!(kind(r#"{"x":1}"#).as_str(), "unknown");
    }

    #[test]
    fn malformed_entries_keep_their_bytes_a_key_and_the_reason() {
        let e = KonnectEntry::parse("[1,2]").unwrap();
        assert!(e.problem.as_deref().unwrap().contains("not a JSON object"));
        assert!(e.key.starts_with("sha256-"));
        let huge = KonnectEntry::parse(r#"{"n":1e400}"#).unwrap();
        assert!(huge.problem.is_some());
        assert_eq!(huge.raw.get(), r#"{"n":1e400}"#);
        assert_eq!(huge.key, KonnectEntry::parse(r#"{"n":1e400}"#).unwrap().key);
    }

    #[test]
    fn lenient_field_types() {
        let e = KonnectEntry::parse(r#"{"successful":"false","status_code":"503","granted":1}"#).unwrap();
        assert_eq!(e.bool_field("successful"), Some(false));
        assert_eq!(e.int_field("status_code"), Some(503));
        assert_eq!(e.bool_field("granted"), None);
    }
}
