//! `kong-audit-shipper reconcile`: Kong's trail against what the destination holds, entry by entry;
//! with `--repair`, what the destination lacks is sent and what the store lacks is marked.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::backfill::{owner_only_file, parse_time};
use crate::config::Settings;
use crate::reconcile::{ReconcileOptions, reconcile};
use crate::runner;
use crate::setup::{SinkChoice, StoreChoice, build};

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Oldest entry time to compare, inclusive: RFC 3339 or epoch seconds (default: all Kong holds)
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Newest entry time to compare, exclusive: RFC 3339 or epoch seconds
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
    /// Send exactly what the destination lacks (entries and parts), and mark what the store lacks
    #[arg(long)]
    pub repair: bool,
    /// Write the report as JSON to this file (created readable by its owner only), for the record
    #[arg(long)]
    pub output: Option<PathBuf>,
}

pub async fn main(settings: &Settings, args: ReconcileArgs) -> ExitCode {
    if let (Some(since), Some(until)) = (args.since, args.until)
        && since >= until
    {
        eprintln!("kong-audit-shipper: --since must be before --until");
        return ExitCode::from(runner::EXIT_CONFIG);
    }
    // Opened first: a report that cannot be written is known before the work, not after.
    let output = match &args.output {
        Some(path) => match owner_only_file(path) {
            Ok(f) => Some((f, path.clone())),
            Err(e) => {
                eprintln!("kong-audit-shipper: --output {}: {e}", path.display());
                return ExitCode::from(runner::EXIT_CONFIG);
            }
        },
        None => None,
    };
    let shipper = match build(settings, StoreChoice::RedisOrFile, SinkChoice::Destination).await {
        Ok(s) => s,
        Err(e) => return super::setup_failed(&e),
    };
    let Some(inventory) = shipper.inventory.clone() else {
        eprintln!("kong-audit-shipper: this destination cannot be asked what it holds");
        return ExitCode::from(runner::EXIT_CONFIG);
    };
    let opts = ReconcileOptions {
        since: args.since,
        until: args.until,
        settle: Duration::from_secs(settings.reconcile_settle_seconds),
        repair: args.repair,
    };
    let report = reconcile(&shipper, inventory.as_ref(), &runner::ship_options(settings), &opts).await;
    if let Some((mut file, path)) = output {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|json| file.write_all(&json))
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            tracing::error!(path = %path.display(), error = %e, "cannot write the report");
            eprintln!("kong-audit-shipper: --output {}: {e}", path.display());
            return ExitCode::from(runner::EXIT_INCOMPLETE);
        }
        tracing::info!(path = %path.display(), "report written");
    }
    tracing::info!("{}", report.line());
    if report.status == "incomplete" {
        ExitCode::from(runner::EXIT_INCOMPLETE)
    } else {
        ExitCode::SUCCESS
    }
}
