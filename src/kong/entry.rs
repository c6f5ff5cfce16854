//! One audit entry as Kong returned it: the verbatim bytes, plus a parsed view for mapping.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The two halves of Kong's audit log, and Konnect's audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// `/audit/requests`: one row per Admin API request, keyed by `request_id`.
    Request,
    /// `/audit/objects`: one row per entity change, keyed by its own `id` (many share a `request_id`).
    Object,
    /// Konnect's `/v3/audit-logs`: one entry per authentication, authorization or API call, keyed by
    /// its `signature` (or a digest of the whole entry: see `konnect::KonnectEntry`).
    Konnect,
}

impl EntryKind {
    /// Kong's two endpoints, what a Kong source serves (Konnect's entries are a source of their own).
    pub const ALL: [EntryKind; 2] = [EntryKind::Request, EntryKind::Object];

    pub fn path(self) -> &'static str {
        match self {
            EntryKind::Request => "audit/requests",
            EntryKind::Object => "audit/objects",
            EntryKind::Konnect => "v3/audit-logs",
        }
    }

    /// The field that identifies an entry of this kind.
    pub fn key_field(self) -> &'static str {
        match self {
            EntryKind::Request => "request_id",
            EntryKind::Object => "id",
            EntryKind::Konnect => "signature",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Request => "request",
            EntryKind::Object => "object",
            EntryKind::Konnect => "konnect",
        }
    }

    /// `eventData.eventSource` of the events of this kind.
    pub fn event_source(self) -> &'static str {
        match self {
            EntryKind::Request | EntryKind::Object => crate::event::EVENT_SOURCE,
            EntryKind::Konnect => crate::konnect::mapping::EVENT_SOURCE,
        }
    }
}

/// An entry's key, when the entry has no usable one of its own: a digest of its content without the
/// `ttl` field (which changes on every read), so the same row gets the same key on every run.
const DIGEST_KEY_PREFIX: &str = "sha256-";

#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: EntryKind,
    /// Exactly the bytes Kong sent for this entry.
    pub raw: Box<RawValue>,
    /// The entry's own key (`request_id` or `id`), or a content digest when it has none.
    pub key: String,
    /// The parsed fields; empty when the entry is not a JSON object.
    pub fields: Map<String, Value>,
    /// Why this entry cannot be shipped as an event, if it cannot.
    pub problem: Option<String>,
    /// The verdict on Kong's signature, when the source has checked it already.
    pub signature: Option<crate::signature::Verdict>,
}

impl Entry {
    pub fn from_raw(kind: EntryKind, raw: Box<RawValue>) -> Entry {
        if kind == EntryKind::Konnect {
            return crate::konnect::KonnectEntry::from_raw(raw).into_entry();
        }
        let fields = match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err("the entry is not a JSON object".to_string()),
            Err(e) => Err(format!(
                "the entry is a JSON text no JSON library can hold as values ({e}); it is kept verbatim"
            )),
        };
        let fields = match fields {
            Ok(fields) => fields,
            Err(problem) => {
                let key = key_from_text(kind, raw.get());
                return Entry {
                    kind,
                    raw,
                    key,
                    fields: Map::new(),
                    problem: Some(problem),
                    signature: None,
                };
            }
        };
        let (key, problem) = match fields.get(kind.key_field()) {
            Some(Value::String(s)) if !s.is_empty() => (s.clone(), None),
            Some(v @ Value::Number(_)) => (v.to_string(), None),
            other => {
                let mut without_ttl = fields.clone();
                without_ttl.remove("ttl");
                let canonical = serde_json::to_vec(&without_ttl).unwrap_or_default();
                let what = match other {
                    None => "is missing".to_string(),
                    Some(v) => format!("is not a usable key ({})", kind_of(v)),
                };
                (digest_key(&canonical), Some(format!("field '{}' {what}", kind.key_field())))
            }
        };
        Entry {
            kind,
            raw,
            key,
            fields,
            problem,
            signature: None,
        }
    }

    /// Parse one entry from JSON text (tests, recovery, redrive).
    pub fn parse(kind: EntryKind, json: &str) -> Result<Entry, serde_json::Error> {
        Ok(Entry::from_raw(kind, RawValue::from_string(json.to_string())?))
    }

    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// An integer field, also when Kong sent it as a float or numeric string.
    pub fn int_field(&self, name: &str) -> Option<i64> {
        match self.fields.get(name)? {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite() && f.abs() < 9e15).map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn request_timestamp(&self) -> Option<i64> {
        self.int_field("request_timestamp")
    }

    /// When the entry was written, epoch seconds, as its source stamped it: Kong's
    /// `request_timestamp`, or Konnect's `ts` (its fraction dropped).
    pub fn timestamp(&self) -> Option<i64> {
        match self.kind {
            EntryKind::Konnect => crate::konnect::entry_time(&self.fields).map(|t| t.timestamp()),
            EntryKind::Request | EntryKind::Object => self.request_timestamp(),
        }
    }
}

/// The key of an entry whose text no value type can hold: its own `request_id` or `id` when the text
/// still shows one (the same on every read), else a digest of the text with the `ttl` member's
/// value left out (`ttl` changes on every read; a key that changed with it would make a new dead
/// letter on every sweep).
fn key_from_text(kind: EntryKind, text: &str) -> String {
    let Some(members) = super::raw::members(text) else {
        return digest_key(text.as_bytes());
    };
    // A later duplicate wins, as when the text is parsed.
    let own = members
        .iter()
        .rev()
        .find(|(k, _)| k == kind.key_field())
        .and_then(|(_, v)| match serde_json::from_str::<Value>(v) {
            Ok(Value::String(s)) if !s.is_empty() => Some(s),
            Ok(n @ Value::Number(_)) => Some(n.to_string()),
            _ => None,
        });
    if let Some(key) = own {
        return key;
    }
    let without_ttl: Vec<String> = members
        .iter()
        .filter(|(k, _)| k != "ttl")
        .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap_or_default()))
        .collect();
    digest_key(format!("{{{}}}", without_ttl.join(",")).as_bytes())
}

fn digest_key(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(DIGEST_KEY_PREFIX.len() + 64);
    s.push_str(DIGEST_KEY_PREFIX);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "an empty string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_right_field_and_raw_is_kept() {
        let text = r#"{"request_id":"r1","id":"o1","zz_unknown":[1,2.50,{"a":null}],"request_timestamp":1700000000}"#;
        let req = Entry::parse(EntryKind::Request, text).unwrap();
        let obj = Entry::parse(EntryKind::Object, text).unwrap();
        assert_eq!((req.key.as_str(), obj.key.as_str()), ("r1", "o1"));
        assert_eq!(req.raw.get(), text);
        assert_eq!(req.request_timestamp(), Some(1_700_000_000));
        assert!(req.problem.is_none());
    }

    #[test]
    fn entries_without_a_key_get_a_stable_digest_key_that_ignores_ttl() {
        let a = Entry::parse(EntryKind::Object, r#"{"dao_name":"x","ttl":100}"#).unwrap();
        let b = Entry::parse(EntryKind::Object, r#"{"ttl":99,"dao_name":"x"}"#).unwrap();
        assert!(a.key.starts_with("sha256-") && a.key == b.key);
        assert!(a.problem.as_deref().unwrap().contains("'id' is missing"));
        let n = Entry::parse(EntryKind::Request, "42").unwrap();
        assert!(n.problem.as_deref().unwrap().contains("not a JSON object"));
        let null_key = Entry::parse(EntryKind::Request, r#"{"request_id":null}"#).unwrap();
        assert!(null_key.problem.as_deref().unwrap().contains("null"));
    }

    #[test]
    fn text_no_value_type_can_hold_keeps_its_own_key_or_a_digest_that_ignores_ttl() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for (text, key) in [
            (r#"{"request_id":"r1","n":1e400,"ttl":100}"#.to_string(), "r1"),
            (format!(r#"{{"request_id":"r2","deep":{deep},"ttl":99}}"#), "r2"),
            (r#"{"request_id":42,"n":1e400}"#.to_string(), "42"),
        ] {
            let entry = Entry::parse(EntryKind::Request, &text).unwrap();
            assert!(entry.problem.is_some(), "{text}");
            assert_eq!(entry.key, key);
        }
        let a = Entry::parse(EntryKind::Object, r#"{"dao_name":"x","n":1e400,"ttl":100}"#).unwrap();
        let b = Entry::parse(EntryKind::Object, r#"{"dao_name":"x","n":1e400,"ttl":97}"#).unwrap();
        assert!(a.key.starts_with("sha256-") && a.key == b.key, "the same row on another read");
    }
}
