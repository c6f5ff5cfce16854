//! Whether an AWS call failed because there are no credentials to sign it with.
//!
//! The SDK reports a credential chain that found nothing as a *dispatch failure*, the same kind as a
//! dropped connection, so read as such it would be retried until the attempts run out. Retrying
//! cannot make credentials appear: these stop the run at once with the fix.

use std::error::Error;

use aws_credential_types::provider::error::CredentialsError;

/// What to say, after the call's name, when the credentials are missing or misconfigured.
pub const HINT: &str = "no usable AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                        or run where a role provides them (the Lambda's execution role, an instance profile)";

/// True when `err`, or one of its causes, says no provider had credentials or the AWS configuration
/// is invalid. A provider that timed out or failed (an STS 5xx) is not: that may pass on its own.
pub fn unusable(err: &(dyn Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(credentials) = e.downcast_ref::<CredentialsError>() {
            return matches!(
                credentials,
                CredentialsError::CredentialsNotLoaded(_) | CredentialsError::InvalidConfiguration(_)
            );
        }
        cause = e.source();
    }
    false
}

/// True when `err`, or one of its causes, is about loading credentials at all (none found, an invalid
/// configuration, or a provider that failed): the call was never signed, so it never reached AWS.
pub fn involved(err: &(dyn Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.downcast_ref::<CredentialsError>().is_some() {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("dispatch failure")]
    struct Wrapper(#[source] Box<dyn Error + Send + Sync>);

    #[test]
    fn missing_or_misconfigured_credentials_are_unusable_anywhere_in_the_chain() {
        let missing = Wrapper(Box::new(CredentialsError::not_loaded("no providers in chain provided credentials")));
        assert!(unusable(&missing));
        let misconfigured = CredentialsError::invalid_configuration("profile loops");
        assert!(unusable(&misconfigured));
    }

    #[test]
    fn a_provider_that_timed_out_or_failed_may_pass_and_other_errors_are_not_about_credentials() {
        assert!(!unusable(&Wrapper(Box::new(CredentialsError::provider_timed_out(
            Duration::from_secs(5)
        )))));
        assert!(!unusable(&CredentialsError::provider_error("STS answered 503")));
        assert!(!unusable(&Wrapper(Box::new(std::io::Error::other("connection reset")))));
    }
}
