//! Turns validated settings into the clients of one cycle, once per process (or Lambda container).

use std::sync::Arc;

use crate::config::{ConfigError, Destination, KonnectConfig, Settings, SourceConfig};
use crate::dead_letter::{DeadLetterError, DeadLetterSink, LogDeadLetters};
use crate::dedup::{DedupStore, FileStore, MemoryStore, RedisStore, StoreError};
use crate::kong::{AuditSource, EntryKind, KongClient, KongError};
use crate::konnect::{ClientOptions, KonnectClient, KonnectSource};
use crate::reconcile::{Inventory, LakeInventory, LogsInventory, SdkFilter, SdkLake, Stores};
use crate::secret::Secret;
use crate::ship::Shipper;
use crate::sink::{CloudTrailSink, CloudWatchLogsSink, NdjsonSink, Sink};

/// Why the program could not start; each names the setting or service to fix.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Kong(#[from] KongError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{setting}: cannot read the secret: {detail}")]
    Secret { setting: &'static str, detail: String },
    /// The destination cannot be used (a missing log group, no permission): the text names the fix.
    #[error("{0}")]
    Destination(String),
}

/// Which dedup store a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreChoice {
    /// A Redis shared by every run: required in Lambda and by `run`.
    Redis,
    /// Redis when any Redis setting is given; otherwise the embedded file store at `STATE_FILE`
    /// (or `config::default_state_path()`): the CLI's default, with nothing but a Kong to point at.
    RedisOrFile,
    /// No shared state at all: a dry run claims and marks nothing.
    Nothing,
}

/// Where events go.
pub enum SinkChoice {
    /// The destination the settings name: CloudTrail Lake (`CHANNEL_ARN`) or CloudWatch Logs
    /// (`CLOUDWATCH_LOG_GROUP`), exactly one.
    Destination,
    /// Dry run: eventData lines to this writer.
    Ndjson(Box<dyn std::io::Write + Send>, String),
}

/// Validates every setting, reads secrets, then builds the clients: the source (Kong, or Konnect),
/// the store, the sink.
pub async fn build(settings: &Settings, store: StoreChoice, sink: SinkChoice) -> Result<Shipper, SetupError> {
    settings.check_key_prefix()?;
    let dry_run = matches!(sink, SinkChoice::Ndjson(..));
    if !dry_run {
        check_dead_letters_in_lambda(settings)?;
    }
    let mut source_config = settings.source_config()?;
    let destination = match sink {
        SinkChoice::Destination => Some(settings.destination()?),
        SinkChoice::Ndjson(..) => settings.destination().ok(),
    };
    let channel = match &destination {
        Some(Destination::CloudTrail(c)) => Some(c.clone()),
        _ => None,
    };
    let mut redis = settings.redis_config()?;
    let signatures = Arc::new(settings.signature_verifier()?);
    match signatures.keys() {
        _ if matches!(source_config, SourceConfig::Konnect(_)) => tracing::info!(
            "Konnect's signatures are recorded on every event, not checked: which bytes Konnect signs for a pulled entry is not documented (events say kongSignature unchecked, with that reason)"
        ),
        [] => tracing::info!(
            "KONG_AUDIT_SIGNING_PUBLIC_KEY is not set: Kong's audit signatures are not checked (events say kongSignature unchecked or unsigned)"
        ),
        keys => tracing::info!(
            keys = %keys.iter().map(|k| k.fingerprint()).collect::<Vec<_>>().join(","),
            "Kong's audit signatures are verified; every event records the verdict"
        ),
    }
    let aws = Aws::new(channel.as_ref().map(|c| c.region.clone()));
    let konnect_secret = match &source_config {
        SourceConfig::Konnect(k) => k.token_secret_arn.clone(),
        SourceConfig::Kong(_) => None,
    };
    if settings.kong_admin_token_secret_arn.is_some() || settings.redis_password_secret_arn.is_some() || konnect_secret.is_some() {
        let secrets = aws_sdk_secretsmanager::Client::new(aws.config().await);
        match &mut source_config {
            SourceConfig::Kong(kong) => {
                if let Some(id) = settings.kong_admin_token_secret_arn.as_deref().filter(|s| !s.is_empty()) {
                    kong.token = Some(read_secret(&secrets, id, "KONG_ADMIN_TOKEN_SECRET_ARN").await?);
                }
            }
            SourceConfig::Konnect(konnect) => {
                if let Some(id) = &konnect_secret {
                    konnect.token = Some(read_secret(&secrets, id, "KONNECT_TOKEN_SECRET_ARN").await?);
                }
            }
        }
        if let Some(id) = settings.redis_password_secret_arn.as_deref().filter(|s| !s.is_empty()) {
            let password = read_secret(&secrets, id, "REDIS_PASSWORD_SECRET_ARN").await?;
            match redis.as_mut() {
                Some(r) => r.password = Some(password),
                None => {
                    return Err(ConfigError {
                        setting: "REDIS_URL",
                        problem: "REDIS_PASSWORD_SECRET_ARN is set but no Redis is".into(),
                    }
                    .into());
                }
            }
        }
    }
    let store: Arc<dyn DedupStore> = match (store, redis) {
        (StoreChoice::Nothing, _) => Arc::new(MemoryStore::new()),
        (StoreChoice::Redis | StoreChoice::RedisOrFile, Some(r)) => Arc::new(RedisStore::connect(&r).await?),
        (StoreChoice::RedisOrFile, None) => {
            let path = settings.state_file.clone().unwrap_or_else(crate::config::default_state_path);
            Arc::new(FileStore::open(path).await?)
        }
        (StoreChoice::Redis, None) => {
            return Err(ConfigError {
                setting: "REDIS_URL (--redis-url)",
                problem: "not set: this command needs Redis, shared by every run (redis:// or rediss:// URL, or REDIS_HOST)".into(),
            }
            .into());
        }
    };
    let source: Arc<dyn AuditSource> = match &source_config {
        SourceConfig::Kong(kong) => {
            crate::signature::VerifyingSource::wrap(Arc::new(KongClient::new(kong, settings.backoff())?), &signatures)
        }
        SourceConfig::Konnect(konnect) => Arc::new(konnect_source(konnect, settings.backoff())?),
    };
    let inventory = match (&sink, &destination) {
        (SinkChoice::Destination, Some(d)) => Some(inventory(settings, d, aws.config().await, source.kinds())?),
        _ => None,
    };
    let (sink, recipient_account_id): (Arc<dyn Sink>, String) = match (sink, destination) {
        (SinkChoice::Ndjson(out, name), _) => (
            Arc::new(NdjsonSink::new(out, name)),
            channel.map_or_else(|| "000000000000".to_string(), |c| c.account_id),
        ),
        (SinkChoice::Destination, Some(Destination::CloudTrail(c))) => {
            (Arc::new(CloudTrailSink::new(aws.config().await, &c)), c.account_id)
        }
        (SinkChoice::Destination, Some(Destination::CloudWatchLogs(logs))) => {
            // The group must exist and the stream is made ready before any entry is claimed; the
            // group owner's account is every event's recipientAccountId.
            let sink = CloudWatchLogsSink::new(aws.config().await, &logs);
            let account = sink.prepare(&settings.backoff()).await.map_err(SetupError::Destination)?;
            (Arc::new(sink), account)
        }
        (SinkChoice::Destination, None) => unreachable!("the destination is required and was validated above"),
    };
    let dead_letters: Arc<dyn DeadLetterSink> = if dry_run {
        Arc::new(NoDeadLettersInADryRun)
    } else {
        dead_letter_sink(settings, &aws).await?
    };
    Ok(Shipper {
        source,
        store,
        sink,
        dead_letters,
        recipient_account_id,
        signatures,
        inventory,
    })
}

/// Konnect's audit log, read with the token (read from its secret already, if it has one).
pub fn konnect_source(config: &KonnectConfig, backoff: crate::retry::Backoff) -> Result<KonnectSource, SetupError> {
    let token = config.token.as_ref().ok_or_else(|| ConfigError {
        setting: "KONNECT_TOKEN (--konnect-token)",
        problem: "not set".into(),
    })?;
    let options = ClientOptions {
        timeout: config.timeout,
        backoff,
        ..ClientOptions::default()
    };
    let client = KonnectClient::new(config.api.clone(), token, options).map_err(KongError::Konnect)?;
    tracing::info!(
        api = %config.api,
        region = config.api.region().unwrap_or("(not a Konnect host)"),
        retention_seconds = config.retention.as_secs(),
        "reading Konnect's audit log"
    );
    Ok(KonnectSource::new(
        Arc::new(client),
        config.api.clone(),
        config.settle,
        config.retention,
    ))
}

/// What `reconcile`, and a run rebuilding a lost store, ask the destination with: about the events
/// of entries of `kinds` (the source's).
fn inventory(
    settings: &Settings,
    destination: &Destination,
    sdk: &aws_config::SdkConfig,
    kinds: Vec<EntryKind>,
) -> Result<Arc<dyn Inventory>, SetupError> {
    let (concurrency, backoff) = (settings.reconcile_concurrency, settings.backoff());
    Ok(match destination {
        Destination::CloudTrail(channel) => {
            let stores = match settings.event_data_store()? {
                Some(store) => Stores::Given(store),
                None => Stores::OfChannel(channel.arn.clone()),
            };
            let api = Arc::new(SdkLake::new(sdk, &channel.region));
            Arc::new(LakeInventory::new(api, &channel.arn, stores, concurrency, backoff).of_kinds(kinds))
        }
        Destination::CloudWatchLogs(logs) => {
            let api = Arc::new(SdkFilter {
                client: crate::sink::cloudwatch_logs::client::client(sdk),
                group: logs.group.clone(),
            });
            Arc::new(LogsInventory::new(api, &logs.group, concurrency, backoff).of_kinds(kinds))
        }
    })
}

/// The AWS SDK configuration, loaded only when something needs AWS (a dry run does not), with the
/// channel's region as the default when `AWS_REGION` is not set.
struct Aws {
    config: tokio::sync::OnceCell<aws_config::SdkConfig>,
    channel_region: Option<String>,
}

impl Aws {
    fn new(channel_region: Option<String>) -> Aws {
        Aws {
            config: tokio::sync::OnceCell::new(),
            channel_region,
        }
    }

    async fn config(&self) -> &aws_config::SdkConfig {
        self.config
            .get_or_init(|| crate::sink::load_sdk_config(self.channel_region.as_deref()))
            .await
    }
}

/// In Lambda a dead letter must outlive the container: without a queue it would only be in the log
/// (a line is cut at 256 KB) or in a file under `/tmp` that goes with the container, while its entry
/// is marked rejected and never read again. Refused unless the loss is accepted out loud.
fn check_dead_letters_in_lambda(settings: &Settings) -> Result<(), ConfigError> {
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let has_queue = settings.dead_letter_queue_url.as_deref().is_some_and(|q| !q.trim().is_empty());
    if !in_lambda || has_queue || settings.allow_ephemeral_dead_letters {
        return Ok(());
    }
    Err(ConfigError {
        setting: "DEAD_LETTER_QUEUE_URL (--dead-letter-queue-url)",
        problem: "not set, and in Lambda dead letters need a queue: without one, an entry refused for good is marked rejected and kept only in the log (a line is cut at 256 KB) or in a file under /tmp that disappears with the container; set DEAD_LETTER_QUEUE_URL (the Terraform module creates the queue), or set ALLOW_EPHEMERAL_DEAD_LETTERS=true to accept losing such entries".into(),
    })
}

/// A dry run stores no dead letters: what would be refused is logged, and nothing is marked.
struct NoDeadLettersInADryRun;

#[async_trait::async_trait]
impl DeadLetterSink for NoDeadLettersInADryRun {
    async fn send(&self, _letters: &[crate::dead_letter::DeadLetter]) -> Result<(), DeadLetterError> {
        Ok(())
    }

    fn describe(&self) -> String {
        "none (a dry run stores no dead letters; refused entries are logged)".into()
    }
}

/// Where refused entries go, besides the error log.
async fn dead_letter_sink(settings: &Settings, aws: &Aws) -> Result<Arc<dyn DeadLetterSink>, SetupError> {
    let queue = settings.dead_letter_queue_url.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let sink: Arc<dyn DeadLetterSink> = if let Some(url) = queue {
        if !url.starts_with("https://") && !url.starts_with("http://") {
            return Err(ConfigError {
                setting: "DEAD_LETTER_QUEUE_URL (--dead-letter-queue-url)",
                problem: format!("'{url}' is not a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"),
            }
            .into());
        }
        Arc::new(crate::dead_letter::SqsDeadLetters::new(aws.config().await, url))
    } else if let Some(path) = settings.dead_letter_file.clone().filter(|p| !p.as_os_str().is_empty()) {
        if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
            tracing::warn!(
                file = %path.display(),
                "dead letters go to a file in the Lambda container, which goes with the container: an entry refused for good may be lost (ALLOW_EPHEMERAL_DEAD_LETTERS is set)"
            );
        }
        Arc::new(crate::dead_letter::FileDeadLetters::new(path))
    } else if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        // Only reached with ALLOW_EPHEMERAL_DEAD_LETTERS (see check_dead_letters_in_lambda).
        tracing::warn!(
            "no DEAD_LETTER_QUEUE_URL, and ALLOW_EPHEMERAL_DEAD_LETTERS is set: an entry refused for good is kept only in the log, cut at 256 KB a line, and cannot be redriven"
        );
        Arc::new(LogDeadLetters)
    } else {
        Arc::new(crate::dead_letter::FileDeadLetters::new(crate::dead_letter::file::default_path()))
    };
    tracing::info!(dead_letters = %sink.describe(), "entries refused for good are dead-lettered (and logged by key, code and reason)");
    Ok(sink)
}

pub async fn read_secret(client: &aws_sdk_secretsmanager::Client, id: &str, setting: &'static str) -> Result<Secret, SetupError> {
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| SetupError::Secret {
            setting,
            detail: crate::error_text::sdk(&e),
        })?;
    let value = out.secret_string().map(str::trim).filter(|s| !s.is_empty());
    value.map(Secret::new).ok_or(SetupError::Secret {
        setting,
        detail: "the secret has no string value".into(),
    })
}
