//! The calls to CloudWatch Logs, behind a small trait so the sink's decisions are tested against a
//! scripted in-memory service; `SdkLogs` is the real one.

use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;

use super::errors::{CallError, Op, classify};
use super::request::{LogEvent, Skipped};

/// A log stream as DescribeLogStreams lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub name: String,
    pub arn: Option<String>,
}

/// The three calls the sink makes, all on one log group and stream.
#[async_trait]
pub trait LogsApi: Send + Sync {
    /// One PutLogEvents call with these events, in order. `Ok` carries what the service skipped.
    async fn put_log_events(&self, events: &[LogEvent]) -> Result<Skipped, CallError>;
    /// CreateLogStream for the sink's stream.
    async fn create_log_stream(&self) -> Result<(), CallError>;
    /// The first page of DescribeLogStreams, of streams whose names start with `prefix`.
    async fn describe_log_streams(&self, prefix: Option<&str>) -> Result<Vec<StreamInfo>, CallError>;
}

/// The real service, through the AWS SDK.
pub struct SdkLogs {
    pub client: Client,
    pub group: String,
    pub stream: String,
}

#[async_trait]
impl LogsApi for SdkLogs {
    async fn put_log_events(&self, events: &[LogEvent]) -> Result<Skipped, CallError> {
        let items = events
            .iter()
            .map(|e| InputLogEvent::builder().timestamp(e.timestamp).message(&e.message).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CallError::Fatal(format!("cannot build a log event: {e}")))?;
        let out = self
            .client
            .put_log_events()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .set_log_events(Some(items))
            .send()
            .await
            .map_err(|e| classify(Op::PutLogEvents, &self.group, &e))?;
        Ok(out.rejected_log_events_info().map_or_else(Skipped::default, |r| Skipped {
            too_new_start: r.too_new_log_event_start_index(),
            too_old_end: r.too_old_log_event_end_index(),
            expired_end: r.expired_log_event_end_index(),
        }))
    }

    async fn create_log_stream(&self) -> Result<(), CallError> {
        self.client
            .create_log_stream()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(Op::CreateLogStream, &self.group, &e))
    }

    async fn describe_log_streams(&self, prefix: Option<&str>) -> Result<Vec<StreamInfo>, CallError> {
        let out = self
            .client
            .describe_log_streams()
            .log_group_name(&self.group)
            .set_log_stream_name_prefix(prefix.map(str::to_string))
            .limit(50)
            .send()
            .await
            .map_err(|e| classify(Op::DescribeLogStreams, &self.group, &e))?;
        Ok(out
            .log_streams()
            .iter()
            .map(|s| StreamInfo {
                name: s.log_stream_name().unwrap_or_default().to_string(),
                arn: s.arn().map(str::to_string),
            })
            .collect())
    }
}
