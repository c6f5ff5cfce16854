//! `kong-audit-shipper run`: one cycle, exactly what the Lambda does, within `MAX_RUN_SECONDS` (for
//! cron, ECS scheduled tasks and Kubernetes CronJobs, which kill a run that outlives its slot).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use crate::config::Settings;
use crate::runner;
use crate::setup::{SinkChoice, StoreChoice, build};
use crate::ship::{Keys, Life, rebuild, set_floor, sweep_interval};
use crate::summary::Counters;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// After the store was lost (a new Redis): ship nothing stamped before this, in this run and every
    /// later one, sweeps included, instead of Kong's whole retained trail again. RFC 3339 or epoch seconds
    #[arg(long, value_parser = super::backfill::parse_time)]
    pub since: Option<i64>,
}

pub async fn main(settings: &Settings, args: RunArgs) -> ExitCode {
    if let Some(since) = args.since.filter(|s| *s > chrono::Utc::now().timestamp()) {
        eprintln!("kong-audit-shipper: --since {since} is in the future");
        return ExitCode::from(runner::EXIT_CONFIG);
    }
    let shipper = match build(settings, StoreChoice::Redis, SinkChoice::Destination).await {
        Ok(s) => s,
        Err(e) => return super::setup_failed(&e),
    };
    let mut opts = runner::ship_options(settings);
    // A sweep interval Kong's retention cannot honour is a setting to fix, found before any work
    // (within the run's time: a Kong that does not answer is the run's to report).
    opts.limits = Some(runner::time_budget(settings));
    let until = opts.limits.map(|l| l.stop_claiming_at).expect("set above");
    if let Ok(Ok(info)) = tokio::time::timeout_at(until.into(), shipper.source.info()).await
        && let Err(e) = sweep_interval(opts.sweep, info.record_ttl)
    {
        tracing::error!("{e}");
        eprintln!("kong-audit-shipper: {e}");
        return ExitCode::from(runner::EXIT_CONFIG);
    }
    if let Some(since) = args.since {
        let keys = Keys::for_source(opts.key_prefix.clone(), shipper.source.as_ref());
        if let Err(e) = set_floor(shipper.store.as_ref(), &keys, since).await {
            tracing::error!(error = %e, "cannot set the floor");
            eprintln!("kong-audit-shipper: cannot set the floor: {e}");
            return ExitCode::from(runner::EXIT_INCOMPLETE);
        }
        tracing::info!(since, "floor set: no run reads entries stamped before it");
        // The operator vouches for what is older: the store needs no rebuild from the destination.
        match rebuild::load(shipper.store.as_ref(), &keys).await {
            Ok(life @ (Life::Unknown | Life::Rebuilding { .. })) => {
                let whole = Life::Whole {
                    since: chrono::Utc::now().timestamp(),
                };
                if let Err(e) = rebuild::save(shipper.store.as_ref(), &keys, life, whole).await {
                    tracing::warn!(error = %e, "cannot record the store as whole; the next run asks the destination what it holds");
                }
            }
            Ok(Life::Whole { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the store's record of its life"),
        }
    }
    let summary = shipper.run(&opts, Arc::new(Counters::default())).await;
    runner::report(&summary, opts.lease.as_secs());
    runner::exit_code(&summary)
}
