//! The command line: parse, build the clients once, run the library cycle, report, exit.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::{ChannelConfig, ConfigError, Settings};
use crate::dedup::{DedupStore, RedisStore, StoreError};
use crate::kong::{KongClient, KongError};
use crate::logging::{self, LogFormat};
use crate::secret::Secret;
use crate::ship::{ShipOptions, Shipper};
use crate::sink::{CloudTrailSink, Sink};
use crate::summary::{Counters, Summary};

#[derive(Debug, Parser)]
#[command(
    name = "kong-audit-shipper",
    version,
    about = "Ships Kong Gateway Enterprise's audit trail to AWS CloudTrail Lake, exactly once."
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One cycle from the shell: exactly what the Lambda does on each invocation
    Run,
}

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
    #[error("{0}")]
    Other(String),
}

/// Exit codes: 0 all shipped; 1 a run that left entries unshipped or stopped; 2 bad configuration.
pub const EXIT_INCOMPLETE: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;

pub async fn main(cli: Cli) -> ExitCode {
    logging::init(LogFormat::choose(cli.settings.log_format.as_deref(), false));
    let Some(command) = cli.command else {
        eprintln!("kong-audit-shipper: no command given; try `kong-audit-shipper run` or `--help`");
        return ExitCode::from(EXIT_CONFIG);
    };
    match command {
        Command::Run => match build(&cli.settings, StoreRequirement::Redis).await {
            Ok(shipper) => {
                let summary = shipper.run(&ship_options(&cli.settings), Arc::new(Counters::default())).await;
                report(&summary);
                exit_code(&summary)
            }
            Err(e) => setup_failed(&e),
        },
    }
}

pub fn setup_failed(e: &SetupError) -> ExitCode {
    tracing::error!(error = %e, "cannot start");
    eprintln!("kong-audit-shipper: {e}");
    ExitCode::from(EXIT_CONFIG)
}

pub fn report(summary: &Summary) {
    tracing::info!(ok = summary.ok(), "{}", summary.line());
}

pub fn exit_code(summary: &Summary) -> ExitCode {
    if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    }
}

pub fn ship_options(s: &Settings) -> ShipOptions {
    ShipOptions {
        key_prefix: s.redis_key_prefix.clone(),
        page_size: s.kong_page_size,
        lease: std::time::Duration::from_secs(s.claim_lease_seconds),
        put_concurrency: s.put_concurrency,
        backoff: s.backoff(),
        ..ShipOptions::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreRequirement {
    /// Lambda and `run`: a Redis shared by every run.
    Redis,
}

/// Validates every setting, then builds the clients once: Kong, the store, the sink.
pub async fn build(settings: &Settings, store: StoreRequirement) -> Result<Shipper, SetupError> {
    settings.check_key_prefix()?;
    let mut kong = settings.kong_config()?;
    let channel = settings.channel_config()?;
    let mut redis = settings.redis_config()?;
    let needs_secrets = settings.kong_admin_token_secret_arn.is_some() || settings.redis_password_secret_arn.is_some();
    let sdk = crate::sink::load_sdk_config().await;
    if needs_secrets {
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
        if let Some(id) = settings.kong_admin_token_secret_arn.as_deref().filter(|s| !s.is_empty()) {
            kong.token = Some(read_secret(&secrets, id, "KONG_ADMIN_TOKEN_SECRET_ARN").await?);
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
        (StoreRequirement::Redis, Some(r)) => Arc::new(RedisStore::connect(&r).await?),
        (StoreRequirement::Redis, None) => {
            return Err(ConfigError {
                setting: "REDIS_URL (--redis-url)",
                problem: "not set: this command needs Redis, shared by every run (redis:// or rediss:// URL, or REDIS_HOST)".into(),
            }
            .into());
        }
    };
    let source = Arc::new(KongClient::new(&kong, settings.backoff())?);
    let sink: Arc<dyn Sink> = Arc::new(CloudTrailSink::new(&sdk, &channel));
    Ok(Shipper {
        source,
        store,
        sink,
        recipient_account_id: recipient(&channel),
    })
}

fn recipient(channel: &ChannelConfig) -> String {
    channel.account_id.clone()
}

async fn read_secret(client: &aws_sdk_secretsmanager::Client, id: &str, setting: &'static str) -> Result<Secret, SetupError> {
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| SetupError::Secret {
            setting,
            detail: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
        })?;
    let value = out.secret_string().map(str::trim).filter(|s| !s.is_empty());
    value.map(Secret::new).ok_or(SetupError::Secret {
        setting,
        detail: "the secret has no string value".into(),
    })
}
