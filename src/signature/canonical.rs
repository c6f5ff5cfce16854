//! The text Kong signs for an audit row.
//!
//! Kong signs a row in the request's log phase, before the database adds its own fields: the values
//! of the fields present at that moment, in sorted key order, joined with `|`. So the text is
//! rebuilt from what the API returns by leaving out what was added later (`request_timestamp`,
//! `ttl`, the `signature` itself, an object's `id`, a request's legacy `expire`) and every `null`
//! (a field that was nil when Kong signed). Every other field counts, known or not, so rows of a
//! Kong that signs a new field still verify.
//!
//! The legacy `expire` of an object row (Kong Enterprise's first audit code, 2018 to April 2019)
//! is the exception the sources disagree on: the object rows of that code are said to have been
//! signed with it, while a reading of that code's request path has it set after signing. Such a
//! row has two candidate texts, with `expire` first and without it second, and verifies when
//! either does. Each is a text only Kong's key can have signed, so the fallback costs nothing in
//! strength: an `expire` altered on a row signed with it fails both.
//!
//! Values are rendered as Kong's LuaJIT renders them when it joins a table: strings as they are
//! (the JSON escapes decoded: Kong's encoder writes `/` as `\/`), numbers as `%.14g` but rounded
//! as LuaJIT rounds (`200` stays `200`; see [`lua_number`]). Lua cannot join booleans or tables,
//! so Kong never signs a row holding one: such a row has no signed text, and its verdict says why.

use serde_json::{Map, Number, Value};

use crate::kong::EntryKind;

/// Longest field name quoted in a reason: names come from the row and may be anything.
const NAME_SHOWN: usize = 64;

/// Why a row has no signed text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field '{field}' is {what}: Kong signs only text and numbers, so no Kong signature can cover this row as it reads now")]
pub struct Unsignable {
    pub field: String,
    pub what: &'static str,
}

/// Whether Kong's signature covers this field of a row of this kind (an object's `expire`: in its
/// first candidate text, see the module's documentation).
pub fn is_signed_field(kind: EntryKind, name: &str) -> bool {
    match name {
        // Added by the database after Kong signed, or the signature itself.
        "signature" | "ttl" | "request_timestamp" => false,
        "expire" => kind == EntryKind::Object,
        "id" => kind == EntryKind::Request,
        _ => true,
    }
}

/// The exact bytes Kong signed for this row, as far as the row's fields tell: the first of
/// [`signed_texts`].
pub fn signed_text(kind: EntryKind, fields: &Map<String, Value>) -> Result<String, Unsignable> {
    text(kind, fields, true)
}

/// Every text Kong may have signed for this row, the likelier first: one, or two for an object row
/// that carries the legacy `expire` (with it, then without it).
pub fn signed_texts(kind: EntryKind, fields: &Map<String, Value>) -> Result<Vec<String>, Unsignable> {
    let with_expire = text(kind, fields, true)?;
    let has_expire = kind == EntryKind::Object && fields.get("expire").is_some_and(|v| !v.is_null());
    if !has_expire {
        return Ok(vec![with_expire]);
    }
    Ok(vec![with_expire, text(kind, fields, false)?])
}

fn text(kind: EntryKind, fields: &Map<String, Value>, keep_expire: bool) -> Result<String, Unsignable> {
    let mut signed: Vec<(&String, &Value)> = fields
        .iter()
        .filter(|(name, value)| !value.is_null() && is_signed_field(kind, name) && (keep_expire || name.as_str() != "expire"))
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

/// A number as Kong's LuaJIT writes it when it joins a row: `%.14g`, with LuaJIT's own rounding.
///
/// LuaJIT formats numbers itself rather than through C's printf: it takes the double's exact
/// decimal value and rounds it to 14 significant digits half away from zero, where glibc's printf
/// rounds a tie to even. They differ only on exact ties: LuaJIT writes `123456789012345` as
/// `1.2345678901235e+14` and `12345678901234.5` as `12345678901235`, printf `1.2345678901234e+14`
/// and `12345678901234`. Kong's own fields are strings and integers below 10^14, written as plain
/// digits either way; this is for any other number a row may carry.
pub fn lua_number(n: &Number) -> String {
    const PLAIN: u64 = 100_000_000_000_000;
    if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() < PLAIN) {
        return i.to_string();
    }
    format_g14(n.as_f64().unwrap_or(f64::NAN))
}

/// `%.14g` as LuaJIT 2.1 writes it (`lj_strfmt_wfnum`): 14 significant digits of the exact value,
/// a tie rounded up in magnitude, trailing zeros dropped, the exponent form outside 1e-4..1e14.
fn format_g14(x: f64) -> String {
    const PRECISION: usize = 14;
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0");
    }
    // Every digit of the exact value (a double has at most 767 significant digits), so that no
    // rounding happens here: Rust would round a tie to even.
    let exact = format!("{:.780e}", x.abs());
    let (mantissa, exponent) = exact.split_once('e').expect("`e` formatting has an exponent");
    let mut exponent: i32 = exponent.parse().expect("`e` formatting has a numeric exponent");
    let all: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    let mut digits = all[..PRECISION].to_vec();
    if all[PRECISION] >= b'5' {
        let carried_out = digits.iter_mut().rev().all(|d| {
            if *d == b'9' {
                *d = b'0';
                true
            } else {
                *d += 1;
                false
            }
        });
        if carried_out {
            digits.insert(0, b'1');
            digits.pop();
            exponent += 1;
        }
    }
    let digits = String::from_utf8(digits).expect("ASCII digits");
    if (-4..PRECISION as i32).contains(&exponent) {
        let text = if exponent >= 0 {
            let (whole, fraction) = digits.split_at(exponent as usize + 1);
            format!("{whole}.{fraction}")
        } else {
            format!("0.{}{digits}", "0".repeat((-exponent - 1) as usize))
        };
        format!("{sign}{}", strip_zeros(&text))
    } else {
        let mantissa = format!("{}.{}", &digits[..1], &digits[1..]);
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{}e{exponent_sign}{:02}", strip_zeros(&mantissa), exponent.abs())
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
    fn an_object_row_with_the_legacy_expire_has_two_texts_with_expire_first() {
        let row = fields(json!({
            "id": "7ebabee7", "dao_name": "consumers", "entity": "{}", "entity_key": "16787ed7",
            "expire": 1544723418009_u64, "operation": "create", "request_id": "59fp", "ttl": 3
        }));
        assert_eq!(
            signed_texts(EntryKind::Object, &row).unwrap(),
            [
                "consumers|{}|16787ed7|1544723418009|create|59fp",
                "consumers|{}|16787ed7|create|59fp"
            ]
        );
        assert_eq!(
            signed_text(EntryKind::Object, &row).unwrap(),
            "consumers|{}|16787ed7|1544723418009|create|59fp"
        );
        // A request row's expire was set at insert: never signed, one text.
        let request = fields(json!({"request_id": "r", "expire": 1544723418013_u64, "status": 200}));
        assert_eq!(signed_texts(EntryKind::Request, &request).unwrap(), ["r|200"]);
        // Without expire, or with a null one, an object row has one text.
        let mut plain = row.clone();
        plain.insert("expire".into(), Value::Null);
        assert_eq!(
            signed_texts(EntryKind::Object, &plain).unwrap(),
            ["consumers|{}|16787ed7|create|59fp"]
        );
        plain.remove("expire");
        assert_eq!(signed_texts(EntryKind::Object, &plain).unwrap().len(), 1);
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
    fn numbers_are_written_as_kongs_luajit_writes_them() {
        let n = |text: &str| lua_number(&serde_json::from_str::<Number>(text).unwrap());
        // Expected values from LuaJIT 2.1 (`table.concat({x}, "|")`), the runtime Kong signs in.
        for (json, lua) in [
            ("200", "200"),
            ("-7", "-7"),
            ("0", "0"),
            ("-0.0", "-0"),
            ("200.0", "200"),
            ("1.5", "1.5"),
            ("0.1", "0.1"),
            ("0.30000000000000004", "0.3"),
            ("99999999999999", "99999999999999"),
            ("100000000000000", "1e+14"),
            ("1000000000000000", "1e+15"),
            ("18446744073709551615", "1.844674407371e+19"),
            ("9007199254740993", "9.007199254741e+15"),
            ("123456789012345678", "1.2345678901235e+17"),
            ("0.0001", "0.0001"),
            ("0.00001", "1e-05"),
            ("0.00001234", "1.234e-05"),
            ("0.000123456789012345", "0.00012345678901234"),
            ("1.00000000000005", "1"),
            ("3.14159265358979", "3.1415926535898"),
            ("1e300", "1e+300"),
            ("1.7976931348623157e308", "1.7976931348623e+308"),
            ("5e-324", "4.9406564584125e-324"),
        ] {
            assert_eq!(n(json), lua, "{json}");
        }
    }

    #[test]
    fn a_tie_at_the_fourteenth_digit_rounds_up_as_luajit_does_not_to_even_as_printf_does() {
        let n = |text: &str| lua_number(&serde_json::from_str::<Number>(text).unwrap());
        // Exact doubles whose fifteenth significant digit is a final 5. C's printf("%.14g") gives
        // 1.2345678901234e+14, -1.2345678901234e+14 and 12345678901234; LuaJIT 2.1 the values below.
        assert_eq!(n("123456789012345"), "1.2345678901235e+14");
        assert_eq!(n("-123456789012345"), "-1.2345678901235e+14");
        assert_eq!(n("12345678901234.5"), "12345678901235");
        // A carry through every digit moves the exponent, and with it the form.
        assert_eq!(n("99999999999999.5"), "1e+14");
        assert_eq!(n("100000000000000.5"), "1e+14");
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
