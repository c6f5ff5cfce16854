//! Logs go to stderr: text for people, or JSON lines with `level` and `timestamp` (Lambda's format).
//!
//! Colour only when stderr is a terminal (and `NO_COLOR` is not set): a file, a pipe or a log
//! collector gets plain text. The AWS SDK's own credential-chain and region-probe warnings are kept
//! out (a ✗ line of `check`, or the error that stops a run, already says what is missing), unless
//! the log filter names the SDK's `aws_config` itself.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// `LOG_FORMAT`, else Lambda's `AWS_LAMBDA_LOG_FORMAT`, else JSON in Lambda and text elsewhere.
    pub fn choose(setting: Option<&str>, in_lambda: bool) -> LogFormat {
        let lambda_format = std::env::var("AWS_LAMBDA_LOG_FORMAT").ok();
        match setting.or(lambda_format.as_deref()).map(str::to_ascii_lowercase).as_deref() {
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            _ if in_lambda => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

/// Set once whoever reads this process's output has gone (`… | head`): nothing more is worth saying.
static SILENCED: AtomicBool = AtomicBool::new(false);

/// Drops every log line from now on.
pub fn silence() {
    SILENCED.store(true, Ordering::SeqCst);
}

pub fn silenced() -> bool {
    SILENCED.load(Ordering::SeqCst)
}

/// The log filter: `RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else `info` (in Lambda, lines
/// below the function's application log level are dropped by Lambda whatever `RUST_LOG` says); the
/// SDK's chatter is held to errors unless the filter asks for it by name.
pub fn filter_directives() -> String {
    let valid = |f: &String| !f.trim().is_empty() && EnvFilter::try_new(f).is_ok();
    let base = std::env::var("RUST_LOG")
        .ok()
        .filter(valid)
        .or_else(|| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .ok()
                .map(|l| l.to_ascii_lowercase())
                .filter(valid)
        })
        .unwrap_or_else(|| "info".into());
    quiet_sdk(&base)
}

/// `aws_config` logs a warning, with the raw HTTP response, for every credential provider and
/// region source it tries and does not find: noise off AWS, and nothing the program's own errors
/// do not say better.
fn quiet_sdk(base: &str) -> String {
    if base.contains("aws_config") {
        base.to_string()
    } else {
        format!("{base},aws_config=error")
    }
}

/// Colour for people at a terminal only; `NO_COLOR` (any non-empty value) turns it off there too.
fn use_colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::new(filter_directives());
    let stderr = std::io::stderr.with_filter(|_: &tracing::Metadata<'_>| !silenced());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(stderr)
        .with_ansi(format == LogFormat::Text && use_colour())
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_is_held_to_errors_unless_the_filter_names_it() {
        assert_eq!(quiet_sdk("info"), "info,aws_config=error");
        assert_eq!(
            quiet_sdk("debug,kong_audit_shipper=trace"),
            "debug,kong_audit_shipper=trace,aws_config=error"
        );
        assert_eq!(quiet_sdk("info,aws_config=debug"), "info,aws_config=debug");
    }
}
