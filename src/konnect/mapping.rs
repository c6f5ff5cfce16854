//! A Konnect entry → CloudTrail Lake `eventData` (the integration schema), and back.
//!
//! The entry travels whole, byte for byte, in `additionalEventData.kongAuditEntry`; every other
//! field is derived from it, cut to CloudTrail's limits, for queries. The conventions are those of
//! Kong's entries (`crate::event`): the same `version`, `recipientAccountId`, `kongAuditEntrySha256`
//! and `shipper`, with `kongEntryKind: "konnect"`.
//!
//! An entry that cannot be one event (over 28 kB of `additionalEventData`, nested deeper than a
//! parser reads back) is refused with `MapError::DoesNotFit`, for the caller to dead-letter whole:
//! Konnect's entries are small, and Kong's numbered parts (`crate::event`) cannot be reused from
//! here without changing their recovery, which reads only Kong's entry kinds.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::entry::{KonnectEntry, LogType};
use crate::event::{ADDITIONAL_EVENT_DATA_MAX, AuditEvent, SCHEMA_VERSION, STRING_FIELD_MAX, format_event_time, hex_sha256, truncate};

pub const EVENT_SOURCE: &str = "konnect.konghq.com";
/// `additionalEventData.kongEntryKind` of every Konnect event.
pub const ENTRY_KIND: &str = "konnect";
/// Why a Konnect signature is recorded and not checked.
pub const SIGNATURE_UNCHECKED_REASON: &str = "Konnect signs its entries with Ed25519, but which bytes it signs for a pulled entry is not documented, so the signature is recorded and not checked";
/// `principalId` of a failed authentication, which has no principal.
pub const UNAUTHENTICATED: &str = "unauthenticated";
const ERROR_CODE_MAX: usize = 256;
const SHIPPER: &str = concat!("kong-audit-shipper/", env!("CARGO_PKG_VERSION"));
/// Nesting beyond which an embedded entry would not parse back (serde_json stops at 128, and the
/// entry sits two levels down in `eventData`).
const MAX_EMBEDDED_DEPTH: usize = 100;

/// What mapping needs besides the entry.
#[derive(Debug, Clone)]
pub struct MapContext {
    /// The account that owns the channel; CloudTrail rejects any other `recipientAccountId`.
    pub recipient_account_id: String,
    /// Now, in epoch seconds: the `eventTime` of an entry without a readable `ts`.
    pub now: i64,
    /// The Konnect region read (`us`, `eu`, …), when known: entries do not say.
    pub region: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    #[error("malformed Konnect entry {key}: {problem}")]
    Malformed { key: String, problem: String },
    #[error("the Konnect entry {key} does not fit one CloudTrail event ({reason}); it is refused whole, never cut")]
    DoesNotFit { key: String, reason: String },
    #[error("cannot encode the event of Konnect entry {key}: {detail}")]
    Encode { key: String, detail: String },
}

/// The PutAuditEvents `id` of an entry: `konnect-<key>`, or `konnect-x<sha256 of the key>` when the
/// key is long or has characters outside `[-_A-Za-z0-9]` (base64 padding, for one).
pub fn event_id(key: &str) -> String {
    let plain = !key.is_empty() && key.len() <= 100 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        format!("konnect-{key}")
    } else {
        format!("konnect-x{}", hex_sha256(key.as_bytes()))
    }
}

/// `eventData.UID`: the key, or its digest when longer than CloudTrail's 1,024.
pub fn uid(key: &str) -> String {
    if key.len() <= STRING_FIELD_MAX {
        key.to_string()
    } else {
        format!("sha256-{}", hex_sha256(key.as_bytes()))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventData<'a> {
    version: &'static str,
    user_identity: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
    event_source: &'static str,
    event_name: String,
    event_time: String,
    #[serde(rename = "UID")]
    uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_elements: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<String>,
    #[serde(rename = "sourceIPAddress", skip_serializing_if = "Option::is_none")]
    source_ip_address: Option<&'a str>,
    recipient_account_id: &'a str,
    additional_event_data: Extra<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Extra<'a> {
    kong_entry_kind: &'static str,
    konnect_log_type: &'a str,
    kong_audit_entry: &'a RawValue,
    kong_audit_entry_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    konnect_signature: Option<&'a str>,
    kong_signature: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    konnect_region: Option<&'a str>,
    event_time_source: &'static str,
    shipper: &'static str,
}

/// The one event that carries a Konnect entry.
pub fn map_entry(entry: &KonnectEntry, ctx: &MapContext) -> Result<AuditEvent, MapError> {
    if let Some(problem) = &entry.problem {
        return Err(MapError::Malformed {
            key: entry.key.clone(),
            problem: problem.clone(),
        });
    }
    let (secs, time_source) = match entry.epoch_seconds() {
        Some(secs) => (secs, "ts"),
        None => (ctx.now, "read"),
    };
    let signature = entry.signature();
    let extra = Extra {
        kong_entry_kind: ENTRY_KIND,
        konnect_log_type: entry.log_type.as_str(),
        kong_audit_entry: &entry.raw,
        kong_audit_entry_sha256: hex_sha256(entry.raw.get().as_bytes()),
        // Whole in the entry anyway; a signature longer than any real one is not repeated here.
        konnect_signature: signature.filter(|s| s.len() <= STRING_FIELD_MAX),
        kong_signature: match signature {
            Some(_) => json!({ "status": "unchecked", "reason": SIGNATURE_UNCHECKED_REASON }),
            None => json!({ "status": "unsigned" }),
        },
        konnect_region: ctx.region.as_deref(),
        event_time_source: time_source,
        shipper: SHIPPER,
    };
    check_fit(entry, &extra)?;
    let data = EventData {
        version: SCHEMA_VERSION,
        user_identity: user_identity(entry),
        user_agent: entry.text_field("user_agent").map(|ua| truncate(ua, STRING_FIELD_MAX)),
        event_source: EVENT_SOURCE,
        event_name: truncate(&event_name(entry), STRING_FIELD_MAX),
        event_time: format_event_time(secs),
        uid: uid(&entry.key),
        request_parameters: request_parameters(entry),
        response_elements: response_elements(entry),
        error_code: error_code(entry),
        source_ip_address: entry.str_field("client_ip").filter(|ip| ip.parse::<std::net::IpAddr>().is_ok()),
        recipient_account_id: &ctx.recipient_account_id,
        additional_event_data: extra,
    };
    let event_data = serde_json::to_string(&data).map_err(|e| MapError::Encode {
        key: entry.key.clone(),
        detail: e.to_string(),
    })?;
    Ok(AuditEvent {
        id: event_id(&entry.key),
        event_data,
    })
}

/// `additionalEventData` within CloudTrail's 28 kB as sent and as a parser writes it back (numbers
/// such as `1e9` grow), and an entry nested no deeper than parsers read back.
fn check_fit(entry: &KonnectEntry, extra: &Extra<'_>) -> Result<(), MapError> {
    let refuse = |reason: String| MapError::DoesNotFit {
        key: entry.key.clone(),
        reason,
    };
    let nesting = 1 + entry.fields.values().map(depth).max().unwrap_or(0);
    if nesting > MAX_EMBEDDED_DEPTH {
        return Err(refuse(format!("nested {nesting} levels deep, over {MAX_EMBEDDED_DEPTH}")));
    }
    let text = serde_json::to_string(extra).map_err(|e| MapError::Encode {
        key: entry.key.clone(),
        detail: e.to_string(),
    })?;
    let size = if text.len() <= ADDITIONAL_EVENT_DATA_MAX / 6 {
        text.len()
    } else {
        let rewritten = serde_json::from_str::<Value>(&text).map_or(usize::MAX, |v| v.to_string().len());
        text.len().max(rewritten)
    };
    if size > ADDITIONAL_EVENT_DATA_MAX {
        return Err(refuse(format!(
            "additionalEventData would be {size} bytes, over CloudTrail's {ADDITIONAL_EVENT_DATA_MAX}"
        )));
    }
    Ok(())
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether the entry records an authentication that failed: `successful: false`, or, without
/// `successful`, an `outcome` other than `success`.
fn failed_authentication(entry: &KonnectEntry) -> bool {
    entry.log_type == LogType::Authentication
        && match entry.bool_field("successful") {
            Some(ok) => !ok,
            None => entry.text_field("outcome").is_some_and(|o| o != "success"),
        }
}

fn user_identity(entry: &KonnectEntry) -> Value {
    let principal = entry.text_field("principal_id");
    let kind = match (&entry.log_type, principal) {
        (_, None) => "Unknown",
        (LogType::Authentication, Some(_)) => match entry.str_field("authentication_type") {
            Some("spat") => "KonnectSystemAccount",
            Some("pat" | "basic" | "sso" | "google" | "github" | "windowslive" | "federated") => "KonnectUser",
            _ => "Unknown",
        },
        (_, Some(_)) => "KonnectPrincipal",
    };
    let principal_id = match principal {
        Some(p) => truncate(p, STRING_FIELD_MAX),
        None if failed_authentication(entry) => UNAUTHENTICATED.into(),
        None => "unknown".into(),
    };
    let mut identity = json!({ "type": kind, "principalId": principal_id });
    let details = strings(
        entry,
        &[
            ("org_id", "orgId"),
            ("actor_id", "actorId"),
            ("portal_id", "portalId"),
            ("authentication_type", "authenticationType"),
        ],
    );
    if !details.is_empty() {
        identity["details"] = Value::Object(details);
    }
    identity
}

fn event_name(entry: &KonnectEntry) -> String {
    match &entry.log_type {
        LogType::Authentication => "Authenticate".into(),
        LogType::Authorization => format!("Authorize {}", entry.text_field("action").unwrap_or("unknown")),
        LogType::GatewayAccess => {
            let method: String = entry
                .str_field("method")
                .unwrap_or("")
                .chars()
                .filter(char::is_ascii_alphabetic)
                .take(16)
                .collect::<String>()
                .to_ascii_uppercase();
            let uri = entry.str_field("uri").unwrap_or("");
            let path = uri.split(['?', '#']).next().unwrap_or("");
            format!(
                "{} {}",
                if method.is_empty() { "UNKNOWN" } else { &method },
                if path.is_empty() { "/" } else { path }
            )
        }
        LogType::Other(t) if t.is_empty() => "unknown".into(),
        LogType::Other(t) => t.clone(),
    }
}

fn request_parameters(entry: &KonnectEntry) -> Option<Value> {
    let fields: &[(&str, &str)] = match entry.log_type {
        LogType::Authentication => &[("uri", "uri"), ("authentication_type", "authenticationType")],
        LogType::Authorization => &[
            ("service", "service"),
            ("resource", "resource"),
            ("action", "action"),
            ("uri", "uri"),
        ],
        LogType::GatewayAccess => &[("method", "method"), ("uri", "uri"), ("query", "query")],
        LogType::Other(_) => &[("uri", "uri")],
    };
    let params = strings(entry, fields);
    (!params.is_empty()).then_some(Value::Object(params))
}

fn response_elements(entry: &KonnectEntry) -> Option<Value> {
    let mut out = Map::new();
    match entry.log_type {
        LogType::Authentication => {
            if let Some(ok) = entry.bool_field("successful") {
                out.insert("successful".into(), Value::Bool(ok));
            }
            if let Some(outcome) = entry.text_field("outcome") {
                out.insert("outcome".into(), Value::String(truncate(outcome, STRING_FIELD_MAX)));
            }
        }
        LogType::Authorization => {
            if let Some(granted) = entry.bool_field("granted") {
                out.insert("granted".into(), Value::Bool(granted));
            }
        }
        LogType::GatewayAccess => {
            if let Some(status) = entry.int_field("status_code") {
                out.insert("statusCode".into(), Value::from(status));
            }
        }
        LogType::Other(_) => {}
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

fn error_code(entry: &KonnectEntry) -> Option<String> {
    let code = match entry.log_type {
        LogType::Authentication if failed_authentication(entry) => entry
            .text_field("outcome")
            .filter(|o| *o != "success")
            .unwrap_or("AuthenticationFailed")
            .to_string(),
        LogType::Authorization if entry.bool_field("granted") == Some(false) => "AccessDenied".into(),
        LogType::GatewayAccess => format!("HTTP{}", entry.int_field("status_code").filter(|s| *s >= 400)?),
        _ => return None,
    };
    Some(truncate(&code, ERROR_CODE_MAX))
}

/// The non-empty string fields among `(field, name)`, under their names, cut to 1,024 bytes.
fn strings(entry: &KonnectEntry, fields: &[(&str, &str)]) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|(field, name)| {
            entry
                .text_field(field)
                .map(|v| (name.to_string(), Value::String(truncate(v, STRING_FIELD_MAX))))
        })
        .collect()
}

// ---- the inverse: a shipped event back to the Konnect entry ----

#[derive(Deserialize)]
struct ShippedEvent {
    #[serde(rename = "UID")]
    uid: String,
    #[serde(rename = "additionalEventData")]
    extra: ShippedExtra,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShippedExtra {
    kong_entry_kind: String,
    #[serde(default)]
    konnect_log_type: Option<String>,
    kong_audit_entry: Option<Box<RawValue>>,
    #[serde(default)]
    kong_audit_entry_sha256: Option<String>,
}

/// A Konnect entry recovered from its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredEntry {
    pub uid: String,
    pub log_type: Option<String>,
    /// The entry's JSON text, as Konnect sent it.
    pub json: String,
}

/// The entry an `eventData` text carries, checked against its SHA-256. A store that turned the
/// nested entry into a JSON string (some exports do) still gives the exact text back.
pub fn recover(event_data: &str) -> Result<RecoveredEntry, String> {
    let event: ShippedEvent = serde_json::from_str(event_data.trim()).map_err(|e| format!("not a kong-audit-shipper event: {e}"))?;
    if event.extra.kong_entry_kind != ENTRY_KIND {
        return Err(format!(
            "event {} carries a '{}' entry, not a Konnect one",
            event.uid, event.extra.kong_entry_kind
        ));
    }
    let raw = event
        .extra
        .kong_audit_entry
        .ok_or_else(|| format!("event {} carries no kongAuditEntry", event.uid))?;
    let text = raw.get();
    let json = match event.extra.kong_audit_entry_sha256.as_deref().filter(|s| !s.is_empty()) {
        None => text.to_string(),
        Some(sha) if hex_sha256(text.as_bytes()) == sha => text.to_string(),
        Some(sha) => match serde_json::from_str::<String>(text) {
            Ok(inner) if hex_sha256(inner.as_bytes()) == sha => inner,
            _ => {
                return Err(format!(
                    "event {}: the entry does not match its SHA-256 (altered, or re-encoded by the export)",
                    event.uid
                ));
            }
        },
    };
    Ok(RecoveredEntry {
        uid: event.uid,
        log_type: event.extra.konnect_log_type,
        json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> MapContext {
        MapContext {
            recipient_account_id: "123456789012".into(),
            now: 1_785_000_000,
            region: Some("eu".into()),
        }
    }

    fn map(text: &str) -> (AuditEvent, Value) {
        let event = map_entry(&KonnectEntry::parse(text).unwrap(), &ctx()).unwrap();
        let data = serde_json::from_str(&event.event_data).unwrap();
        (event, data)
    }

    const SIG: &str = "Jm73xUJZkO3m5hZyL3rD7yHq0aJQ2nQ0hW2n8nq7c8s9K1uR0m0l1WqkV3J0pWb8ZQvS1N0u2YbH9s4XcD5aBg";

    #[test]
    fn an_authentication_maps_with_the_entry_verbatim() {
        let text = format!(
            r#"{{"type":"authentication","successful":true,"principal_id":"user_1","signature":"{SIG}","org_id":"o-1","outcome":"success","authentication_type":"sso","ts":"2023-03-21T09:28:45.78Z","client_ip":"127.0.0.1","uri":"/v2/auth/login","user_agent":"Mozilla/5.0","trace_id":"11223344"}}"#
        );
        let (event, d) = map(&text);
        assert_eq!(event.id, format!("konnect-{SIG}"));
        assert_eq!(d["version"], "1.0");
        assert_eq!(d["eventSource"], "konnect.konghq.com");
        assert_eq!(d["eventName"], "Authenticate");
        assert_eq!(d["eventTime"], "2023-03-21T09:28:45Z");
        assert_eq!(d["UID"], SIG);
        assert_eq!(d["userIdentity"]["type"], "KonnectUser");
        assert_eq!(d["userIdentity"]["principalId"], "user_1");
        assert_eq!(d["userIdentity"]["details"]["orgId"], "o-1");
        assert_eq!(d["userIdentity"]["details"]["authenticationType"], "sso");
        assert_eq!(d["userAgent"], "Mozilla/5.0");
        assert_eq!(d["sourceIPAddress"], "127.0.0.1");
        assert_eq!(d["recipientAccountId"], "123456789012");
        assert_eq!(
            d["requestParameters"],
            json!({"uri": "/v2/auth/login", "authenticationType": "sso"})
        );
        assert_eq!(d["responseElements"], json!({"successful": true, "outcome": "success"}));
        assert!(d.get("errorCode").is_none());
        let extra = &d["additionalEventData"];
        assert_eq!(extra["kongEntryKind"], "konnect");
        assert_eq!(extra["konnectLogType"], "authentication");
        assert_eq!(extra["konnectSignature"], SIG);
        assert_eq!(extra["konnectRegion"], "eu");
        assert_eq!(extra["eventTimeSource"], "ts");
        assert_eq!(extra["kongSignature"]["status"], "unchecked");
        assert!(extra["kongSignature"]["reason"].as_str().unwrap().contains("not documented"));
        assert_eq!(extra["kongAuditEntrySha256"], hex_sha256(text.as_bytes()));
        assert!(event.event_data.contains(&format!("\"kongAuditEntry\":{text}")), "byte for byte");
        assert_eq!(recover(&event.event_data).unwrap().json, text);
    }

    #[test]
    fn a_failed_authentication_has_the_fixed_principal_and_its_outcome_as_error() {
        let (_, d) = map(
            r#"{"type":"authentication","successful":false,"signature":"s1","outcome":"invalid_password","authentication_type":"basic","ts":"2026-08-01T10:00:00Z","client_ip":"203.0.113.9","uri":"/v2/auth/login","user_agent":"curl/8","trace_id":"t"}"#,
        );
        assert_eq!(d["userIdentity"]["principalId"], UNAUTHENTICATED);
        assert_eq!(d["userIdentity"]["type"], "Unknown");
        assert_eq!(d["errorCode"], "invalid_password");
        assert_eq!(d["responseElements"]["successful"], false);
        // No outcome at all: still an error, with a fixed code.
        let (_, d) = map(r#"{"type":"authentication","successful":"false","ts":"2026-08-01T10:00:00Z"}"#);
        assert_eq!(d["errorCode"], "AuthenticationFailed");
        // A system account's token.
        let (_, d) = map(
            r#"{"type":"authentication","successful":true,"principal_id":"sa-1","authentication_type":"spat","outcome":"success","ts":"2026-08-01T10:00:00Z"}"#,
        );
        assert_eq!(d["userIdentity"]["type"], "KonnectSystemAccount");
    }

    #[test]
    fn an_authorization_names_its_action_and_a_denial_is_an_error() {
        let granted = r#"{"type":"authorization","signature":"s2","service":"servicehub","resource":"krn:kong:gateway:us-west-2:a1:cp/1","action":"kong.gateway.request","granted":true,"org_id":"o","ts":"2023-03-21T09:29:14.52Z","principal_id":"user_1","actor_id":"user_2","client_ip":"::1","uri":"/v2/api/endpoint","trace_id":"12345678"}"#;
        let (_, d) = map(granted);
        assert_eq!(d["eventName"], "Authorize kong.gateway.request");
        assert_eq!(d["userIdentity"]["type"], "KonnectPrincipal");
        assert_eq!(d["userIdentity"]["details"]["actorId"], "user_2");
        assert_eq!(d["requestParameters"]["resource"], "krn:kong:gateway:us-west-2:a1:cp/1");
        assert_eq!(d["requestParameters"]["service"], "servicehub");
        assert_eq!(d["responseElements"], json!({"granted": true}));
        assert_eq!(d["sourceIPAddress"], "::1");
        assert!(d.get("errorCode").is_none());
        let (_, d) = map(&granted.replace("\"granted\":true", "\"granted\":false"));
        assert_eq!(d["errorCode"], "AccessDenied");
    }

    #[test]
    fn a_gateway_access_is_method_and_uri_and_a_status_from_400_is_an_error() {
        let ok = r#"{"type":"gateway_access","ts":"2023-03-21T09:30:22.15Z","org_id":"o","principal_id":"user_1","actor_id":"","client_ip":"10.1.2.3","trace_id":"t","user_agent":"kongctl/1.14","method":"post","uri":"/v2/gateway/services","query":"filter=active","status_code":201,"signature":"s3"}"#;
        let (_, d) = map(ok);
        assert_eq!(d["eventName"], "POST /v2/gateway/services");
        assert_eq!(
            d["requestParameters"],
            json!({"method": "post", "uri": "/v2/gateway/services", "query": "filter=active"})
        );
        assert_eq!(d["responseElements"], json!({"statusCode": 201}));
        assert!(d["userIdentity"]["details"].get("actorId").is_none(), "an empty actor is left out");
        assert!(d.get("errorCode").is_none());
        for status in [400, 403, 503] {
            let (_, d) = map(&ok.replace("201", &status.to_string()));
            assert_eq!(d["errorCode"], format!("HTTP{status}"));
        }
        let (_, d) = map(r#"{"type":"gateway_access","ts":"2026-08-01T10:00:00Z","method":"","uri":"/x?y=1"}"#);
        assert_eq!(d["eventName"], "UNKNOWN /x");
    }

    #[test]
    fn offsets_are_converted_to_utc_and_fractions_dropped() {
        let (_, d) = map(r#"{"type":"authorization","ts":"2026-08-01T01:30:59.999+02:00","action":"read"}"#);
        assert_eq!(d["eventTime"], "2026-07-31T23:30:59Z");
        let (_, d) = map(r#"{"type":"authorization","ts":"2026-08-01T01:30:00-05:30","action":"read"}"#);
        assert_eq!(d["eventTime"], "2026-08-01T07:00:00Z");
        // Without a readable ts, the time of reading, and the event says so.
        let (_, d) = map(r#"{"type":"authorization","ts":"soon","action":"read"}"#);
        assert_eq!(d["eventTime"], format_event_time(ctx().now));
        assert_eq!(d["additionalEventData"]["eventTimeSource"], "read");
    }

    #[test]
    fn a_long_user_agent_is_cut_in_the_event_and_whole_in_the_entry() {
        let ua = format!("{}é", "a".repeat(1_023));
        let text = format!(
            r#"{{"type":"gateway_access","ts":"2026-08-01T10:00:00Z","user_agent":"{ua}","method":"GET","uri":"/v2/x","status_code":200}}"#
        );
        let (event, d) = map(&text);
        let cut = d["userAgent"].as_str().unwrap();
        assert_eq!(cut.len(), 1_023, "cut before the two-byte character");
        assert_eq!(recover(&event.event_data).unwrap().json, text);
    }

    #[test]
    fn a_client_ip_that_is_not_an_ip_is_left_out() {
        for ip in ["unknown", "10.0.0.1, 10.0.0.2", "", "999.1.1.1"] {
            let (_, d) = map(&format!(
                r#"{{"type":"authorization","ts":"2026-08-01T10:00:00Z","client_ip":"{ip}"}}"#
            ));
            assert!(d.get("sourceIPAddress").is_none(), "{ip}");
        }
    }

    #[test]
    fn the_uid_and_id_are_the_same_whatever_the_member_order() {
        let a = r#"{"type":"authorization","ts":"2026-08-01T10:00:00Z","action":"read","granted":true}"#;
        let b = r#"{"granted":true,"action":"read","ts":"2026-08-01T10:00:00Z","type":"authorization"}"#;
        let (ea, da) = map(a);
        let (eb, db) = map(b);
        assert_eq!(da["UID"], db["UID"]);
        assert_eq!(ea.id, eb.id);
        assert!(ea.id.starts_with("konnect-sha256-"), "{}", ea.id);
        assert_eq!(da["additionalEventData"]["kongSignature"], json!({"status": "unsigned"}));
        assert!(da["additionalEventData"].get("konnectSignature").is_none());
    }

    #[test]
    fn ids_stay_in_cloudtrail_alphabet_and_long_keys_are_hashed() {
        let padded = event_id("MEUCIQ+abc/def==");
        assert!(padded.starts_with("konnect-x") && padded.len() <= 128, "{padded}");
        assert_eq!(event_id("a-b_C9"), "konnect-a-b_C9");
        let long = "k".repeat(2_000);
        assert_eq!(uid(&long), format!("sha256-{}", hex_sha256(long.as_bytes())));
        assert_eq!(uid("short"), "short");
        let text = format!(r#"{{"type":"authorization","ts":"2026-08-01T10:00:00Z","signature":"{long}"}}"#);
        let (event, d) = map(&text);
        assert_eq!(d["UID"], uid(&long));
        assert!(event.id.len() <= 128);
        assert!(d["additionalEventData"].get("konnectSignature").is_none());
        assert_eq!(recover(&event.event_data).unwrap().json, text);
    }

    #[test]
    fn unknown_types_still_map() {
        let (_, d) = map(r#"{"type":"portal_login","ts":"2026-08-01T10:00:00Z","uri":"/login","principal_id":"dev-1"}"#);
        assert_eq!(d["eventName"], "portal_login");
        assert_eq!(d["additionalEventData"]["konnectLogType"], "portal_login");
        assert_eq!(d["requestParameters"], json!({"uri": "/login"}));
    }

    #[test]
    fn entries_too_large_or_too_deep_are_refused_whole_with_the_reason() {
        let big = format!(
            r#"{{"type":"gateway_access","ts":"2026-08-01T10:00:00Z","query":"{}"}}"#,
            "q".repeat(30_000)
        );
        let e = map_entry(&KonnectEntry::parse(&big).unwrap(), &ctx()).unwrap_err();
        assert!(matches!(e, MapError::DoesNotFit { .. }) && e.to_string().contains("28000"), "{e}");
        // Just under the limit still fits, and the field is cut in requestParameters only.
        let near = format!(
            r#"{{"type":"gateway_access","ts":"2026-08-01T10:00:00Z","query":"{}"}}"#,
            "q".repeat(26_000)
        );
        let (_, d) = map(&near);
        assert_eq!(d["requestParameters"]["query"].as_str().unwrap().len(), STRING_FIELD_MAX);
        let deep = format!(
            r#"{{"type":"x","ts":"2026-08-01T10:00:00Z","n":{}{}}}"#,
            "[".repeat(110),
            "]".repeat(110)
        );
        let e = map_entry(&KonnectEntry::parse(&deep).unwrap(), &ctx()).unwrap_err();
        assert!(e.to_string().contains("levels deep"), "{e}");
        let e = map_entry(&KonnectEntry::parse("[1]").unwrap(), &ctx()).unwrap_err();
        assert!(matches!(e, MapError::Malformed { .. }), "{e}");
    }

    #[test]
    fn recovery_checks_the_digest_reads_stringified_entries_and_refuses_kong_events() {
        let text = r#"{"type":"authorization","ts":"2026-08-01T10:00:00Z","n":1.50}"#;
        let (event, mut d) = map(text);
        let altered = event.event_data.replace("1.50", "1.5");
        assert!(recover(&altered).unwrap_err().contains("SHA-256"));
        d["additionalEventData"]["kongAuditEntry"] = Value::String(text.into());
        let back = recover(&d.to_string()).unwrap();
        assert_eq!(back.json, text);
        assert_eq!(back.log_type.as_deref(), Some("authorization"));
        d["additionalEventData"]["kongEntryKind"] = json!("request");
        assert!(recover(&d.to_string()).unwrap_err().contains("not a Konnect one"));
    }
}
