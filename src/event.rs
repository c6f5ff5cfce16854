//! Kong audit entry ↔ CloudTrail Lake `eventData` (the integration schema), both ways.
//!
//! Every event carries the original entry in `additionalEventData.kongAuditEntry`, byte for byte.
//! An entry too large for `additionalEventData` (28 kB) is shipped as numbered parts that carry the
//! entry's JSON text in order, plus its SHA-256, so `recover` reassembles it exactly.
//!
//! Parts are a unit that may take several runs to ship: a part accepted in one run is not sent again
//! in the next. So what the parts carry must not change between reads, and Kong's `ttl` (seconds
//! left, a new value on every read) does: the parts carry the text with the `ttl` value cut out, and
//! the first part says where it was cut and what it held. Part ids, the part count and the SHA-256
//! are the same on every read.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::kong::{Entry, EntryKind};
use crate::signature::{Verdict, Verifier};

/// Nesting of an embedded entry beyond which it travels as text (numbered parts) instead: parsers
/// stop at some depth (serde_json at 128), and the entry sits two levels down in `eventData`.
const MAX_EMBEDDED_DEPTH: usize = 100;
/// Nesting of a parsed payload or entity beyond which `requestParameters` keeps it as a string.
const MAX_PARAMETER_DEPTH: usize = 64;
/// CloudTrail's documented caps (integration event schema).
pub const ADDITIONAL_EVENT_DATA_MAX: usize = 28_000;
pub const PARAMETERS_MAX: usize = 100_000;
pub const STRING_FIELD_MAX: usize = 1024;
/// Room for one part's text inside `additionalEventData`, leaving space for the part's metadata.
const PART_TEXT_BUDGET: usize = 24_000;
pub const EVENT_SOURCE: &str = "kong-gateway";
pub const SCHEMA_VERSION: &str = "1.0";
const SHIPPER: &str = concat!("kong-audit-shipper/", env!("CARGO_PKG_VERSION"));
/// Timestamps before 2000 are not real (Kong stamps pre-migration object rows with `1`).
const EARLIEST_REAL_TIME: i64 = 946_684_800;
/// Longest key lifetime written to the store: ten years.
const MAX_TTL: i64 = 315_360_000;
/// Room kept for the digits of `ttl` when deciding whether an entry fits one event, so that the
/// decision does not flip between reads as `ttl` loses a digit.
const TTL_DIGITS_ROOM: usize = 20;

/// What mapping needs besides the entry.
#[derive(Debug, Clone)]
pub struct MapContext {
    /// The account that owns the channel; CloudTrail rejects any other `recipientAccountId`.
    pub recipient_account_id: String,
    /// Kong's `audit_log_record_ttl`.
    pub record_ttl: i64,
    /// Now, in epoch seconds.
    pub now: i64,
    /// Kong's signing keys: every event records the verdict on its entry's signature.
    pub signatures: Arc<Verifier>,
}

/// One PutAuditEvents item: its `id` and the `eventData` JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: String,
    pub event_data: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct MapError(pub String);

/// The PutAuditEvents `id` of an entry's first event: stable, `[-_A-Za-z0-9]{1,128}`.
pub fn event_id(kind: EntryKind, key: &str) -> String {
    let prefix = match kind {
        EntryKind::Request => "req",
        EntryKind::Object => "obj",
        EntryKind::Konnect => return crate::konnect::mapping::event_id(key),
    };
    let plain = !key.is_empty() && key.len() <= 100 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        format!("{prefix}-{key}")
    } else {
        format!("{prefix}-x{}", hex_sha256(key.as_bytes()))
    }
}

fn part_id(head_id: &str, part: usize) -> String {
    if part == 1 {
        head_id.to_string()
    } else {
        format!("{head_id}-p{part}")
    }
}

/// The `UID` of an entry's events: its key, or a digest of a key longer than CloudTrail allows.
pub fn uid(key: &str) -> String {
    if key.len() <= STRING_FIELD_MAX {
        key.to_string()
    } else {
        format!("sha256-{}", hex_sha256(key.as_bytes()))
    }
}

/// Seconds until Kong deletes this entry: its `ttl`, or what `request_timestamp` implies. For a
/// Konnect entry, until Konnect does: its `ts` plus the retention (`record_ttl`).
pub fn remaining_ttl(entry: &Entry, ctx: &MapContext) -> u64 {
    if entry.kind == EntryKind::Konnect {
        let secs = entry
            .timestamp()
            .map_or(ctx.record_ttl, |ts| ts.saturating_add(ctx.record_ttl) - ctx.now);
        return secs.clamp(0, MAX_TTL) as u64;
    }
    let secs = if let Some(ttl) = entry.int_field("ttl") {
        ttl
    } else if let Some(ts) = entry.request_timestamp().filter(|t| *t >= EARLIEST_REAL_TIME) {
        ts.saturating_add(ctx.record_ttl) - ctx.now
    } else if let Some(expire_ms) = entry.int_field("expire") {
        expire_ms / 1000 - ctx.now
    } else {
        ctx.record_ttl
    };
    // 0: Kong served the row already expired (see `ship::commit_ttl`).
    secs.clamp(0, MAX_TTL) as u64
}

/// When the entry was written, and which field said so.
pub fn event_time(entry: &Entry, ctx: &MapContext) -> (i64, &'static str) {
    if entry.kind == EntryKind::Konnect {
        // As the Konnect mapping stamps the event: `ts`, else the time of reading.
        return entry.timestamp().map_or((ctx.now, "read"), |ts| (ts, "ts"));
    }
    let sane = |t: i64| (EARLIEST_REAL_TIME..=ctx.now + 86_400).contains(&t);
    if let Some(ts) = entry.request_timestamp().filter(|t| sane(*t)) {
        return (ts, "request_timestamp");
    }
    // Objects before Kong 3.4.3.9 have no timestamp; the row's expiry minus the record TTL is its birth.
    if let Some(t) = entry
        .int_field("ttl")
        .map(|ttl| ctx.now + ttl - ctx.record_ttl)
        .filter(|t| sane(*t))
    {
        return (t.min(ctx.now), "ttl");
    }
    if let Some(t) = entry.int_field("expire").map(|ms| ms / 1000 - ctx.record_ttl).filter(|t| sane(*t)) {
        return (t.min(ctx.now), "expire");
    }
    (ctx.now, "read")
}

pub fn format_event_time(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventData<'a> {
    version: &'static str,
    user_identity: &'a Value,
    event_source: &'static str,
    event_name: &'a str,
    event_time: &'a str,
    #[serde(rename = "UID")]
    uid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_parameters: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_elements: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    #[serde(rename = "sourceIPAddress", skip_serializing_if = "Option::is_none")]
    source_ip_address: Option<&'a str>,
    recipient_account_id: &'a str,
    additional_event_data: Extra<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Extra<'a> {
    kong_entry_kind: EntryKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    kong_audit_entry: Option<&'a RawValue>,
    kong_audit_entry_sha256: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kong_audit_entry_part: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kong_audit_entry_parts: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kong_audit_entry_text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kong_audit_entry_ttl: Option<TtlCut<'a>>,
    kong_signature: &'a Verdict,
    event_time_source: &'static str,
    shipper: &'static str,
}

/// Where the parts' text had the entry's `ttl` value cut out, and the value.
#[derive(Debug, Clone, Copy, Serialize)]
struct TtlCut<'a> {
    /// Byte offset in the reassembled text.
    offset: usize,
    /// The value's JSON text, as Kong sent it.
    text: &'a str,
}

/// What one entry becomes.
#[derive(Debug, Clone)]
pub struct Mapped {
    pub events: Vec<AuditEvent>,
    /// For an entry shipped in parts: the SHA-256 of the text they carry, the same on every read.
    pub parts_sha256: Option<String>,
    /// The verdict on Kong's signature, which every event of the entry carries.
    pub signature: Verdict,
}

/// The events that carry one entry: one, or several parts when the entry is too large for one.
pub fn map_entry(entry: &Entry, ctx: &MapContext) -> Result<Vec<AuditEvent>, MapError> {
    map_entry_detailed(entry, ctx).map(|m| m.events)
}

/// `map_entry`, with what the cycle needs to track an entry shipped in parts.
pub fn map_entry_detailed(entry: &Entry, ctx: &MapContext) -> Result<Mapped, MapError> {
    map_entry_from(entry, ctx, None)
}

/// `map_entry_detailed`, for entries of a source that knows its Konnect region (recorded on Konnect
/// events as `konnectRegion`).
pub fn map_entry_from(entry: &Entry, ctx: &MapContext, konnect_region: Option<&str>) -> Result<Mapped, MapError> {
    if entry.kind == EntryKind::Konnect {
        return map_konnect(entry, ctx, konnect_region);
    }
    if let Some(problem) = &entry.problem {
        return Err(MapError(format!("malformed {} entry: {problem}", entry.kind.as_str())));
    }
    let (secs, time_source) = event_time(entry, ctx);
    let event_time = format_event_time(secs);
    let uid = uid(&entry.key);
    let event_name = truncate(&event_name(entry), STRING_FIELD_MAX);
    let user_identity = user_identity(entry);
    let (request_parameters, response_elements, error_code) = parameters(entry);
    let source_ip = entry.str_field("client_ip").filter(|ip| ip.parse::<std::net::IpAddr>().is_ok());
    let sha = hex_sha256(entry.raw.get().as_bytes());
    let head_id = event_id(entry.kind, &entry.key);
    let signature = entry.signature.clone().unwrap_or_else(|| ctx.signatures.check(entry));

    let render = |extra: Extra<'_>, with_parameters: bool| -> Result<String, MapError> {
        let data = EventData {
            version: SCHEMA_VERSION,
            user_identity: &user_identity,
            event_source: EVENT_SOURCE,
            event_name: &event_name,
            event_time: &event_time,
            uid: &uid,
            request_parameters: request_parameters.as_ref().filter(|_| with_parameters),
            response_elements: response_elements.as_ref().filter(|_| with_parameters),
            error_code: error_code.as_deref(),
            source_ip_address: source_ip,
            recipient_account_id: &ctx.recipient_account_id,
            additional_event_data: extra,
        };
        serde_json::to_string(&data).map_err(|e| MapError(format!("cannot encode the event: {e}")))
    };
    let extra = |part: Option<(usize, usize, &'static str)>| Extra {
        kong_entry_kind: entry.kind,
        kong_audit_entry: None,
        kong_audit_entry_sha256: "",
        kong_audit_entry_part: part.map(|p| p.0),
        kong_audit_entry_parts: part.map(|p| p.1),
        kong_audit_entry_text: None,
        kong_audit_entry_ttl: None,
        kong_signature: &signature,
        event_time_source: time_source,
        shipper: SHIPPER,
    };

    let whole = Extra {
        kong_audit_entry: Some(&entry.raw),
        kong_audit_entry_sha256: &sha,
        ..extra(None)
    };
    let (stable, cut) = stable_text(&entry.raw);
    let room = TTL_DIGITS_ROOM.saturating_sub(cut.map_or(TTL_DIGITS_ROOM, |c| c.text.len()));
    // From the text, not the parsed view: a duplicate member the view dropped still nests in the text.
    let nesting = crate::kong::raw::nesting(entry.raw.get());
    if nesting <= MAX_EMBEDDED_DEPTH && serde_json::to_string(&whole).is_ok_and(|text| fits_additional_event_data(&text, room)) {
        return Ok(Mapped {
            events: vec![AuditEvent {
                id: head_id,
                event_data: render(whole, true)?,
            }],
            parts_sha256: None,
            signature,
        });
    }

    let parts_sha = hex_sha256(stable.as_bytes());
    let parts = split_for_json_strings(&stable, PART_TEXT_BUDGET);
    let count = parts.len();
    let events = parts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let part = Extra {
                kong_audit_entry_sha256: &parts_sha,
                kong_audit_entry_text: Some(text),
                kong_audit_entry_ttl: cut.filter(|_| i == 0),
                ..extra(Some((i + 1, count, "")))
            };
            Ok(AuditEvent {
                id: part_id(&head_id, i + 1),
                event_data: render(part, i == 0)?,
            })
        })
        .collect::<Result<Vec<_>, MapError>>()?;
    Ok(Mapped {
        events,
        parts_sha256: Some(parts_sha),
        signature,
    })
}

/// A Konnect entry's one event (`konnect::mapping`): Konnect's entries are small, and one that does
/// not fit an event is refused whole, never cut.
fn map_konnect(entry: &Entry, ctx: &MapContext, region: Option<&str>) -> Result<Mapped, MapError> {
    use crate::konnect::{KonnectEntry, mapping};
    let konnect = KonnectEntry::from_entry(entry);
    let context = mapping::MapContext {
        recipient_account_id: ctx.recipient_account_id.clone(),
        now: ctx.now,
        region: region.map(str::to_string),
    };
    let event = mapping::map_entry(&konnect, &context).map_err(|e| MapError(e.to_string()))?;
    Ok(Mapped {
        events: vec![event],
        parts_sha256: None,
        // Recorded, never checked: which bytes Konnect signs for a pulled entry is not documented.
        signature: if konnect.signature().is_some() {
            Verdict::Unchecked
        } else {
            Verdict::Unsigned
        },
    })
}

/// The entry's text with the value of its top-level `ttl` cut out, and where it was cut. Anything
/// that is not an object with a numeric `ttl` is returned whole.
fn stable_text(raw: &RawValue) -> (Cow<'_, str>, Option<TtlCut<'_>>) {
    let text = raw.get();
    let Ok(members) = serde_json::from_str::<BTreeMap<String, &RawValue>>(text) else {
        return (Cow::Borrowed(text), None);
    };
    let Some(value) = members.get("ttl").map(|v| v.get()) else {
        return (Cow::Borrowed(text), None);
    };
    let offset = (value.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    let numeric = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit() || b"-+.eE".contains(&b));
    if !numeric || offset.checked_add(value.len()).is_none_or(|end| end > text.len()) {
        return (Cow::Borrowed(text), None);
    }
    let value = &text[offset..offset + value.len()];
    let stable = format!("{}{}", &text[..offset], &text[offset + value.len()..]);
    (Cow::Owned(stable), Some(TtlCut { offset, text: value }))
}

fn event_name(entry: &Entry) -> String {
    match entry.kind {
        EntryKind::Request => {
            let method: String = entry
                .str_field("method")
                .unwrap_or("UNKNOWN")
                .chars()
                .filter(|c| c.is_ascii_alphabetic())
                .take(16)
                .collect();
            let path = entry.str_field("path").unwrap_or("");
            format!(
                "{} {}",
                if method.is_empty() {
                    "UNKNOWN".into()
                } else {
                    method.to_ascii_uppercase()
                },
                template_path(path)
            )
        }
        EntryKind::Object => {
            let op = entry.str_field("operation").unwrap_or("change");
            let dao = entry.str_field("dao_name").unwrap_or("unknown");
            format!("{op} {dao}")
        }
        EntryKind::Konnect => unreachable!("Konnect entries are mapped by konnect::mapping"),
    }
}

/// Entity collections of the Admin API: the segment after one of these is an id or a name.
const COLLECTIONS: &[&str] = &[
    "services",
    "routes",
    "consumers",
    "plugins",
    "certificates",
    "snis",
    "upstreams",
    "targets",
    "ca_certificates",
    "vaults",
    "keys",
    "key-sets",
    "workspaces",
    "admins",
    "consumer_groups",
    "groups",
    "roles",
    "users",
    "permissions",
    "entities",
    "endpoints",
    "developers",
    "files",
    "event-hooks",
    "applications",
    "application_instances",
    "credentials",
    "acls",
    "basic-auth",
    "key-auth",
    "key-auth-enc",
    "hmac-auth",
    "jwt",
    "oauth2",
    "oauth2_tokens",
    "mtls-auth",
    "document_objects",
    "licenses",
    "partials",
    "custom-plugins",
    "degraphql_routes",
    "filter-chains",
    "tags",
    "portals",
    "teams",
];
/// Fixed words of the Admin API that are never ids.
const WORDS: &[&str] = &[
    "rbac",
    "audit",
    "requests",
    "objects",
    "schemas",
    "schema",
    "status",
    "config",
    "auth",
    "userinfo",
    "cache",
    "timers",
    "clustering",
    "debug",
    "metrics",
    "license",
    "enabled",
    "validate",
    "me",
    "invite",
    "register",
    "password_resets",
    "ready",
    "node",
    "log-level",
    "data-planes",
    "overrides",
    "consumer",
];

/// `/ws1/services/8e1f…/routes?x=1` → `/{workspace}/services/{id}/routes`: stable names for CloudTrail.
pub fn template_path(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).take(64).collect();
    let known = |s: &str| COLLECTIONS.contains(&s) || WORDS.contains(&s);
    let mut out = String::with_capacity(path.len());
    for (i, seg) in segments.iter().enumerate() {
        out.push('/');
        let workspace = i == 0 && !known(seg) && segments.get(1).is_some_and(|next| known(next));
        let after_collection = i > 0 && COLLECTIONS.contains(&segments[i - 1]) && !known(seg);
        if workspace {
            out.push_str("{workspace}");
        } else if after_collection || looks_like_id(seg) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    if out.is_empty() { "/".into() } else { out }
}

fn looks_like_id(s: &str) -> bool {
    let uuid = s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        });
    uuid || s.bytes().all(|b| b.is_ascii_digit()) || (s.len() >= 20 && s.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn user_identity(entry: &Entry) -> Value {
    let user = entry.str_field("rbac_user_id").filter(|s| !s.is_empty());
    let mut details = Map::new();
    for (field, name) in [
        ("rbac_user_name", "rbacUserName"),
        ("workspace", "workspace"),
        ("request_source", "requestSource"),
    ] {
        if let Some(v) = entry.str_field(field) {
            details.insert(name.into(), Value::String(truncate(v, STRING_FIELD_MAX)));
        }
    }
    let mut identity = json!({
        "type": if user.is_some() { "KongRBACUser" } else { "Unknown" },
        "principalId": truncate(user.unwrap_or("anonymous"), STRING_FIELD_MAX),
    });
    if !details.is_empty() {
        identity["details"] = Value::Object(details);
    }
    identity
}

/// `requestParameters`, `responseElements` and `errorCode`, within CloudTrail's limits.
fn parameters(entry: &Entry) -> (Option<Value>, Option<Value>, Option<String>) {
    let embedded = |text: Option<&str>| {
        text.map(|t| {
            serde_json::from_str::<Value>(t)
                .ok()
                .filter(|v| depth(v) <= MAX_PARAMETER_DEPTH)
                .unwrap_or_else(|| Value::String(t.to_string()))
        })
    };
    match entry.kind {
        EntryKind::Request => {
            let path = entry.str_field("path").unwrap_or("");
            let (bare, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
            let mut params = json!({ "method": entry.str_field("method"), "path": bare });
            if let Some(q) = query {
                params["queryString"] = Value::String(q.to_string());
            }
            if let Some(body) = embedded(entry.str_field("payload")) {
                params["payload"] = body;
            }
            let params = within_limit(params, "payload");
            let status = entry.int_field("status");
            let response = status.map(|s| json!({ "status": s }));
            let error = status.filter(|s| *s >= 400).map(|s| format!("HTTP{s}"));
            (Some(params), response, error)
        }
        EntryKind::Object => {
            let mut params = json!({
                "daoName": entry.str_field("dao_name"),
                "operation": entry.str_field("operation"),
                "entityKey": entry.str_field("entity_key"),
            });
            if let Some(entity) = embedded(entry.str_field("entity")) {
                params["entity"] = entity;
            }
            (Some(within_limit(params, "entity")), None, None)
        }
        EntryKind::Konnect => unreachable!("Konnect entries are mapped by konnect::mapping"),
    }
}

/// How deeply arrays and objects nest in a value (a scalar is 0). Parsed values are at most 128 deep.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether `additionalEventData` fits CloudTrail's 28 kB as sent and also as a JSON parser writes it
/// back: numbers such as `1e9` grow (to `1000000000.0`, at most about five times), and CloudTrail
/// may measure either form.
/// `room` bytes are kept free besides `text`.
fn fits_additional_event_data(text: &str, room: usize) -> bool {
    if text.len() + room > ADDITIONAL_EVENT_DATA_MAX {
        return false;
    }
    if text.len() + room <= ADDITIONAL_EVENT_DATA_MAX / 6 {
        return true;
    }
    serde_json::from_str::<Value>(text).is_ok_and(|v| v.to_string().len() + room <= ADDITIONAL_EVENT_DATA_MAX)
}

/// Keeps `requestParameters` within CloudTrail's 100 kB: drops the bulky member first, then cuts any
/// other string member (a huge path or key) to 1,024 bytes. The full text is always in
/// `kongAuditEntry`.
fn within_limit(mut params: Value, bulky: &str) -> Value {
    let too_big = |v: &Value| serde_json::to_string(v).map(|s| s.len()).unwrap_or(usize::MAX) > PARAMETERS_MAX - 1_000;
    if too_big(&params) {
        params.as_object_mut().expect("built as an object").remove(bulky);
        params[format!("{bulky}Omitted")] = Value::String("larger than CloudTrail's 100 kB limit; see additionalEventData".into());
    }
    if too_big(&params) {
        for value in params.as_object_mut().expect("built as an object").values_mut() {
            if let Value::String(s) = value
                && s.len() > STRING_FIELD_MAX
            {
                *s = truncate(s, STRING_FIELD_MAX);
            }
        }
        params["truncated"] = Value::String("members cut to 1,024 bytes; the whole entry is in additionalEventData".into());
    }
    params
}

/// Splits text at character boundaries into pieces whose JSON-escaped form fits `budget` bytes.
fn split_for_json_strings(text: &str, budget: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, c) in text.char_indices() {
        let escaped = match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if size + escaped > budget && i > start {
            parts.push(&text[start..i]);
            (start, size) = (i, 0);
        }
        size += escaped;
    }
    parts.push(&text[start..]);
    parts
}

/// At most `max` bytes, cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

// ---- the inverse: shipped eventData back to Kong entries ----

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
    kong_entry_kind: EntryKind,
    kong_audit_entry: Option<Box<RawValue>>,
    kong_audit_entry_sha256: Option<String>,
    kong_audit_entry_part: Option<usize>,
    kong_audit_entry_parts: Option<usize>,
    kong_audit_entry_text: Option<String>,
    kong_audit_entry_ttl: Option<ShippedTtlCut>,
}

#[derive(Deserialize, Clone)]
struct ShippedTtlCut {
    offset: usize,
    text: String,
}

/// A Kong (or Konnect) entry recovered from shipped events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredEntry {
    pub kind: EntryKind,
    pub uid: String,
    /// The entry's JSON text, as Kong (or Konnect) sent it.
    pub json: String,
}

#[derive(Debug, Default)]
pub struct Recovery {
    pub entries: Vec<RecoveredEntry>,
    /// Lines that could not be used, and entries whose parts are missing or do not add up.
    pub problems: Vec<String>,
}

/// Rebuilds entries from `eventData` lines in any order; reassembles parts and checks their SHA-256.
pub fn recover<'a>(lines: impl IntoIterator<Item = &'a str>) -> Recovery {
    // Parts belong together by entry *and* SHA-256: parts shipped by older versions carried the
    // whole text, `ttl` included, so an entry shipped twice came in two versions, each of which must
    // reassemble from its own parts. Parts now carry the text without `ttl` (the cut is on part 1).
    type Id = (EntryKind, String, String);
    #[derive(Default)]
    struct Parts {
        count: Option<usize>,
        texts: HashMap<usize, String>,
        lines: Vec<usize>,
        cut: Option<ShippedTtlCut>,
    }
    let mut out = Recovery::default();
    let mut order: Vec<Id> = Vec::new();
    let mut split: HashMap<Id, Parts> = HashMap::new();
    for (n, line) in lines.into_iter().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let event: ShippedEvent = match serde_json::from_str(line) {
            Ok(e) => e,
            Err(e) => {
                out.problems.push(format!("line {}: not a kong-audit-shipper event: {e}", n + 1));
                continue;
            }
        };
        let kind = event.extra.kong_entry_kind;
        if kind == EntryKind::Konnect {
            // One event, one whole entry: Konnect's own reading of its events.
            match crate::konnect::mapping::recover(line) {
                Ok(entry) => out.entries.push(RecoveredEntry {
                    kind,
                    uid: entry.uid,
                    json: entry.json,
                }),
                Err(problem) => out.problems.push(format!("line {}: konnect {}: {problem}", n + 1, event.uid)),
            }
            continue;
        }
        let cut = event.extra.kong_audit_entry_ttl;
        match (
            event.extra.kong_audit_entry,
            event.extra.kong_audit_entry_part,
            event.extra.kong_audit_entry_text,
        ) {
            (Some(raw), _, _) => match whole_entry(&raw, event.extra.kong_audit_entry_sha256.as_deref()) {
                Ok(json) => out.entries.push(RecoveredEntry {
                    kind,
                    uid: event.uid,
                    json,
                }),
                Err(problem) => out
                    .problems
                    .push(format!("line {}: {} {}: {problem}", n + 1, kind.as_str(), event.uid)),
            },
            (None, Some(part), Some(text)) => {
                let id = (kind, event.uid, event.extra.kong_audit_entry_sha256.unwrap_or_default());
                let slot = split.entry(id.clone()).or_insert_with(|| {
                    order.push(id.clone());
                    Parts::default()
                });
                slot.count = slot.count.or(event.extra.kong_audit_entry_parts);
                slot.texts.insert(part, text);
                slot.lines.push(n + 1);
                slot.cut = slot.cut.take().or(cut);
            }
            _ => out
                .problems
                .push(format!("line {}: the event carries no entry and no entry part", n + 1)),
        }
    }
    for id in order {
        let Parts {
            count,
            texts: mut parts,
            lines,
            cut,
        } = split.remove(&id).expect("recorded with its order");
        let count = count.unwrap_or(0);
        let missing: Vec<usize> = (1..=count).filter(|p| !parts.contains_key(p)).collect();
        if count == 0 || !missing.is_empty() {
            let seen: Vec<usize> = lines.into_iter().take(10).collect();
            out.problems.push(format!(
                "{} {}: parts {missing:?} of {count} are missing (the others are on lines {seen:?})",
                id.0.as_str(),
                id.1
            ));
            continue;
        }
        let mut json: String = (1..=count).map(|p| parts.remove(&p).expect("checked above")).collect();
        if id.2 != hex_sha256(json.as_bytes()) {
            out.problems
                .push(format!("{} {}: reassembled text does not match its SHA-256", id.0.as_str(), id.1));
            continue;
        }
        if let Some(cut) = cut {
            if cut.offset > json.len() || !json.is_char_boundary(cut.offset) {
                out.problems.push(format!(
                    "{} {}: part 1 puts the ttl at byte {}, outside the reassembled text",
                    id.0.as_str(),
                    id.1,
                    cut.offset
                ));
                continue;
            }
            json.insert_str(cut.offset, &cut.text);
        }
        out.entries.push(RecoveredEntry {
            kind: id.0,
            uid: id.1,
            json,
        });
    }
    out
}

/// The entry text of a whole event, checked against its SHA-256. A store that turned the nested
/// object into a JSON string (some exports do) still gives the exact text back.
fn whole_entry(raw: &RawValue, sha: Option<&str>) -> Result<String, String> {
    let text = raw.get();
    let Some(sha) = sha.filter(|s| !s.is_empty()) else {
        return Ok(text.to_string());
    };
    if hex_sha256(text.as_bytes()) == sha {
        return Ok(text.to_string());
    }
    if let Ok(inner) = serde_json::from_str::<String>(text)
        && hex_sha256(inner.as_bytes()) == sha
    {
        return Ok(inner);
    }
    Err("the entry does not match its SHA-256 (altered, or re-encoded by the export)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> MapContext {
        MapContext {
            recipient_account_id: "123456789012".into(),
            record_ttl: 2_592_000,
            now: 1_700_000_600,
            signatures: Default::default(),
        }
    }

    fn data(e: &AuditEvent) -> Value {
        serde_json::from_str(&e.event_data).unwrap()
    }

    #[test]
    fn a_request_maps_to_a_schema_event_with_the_entry_verbatim() {
        let text = r#"{"client_ip":"10.0.0.7","method":"post","path":"/default/services/8e1f6a7b-0a2c-4d3e-9f00-123456789abc/routes?tags=a","payload":"{\"name\":\"r1\"}","rbac_user_id":"u-1","rbac_user_name":"alice","request_id":"OjOcUBvt6q6XJlX3dd6BSpy1uUkTyctC","request_timestamp":1700000000,"status":201,"ttl":2591400,"workspace":"w-1","new_field":{"x":1.50}}"#;
        let e = Entry::parse(EntryKind::Request, text).unwrap();
        let events = map_entry(&e, &ctx()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id, "req-OjOcUBvt6q6XJlX3dd6BSpy1uUkTyctC");
        let d = data(&events[0]);
        assert_eq!(d["eventTime"], "2023-11-14T22:13:20Z");
        assert_eq!(d["eventName"], "POST /{workspace}/services/{id}/routes");
        assert_eq!(d["UID"], "OjOcUBvt6q6XJlX3dd6BSpy1uUkTyctC");
        assert_eq!(d["recipientAccountId"], "123456789012");
        assert_eq!(d["sourceIPAddress"], "10.0.0.7");
        assert_eq!(d["userIdentity"]["principalId"], "u-1");
        assert_eq!(d["requestParameters"]["payload"]["name"], "r1");
        assert_eq!(d["requestParameters"]["queryString"], "tags=a");
        assert!(
            events[0].event_data.contains(&format!("\"kongAuditEntry\":{text}")),
            "raw bytes embedded verbatim"
        );
        let back = recover(events.iter().map(|e| e.event_data.as_str()));
        assert_eq!(back.entries[0].json, text);
    }

    #[test]
    fn no_fake_ip_and_errors_marked() {
        let e = Entry::parse(
            EntryKind::Request,
            r#"{"request_id":"a","client_ip":"unknown","method":"GET","path":"/x","status":403,"request_timestamp":1700000000}"#,
        )
        .unwrap();
        let d = data(&map_entry(&e, &ctx()).unwrap()[0]);
        assert!(d.get("sourceIPAddress").is_none());
        assert_eq!(d["errorCode"], "HTTP403");
        assert_eq!(d["userIdentity"]["type"], "Unknown");
    }

    #[test]
    fn objects_without_timestamp_take_their_time_from_ttl() {
        let c = ctx();
        let e = Entry::parse(
            EntryKind::Object,
            r#"{"id":"o1","request_id":"r","dao_name":"consumers","operation":"create","ttl":2591000}"#,
        )
        .unwrap();
        assert_eq!(event_time(&e, &c), (c.now + 2_591_000 - c.record_ttl, "ttl"));
        let pre_migration = Entry::parse(EntryKind::Object, r#"{"id":"o2","request_timestamp":1,"ttl":10}"#).unwrap();
        assert_eq!(event_time(&pre_migration, &c).1, "ttl");
        assert_eq!(data(&map_entry(&e, &c).unwrap()[0])["eventName"], "create consumers");
    }

    #[test]
    fn remaining_ttl_prefers_ttl_then_timestamp() {
        let c = ctx();
        let with_ttl = Entry::parse(
            EntryKind::Request,
            r#"{"request_id":"a","ttl":1234,"request_timestamp":1700000000}"#,
        )
        .unwrap();
        assert_eq!(remaining_ttl(&with_ttl, &c), 1234);
        let no_ttl = Entry::parse(EntryKind::Request, r#"{"request_id":"a","request_timestamp":1700000000}"#).unwrap();
        assert_eq!(remaining_ttl(&no_ttl, &c), (1_700_000_000 + 2_592_000 - c.now) as u64);
        let expired = Entry::parse(EntryKind::Request, r#"{"request_id":"a","ttl":-5}"#).unwrap();
        assert_eq!(remaining_ttl(&expired, &c), 0);
    }

    #[test]
    fn odd_ids_are_hashed_into_the_allowed_alphabet() {
        let id = event_id(EntryKind::Object, "a/b c");
        assert!(
            id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{id}"
        );
        assert_ne!(id, event_id(EntryKind::Object, "a/b d"));
        assert_eq!(event_id(EntryKind::Object, "0e1f"), "obj-0e1f");
    }

    #[test]
    fn oversize_entries_become_parts_within_limits_that_reassemble_exactly() {
        let big = "x\"\u{1}é".repeat(30_000);
        let text = serde_json::to_string(
            &json!({"id":"o-big","dao_name":"plugins","operation":"update","request_timestamp":1700000000,"entity": big}),
        )
        .unwrap();
        let e = Entry::parse(EntryKind::Object, &text).unwrap();
        let events = map_entry(&e, &ctx()).unwrap();
        assert!(events.len() > 5);
        for (i, ev) in events.iter().enumerate() {
            let d = data(ev);
            let extra = serde_json::to_string(&d["additionalEventData"]).unwrap();
            assert!(extra.len() <= ADDITIONAL_EVENT_DATA_MAX, "part {i}: {}", extra.len());
            assert!(serde_json::to_string(&d["requestParameters"]).unwrap().len() <= PARAMETERS_MAX);
            assert_eq!(d["additionalEventData"]["kongAuditEntryPart"], i + 1);
        }
        assert_eq!(events[1].id, "obj-o-big-p2");
        let mut shuffled: Vec<&str> = events.iter().map(|e| e.event_data.as_str()).collect();
        shuffled.reverse();
        let back = recover(shuffled);
        assert!(back.problems.is_empty(), "{:?}", back.problems);
        assert_eq!(back.entries[0].json, text);
        let missing = recover(events[1..].iter().map(|e| e.event_data.as_str()));
        assert!(missing.entries.is_empty() && missing.problems[0].contains("missing"));
    }

    #[test]
    fn templates() {
        assert_eq!(template_path("/consumers/bob/key-auth/3"), "/consumers/{id}/key-auth/{id}");
        assert_eq!(template_path("/auth?session_logout=true"), "/auth");
        assert_eq!(template_path("/rbac/users/alice/roles"), "/rbac/users/{id}/roles");
        assert_eq!(template_path("/audit/requests"), "/audit/requests");
        assert_eq!(template_path(""), "/");
    }

    #[test]
    fn huge_paths_and_keys_are_cut_in_request_parameters_but_whole_in_the_entry() {
        let path = format!("/services/{}", "p".repeat(300_000));
        let text = serde_json::to_string(
            &json!({"request_id":"huge-path","method":"GET","path": path,"request_timestamp":1700000000,"status":200}),
        )
        .unwrap();
        let e = Entry::parse(EntryKind::Request, &text).unwrap();
        let events = map_entry(&e, &ctx()).unwrap();
        let d = data(&events[0]);
        let params = serde_json::to_string(&d["requestParameters"]).unwrap();
        assert!(params.len() <= PARAMETERS_MAX, "{}", params.len());
        assert_eq!(d["requestParameters"]["path"].as_str().unwrap().len(), STRING_FIELD_MAX);
        let back = recover(events.iter().map(|e| e.event_data.as_str()));
        assert_eq!(back.entries[0].json, text);

        let key = "k".repeat(200_000);
        let text = serde_json::to_string(&json!({"id":"o-huge-key","entity_key": key,"dao_name":"x","operation":"create"})).unwrap();
        let e = Entry::parse(EntryKind::Object, &text).unwrap();
        let events = map_entry(&e, &ctx()).unwrap();
        let params = serde_json::to_string(&data(&events[0])["requestParameters"]).unwrap();
        assert!(params.len() <= PARAMETERS_MAX, "{}", params.len());
    }

    #[test]
    fn numbers_that_grow_when_re_encoded_still_fit_additional_event_data() {
        // 5,000 × `1e9,` is 20 kB as sent, under the limit; re-encoded each becomes `1000000000.0`.
        let numbers = vec!["1e9"; 5_000].join(",");
        let text = format!(r#"{{"request_id":"grow","request_timestamp":1700000000,"n":[{numbers}]}}"#);
        assert!(text.len() < ADDITIONAL_EVENT_DATA_MAX - 1_000);
        let e = Entry::parse(EntryKind::Request, &text).unwrap();
        let events = map_entry(&e, &ctx()).unwrap();
        for ev in &events {
            let reencoded = data(ev)["additionalEventData"].to_string();
            assert!(reencoded.len() <= ADDITIONAL_EVENT_DATA_MAX, "{}", reencoded.len());
        }
        assert!(
            data(&events[0])["additionalEventData"]["kongAuditEntryText"].is_string(),
            "carried as text, which does not grow"
        );
        assert_eq!(recover(events.iter().map(|e| e.event_data.as_str())).entries[0].json, text);
    }

    #[test]
    fn deeply_nested_entries_travel_as_text_so_any_parser_reads_the_event() {
        let deep = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
        let text = format!(
            r#"{{"request_id":"deep","request_timestamp":1700000000,"payload":"{}","x":{}}}"#,
            deep(120),
            deep(126)
        );
        let e = Entry::parse(EntryKind::Request, &text).unwrap();
        assert!(e.problem.is_none(), "126 levels still parse");
        let events = map_entry(&e, &ctx()).unwrap();
        for ev in &events {
            let d = data(ev);
            assert!(d["requestParameters"]["payload"].is_string() || d.get("requestParameters").is_none());
        }
        assert!(data(&events[0])["additionalEventData"]["kongAuditEntryText"].is_string());
        assert_eq!(recover(events.iter().map(|e| e.event_data.as_str())).entries[0].json, text);
    }

    #[test]
    fn parts_are_the_same_on_every_read_so_parts_of_two_runs_reassemble_into_one_entry() {
        let version = |ttl: u32| {
            serde_json::to_string(&json!({"id":"o-twice","dao_name":"plugins","operation":"update","request_timestamp":1700000000,"ttl":ttl,"entity":"y".repeat(50_000)}))
                .unwrap()
        };
        // Read once with ttl 2,591,000 and again, a few days later, with 99: one digit-count apart.
        let (a, b) = (version(2_591_000), version(99));
        let mapped = |t: &str| map_entry_detailed(&Entry::parse(EntryKind::Object, t).unwrap(), &ctx()).unwrap();
        let (first, second) = (mapped(&a), mapped(&b));
        assert_eq!(first.parts_sha256, second.parts_sha256, "the SHA-256 ignores ttl");
        let ids = |m: &Mapped| m.events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&first), ids(&second), "same part ids and count");
        assert_eq!(first.events[1..], second.events[1..], "parts after the first are identical");

        // Part 1 from the first read, the rest from the second: one entry, exactly as first read.
        let mut lines = vec![first.events[0].event_data.as_str()];
        lines.extend(second.events[1..].iter().map(|e| e.event_data.as_str()));
        let back = recover(lines);
        assert!(back.problems.is_empty(), "{:?}", back.problems);
        assert_eq!(back.entries.len(), 1);
        assert_eq!(back.entries[0].json, a);
        // And the other way round.
        let mut lines = vec![second.events[0].event_data.as_str()];
        lines.extend(first.events[1..].iter().map(|e| e.event_data.as_str()));
        assert_eq!(recover(lines).entries[0].json, b);
    }

    #[test]
    fn an_entry_near_the_limit_does_not_flip_between_one_event_and_parts_as_ttl_shrinks() {
        let sized = |filler: usize, ttl: u64| {
            serde_json::to_string(&json!({"request_id":"r-edge","request_timestamp":1700000000,"ttl":ttl,"payload":"p".repeat(filler)}))
                .unwrap()
        };
        for filler in (26_500..27_800).step_by(10) {
            let count = |ttl| {
                map_entry(&Entry::parse(EntryKind::Request, &sized(filler, ttl)).unwrap(), &ctx())
                    .unwrap()
                    .len()
            };
            assert_eq!(count(2_591_999), count(1), "filler {filler}");
        }
    }

    #[test]
    fn recovery_checks_whole_entries_and_reads_stringified_ones() {
        let text = r#"{"request_id":"w1","request_timestamp":1700000000,"x":1.50}"#;
        let e = Entry::parse(EntryKind::Request, text).unwrap();
        let line = map_entry(&e, &ctx()).unwrap().remove(0).event_data;
        let altered = line.replace("1.50", "1.5");
        let back = recover([altered.as_str()]);
        assert!(
            back.entries.is_empty() && back.problems[0].contains("SHA-256"),
            "{:?}",
            back.problems
        );
        let mut v: Value = serde_json::from_str(&line).unwrap();
        v["additionalEventData"]["kongAuditEntry"] = Value::String(text.into());
        let stringified = v.to_string();
        assert_eq!(recover([stringified.as_str()]).entries[0].json, text);
    }

    #[test]
    fn malformed_entries_are_refused_with_the_reason() {
        let e = Entry::parse(EntryKind::Request, "[1,2]").unwrap();
        assert!(map_entry(&e, &ctx()).unwrap_err().0.contains("not a JSON object"));
    }
}
