//! Errors as one line an operator can read: the message and its causes, never a `Debug` dump.
//!
//! The AWS SDK's own `DisplayErrorContext` ends with the `Debug` of the whole error, raw HTTP
//! response included (a single 500 from CloudTrail made a 1,300-character line); these do not.

use std::error::Error;

use aws_sdk_cloudtraildata::config::http::HttpResponse;
use aws_sdk_cloudtraildata::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudtraildata::operation::RequestId;

/// An error and its causes, joined by ": "; a cause whose text is already in the line is left out
/// (wrappers often repeat their source).
pub fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !more.is_empty() && !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// An AWS SDK error. A service's answer reads `HTTP 500 InternalFailure: <its message> (request id
/// <id>)`; anything else (no connection, a timeout, no credentials) reads as its causes.
pub fn sdk<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + Error + 'static,
{
    let request_id = e.request_id().map(|id| format!(" (request id {id})")).unwrap_or_default();
    match e {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let err = ctx.err();
            let what = match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                (None, Some(message)) => message.to_string(),
                (None, None) => chain(err),
            };
            format!("HTTP {status} {what}{request_id}")
        }
        SdkError::ResponseError(ctx) => {
            let status = ctx.raw().status().as_u16();
            format!("HTTP {status}, an answer that could not be read: {}{request_id}", chain(e))
        }
        _ => chain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner: connection refused")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("inner: connection refused")]
    struct Repeats(#[source] Inner);

    #[test]
    fn causes_are_joined_and_repeats_left_out() {
        assert_eq!(chain(&Outer(Inner)), "outer: inner: connection refused");
        assert_eq!(chain(&Repeats(Inner)), "inner: connection refused");
    }
}
