//! `kong-audit-shipper check`: will it work? One line per check, ✓ or ✗, and the fix for each ✗.
//! Every check that can run does run: one failure does not hide the others. Exit 1 when any fails.
//! Secrets (the Kong or Konnect token, the Redis password) are never printed. A process reads one
//! source: Kong's Admin API, or Konnect's audit log (`KONNECT_API_URL`), and checks that one.

use std::process::ExitCode;
use std::time::Duration;

use aws_sdk_cloudtraildata::config::ProvideCredentials;

use crate::config::{ChannelConfig, ConfigError, Settings};
use crate::dedup::{DedupStore, FileStore, MemoryPolicy, RedisStore, Settlement, StoreError};
use crate::kong::{AuditSource, EntryKind, KongClient, KongError, KongInfo, PageRequest};
use crate::konnect::{KonnectError, PageRequest as KonnectPageRequest, TimeWindow};
use crate::retry::Backoff;
use crate::setup::{SetupError, read_secret};

/// The outcome of one check.
enum Outcome {
    Pass(String),
    Fail {
        what: String,
        fix: String,
    },
    /// Could not be checked because an earlier check failed.
    Skip(String),
}

fn fail(what: impl Into<String>, fix: impl Into<String>) -> Outcome {
    Outcome::Fail {
        what: what.into(),
        fix: fix.into(),
    }
}

#[derive(Default)]
struct Report {
    passed: usize,
    failed: usize,
}

impl Report {
    fn line(&mut self, name: &str, outcome: Outcome) {
        match outcome {
            Outcome::Pass(text) => {
                self.passed += 1;
                println!("✓ {name}: {text}");
            }
            Outcome::Fail { what, fix } => {
                self.failed += 1;
                println!("✗ {name}: {what}");
                println!("    fix: {fix}");
            }
            Outcome::Skip(why) => println!("- {name}: not checked ({why})"),
        }
    }
}

/// Only when the setting is given: Kong's audit signing public keys can be read.
fn signing_key_check(settings: &Settings, report: &mut Report) {
    if settings.kong_audit_signing_public_key.is_none() {
        return;
    }
    let outcome = match settings.signature_verifier() {
        Ok(v) => {
            let keys: Vec<String> = v.keys().iter().map(|k| format!("{} {}", k.key_type(), k.fingerprint())).collect();
            Outcome::Pass(format!(
                "{} key(s): {}; every shipped row records its verdict",
                keys.len(),
                keys.join(", ")
            ))
        }
        Err(e) => fail(
            e.to_string(),
            format!(
                "set {} to the PEM of Kong's audit signing public key (openssl pkey -in private.pem -pubout), or the path of a file holding it",
                e.setting
            ),
        ),
    };
    report.line("Kong audit signing keys", outcome);
}

pub async fn main(settings: &Settings) -> ExitCode {
    let mut report = Report::default();
    if let Err(e) = settings.check_key_prefix() {
        report.line("Settings", fail(e.to_string(), format!("change {}", e.setting)));
    }
    let sdk = crate::sink::load_sdk_config(settings.channel_config().ok().map(|c| c.region).as_deref()).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    match settings.source_config() {
        // Both sources named: the one failure to fix before any other check means anything.
        Err(e) if settings.reads_konnect() && settings.kong_admin_api.as_deref().is_some_and(|u| !u.trim().is_empty()) => {
            report.line(
                "Source",
                fail(
                    e.to_string(),
                    "keep one of KONG_ADMIN_API and KONNECT_API_URL: one shipper reads one audit log",
                ),
            );
        }
        _ if settings.reads_konnect() => konnect_checks(settings, &secrets, &mut report).await,
        _ => kong_checks(settings, &secrets, &mut report).await,
    }
    signing_key_check(settings, &mut report);
    store_check(settings, &secrets, &mut report).await;
    let channel = destination_check(settings, &sdk, &mut report).await;
    aws_checks(settings, &sdk, channel.as_ref(), &mut report).await;

    let total = report.passed + report.failed;
    println!();
    if report.failed == 0 {
        println!("All {total} checks passed.");
        ExitCode::SUCCESS
    } else {
        println!(
            "{} of {total} checks failed: apply the fixes above, then run `kong-audit-shipper check` again.",
            report.failed
        );
        ExitCode::from(super::EXIT_INCOMPLETE)
    }
}

/// A short retry policy: `check` should answer in seconds, not wait out a long outage.
fn check_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(1),
        attempts: 2,
    }
}

fn config_fail(e: &ConfigError) -> Outcome {
    fail(
        e.to_string(),
        format!("set {} (see `kong-audit-shipper --help` and docs/configuration.md)", e.setting),
    )
}

fn secret_fail(e: &SetupError, setting: &str) -> Outcome {
    fail(
        e.to_string(),
        format!(
            "check {setting}: the secret must exist, hold the value as plain text, and these AWS credentials need secretsmanager:GetSecretValue on it (and kms:Decrypt on its key)"
        ),
    )
}

const KONG: &str = "Kong";
const AUDIT: &str = "Kong audit logging";

async fn kong_checks(settings: &Settings, secrets: &aws_sdk_secretsmanager::Client, report: &mut Report) {
    let token_lines = |report: &mut Report, why: &str| {
        for kind in EntryKind::ALL {
            report.line(&token_name(kind), Outcome::Skip(why.into()));
        }
    };
    let mut config = match settings.kong_config() {
        Ok(c) => c,
        Err(e) => {
            report.line(KONG, config_fail(&e));
            report.line(AUDIT, Outcome::Skip("no usable KONG_ADMIN_API".into()));
            return token_lines(report, "no usable KONG_ADMIN_API");
        }
    };
    if let Some(arn) = settings.kong_admin_token_secret_arn.as_deref().filter(|s| !s.is_empty()) {
        match read_secret(secrets, arn, "KONG_ADMIN_TOKEN_SECRET_ARN").await {
            Ok(token) => {
                report.line("Kong token secret", Outcome::Pass(format!("read from Secrets Manager ({arn})")));
                config.token = Some(token);
            }
            Err(e) => report.line("Kong token secret", secret_fail(&e, "KONG_ADMIN_TOKEN_SECRET_ARN")),
        }
    }
    let url = config.base_url.to_string();
    let has_token = config.token.is_some();
    let client = match KongClient::new(&config, check_backoff()) {
        Ok(c) => c,
        Err(e) => {
            report.line(KONG, kong_fail(&e, &url));
            report.line(AUDIT, Outcome::Skip("the Kong client could not be built".into()));
            return token_lines(report, "the Kong client could not be built");
        }
    };

    let info = client.info().await;
    match &info {
        Ok(info) => report.line(KONG, Outcome::Pass(describe_kong(&url, info))),
        Err(KongError::Unauthorized { status, .. }) => report.line(
            KONG,
            Outcome::Pass(format!(
                "reachable at {url} (it refused GET / with HTTP {status}, so its version is not known; see the token lines)"
            )),
        ),
        Err(e) => {
            report.line(KONG, kong_fail(e, &url));
            report.line(AUDIT, Outcome::Skip("Kong did not answer".into()));
            return token_lines(report, "Kong did not answer");
        }
    }

    // One page of one entry from each endpoint: proves the token is accepted where it matters.
    let mut pages = Vec::new();
    for kind in EntryKind::ALL {
        let request = PageRequest {
            kind,
            size: 1,
            sort_by: kind.key_field(),
            sort_desc: false,
            after: None,
            before: None,
            offset: None,
        };
        pages.push((kind, client.page(&request).await));
    }
    let endpoint_missing = pages.iter().any(|(_, p)| matches!(p, Err(KongError::NotFound { .. })));
    let reported = info.as_ref().ok().and_then(|i| i.audit_log);
    let record_ttl = info.as_ref().ok().map(|i| i.record_ttl);
    let audit_off = reported == Some(false) || (endpoint_missing && reported.is_none());
    let audit = if reported == Some(false) {
        fail(
            "off (GET / reports audit_log = off): Kong writes no audit trail",
            "set audit_log = on in kong.conf (or KONG_AUDIT_LOG=on) on every control-plane node and restart Kong; entries made while it was off are not recoverable",
        )
    } else if audit_off {
        fail(
            format!("off: {url}audit/requests answers 404"),
            "set audit_log = on in kong.conf (or KONG_AUDIT_LOG=on) and restart Kong; if it is on, KONG_ADMIN_API may not be Kong Enterprise's Admin API (Kong OSS has no audit log)",
        )
    } else if pages.iter().any(|(_, p)| p.is_ok()) || reported == Some(true) {
        Outcome::Pass(match (reported, record_ttl) {
            (Some(true), Some(ttl)) => format!("on; Kong keeps entries {ttl} s ({:.0} days)", ttl as f64 / 86_400.0),
            _ => "the audit endpoints answer".to_string(),
        })
    } else {
        Outcome::Skip("the audit endpoints could not be read; see the token lines".into())
    };
    report.line(AUDIT, audit);

    for (kind, page) in pages {
        let name = token_name(kind);
        let path = format!("/{}", kind.path());
        let outcome = match page {
            Ok(page) => Outcome::Pass(format!(
                "{} (first page read: {})",
                if has_token {
                    "token accepted"
                } else {
                    "no token set, and none needed"
                },
                if page.entries.is_empty() { "the trail is empty" } else { "1 entry" }
            )),
            Err(_) if audit_off => Outcome::Skip("audit logging is off".into()),
            Err(KongError::Unauthorized { status: 403, .. }) => fail(
                format!("HTTP 403 on {path}: the token is valid, but its role may not read the audit log"),
                "give the token's RBAC user a role allowing read on /audit/requests and /audit/objects (for example an endpoint permission on /audit/* in the default workspace), or use the token of a user who has one",
            ),
            Err(KongError::Unauthorized { status, .. }) if has_token => fail(
                format!("HTTP {status} on {path}: Kong does not accept KONG_ADMIN_TOKEN"),
                "set KONG_ADMIN_TOKEN (or KONG_ADMIN_TOKEN_SECRET_ARN) to the RBAC token of a user whose role may read /audit/requests and /audit/objects",
            ),
            Err(KongError::Unauthorized { status, .. }) => fail(
                format!("HTTP {status} on {path}: no KONG_ADMIN_TOKEN is set, and this Kong requires one"),
                "set KONG_ADMIN_TOKEN (or KONG_ADMIN_TOKEN_SECRET_ARN) to the RBAC token of a user whose role may read /audit/requests and /audit/objects",
            ),
            Err(e) => kong_fail(&e, &url),
        };
        report.line(&name, outcome);
    }
}

fn token_name(kind: EntryKind) -> String {
    format!("Kong access to /{}", kind.path())
}

fn describe_kong(url: &str, info: &KongInfo) -> String {
    let version = info.version_text.as_deref().unwrap_or("unknown");
    let reading = if info.has_timestamp_filters() {
        "has the audit timestamp filters: each run reads only what is new"
    } else {
        "has no audit timestamp filters: each run reads the whole trail and skips what was shipped"
    };
    format!("reachable at {url}, version {version} ({reading})")
}

fn kong_fail(e: &KongError, url: &str) -> Outcome {
    let fix = match e {
        KongError::Unavailable { last, .. } if last.contains("certificate") || last.contains("Certificate") => {
            "Kong's TLS certificate is not trusted: set KONG_ROOT_CA to the PEM (text or file) of the CA that signed it"
                .to_string()
        }
        KongError::Unavailable { .. } => format!(
            "check KONG_ADMIN_API ({url}): scheme, host and port of the Admin API (8001, or 8444 with TLS), that Kong runs, and that this machine can reach it (VPC, security group, firewall)"
        ),
        KongError::NotJson { .. } | KongError::NotFound { .. } => format!(
            "KONG_ADMIN_API ({url}) must be the base URL of Kong's Admin API (port 8001/8444), not the proxy (8000/8443) or Kong Manager (8002/8445); keep any path prefix a load balancer adds"
        ),
        KongError::Tls(_) => "set KONG_ROOT_CA to the PEM text, or the path of a PEM file, of the CA that signed Kong's certificate".to_string(),
        KongError::Unauthorized { .. } => {
            "set KONG_ADMIN_TOKEN (or KONG_ADMIN_TOKEN_SECRET_ARN) to the RBAC token of a user whose role may read /audit/requests and /audit/objects".to_string()
        }
        KongError::Rejected { .. } => "see Kong's error log for this request; check KONG_ADMIN_API and the Kong version".to_string(),
        KongError::Task { .. } => "a bug: please report it with this message".to_string(),
        KongError::TooLarge { .. } => "lower KONG_PAGE_SIZE, or check what answers at KONG_ADMIN_API".to_string(),
        KongError::Konnect(_) => "see the message".to_string(),
    };
    fail(e.to_string(), fix)
}

const KONNECT: &str = "Konnect";
const KONNECT_READ: &str = "Konnect audit logs";

/// The settings, the token (from its secret, if it is in one), then one page of one entry of all
/// Konnect keeps: the token, the region and the Audit Logs role, proved where it matters.
async fn konnect_checks(settings: &Settings, secrets: &aws_sdk_secretsmanager::Client, report: &mut Report) {
    let mut config = match settings.konnect_config() {
        Ok(c) => c,
        Err(e) => {
            report.line(KONNECT, config_fail(&e));
            return report.line(KONNECT_READ, Outcome::Skip("no usable Konnect settings".into()));
        }
    };
    let api = config.api.to_string();
    report.line(
        KONNECT,
        Outcome::Pass(format!(
            "{api} ({}); entries are kept {} s ({:.0} days, KONNECT_RETENTION_SECONDS), read {} s behind now",
            match config.api.region() {
                Some(region) => format!("region {region}"),
                None => "not a Konnect host: a proxy of yours".into(),
            },
            config.retention.as_secs(),
            config.retention.as_secs_f64() / 86_400.0,
            config.settle.as_secs()
        )),
    );
    if let Some(arn) = config.token_secret_arn.clone() {
        match read_secret(secrets, &arn, "KONNECT_TOKEN_SECRET_ARN").await {
            Ok(token) => {
                report.line("Konnect token secret", Outcome::Pass(format!("read from Secrets Manager ({arn})")));
                config.token = Some(token);
            }
            Err(e) => {
                report.line("Konnect token secret", secret_fail(&e, "KONNECT_TOKEN_SECRET_ARN"));
                return report.line(KONNECT_READ, Outcome::Skip("the token could not be read".into()));
            }
        }
    }
    let source = match crate::setup::konnect_source(&config, check_backoff()) {
        Ok(source) => source,
        Err(e) => {
            return report.line(
                KONNECT_READ,
                fail(e.to_string(), "set KONNECT_TOKEN to the token as Konnect shows it"),
            );
        }
    };
    let now = chrono::Utc::now().timestamp();
    let window = match TimeWindow::from_epoch(source.floor(now), source.newest(now)) {
        Ok(window) => window,
        Err(e) => {
            return report.line(
                KONNECT_READ,
                fail(e.to_string(), "check KONNECT_RETENTION_SECONDS and KONNECT_SETTLE_SECONDS"),
            );
        }
    };
    let request = KonnectPageRequest {
        window,
        size: 1,
        after: None,
        number: 1,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let outcome = match source.pages().page(&request, Some(deadline)).await {
        Ok(page) => Outcome::Pass(format!(
            "token accepted, the region answers, the audit log is readable ({})",
            if page.entries.is_empty() {
                "nothing in the retained window yet"
            } else {
                "first entry read"
            }
        )),
        Err(e) => konnect_fail(&e, &api),
    };
    report.line(KONNECT_READ, outcome);
}

fn konnect_fail(e: &KonnectError, api: &str) -> Outcome {
    let fix = match e {
        KonnectError::Unauthorized { .. } => format!(
            "create a system-account token (spat_…, recommended) or a personal access token (kpat_…) in Konnect, and set KONNECT_TOKEN (or KONNECT_TOKEN_SECRET_ARN) to it; check that KONNECT_API_URL ({api}) is your organization's region"
        ),
        KonnectError::Forbidden { .. } => "give the token's system account (or user) the Audit Logs role Admin in Konnect (Organization, Teams or System accounts, Roles): Admin is Konnect's only Audit Logs role, so the token may also change the audit-log webhook; give it to this shipper only".to_string(),
        KonnectError::NotFound { .. } | KonnectError::NotJson { .. } | KonnectError::Redirected { .. } => format!(
            "set KONNECT_API_URL ({api}) to your region's API base, https://{{us,eu,au,me,in,sg}}.api.konghq.com, without /v3"
        ),
        KonnectError::Unavailable { .. } | KonnectError::DeadlineReached { .. } | KonnectError::WaitPastDeadline { .. } => format!(
            "check that this machine reaches {api} over HTTPS (port 443): from a VPC, through a NAT gateway or an HTTPS proxy; if Konnect asked to wait (429), run `kong-audit-shipper check` again later"
        ),
        _ => "a request this program builds was refused: please report this message".to_string(),
    };
    fail(e.to_string(), fix)
}

const STORE: &str = "Store";

async fn store_check(settings: &Settings, secrets: &aws_sdk_secretsmanager::Client, report: &mut Report) {
    let redis = match settings.redis_config() {
        Ok(r) => r,
        Err(e) => return report.line(STORE, config_fail(&e)),
    };
    let prefix = &settings.redis_key_prefix;
    match redis {
        Some(mut config) => {
            let shown = config.display_url();
            if let Some(arn) = settings.redis_password_secret_arn.as_deref().filter(|s| !s.is_empty()) {
                match read_secret(secrets, arn, "REDIS_PASSWORD_SECRET_ARN").await {
                    Ok(password) => {
                        report.line("Redis password secret", Outcome::Pass(format!("read from Secrets Manager ({arn})")));
                        config.password = Some(password);
                    }
                    Err(e) => report.line("Redis password secret", secret_fail(&e, "REDIS_PASSWORD_SECRET_ARN")),
                }
            }
            let store = RedisStore::connect(&config).await;
            let outcome = match &store {
                Err(e) => fail(
                    format!("Redis at {shown} is not reachable: {}", e.detail),
                    redis_fix(&e.detail, &shown),
                ),
                Ok(store) => match probe(store, prefix).await {
                    Ok(()) => Outcome::Pass(format!(
                        "Redis at {shown}, reachable and writable (keys under the prefix '{prefix}')"
                    )),
                    Err(detail) => fail(
                        format!("Redis at {shown} answers, but a write failed: {detail}"),
                        redis_fix(&detail, &shown),
                    ),
                },
            };
            report.line(STORE, outcome);
            let eviction = match &store {
                Err(_) => Outcome::Skip("Redis is not reachable".into()),
                Ok(store) => eviction_outcome(store.memory_policy().await),
            };
            report.line(EVICTION, eviction);
        }
        None => {
            let path = settings.state_file.clone().unwrap_or_else(crate::config::default_state_path);
            let outcome = match FileStore::open(&path).await {
                Err(e) => fail(
                    format!("embedded file store at {}: {}", path.display(), e.detail),
                    if e.detail.contains("another kong-audit-shipper holds") {
                        "let the other run finish, or set STATE_FILE to another file; runs that must share state (the Lambda and a backfill) need REDIS_URL".to_string()
                    } else {
                        "set STATE_FILE to a file this user may create and write (its directory is created), or set REDIS_URL".to_string()
                    },
                ),
                Ok(store) => match probe(&store, prefix).await {
                    Ok(()) => Outcome::Pass(format!(
                        "embedded file store at {}, writable (no Redis setting: fine for a backfill from this machine; `run` and the Lambda need REDIS_URL)",
                        path.display()
                    )),
                    Err(detail) => fail(
                        format!("embedded file store at {}: {detail}", path.display()),
                        "set STATE_FILE to a file on a writable disk with free space, or set REDIS_URL",
                    ),
                },
            };
            report.line(STORE, outcome);
        }
    }
}

const EVICTION: &str = "Redis eviction policy";

/// Every key this program writes has an expiry, so any policy but `noeviction` lets a full Redis
/// delete marks (their entries ship again) and claims (another run ships the entry at once).
fn eviction_outcome(policy: Result<MemoryPolicy, StoreError>) -> Outcome {
    const FIX: &str = "set maxmemory-policy to noeviction (ElastiCache: a parameter group with maxmemory-policy = noeviction; the Terraform module creates one): a full Redis then refuses new claims and the run stops with an error, instead of deleting marks and shipping their entries again";
    match policy {
        Ok(p) if !p.may_evict() => Outcome::Pass(format!(
            "noeviction (a full Redis refuses writes instead of deleting marks){}",
            if p.max_bytes == 0 {
                String::new()
            } else {
                format!("; maxmemory {} MiB", p.max_bytes / (1024 * 1024))
            }
        )),
        Ok(p) if p.max_bytes == 0 => Outcome::Pass(format!(
            "{} with no maxmemory limit, so nothing is evicted; set noeviction before setting a limit",
            p.policy
        )),
        Ok(p) => fail(
            format!(
                "{} with maxmemory {} MiB: once full, Redis deletes keys, and every deleted mark is an entry shipped again",
                p.policy,
                p.max_bytes / (1024 * 1024)
            ),
            FIX,
        ),
        Err(e) => Outcome::Skip(format!(
            "INFO memory was refused ({}); make sure maxmemory-policy is noeviction",
            e.detail
        )),
    }
}

fn redis_fix(detail: &str, shown: &str) -> String {
    let d = detail.to_ascii_lowercase();
    if d.contains("noauth")
        || d.contains("wrongpass")
        || d.contains("invalid password")
        || d.contains("invalid username")
        || d.contains("authentication")
    {
        "Redis refused the credentials: set REDIS_PASSWORD (or REDIS_PASSWORD_SECRET_ARN, or the password in REDIS_URL) and REDIS_USERNAME for an ACL user".into()
    } else if d.contains("noperm") || d.contains("readonly") {
        "the Redis user may not write: grant it the commands the shipper uses on the key prefix (ACL: ~kong-audit-shipper:* +set +get +del +pttl +eval +ping +time +info), and point REDIS_URL at the primary, not a replica".into()
    } else {
        format!(
            "check REDIS_URL ({shown}): host, port and database; that Redis runs and this machine can reach it; use rediss:// when it requires TLS (ElastiCache in-transit encryption)"
        )
    }
}

/// Writes, reads back and deletes a probe key under the prefix (the delete is a release of our own
/// "claim", so it works the same on every store).
async fn probe(store: &dyn DedupStore, prefix: &str) -> Result<(), String> {
    let id = format!("{:016x}", fastrand::u64(..));
    let key = format!("{prefix}check:{id}");
    let value = format!("check:{id}");
    store.put(&key, &value, Some(Duration::from_secs(60))).await.map_err(|e| e.detail)?;
    match store.get(&key).await.map_err(|e| e.detail)? {
        Some(v) if v == value => {}
        other => return Err(format!("wrote {value:?} but read back {other:?}")),
    }
    let delete = Settlement {
        releases: vec![key.clone()],
        ..Default::default()
    };
    store.settle(&delete, &value).await.map_err(|e| e.detail)?;
    match store.get(&key).await.map_err(|e| e.detail)? {
        None => Ok(()),
        Some(_) => Err(format!("the probe key {key} could not be deleted")),
    }
}

/// The destination the settings name: the channel's ARN, or the CloudWatch Logs group (which must
/// answer a DescribeLogStreams). Both set is a failure naming both.
async fn destination_check(settings: &Settings, sdk: &aws_config::SdkConfig, report: &mut Report) -> Option<ChannelConfig> {
    if settings.cloudwatch_log_group.as_deref().is_none_or(|g| g.trim().is_empty()) {
        return channel_check(settings, report);
    }
    if let Err(e) = settings.destination() {
        report.line("Destination", fail(e.to_string(), format!("change {}", e.setting)));
        return None;
    }
    logs_check(settings, sdk, report).await;
    None
}

const LOGS: &str = "CloudWatch Logs";
const LOGS_IAM: &str = "grant the role logs:DescribeLogStreams, logs:CreateLogStream and logs:PutLogEvents on the log group (the Terraform module does, with destination = \"cloudwatch_logs\")";

async fn logs_check(settings: &Settings, sdk: &aws_config::SdkConfig, report: &mut Report) {
    use crate::sink::cloudwatch_logs::CallError;
    let logs = match settings.cloudwatch_logs_config() {
        Ok(Some(logs)) => logs,
        Ok(None) => return,
        Err(e) => return report.line(LOGS, config_fail(&e)),
    };
    let sink = crate::sink::CloudWatchLogsSink::new(sdk, &logs);
    let where_ = sdk.region().map(|r| format!(" in {r}")).unwrap_or_default();
    let outcome = match tokio::time::timeout(Duration::from_secs(30), sink.health()).await {
        Err(_) => fail(
            "DescribeLogStreams did not answer within 30 s",
            "check AWS_REGION and that this machine reaches CloudWatch Logs (a VPC endpoint for logs, or AWS_ENDPOINT_URL_CLOUDWATCH_LOGS)",
        ),
        Ok(Ok(health)) => Outcome::Pass(format!(
            "log group {}{where_} exists; stream {} {}; recipient account {}",
            logs.group,
            logs.stream,
            if health.stream_exists {
                "exists"
            } else {
                "will be created by the first run"
            },
            health.account_id.as_deref().unwrap_or("not named by the service")
        )),
        Ok(Err(e)) => {
            let fix = match &e {
                CallError::Fatal(text) if text.starts_with("CLOUDWATCH_LOG_GROUP") => format!(
                    "create the log group {}{where_} (the Terraform module does, with destination = \"cloudwatch_logs\"), or set CLOUDWATCH_LOG_GROUP and AWS_REGION to an existing one",
                    logs.group
                ),
                CallError::Fatal(text) if text.contains("access denied") => LOGS_IAM.to_string(),
                CallError::Fatal(text) if text.contains("credentials") => {
                    "give this process valid AWS credentials (see the AWS credentials line)".to_string()
                }
                CallError::Throttled(_) | CallError::Transient(_) => {
                    "CloudWatch Logs did not answer: run `kong-audit-shipper check` again in a minute".to_string()
                }
                _ => format!("check CLOUDWATCH_LOG_GROUP ({}) and AWS_REGION; {LOGS_IAM}", logs.group),
            };
            fail(e.text(), fix)
        }
    };
    report.line(LOGS, outcome);
}

fn channel_check(settings: &Settings, report: &mut Report) -> Option<ChannelConfig> {
    match settings.channel_config() {
        Ok(c) => {
            let external = if c.external_id.is_some() { ", with an external id" } else { "" };
            report.line(
                "Channel",
                Outcome::Pass(format!(
                    "{} (region {}, recipient account {}{external})",
                    c.arn, c.region, c.account_id
                )),
            );
            Some(c)
        }
        Err(e) => {
            report.line(
                "Channel",
                fail(
                    e.to_string(),
                    format!(
                        "set {} to your channel's ARN: the CloudTrail console shows it under Lake, Integrations; or run `aws cloudtrail list-channels`",
                        e.setting
                    ),
                ),
            );
            None
        }
    }
}

async fn aws_checks(settings: &Settings, sdk: &aws_config::SdkConfig, channel: Option<&ChannelConfig>, report: &mut Report) {
    const FIX: &str = "give this process AWS credentials: AWS_PROFILE (then `aws sso login` for an SSO profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; in Lambda, ECS or EC2 the role provides them";
    let credentials = match sdk.credentials_provider() {
        None => fail("no credentials provider is configured", FIX),
        Some(provider) => match tokio::time::timeout(Duration::from_secs(20), provider.provide_credentials()).await {
            Err(_) => fail("resolving credentials timed out after 20 s", FIX),
            Ok(Err(e)) => fail(format!("none found ({})", crate::error_text::chain(&e)), FIX),
            Ok(Ok(c)) => Outcome::Pass(format!(
                "resolved (access key {}{})",
                mask(c.access_key_id()),
                match c.expiry() {
                    Some(t) => format!(
                        ", temporary, valid until {}",
                        chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    None => String::new(),
                }
            )),
        },
    };
    report.line("AWS credentials", credentials);

    let needs_secrets = [
        &settings.kong_admin_token_secret_arn,
        &settings.redis_password_secret_arn,
        &settings.konnect_token_secret_arn,
    ]
    .iter()
    .any(|s| s.as_deref().is_some_and(|s| !s.is_empty()));
    let region = match (sdk.region(), channel) {
        (Some(r), Some(c)) => Outcome::Pass(format!("{r} (PutAuditEvents goes to the channel's region, {})", c.region)),
        (Some(r), None) => Outcome::Pass(r.to_string()),
        (None, Some(c)) if !needs_secrets => Outcome::Pass(format!("none set; PutAuditEvents goes to the channel's region, {}", c.region)),
        (None, _) => fail(
            if needs_secrets {
                "none set, and Secrets Manager needs one"
            } else if settings.cloudwatch_log_group.as_deref().is_some_and(|g| !g.trim().is_empty()) {
                "none set, and CloudWatch Logs needs one"
            } else {
                "none set, and no valid CHANNEL_ARN to take it from"
            },
            "set AWS_REGION (or a region in your AWS profile)",
        ),
    };
    report.line("AWS region", region);
}

/// An access key id with only its ends shown: `AKIA…WXYZ`.
fn mask(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 8 {
        return chars[..chars.len() / 2].iter().collect::<String>() + "…";
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_key_ids_are_masked() {
        assert_eq!(mask("AKIAIOSFODNN7EXAMPLE"), "AKIA…MPLE");
        assert_eq!(mask("AKIDTEST"), "AKID…");
        assert_eq!(mask(""), "…");
    }

    #[test]
    fn redis_fixes_match_the_problem() {
        assert!(redis_fix("WRONGPASS invalid username-password pair", "redis://h:6379/0").contains("REDIS_PASSWORD"));
        assert!(redis_fix("NOPERM this user has no permissions", "redis://h:6379/0").contains("ACL"));
        assert!(redis_fix("Connection refused (os error 111)", "redis://h:6379/0").contains("check REDIS_URL (redis://h:6379/0)"));
    }
}
