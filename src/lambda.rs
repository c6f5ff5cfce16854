//! The Lambda handler: `kong-audit-shipper` started by the Lambda runtime (`AWS_LAMBDA_RUNTIME_API`
//! set, no subcommand). Clients are built once per container; each invocation runs the same cycle as
//! `kong-audit-shipper run`, bounded by the invocation's deadline.
//!
//! Any JSON event is accepted (an EventBridge rule's scheduled event, an EventBridge Scheduler payload
//! such as `{"detail":"{}"}`, a manual `{}`): what to read comes from the shipper's own state, never
//! from the event.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde::Serialize;
use serde_json::Value;

use crate::cli;
use crate::config::Settings;
use crate::logging::{self, LogFormat};
use crate::setup::{self, SinkChoice, StoreChoice};
use crate::ship::{ShipOptions, Shipper};
use crate::summary::{Counters, Summary};

/// The environment the Lambda runtime always sets; `lambda_runtime` panics without it.
const RUNTIME_ENV: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
];

/// Serves invocations until the runtime stops the container. Exits non-zero, before serving
/// anything, when the clients cannot be built (Redis not configured, a malformed setting, ...).
pub async fn main(settings: Settings) -> ExitCode {
    logging::init(LogFormat::choose(settings.log_format.as_deref(), true));
    if let Some(missing) = RUNTIME_ENV.iter().find(|v| std::env::var_os(v).is_none_or(|s| s.is_empty())) {
        tracing::error!(
            missing,
            "cannot start the Lambda handler: {missing} is not set (the Lambda runtime sets it; to run once from a shell, use `kong-audit-shipper run`)"
        );
        return ExitCode::from(cli::EXIT_CONFIG);
    }
    let shipper = match setup::build(&settings, StoreChoice::Redis, SinkChoice::CloudTrail).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the Lambda handler: {e}");
            return ExitCode::from(cli::EXIT_CONFIG);
        }
    };
    let handler = Handler::new(shipper, &settings, function_name());
    tracing::info!(
        store = %handler.shipper.store.describe(),
        sink = %handler.shipper.sink.describe(),
        deadline_margin_seconds = settings.deadline_margin_seconds,
        max_run_seconds = settings.max_run_seconds,
        "Lambda handler ready"
    );
    let handler = &handler;
    match lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| handler.invoke(event))).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the Lambda runtime loop stopped");
            ExitCode::from(cli::EXIT_INCOMPLETE)
        }
    }
}

fn function_name() -> String {
    std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "kong-audit-shipper".into())
}

/// The clients and options of one container, reused by every invocation.
pub struct Handler {
    pub shipper: Shipper,
    pub options: ShipOptions,
    pub margin: Duration,
    pub max_run: Duration,
    pub function_name: String,
}

/// What an invocation returns: the run summary, with its status.
#[derive(Debug, Clone, Serialize)]
pub struct Response {
    pub status: &'static str,
    #[serde(flatten)]
    pub summary: Summary,
}

/// An invocation in which entries were left unshipped (or the run stopped on an error): returned as
/// an error so Lambda's `Errors` metric and its alarms count it.
pub struct RunFailed(pub Summary);

/// The runtime logs the error's `Debug`: the summary line reads better than the struct.
impl std::fmt::Debug for RunFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.line())
    }
}

impl std::fmt::Display for RunFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.line())
    }
}

impl std::error::Error for RunFailed {}

impl From<RunFailed> for Diagnostic {
    fn from(e: RunFailed) -> Diagnostic {
        Diagnostic {
            error_type: if e.0.error.is_some() {
                "KongAuditShipper.RunStopped".into()
            } else {
                "KongAuditShipper.EntriesNotShipped".into()
            },
            error_message: e.0.line(),
        }
    }
}

impl Handler {
    pub fn new(shipper: Shipper, settings: &Settings, function_name: String) -> Handler {
        Handler {
            shipper,
            options: cli::ship_options(settings),
            margin: Duration::from_secs(settings.deadline_margin_seconds),
            max_run: Duration::from_secs(settings.max_run_seconds.max(1)),
            function_name,
        }
    }

    /// One invocation: one cycle within the deadline, one summary log line, one EMF line on stdout.
    pub async fn invoke(&self, event: LambdaEvent<Value>) -> Result<Response, RunFailed> {
        let limits = run_limits(event.context.deadline, SystemTime::now(), Instant::now(), self.margin, self.max_run);
        let (source, detail_type) = describe_event(&event.payload);
        if !limits.deadline_known {
            tracing::warn!(
                request_id = %event.context.request_id,
                deadline_ms = event.context.deadline,
                max_run_seconds = self.max_run.as_secs(),
                "the invocation's deadline is unknown (already passed at start); running for at most MAX_RUN_SECONDS"
            );
        }
        tracing::info!(
            request_id = %event.context.request_id,
            source,
            detail_type,
            seconds_available = limits.budget.as_secs(),
            stop_claiming_after_seconds = limits.stop_claiming_at.saturating_duration_since(Instant::now()).as_secs(),
            "invocation started"
        );
        let mut options = self.options.clone();
        options.stop_claiming_at = Some(limits.stop_claiming_at);
        options.finish_by = Some(limits.finish_by);
        let summary = self.shipper.run(&options, Arc::new(Counters::default())).await;
        cli::report(&summary);
        println!("{}", summary.emf(&self.function_name, chrono::Utc::now().timestamp_millis()));
        if summary.ok() {
            Ok(Response {
                status: summary.status(),
                summary,
            })
        } else {
            Err(RunFailed(summary))
        }
    }
}

/// `source` and `detail-type` of an EventBridge event, for the log; anything else is "custom".
fn describe_event(payload: &Value) -> (String, String) {
    let field = |name: &str| payload.get(name).and_then(Value::as_str).map(str::to_string);
    (
        field("source").unwrap_or_else(|| "custom".into()),
        field("detail-type").unwrap_or_else(|| "-".into()),
    )
}

/// When a run stops claiming new work and when it must be done, as instants of the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    pub stop_claiming_at: Instant,
    pub finish_by: Instant,
    /// The time the run has: until the deadline, or `MAX_RUN_SECONDS` when that is unknown.
    pub budget: Duration,
    pub deadline_known: bool,
}

/// Turns the invocation's deadline (epoch ms) into the run's limits.
///
/// A deadline of zero, or one already passed at the start, means "unknown" (local emulators send
/// 1970): the run then has `max_run`. It stops claiming `margin` before the end and must be done
/// `margin / 2` before it. A margin of more than half the time available is cut to half, so that a
/// short Lambda timeout still leaves time to work.
pub fn run_limits(deadline_ms: u64, now_wall: SystemTime, now: Instant, margin: Duration, max_run: Duration) -> RunLimits {
    let deadline = UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let remaining = deadline.duration_since(now_wall).ok().filter(|d| deadline_ms > 0 && !d.is_zero());
    let (budget, deadline_known) = match remaining {
        Some(r) => (r, true),
        None => (max_run, false),
    };
    let margin = margin.min(budget / 2);
    RunLimits {
        stop_claiming_at: now + (budget - margin),
        finish_by: now + (budget - margin / 2),
        budget,
        deadline_known,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn limits(deadline_ms: u64, now_ms: u64, margin: u64, max: u64) -> (RunLimits, Instant) {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_millis(now_ms);
        (run_limits(deadline_ms, wall, now, S(margin), S(max)), now)
    }

    #[test]
    fn a_real_deadline_gives_stop_at_deadline_less_margin_and_finish_at_half_the_margin() {
        let now_ms = 1_763_700_000_000;
        let (l, now) = limits(now_ms + 900_000, now_ms, 60, 840);
        assert!(l.deadline_known);
        assert_eq!(l.budget, S(900));
        assert_eq!(l.stop_claiming_at - now, S(840));
        assert_eq!(l.finish_by - now, S(870));
    }

    #[test]
    fn a_deadline_in_the_past_or_zero_is_unknown_and_max_run_applies() {
        let now_ms = 1_763_700_000_000;
        for deadline in [0, 1_000, now_ms - 1, now_ms] {
            let (l, now) = limits(deadline, now_ms, 60, 840);
            assert!(!l.deadline_known, "deadline {deadline}");
            assert_eq!(l.budget, S(840));
            assert_eq!(l.stop_claiming_at - now, S(780));
            assert_eq!(l.finish_by - now, S(810));
        }
    }

    #[test]
    fn a_margin_longer_than_half_the_time_is_cut_to_half() {
        let now_ms = 1_763_700_000_000;
        let (l, now) = limits(now_ms + 30_000, now_ms, 60, 840);
        assert_eq!(l.stop_claiming_at - now, S(15));
        assert_eq!(l.finish_by - now, Duration::from_millis(22_500));
        let (l, now) = limits(0, now_ms, 60, 3);
        assert_eq!(l.stop_claiming_at - now, Duration::from_millis(1_500));
        assert!(l.finish_by > l.stop_claiming_at && l.finish_by - now < S(3));
    }

    #[test]
    fn sub_second_deadlines_count() {
        let now_ms = 1_763_700_000_000;
        let (l, now) = limits(now_ms + 800, now_ms, 0, 840);
        assert!(l.deadline_known);
        assert_eq!(l.finish_by - now, Duration::from_millis(800));
    }

    #[test]
    fn any_event_shape_is_described_for_the_log() {
        let scheduled: Value = serde_json::from_str(include_str!("../tests/fixtures/scheduled-event.json")).unwrap();
        assert_eq!(
            describe_event(&scheduled),
            ("aws.events".to_string(), "Scheduled Event".to_string())
        );
        for other in [
            serde_json::json!({}),
            serde_json::json!({"detail": "{}"}),
            Value::Null,
            serde_json::json!([1]),
        ] {
            assert_eq!(describe_event(&other).0, "custom");
        }
    }

    #[test]
    fn a_failed_run_is_an_error_whose_message_is_the_summary_line() {
        let s = Summary {
            read: 2,
            shipped: 1,
            rejected: 1,
            ..Default::default()
        };
        let d: Diagnostic = RunFailed(s.clone()).into();
        assert_eq!(d.error_type, "KongAuditShipper.EntriesNotShipped");
        assert_eq!(d.error_message, s.line());
        let v = serde_json::to_value(Response {
            status: "ok",
            summary: Summary::default(),
        })
        .unwrap();
        assert_eq!((v["status"].as_str(), v["shipped"].as_u64()), (Some("ok"), Some(0)));
    }
}
