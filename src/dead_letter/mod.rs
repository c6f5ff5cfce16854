//! Where entries go that can never be shipped as they are: permanently refused by CloudTrail, or
//! impossible to map. Each letter holds the whole entry and the reason, so nothing vanishes.

pub mod file;
pub mod sqs;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::kong::EntryKind;

pub use file::FileDeadLetters;
pub use sqs::SqsDeadLetters;

/// One dead-lettered entry. Serialized as one JSON object (one NDJSON line, one SQS message).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub kind: EntryKind,
    pub key: String,
    /// CloudTrail's error code (`InvalidData`, `FieldTooLong`, …) or `Unmappable`.
    pub code: String,
    pub reason: String,
    /// When it was dead-lettered, RFC 3339.
    pub at: String,
    /// The original entry, verbatim.
    pub entry: Box<serde_json::value::RawValue>,
}

/// Why letters were not stored (the entries are then released, not marked rejected).
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead-letter file {path}: {problem}")]
    File { path: String, problem: String },
    #[error("SQS queue {queue}: {problem}")]
    Queue { queue: String, problem: String },
    #[error("no time left before the deadline to store the dead letters")]
    OutOfTime,
}

#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Stores the letters durably; an `Err` means they are not stored, and the cycle then releases
    /// the entries for the next run instead of marking them rejected.
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError>;
    fn describe(&self) -> String;
}

/// Logs each letter, whole, at error level. Always on: the other sinks add to this, not replace it.
pub struct LogDeadLetters;

pub fn log_letter(letter: &DeadLetter) {
    tracing::error!(
        kind = letter.kind.as_str(),
        key = %letter.key,
        code = %letter.code,
        reason = %letter.reason,
        entry = %letter.entry.get(),
        "entry rejected for good; dead-lettered, not retried until redriven"
    );
}

#[async_trait]
impl DeadLetterSink for LogDeadLetters {
    /// Nothing to add: the cycle has already logged every letter whole (`log_letter`).
    async fn send(&self, _letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        Ok(())
    }

    fn describe(&self) -> String {
        "the error log".into()
    }
}
