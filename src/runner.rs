//! What the Lambda handler and the CLI share: the cycle's options from the settings, the summary
//! report, and what a run's outcome means as an exit code.

use std::process::ExitCode;
use std::time::Duration;

use crate::config::Settings;
use crate::ship::{RunLimits, ShipOptions, Sweep};
use crate::summary::Summary;

/// Exit codes: 0 all shipped (or a run stopped at its time budget having lost nothing); 1 a run that
/// left entries unshipped, found entries held by another run, or stopped on an error; 2 bad
/// configuration.
pub const EXIT_INCOMPLETE: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;

/// The cycle's options from the settings; each entry point adjusts what is its own (window, time
/// budget, dry run).
pub fn ship_options(s: &Settings) -> ShipOptions {
    ShipOptions {
        key_prefix: s.redis_key_prefix.clone(),
        page_size: s.kong_page_size,
        lease: Duration::from_secs(s.claim_lease_seconds),
        put_concurrency: s.put_concurrency,
        backoff: s.backoff(),
        incremental: !s.full_read,
        // Konnect's entries appear late by their own measure (its ingestion delay), Kong's rows by
        // its nodes' clocks and writes.
        overlap: Duration::from_secs(if s.reads_konnect() {
            s.konnect_overlap_seconds
        } else {
            s.overlap_seconds
        }),
        sweep: match s.sweep_interval_seconds {
            Some(secs) => Sweep::Every(Duration::from_secs(secs)),
            None => Sweep::Default,
        },
        put_rate: s.put_rate_limit,
        rebuild: true,
        settle: Duration::from_secs(s.reconcile_settle_seconds),
        ..ShipOptions::default()
    }
}

/// `MAX_RUN_SECONDS` from now, less `DEADLINE_MARGIN_SECONDS` for the tail.
pub fn time_budget(s: &Settings) -> RunLimits {
    RunLimits::budget(
        Duration::from_secs(s.max_run_seconds.max(1)),
        Duration::from_secs(s.deadline_margin_seconds),
    )
}

/// The summary line, logged at the end of every run, with what to do about held entries.
pub fn report(summary: &Summary, lease_seconds: u64) {
    if summary.held > 0 {
        tracing::warn!(
            held = summary.held,
            "{} entries are held by another run (a backfill, or a run that stopped while holding them): run again once it is done, or after CLAIM_LEASE_SECONDS ({lease_seconds} s)",
            summary.held
        );
    }
    tracing::info!(ok = summary.ok(), "{}", summary.line());
}

/// 0 when the run lost nothing and left nothing to another run; a stop at the time budget is 0.
pub fn exit_code(summary: &Summary) -> ExitCode {
    if summary.ok() && summary.held == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_entries_and_failures_exit_1_a_stop_at_the_budget_exits_0() {
        let code = |s: Summary| format!("{:?}", exit_code(&s));
        let zero = format!("{:?}", ExitCode::SUCCESS);
        assert_eq!(code(Summary::default()), zero);
        assert_eq!(
            code(Summary {
                stopped_early: true,
                ..Default::default()
            }),
            zero
        );
        for bad in [
            Summary {
                held: 1,
                ..Default::default()
            },
            Summary {
                failed: 1,
                ..Default::default()
            },
            Summary {
                error: Some("x".into()),
                ..Default::default()
            },
        ] {
            assert_ne!(code(bad), zero);
        }
    }
}
