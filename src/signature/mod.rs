//! Kong's audit signatures: proof that a row is the one Kong wrote.
//!
//! With `audit_log_signing_key` set, Kong signs every audit row over SHA-256 with that key: RSA
//! PKCS#1 v1.5, or ECDSA (DER-encoded) for an EC key.
//! The shipper checks each row once, as it leaves Kong, against the public keys in
//! `KONG_AUDIT_SIGNING_PUBLIC_KEY`, and records the verdict on every event it ships
//! (`additionalEventData.kongSignature`); `verify` re-checks Kong's trail, or an export of shipped
//! events, at any later time.
//!
//! - `canonical`: the text Kong signs for a row;
//! - `keys`: the public keys (RSA, EC), from PEM, and their fingerprints;
//! - `verify`: the verdict on one row;
//! - `source`: verdicts made as pages arrive, beside the cycle;
//! - `trail`: verdicts over a whole trail, for the `verify` command.

pub mod canonical;
pub mod keys;
pub mod source;
pub mod trail;
pub mod verify;

pub use keys::{KeyError, PublicKey};
pub use source::VerifyingSource;
pub use trail::{Finding, TrailReport, verify_export, verify_kong};
pub use verify::{Verdict, Verifier};

use crate::kong::Entry;
use crate::summary::Counters;

/// Counts a verdict in the run's counters; an `invalid` row is logged at error level with its key.
/// The row is shipped all the same: it is the evidence.
pub fn note(counters: &Counters, entry: &Entry, verdict: &Verdict) {
    match verdict {
        Verdict::Valid { .. } => Counters::add(&counters.signatures_valid, 1),
        Verdict::Invalid { reason } => {
            Counters::add(&counters.signatures_invalid, 1);
            tracing::error!(
                kind = entry.kind.as_str(),
                key_field = entry.kind.key_field(),
                key = %entry.key,
                reason = %reason,
                "Kong's signature does not verify this audit entry; it is shipped with kongSignature.status=invalid as the evidence"
            );
        }
        Verdict::Unsigned | Verdict::Unchecked => {}
    }
}
