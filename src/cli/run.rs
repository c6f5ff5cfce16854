//! `kong-audit-shipper run`: one cycle, exactly what the Lambda does.

use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Settings;
use crate::setup::{SinkChoice, StoreChoice, build};
use crate::summary::Counters;

pub async fn main(settings: &Settings) -> ExitCode {
    let shipper = match build(settings, StoreChoice::Redis, SinkChoice::CloudTrail).await {
        Ok(s) => s,
        Err(e) => return super::setup_failed(&e),
    };
    let summary = shipper.run(&super::ship_options(settings), Arc::new(Counters::default())).await;
    super::report(&summary);
    super::exit_code(&summary)
}
