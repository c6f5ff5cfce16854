//! Redrive: dead-lettered entries go through the cycle again once their cause is fixed (a channel
//! setting, an outage that refused events, a mapping bug fixed in a newer version).
//!
//! For each letter the entry's `rejected:<code>` mark is deleted (only if it still holds that
//! value), then the entries go through the very same cycle as `run` (claim, map, put, settle,
//! dead-letter), served from memory instead of Kong. Afterwards the store says what happened to
//! each: letters whose entry is now `shipped` are removed (the file is rewritten atomically; queue
//! messages are deleted); letters refused again stay, with the new reason in the file (queue
//! messages reappear after their visibility timeout).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::dead_letter::file::{Line, to_line};
use crate::dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink, FileDeadLetters, SqsDeadLetters};
use crate::dedup::{KeyState, REJECTED_PREFIX, Settlement, StoreError};
use crate::kong::{AuditSource, Entry, EntryKind, KongError, KongInfo, Page, PageRequest};
use crate::ship::{Keys, ShipOptions, Shipper};
use crate::summary::{Counters, Summary};

/// How long received queue messages stay hidden from other readers while a redrive works on them.
const QUEUE_VISIBILITY_SECONDS: i32 = 900;
/// Most queue messages one redrive takes.
const QUEUE_MAX_MESSAGES: usize = 20_000;

/// Where the letters are.
pub enum Origin {
    File(FileDeadLetters),
    Queue(SqsDeadLetters),
}

/// Why a redrive could not go ahead; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("cannot read {0}")]
    Read(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a redrive did.
#[derive(Debug, Default)]
pub struct Report {
    pub letters: usize,
    pub shipped: usize,
    pub refused_again: usize,
    pub left: usize,
    /// Letters or lines that could not be used, and clean-ups that failed.
    pub problems: Vec<String>,
    /// The cycle's summary, when anything was shipped again.
    pub summary: Option<Summary>,
}

impl Report {
    pub fn line(&self) -> String {
        format!(
            "redrive letters={} shipped={} refused_again={} left={} problems={}",
            self.letters,
            self.shipped,
            self.refused_again,
            self.left,
            self.problems.len()
        )
    }

    /// Every letter shipped, nothing went wrong.
    pub fn ok(&self) -> bool {
        self.shipped == self.letters && self.problems.is_empty() && self.summary.as_ref().is_none_or(|s| s.error.is_none())
    }
}

/// One letter on its way back, with where it came from.
struct Pending {
    entry: Entry,
    store_key: String,
    receipts: Vec<String>,
}

/// What became of one letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// CloudTrail has it now (this redrive, or an earlier run): the letter is removed.
    Shipped,
    /// Refused again: the letter stays, with the new reason.
    RefusedAgain,
    /// Not shipped in this redrive (a transient failure, or another run holds it): the letter stays.
    Left,
}

/// Redrives the letters of `origin` through `shipper` (whose source and dead letters it replaces).
pub async fn redrive(mut shipper: Shipper, origin: &Origin, opts: &ShipOptions) -> Result<Report, RedriveError> {
    let store = shipper.store.clone();
    let keys = Keys::new(opts.key_prefix.clone());

    // Read the letters.
    let mut problems: Vec<String> = Vec::new();
    let loaded: Vec<(DeadLetter, Vec<String>)> = match origin {
        Origin::File(file) => {
            tracing::info!(file = %file.path().display(), "redriving dead letters from the file");
            let path = file.path().to_path_buf();
            let reader = FileDeadLetters::new(path.clone());
            match tokio::task::spawn_blocking(move || reader.read()).await {
                Ok(Ok(lines)) => lines
                    .into_iter()
                    .filter_map(|l| match l.letter {
                        Ok(letter) => Some((letter, Vec::new())),
                        Err(e) => {
                            problems.push(format!("{} line {}: {e}; the line is kept", path.display(), l.number));
                            None
                        }
                    })
                    .collect(),
                Ok(Err(e)) => return Err(RedriveError::Read(format!("{}: {e}", path.display()))),
                Err(e) => return Err(RedriveError::Read(format!("{}: {e}", path.display()))),
            }
        }
        Origin::Queue(q) => {
            tracing::info!(queue = q.queue_url(), "redriving dead letters from the queue");
            match q.receive_all(QUEUE_VISIBILITY_SECONDS, QUEUE_MAX_MESSAGES).await {
                Ok(messages) => {
                    let (letters, queue_problems) = crate::dead_letter::sqs::assemble(messages);
                    problems.extend(queue_problems);
                    letters.into_iter().map(|q| (q.letter, q.receipts)).collect()
                }
                Err(e) => return Err(RedriveError::Read(format!("the queue {}: {e}", q.queue_url()))),
            }
        }
    };

    // One pending entry per (kind, key); copies of a letter share its fate.
    let mut pending: Vec<Pending> = Vec::new();
    let mut index: HashMap<(EntryKind, String), usize> = HashMap::new();
    for (letter, receipts) in loaded {
        let entry = match Entry::parse(letter.kind, letter.entry.get()) {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!(
                    "{} {}: the letter's entry is not JSON: {e}",
                    letter.kind.as_str(),
                    letter.key
                ));
                continue;
            }
        };
        let id = (entry.kind, entry.key.clone());
        if let Some(i) = index.get(&id) {
            pending[*i].receipts.extend(receipts);
            continue;
        }
        index.insert(id, pending.len());
        pending.push(Pending {
            store_key: keys.entry(entry.kind, &entry.key),
            entry,
            receipts,
        });
    }

    // Clear each `rejected:` mark, only while it still holds that value (an atomic compare-and-delete).
    let mut outcomes: HashMap<(EntryKind, String), Outcome> = HashMap::new();
    let mut serve: Vec<Entry> = Vec::new();
    for p in &pending {
        let id = (p.entry.kind, p.entry.key.clone());
        match store.get(&p.store_key).await {
            Ok(Some(v)) if KeyState::parse(&v).is_shipped() => {
                outcomes.insert(id, Outcome::Shipped);
                continue;
            }
            Ok(Some(v)) if v.starts_with(REJECTED_PREFIX) => {
                // A release only deletes a key that holds the given value: here, the mark.
                let clear = Settlement {
                    releases: vec![p.store_key.clone()],
                    ..Default::default()
                };
                store.settle(&clear, &v).await?;
            }
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        serve.push(p.entry.clone());
    }

    // Ship through the same cycle as `run`, from memory.
    let record_ttl = match tokio::time::timeout(Duration::from_secs(10), shipper.source.info()).await {
        Ok(Ok(info)) => info.record_ttl,
        _ => {
            tracing::warn!("Kong did not answer: using the default audit_log_record_ttl (30 days) for entries without a timestamp");
            2_592_000
        }
    };
    let collector = Arc::new(Collector::default());
    let nothing_to_ship = serve.is_empty();
    let region = shipper.source.konnect_region();
    shipper.source = Arc::new(LettersSource::new(serve, record_ttl, region));
    shipper.dead_letters = collector.clone();
    let mut opts = opts.clone();
    opts.incremental = false;
    // Dead letters are entries the destination refused: it cannot hold them, so a lost store's
    // rebuild (which asks it) has nothing to say about them.
    opts.rebuild = false;
    // The operator asked for these letters: a floor set by `run --since` (which limits what is read
    // from Kong) does not drop them after their `rejected:` marks were cleared.
    opts.respect_floor = false;
    let summary = if nothing_to_ship {
        None
    } else {
        Some(shipper.run(&opts, Arc::new(Counters::default())).await)
    };
    if let Some(s) = &summary {
        crate::runner::report(s, opts.lease.as_secs());
    }

    // What the store says now.
    let refused: HashMap<(EntryKind, String), DeadLetter> = collector
        .0
        .lock()
        .unwrap()
        .drain(..)
        .map(|l| ((l.kind, l.key.clone()), l))
        .collect();
    for p in &pending {
        let id = (p.entry.kind, p.entry.key.clone());
        if outcomes.contains_key(&id) {
            continue;
        }
        let outcome = match store.get(&p.store_key).await {
            Ok(Some(v)) if KeyState::parse(&v).is_shipped() => Outcome::Shipped,
            Ok(Some(v)) if v.starts_with(REJECTED_PREFIX) && refused.contains_key(&id) => Outcome::RefusedAgain,
            _ => Outcome::Left,
        };
        outcomes.insert(id, outcome);
    }
    let count = |o: Outcome| outcomes.values().filter(|x| **x == o).count();

    // Remove what shipped; keep the rest (with the new reason, in a file).
    match origin {
        Origin::File(file) => {
            let shipped: HashSet<(EntryKind, String)> = outcomes
                .iter()
                .filter(|(_, o)| **o == Outcome::Shipped)
                .map(|(id, _)| id.clone())
                .collect();
            let path = file.path().to_path_buf();
            let writer = FileDeadLetters::new(path.clone());
            let edit = move |lines: Vec<Line>| rewrite_lines(lines, &shipped, &refused);
            if !outcomes.is_empty() {
                match tokio::task::spawn_blocking(move || writer.rewrite(edit)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => problems.push(format!("cannot rewrite {}: {e}; redriven letters are still in it", path.display())),
                    Err(e) => problems.push(format!("cannot rewrite {}: {e}", path.display())),
                }
            }
        }
        Origin::Queue(q) => {
            let receipts: Vec<String> = pending
                .iter()
                .filter(|p| outcomes.get(&(p.entry.kind, p.entry.key.clone())) == Some(&Outcome::Shipped))
                .flat_map(|p| p.receipts.iter().cloned())
                .collect();
            let deleted = q.delete(&receipts).await;
            if deleted < receipts.len() {
                problems.push(format!(
                    "{} of {} messages of shipped letters could not be deleted; a later redrive removes them",
                    receipts.len() - deleted,
                    receipts.len()
                ));
            }
        }
    }

    Ok(Report {
        letters: pending.len(),
        shipped: count(Outcome::Shipped),
        refused_again: count(Outcome::RefusedAgain),
        left: count(Outcome::Left),
        problems,
        summary,
    })
}

/// The file's new lines: shipped letters dropped, letters refused again replaced by their new letter
/// (once per entry), every other line (letters of other entries, lines that are not letters,
/// letters appended meanwhile) kept as it was.
fn rewrite_lines(
    lines: Vec<Line>,
    shipped: &HashSet<(EntryKind, String)>,
    refused: &HashMap<(EntryKind, String), DeadLetter>,
) -> Vec<String> {
    let mut replaced = HashSet::new();
    let mut out = Vec::new();
    for line in lines {
        let Ok(letter) = &line.letter else {
            out.push(line.text);
            continue;
        };
        let Ok(entry) = Entry::parse(letter.kind, letter.entry.get()) else {
            out.push(line.text);
            continue;
        };
        let id = (entry.kind, entry.key);
        if shipped.contains(&id) {
            continue;
        }
        match refused.get(&id) {
            Some(new) if replaced.insert(id.clone()) => out.push(to_line(new)),
            Some(_) => {}
            None => out.push(line.text),
        }
    }
    out
}

/// Dead letters as an audit source: what `Shipper::run` reads instead of Kong (or Konnect).
struct LettersSource {
    info: KongInfo,
    entries: HashMap<EntryKind, Vec<Entry>>,
    /// The Konnect region of the source the letters came from, for their events.
    region: Option<String>,
}

impl LettersSource {
    fn new(entries: Vec<Entry>, record_ttl: i64, region: Option<String>) -> LettersSource {
        let mut by_kind: HashMap<EntryKind, Vec<Entry>> = HashMap::new();
        for e in entries {
            by_kind.entry(e.kind).or_default().push(e);
        }
        LettersSource {
            // No version: the cycle reads "everything", keeps no watermark, and describes no Kong.
            info: KongInfo {
                version_text: None,
                version: None,
                record_ttl,
                audit_log: None,
                clock_offset: None,
            },
            entries: by_kind,
            region,
        }
    }
}

#[async_trait]
impl AuditSource for LettersSource {
    async fn info(&self) -> Result<KongInfo, KongError> {
        Ok(self.info.clone())
    }

    async fn page(&self, request: &PageRequest) -> Result<Page, KongError> {
        let all = self.entries.get(&request.kind).map(Vec::as_slice).unwrap_or_default();
        let start = request.offset.as_deref().and_then(|o| o.parse().ok()).unwrap_or(0).min(all.len());
        let end = (start + request.size.max(1) as usize).min(all.len());
        Ok(Page {
            entries: all[start..end].to_vec(),
            offset: (end < all.len()).then(|| end.to_string()),
        })
    }

    /// Kong's two kinds, and Konnect's when there are letters of it: all served as pages (they
    /// are in memory, in no order).
    fn kinds(&self) -> Vec<EntryKind> {
        let mut kinds = EntryKind::ALL.to_vec();
        if self.entries.contains_key(&EntryKind::Konnect) {
            kinds.push(EntryKind::Konnect);
        }
        kinds
    }

    fn konnect_region(&self) -> Option<String> {
        self.region.clone()
    }
}

/// Letters the redriven cycle refuses again: they are already stored where they came from, so
/// "storing" them is keeping them in memory until the file or queue is updated.
#[derive(Default)]
struct Collector(Mutex<Vec<DeadLetter>>);

#[async_trait]
impl DeadLetterSink for Collector {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        self.0.lock().unwrap().extend_from_slice(letters);
        Ok(())
    }

    fn describe(&self) -> String {
        "the dead letters being redriven".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn letters_are_served_in_pages_of_the_asked_size() {
        let entries: Vec<Entry> = (0..5)
            .map(|i| Entry::parse(EntryKind::Request, &format!(r#"{{"request_id":"r{i}"}}"#)).unwrap())
            .collect();
        let source = LettersSource::new(entries, 100, None);
        let mut req = PageRequest {
            kind: EntryKind::Request,
            size: 2,
            sort_by: "request_id",
            sort_desc: false,
            after: None,
            before: None,
            offset: None,
        };
        let mut keys = Vec::new();
        loop {
            let page = source.page(&req).await.unwrap();
            keys.extend(page.entries.iter().map(|e| e.key.clone()));
            match page.offset {
                Some(o) => req.offset = Some(o),
                None => break,
            }
        }
        assert_eq!(keys, ["r0", "r1", "r2", "r3", "r4"]);
        req.kind = EntryKind::Object;
        req.offset = None;
        assert!(source.page(&req).await.unwrap().entries.is_empty());
    }
}
