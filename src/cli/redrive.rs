//! `kong-audit-shipper redrive [--input FILE]`: re-submits dead-lettered entries once their cause is
//! fixed (see `crate::redrive`).
//!
//! Letters come from `--input`, else from the queue (`DEAD_LETTER_QUEUE_URL`), else from the
//! dead-letter file (`DEAD_LETTER_FILE`, or the CLI's default file).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Settings;
use crate::dead_letter::{FileDeadLetters, SqsDeadLetters};
use crate::redrive::{Origin, redrive};
use crate::runner::{self, EXIT_CONFIG, EXIT_INCOMPLETE};
use crate::setup::{SinkChoice, StoreChoice, build};

pub async fn main(settings: &Settings, input: Option<PathBuf>) -> ExitCode {
    // Redis when one is configured (where `run` and the Lambda mark entries), else the embedded
    // store (where a CLI `backfill` without Redis marks them).
    let shipper = match build(settings, StoreChoice::RedisOrFile, SinkChoice::Destination).await {
        Ok(s) => s,
        Err(e) => return super::setup_failed(&e),
    };
    let queue = settings.dead_letter_queue_url.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let origin = match (input, queue) {
        (Some(path), _) => Origin::File(FileDeadLetters::new(path)),
        (None, Some(url)) => {
            let region = settings.channel_config().ok().map(|c| c.region);
            Origin::Queue(SqsDeadLetters::new(&crate::sink::load_sdk_config(region.as_deref()).await, url))
        }
        (None, None) => Origin::File(FileDeadLetters::new(
            settings
                .dead_letter_file
                .clone()
                .unwrap_or_else(crate::dead_letter::file::default_path),
        )),
    };
    match redrive(shipper, &origin, &runner::ship_options(settings)).await {
        Ok(report) => {
            for p in &report.problems {
                tracing::warn!(problem = %p, "redrive");
                eprintln!("kong-audit-shipper redrive: {p}");
            }
            tracing::info!("{}", report.line());
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_INCOMPLETE)
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot redrive");
            eprintln!("kong-audit-shipper redrive: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
