//! `kong-audit-shipper run`: one cycle, exactly what the Lambda does, within `MAX_RUN_SECONDS` (for
//! cron, ECS scheduled tasks and Kubernetes CronJobs, which kill a run that outlives its slot).

use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Settings;
use crate::runner;
use crate::setup::{SinkChoice, StoreChoice, build};
use crate::summary::Counters;

pub async fn main(settings: &Settings) -> ExitCode {
    let shipper = match build(settings, StoreChoice::Redis, SinkChoice::Destination).await {
        Ok(s) => s,
        Err(e) => return super::setup_failed(&e),
    };
    let mut opts = runner::ship_options(settings);
    opts.limits = Some(runner::time_budget(settings));
    let summary = shipper.run(&opts, Arc::new(Counters::default())).await;
    runner::report(&summary, opts.lease.as_secs());
    runner::exit_code(&summary)
}
