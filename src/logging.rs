//! Logs go to stderr: text for people, or JSON lines with `level` and `timestamp` (Lambda's format).

use tracing_subscriber::EnvFilter;

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

pub fn init(format: LogFormat) {
    let filter = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .and_then(|level| EnvFilter::try_new(level.to_ascii_lowercase()).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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
