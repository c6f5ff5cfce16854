//! What can be read from an entry's JSON text without parsing it into values: how deeply it nests,
//! and its top-level members. Text that no value type can hold (a number like `1e400`, nesting
//! deeper than a parser allows) still has a nesting depth and, usually, its own key.

/// How deeply arrays and objects nest in JSON text (a scalar is 0), counted outside strings.
pub fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The top-level members of a JSON object, in order, as `(key, the value's text)`; `None` when the
/// text is not an object this scanner can follow. Values are not parsed, only delimited.
pub fn members(text: &str) -> Option<Vec<(String, &str)>> {
    let bytes = text.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_space(bytes, at + 1);
    let mut out = Vec::new();
    if bytes.get(at) == Some(&b'}') {
        return Some(out);
    }
    loop {
        let key_end = string_end(bytes, at)?;
        let key: String = serde_json::from_str(&text[at..key_end]).ok()?;
        at = skip_space(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let start = skip_space(bytes, at + 1);
        let end = value_end(bytes, start)?;
        out.push((key, text[start..end].trim_end()));
        at = skip_space(bytes, end);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b'}') => return Some(out),
            _ => return None,
        }
    }
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
        at += 1;
    }
    at
}

/// The index just past the string starting at `at` (which must be a `"`).
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index just past the value starting at `at`.
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_end(bytes, at),
        b'[' | b'{' => {
            let mut depth = 0usize;
            let mut i = at;
            while let Some(&b) = bytes.get(i) {
                match b {
                    b'"' => {
                        i = string_end(bytes, i)?;
                        continue;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = at;
            while bytes.get(i).is_some_and(|b| !matches!(b, b',' | b'}' | b']')) {
                i += 1;
            }
            (i > at).then_some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings() {
        assert_eq!(nesting("1"), 0);
        assert_eq!(nesting(r#"{"a":[1,{"b":"[[["}]}"#), 3);
        assert_eq!(nesting(r#"{"a":"\"{"}"#), 1);
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            nesting(&format!(r#"{{"k":{deep},"k":1}}"#)),
            201,
            "a member a later duplicate hides still counts"
        );
    }

    #[test]
    fn members_are_delimited_without_parsing_their_values() {
        let text = r#" { "request_id" : "r\"1" , "n": 1e400, "deep": [[{"x":"]"}]], "ttl":12 } "#;
        let m = members(text).unwrap();
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["request_id", "n", "deep", "ttl"]);
        assert_eq!(m[0].1, r#""r\"1""#);
        assert_eq!(m[1].1, "1e400");
        assert_eq!(m[2].1, r#"[[{"x":"]"}]]"#);
        assert_eq!(m[3].1, "12");
        assert_eq!(members("{}").unwrap(), vec![]);
        for not_an_object in ["[1]", "{\"a\"}", "{\"a\":1", "", "{\"a\":}"] {
            assert!(members(not_an_object).is_none(), "{not_an_object}");
        }
    }
}
