//! What an HTTP answer of Kong's Admin API or of Konnect says beyond its body, and how its problems
//! are told in one line: shared by both sources' clients.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, DATE, HeaderMap, RETRY_AFTER};

pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"))
}

/// `Retry-After` as seconds or an HTTP date (a date gone by: no wait).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (when.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The answer's `Date`, epoch seconds: the server's clock.
pub fn date(headers: &HeaderMap) -> Option<i64> {
    let value = headers.get(DATE)?.to_str().ok()?;
    chrono::DateTime::parse_from_rfc2822(value).ok().map(|t| t.timestamp())
}

/// A body that is not the API's answer, for a message: its content type and how it starts.
pub fn describe_body(headers: &HeaderMap, body: &[u8], parse_error: Option<serde_json::Error>) -> String {
    let ct = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("no content type");
    match parse_error {
        Some(e) => format!("{ct}: {e}; body starts {:?}", snippet(body)),
        None => format!("{ct}; body starts {:?}", snippet(body)),
    }
}

/// The first 120 bytes of a body, as one line.
pub fn snippet(body: &[u8]) -> String {
    clean(&String::from_utf8_lossy(&body[..body.len().min(120)]), 120)
}

/// Server text for a one-line message: control characters out, cut to `max` characters.
pub fn clean(text: &str, max: usize) -> String {
    text.chars().take(max).map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A transport error with its causes. The URL is logged beside it; no credential is in it (the
/// tokens travel in headers).
pub fn transport_error(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut msg = if e.is_timeout() { "timed out".to_string() } else { e.to_string() };
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("77"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(77)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(25) && d <= Duration::from_secs(30), "{d:?}");
        let gone = (chrono::Utc::now() - chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&gone).unwrap());
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }

    #[test]
    fn a_date_is_the_server_s_clock_and_a_snippet_one_line() {
        let mut h = HeaderMap::new();
        assert_eq!(date(&h), None);
        h.insert(DATE, HeaderValue::from_static("Thu, 03 Dec 2026 08:00:00 GMT"));
        assert_eq!(date(&h), Some(1_796_284_800));
        assert_eq!(snippet(b"<html>\n<body>"), "<html> <body>");
    }
}
