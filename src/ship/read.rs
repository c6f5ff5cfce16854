//! Reading: what to read of each endpoint, a page reader per endpoint, and the merge of both into
//! one stream, oldest first.
//!
//! A run that stops at its budget has then shipped the oldest entries of both endpoints: neither
//! starves behind the other, and nothing expires unread while newer entries ship. On Kongs without
//! the timestamp filters, entries come in key order (no time order exists), and the two endpoints
//! take turns page by page.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::kong::{AuditSource, Entry, EntryKind, KongError, KongInfo, Page, PageRequest};
use crate::summary::Counters;

/// Entries whose `eventTime` falls in `[since, until)`; open ends read everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Window {
    pub fn contains(&self, t: i64) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }
}

/// How far ahead of the shipper's clock a row may be stamped before it is worth a warning: rows
/// written during the run are stamped after its start, and clocks differ by a little anyway.
const SKEW_WARNING_SECONDS: i64 = 120;

/// The first page of an endpoint: oldest first from `from` where Kong can sort and filter by time;
/// otherwise in key order, which is stable under Kong's keyset paging.
pub fn first_page(kind: EntryKind, info: &KongInfo, page_size: u32, window: &Window, from: Option<i64>) -> PageRequest {
    let by_time = info.has_timestamp_filters();
    PageRequest {
        kind,
        size: page_size,
        sort_by: if by_time { "request_timestamp" } else { kind.key_field() },
        sort_desc: false,
        after: window.since.max(from).filter(|_| by_time),
        before: window.until.filter(|_| by_time),
        offset: None,
    }
}

/// One entry as read, and when its page arrived (its `ttl` was true then).
#[derive(Debug)]
pub struct ReadEntry {
    pub entry: Entry,
    pub read_at: Instant,
}

/// The next entries of the stream, oldest first.
#[derive(Debug, Default)]
pub struct Chunk {
    pub entries: Vec<ReadEntry>,
    /// Endpoints read to their last page by the end of this chunk.
    pub complete: Vec<EntryKind>,
    /// A source read in windows (Konnect): a window was walked whole by the end of this chunk, and
    /// every entry stamped from the start of the run's read up to this time has been read.
    pub walked_to: Option<i64>,
}

/// What the merged stream hands out: chunks, then an explicit end. A stream that closes without
/// its end was cut short (a reader died): that is an error, never the end of the trail.
pub(super) enum Read {
    Chunk(Chunk),
    End,
}

/// The merged stream of both endpoints. Dropping it stops every reader, even one waiting out a
/// `Retry-After`.
pub struct Chunks {
    rx: mpsc::Receiver<Result<Read, KongError>>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Chunks {
    /// The stream a reading task sends to; the tasks stop when it is dropped.
    pub(super) fn new(rx: mpsc::Receiver<Result<Read, KongError>>, tasks: Vec<tokio::task::AbortHandle>) -> Chunks {
        Chunks { rx, tasks }
    }

    /// The next chunk, `Ok(None)` once every endpoint was read to its last page.
    pub async fn next(&mut self) -> Result<Option<Chunk>, KongError> {
        match self.rx.recv().await {
            Some(Ok(Read::Chunk(chunk))) => Ok(Some(chunk)),
            Some(Ok(Read::End)) => Ok(None),
            Some(Err(e)) => Err(e),
            None => Err(KongError::Task {
                url: "/audit".into(),
                detail: "the reader of Kong's trail stopped before the end of the trail".into(),
            }),
        }
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts reading every endpoint of `firsts` and returns the merged stream, a chunk at a time of at
/// most `chunk_size` entries. Pages are fetched one ahead of the consumer; dropping the stream stops
/// the reading.
pub fn spawn(source: Arc<dyn AuditSource>, firsts: Vec<PageRequest>, by_time: bool, chunk_size: usize, counters: Arc<Counters>) -> Chunks {
    let (tx, rx) = mpsc::channel(1);
    let mut tasks = Vec::new();
    let streams: Vec<Stream> = firsts
        .into_iter()
        .map(|first| {
            let (pages, reader) = spawn_page_reader(source.clone(), first.clone());
            tasks.push(reader);
            Stream {
                kind: first.kind,
                pages,
                buffer: VecDeque::new(),
                done: false,
                warned_skew: false,
            }
        })
        .collect();
    let mut merge = Merge {
        streams,
        by_time,
        chunk_size: chunk_size.max(1),
        turn: 0,
        counters,
        pending_error: None,
    };
    let merging = tokio::spawn(async move {
        loop {
            // The next chunk is built once the last one was taken: one chunk waits, never two.
            let Ok(slot) = tx.reserve().await else { return };
            match merge.next_chunk().await {
                Ok(Some(chunk)) => slot.send(Ok(Read::Chunk(chunk))),
                Ok(None) => {
                    slot.send(Ok(Read::End));
                    return;
                }
                Err(e) => {
                    slot.send(Err(e));
                    return;
                }
            }
        }
    });
    tasks.push(merging.abort_handle());
    Chunks { rx, tasks }
}

/// An endpoint's pages as they arrive, each with when it arrived.
type Pages = mpsc::Receiver<(Result<Page, KongError>, Instant)>;

struct Stream {
    kind: EntryKind,
    pages: Pages,
    buffer: VecDeque<ReadEntry>,
    /// The last page was taken.
    done: bool,
    warned_skew: bool,
}

impl Stream {
    /// Fills the buffer with the next non-empty page, unless the endpoint is exhausted.
    async fn fill(&mut self, counters: &Counters) -> Result<(), KongError> {
        while self.buffer.is_empty() && !self.done {
            match self.pages.recv().await {
                None => {
                    // The reader hands over the last page (no offset) before it ends: a channel that
                    // closes first is a reader that died.
                    self.done = true;
                    return Err(KongError::Task {
                        url: format!("/{}", self.kind.path()),
                        detail: "its page reader stopped before the last page".into(),
                    });
                }
                Some((Err(e), _)) => {
                    self.done = true;
                    return Err(e);
                }
                Some((Ok(page), read_at)) => {
                    Counters::add(&counters.pages, 1);
                    self.done = page.offset.is_none();
                    self.warn_on_skew(&page);
                    self.buffer
                        .extend(page.entries.into_iter().map(|entry| ReadEntry { entry, read_at }));
                }
            }
        }
        Ok(())
    }

    fn warn_on_skew(&mut self, page: &Page) {
        let now = chrono::Utc::now().timestamp();
        let ahead = page
            .entries
            .iter()
            .filter_map(Entry::request_timestamp)
            .max()
            .map_or(0, |t| t - now);
        if ahead > SKEW_WARNING_SECONDS && !self.warned_skew {
            self.warned_skew = true;
            tracing::warn!(
                kind = self.kind.as_str(),
                ahead_seconds = ahead,
                "Kong stamps rows ahead of this shipper's clock (a node's clock runs fast?): such rows are shipped, and read again by each run until this clock passes them"
            );
        }
    }

    /// The merge order of the next entry: its timestamp (entries without one go first).
    fn head(&self) -> Option<i64> {
        self.buffer.front().map(|e| e.entry.request_timestamp().unwrap_or(i64::MIN))
    }
}

struct Merge {
    streams: Vec<Stream>,
    by_time: bool,
    chunk_size: usize,
    /// Whose page is next, when taking turns.
    turn: usize,
    counters: Arc<Counters>,
    /// An error met after some entries were taken: reported with the next chunk.
    pending_error: Option<KongError>,
}

impl Merge {
    /// The next chunk; `Ok(None)` at the end of every endpoint. An error ends the stream: entries
    /// already taken from the buffers are returned first.
    async fn next_chunk(&mut self) -> Result<Option<Chunk>, KongError> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        let mut chunk = Chunk::default();
        let result = if self.by_time {
            self.merge_by_time(&mut chunk).await
        } else {
            self.take_turns(&mut chunk).await
        };
        chunk.complete = self
            .streams
            .iter()
            .filter(|s| s.done && s.buffer.is_empty())
            .map(|s| s.kind)
            .collect();
        match result {
            Err(e) if chunk.entries.is_empty() => Err(e),
            Err(e) => {
                // Hand out what was taken; the error comes with the next call.
                self.streams.iter_mut().for_each(|s| s.done = true);
                self.pending_error = Some(e);
                Ok(Some(chunk))
            }
            Ok(()) if chunk.entries.is_empty() => Ok(None),
            Ok(()) => Ok(Some(chunk)),
        }
    }

    /// Entry by entry, the oldest head of any endpoint next: every endpoint with entries left must
    /// show its next entry before one is chosen.
    async fn merge_by_time(&mut self, chunk: &mut Chunk) -> Result<(), KongError> {
        while chunk.entries.len() < self.chunk_size {
            for stream in &mut self.streams {
                stream.fill(&self.counters).await?;
            }
            let Some(oldest) = (0..self.streams.len())
                .filter(|i| !self.streams[*i].buffer.is_empty())
                .min_by_key(|i| self.streams[*i].head())
            else {
                return Ok(());
            };
            // Take a run of entries at once while this endpoint stays the oldest.
            let others = (0..self.streams.len())
                .filter(|i| *i != oldest)
                .filter_map(|i| self.streams[i].head())
                .min();
            let stream = &mut self.streams[oldest];
            while chunk.entries.len() < self.chunk_size && stream.head().is_some_and(|h| others.is_none_or(|o| h <= o)) {
                chunk.entries.push(stream.buffer.pop_front().expect("it has a head"));
            }
        }
        Ok(())
    }

    /// Page by page, the endpoints in turn.
    async fn take_turns(&mut self, chunk: &mut Chunk) -> Result<(), KongError> {
        for _ in 0..self.streams.len() {
            let at = self.turn % self.streams.len();
            let stream = &mut self.streams[at];
            self.turn += 1;
            stream.fill(&self.counters).await?;
            if !stream.buffer.is_empty() {
                chunk.entries.extend(stream.buffer.drain(..));
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Fetches pages ahead of the consumer, one at a time, until the last page, an error, or until the
/// consumer stops listening: the next page is fetched as soon as the last one was taken, so one page
/// is waiting or on its way, never more. An offset seen twice ends the read with an error instead of a
/// loop.
fn spawn_page_reader(source: Arc<dyn AuditSource>, first: PageRequest) -> (Pages, tokio::task::AbortHandle) {
    let (tx, rx) = mpsc::channel(1);
    let reader = tokio::spawn(async move {
        let mut request = first;
        let mut seen = HashSet::new();
        loop {
            let Ok(slot) = tx.reserve().await else { return };
            let result = source.page(&request).await;
            let next = result.as_ref().ok().and_then(|p| p.offset.clone());
            slot.send((result, Instant::now()));
            let Some(offset) = next else { return };
            if !seen.insert(offset.clone()) {
                let url = format!("/{}", request.kind.path());
                let looped = KongError::Rejected {
                    url,
                    status: 200,
                    message: "Kong returned an offset it had already returned; paging would loop".into(),
                };
                let _ = tx.send((Err(looped), Instant::now())).await;
                return;
            }
            request.offset = Some(offset);
        }
    });
    (rx, reader.abort_handle())
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

    /// Two pages of requests and one of objects; the second page of requests panics when `panic`.
    struct Trail {
        panic: bool,
    }

    #[async_trait]
    impl AuditSource for Trail {
        async fn info(&self) -> Result<KongInfo, KongError> {
            unreachable!()
        }

        async fn page(&self, r: &PageRequest) -> Result<Page, KongError> {
            let entry = |key: &str, ts: i64| {
                let text = format!(r#"{{"{}":"{key}","request_timestamp":{ts}}}"#, r.kind.key_field());
                Entry::parse(r.kind, &text).unwrap()
            };
            match (r.kind, r.offset.as_deref()) {
                (EntryKind::Request, None) => Ok(Page {
                    entries: vec![entry("r1", 10)],
                    offset: Some("2".into()),
                }),
                (EntryKind::Request, Some(_)) if self.panic => panic!("a reader dies"),
                (EntryKind::Request, Some(_)) => Ok(Page {
                    entries: vec![entry("r2", 30)],
                    offset: None,
                }),
                (EntryKind::Object | EntryKind::Konnect, _) => Ok(Page {
                    entries: vec![entry("o1", 20)],
                    offset: None,
                }),
            }
        }
    }

    async fn read_all(panic: bool) -> (Vec<String>, Result<(), KongError>) {
        let firsts = EntryKind::ALL
            .iter()
            .map(|kind| PageRequest {
                kind: *kind,
                size: 1,
                sort_by: "request_timestamp",
                sort_desc: false,
                after: None,
                before: None,
                offset: None,
            })
            .collect();
        let mut chunks = spawn(Arc::new(Trail { panic }), firsts, true, 10, Arc::new(Counters::default()));
        let mut keys = Vec::new();
        loop {
            match chunks.next().await {
                Ok(Some(chunk)) => keys.extend(chunk.entries.into_iter().map(|e| e.entry.key)),
                Ok(None) => return (keys, Ok(())),
                Err(e) => return (keys, Err(e)),
            }
        }
    }

    #[tokio::test]
    async fn both_endpoints_merge_oldest_first_and_end_explicitly() {
        let (keys, end) = read_all(false).await;
        assert_eq!(keys, ["r1", "o1", "r2"]);
        assert!(end.is_ok());
    }

    #[tokio::test]
    async fn a_reader_that_dies_is_an_error_never_the_end_of_the_trail() {
        let (keys, end) = read_all(true).await;
        assert!(!keys.contains(&"r2".to_string()));
        let e = end.expect_err("a dead reader is not the last page");
        assert!(matches!(e, KongError::Task { .. }), "{e}");
        assert!(e.to_string().contains("/audit/requests"), "{e}");
    }
}
