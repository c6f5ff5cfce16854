//! The Lambda handler: `kong-audit-shipper` started by the Lambda runtime (`AWS_LAMBDA_RUNTIME_API`
//! set, no subcommand). Clients are built once per container; each invocation runs the same cycle as
//! `kong-audit-shipper run`, bounded by the invocation's deadline.
//!
//! Any JSON event is accepted (an EventBridge rule's scheduled event, an EventBridge Scheduler payload
//! such as `{"detail":"{}"}`, a manual `{}`): what to read comes from the shipper's own state, never
//! from the event.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde::Serialize;
use serde_json::Value;

use crate::config::Settings;
use crate::logging::{self, LogFormat};
use crate::runner::{self, EXIT_CONFIG, EXIT_INCOMPLETE};
use crate::setup::{self, SinkChoice, StoreChoice};
use crate::ship::{ShipOptions, Shipper, run_limits};
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
        return ExitCode::from(EXIT_CONFIG);
    }
    let shipper = match setup::build(&settings, StoreChoice::Redis, SinkChoice::Destination).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the Lambda handler: {e}");
            return ExitCode::from(EXIT_CONFIG);
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
            ExitCode::from(EXIT_INCOMPLETE)
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
            options: runner::ship_options(settings),
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
        options.limits = Some(limits);
        let summary = self.shipper.run(&options, Arc::new(Counters::default())).await;
        runner::report(&summary, options.lease.as_secs());
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

#[cfg(test)]
mod tests {
    use super::*;

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
