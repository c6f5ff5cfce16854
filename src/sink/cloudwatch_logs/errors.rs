//! What a failed CloudWatch Logs call means: slow down, try again, create the stream, or stop and fix
//! the configuration (named). Errors are shown with their message and causes, never as a Debug dump
//! (the SDK's `DisplayErrorContext` appends one, so the chain is walked here).

use aws_sdk_cloudwatchlogs::config::http::HttpResponse;
use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};

/// The calls this sink makes, with the IAM action each needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    PutLogEvents,
    CreateLogStream,
    DescribeLogStreams,
    /// What `reconcile` reads.
    FilterLogEvents,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::PutLogEvents => "PutLogEvents",
            Op::CreateLogStream => "CreateLogStream",
            Op::DescribeLogStreams => "DescribeLogStreams",
            Op::FilterLogEvents => "FilterLogEvents",
        }
    }

    pub fn action(self) -> &'static str {
        match self {
            Op::PutLogEvents => "logs:PutLogEvents",
            Op::CreateLogStream => "logs:CreateLogStream",
            Op::DescribeLogStreams => "logs:DescribeLogStreams",
            Op::FilterLogEvents => "logs:FilterLogEvents",
        }
    }

    /// What the log group's KMS key must allow CloudWatch Logs for this call.
    fn kms(self) -> &'static str {
        match self {
            Op::FilterLogEvents => "kms:Decrypt",
            _ => "kms:Encrypt/kms:GenerateDataKey",
        }
    }
}

/// A failed call, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The service asked us to slow down.
    Throttled(String),
    /// A retry may succeed (5xx, network, no answer). The call may have been carried out.
    Transient(String),
    /// `ResourceNotFoundException`: the stream or the group does not exist (CreateLogStream tells which).
    NotFound(String),
    /// `ResourceAlreadyExistsException` (CreateLogStream: the stream is there, which is fine).
    AlreadyExists,
    /// `InvalidParameterException`: with valid names, something in the events.
    Invalid(String),
    /// Only a change of configuration or permissions fixes it; the text says which.
    Fatal(String),
}

impl CallError {
    pub fn text(&self) -> String {
        match self {
            CallError::Throttled(t) | CallError::Transient(t) | CallError::NotFound(t) | CallError::Invalid(t) | CallError::Fatal(t) => {
                t.clone()
            }
            CallError::AlreadyExists => "the log stream already exists".into(),
        }
    }
}

/// How a call failed, before deciding what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer: timeout, connection, unreadable response.
    NoAnswer,
    /// The request could not be built (no region, for example).
    NotSent,
    /// No credentials to sign the request with (the SDK calls this a dispatch failure).
    NotSigned,
    /// The service answered with an error.
    Service { code: String, status: u16 },
}

/// Reads an SDK error into a `Failure` and decides it.
pub fn classify<E>(op: Op, group: &str, err: &SdkError<E, HttpResponse>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut detail = message_and_causes(err);
    let failure = match err {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or_default().to_string();
            if let Some(message) = ctx.err().message() {
                // The service's own words, rather than the SDK's rendering of an unmodelled error.
                detail = format!("{code}: {message}");
            }
            Failure::Service {
                code,
                status: ctx.raw().status().as_u16(),
            }
        }
        _ if crate::sink::credentials::unusable(err) => Failure::NotSigned,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Failure::NoAnswer,
        _ => Failure::NotSent,
    };
    decide(op, group, &failure, &detail)
}

/// An error's message followed by each cause's that adds something, on one line.
pub fn message_and_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !more.is_empty() && !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// What a failure means for `op` on log group `group`; `detail` is the error's message and causes.
pub fn decide(op: Op, group: &str, failure: &Failure, detail: &str) -> CallError {
    let name = op.name();
    let (code, status) = match failure {
        Failure::NoAnswer => return CallError::Transient(format!("{name} did not complete: {detail}")),
        Failure::NotSigned => {
            return CallError::Fatal(format!("{name} could not be signed: {} ({detail})", crate::sink::credentials::HINT));
        }
        Failure::NotSent => {
            return CallError::Fatal(format!("{name} could not be sent (AWS credentials or region?): {detail}"));
        }
        Failure::Service { code, status } => (code.as_str(), *status),
    };
    match code {
        "ThrottlingException" | "Throttling" | "TooManyRequestsException" | "RequestLimitExceeded" => {
            CallError::Throttled(format!("{name}: {code}: {detail}"))
        }
        "ServiceUnavailableException"
        | "InternalFailure"
        | "InternalServerError"
        | "InternalServerException"
        | "RequestTimeout"
        | "RequestTimeoutException"
        | "OperationAbortedException"
        | "DataAlreadyAcceptedException"
        | "InvalidSequenceTokenException" => CallError::Transient(format!("{name}: {code}: {detail}")),
        "ResourceNotFoundException" => CallError::NotFound(format!("{name}: {detail}")),
        "ResourceAlreadyExistsException" => CallError::AlreadyExists,
        "InvalidParameterException" => CallError::Invalid(format!("{name}: {detail}")),
        "AccessDeniedException" | "AccessDenied" => CallError::Fatal(format!(
            "{name} refused: access denied: the role needs {} on the log group {group} (arn:aws:logs:REGION:ACCOUNT:log-group:{group}:*), and {} must be allowed to CloudWatch Logs on its KMS key ({detail})",
            op.action(),
            op.kms()
        )),
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "MissingAuthenticationTokenException"
        | "InvalidClientTokenId"
        | "IncompleteSignature" => CallError::Fatal(format!("{name} refused: AWS credentials are invalid or expired ({detail})")),
        _ if status == 429 => CallError::Throttled(format!("{name}: HTTP 429: {detail}")),
        _ if status >= 500 => CallError::Transient(format!("{name}: HTTP {status}: {detail}")),
        _ => CallError::Fatal(format!("{name} refused the call (HTTP {status}): {detail}")),
    }
}

/// The fix for a missing log group, naming the setting.
pub fn missing_group(group: &str, detail: &str) -> String {
    format!(
        "CLOUDWATCH_LOG_GROUP: the log group '{group}' does not exist in this account and region: create it (the Terraform module does, with destination = \"cloudwatch_logs\"), or correct CLOUDWATCH_LOG_GROUP or AWS_REGION ({detail})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatchlogs::error::ErrorMetadata;
    use aws_sdk_cloudwatchlogs::operation::put_log_events::PutLogEventsError;
    use aws_sdk_cloudwatchlogs::types::error::ResourceNotFoundException;

    fn service(code: &str, status: u16) -> Failure {
        Failure::Service { code: code.into(), status }
    }

    #[test]
    fn throttling_and_unavailability_are_retried() {
        for code in ["ThrottlingException", "Throttling"] {
            assert!(matches!(
                decide(Op::PutLogEvents, "g", &service(code, 400), "d"),
                CallError::Throttled(_)
            ));
        }
        assert!(matches!(
            decide(Op::PutLogEvents, "g", &service("Whatever", 429), "d"),
            CallError::Throttled(_)
        ));
        for code in ["ServiceUnavailableException", "InternalFailure", "DataAlreadyAcceptedException"] {
            assert!(matches!(
                decide(Op::PutLogEvents, "g", &service(code, 500), "d"),
                CallError::Transient(_)
            ));
        }
        assert!(matches!(
            decide(Op::PutLogEvents, "g", &service("", 502), "d"),
            CallError::Transient(_)
        ));
        assert!(matches!(
            decide(Op::PutLogEvents, "g", &Failure::NoAnswer, "d"),
            CallError::Transient(_)
        ));
    }

    #[test]
    fn access_denied_names_the_iam_action_and_the_group() {
        for (op, action) in [
            (Op::PutLogEvents, "logs:PutLogEvents"),
            (Op::CreateLogStream, "logs:CreateLogStream"),
            (Op::DescribeLogStreams, "logs:DescribeLogStreams"),
        ] {
            let CallError::Fatal(text) = decide(
                op,
                "/kong/audit",
                &service("AccessDeniedException", 400),
                "User: x is not authorized",
            ) else {
                panic!("not fatal");
            };
            assert!(
                text.contains(action) && text.contains("/kong/audit") && text.contains("not authorized"),
                "{text}"
            );
        }
        let CallError::Fatal(text) = decide(Op::PutLogEvents, "g", &service("UnrecognizedClientException", 400), "d") else {
            panic!("not fatal");
        };
        assert!(text.contains("credentials"), "{text}");
        assert!(matches!(decide(Op::PutLogEvents, "g", &Failure::NotSent, "no region"), CallError::Fatal(t) if t.contains("no region")));
        assert!(matches!(
            decide(Op::PutLogEvents, "g", &service("SomethingNew", 400), "d"),
            CallError::Fatal(_)
        ));
    }

    #[test]
    fn missing_resources_and_bad_parameters_are_told_apart() {
        assert!(matches!(
            decide(Op::PutLogEvents, "g", &service("ResourceNotFoundException", 400), "d"),
            CallError::NotFound(_)
        ));
        assert_eq!(
            decide(Op::CreateLogStream, "g", &service("ResourceAlreadyExistsException", 400), "d"),
            CallError::AlreadyExists
        );
        assert!(matches!(
            decide(Op::PutLogEvents, "g", &service("InvalidParameterException", 400), "d"),
            CallError::Invalid(_)
        ));
        let text = missing_group("/kong/audit", "The specified log group does not exist.");
        assert!(text.starts_with("CLOUDWATCH_LOG_GROUP") && text.contains("'/kong/audit'"), "{text}");
    }

    #[test]
    fn an_sdk_error_is_read_with_its_message_not_a_debug_dump() {
        let err = PutLogEventsError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("The specified log stream does not exist.")
                .meta(
                    ErrorMetadata::builder()
                        .code("ResourceNotFoundException")
                        .message("The specified log stream does not exist.")
                        .build(),
                )
                .build(),
        );
        let raw = HttpResponse::new(400.try_into().unwrap(), "".into());
        let sdk = SdkError::service_error(err, raw);
        match classify(Op::PutLogEvents, "g", &sdk) {
            CallError::NotFound(text) => {
                assert!(text.contains("The specified log stream does not exist."), "{text}");
                assert!(
                    !text.contains("ErrorMetadata") && !text.contains("SdkBody"),
                    "no Debug dump: {text}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
