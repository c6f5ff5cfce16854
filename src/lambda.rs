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
use crate::reconcile::{ReconcileOptions, reconcile};
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
    /// A reconcile invocation compares the entries of this last span of time.
    pub reconcile_window: Duration,
    pub settle: Duration,
}

/// What an invocation returns: the run summary, with its status.
#[derive(Debug, Clone, Serialize)]
pub struct Response {
    pub status: &'static str,
    #[serde(flatten)]
    pub summary: Summary,
}

/// What a `{"action": "reconcile"}` invocation returns: the report's counts and status.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileResponse {
    pub status: &'static str,
    #[serde(flatten)]
    pub counts: crate::reconcile::Totals,
    pub queries: usize,
    pub bytes_scanned: u64,
    pub repair_shipped: Option<u64>,
}

/// What an invocation returns.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Run(Response),
    Reconcile(ReconcileResponse),
}

/// An invocation in which entries were left unshipped (or the run stopped on an error), or a
/// reconcile that found the trail incomplete: returned as an error so Lambda's `Errors` metric and
/// its alarms count it.
pub enum RunFailed {
    Run(Summary),
    /// The reconcile line.
    Reconcile(String),
    /// An event asking for something this program does not do.
    Event(String),
}

impl RunFailed {
    fn line(&self) -> String {
        match self {
            RunFailed::Run(s) => s.line(),
            RunFailed::Reconcile(line) | RunFailed::Event(line) => line.clone(),
        }
    }
}

/// The runtime logs the error's `Debug`: the summary line reads better than the struct.
impl std::fmt::Debug for RunFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line())
    }
}

impl std::fmt::Display for RunFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line())
    }
}

impl std::error::Error for RunFailed {}

impl From<RunFailed> for Diagnostic {
    fn from(e: RunFailed) -> Diagnostic {
        let error_type = match &e {
            RunFailed::Run(s) if s.error.is_some() => "KongAuditShipper.RunStopped",
            RunFailed::Run(_) => "KongAuditShipper.EntriesNotShipped",
            RunFailed::Reconcile(_) => "KongAuditShipper.TrailIncomplete",
            RunFailed::Event(_) => "KongAuditShipper.UnknownAction",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.line(),
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
            reconcile_window: Duration::from_secs(settings.reconcile_window_seconds),
            settle: Duration::from_secs(settings.reconcile_settle_seconds),
        }
    }

    /// One invocation: one cycle (or, for `{"action": "reconcile"}`, one reconcile with repair) within
    /// the deadline, one summary log line, one EMF line on stdout.
    pub async fn invoke(&self, event: LambdaEvent<Value>) -> Result<Outcome, RunFailed> {
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
        match action(&event.payload) {
            Ok(Action::Ship) => {}
            Ok(Action::Reconcile { repair }) => return self.reconcile(&options, repair).await,
            Err(why) => {
                tracing::error!("{why}");
                return Err(RunFailed::Event(why));
            }
        }
        let summary = self.shipper.run(&options, Arc::new(Counters::default())).await;
        runner::report(&summary, options.lease.as_secs());
        println!("{}", summary.emf(&self.function_name, chrono::Utc::now().timestamp_millis()));
        if summary.ok() {
            Ok(Outcome::Run(Response {
                status: summary.status(),
                summary,
            }))
        } else {
            Err(RunFailed::Run(summary))
        }
    }

    /// The entries of the last `RECONCILE_WINDOW_SECONDS` against the destination, repaired.
    async fn reconcile(&self, options: &ShipOptions, repair: bool) -> Result<Outcome, RunFailed> {
        let Some(inventory) = self.shipper.inventory.clone() else {
            return Err(RunFailed::Event("this destination cannot be asked what it holds".into()));
        };
        let now = chrono::Utc::now().timestamp();
        let opts = ReconcileOptions {
            since: Some(now - self.reconcile_window.as_secs() as i64),
            until: None,
            settle: self.settle,
            repair,
        };
        let report = reconcile(&self.shipper, inventory.as_ref(), options, &opts).await;
        tracing::info!("{}", report.line());
        println!("{}", report.emf(&self.function_name, chrono::Utc::now().timestamp_millis()));
        if report.status == "incomplete" {
            return Err(RunFailed::Reconcile(report.line()));
        }
        Ok(Outcome::Reconcile(ReconcileResponse {
            status: report.status,
            counts: report.counts.clone(),
            queries: report.queries.len(),
            bytes_scanned: report.bytes_scanned,
            repair_shipped: report.repair.as_ref().map(|r| r.run.shipped),
        }))
    }
}

/// What an invocation is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Ship,
    Reconcile { repair: bool },
}

/// `{"action": "reconcile"}` (with `"repair": false` to only compare) reconciles; any other event
/// without an `action` ships.
fn action(payload: &Value) -> Result<Action, String> {
    match payload.get("action") {
        None | Some(Value::Null) => Ok(Action::Ship),
        Some(Value::String(a)) if a == "ship" || a == "run" => Ok(Action::Ship),
        Some(Value::String(a)) if a == "reconcile" => Ok(Action::Reconcile {
            repair: payload.get("repair").and_then(Value::as_bool).unwrap_or(true),
        }),
        Some(other) => Err(format!(
            "the event's action {other} is not one this function knows: use {{\"action\": \"reconcile\"}}, or no action to ship"
        )),
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
    fn the_action_comes_from_the_event_and_an_unknown_one_is_an_error() {
        assert_eq!(action(&serde_json::json!({})), Ok(Action::Ship));
        assert_eq!(action(&serde_json::json!({"detail": "{}"})), Ok(Action::Ship));
        assert_eq!(
            action(&serde_json::json!({"action": "reconcile"})),
            Ok(Action::Reconcile { repair: true })
        );
        assert_eq!(
            action(&serde_json::json!({"action": "reconcile", "repair": false})),
            Ok(Action::Reconcile { repair: false })
        );
        assert!(action(&serde_json::json!({"action": "reconcil"})).unwrap_err().contains("reconcil"));
    }

    #[test]
    fn a_failed_run_is_an_error_whose_message_is_the_summary_line() {
        let s = Summary {
            read: 2,
            shipped: 1,
            rejected: 1,
            ..Default::default()
        };
        let d: Diagnostic = RunFailed::Run(s.clone()).into();
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
