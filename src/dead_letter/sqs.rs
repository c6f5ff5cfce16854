//! Dead letters in an SQS queue (`DEAD_LETTER_QUEUE_URL`; the Terraform module creates it).
//!
//! Each letter is one message whose body is the letter's JSON line (see `file::to_line`), sent with
//! `SendMessageBatch` (10 messages per call at most). A letter is never lost to SQS's limits:
//!
//! - SQS caps a message, and the sum of a batch, at the queue's `MaximumMessageSize`: 1 MiB for the
//!   Terraform's queue, 256 KiB for queues created with the old default. Bodies here stay within
//!   256 KiB so any queue takes them.
//! - A letter larger than that (an entry with a large request body), or one holding characters SQS
//!   refuses in a body (U+FFFE, U+FFFF, which JSON strings may carry), is sent as numbered parts:
//!   `{"kongAuditShipperLetterPart":n,"parts":N,"sha256":…,"kind":…,"key":…,"code":…,"text":…}`, each
//!   carrying a slice of the letter's line as a JSON string, whose escapes give back the exact bytes.
//!   `redrive` reassembles them and checks the SHA-256.
//!
//! Splitting was chosen over refusing: an `Err` would release the entry, which CloudTrail would refuse
//! again on every run until Kong deletes it — and then it would be gone. A CloudWatch log line (the
//! error log every letter also goes to) is cut at 256 KB, so it is no safe place for large entries.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::config::Region;
use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use serde::{Deserialize, Serialize};

use super::file::{from_json, to_line};
use super::{DeadLetter, DeadLetterError, DeadLetterSink};
use crate::event::hex_sha256;
use crate::kong::EntryKind;

/// The largest body sent, and the largest sum of bodies in one batch: within 256 KiB.
pub const MAX_BODY_BYTES: usize = 250_000;
/// Bytes of escaped letter text per part, leaving room for the part's other members.
const PART_TEXT_BUDGET: usize = 200_000;
const MAX_BATCH: usize = 10;
const ATTEMPTS: u32 = 4;
/// The most one `send` may take: a queue that hangs must not hold a Lambda run past its deadline
/// (the letters' entries are then released, and dead-lettered by a later run).
const SEND_BUDGET: Duration = Duration::from_secs(40);

pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

/// One message received by `redrive`.
#[derive(Debug, Clone)]
pub struct Received {
    pub receipt: String,
    pub body: String,
}

/// A letter put back together from the queue, with the receipts of every message that carries it.
#[derive(Debug)]
pub struct QueuedLetter {
    pub letter: DeadLetter,
    pub receipts: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Part {
    #[serde(rename = "kongAuditShipperLetterPart")]
    part: usize,
    parts: usize,
    sha256: String,
    kind: EntryKind,
    key: String,
    code: String,
    text: String,
}

impl SqsDeadLetters {
    /// A client for the queue's own region (taken from its URL when it is an AWS one).
    pub fn new(sdk: &aws_config::SdkConfig, queue_url: &str) -> SqsDeadLetters {
        let mut conf = aws_sdk_sqs::config::Builder::from(sdk)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .operation_timeout(Duration::from_secs(25))
                    .build(),
            );
        if let Some(region) = region_of(queue_url) {
            conf = conf.region(Region::new(region));
        }
        SqsDeadLetters {
            client: aws_sdk_sqs::Client::from_conf(conf.build()),
            queue_url: queue_url.to_string(),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    async fn send_batch(&self, bodies: &[&str]) -> Result<(), String> {
        let mut pending: Vec<usize> = (0..bodies.len()).collect();
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let entries = pending
                .iter()
                .map(|i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message_body(bodies[*i])
                        .build()
                        .map_err(|e| format!("cannot build message {i}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            match self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    if out.failed().is_empty() {
                        return Ok(());
                    }
                    if let Some(f) = out.failed().iter().find(|f| f.sender_fault()) {
                        return Err(format!(
                            "SQS refused a dead letter: {}: {}",
                            f.code(),
                            f.message().unwrap_or_default()
                        ));
                    }
                    last = out
                        .failed()
                        .iter()
                        .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join("; ");
                    pending = out
                        .failed()
                        .iter()
                        .filter_map(|f| f.id().strip_prefix('m').and_then(|n| n.parse().ok()))
                        .filter(|i| *i < bodies.len())
                        .collect();
                }
                Err(e) => last = crate::error_text::sdk(&e),
            }
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        Err(format!("SendMessageBatch failed {ATTEMPTS} times: {last}"))
    }

    /// Receives every message visible now (at most `max`), hiding each for `visibility` seconds
    /// so a concurrent redrive does not take it too. Stops at the first empty answer.
    pub async fn receive_all(&self, visibility: i32, max: usize) -> Result<Vec<Received>, String> {
        let mut out = Vec::new();
        while out.len() < max {
            let answer = self
                .client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(MAX_BATCH as i32)
                .visibility_timeout(visibility)
                .wait_time_seconds(1)
                .send()
                .await
                .map_err(|e| format!("ReceiveMessage from {} failed: {}", self.queue_url, crate::error_text::sdk(&e)))?;
            if answer.messages().is_empty() {
                break;
            }
            for m in answer.messages() {
                if let (Some(receipt), Some(body)) = (m.receipt_handle(), m.body()) {
                    out.push(Received {
                        receipt: receipt.to_string(),
                        body: body.to_string(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Deletes these messages; returns how many were deleted (the rest reappear after their
    /// visibility timeout, and a later redrive deletes them).
    pub async fn delete(&self, receipts: &[String]) -> usize {
        let mut deleted = 0;
        for chunk in receipts.chunks(MAX_BATCH) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(format!("d{i}"))
                        .receipt_handle(r)
                        .build()
                        .ok()
                })
                .collect();
            match self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    deleted += out.successful().len();
                    for f in out.failed() {
                        tracing::warn!(
                            code = f.code(),
                            message = f.message().unwrap_or_default(),
                            "cannot delete a redriven letter from the queue; it will be seen again"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %crate::error_text::sdk(&e), "cannot delete redriven letters from the queue; they will be seen again")
                }
            }
        }
        deleted
    }
}

/// `sqs.eu-west-1.amazonaws.com/…` or `eu-west-1.queue.amazonaws.com/…` → `eu-west-1`.
pub fn region_of(queue_url: &str) -> Option<String> {
    let host = url::Url::parse(queue_url).ok()?.host_str()?.to_string();
    let labels: Vec<&str> = host.split('.').collect();
    let region = match labels.as_slice() {
        ["sqs", region, ..] => region,
        [region, "queue", ..] => region,
        _ => return None,
    };
    let valid = region.contains('-') && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    valid.then(|| region.to_string())
}

/// Characters SQS refuses in a body; JSON strings may hold them, JSON escapes can replace them.
fn refused_by_sqs(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
}

/// The message bodies that carry one letter: its line, or numbered parts.
pub fn encode(letter: &DeadLetter) -> Vec<String> {
    let line = to_line(letter);
    if line.len() <= MAX_BODY_BYTES && !line.contains(refused_by_sqs) {
        return vec![line];
    }
    let sha256 = hex_sha256(line.as_bytes());
    let slices = split_escaped(&line, PART_TEXT_BUDGET);
    let parts = slices.len();
    let key: String = letter.key.chars().take(256).collect();
    slices
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let body = serde_json::to_string(&Part {
                part: i + 1,
                parts,
                sha256: sha256.clone(),
                kind: letter.kind,
                key: key.clone(),
                code: letter.code.clone(),
                text: text.to_string(),
            })
            .expect("a part always serializes");
            // Inside JSON strings (the only place they can be), escapes stand for the same text.
            body.replace('\u{fffe}', "\\ufffe").replace('\u{ffff}', "\\uffff")
        })
        .collect()
}

/// Splits text at character boundaries into slices whose JSON-escaped form fits `budget` bytes.
fn split_escaped(text: &str, budget: usize) -> Vec<&str> {
    let mut slices = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, c) in text.char_indices() {
        let escaped = match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => 6,
            c => c.len_utf8(),
        };
        if size + escaped > budget && i > start {
            slices.push(&text[start..i]);
            (start, size) = (i, 0);
        }
        size += escaped;
    }
    slices.push(&text[start..]);
    slices
}

/// Packs bodies into batches of at most 10 messages and `MAX_BODY_BYTES` in all.
fn pack(bodies: &[String]) -> Vec<Vec<&str>> {
    let mut batches: Vec<Vec<&str>> = Vec::new();
    let mut size = 0;
    for body in bodies {
        let fits = batches
            .last()
            .is_some_and(|b| b.len() < MAX_BATCH && size + body.len() <= MAX_BODY_BYTES);
        if !fits {
            batches.push(Vec::new());
            size = 0;
        }
        batches.last_mut().expect("pushed above").push(body);
        size += body.len();
    }
    batches
}

/// Puts letters back together from received messages. Returns the letters (one per entry, with
/// every message carrying it), and problems: bodies that are not letters, and letters whose parts
/// are missing or do not match their SHA-256 (those messages are left in the queue).
pub fn assemble(messages: Vec<Received>) -> (Vec<QueuedLetter>, Vec<String>) {
    let mut problems = Vec::new();
    let mut by_entry: HashMap<(EntryKind, String), QueuedLetter> = HashMap::new();
    let mut order: Vec<(EntryKind, String)> = Vec::new();
    let mut add = |letter: DeadLetter, receipts: Vec<String>| {
        let id = (letter.kind, letter.key.clone());
        match by_entry.get_mut(&id) {
            Some(q) => q.receipts.extend(receipts),
            None => {
                order.push(id.clone());
                by_entry.insert(id, QueuedLetter { letter, receipts });
            }
        }
    };
    type PartSet = (usize, HashMap<usize, (String, String)>);
    let mut split: HashMap<String, PartSet> = HashMap::new();
    for m in messages {
        if let Ok(part) = serde_json::from_str::<Part>(&m.body) {
            let set = split.entry(part.sha256.clone()).or_insert((part.parts, HashMap::new()));
            set.1.insert(part.part, (part.text, m.receipt));
            continue;
        }
        match from_json(&m.body) {
            Ok(letter) => add(letter, vec![m.receipt]),
            Err(e) => problems.push(format!("a message that is not a dead letter was left in the queue: {e}")),
        }
    }
    for (sha, (count, mut parts)) in split {
        if (1..=count).any(|p| !parts.contains_key(&p)) {
            problems.push(format!(
                "letter {sha}: {} of {count} parts received; left in the queue for a later redrive",
                parts.len()
            ));
            continue;
        }
        let (mut line, mut receipts) = (String::new(), Vec::new());
        for p in 1..=count {
            let (text, receipt) = parts.remove(&p).expect("checked above");
            line.push_str(&text);
            receipts.push(receipt);
        }
        // Copies of a part (a letter sent twice) carry the same text: delete them along.
        receipts.extend(parts.into_values().map(|(_, r)| r));
        if hex_sha256(line.as_bytes()) != sha {
            problems.push(format!(
                "letter {sha}: reassembled parts do not match their SHA-256; left in the queue"
            ));
            continue;
        }
        match from_json(&line) {
            Ok(letter) => add(letter, receipts),
            Err(e) => problems.push(format!("letter {sha}: {e}")),
        }
    }
    let letters = order.into_iter().filter_map(|id| by_entry.remove(&id)).collect();
    (letters, problems)
}

#[async_trait]
impl DeadLetterSink for SqsDeadLetters {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        let bodies: Vec<String> = letters.iter().flat_map(encode).collect();
        let all = async {
            for batch in pack(&bodies) {
                self.send_batch(&batch).await?;
            }
            Ok(())
        };
        let failed = |problem: String| DeadLetterError::Queue {
            queue: self.queue_url.clone(),
            problem,
        };
        tokio::time::timeout(SEND_BUDGET, all)
            .await
            .map_err(|_| failed(format!("did not take the letters within {} s", SEND_BUDGET.as_secs())))?
            .map_err(failed)
    }

    fn describe(&self) -> String {
        format!("the SQS queue {}", self.queue_url)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    fn letter(key: &str, entry: String) -> DeadLetter {
        DeadLetter {
            kind: EntryKind::Object,
            key: key.into(),
            code: "FieldTooLong".into(),
            reason: "too long".into(),
            at: "2026-01-01T00:00:00Z".into(),
            entry: RawValue::from_string(entry).unwrap(),
        }
    }

    fn received(bodies: Vec<String>) -> Vec<Received> {
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Received {
                receipt: format!("r{i}"),
                body,
            })
            .collect()
    }

    #[test]
    fn small_letters_are_one_message_holding_the_line() {
        let l = letter("o1", r#"{"id":"o1"}"#.into());
        let bodies = encode(&l);
        assert_eq!(bodies, vec![to_line(&l)]);
        let (back, problems) = assemble(received(bodies));
        assert!(problems.is_empty());
        assert_eq!(back[0].letter.entry.get(), r#"{"id":"o1"}"#);
    }

    #[test]
    fn large_letters_and_refused_characters_go_in_parts_that_reassemble_exactly() {
        let big = format!(
            r#"{{"id":"o2","entity":"{}","odd":"\ufffe{}"}}"#,
            "\\\"é\\u0001".repeat(60_000),
            '\u{ffff}'
        );
        let l = letter("o2", big.clone());
        let mut bodies = encode(&l);
        assert!(bodies.len() >= 3, "{} parts", bodies.len());
        for b in &bodies {
            assert!(b.len() <= MAX_BODY_BYTES, "{}", b.len());
            assert!(!b.contains(refused_by_sqs), "no character SQS refuses");
        }
        bodies.reverse();
        let (back, problems) = assemble(received(bodies.clone()));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].letter.entry.get(), big, "byte for byte");
        assert_eq!(back[0].receipts.len(), bodies.len());

        let small_but_odd = letter("o3", "{\"id\":\"o3\",\"x\":\"\u{ffff}\"}".into());
        let parts = encode(&small_but_odd);
        assert!(parts.len() == 1 && !parts[0].contains('\u{ffff}'));
        let (back, _) = assemble(received(parts));
        assert_eq!(back[0].letter.entry.get(), "{\"id\":\"o3\",\"x\":\"\u{ffff}\"}");

        let (none, problems) = assemble(received(bodies[1..].to_vec()));
        assert!(none.is_empty() && problems[0].contains("parts received"), "{problems:?}");
    }

    #[test]
    fn batches_stay_within_ten_messages_and_the_size_limit() {
        let bodies: Vec<String> = (0..25).map(|i| "x".repeat(if i % 3 == 0 { 120_000 } else { 10 })).collect();
        let batches = pack(&bodies);
        assert!(
            batches
                .iter()
                .all(|b| b.len() <= 10 && b.iter().map(|s| s.len()).sum::<usize>() <= MAX_BODY_BYTES)
        );
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 25);
    }

    #[test]
    fn duplicates_of_a_letter_are_one_letter_with_every_receipt() {
        let l = letter("o4", r#"{"id":"o4"}"#.into());
        let (back, problems) = assemble(received(vec![to_line(&l), to_line(&l), "junk".into()]));
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].receipts, vec!["r0", "r1"]);
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn the_region_comes_from_the_queue_url() {
        assert_eq!(
            region_of("https://sqs.eu-west-1.amazonaws.com/123456789012/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of("https://us-east-2.queue.amazonaws.com/123456789012/q").as_deref(),
            Some("us-east-2")
        );
        assert_eq!(region_of("http://127.0.0.1:4566/000000000000/q"), None);
    }
}
