//! What `check` and the start of every run ask of the destination: that the log group exists
//! (DescribeLogStreams answers for it), that the stream exists (created at start when missing), and
//! which account owns the group (the `recipientAccountId` of every event).

use std::time::Duration;

use super::errors::{CallError, missing_group};
use super::service::LogsApi;
use crate::retry::Backoff;

/// `recipientAccountId` when the service names no account (an emulator without ARNs).
pub const UNKNOWN_ACCOUNT: &str = "000000000000";

/// The destination as DescribeLogStreams shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub stream_exists: bool,
    /// From a stream's ARN, `arn:aws:logs:REGION:ACCOUNT:log-group:NAME:log-stream:STREAM`.
    pub account_id: Option<String>,
}

/// The account of a log stream or log group ARN.
pub fn account_of(arn: &str) -> Option<String> {
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then(|| account.to_string())
}

/// One DescribeLogStreams for the stream's name; a missing group is a fatal error naming it.
pub async fn health(api: &dyn LogsApi, group: &str, stream: &str) -> Result<Health, CallError> {
    let streams = api.describe_log_streams(Some(stream)).await.map_err(|e| match e {
        CallError::NotFound(detail) => CallError::Fatal(missing_group(group, &detail)),
        other => other,
    })?;
    let ours = streams.iter().find(|s| s.name == stream);
    let account_id = ours
        .into_iter()
        .chain(streams.iter())
        .find_map(|s| s.arn.as_deref().and_then(account_of));
    Ok(Health {
        stream_exists: ours.is_some(),
        account_id,
    })
}

/// CreateLogStream; a stream that exists already is fine, a missing group is fatal and named.
pub async fn create_stream(api: &dyn LogsApi, group: &str) -> Result<(), CallError> {
    match api.create_log_stream().await {
        Ok(()) | Err(CallError::AlreadyExists) => Ok(()),
        Err(CallError::NotFound(detail)) => Err(CallError::Fatal(missing_group(group, &detail))),
        Err(e) => Err(e),
    }
}

/// At start: the stream exists (created when missing), and the account that owns the group.
/// Throttling and transient failures are retried with `backoff`; the error names the fix.
pub async fn prepare(api: &dyn LogsApi, group: &str, stream: &str, backoff: &Backoff) -> Result<String, String> {
    let mut retry = 0;
    loop {
        let attempt = async {
            let found = health(api, group, stream).await?;
            if found.stream_exists && found.account_id.is_some() {
                return Ok(found);
            }
            if !found.stream_exists {
                create_stream(api, group).await?;
                tracing::info!(group, stream, "created the log stream");
            }
            health(api, group, stream).await
        };
        match attempt.await {
            Ok(h) => {
                return Ok(h.account_id.unwrap_or_else(|| {
                    tracing::warn!(
                        group,
                        "DescribeLogStreams named no account (no stream ARN): recipientAccountId is {UNKNOWN_ACCOUNT}"
                    );
                    UNKNOWN_ACCOUNT.into()
                }));
            }
            Err(CallError::Throttled(why) | CallError::Transient(why)) => {
                retry += 1;
                match backoff.wait(retry, None, None) {
                    Some(wait) => {
                        tracing::warn!(error = %why, wait_ms = wait.as_millis() as u64, "CloudWatch Logs is not answering; trying again");
                        tokio::time::sleep(wait.min(Duration::from_secs(20))).await;
                    }
                    None => return Err(format!("CloudWatch Logs did not answer after {retry} tries: {why}")),
                }
            }
            Err(e) => return Err(e.text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_comes_from_the_arn() {
        assert_eq!(
            account_of("arn:aws:logs:eu-west-1:123456789012:log-group:/kong/audit:log-stream:kong-audit-shipper").as_deref(),
            Some("123456789012")
        );
        assert_eq!(account_of("arn:aws:logs:eu-west-1:1:log-group:g").as_deref(), None);
        assert_eq!(account_of("nope"), None);
    }
}
