//! The cursor of the next page, out of `meta.page.next`.
//!
//! The spec's `next` is a path without the `/v3` prefix (`/audit-logs?page[after]=…`); another
//! Konnect API answers `/api/v2/…`. Following it against the base would miss `/v3`, and nothing
//! promises it keeps the filters. So only the cursor is taken from it, and the next request is built
//! again from the configured base with the same filters (as Kong's own `kongctl` does).

use percent_encoding::percent_decode_str;

const AFTER: &str = "page[after]";

/// `Ok(None)` at the end of the walk (`next` empty); the cursor otherwise. A `next` that is a path or
/// a URL gives its `page[after]`; any other text is taken as the cursor itself.
pub fn cursor_from_next(next: &str) -> Result<Option<String>, String> {
    let next = next.trim();
    if next.is_empty() {
        return Ok(None);
    }
    if !(next.starts_with('/') || next.contains("://")) {
        return Ok(Some(next.to_string()));
    }
    let query = next.split_once('?').map(|(_, q)| q).unwrap_or("");
    let query = query.split('#').next().unwrap_or("");
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Percent-decoding only: a `+` stays a `+` (a base64 cursor may hold one).
        if decode(name) == AFTER {
            let value = decode(value);
            return if value.is_empty() {
                Err(format!("meta.page.next ({}) has an empty page[after]", shown(next)))
            } else {
                Ok(Some(value))
            };
        }
    }
    Err(format!(
        "meta.page.next ({}) has no page[after] cursor; the walk cannot go on",
        shown(next)
    ))
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// At most 200 characters of a `next` for an error message.
fn shown(next: &str) -> String {
    let mut s: String = next.chars().take(200).collect();
    if s.len() < next.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_comes_out_of_every_shape_of_next() {
        let c = |n: &str| cursor_from_next(n).unwrap();
        // The spec's example: a path without /v3.
        assert_eq!(
            c("/audit-logs?page[after]=ewogICJpZCI6ICJoZWxsbyB3b3JsZCIKfQ").as_deref(),
            Some("ewogICJpZCI6ICJoZWxsbyB3b3JsZCIKfQ")
        );
        // Encoded brackets, another prefix, other parameters around it.
        assert_eq!(
            c("/api/v2/audit-log-destinations?page%5Bsize%5D=10&page%5Bafter%5D=abc%3D%3D&x=1").as_deref(),
            Some("abc==")
        );
        // A full URL.
        assert_eq!(
            c("https://us.api.konghq.com/v3/audit-logs?filter[ts][gte]=x&page[after]=a-b_c").as_deref(),
            Some("a-b_c")
        );
        // A `+` is not a space here.
        assert_eq!(c("/audit-logs?page[after]=a+b/c").as_deref(), Some("a+b/c"));
        // A bare token.
        assert_eq!(c("opaque-token").as_deref(), Some("opaque-token"));
        // The end.
        assert_eq!(c(""), None);
        assert_eq!(c("  "), None);
    }

    #[test]
    fn a_path_without_a_cursor_is_an_error_not_the_end() {
        let e = cursor_from_next("/audit-logs?page[before]=abc").unwrap_err();
        assert!(e.contains("no page[after]") && e.contains("/audit-logs?page[before]=abc"), "{e}");
        assert!(cursor_from_next("/audit-logs?page[after]=").unwrap_err().contains("empty"));
    }
}
