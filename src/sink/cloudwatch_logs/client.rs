//! The CloudWatch Logs client, built from the shared AWS SDK configuration: the region and
//! credentials of the usual chain, `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS` (or `AWS_ENDPOINT_URL`) when set,
//! and the SDK's own retries off (the cycle retries, within the run's deadline).

use aws_sdk_cloudwatchlogs::Client;

pub fn client(sdk: &aws_config::SdkConfig) -> Client {
    Client::from_conf(aws_sdk_cloudwatchlogs::config::Builder::from(sdk).build())
}

/// The region calls go to, for messages (`None` when the SDK found none: calls will fail saying so).
pub fn region(sdk: &aws_config::SdkConfig) -> Option<String> {
    sdk.region().map(ToString::to_string)
}
