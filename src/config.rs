//! Settings from flags with environment fallbacks, validated into typed configuration before any work.
//!
//! The environment names of Kong's 2023 proof of concept (`KONG_ADMIN_API`, `KONG_ADMIN_TOKEN`,
//! `KONG_ROOT_CA`, `CHANNEL_ARN`, `REDIS_HOST`, `REDIS_DB`, `REDIS_USERNAME`, `REDIS_PASSWORD`) keep working.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use url::Url;

use crate::retry::Backoff;
use crate::secret::Secret;

pub const DEFAULT_KEY_PREFIX: &str = "kong-audit-shipper:";

/// A setting that is missing or malformed: names the setting and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

fn invalid(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

/// Every setting, as flags with environment fallbacks. Validate with the `*_config` methods.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Base URL of Kong's Admin API, e.g. https://kong-cp.internal:8444
    #[arg(long, env = "KONG_ADMIN_API", global = true)]
    pub kong_admin_api: Option<String>,
    /// RBAC token sent as the Kong-Admin-Token header
    #[arg(long, env = "KONG_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub kong_admin_token: Option<Sensitive>,
    /// Secrets Manager secret (ARN or name) holding the Kong admin token; read at start
    #[arg(long, env = "KONG_ADMIN_TOKEN_SECRET_ARN", global = true)]
    pub kong_admin_token_secret_arn: Option<String>,
    /// Private CA for Kong's TLS certificate: the PEM text itself, or a path to a PEM file
    #[arg(long, env = "KONG_ROOT_CA", hide_env_values = true, global = true)]
    pub kong_root_ca: Option<String>,
    /// Skip verification of Kong's TLS certificate (insecure; logged loudly)
    #[arg(long, env = "KONG_TLS_INSECURE", global = true)]
    pub kong_tls_insecure: bool,
    /// Entries per Kong page (1-1000)
    #[arg(long, env = "KONG_PAGE_SIZE", default_value_t = 1000, global = true)]
    pub kong_page_size: u32,
    /// Seconds before a Kong request times out
    #[arg(long, env = "KONG_TIMEOUT_SECONDS", default_value_t = 30, global = true)]
    pub kong_timeout_seconds: u64,

    /// Read Kong Konnect's audit log instead of a Kong Admin API: your region's API base, e.g.
    /// https://us.api.konghq.com (us, eu, au, me, in, sg)
    #[arg(long, env = "KONNECT_API_URL", global = true)]
    pub konnect_api_url: Option<String>,
    /// Konnect system-account token (spat_…) or personal access token (kpat_…), with the Audit Logs role Admin
    #[arg(long, env = "KONNECT_TOKEN", hide_env_values = true, global = true)]
    pub konnect_token: Option<Sensitive>,
    /// Secrets Manager secret (ARN or name) holding the Konnect token; read at start
    #[arg(long, env = "KONNECT_TOKEN_SECRET_ARN", global = true)]
    pub konnect_token_secret_arn: Option<String>,
    /// Konnect: read only entries stamped at least this many seconds before the run starts
    #[arg(long, env = "KONNECT_SETTLE_SECONDS", default_value_t = 60, global = true)]
    pub konnect_settle_seconds: u64,
    /// Konnect: incremental reads start this many seconds before the watermark (entries that appear late)
    #[arg(long, env = "KONNECT_OVERLAP_SECONDS", default_value_t = 600, global = true)]
    pub konnect_overlap_seconds: u64,
    /// Konnect: how long Konnect keeps its audit log; marks live as long, and nothing older is read
    #[arg(long, env = "KONNECT_RETENTION_SECONDS", default_value_t = 604_800, global = true)]
    pub konnect_retention_seconds: u64,

    /// ARN of the CloudTrail Lake channel, arn:aws:cloudtrail:REGION:ACCOUNT:channel/ID
    #[arg(long, env = "CHANNEL_ARN", global = true)]
    pub channel_arn: Option<String>,
    /// External id required by the channel's resource policy, if it has one
    #[arg(long, env = "CHANNEL_EXTERNAL_ID", global = true)]
    pub channel_external_id: Option<String>,

    /// CloudWatch Logs log group to ship to instead of a CloudTrail Lake channel (its name; it must exist)
    #[arg(long, env = "CLOUDWATCH_LOG_GROUP", global = true)]
    pub cloudwatch_log_group: Option<String>,
    /// Log stream in CLOUDWATCH_LOG_GROUP; created when it does not exist
    #[arg(long, env = "CLOUDWATCH_LOG_STREAM", default_value = DEFAULT_LOG_STREAM, global = true)]
    pub cloudwatch_log_stream: String,

    /// Redis URL: redis://[user:password@]host[:port][/db] or rediss:// for TLS
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<Sensitive>,
    /// Redis host:port (older setting; REDIS_URL wins when both are set)
    #[arg(long, env = "REDIS_HOST", global = true)]
    pub redis_host: Option<Sensitive>,
    /// Redis database number
    #[arg(long, env = "REDIS_DB", global = true)]
    pub redis_db: Option<String>,
    /// Redis ACL user name
    #[arg(long, env = "REDIS_USERNAME", global = true)]
    pub redis_username: Option<String>,
    /// Redis password or AUTH token
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true, global = true)]
    pub redis_password: Option<Sensitive>,
    /// Secrets Manager secret (ARN or name) holding the Redis password; read at start
    #[arg(long, env = "REDIS_PASSWORD_SECRET_ARN", global = true)]
    pub redis_password_secret_arn: Option<String>,
    /// Use TLS without verifying Redis's certificate (insecure; logged loudly)
    #[arg(long, env = "REDIS_TLS_INSECURE", global = true)]
    pub redis_tls_insecure: bool,
    /// Accept plain-text connections (http:// Kong, redis:// or REDIS_HOST Redis) to hosts other than
    /// this machine's loopback: the token, the password and the audit trail then cross the network unencrypted
    #[arg(long, env = "ALLOW_INSECURE_TRANSPORT", global = true)]
    pub allow_insecure_transport: bool,
    /// Prefix of every key this program writes
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = DEFAULT_KEY_PREFIX, global = true)]
    pub redis_key_prefix: String,

    /// Seconds a claim holds an entry for this run before another run may take it
    #[arg(long, env = "CLAIM_LEASE_SECONDS", default_value_t = 1800, global = true)]
    pub claim_lease_seconds: u64,
    /// PutAuditEvents calls in flight at once
    #[arg(long, env = "PUT_CONCURRENCY", default_value_t = 4, global = true)]
    pub put_concurrency: usize,
    /// Tries per Kong request or PutAuditEvents call, the first included
    #[arg(long, env = "MAX_ATTEMPTS", default_value_t = 8, global = true)]
    pub max_attempts: u32,
    /// First retry wait in milliseconds (doubles each retry)
    #[arg(long, env = "RETRY_INITIAL_MS", default_value_t = 200, global = true)]
    pub retry_initial_ms: u64,
    /// Longest retry wait in milliseconds
    #[arg(long, env = "RETRY_MAX_MS", default_value_t = 20_000, global = true)]
    pub retry_max_ms: u64,

    /// Log format: text or json (json is the default in Lambda)
    #[arg(long, env = "LOG_FORMAT", global = true)]
    pub log_format: Option<String>,

    /// Embedded store file, used by the CLI when no Redis is configured
    #[arg(long, env = "STATE_FILE", global = true)]
    pub state_file: Option<PathBuf>,
    /// Stop claiming new work this many seconds before the invocation's deadline (Lambda) or the end of MAX_RUN_SECONDS (`run`)
    #[arg(long, env = "DEADLINE_MARGIN_SECONDS", default_value_t = 60, global = true)]
    pub deadline_margin_seconds: u64,
    /// Time budget of `run` (and of a Lambda invocation whose deadline is unknown): it stops claiming
    /// DEADLINE_MARGIN_SECONDS before the end, and a run stopped by it exits 0 with status=partial
    #[arg(long, env = "MAX_RUN_SECONDS", default_value_t = 840, global = true)]
    pub max_run_seconds: u64,
    /// Incremental reads start this many seconds before the watermark (late rows, clock skew)
    #[arg(long, env = "OVERLAP_SECONDS", default_value_t = 300, global = true)]
    pub overlap_seconds: u64,
    /// Incremental runs read the whole trail when the last full read is older than this (catches rows
    /// stamped further back than OVERLAP_SECONDS by a node whose clock is behind); 0: every run.
    /// Default: a day, or half of Kong's audit_log_record_ttl when that is shorter; a longer one
    /// than half the retention is refused (rows behind the overlap would expire unread)
    #[arg(long, env = "SWEEP_INTERVAL_SECONDS", global = true)]
    pub sweep_interval_seconds: Option<u64>,
    /// Read Kong's whole trail instead of what is newer than the watermark (shipped entries are still skipped)
    #[arg(long, env = "FULL_READ", global = true)]
    pub full_read: bool,
    /// Most PutAuditEvents calls per second (CloudTrail's quota is 100); throttling lowers it further
    #[arg(long, env = "PUT_RATE_LIMIT", default_value_t = 95.0, global = true)]
    pub put_rate_limit: f64,
    /// Dead-letter file (NDJSON) for entries refused for good, when no queue is configured
    #[arg(long, env = "DEAD_LETTER_FILE", global = true)]
    pub dead_letter_file: Option<PathBuf>,
    /// SQS queue URL for entries refused for good
    #[arg(long, env = "DEAD_LETTER_QUEUE_URL", global = true)]
    pub dead_letter_queue_url: Option<String>,

    /// In Lambda, run without DEAD_LETTER_QUEUE_URL: an entry refused for good is then kept only in the
    /// log (cut at 256 KB a line) or in a file that goes with the container, and cannot be redriven
    #[arg(long, env = "ALLOW_EPHEMERAL_DEAD_LETTERS", global = true)]
    pub allow_ephemeral_dead_letters: bool,

    /// The CloudTrail Lake event data store `reconcile` (and a store rebuilt after a loss) queries:
    /// its ARN or id. Default: the event data store(s) the channel delivers to (GetChannel)
    #[arg(long, env = "EVENT_DATA_STORE", global = true)]
    pub event_data_store: Option<String>,
    /// How long the destination may take to make an accepted event visible to queries: entries
    /// accepted less long ago are `pending` in `reconcile`, never missing nor sent again
    #[arg(long, env = "RECONCILE_SETTLE_SECONDS", default_value_t = 900, global = true)]
    pub reconcile_settle_seconds: u64,
    /// The window of a `{"action": "reconcile"}` Lambda invocation: entries of the last this many seconds
    #[arg(long, env = "RECONCILE_WINDOW_SECONDS", default_value_t = 172_800, global = true)]
    pub reconcile_window_seconds: u64,
    /// Questions to the destination at once when reconciling (CloudTrail Lake queries, at most 10;
    /// CloudWatch Logs reads, at most 8)
    #[arg(long, env = "RECONCILE_CONCURRENCY", default_value_t = 5, global = true)]
    pub reconcile_concurrency: usize,

    /// Kong's audit signing public key(s), RSA or EC (P-256, P-384, P-521), to verify every row's
    /// signature: PEM text or the path of a PEM file, with one or more PUBLIC KEY, RSA PUBLIC KEY or
    /// EC PUBLIC KEY blocks (several during a rotation, of either type)
    #[arg(long, env = "KONG_AUDIT_SIGNING_PUBLIC_KEY", hide_env_values = true, global = true)]
    pub kong_audit_signing_public_key: Option<String>,
}

/// A setting that holds a secret, or may (a URL with a password in it). `Debug` shows `"***"`, or the
/// URL with its credentials replaced; the text is reachable through `Deref`, for parsing.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive(String);

impl std::str::FromStr for Sensitive {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Sensitive(s.to_string()))
    }
}

impl From<&str> for Sensitive {
    fn from(s: &str) -> Self {
        Sensitive(s.to_string())
    }
}

impl std::ops::Deref for Sensitive {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.contains("://") {
            write!(f, "{:?}", redact_userinfo(&self.0))
        } else {
            f.write_str("\"***\"")
        }
    }
}

/// How to reach Kong.
#[derive(Debug, Clone)]
pub struct KongConfig {
    pub base_url: Url,
    pub token: Option<Secret>,
    pub root_ca_pem: Option<String>,
    pub tls_insecure: bool,
    pub page_size: u32,
    pub timeout: Duration,
}

/// How to read Konnect's audit log. The token may come from Secrets Manager instead
/// (`KONNECT_TOKEN_SECRET_ARN`, read when the clients are built).
#[derive(Debug, Clone)]
pub struct KonnectConfig {
    pub api: crate::konnect::ApiUrl,
    pub token: Option<Secret>,
    pub token_secret_arn: Option<String>,
    pub settle: Duration,
    pub overlap: Duration,
    pub retention: Duration,
    pub timeout: Duration,
}

/// The one audit log a process reads.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    Kong(KongConfig),
    Konnect(KonnectConfig),
}

/// Where events go.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub arn: String,
    pub region: String,
    pub account_id: String,
    pub external_id: Option<String>,
}

/// How to reach Redis. `Debug` and `display_url` never show the password.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub tls: bool,
    pub tls_insecure: bool,
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

impl RedisConfig {
    /// Where Redis is, safe to log.
    pub fn display_url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = self.username.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
        format!("{scheme}://{user}{}:{}/{}", host_for_url(&self.host), self.port, self.db)
    }
}

fn host_for_url(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The setting that names Konnect's API.
pub const KONNECT_API_URL: &str = "KONNECT_API_URL (--konnect-api-url)";

impl Settings {
    /// Whether this process reads Konnect's audit log (`KONNECT_API_URL` is set).
    pub fn reads_konnect(&self) -> bool {
        self.konnect_api_url.as_deref().is_some_and(|u| !u.trim().is_empty())
    }

    /// Kong's Admin API (`KONG_ADMIN_API`) or Konnect's audit log (`KONNECT_API_URL`): exactly one.
    pub fn source_config(&self) -> Result<SourceConfig, ConfigError> {
        let kong_set = self.kong_admin_api.as_deref().is_some_and(|u| !u.trim().is_empty());
        match (kong_set, self.reads_konnect()) {
            (true, true) => Err(invalid(
                "KONG_ADMIN_API (--kong-admin-api) and KONNECT_API_URL (--konnect-api-url)",
                "both are set, and one process reads one audit log: unset KONNECT_API_URL to read Kong's Admin API, or KONG_ADMIN_API to read Konnect's (run one shipper per source, each with its own REDIS_KEY_PREFIX if they share a Redis)",
            )),
            (false, true) => self.konnect_config().map(SourceConfig::Konnect),
            (_, false) => self.kong_config().map(SourceConfig::Kong).map_err(|mut e| {
                if !kong_set {
                    e.problem
                        .push_str(" (or set KONNECT_API_URL to read Kong Konnect's audit log instead)");
                }
                e
            }),
        }
    }

    pub fn konnect_config(&self) -> Result<KonnectConfig, ConfigError> {
        let raw = self
            .konnect_api_url
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                invalid(
                    KONNECT_API_URL,
                    "not set: give your region's Konnect API, e.g. https://us.api.konghq.com",
                )
            })?;
        let api = crate::konnect::ApiUrl::parse(raw)
            .map_err(|problem| invalid(KONNECT_API_URL, format!("'{}' {problem}", redact_userinfo(raw))))?;
        let token = match self.konnect_token.as_deref().map(str::trim) {
            Some("") => return Err(invalid("KONNECT_TOKEN (--konnect-token)", "is set but empty")),
            Some(t) => Some(Secret::new(t)),
            None => None,
        };
        let token_secret_arn = self
            .konnect_token_secret_arn
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        if token.is_none() && token_secret_arn.is_none() {
            return Err(invalid(
                "KONNECT_TOKEN (--konnect-token)",
                "not set: give a Konnect system-account token (spat_…) or personal access token (kpat_…) whose account has the Audit Logs role Admin, or KONNECT_TOKEN_SECRET_ARN, a Secrets Manager secret holding it",
            ));
        }
        if !(1..=1000).contains(&self.kong_page_size) {
            return Err(invalid(
                "KONG_PAGE_SIZE (--kong-page-size)",
                format!("{} is not between 1 and 1000", self.kong_page_size),
            ));
        }
        let retention = self.konnect_retention_seconds;
        if retention < 3_600 {
            return Err(invalid(
                "KONNECT_RETENTION_SECONDS (--konnect-retention-seconds)",
                format!("{retention} is less than an hour: set how long Konnect keeps its audit log (604800, 7 days, today)"),
            ));
        }
        for (setting, value) in [
            ("KONNECT_SETTLE_SECONDS (--konnect-settle-seconds)", self.konnect_settle_seconds),
            ("KONNECT_OVERLAP_SECONDS (--konnect-overlap-seconds)", self.konnect_overlap_seconds),
        ] {
            if value >= retention / 2 {
                return Err(invalid(
                    setting,
                    format!("{value} s is not less than half of KONNECT_RETENTION_SECONDS ({retention} s)"),
                ));
            }
        }
        Ok(KonnectConfig {
            api,
            token,
            token_secret_arn,
            settle: Duration::from_secs(self.konnect_settle_seconds),
            overlap: Duration::from_secs(self.konnect_overlap_seconds),
            retention: Duration::from_secs(retention),
            timeout: Duration::from_secs(self.kong_timeout_seconds.max(1)),
        })
    }

    pub fn kong_config(&self) -> Result<KongConfig, ConfigError> {
        const S: &str = "KONG_ADMIN_API (--kong-admin-api)";
        let raw = self
            .kong_admin_api
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                invalid(
                    S,
                    "not set: give the base URL of Kong's Admin API, e.g. https://kong-cp.internal:8444",
                )
            })?;
        let base_url = Url::parse(raw).map_err(|e| {
            invalid(
                S,
                format!("'{}' is not a URL ({e}); e.g. https://kong-cp.internal:8444", redact_userinfo(raw)),
            )
        })?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(invalid(S, format!("scheme '{}' is not http or https", base_url.scheme())));
        }
        if base_url.host_str().is_none_or(str::is_empty) {
            return Err(invalid(S, "the URL has no host"));
        }
        if !base_url.username().is_empty() || base_url.password().is_some() {
            return Err(invalid(S, "the URL holds credentials: put the token in KONG_ADMIN_TOKEN instead"));
        }
        if base_url.query().is_some() || base_url.fragment().is_some() {
            return Err(invalid(S, "the URL must not have a query string or fragment"));
        }
        if !(1..=1000).contains(&self.kong_page_size) {
            return Err(invalid(
                "KONG_PAGE_SIZE (--kong-page-size)",
                format!("{} is not between 1 and 1000", self.kong_page_size),
            ));
        }
        let token = match self.kong_admin_token.as_deref().map(str::trim) {
            Some("") => return Err(invalid("KONG_ADMIN_TOKEN (--kong-admin-token)", "is set but empty")),
            Some(t) => Some(Secret::new(t)),
            None => None,
        };
        let root_ca_pem = match self.kong_root_ca.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(pem) if pem.contains("-----BEGIN") => Some(pem.to_string()),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(
                        "KONG_ROOT_CA (--kong-root-ca)",
                        format!("not PEM text, and not a readable file '{path}': {e}"),
                    )
                })?;
                if !text.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(invalid(
                        "KONG_ROOT_CA (--kong-root-ca)",
                        format!("file '{path}' holds no PEM certificate"),
                    ));
                }
                Some(text)
            }
        };
        check_transport(
            S,
            &Transport {
                shown: base_url.as_str(),
                encrypted: base_url.scheme() == "https",
                host: base_url.host_str().unwrap_or_default(),
                exposed: "the Kong RBAC token and every audit entry",
                fix: "use Kong's TLS Admin API (https://, port 8444 by default)",
            },
            self.allow_insecure_transport,
        )?;
        Ok(KongConfig {
            base_url,
            token,
            root_ca_pem,
            tls_insecure: self.kong_tls_insecure,
            page_size: self.kong_page_size,
            timeout: Duration::from_secs(self.kong_timeout_seconds.max(1)),
        })
    }

    pub fn channel_config(&self) -> Result<ChannelConfig, ConfigError> {
        const S: &str = "CHANNEL_ARN (--channel-arn)";
        let arn = self
            .channel_arn
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                invalid(
                    S,
                    "not set: give the ARN of your CloudTrail Lake channel, arn:aws:cloudtrail:REGION:ACCOUNT:channel/ID",
                )
            })?;
        let (region, account_id) = parse_channel_arn(arn).map_err(|p| invalid(S, format!("'{arn}' {p}")))?;
        let external_id = match self.channel_external_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(x) => {
                let ok_chars = x.chars().all(|c| c.is_alphanumeric() || "_+=,.@:/-".contains(c));
                if !(2..=1224).contains(&x.len()) || !ok_chars {
                    return Err(invalid(
                        "CHANNEL_EXTERNAL_ID (--channel-external-id)",
                        "must be 2-1224 characters of letters, digits and _+=,.@:/-",
                    ));
                }
                Some(x.to_string())
            }
        };
        Ok(ChannelConfig {
            arn: arn.to_string(),
            region,
            account_id,
            external_id,
        })
    }

    /// `Ok(None)` when no Redis setting is given at all.
    pub fn redis_config(&self) -> Result<Option<RedisConfig>, ConfigError> {
        let url_setting = self.redis_url.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let host_setting = self.redis_host.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let setting = if url_setting.is_some() {
            "REDIS_URL (--redis-url)"
        } else {
            "REDIS_HOST (--redis-host)"
        };
        let mut cfg = match (url_setting, host_setting) {
            (Some(url), _) => parse_redis_url(url, setting)?,
            (None, Some(host)) if host.contains("://") => parse_redis_url(host, setting)?,
            (None, Some(host)) => parse_redis_url(&format!("redis://{host}"), setting)?,
            (None, None) => {
                if self.redis_password.is_some() || self.redis_username.is_some() || self.redis_db.is_some() {
                    return Err(invalid(
                        "REDIS_URL (--redis-url)",
                        "REDIS_DB/USERNAME/PASSWORD are set but no REDIS_URL or REDIS_HOST",
                    ));
                }
                return Ok(None);
            }
        };
        if let Some(db) = self.redis_db.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            cfg.db = db
                .parse()
                .ok()
                .filter(|d: &i64| *d >= 0)
                .ok_or_else(|| invalid("REDIS_DB (--redis-db)", format!("'{db}' is not a database number (0, 1, 2, ...)")))?;
        }
        if let Some(user) = self.redis_username.as_deref().filter(|s| !s.is_empty()) {
            cfg.username = Some(user.to_string());
        }
        if let Some(pass) = self.redis_password.as_deref().filter(|s| !s.is_empty()) {
            cfg.password = Some(Secret::new(pass));
        }
        cfg.tls_insecure = self.redis_tls_insecure;
        check_transport(
            setting,
            &Transport {
                shown: &cfg.display_url(),
                encrypted: cfg.tls,
                host: &cfg.host,
                exposed: "the Redis password and every claim and mark",
                fix: "use TLS: REDIS_URL=rediss://HOST:PORT",
            },
            self.allow_insecure_transport,
        )?;
        Ok(Some(cfg))
    }

    pub fn backoff(&self) -> Backoff {
        Backoff {
            initial: Duration::from_millis(self.retry_initial_ms.max(1)),
            max: Duration::from_millis(self.retry_max_ms.max(self.retry_initial_ms.max(1))),
            attempts: self.max_attempts.max(1),
        }
    }

    /// The event data store given by `EVENT_DATA_STORE`, if any.
    pub fn event_data_store(&self) -> Result<Option<crate::reconcile::Store>, ConfigError> {
        match self.event_data_store.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(text) => crate::reconcile::Store::parse(text)
                .map(Some)
                .map_err(|p| invalid("EVENT_DATA_STORE (--event-data-store)", p)),
        }
    }

    pub fn check_key_prefix(&self) -> Result<(), ConfigError> {
        if self.redis_key_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "REDIS_KEY_PREFIX (--redis-key-prefix)",
                "must not contain spaces or control characters",
            ));
        }
        if !(1..=64).contains(&self.put_concurrency) {
            return Err(invalid("PUT_CONCURRENCY (--put-concurrency)", "must be between 1 and 64"));
        }
        if !(self.put_rate_limit > 0.0 && self.put_rate_limit <= 10_000.0) {
            return Err(invalid(
                "PUT_RATE_LIMIT (--put-rate-limit)",
                "must be a number of calls per second above 0",
            ));
        }
        if self.claim_lease_seconds < 60 {
            return Err(invalid("CLAIM_LEASE_SECONDS (--claim-lease-seconds)", "must be at least 60"));
        }
        if !(1..=10).contains(&self.reconcile_concurrency) {
            return Err(invalid(
                "RECONCILE_CONCURRENCY (--reconcile-concurrency)",
                "must be between 1 and 10",
            ));
        }
        if self.reconcile_window_seconds == 0 {
            return Err(invalid("RECONCILE_WINDOW_SECONDS (--reconcile-window-seconds)", "must be above 0"));
        }
        self.event_data_store()?;
        Ok(())
    }
}

/// A connection a setting describes, as `check_transport` judges it.
struct Transport<'a> {
    /// The URL, safe to show (no credentials).
    shown: &'a str,
    encrypted: bool,
    host: &'a str,
    /// What would cross the network in clear.
    exposed: &'a str,
    /// How to encrypt it instead.
    fix: &'a str,
}

/// Refuses a plain-text connection to another machine unless `ALLOW_INSECURE_TRANSPORT` says so.
/// Loopback stays allowed: nothing leaves the machine.
fn check_transport(setting: &'static str, transport: &Transport, allowed: bool) -> Result<(), ConfigError> {
    if transport.encrypted || allowed || is_loopback(transport.host) {
        return Ok(());
    }
    Err(invalid(
        setting,
        format!(
            "{} is plain text to another machine: {} would cross the network unencrypted. {}, or set ALLOW_INSECURE_TRANSPORT=true (--allow-insecure-transport) to accept that",
            transport.shown, transport.exposed, transport.fix
        ),
    ))
}

/// `localhost`, 127.0.0.0/8 or ::1 (also as an IPv4-mapped address).
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Err(_) => false,
    }
}

/// The CloudWatch Logs stream used when `CLOUDWATCH_LOG_STREAM` is not set.
pub const DEFAULT_LOG_STREAM: &str = "kong-audit-shipper";

/// A CloudWatch Logs destination: the operator's log group, and the stream this program writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsConfig {
    pub group: String,
    pub stream: String,
}

/// The one destination the settings name.
#[derive(Debug, Clone)]
pub enum Destination {
    CloudTrail(ChannelConfig),
    CloudWatchLogs(LogsConfig),
}

impl Settings {
    /// CloudTrail Lake (`CHANNEL_ARN`) or CloudWatch Logs (`CLOUDWATCH_LOG_GROUP`): exactly one.
    pub fn destination(&self) -> Result<Destination, ConfigError> {
        let channel_set = self.channel_arn.as_deref().is_some_and(|s| !s.trim().is_empty());
        match (channel_set, self.cloudwatch_logs_config()?) {
            (true, Some(_)) => Err(invalid(
                "CHANNEL_ARN (--channel-arn) and CLOUDWATCH_LOG_GROUP (--cloudwatch-log-group)",
                "both are set, and events go to exactly one destination: unset CHANNEL_ARN to ship to CloudWatch Logs, or CLOUDWATCH_LOG_GROUP to ship to CloudTrail Lake",
            )),
            (false, Some(logs)) => Ok(Destination::CloudWatchLogs(logs)),
            (_, None) => self.channel_config().map(Destination::CloudTrail).map_err(|mut e| {
                if !channel_set {
                    e.problem
                        .push_str(" (or set CLOUDWATCH_LOG_GROUP to ship to CloudWatch Logs instead)");
                }
                e
            }),
        }
    }

    /// `Ok(None)` when `CLOUDWATCH_LOG_GROUP` is not set.
    pub fn cloudwatch_logs_config(&self) -> Result<Option<LogsConfig>, ConfigError> {
        const GROUP: &str = "CLOUDWATCH_LOG_GROUP (--cloudwatch-log-group)";
        const STREAM: &str = "CLOUDWATCH_LOG_STREAM (--cloudwatch-log-stream)";
        let Some(group) = self.cloudwatch_log_group.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        if group.starts_with("arn:") {
            return Err(invalid(
                GROUP,
                format!("'{group}' is an ARN: give the log group's name (the part after log-group:)"),
            ));
        }
        let group_chars = group.chars().all(|c| c.is_ascii_alphanumeric() || "._-/#".contains(c));
        if group.len() > 512 || !group_chars {
            return Err(invalid(
                GROUP,
                format!("'{group}' is not a log group name: 1-512 characters of letters, digits and ._-/#"),
            ));
        }
        let stream = self.cloudwatch_log_stream.trim();
        if stream.is_empty() || stream.len() > 512 || stream.contains([':', '*']) {
            return Err(invalid(
                STREAM,
                format!("'{stream}' is not a log stream name: 1-512 characters, without ':' or '*'"),
            ));
        }
        Ok(Some(LogsConfig {
            group: group.to_string(),
            stream: stream.to_string(),
        }))
    }
}

impl Settings {
    /// Kong's signing keys; without the setting, a verifier that checks nothing (`unchecked`).
    pub fn signature_verifier(&self) -> Result<crate::signature::Verifier, ConfigError> {
        match self.kong_audit_signing_public_key.as_deref().map(str::trim) {
            None => Ok(crate::signature::Verifier::default()),
            Some("") => Err(invalid(SIGNING_KEY_SETTING, "is set but empty")),
            Some(value) => crate::signature::Verifier::from_setting(value).map_err(|e| invalid(SIGNING_KEY_SETTING, e.to_string())),
        }
    }
}

/// The setting that holds Kong's audit signing public keys.
pub const SIGNING_KEY_SETTING: &str = "KONG_AUDIT_SIGNING_PUBLIC_KEY (--kong-audit-signing-public-key)";

/// `(region, account id)` of a CloudTrail channel ARN.
pub fn parse_channel_arn(arn: &str) -> Result<(String, String), &'static str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || !parts[1].starts_with("aws") {
        return Err("is not an ARN (arn:aws:cloudtrail:REGION:ACCOUNT:channel/ID)");
    }
    if parts[2] != "cloudtrail" {
        return Err("is not a CloudTrail ARN (the service part must be 'cloudtrail')");
    }
    if parts[3].is_empty() || !parts[3].chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err("has no valid region");
    }
    if parts[4].len() != 12 || !parts[4].chars().all(|c| c.is_ascii_digit()) {
        return Err("has no 12-digit account id");
    }
    match parts[5].strip_prefix("channel/") {
        Some(id) if !id.is_empty() => Ok((parts[3].to_string(), parts[4].to_string())),
        _ => Err("is not a channel ARN (the resource must be channel/ID)"),
    }
}

fn parse_redis_url(raw: &str, setting: &'static str) -> Result<RedisConfig, ConfigError> {
    let shown = redact_userinfo(raw);
    let url = Url::parse(raw).map_err(|e| invalid(setting, format!("'{shown}' is not a Redis URL ({e})")))?;
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        other => return Err(invalid(setting, format!("scheme '{other}' is not redis:// or rediss://"))),
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid(setting, format!("'{shown}' has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let db = match url.path().trim_start_matches('/') {
        "" => 0,
        d => d
            .parse()
            .ok()
            .filter(|d: &i64| *d >= 0)
            .ok_or_else(|| invalid(setting, format!("'{d}' is not a database number")))?,
    };
    let decode = |s: &str| percent_decode(s).map_err(|_| invalid(setting, "the credentials are not valid percent-encoded UTF-8"));
    let username = match url.username() {
        "" => None,
        u => Some(decode(u)?),
    };
    let password = url.password().map(decode).transpose()?.map(Secret::new);
    Ok(RedisConfig {
        tls,
        tls_insecure: false,
        host,
        port: url.port().unwrap_or(6379),
        db,
        username,
        password,
    })
}

fn percent_decode(s: &str) -> Result<String, std::str::Utf8Error> {
    percent_encoding::percent_decode_str(s).decode_utf8().map(|c| c.into_owned())
}

/// A URL as text with any `user:password@` replaced, for error messages.
pub fn redact_userinfo(raw: &str) -> String {
    match (raw.find("://"), raw.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => format!("{}***@{}", &raw[..scheme_end + 3], &raw[at + 1..]),
        _ => raw.to_string(),
    }
}

/// Where the embedded store lives when no path is given: beside the user's other state.
pub fn default_state_path() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("kong-audit-shipper").join("state.redb")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        s: Settings,
    }

    fn settings(args: &[&str]) -> Settings {
        let mut v = vec!["t"];
        v.extend_from_slice(args);
        T::try_parse_from(v).unwrap().s
    }

    #[test]
    fn channel_arn_gives_region_and_account() {
        let s = settings(&["--channel-arn", "arn:aws:cloudtrail:eu-west-1:123456789012:channel/abc-123"]);
        let c = s.channel_config().unwrap();
        assert_eq!((c.region.as_str(), c.account_id.as_str()), ("eu-west-1", "123456789012"));
        for bad in [
            "nope",
            "arn:aws:s3:eu-west-1:123456789012:channel/x",
            "arn:aws:cloudtrail:eu-west-1:12345:channel/x",
            "arn:aws:cloudtrail:eu-west-1:123456789012:eventdatastore/x",
        ] {
            let err = settings(&["--channel-arn", bad]).channel_config().unwrap_err().to_string();
            assert!(err.starts_with("CHANNEL_ARN"), "{err}");
        }
        let err = settings(&[]).channel_config().unwrap_err().to_string();
        assert!(err.contains("CHANNEL_ARN") && err.contains("not set"), "{err}");
    }

    #[test]
    fn exactly_one_destination_is_configured() {
        const ARN: &str = "arn:aws:cloudtrail:eu-west-1:123456789012:channel/abc-123";
        let logs = settings(&["--cloudwatch-log-group", "/kong/audit"]);
        match logs.destination().unwrap() {
            Destination::CloudWatchLogs(l) => assert_eq!((l.group.as_str(), l.stream.as_str()), ("/kong/audit", DEFAULT_LOG_STREAM)),
            other => panic!("{other:?}"),
        }
        let named = settings(&["--cloudwatch-log-group", "g", "--cloudwatch-log-stream", "eu-cp"]);
        assert!(matches!(named.destination().unwrap(), Destination::CloudWatchLogs(l) if l.stream == "eu-cp"));
        assert!(matches!(
            settings(&["--channel-arn", ARN]).destination().unwrap(),
            Destination::CloudTrail(c) if c.account_id == "123456789012"
        ));
        let both = settings(&["--channel-arn", ARN, "--cloudwatch-log-group", "g"])
            .destination()
            .unwrap_err()
            .to_string();
        assert!(
            both.contains("CHANNEL_ARN") && both.contains("CLOUDWATCH_LOG_GROUP") && both.contains("both"),
            "{both}"
        );
        let neither = settings(&[]).destination().unwrap_err().to_string();
        assert!(
            neither.starts_with("CHANNEL_ARN") && neither.contains("not set") && neither.contains("CLOUDWATCH_LOG_GROUP"),
            "{neither}"
        );
        // An empty setting is no setting.
        assert!(matches!(
            settings(&["--channel-arn", ARN, "--cloudwatch-log-group", " "])
                .destination()
                .unwrap(),
            Destination::CloudTrail(_)
        ));
        for (args, setting) in [
            (
                vec!["--cloudwatch-log-group", "arn:aws:logs:eu-west-1:123456789012:log-group:g"],
                "CLOUDWATCH_LOG_GROUP",
            ),
            (vec!["--cloudwatch-log-group", "kong audit"], "CLOUDWATCH_LOG_GROUP"),
            (
                vec!["--cloudwatch-log-group", "g", "--cloudwatch-log-stream", "a:b"],
                "CLOUDWATCH_LOG_STREAM",
            ),
            (
                vec!["--cloudwatch-log-group", "g", "--cloudwatch-log-stream", ""],
                "CLOUDWATCH_LOG_STREAM",
            ),
        ] {
            let err = settings(&args).destination().unwrap_err().to_string();
            assert!(err.starts_with(setting), "{args:?}: {err}");
        }
    }

    #[test]
    fn one_source_per_process_and_konnect_settings_are_checked() {
        let both = settings(&[
            "--kong-admin-api",
            "https://kong:8444",
            "--konnect-api-url",
            "https://us.api.konghq.com",
            "--konnect-token",
            "kpat_x",
        ])
        .source_config()
        .unwrap_err()
        .to_string();
        assert!(
            both.contains("KONG_ADMIN_API") && both.contains("KONNECT_API_URL") && both.contains("both"),
            "{both}"
        );
        let neither = settings(&[]).source_config().unwrap_err().to_string();
        assert!(
            neither.starts_with("KONG_ADMIN_API") && neither.contains("KONNECT_API_URL"),
            "{neither}"
        );
        let konnect = settings(&["--konnect-api-url", "https://eu.api.konghq.com", "--konnect-token", "spat_abc"]);
        match konnect.source_config().unwrap() {
            SourceConfig::Konnect(k) => {
                assert_eq!(k.api.region(), Some("eu"));
                assert_eq!(k.token.unwrap().expose(), "spat_abc");
                assert_eq!((k.settle.as_secs(), k.overlap.as_secs(), k.retention.as_secs()), (60, 600, 604_800));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !format!("{:?}", konnect.konnect_token).contains("spat_abc"),
            "the token is never shown"
        );
        for (args, setting, what) in [
            (vec!["--konnect-api-url", "https://us.api.konghq.com"], "KONNECT_TOKEN", "not set"),
            (
                vec!["--konnect-api-url", "https://global.api.konghq.com", "--konnect-token", "t"],
                "KONNECT_API_URL",
                "global",
            ),
            (
                vec!["--konnect-api-url", "http://us.api.konghq.com", "--konnect-token", "t"],
                "KONNECT_API_URL",
                "https://",
            ),
            (
                vec![
                    "--konnect-api-url",
                    "https://us.api.konghq.com",
                    "--konnect-token",
                    "t",
                    "--konnect-retention-seconds",
                    "60",
                ],
                "KONNECT_RETENTION_SECONDS",
                "less than an hour",
            ),
            (
                vec![
                    "--konnect-api-url",
                    "https://us.api.konghq.com",
                    "--konnect-token",
                    "t",
                    "--konnect-overlap-seconds",
                    "400000",
                ],
                "KONNECT_OVERLAP_SECONDS",
                "half",
            ),
        ] {
            let e = settings(&args).source_config().unwrap_err().to_string();
            assert!(e.starts_with(setting) && e.contains(what), "{args:?}: {e}");
        }
        let by_secret = settings(&[
            "--konnect-api-url",
            "https://us.api.konghq.com",
            "--konnect-token-secret-arn",
            "arn:x",
        ]);
        assert!(
            matches!(by_secret.source_config().unwrap(), SourceConfig::Konnect(k) if k.token.is_none() && k.token_secret_arn.as_deref() == Some("arn:x"))
        );
    }

    #[test]
    fn redis_url_with_credentials_is_parsed_and_never_displayed() {
        let s = settings(&["--redis-url", "rediss://app:p%40ss%3Aword@cache.example:6380/3"]);
        let r = s.redis_config().unwrap().unwrap();
        assert!(r.tls);
        assert_eq!((r.host.as_str(), r.port, r.db), ("cache.example", 6380, 3));
        assert_eq!(r.username.as_deref(), Some("app"));
        assert_eq!(r.password.as_ref().unwrap().expose(), "p@ss:word");
        assert_eq!(r.display_url(), "rediss://app@cache.example:6380/3");
        assert!(!format!("{r:?}").contains("p@ss"));
    }

    #[test]
    fn legacy_redis_settings_work_and_override() {
        let s = settings(&[
            "--allow-insecure-transport",
            "--redis-host",
            "10.0.0.5:6390",
            "--redis-db",
            "2",
            "--redis-username",
            "u",
            "--redis-password",
            "pw",
        ]);
        let r = s.redis_config().unwrap().unwrap();
        assert_eq!((r.host.as_str(), r.port, r.db, r.tls), ("10.0.0.5", 6390, 2, false));
        assert_eq!(r.password.unwrap().expose(), "pw");
        assert!(settings(&[]).redis_config().unwrap().is_none());
        let err = settings(&["--redis-host", "h", "--redis-db", "x"])
            .redis_config()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("REDIS_DB"), "{err}");
        let err = settings(&["--redis-url", "http://u:secret@h"])
            .redis_config()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("REDIS_URL") && !err.contains("secret"), "{err}");
    }

    #[test]
    fn kong_url_is_validated_without_leaking_credentials() {
        assert!(settings(&[]).kong_config().unwrap_err().to_string().starts_with("KONG_ADMIN_API"));
        let err = settings(&["--kong-admin-api", "https://admin:tok3n@kong:8444"])
            .kong_config()
            .unwrap_err()
            .to_string();
        assert!(err.contains("credentials") && !err.contains("tok3n"), "{err}");
        assert!(settings(&["--kong-admin-api", "ftp://kong"]).kong_config().is_err());
        assert!(settings(&["--kong-admin-api", "kong:8001"]).kong_config().is_err());
        let ok = settings(&["--kong-admin-api", "https://kong.internal:8444/admin"])
            .kong_config()
            .unwrap();
        assert_eq!(ok.base_url.as_str(), "https://kong.internal:8444/admin");
        let err = settings(&["--kong-admin-api", "http://k", "--kong-root-ca", "/no/such/file.pem"])
            .kong_config()
            .unwrap_err();
        assert!(err.to_string().starts_with("KONG_ROOT_CA"), "{err}");
    }

    #[test]
    fn plain_text_to_another_machine_is_refused_unless_allowed() {
        let err = settings(&["--kong-admin-api", "http://kong.internal:8001"])
            .kong_config()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("KONG_ADMIN_API")
                && err.contains("http://kong.internal:8001/")
                && err.contains("https://")
                && err.contains("ALLOW_INSECURE_TRANSPORT=true"),
            "{err}"
        );
        let allowed = settings(&["--kong-admin-api", "http://kong.internal:8001", "--allow-insecure-transport"]);
        assert_eq!(allowed.kong_config().unwrap().base_url.as_str(), "http://kong.internal:8001/");

        for (args, setting) in [
            (["--redis-url", "redis://app:s3cret@cache.internal:6379/0"], "REDIS_URL"),
            (["--redis-host", "cache.internal:6379"], "REDIS_HOST"),
            (["--redis-host", "redis://10.0.0.5:6379"], "REDIS_HOST"),
        ] {
            let err = settings(&args).redis_config().unwrap_err().to_string();
            assert!(
                err.starts_with(setting) && err.contains("rediss://") && err.contains("ALLOW_INSECURE_TRANSPORT=true"),
                "{args:?}: {err}"
            );
            assert!(!err.contains("s3cret"), "{err}");
            let mut with_flag = args.to_vec();
            with_flag.push("--allow-insecure-transport");
            assert!(!settings(&with_flag).redis_config().unwrap().unwrap().tls, "{args:?}");
        }

        // Encrypted, or not leaving the machine: always fine.
        for url in [
            "https://kong.internal:8444",
            "http://127.0.0.1:8001",
            "http://127.8.9.10:8001",
            "http://localhost:8001",
            "http://[::1]:8001",
        ] {
            assert!(settings(&["--kong-admin-api", url]).kong_config().is_ok(), "{url}");
        }
        for url in [
            "rediss://cache.internal:6379",
            "redis://127.0.0.1:6379",
            "redis://localhost:6379",
            "redis://[::1]:6379",
        ] {
            assert!(settings(&["--redis-url", url]).redis_config().is_ok(), "{url}");
        }
        assert!(settings(&["--redis-host", "127.0.0.1:6379"]).redis_config().is_ok());
    }

    #[test]
    fn loopback_is_localhost_127_slash_8_and_colon_colon_1() {
        for host in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "127.0.0.1",
            "127.255.0.9",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "kong.internal",
            "10.0.0.5",
            "128.0.0.1",
            "0.0.0.0",
            "::",
            "localhost.example.com",
            "::ffff:10.0.0.1",
            "",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
