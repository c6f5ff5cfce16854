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

/// Names every letter at error level: its kind, key, code and reason, never the entry. The entry (a
/// request body may hold anything) is in the queue or the file; the log is kept far longer, and read
/// by more people, than an audit entry should be.
pub fn log_letter(letter: &DeadLetter) {
    tracing::error!(
        kind = letter.kind.as_str(),
        key = %letter.key,
        code = %letter.code,
        reason = %letter.reason,
        "entry rejected for good; dead-lettered, not retried until redriven"
    );
}

/// The log as the only store of the letters, whole: the Lambda without a queue, which runs only with
/// ALLOW_EPHEMERAL_DEAD_LETTERS (the operator accepted that a letter lives only in the log).
pub struct LogDeadLetters;

#[async_trait]
impl DeadLetterSink for LogDeadLetters {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        for letter in letters {
            tracing::error!(
                kind = letter.kind.as_str(),
                key = %letter.key,
                entry = %letter.entry.get(),
                "dead letter kept in the log only (no DEAD_LETTER_QUEUE_URL)"
            );
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "the error log".into()
    }
}
