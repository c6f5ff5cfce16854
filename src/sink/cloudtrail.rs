//! PutAuditEvents through the AWS SDK. The SDK's own retries are off: the ship cycle retries whole
//! calls and single events alike, within the run's deadline.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_cloudtraildata::config::Region;
use aws_sdk_cloudtraildata::config::http::HttpResponse;
use aws_sdk_cloudtraildata::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudtraildata::operation::put_audit_events::PutAuditEventsError;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{PutReport, Refusal, Sink, SinkError};
use crate::config::ChannelConfig;
use crate::event::AuditEvent;

pub struct CloudTrailSink {
    client: aws_sdk_cloudtraildata::Client,
    channel_arn: String,
    external_id: Option<String>,
}

/// The AWS SDK configuration from its usual chain (environment, profile, container, instance).
/// Without `AWS_REGION` (or `AWS_DEFAULT_REGION`), `default_region` (the channel's) is the region,
/// rather than a search of profiles and instance metadata that ends in warnings off AWS.
pub async fn load_sdk_config(default_region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        );
    let region_set = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|r| !r.is_empty()));
    if let (false, Some(region)) = (region_set, default_region) {
        loader = loader.region(Region::new(region.to_string()));
    }
    loader.load().await
}

impl CloudTrailSink {
    /// A client for the channel's own region, whatever `AWS_REGION` says: the channel lives there.
    pub fn new(sdk: &aws_config::SdkConfig, channel: &ChannelConfig) -> CloudTrailSink {
        let conf = aws_sdk_cloudtraildata::config::Builder::from(sdk)
            .region(Region::new(channel.region.clone()))
            .build();
        CloudTrailSink {
            client: aws_sdk_cloudtraildata::Client::from_conf(conf),
            channel_arn: channel.arn.clone(),
            external_id: channel.external_id.clone(),
        }
    }
}

/// `eventDataChecksum`: base64 of the SHA-256 of the exact `eventData` text.
pub fn checksum(event_data: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(event_data.as_bytes()))
}

#[async_trait]
impl Sink for CloudTrailSink {
    async fn put(&self, events: &[AuditEvent]) -> Result<PutReport, SinkError> {
        let mut call = self
            .client
            .put_audit_events()
            .channel_arn(&self.channel_arn)
            .set_external_id(self.external_id.clone());
        for e in events {
            let item = aws_sdk_cloudtraildata::types::AuditEvent::builder()
                .id(&e.id)
                .event_data(&e.event_data)
                .event_data_checksum(checksum(&e.event_data))
                .build()
                .map_err(|err| SinkError::Fatal(format!("cannot build event {}: {err}", e.id)))?;
            call = call.audit_events(item);
        }
        let out = call.send().await.map_err(classify)?;
        Ok(PutReport {
            successful: out.successful().iter().map(|s| s.id().to_string()).collect(),
            failed: out
                .failed()
                .iter()
                .map(|f| Refusal::from_cloudtrail(f.id(), f.error_code(), f.error_message()))
                .collect(),
        })
    }

    fn describe(&self) -> String {
        format!("CloudTrail Lake channel {}", self.channel_arn)
    }
}

/// Whole-call failures: transient ones are retried by the cycle; the rest stop the run with a fix.
fn classify(err: SdkError<PutAuditEventsError, HttpResponse>) -> SinkError {
    let detail = crate::error_text::sdk(&err);
    if super::credentials::unusable(&err) {
        return SinkError::Fatal(format!(
            "PutAuditEvents could not be signed: {} ({detail})",
            super::credentials::HINT
        ));
    }
    let (service, status) = match &err {
        SdkError::ServiceError(ctx) => (ctx.err(), ctx.raw().status().as_u16()),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return SinkError::Transient(format!("PutAuditEvents did not complete: {detail}"));
        }
        _ => return SinkError::Fatal(format!("PutAuditEvents could not be sent (AWS credentials or region?): {detail}")),
    };
    let fatal = |hint: &str| SinkError::Fatal(format!("PutAuditEvents refused: {hint} ({detail})"));
    match service {
        PutAuditEventsError::ChannelNotFound(_) => fatal("the channel does not exist; check CHANNEL_ARN"),
        PutAuditEventsError::InvalidChannelArn(_) => fatal("CHANNEL_ARN is not a valid channel ARN"),
        PutAuditEventsError::ChannelInsufficientPermission(_) => fatal("the AWS account in use does not own the channel"),
        PutAuditEventsError::ChannelUnsupportedSchema(_) => fatal("the channel does not accept the integration schema"),
        PutAuditEventsError::UnsupportedOperationException(_) => fatal("CloudTrail Lake is not available to this account or region"),
        PutAuditEventsError::DuplicatedAuditEventId(_) => fatal("two events in one call had the same id (a bug: please report it)"),
        other => match other.code().unwrap_or_default() {
            "ThrottlingException" | "Throttling" | "TooManyRequestsException" => SinkError::Throttled(format!("PutAuditEvents: {detail}")),
            "ServiceUnavailableException" | "InternalServerException" | "InternalFailure" | "RequestTimeout" => {
                SinkError::Transient(format!("PutAuditEvents: {detail}"))
            }
            "AccessDeniedException" | "AccessDenied" => fatal(
                "access denied: the role needs cloudtrail-data:PutAuditEvents on the channel, and the channel policy may require CHANNEL_EXTERNAL_ID",
            ),
            "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "MissingAuthenticationTokenException" => fatal("AWS credentials are invalid or expired"),
            _ if status == 429 => SinkError::Throttled(format!("PutAuditEvents: {detail}")),
            _ if status >= 500 => SinkError::Transient(format!("PutAuditEvents: {detail}")),
            _ => SinkError::Fatal(format!("PutAuditEvents refused the call: {detail}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_base64_sha256_of_the_exact_text() {
        // printf %s '{}' | openssl dgst -binary -sha256 | base64
        assert_eq!(checksum("{}"), "RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o=");
    }
}
