//! The text Kong signs for an audit row.
//!
//! Kong signs a row in the request's log phase, before the database adds its own fields: the values
//! of the fields present at that moment, in sorted key order, joined with `|`. So the text is
//! rebuilt from what the API returns by leaving out what was added later (`request_timestamp`,
//! `ttl`, the legacy `expire`, the `signature` itself, and an object's `id`) and every `null`
//! (a field that was nil when Kong signed). Every other field counts, known or not, so rows of a
//! Kong that signs a new field still verify.
//!
//! Values are rendered as Lua renders them when it joins a table: strings as they are (the JSON
//! escapes decoded: Kong's encoder writes `/` as `\/`), numbers as `%.14g` (`200` stays `200`).
//! Lua cannot join booleans or tables, so Kong never signs a row holding one: such a row has no
//! signed text, and its verdict says why.

use serde_json::{Map, Number, Value};

use crate::kong::EntryKind;

/// Fields the database adds after Kong signed the row (or the signature itself).
const ADDED_AFTER_SIGNING: [&str; 4] = ["signature", "ttl", "expire", "request_timestamp"];

/// Longest field name quoted in a reason: names come from the row and may be anything.
const NAME_SHOWN: usize = 64;

/// Why a row has no signed text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field '{field}' is {what}: Kong signs only text and numbers, so no Kong signature can cover this row as it reads now")]
pub struct Unsignable {
    pub field: String,
    pub what: &'static str,
}

/// Whether Kong's signature covers this field of a row of this kind.
pub fn is_signed_field(kind: EntryKind, name: &str) -> bool {
    !(ADDED_AFTER_SIGNING.contains(&name) || (kind == EntryKind::Object && name == "id"))
}

/// The exact bytes Kong signed for this row, as far as the row's fields tell.
pub fn signed_text(kind: EntryKind, fields: &Map<String, Value>) -> Result<String, Unsignable> {
    let mut signed: Vec<(&String, &Value)> = fields
        .iter()
        .filter(|(name, value)| !value.is_null() && is_signed_field(kind, name))
        .collect();
    // Byte order, as Lua compares strings (field names are ASCII); the map's own order is not relied on.
    signed.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut text = String::with_capacity(signed.iter().map(|(_, v)| v.as_str().map_or(16, str::len) + 1).sum());
    for (i, (name, value)) in signed.into_iter().enumerate() {
        if i > 0 {
            text.push('|');
        }
        match value {
            Value::String(s) => text.push_str(s),
            Value::Number(n) => text.push_str(&lua_number(n)),
            other => {
                return Err(Unsignable {
                    field: shorten(name),
                    what: match other {
                        Value::Bool(_) => "a boolean",
                        Value::Array(_) => "an array",
                        _ => "an object",
                    },
                });
            }
        }
    }
    Ok(text)
}

/// A number as Lua's `tostring` writes it (`%.14g`): integers below 10^14 as plain digits.
pub fn lua_number(n: &Number) -> String {
    const PLAIN: u64 = 100_000_000_000_000;
    if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() < PLAIN) {
        return i.to_string();
    }
    format_g14(n.as_f64().unwrap_or(f64::NAN))
}

/// C's `%.14g`: 14 significant digits, trailing zeros dropped, exponent form outside 1e-4..1e14.
fn format_g14(x: f64) -> String {
    const PRECISION: i32 = 14;
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    // The exponent after rounding to 14 significant digits decides the form, as in C.
    let scientific = format!("{:.*e}", (PRECISION - 1) as usize, x);
    let (mantissa, exponent) = scientific.split_once('e').expect("`e` formatting has an exponent");
    let exponent: i32 = exponent.parse().expect("`e` formatting has a numeric exponent");
    if !(-4..PRECISION).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip_zeros(mantissa), exponent.abs())
    } else {
        let decimals = (PRECISION - 1 - exponent) as usize;
        strip_zeros(&format!("{x:.decimals$}")).to_string()
    }
}

fn strip_zeros(digits: &str) -> &str {
    if digits.contains('.') {
        digits.trim_end_matches('0').trim_end_matches('.')
    } else {
        digits
    }
}

fn shorten(name: &str) -> String {
    if name.len() <= NAME_SHOWN {
        return name.to_string();
    }
    let mut end = NAME_SHOWN;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &name[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_request_row_gives_its_values_in_key_order_without_the_fields_added_after_signing() {
        let row = fields(json!({
            "client_ip": "127.0.0.1", "method": "GET", "path": "/status", "payload": null,
            "rbac_user_id": null, "rbac_user_name": null, "removed_from_payload": null,
            "request_id": "OjOcUBvt6q6XJlX3dd6BSpy1uUkTyctC", "request_source": null,
            "request_timestamp": 1676424547, "signature": "c2ln", "status": 200, "ttl": 2591997,
            "workspace": "1065b6d6-219f-4002-b3e9-334fc3eff46c", "expire": 1544723418009_u64
        }));
        assert_eq!(
            signed_text(EntryKind::Request, &row).unwrap(),
            "127.0.0.1|GET|/status|OjOcUBvt6q6XJlX3dd6BSpy1uUkTyctC|200|1065b6d6-219f-4002-b3e9-334fc3eff46c"
        );
    }

    #[test]
    fn an_object_row_leaves_out_its_own_id_but_a_request_row_keeps_an_id_field() {
        let row = fields(json!({
            "id": "7ebabee7-2b09-445d-bc1f-2092c4ddc4be", "dao_name": "consumers", "operation": "create",
            "entity": "{\"username\":\"bob\"}", "entity_key": "16787ed7", "request_id": "59fp",
            "request_timestamp": 1581617463, "rbac_user_id": null, "removed_from_entity": null, "ttl": 5
        }));
        assert_eq!(
            signed_text(EntryKind::Object, &row).unwrap(),
            "consumers|{\"username\":\"bob\"}|16787ed7|create|59fp"
        );
        let request = fields(json!({"id": "x", "request_id": "r"}));
        assert_eq!(signed_text(EntryKind::Request, &request).unwrap(), "x|r");
    }

    #[test]
    fn unknown_fields_count_and_sort_bytewise() {
        let row = fields(json!({"b": "2", "a_new_field": "1", "B": "0", "request_id": "r"}));
        assert_eq!(signed_text(EntryKind::Request, &row).unwrap(), "0|1|2|r");
    }

    #[test]
    fn escaped_text_is_signed_as_the_decoded_string() {
        let kong_json = r#"{"path":"\/default\/services\/caf\u00e9?q=\u2603","method":"GET","request_id":"r\"1","empty":""}"#;
        let row: Map<String, Value> = serde_json::from_str(kong_json).unwrap();
        assert_eq!(
            signed_text(EntryKind::Request, &row).unwrap(),
            "|GET|/default/services/café?q=☃|r\"1"
        );
    }

    #[test]
    fn numbers_are_written_as_lua_writes_them() {
        let n = |text: &str| lua_number(&serde_json::from_str::<Number>(text).unwrap());
        // Expected values from C's printf("%.14g").
        for (json, lua) in [
            ("200", "200"),
            ("-7", "-7"),
            ("0", "0"),
            ("200.0", "200"),
            ("1.5", "1.5"),
            ("0.1", "0.1"),
            ("99999999999999", "99999999999999"),
            ("100000000000000", "1e+14"),
            ("123456789012345", "1.2345678901234e+14"),
            ("18446744073709551615", "1.844674407371e+19"),
            ("0.0001", "0.0001"),
            ("0.00001234", "1.234e-05"),
            ("3.14159265358979", "3.1415926535898"),
            ("1e300", "1e+300"),
        ] {
            assert_eq!(n(json), lua, "{json}");
        }
    }

    #[test]
    fn booleans_arrays_and_objects_cannot_be_signed_and_say_which_field() {
        for (value, what) in [(json!(true), "a boolean"), (json!([1]), "an array"), (json!({"a": 1}), "an object")] {
            let row = fields(json!({"request_id": "r", "odd": value}));
            let e = signed_text(EntryKind::Request, &row).unwrap_err();
            assert_eq!((e.field.as_str(), e.what), ("odd", what));
            assert!(e.to_string().contains("field 'odd' is"), "{e}");
        }
        // Not signed, so not in the way.
        let row = fields(json!({"request_id": "r", "ttl": [1], "signature": {"x": 1}}));
        assert_eq!(signed_text(EntryKind::Request, &row).unwrap(), "r");
        let long = "n".repeat(10_000);
        let row = fields(json!({ long: false }));
        assert!(signed_text(EntryKind::Request, &row).unwrap_err().to_string().len() < 300);
    }
}
