//! The audit-log client: one page of `GET /v3/audit-logs` at a time, every URL built here from the
//! configured base, retries within the caller's deadline, and errors that name the fix.

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::SecondsFormat;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, LOCATION};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use url::Url;

use super::api_url::ApiUrl;
use super::cursor::cursor_from_next;
use super::entry::KonnectEntry;
use super::walk::TimeWindow;
use crate::http_answer::{clean, date, describe_body, is_json, retry_after, snippet, transport_error};
use crate::retry::Backoff;
use crate::secret::Secret;

/// The spec's `page[size]` maximum.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Largest page body read: a thousand entries are a few MB; anything near this is not an answer.
pub const DEFAULT_MAX_PAGE_BYTES: usize = 64 << 20;
/// Longest `Retry-After` honoured (the `Backoff` caps server hints at this too).
const MAX_SERVER_WAIT: Duration = Duration::from_secs(300);
/// How much of an error answer is read, for its problem details.
const ERROR_BODY_MAX: usize = 64 << 10;

/// One page to fetch. The query is built from these fields for every page: the same window and size
/// on every page of a walk, plus the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub window: TimeWindow,
    pub size: u32,
    /// `page[after]`: `None` for the first page.
    pub after: Option<String>,
    /// Which page of the walk this is (1 for the first), for messages.
    pub number: u32,
}

#[derive(Debug)]
pub struct Page {
    pub entries: Vec<KonnectEntry>,
    /// The cursor of the next page; `None` on the last.
    pub next: Option<String>,
    /// The answer's `Date` (epoch seconds): Konnect's clock, which stamps `ts`.
    pub date: Option<i64>,
}

/// Where Konnect audit-log pages come from: `KonnectClient` reads the real API; tests may put
/// anything here.
#[async_trait]
pub trait AuditLogPages: Send + Sync {
    /// One page, retried until `deadline` where a retry can help.
    async fn page(&self, request: &PageRequest, deadline: Option<Instant>) -> Result<Page, KonnectError>;
}

#[derive(Debug, thiserror::Error)]
pub enum KonnectError {
    #[error("KONNECT_API_URL {value:?} {reason}")]
    ApiUrl { value: String, reason: String },
    #[error("KONNECT_TOKEN {0}")]
    Token(&'static str),
    #[error("invalid audit-log request: {0}")]
    Request(String),
    #[error(
        "Konnect refused the token (HTTP 401) at {url}: KONNECT_TOKEN is invalid or expired; create a personal access token (kpat_…) or a system-account token (spat_…) in Konnect and set KONNECT_TOKEN to it{trace}"
    )]
    Unauthorized { url: String, trace: String },
    #[error(
        "Konnect denied the audit logs (HTTP 403) at {url}: the token's user or system account needs the Audit Logs role 'Admin' in this organization (Admin is the only Audit Logs role, so there is no read-only one){trace}"
    )]
    Forbidden { url: String, trace: String },
    #[error("Konnect rejected the request (HTTP 400) at {url}: {detail}; the request is built by this shipper, so report this message")]
    BadRequest { url: String, detail: String },
    #[error(
        "{url} returned 404: check KONNECT_API_URL, your region's base such as https://us.api.konghq.com (the shipper adds /v3/audit-logs)"
    )]
    NotFound { url: String },
    #[error(
        "{url} redirects to {location:?}: set KONNECT_API_URL to the base it should be (redirects are not followed, so the token goes nowhere else)"
    )]
    Redirected { url: String, location: String },
    #[error("{url} returned HTTP {status}: {detail}")]
    Rejected { url: String, status: u16, detail: String },
    #[error("page {page} of the walk ({url}) is larger than {limit} bytes; the walk stops rather than hold it")]
    PageTooLarge { page: u32, url: String, limit: usize },
    #[error("page {page} ({url}) is not Konnect's audit-log JSON ({detail}); check that KONNECT_API_URL is Konnect's API")]
    NotJson { page: u32, url: String, detail: String },
    #[error("page {page} ({url}): {problem}")]
    BadPage { page: u32, url: String, problem: String },
    #[error(
        "page {page} returned the cursor {cursor:?}, which an earlier page of this walk returned: paging would loop, so the walk stops"
    )]
    RepeatedCursor { page: u32, cursor: String },
    #[error(
        "Konnect answered page {page} ({url}) with {last} and asked to wait {wait_secs} s (Retry-After), past this run's deadline; the next run goes on"
    )]
    WaitPastDeadline {
        page: u32,
        url: String,
        last: String,
        wait_secs: u64,
    },
    #[error("page {page} ({url}) was not read before this run's deadline")]
    DeadlineReached { page: u32, url: String },
    #[error("Konnect failed page {page} ({url}) after {attempts} tries; last error: {last}")]
    Unavailable {
        page: u32,
        url: String,
        attempts: u32,
        last: String,
    },
}

impl KonnectError {
    /// Errors no retry can fix: the run should stop and say what to change.
    pub fn is_config_problem(&self) -> bool {
        matches!(
            self,
            KonnectError::ApiUrl { .. }
                | KonnectError::Token(_)
                | KonnectError::Unauthorized { .. }
                | KonnectError::Forbidden { .. }
                | KonnectError::NotFound { .. }
                | KonnectError::Redirected { .. }
                | KonnectError::NotJson { .. }
        )
    }
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// One request's time limit (connecting, waiting, reading the body).
    pub timeout: Duration,
    pub backoff: Backoff,
    pub max_page_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(60),
            backoff: Backoff::default(),
            max_page_bytes: DEFAULT_MAX_PAGE_BYTES,
        }
    }
}

pub struct KonnectClient {
    http: reqwest::Client,
    api: ApiUrl,
    /// `Bearer <token>`, marked sensitive.
    authorization: HeaderValue,
    options: ClientOptions,
}

impl fmt::Debug for KonnectClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KonnectClient")
            .field("api", &self.api)
            .field("token", &"***")
            .finish()
    }
}

impl KonnectClient {
    pub fn new(api: ApiUrl, token: &Secret, options: ClientOptions) -> Result<KonnectClient, KonnectError> {
        let token_text = token.expose().trim();
        if token_text.is_empty() {
            return Err(KonnectError::Token("is empty"));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {token_text}"))
            .map_err(|_| KonnectError::Token("holds characters an HTTP header cannot carry"))?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(Duration::from_secs(10).min(options.timeout))
            // A redirect elsewhere would take the bearer token with it.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kong-audit-shipper/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| KonnectError::ApiUrl {
                value: api.to_string(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(KonnectClient {
            http,
            api,
            authorization,
            options,
        })
    }

    pub fn api(&self) -> &ApiUrl {
        &self.api
    }

    /// The URL of one page: the configured base, `/v3/audit-logs`, both bounds (inclusive), the page
    /// size, and the cursor. Brackets are percent-encoded, as Konnect's own examples do.
    pub fn page_url(&self, request: &PageRequest) -> Result<Url, KonnectError> {
        if !(1..=MAX_PAGE_SIZE).contains(&request.size) {
            return Err(KonnectError::Request(format!(
                "page size {} is not between 1 and {MAX_PAGE_SIZE}",
                request.size
            )));
        }
        let mut url = self.api.audit_logs();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("filter[ts][gte]", &rfc3339(request.window.gte));
            q.append_pair("filter[ts][lte]", &rfc3339(request.window.lte));
            q.append_pair("page[size]", &request.size.to_string());
            if let Some(after) = &request.after {
                q.append_pair("page[after]", after);
            }
        }
        Ok(url)
    }

    async fn try_get(&self, url: &Url, page: u32) -> Result<Answer, KonnectError> {
        let shown = url.to_string();
        let sent = self
            .http
            .get(url.clone())
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, self.authorization.clone())
            .send()
            .await;
        let mut resp = match sent {
            Ok(resp) => resp,
            Err(e) => return Ok(Answer::Retry(transport_error(&e), None)),
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        if status.is_success() {
            let body = match read_capped(&mut resp, self.options.max_page_bytes).await {
                Ok(Some(body)) => body,
                Ok(None) => {
                    return Err(KonnectError::PageTooLarge {
                        page,
                        url: shown,
                        limit: self.options.max_page_bytes,
                    });
                }
                Err(e) => return Ok(Answer::Retry(transport_error(&e), None)),
            };
            return parse_page(&headers, &body, page, shown);
        }
        let body = read_capped(&mut resp, ERROR_BODY_MAX).await.ok().flatten().unwrap_or_default();
        let problem = Problem::read(&body);
        let hint = retry_after(&headers);
        Err(match status.as_u16() {
            401 => KonnectError::Unauthorized {
                url: shown,
                trace: problem.trace(),
            },
            403 => KonnectError::Forbidden {
                url: shown,
                trace: problem.trace(),
            },
            400 => KonnectError::BadRequest {
                url: shown,
                detail: problem.describe(&body),
            },
            404 => KonnectError::NotFound { url: shown },
            429 => return Ok(Answer::Retry("HTTP 429 Too Many Requests".into(), hint)),
            code @ 500..=599 => return Ok(Answer::Retry(format!("HTTP {code}"), hint)),
            300..=399 => KonnectError::Redirected {
                url: shown,
                location: headers.get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("nowhere").to_string(),
            },
            code => KonnectError::Rejected {
                url: shown,
                status: code,
                detail: problem.describe(&body),
            },
        })
    }
}

#[async_trait]
impl AuditLogPages for KonnectClient {
    /// Retries 429 (after `Retry-After`, or a backoff when it has none), 5xx, timeouts, broken
    /// connections and cut bodies, never past `deadline`; fails at once on answers a retry cannot
    /// change (400, 401, 403, 404, a redirect, a body that is not the API's).
    async fn page(&self, request: &PageRequest, deadline: Option<Instant>) -> Result<Page, KonnectError> {
        let url = self.page_url(request)?;
        let shown = url.to_string();
        let mut retry = 0;
        loop {
            let attempt = self.try_get(&url, request.number);
            let answer = match deadline {
                Some(at) => tokio::time::timeout_at(at.into(), attempt)
                    .await
                    .map_err(|_| KonnectError::DeadlineReached {
                        page: request.number,
                        url: shown.clone(),
                    })??,
                None => attempt.await?,
            };
            let (last, hint) = match answer {
                Answer::Page(page) => return Ok(page),
                Answer::Retry(last, hint) => (last, hint),
            };
            retry += 1;
            if let (Some(hint), Some(at)) = (hint, deadline)
                && Instant::now() + hint.min(MAX_SERVER_WAIT) >= at
            {
                return Err(KonnectError::WaitPastDeadline {
                    page: request.number,
                    url: shown,
                    last,
                    wait_secs: hint.as_secs_f64().ceil() as u64,
                });
            }
            match self.options.backoff.wait(retry, hint, deadline) {
                Some(wait) => {
                    tracing::warn!(url = %shown, error = %last, retry, wait_ms = wait.as_millis() as u64, "Konnect request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                // Out of tries, or no time left for another before the deadline.
                None => {
                    return Err(KonnectError::Unavailable {
                        page: request.number,
                        url: shown,
                        attempts: retry,
                        last,
                    });
                }
            }
        }
    }
}

enum Answer {
    Page(Page),
    /// Worth another try: why, and how long the server asked to wait.
    Retry(String, Option<Duration>),
}

/// RFC 3339 in UTC, with a fraction only when there is one (as `kongctl` sends it).
fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The body, or `None` when it is larger than `limit`.
async fn read_capped(resp: &mut reqwest::Response, limit: usize) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

#[derive(Deserialize)]
struct PageBody {
    data: Option<Vec<Box<RawValue>>>,
    meta: Option<serde_json::Map<String, Value>>,
}

fn parse_page(headers: &HeaderMap, body: &[u8], page: u32, url: String) -> Result<Answer, KonnectError> {
    let json = is_json(headers);
    if !json && !body.trim_ascii_start().starts_with(b"{") {
        return Err(KonnectError::NotJson {
            page,
            url,
            detail: describe_body(headers, body, None),
        });
    }
    let parsed: PageBody = match serde_json::from_slice(body) {
        Ok(parsed) => parsed,
        Err(e) if json && e.is_eof() => return Ok(Answer::Retry(format!("cut JSON: {e}"), None)),
        Err(e) => {
            return Err(KonnectError::NotJson {
                page,
                url,
                detail: describe_body(headers, body, Some(e)),
            });
        }
    };
    let bad = |problem: String| KonnectError::BadPage {
        page,
        url: url.clone(),
        problem,
    };
    let data = parsed.data.ok_or_else(|| bad("the answer has no data".into()))?;
    let meta = parsed.meta.ok_or_else(|| bad("the answer has no meta".into()))?;
    // `meta.page.next`, or `meta.next` as `kongctl` also accepts; missing or null: the last page.
    let next = match (meta.get("page"), meta.get("next")) {
        (Some(Value::Object(page)), _) => page.get("next"),
        (Some(_), _) => return Err(bad("meta.page is not an object".into())),
        (None, Some(next)) => Some(next),
        (None, None) => return Err(bad("the answer has no meta.page".into())),
    };
    let next = match next {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => cursor_from_next(s).map_err(bad)?,
        Some(other) => {
            return Err(bad(format!(
                "meta.page.next is not a string: {}",
                snippet(other.to_string().as_bytes())
            )));
        }
    };
    Ok(Answer::Page(Page {
        entries: data.into_iter().map(KonnectEntry::from_raw).collect(),
        next,
        date: date(headers),
    }))
}

/// `application/problem+json`, as the spec gives it for 400, 401 and 403 (and what a gateway in
/// front may say instead).
#[derive(Deserialize, Default)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
    /// `kong:trace:<id>`: what Kong's support asks for.
    instance: Option<String>,
    #[serde(default)]
    invalid_parameters: Vec<InvalidParameter>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct InvalidParameter {
    field: Option<String>,
    reason: Option<String>,
}

impl Problem {
    fn read(body: &[u8]) -> Problem {
        serde_json::from_slice(body).unwrap_or_default()
    }

    fn trace(&self) -> String {
        self.instance
            .as_deref()
            .map(|i| format!(" ({})", clean(i, 120)))
            .unwrap_or_default()
    }

    fn describe(&self, body: &[u8]) -> String {
        let mut text = match self.detail.as_deref().or(self.title.as_deref()).or(self.message.as_deref()) {
            Some(d) => clean(d, 300),
            None if body.is_empty() => "no details".into(),
            None => snippet(body),
        };
        for p in self.invalid_parameters.iter().take(5) {
            text.push_str(&format!(
                "; {}: {}",
                clean(p.field.as_deref().unwrap_or("?"), 80),
                clean(p.reason.as_deref().unwrap_or("invalid"), 200)
            ));
        }
        text.push_str(&self.trace());
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn client(base: &str) -> KonnectClient {
        KonnectClient::new(ApiUrl::parse(base).unwrap(), &Secret::new("kpat_abc"), ClientOptions::default()).unwrap()
    }

    fn window() -> TimeWindow {
        TimeWindow::new(
            Utc.with_ymd_and_hms(2026, 8, 1, 0, 0, 0).unwrap() + chrono::Duration::milliseconds(250),
            Utc.with_ymd_and_hms(2026, 8, 1, 1, 0, 0).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn page_urls_carry_both_bounds_the_size_and_the_cursor_encoded() {
        let c = client("https://eu.api.konghq.com/prefix");
        let mut req = PageRequest {
            window: window(),
            size: 1000,
            after: None,
            number: 1,
        };
        assert_eq!(
            c.page_url(&req).unwrap().as_str(),
            "https://eu.api.konghq.com/prefix/v3/audit-logs?filter%5Bts%5D%5Bgte%5D=2026-08-01T00%3A00%3A00.250Z&filter%5Bts%5D%5Blte%5D=2026-08-01T01%3A00%3A00Z&page%5Bsize%5D=1000"
        );
        req.after = Some("a+b/c==".into());
        assert!(
            c.page_url(&req)
                .unwrap()
                .as_str()
                .ends_with("&page%5Bsize%5D=1000&page%5Bafter%5D=a%2Bb%2Fc%3D%3D"),
            "{}",
            c.page_url(&req).unwrap()
        );
        for size in [0, 1001] {
            req.size = size;
            assert!(matches!(c.page_url(&req), Err(KonnectError::Request(_))));
        }
    }

    #[test]
    fn the_token_never_shows() {
        let c = client("https://us.api.konghq.com");
        assert!(!format!("{c:?}").contains("kpat_abc"));
        let bad = KonnectClient::new(
            ApiUrl::parse("https://us.api.konghq.com").unwrap(),
            &Secret::new("kpat_\nx"),
            ClientOptions::default(),
        )
        .unwrap_err();
        assert!(!bad.to_string().contains("kpat_"), "{bad}");
        let empty = KonnectClient::new(
            ApiUrl::parse("https://us.api.konghq.com").unwrap(),
            &Secret::new(" "),
            ClientOptions::default(),
        )
        .unwrap_err();
        assert_eq!(empty.to_string(), "KONNECT_TOKEN is empty");
    }

    #[test]
    fn pages_are_read_strictly() {
        let json = {
            let mut h = HeaderMap::new();
            h.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h
        };
        let page = |body: &str| match parse_page(&json, body.as_bytes(), 2, "u".into()) {
            Ok(Answer::Page(p)) => Ok((p.entries.len(), p.next)),
            Ok(Answer::Retry(why, _)) => Err(format!("retry: {why}")),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(
            page(r#"{"data":[{"a":1},{"b":2}],"meta":{"page":{"next":"/audit-logs?page[after]=c1","previous":null,"size":2}}}"#),
            Ok((2, Some("c1".into())))
        );
        assert_eq!(page(r#"{"data":[],"meta":{"page":{"next":null,"size":0}}}"#), Ok((0, None)));
        assert_eq!(page(r#"{"data":[],"meta":{"page":{"size":0}}}"#), Ok((0, None)));
        assert_eq!(
            page(r#"{"data":[],"meta":{"next":"/audit-logs?page[after]=c2"}}"#),
            Ok((0, Some("c2".into())))
        );
        assert_eq!(page(r#"{"data":[],"meta":{"next":null}}"#), Ok((0, None)));
        assert!(
            page(r#"{"meta":{"page":{"next":null}}}"#)
                .unwrap_err()
                .contains("page 2 (u): the answer has no data")
        );
        assert!(page(r#"{"data":[]}"#).unwrap_err().contains("no meta"));
        assert!(page(r#"{"data":[],"meta":{}}"#).unwrap_err().contains("no meta.page"));
        assert!(
            page(r#"{"data":[],"meta":{"page":{"next":7}}}"#)
                .unwrap_err()
                .contains("not a string")
        );
        assert!(
            page(r#"{"data":[],"meta":{"page":{"next":"/audit-logs?x=1"}}}"#)
                .unwrap_err()
                .contains("no page[after]")
        );
        assert!(page(r#"{"data":[{"a":1}"#).unwrap_err().starts_with("retry: cut JSON"));
        let html = parse_page(&HeaderMap::new(), b"<html>nginx</html>", 1, "u".into()).err().unwrap();
        assert!(matches!(html, KonnectError::NotJson { .. }), "{html}");
    }

    #[test]
    fn problem_details_name_the_field_and_the_trace() {
        let body = br#"{"status":400,"title":"Bad Request","instance":"kong:trace:123","detail":"Invalid Parameters","invalid_parameters":[{"field":"page[size]","rule":"max","source":"query","reason":"must be at most 1000"}]}"#;
        let text = Problem::read(body).describe(body);
        assert_eq!(text, "Invalid Parameters; page[size]: must be at most 1000 (kong:trace:123)");
        assert_eq!(Problem::read(b"oops\n").describe(b"oops\n"), "oops ");
    }
}
