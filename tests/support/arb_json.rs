//! Proptest strategies for arbitrary JSON *text*: not only arbitrary values, but arbitrary ways of
//! writing them (whitespace, `\uXXXX` and `\/` escapes, surrogate pairs, number spellings such as
//! `1E+2` or `2.50`, duplicate keys), so byte-for-byte properties are tested on bytes Kong could send.
#![allow(dead_code)]

use proptest::prelude::*;

#[derive(Debug, Clone)]
pub enum Piece {
    /// One character, written plainly (escaped only where JSON requires it) or as `\uXXXX`.
    Char(char, bool),
    /// A short text repeated many times: large strings without generating them char by char.
    Repeat(String, usize),
}

#[derive(Debug, Clone)]
pub enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(Vec<Piece>),
    Arr(Vec<J>, u8),
    Obj(Vec<(Vec<Piece>, J)>, u8),
    /// Text written as is: valid JSON syntax that parsers may still refuse (`1e400`, `"\ud800"`).
    Raw(String),
}

const WHITESPACE: [&str; 4] = ["", " ", "\n  ", "\t"];

fn push_char(out: &mut String, c: char, unicode: bool) {
    if unicode {
        let mut units = [0u16; 2];
        for u in c.encode_utf16(&mut units) {
            out.push_str(&format!("\\u{:04x}", u));
        }
        return;
    }
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '/' => out.push_str("\\/"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
        c => out.push(c),
    }
}

pub fn render_str(pieces: &[Piece], out: &mut String) {
    out.push('"');
    for p in pieces {
        match p {
            Piece::Char(c, unicode) => push_char(out, *c, *unicode),
            Piece::Repeat(s, n) => {
                let mut one = String::new();
                for c in s.chars() {
                    push_char(&mut one, c, false);
                }
                out.push_str(&one.repeat(*n));
            }
        }
    }
    out.push('"');
}

impl J {
    pub fn render(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) | J::Raw(n) => out.push_str(n),
            J::Str(p) => render_str(p, out),
            J::Arr(items, ws) => {
                let ws = WHITESPACE[*ws as usize % 4];
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(ws);
                    item.render(out);
                }
                out.push(']');
            }
            J::Obj(members, ws) => {
                let ws = WHITESPACE[*ws as usize % 4];
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(ws);
                    render_str(k, out);
                    out.push_str(ws);
                    out.push(':');
                    v.render(out);
                }
                out.push_str(ws);
                out.push('}');
            }
        }
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        self.render(&mut s);
        s
    }
}

pub fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        1 => proptest::char::range('\u{0}', '\u{1f}'),
        1 => Just('"'),
        1 => Just('\\'),
        1 => Just('/'),
        1 => proptest::char::range('\u{80}', '\u{7ff}'),
        1 => proptest::char::range('\u{e000}', '\u{ffff}'),
        1 => proptest::char::range('\u{10000}', '\u{10ffff}'),
        1 => any::<char>(),
    ]
}

pub fn pieces(max_repeat: usize) -> impl Strategy<Value = Vec<Piece>> {
    let piece = prop_oneof![
        12 => (any_char(), proptest::bool::weighted(0.2)).prop_map(|(c, u)| Piece::Char(c, u)),
        1 => (proptest::collection::vec(any_char(), 1..6).prop_map(|v| v.into_iter().collect::<String>()), 1..=max_repeat.max(1))
            .prop_map(|(s, n)| Piece::Repeat(s, n)),
    ];
    proptest::collection::vec(piece, 0..12)
}

pub fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,12})?([eE][+-]?[0-9]{1,2})?",
        Just("-0".to_string()),
        Just("2.50".to_string()),
    ]
}

pub fn value(max_repeat: usize) -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        number().prop_map(J::Num),
        pieces(max_repeat).prop_map(J::Str),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            (proptest::collection::vec(inner.clone(), 0..6), 0u8..4).prop_map(|(v, ws)| J::Arr(v, ws)),
            (proptest::collection::vec((pieces(4), inner), 0..6), 0u8..4).prop_map(|(m, ws)| J::Obj(m, ws)),
        ]
    })
}

/// The string a key's pieces stand for.
pub fn decoded(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Char(c, _) => c.to_string(),
            Piece::Repeat(s, n) => s.repeat(*n),
        })
        .collect()
}

fn plain(s: &str) -> Vec<Piece> {
    s.chars().map(|c| Piece::Char(c, false)).collect()
}

/// Fields Kong's entries have, so the mapping's every branch is reached.
const KNOWN: [&str; 18] = [
    "request_id",
    "id",
    "method",
    "path",
    "payload",
    "status",
    "client_ip",
    "request_timestamp",
    "ttl",
    "expire",
    "rbac_user_id",
    "rbac_user_name",
    "workspace",
    "request_source",
    "dao_name",
    "operation",
    "entity_key",
    "entity",
];

/// A value for a known field: usually of the type Kong uses, sometimes anything at all.
fn known_value(field: &'static str, max_repeat: usize) -> BoxedStrategy<J> {
    let typical: BoxedStrategy<J> = match field {
        "status" => (100i64..600).prop_map(|n| J::Num(n.to_string())).boxed(),
        "request_timestamp" | "ttl" | "expire" => prop_oneof![
            (1_600_000_000i64..1_800_000_000).prop_map(|n| J::Num(n.to_string())),
            (0i64..3_000_000).prop_map(|n| J::Num(n.to_string())),
            number().prop_map(J::Num),
        ]
        .boxed(),
        "client_ip" => prop_oneof![
            Just(J::Str(plain("10.0.0.1"))),
            Just(J::Str(plain("2001:db8::1"))),
            pieces(4).prop_map(J::Str)
        ]
        .boxed(),
        "payload" | "entity" => prop_oneof![
            value(max_repeat).prop_map(|v| J::Str(plain(&v.text()))),
            pieces(max_repeat).prop_map(J::Str),
        ]
        .boxed(),
        "path" => prop_oneof![
            Just(J::Str(plain("/default/services/8e1f6a7b-0a2c-4d3e-9f00-123456789abc/routes?x=1"))),
            pieces(max_repeat).prop_map(J::Str),
        ]
        .boxed(),
        _ => pieces(max_repeat).prop_map(J::Str).boxed(),
    };
    prop_oneof![6 => typical, 1 => value(4)].boxed()
}

/// An entry of `kind` as JSON text. With `keyed`, it carries a usable key of any shape (so the
/// mapping accepts it); otherwise anything goes, non-objects included.
pub fn entry_text(key_field: &'static str, keyed: bool, max_repeat: usize) -> BoxedStrategy<String> {
    let field = proptest::sample::select(&KNOWN[..]).prop_flat_map(move |f| known_value(f, max_repeat).prop_map(move |v| (plain(f), v)));
    let extra = (pieces(4), value(max_repeat));
    let members = proptest::collection::vec(prop_oneof![3 => field, 1 => extra], 0..10);
    let key = prop_oneof![
        "[A-Za-z0-9_-]{1,40}",
        "[ -~]{1,30}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
        "[a-z]{150,300}",
    ];
    let object = (
        members,
        key,
        0u8..4,
        any::<proptest::sample::Index>(),
        proptest::bool::weighted(0.1),
    )
        .prop_map(move |(mut members, key, ws, at, numeric)| {
            if keyed {
                let v = if numeric {
                    J::Num(key.len().to_string())
                } else {
                    J::Str(plain(&key))
                };
                members.retain(|(k, _)| decoded(k) != key_field);
                let i = at.index(members.len() + 1);
                members.insert(i, (plain(key_field), v));
            }
            J::Obj(members, ws).text()
        });
    if keyed {
        object.boxed()
    } else {
        prop_oneof![4 => object, 1 => value(max_repeat).prop_map(|v| v.text())].boxed()
    }
}

/// JSON that is valid syntax but that parsers refuse or choke on.
pub fn hostile_leaf() -> impl Strategy<Value = J> {
    prop_oneof![
        Just(J::Raw("1e400".into())),
        Just(J::Raw("-1e400".into())),
        Just(J::Raw("123456789012345678901234567890e300".into())),
        Just(J::Raw("123456789012345678901234567890".into())),
        Just(J::Raw("\"\\ud800\"".into())),
        Just(J::Raw("\"a\\udc00b\\ud800\"".into())),
        (120usize..140).prop_map(|d| J::Raw(format!("{}{}", "[".repeat(d), "]".repeat(d)))),
        Just(J::Raw(format!("{}{}", "{\"a\":".repeat(300), "1}".repeat(300)))),
    ]
}

/// Any value, hostile parts included.
pub fn hostile_value(max_repeat: usize) -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        3 => Just(J::Null),
        3 => number().prop_map(J::Num),
        6 => pieces(max_repeat).prop_map(J::Str),
        2 => hostile_leaf(),
    ];
    leaf.prop_recursive(3, 24, 5, move |inner| {
        prop_oneof![
            (proptest::collection::vec(inner.clone(), 0..5), 0u8..4).prop_map(|(v, ws)| J::Arr(v, ws)),
            (proptest::collection::vec((pieces(4), inner), 0..5), 0u8..4).prop_map(|(m, ws)| J::Obj(m, ws)),
        ]
    })
}

/// An entry as hostile as it gets: maybe not an object, maybe no key, known fields of the wrong
/// type, values parsers refuse, keys of any shape, huge strings.
pub fn hostile_entry_text(key_field: &'static str, max_repeat: usize) -> BoxedStrategy<String> {
    let field = proptest::sample::select(&KNOWN[..]).prop_flat_map(move |f| {
        prop_oneof![3 => known_value(f, max_repeat), 1 => hostile_value(max_repeat)].prop_map(move |v| (plain(f), v))
    });
    let extra = (pieces(4), hostile_value(max_repeat));
    let key = prop_oneof![
        Just(None),
        "[A-Za-z0-9_-]{1,40}".prop_map(Some),
        any::<String>().prop_map(Some),
        "[ -~]{90,120}".prop_map(Some),
    ];
    let members = proptest::collection::vec(prop_oneof![3 => field, 1 => extra], 0..10);
    let object = (members, key, 0u8..4).prop_map(move |(mut members, key, ws)| {
        if let Some(k) = key {
            members.push((plain(key_field), J::Str(plain(&k))));
        }
        J::Obj(members, ws).text()
    });
    prop_oneof![5 => object, 1 => hostile_value(max_repeat).prop_map(|v| v.text())].boxed()
}
