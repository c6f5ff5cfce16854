//! The Admin API client: one page at a time, every URL built here (never Kong's `next`), with retries.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;
use url::Url;

use super::{Entry, EntryKind, KongVersion};
use crate::config::KongConfig;
use crate::http_answer::{date, describe_body, is_json, retry_after, snippet, transport_error};
use crate::konnect::{KonnectError, KonnectSource};
use crate::retry::Backoff;
use crate::secret::Secret;

/// Kong's default `audit_log_record_ttl` (30 days), used when `GET /` does not report it.
pub const DEFAULT_RECORD_TTL: i64 = 2_592_000;
/// The largest answer read from Kong: a page of 1,000 entries is a few MiB; anything this large is
/// a misconfigured proxy or a runaway payload, and reading it would exhaust a Lambda's memory.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Where audit entries come from. `KongClient` reads a real Admin API, `konnect::KonnectSource`
/// Konnect's audit log; tests may put anything here.
#[async_trait]
pub trait AuditSource: Send + Sync {
    async fn info(&self) -> Result<KongInfo, KongError>;
    async fn page(&self, request: &PageRequest) -> Result<Page, KongError>;

    /// The kinds of entries the cycle asks `page` for: Kong's two endpoints, unless the source
    /// says otherwise.
    fn kinds(&self) -> Vec<EntryKind> {
        EntryKind::ALL.to_vec()
    }

    /// Konnect's audit log, which the cycle walks in fixed windows instead of asking `page`
    /// (its order is not documented); `None` for every other source.
    fn konnect(&self) -> Option<Arc<KonnectSource>> {
        None
    }

    /// The Konnect region the Konnect entries this source serves come from, for their events.
    fn konnect_region(&self) -> Option<String> {
        self.konnect().and_then(|k| k.region().map(str::to_string))
    }
}

#[derive(Debug, Clone)]
pub struct KongInfo {
    pub version_text: Option<String>,
    pub version: Option<KongVersion>,
    /// `audit_log_record_ttl` in seconds.
    pub record_ttl: i64,
    /// `audit_log` as `GET /` reports it, when it does.
    pub audit_log: Option<bool>,
    /// Kong's clock less ours, in seconds, from the `Date` of its answer to `GET /`: rows are
    /// stamped by Kong's clock, so where a read stood is told in it too.
    pub clock_offset: Option<i64>,
}

impl KongInfo {
    /// Kong's clock when ours shows `now`, as far as it is known.
    pub fn kong_time(&self, now: i64) -> i64 {
        now + self.clock_offset.unwrap_or(0)
    }
}

impl KongInfo {
    pub fn has_timestamp_filters(&self) -> bool {
        self.version.is_some_and(KongVersion::has_timestamp_filters)
    }
}

/// One page to fetch: the query is rebuilt from these fields for every page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub kind: EntryKind,
    pub size: u32,
    pub sort_by: &'static str,
    pub sort_desc: bool,
    /// `after=` (inclusive, epoch seconds), on versions that have it.
    pub after: Option<i64>,
    /// `before=` (exclusive, epoch seconds), on versions that have it.
    pub before: Option<i64>,
    pub offset: Option<String>,
}

#[derive(Debug)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// The cursor for the next page; `None` on the last page.
    pub offset: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KongError {
    #[error(
        "Kong refused the admin token (HTTP {status}) at {url}: set KONG_ADMIN_TOKEN to an RBAC token that may read /audit/requests and /audit/objects"
    )]
    Unauthorized { status: u16, url: String },
    #[error("{url} returned 404: {hint}")]
    NotFound { url: String, hint: &'static str },
    #[error("{url} returned HTTP {status}: {message}")]
    Rejected { url: String, status: u16, message: String },
    #[error("{url} did not answer with Kong's JSON ({detail}); check that KONG_ADMIN_API is Kong's Admin API")]
    NotJson { url: String, detail: String },
    #[error("Kong at {url} failed after {attempts} tries; last error: {last}")]
    Unavailable { url: String, attempts: u32, last: String },
    #[error("KONG_ROOT_CA: {0}")]
    Tls(String),
    /// A task of the read failed (a panic): an error of the run, never the end of the trail.
    #[error("reading {url} failed: {detail}")]
    Task { url: String, detail: String },
    #[error(
        "{url} answered with more than {limit} bytes: lower KONG_PAGE_SIZE (a page of 1,000 entries is a few MiB), or check what answers at KONG_ADMIN_API"
    )]
    TooLarge { url: String, limit: usize },
    /// Konnect's audit log, when it is the source.
    #[error(transparent)]
    Konnect(#[from] KonnectError),
}

impl KongError {
    /// Errors no retry can fix: the run should stop and say what to change.
    pub fn is_config_problem(&self) -> bool {
        match self {
            KongError::Konnect(e) => e.is_config_problem(),
            _ => matches!(
                self,
                KongError::Unauthorized { .. } | KongError::NotFound { .. } | KongError::NotJson { .. } | KongError::Tls(_)
            ),
        }
    }

    /// The read stopped because the run's time was up (Konnect asked to wait past it, or a page was
    /// not read before it): the run stops at its budget, like one that runs out of time, not on an
    /// error.
    pub fn is_out_of_time(&self) -> bool {
        matches!(
            self,
            KongError::Konnect(KonnectError::WaitPastDeadline { .. } | KonnectError::DeadlineReached { .. })
        )
    }
}

pub struct KongClient {
    http: reqwest::Client,
    base: Url,
    token: Option<Secret>,
    backoff: Backoff,
}

#[derive(Deserialize)]
struct PageBody {
    data: Vec<Box<RawValue>>,
    #[serde(default)]
    offset: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RootBody {
    version: Option<String>,
    #[serde(default)]
    configuration: Option<serde_json::Map<String, serde_json::Value>>,
}

impl KongClient {
    pub fn new(config: &KongConfig, backoff: Backoff) -> Result<KongClient, KongError> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("kong-audit-shipper/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.root_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| KongError::Tls(format!("not a PEM certificate bundle: {e}")))?;
            if certs.is_empty() {
                return Err(KongError::Tls("no certificate found in the PEM".into()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        if config.tls_insecure {
            tracing::warn!("KONG_TLS_INSECURE is set: Kong's TLS certificate is NOT verified; anyone on the path can read the admin token");
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| KongError::Tls(format!("cannot build the HTTP client: {e}")))?;
        let mut base = config.base_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(KongClient {
            http,
            base,
            token: config.token.clone(),
            backoff,
        })
    }

    pub fn page_url(&self, request: &PageRequest) -> Url {
        let mut url = self.base.join(request.kind.path()).expect("static relative path");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("size", &request.size.to_string());
            q.append_pair("sort_by", request.sort_by);
            q.append_pair("sort_desc", if request.sort_desc { "true" } else { "false" });
            if let Some(after) = request.after {
                q.append_pair("after", &after.to_string());
            }
            if let Some(before) = request.before {
                q.append_pair("before", &before.to_string());
            }
            if let Some(offset) = &request.offset {
                q.append_pair("offset", offset);
            }
        }
        url
    }

    /// GET with retries on 429 (after `Retry-After`), 5xx, timeouts and broken connections;
    /// fails at once on answers that a retry cannot change. Also returns the answer's `Date`.
    async fn get_json<T: for<'de> Deserialize<'de>>(&self, url: &Url, not_found_hint: &'static str) -> Result<(T, Option<i64>), KongError> {
        let shown = url.to_string();
        let mut retry = 0;
        loop {
            let (last, hint) = match self.try_get(url).await {
                Err(Fetch::TooLarge) => {
                    return Err(KongError::TooLarge {
                        url: shown,
                        limit: MAX_BODY_BYTES,
                    });
                }
                Ok((status, headers, body)) => match classify(status, &headers, &body, &shown, not_found_hint) {
                    Outcome::Body => match serde_json::from_slice::<T>(&body) {
                        Ok(v) => return Ok((v, date(&headers))),
                        Err(e) if is_json(&headers) && e.is_eof() => (format!("truncated JSON: {e}"), None),
                        Err(e) => {
                            return Err(KongError::NotJson {
                                url: shown,
                                detail: describe_body(&headers, &body, Some(e)),
                            });
                        }
                    },
                    Outcome::Retry(reason, hint) => (reason, hint),
                    Outcome::Fail(e) => return Err(e),
                },
                Err(Fetch::Transport(e)) => (transport_error(&e), None),
            };
            retry += 1;
            match self.backoff.wait(retry, hint, None) {
                Some(wait) => {
                    tracing::warn!(url = %shown, error = %last, retry, wait_ms = wait.as_millis() as u64, "Kong request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                None => {
                    return Err(KongError::Unavailable {
                        url: shown,
                        attempts: retry,
                        last,
                    });
                }
            }
        }
    }

    async fn try_get(&self, url: &Url) -> Result<(StatusCode, HeaderMap, Vec<u8>), Fetch> {
        let mut req = self.http.get(url.clone()).header("accept", "application/json");
        if let Some(token) = &self.token {
            let mut value = HeaderValue::from_str(token.expose()).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
            value.set_sensitive(true);
            req = req.header("Kong-Admin-Token", value);
        }
        let mut resp = req.send().await.map_err(Fetch::Transport)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        if resp.content_length().is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(Fetch::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(Fetch::Transport)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Fetch::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }
}

/// Why an answer could not be read.
enum Fetch {
    Transport(reqwest::Error),
    TooLarge,
}

#[async_trait]
impl AuditSource for KongClient {
    async fn info(&self) -> Result<KongInfo, KongError> {
        let (root, date): (RootBody, _) = self
            .get_json(&self.base, "KONG_ADMIN_API does not point at Kong's Admin API")
            .await?;
        let clock_offset = date.map(|d| d - chrono::Utc::now().timestamp());
        let config = root.configuration.unwrap_or_default();
        let record_ttl = config
            .get("audit_log_record_ttl")
            .and_then(|v| v.as_i64())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_RECORD_TTL);
        let audit_log = config.get("audit_log").and_then(|v| match v {
            serde_json::Value::Bool(b) => Some(*b),
            serde_json::Value::String(s) => Some(matches!(s.as_str(), "on" | "true")),
            _ => None,
        });
        Ok(KongInfo {
            version: root.version.as_deref().and_then(KongVersion::parse),
            version_text: root.version,
            record_ttl,
            audit_log,
            clock_offset,
        })
    }

    async fn page(&self, request: &PageRequest) -> Result<Page, KongError> {
        let url = self.page_url(request);
        let (body, _): (PageBody, _) = self
            .get_json(
                &url,
                "audit logging is off on this Kong (set audit_log = on in kong.conf), or KONG_ADMIN_API is not the Admin API",
            )
            .await?;
        // Absent (or null) on the last page; a cursor otherwise. Anything else is not the end of
        // the trail: taken for it, every page after this one would go unread.
        let offset = match body.offset {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
            Some(other) => {
                return Err(KongError::NotJson {
                    url: url.to_string(),
                    detail: format!("the page's offset is {other}, not a cursor (a string)"),
                });
            }
        };
        let entries = body.data.into_iter().map(|raw| Entry::from_raw(request.kind, raw)).collect();
        Ok(Page { entries, offset })
    }
}

enum Outcome {
    Body,
    Retry(String, Option<Duration>),
    Fail(KongError),
}

fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], url: &str, not_found_hint: &'static str) -> Outcome {
    let url = url.to_string();
    match status.as_u16() {
        200..=299 => {
            if !is_json(headers) && !body.trim_ascii_start().starts_with(b"{") {
                return Outcome::Fail(KongError::NotJson {
                    detail: describe_body(headers, body, None),
                    url,
                });
            }
            Outcome::Body
        }
        401 | 403 => Outcome::Fail(KongError::Unauthorized {
            status: status.as_u16(),
            url,
        }),
        404 => Outcome::Fail(KongError::NotFound { url, hint: not_found_hint }),
        429 => Outcome::Retry("HTTP 429 Too Many Requests".into(), retry_after(headers)),
        500..=599 => Outcome::Retry(format!("HTTP {}", status.as_u16()), retry_after(headers)),
        code => Outcome::Fail(KongError::Rejected {
            url,
            status: code,
            message: kong_message(body),
        }),
    }
}

fn kong_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .map(|m| m.as_str().map(str::to_string).unwrap_or_else(|| m.to_string()))
        })
        .unwrap_or_else(|| snippet(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KongConfig;

    fn client(base: &str) -> KongClient {
        let cfg = KongConfig {
            base_url: Url::parse(base).unwrap(),
            token: None,
            root_ca_pem: None,
            tls_insecure: false,
            page_size: 100,
            timeout: Duration::from_secs(5),
        };
        KongClient::new(&cfg, Backoff::default()).unwrap()
    }

    #[test]
    fn page_urls_carry_every_parameter_and_keep_a_path_prefix() {
        let c = client("https://kong.example:8444/admin");
        let req = PageRequest {
            kind: EntryKind::Object,
            size: 1000,
            sort_by: "request_timestamp",
            sort_desc: false,
            after: Some(1_700_000_000),
            before: Some(1_700_003_600),
            offset: Some("WyJhIiwxXQ+/=".into()),
        };
        assert_eq!(
            c.page_url(&req).as_str(),
            "https://kong.example:8444/admin/audit/objects?size=1000&sort_by=request_timestamp&sort_desc=false&after=1700000000&before=1700003600&offset=WyJhIiwxXQ%2B%2F%3D"
        );
    }
}
