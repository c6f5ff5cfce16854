//! One cycle: read → claim → map → put → settle. Every entry point runs this and only this.
//!
//! Pages stream through: the next page is fetched while the current one is claimed and mapped,
//! and at most `put_concurrency` batches are in flight, so memory stays flat however long the trail.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::dead_letter::{DeadLetter, DeadLetterSink};
use crate::dedup::{Claim, DedupStore, Mark, Settlement, claim_token};
use crate::event::{AuditEvent, MapContext, event_time, map_entry, remaining_ttl};
use crate::kong::{AuditSource, Entry, EntryKind, KongError, KongInfo, Page, PageRequest};
use crate::pacer::Pacer;
use crate::retry::Backoff;
use crate::sink::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS, Refusal, Sink, SinkError, split_into_calls};
use crate::summary::{Counters, Summary};

/// Entries whose `eventTime` falls in `[since, until)`; open ends read everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Window {
    fn contains(&self, t: i64) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }
}

#[derive(Debug, Clone)]
pub struct ShipOptions {
    pub key_prefix: String,
    pub page_size: u32,
    /// How long a claim holds an entry; no put starts on a claim about to lapse.
    pub lease: Duration,
    pub put_concurrency: usize,
    pub backoff: Backoff,
    pub window: Window,
    /// `false` for a dry run: no claims, no marks.
    pub claim: bool,
    /// Stop reading and claiming at this instant (the Lambda deadline less a margin).
    pub stop_claiming_at: Option<Instant>,
    /// No retry wait may end after this instant; unshipped claims are then released.
    pub finish_by: Option<Instant>,
    /// Read only what is newer than the stored watermark (less `overlap`), and advance it.
    pub incremental: bool,
    /// How far before the watermark incremental reads start: rows are stamped by each node's
    /// clock and written after the response, so late rows land slightly in the past.
    pub overlap: Duration,
    /// Most PutAuditEvents calls per second.
    pub put_rate: f64,
}

impl Default for ShipOptions {
    fn default() -> Self {
        ShipOptions {
            key_prefix: crate::config::DEFAULT_KEY_PREFIX.into(),
            page_size: 1000,
            lease: Duration::from_secs(1800),
            put_concurrency: 4,
            backoff: Backoff::default(),
            window: Window::default(),
            claim: true,
            stop_claiming_at: None,
            finish_by: None,
            incremental: false,
            overlap: Duration::from_secs(300),
            put_rate: 95.0,
        }
    }
}

/// The store key of an entry: `<prefix><kind>:<key>`.
pub fn store_key(prefix: &str, kind: EntryKind, key: &str) -> String {
    format!("{prefix}{}:{key}", kind.as_str())
}

/// How long a batch keeps trying while CloudTrail only throttles it.
const THROTTLE_PATIENCE: Duration = Duration::from_secs(300);

/// How long a put started just before `finish_by` may still take.
const PUT_GRACE: Duration = Duration::from_secs(10);

/// The store key of an endpoint's watermark: every entry with `request_timestamp` below its value
/// has been shipped, was already shipped, or was dead-lettered.
pub fn watermark_key(prefix: &str, kind: EntryKind) -> String {
    format!("{prefix}watermark:{}", kind.as_str())
}

/// The clients one cycle works with; built once, used for many runs.
pub struct Shipper {
    pub source: Arc<dyn AuditSource>,
    pub store: Arc<dyn DedupStore>,
    pub sink: Arc<dyn Sink>,
    pub dead_letters: Arc<dyn DeadLetterSink>,
    /// The channel owner's account, `recipientAccountId` of every event.
    pub recipient_account_id: String,
}

/// One claimed entry on its way out.
struct Item {
    entry: Entry,
    store_key: String,
    events: Vec<AuditEvent>,
    ttl: u64,
    /// `(code, reason)` when the entry cannot be shipped at all.
    unshippable: Option<(String, String)>,
    claimed_at: Instant,
    /// `request_timestamp`, for the watermark.
    timestamp: Option<i64>,
    /// What the events add to a PutAuditEvents body.
    bytes: usize,
}

/// Items gathered for one PutAuditEvents call, with running totals so that adding is O(1).
#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    events: usize,
    bytes: usize,
}

impl Batch {
    /// Whether the item still fits in this call; an empty batch takes anything (oversize items
    /// are split into several calls when they are put).
    fn fits(&self, item: &Item) -> bool {
        self.items.is_empty() || (self.events + item.events.len() <= MAX_BATCH_EVENTS && self.bytes + item.bytes <= MAX_BATCH_BYTES)
    }

    fn push(&mut self, item: Item) {
        self.events += item.events.len();
        self.bytes += item.bytes;
        self.items.push(item);
    }

    fn take(&mut self) -> Vec<Item> {
        std::mem::take(self).items
    }
}

/// What all batches of a run share.
struct Run {
    store: Arc<dyn DedupStore>,
    sink: Arc<dyn Sink>,
    dead_letters: Arc<dyn DeadLetterSink>,
    counters: Arc<Counters>,
    token: String,
    opts: ShipOptions,
    /// The first error that stopped the run.
    fatal: Mutex<Option<String>>,
    /// Set when puts can no longer succeed or be recorded (sink refused the channel, store lost):
    /// batches not yet put are released instead. A failed Kong read does not set it: what was
    /// claimed before the failure is still shipped.
    puts_aborted: std::sync::atomic::AtomicBool,
    pacer: Pacer,
    progress: Mutex<HashMap<EntryKind, Progress>>,
}

/// How far an endpoint was read, and the oldest entry not yet handled: what the watermark may become.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    /// Read to the last page.
    complete: bool,
    /// Newest `request_timestamp` among entries whose page was claimed.
    newest_read: Option<i64>,
    /// Oldest `request_timestamp` of an entry read but not handled (failed, or held by another run).
    oldest_unhandled: Option<i64>,
}

impl Progress {
    /// Every entry older than this is handled. Pages come oldest first, so past the newest entry
    /// read only the same second may continue on an unread page.
    fn safe_watermark(&self) -> Option<i64> {
        match (self.newest_read, self.oldest_unhandled) {
            (Some(read), Some(unhandled)) => Some(read.min(unhandled)),
            (read, None) => read,
            (None, Some(unhandled)) => Some(unhandled),
        }
    }
}

impl Run {
    fn stop(&self, why: String) {
        let mut fatal = self.fatal.lock().unwrap();
        if fatal.is_none() {
            tracing::error!(error = %why, "stopping the run");
            *fatal = Some(why);
        }
    }

    fn stopped(&self) -> bool {
        self.fatal.lock().unwrap().is_some()
    }

    fn abort_puts(&self, why: String) {
        self.puts_aborted.store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop(why);
    }

    fn puts_aborted(&self) -> bool {
        self.puts_aborted.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn note(&self, kind: EntryKind, update: impl FnOnce(&mut Progress)) {
        update(self.progress.lock().unwrap().entry(kind).or_default());
    }

    fn unhandled(&self, kind: EntryKind, timestamp: Option<i64>) {
        if let Some(t) = timestamp {
            self.note(kind, |p| p.oldest_unhandled = Some(p.oldest_unhandled.map_or(t, |o| o.min(t))));
        }
    }
}

impl Shipper {
    /// Ships everything new in both endpoints. Never panics on bad input; the summary tells the truth.
    pub async fn run(&self, opts: &ShipOptions, counters: Arc<Counters>) -> Summary {
        let started = Instant::now();
        let run_id = format!("{:016x}", fastrand::u64(..));
        let run = Arc::new(Run {
            store: self.store.clone(),
            sink: self.sink.clone(),
            dead_letters: self.dead_letters.clone(),
            counters: counters.clone(),
            token: claim_token(&run_id),
            opts: opts.clone(),
            fatal: Mutex::new(None),
            puts_aborted: Default::default(),
            pacer: Pacer::new(opts.put_rate),
            progress: Mutex::new(HashMap::new()),
        });
        tracing::info!(
            run = %run_id,
            store = %self.store.describe(),
            sink = %self.sink.describe(),
            dead_letters = %self.dead_letters.describe(),
            "run started"
        );
        let mut stopped_early = false;
        match self.source.info().await {
            Err(e) => run.stop(e.to_string()),
            Ok(info) => {
                describe_capabilities(&info);
                let mut batches = JoinSet::new();
                let slots = Arc::new(Semaphore::new(opts.put_concurrency.max(1)));
                let incremental = opts.incremental && opts.claim && info.has_timestamp_filters();
                for kind in EntryKind::ALL {
                    if run.stopped() {
                        break;
                    }
                    let mut first = first_page(kind, &info, opts);
                    if incremental {
                        match self.store.get(&watermark_key(&opts.key_prefix, kind)).await {
                            Ok(mark) => {
                                let from = mark.and_then(|m| m.parse::<i64>().ok()).map(|w| w - opts.overlap.as_secs() as i64);
                                tracing::info!(kind = kind.as_str(), after = ?from, "incremental read");
                                first.after = from.max(first.after);
                            }
                            Err(e) => {
                                run.stop(format!("cannot read the watermark: {e}"));
                                break;
                            }
                        }
                    }
                    match self.read_kind(first, &run, &info, &mut batches, &slots).await {
                        Ok(done) => stopped_early |= !done,
                        Err(e) => run.stop(e),
                    }
                }
                while let Some(joined) = batches.join_next().await {
                    if let Err(e) = joined {
                        run.stop(format!("a batch task failed: {e}"));
                    }
                }
                if incremental {
                    self.advance_watermarks(&run).await;
                }
            }
        }
        let mut summary = counters.snapshot(started.elapsed().as_secs_f64());
        summary.stopped_early = stopped_early;
        summary.error = run.fatal.lock().unwrap().clone();
        summary
    }

    /// Reads one endpoint to its end (`Ok(true)`), or to the deadline (`Ok(false)`).
    async fn read_kind(
        &self,
        first: PageRequest,
        run: &Arc<Run>,
        info: &KongInfo,
        batches: &mut JoinSet<()>,
        slots: &Arc<Semaphore>,
    ) -> Result<bool, String> {
        let opts = &run.opts;
        let kind = first.kind;
        let mut pages = spawn_page_reader(self.source.clone(), first);
        let mut batch = Batch::default();
        let mut finished = true;
        loop {
            let next = match opts.stop_claiming_at {
                // A page may already be waiting: the deadline is checked before taking it.
                Some(at) if Instant::now() >= at => {
                    tracing::warn!(kind = kind.as_str(), "deadline near: no new pages are claimed in this run");
                    finished = false;
                    break;
                }
                Some(at) => match tokio::time::timeout_at(at.into(), pages.recv()).await {
                    Ok(next) => next,
                    Err(_) => {
                        tracing::warn!(kind = kind.as_str(), "deadline near: no new pages are claimed in this run");
                        finished = false;
                        break;
                    }
                },
                None => pages.recv().await,
            };
            let page = match next {
                None => break,
                Some(Ok(page)) => page,
                Some(Err(e)) => {
                    dispatch(batch.take(), run, batches, slots).await;
                    return Err(e.to_string());
                }
            };
            if run.stopped() {
                break;
            }
            let items = match self.claim_page(page, info, run).await {
                Ok(items) => items,
                Err(e) => {
                    // The store is failing: a put now could not be recorded and would only come back
                    // as a duplicate. What was claimed is released (or lapses with its lease).
                    run.abort_puts(e.clone());
                    dispatch(batch.take(), run, batches, slots).await;
                    return Err(e);
                }
            };
            for item in items {
                if !batch.fits(&item) {
                    dispatch(batch.take(), run, batches, slots).await;
                }
                batch.push(item);
            }
        }
        dispatch(batch.take(), run, batches, slots).await;
        let complete = finished && !run.stopped();
        run.note(kind, |p| p.complete = complete);
        Ok(finished)
    }

    /// Moves each endpoint's watermark to the oldest timestamp not yet handled. A run that stopped
    /// early moves it only as far as it got; one that read nothing leaves it alone.
    async fn advance_watermarks(&self, run: &Run) {
        let progress = run.progress.lock().unwrap().clone();
        for (kind, p) in progress {
            let Some(mark) = p.safe_watermark() else { continue };
            let key = watermark_key(&run.opts.key_prefix, kind);
            match self.store.put(&key, &mark.to_string(), None).await {
                Ok(()) => tracing::info!(kind = kind.as_str(), watermark = mark, complete = p.complete, "watermark saved"),
                Err(e) => {
                    tracing::warn!(kind = kind.as_str(), error = %e, "cannot save the watermark; the next run reads from the previous one")
                }
            }
        }
    }

    /// Claims one page in one round trip and maps the entries that are ours to ship.
    async fn claim_page(&self, page: Page, info: &KongInfo, run: &Run) -> Result<Vec<Item>, String> {
        let c = &run.counters;
        let ctx = MapContext {
            recipient_account_id: self.recipient_account_id.clone(),
            record_ttl: info.record_ttl,
            now: chrono::Utc::now().timestamp(),
        };
        Counters::add(&c.pages, 1);
        let entries: Vec<Entry> = page
            .entries
            .into_iter()
            .filter(|e| run.opts.window.contains(event_time(e, &ctx).0))
            .collect();
        Counters::add(&c.read, entries.len());
        if let Some(newest) = entries.iter().map(|e| event_time(e, &ctx).0).max() {
            c.newest_entry_time.fetch_max(newest, std::sync::atomic::Ordering::Relaxed);
        }
        let keys: Vec<String> = entries.iter().map(|e| store_key(&run.opts.key_prefix, e.kind, &e.key)).collect();
        let kind = page_kind(&entries);
        let claimed = if run.opts.claim {
            Counters::add(&c.store_round_trips, 1);
            match run.store.claim_detailed(&keys, &run.token, run.opts.lease).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    Counters::add(&c.failed, entries.len());
                    if let Some(kind) = kind {
                        entries.iter().for_each(|e| run.unhandled(kind, e.request_timestamp()));
                    }
                    return Err(format!("cannot claim entries: {e}"));
                }
            }
        } else {
            vec![Claim::Ours; entries.len()]
        };
        if let (Some(kind), Some(newest)) = (kind, entries.iter().filter_map(Entry::request_timestamp).max()) {
            run.note(kind, |p| p.newest_read = Some(p.newest_read.map_or(newest, |n| n.max(newest))));
        }
        let claimed_at = Instant::now();
        let mut items = Vec::new();
        for ((entry, store_key), claim) in entries.into_iter().zip(keys).zip(claimed) {
            if claim != Claim::Ours {
                Counters::add(&c.already_shipped, 1);
                if claim == Claim::HeldByOther {
                    run.unhandled(entry.kind, entry.request_timestamp());
                }
                continue;
            }
            let ttl = remaining_ttl(&entry, &ctx);
            let (events, unshippable) = match map_entry(&entry, &ctx) {
                Ok(events) => (events, None),
                Err(e) => (Vec::new(), Some(("Unmappable".to_string(), e.0))),
            };
            let timestamp = entry.request_timestamp();
            let bytes = events.iter().map(crate::sink::batch_wire_size).sum();
            items.push(Item {
                entry,
                store_key,
                events,
                ttl,
                unshippable,
                claimed_at,
                timestamp,
                bytes,
            });
        }
        Ok(items)
    }
}

fn page_kind(entries: &[Entry]) -> Option<EntryKind> {
    entries.first().map(|e| e.kind)
}

fn describe_capabilities(info: &KongInfo) {
    let version = info.version_text.as_deref().unwrap_or("unknown");
    if info.audit_log == Some(false) {
        tracing::warn!(version, "Kong reports audit_log = off: there will be nothing to read");
    }
    if info.has_timestamp_filters() {
        tracing::info!(
            version,
            record_ttl = info.record_ttl,
            "Kong has audit timestamp filters: reading oldest first"
        );
    } else {
        tracing::info!(
            version,
            record_ttl = info.record_ttl,
            "Kong has no audit timestamp filters: reading the whole trail; shipped entries are skipped"
        );
    }
}

/// The first page of an endpoint: oldest first where Kong can sort and filter by time; otherwise
/// in key order, which is stable under Kong's keyset paging.
fn first_page(kind: EntryKind, info: &KongInfo, opts: &ShipOptions) -> PageRequest {
    let by_time = info.has_timestamp_filters();
    PageRequest {
        kind,
        size: opts.page_size,
        sort_by: if by_time { "request_timestamp" } else { kind.key_field() },
        sort_desc: false,
        after: opts.window.since.filter(|_| by_time),
        before: opts.window.until.filter(|_| by_time),
        offset: None,
    }
}

/// Fetches pages ahead of the consumer, one at a time, until the last page, an error, or until the
/// consumer stops listening. An offset seen twice ends the read with an error instead of a loop.
fn spawn_page_reader(source: Arc<dyn AuditSource>, first: PageRequest) -> mpsc::Receiver<Result<Page, KongError>> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut request = first;
        let mut seen = HashSet::new();
        loop {
            let result = source.page(&request).await;
            let next = result.as_ref().ok().and_then(|p| p.offset.clone());
            if tx.send(result).await.is_err() {
                return;
            }
            let Some(offset) = next else { return };
            if !seen.insert(offset.clone()) {
                let url = format!("/{}", request.kind.path());
                let _ = tx
                    .send(Err(KongError::Rejected {
                        url,
                        status: 200,
                        message: "Kong returned an offset it had already returned; paging would loop".into(),
                    }))
                    .await;
                return;
            }
            request.offset = Some(offset);
        }
    });
    rx
}

async fn dispatch(items: Vec<Item>, run: &Arc<Run>, batches: &mut JoinSet<()>, slots: &Arc<Semaphore>) {
    if items.is_empty() {
        return;
    }
    let permit = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
    let run = run.clone();
    batches.spawn(async move {
        deliver(&run, items).await;
        drop(permit);
    });
}

/// Puts one batch, retrying transient failures, then records the outcome in one round trip.
async fn deliver(run: &Run, items: Vec<Item>) {
    let c = &run.counters;
    let owner: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .flat_map(|(i, it)| it.events.iter().map(move |e| (e.id.as_str(), i)))
        .collect();
    let mut outstanding: Vec<AuditEvent> = items
        .iter()
        .filter(|i| i.unshippable.is_none())
        .flat_map(|i| i.events.iter().cloned())
        .collect();
    let mut accepted = HashSet::new();
    let mut refused: HashMap<String, Refusal> = HashMap::new();
    let mut retried: HashSet<usize> = HashSet::new();
    let mut last_problem = String::new();
    let oldest_claim = items.iter().map(|i| i.claimed_at).min();
    // Failures other than throttling use up MAX_ATTEMPTS; throttling only slows the batch down, for
    // as long as THROTTLE_PATIENCE (and the run's deadline) allow.
    let (mut failures, mut throttled_rounds) = (0, 0);
    let patience_until = Instant::now() + THROTTLE_PATIENCE;
    while !outstanding.is_empty() && !run.puts_aborted() {
        // A put needs time to finish before its claims lapse: 60 s, or a quarter of a short lease.
        let margin = Duration::from_secs(60).min(run.opts.lease / 4);
        if oldest_claim.is_some_and(|at| at + run.opts.lease < Instant::now() + margin) {
            last_problem = "the claim lease is about to lapse".into();
            break;
        }
        if run.opts.finish_by.is_some_and(|by| Instant::now() >= by) {
            last_problem = "the run's deadline is near".into();
            break;
        }
        let mut again = Vec::new();
        let mut only_throttled = true;
        for call in split_into_calls(&outstanding) {
            Counters::add(&c.put_calls, 1);
            run.pacer.wait().await;
            // Past the deadline a put is abandoned: its claims are released below, and what
            // CloudTrail may have accepted meanwhile is the one duplicate no client can avoid.
            let put = match run.opts.finish_by {
                Some(by) => tokio::time::timeout_at((by + PUT_GRACE).into(), run.sink.put(call))
                    .await
                    .unwrap_or_else(|_| {
                        Err(SinkError::Transient(
                            "PutAuditEvents did not answer before the run's deadline".into(),
                        ))
                    }),
                None => run.sink.put(call).await,
            };
            match put {
                Ok(report) => {
                    if report.failed.iter().any(Refusal::is_transient) {
                        run.pacer.throttled();
                    } else {
                        run.pacer.succeeded();
                    }
                    let ok: HashSet<&str> = report.successful.iter().map(String::as_str).collect();
                    let failed: HashMap<&str, &Refusal> = report.failed.iter().map(|r| (r.id.as_str(), r)).collect();
                    for e in call {
                        if ok.contains(e.id.as_str()) {
                            accepted.insert(e.id.clone());
                        } else if let Some(r) = failed.get(e.id.as_str()).filter(|r| !r.is_transient()) {
                            refused.insert(e.id.clone(), (*r).clone());
                        } else {
                            let refusal = failed.get(e.id.as_str());
                            only_throttled &= refusal.is_some_and(|r| r.is_throttling());
                            last_problem = refusal.map_or("event missing from the response".into(), |r| r.code.clone());
                            again.push(e.clone());
                        }
                    }
                }
                Err(SinkError::Throttled(why)) => {
                    run.pacer.throttled();
                    last_problem = why;
                    again.extend_from_slice(call);
                }
                Err(SinkError::Transient(why)) => {
                    run.pacer.throttled();
                    only_throttled = false;
                    last_problem = why;
                    again.extend_from_slice(call);
                }
                Err(SinkError::Fatal(why)) => {
                    run.abort_puts(why);
                    break;
                }
            }
        }
        outstanding = again;
        if outstanding.is_empty() || run.puts_aborted() {
            break;
        }
        retried.extend(outstanding.iter().filter_map(|e| owner.get(e.id.as_str()).copied()));
        let wait = if only_throttled {
            throttled_rounds += 1;
            let wait = run.opts.backoff.delay(throttled_rounds.min(6));
            let until = Instant::now() + wait;
            (until < patience_until && run.opts.finish_by.is_none_or(|by| until < by)).then_some(wait)
        } else {
            failures += 1;
            run.opts.backoff.wait(failures, None, run.opts.finish_by)
        };
        match wait {
            Some(wait) => {
                let retry = failures + throttled_rounds;
                tracing::warn!(events = outstanding.len(), problem = %last_problem, retry, wait_ms = wait.as_millis() as u64, "retrying events");
                tokio::time::sleep(wait).await;
            }
            None => break,
        }
    }
    Counters::add(&c.retried, retried.len());
    if run.puts_aborted() && last_problem.is_empty() {
        last_problem = run.fatal.lock().unwrap().clone().unwrap_or_default();
    }

    let mut settlement = Settlement::default();
    let (mut shipped, mut failed) = (0, 0);
    let mut letters = Vec::new();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for item in &items {
        let refusal = item
            .events
            .iter()
            .find_map(|e| refused.get(&e.id))
            .map(|r| (r.code.clone(), r.message.clone()));
        if let Some((code, reason)) = item.unshippable.clone().or(refusal) {
            let entry = &item.entry;
            letters.push((
                DeadLetter {
                    kind: entry.kind,
                    key: entry.key.clone(),
                    code,
                    reason,
                    at: now.clone(),
                    entry: entry.raw.clone(),
                },
                item,
            ));
        } else if !item.events.is_empty() && item.events.iter().all(|e| accepted.contains(&e.id)) {
            shipped += 1;
            settlement.marks.push((item.store_key.clone(), Mark::Shipped, item.ttl));
        } else {
            failed += 1;
            run.unhandled(item.entry.kind, item.timestamp);
            settlement.releases.push(item.store_key.clone());
        }
    }
    let mut rejected = 0;
    if !letters.is_empty() {
        let only_letters: Vec<DeadLetter> = letters.iter().map(|(l, _)| l.clone()).collect();
        only_letters.iter().for_each(crate::dead_letter::log_letter);
        // A letter that cannot be stored is not marked: the entry stays unshipped and is read again.
        let stored = if run.opts.claim {
            run.dead_letters.send(&only_letters).await
        } else {
            Ok(())
        };
        for (letter, item) in letters {
            match &stored {
                Ok(()) => {
                    rejected += 1;
                    settlement
                        .marks
                        .push((item.store_key.clone(), Mark::Rejected(letter.code), item.ttl));
                }
                Err(e) => {
                    failed += 1;
                    last_problem = format!("cannot dead-letter: {e}");
                    run.unhandled(item.entry.kind, item.timestamp);
                    settlement.releases.push(item.store_key.clone());
                }
            }
        }
    }
    if failed > 0 {
        tracing::warn!(entries = failed, problem = %last_problem, "entries not shipped in this run; released for the next run");
    }
    Counters::add(&c.shipped, shipped);
    Counters::add(&c.rejected, rejected);
    Counters::add(&c.failed, failed);
    if run.opts.claim {
        settle(run, &settlement).await;
    }
}

/// Records a batch's outcome, retrying a few times: a shipped entry left unmarked would be shipped
/// again once its lease lapses.
async fn settle(run: &Run, settlement: &Settlement) {
    let mut tries = 0;
    loop {
        tries += 1;
        Counters::add(&run.counters.store_round_trips, 1);
        match run.store.settle(settlement, &run.token).await {
            Ok(()) => return,
            Err(e) => match run.opts.backoff.wait(tries, None, None).filter(|_| tries < 4) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => {
                    let shipped = settlement.marks.iter().filter(|m| m.1 == Mark::Shipped).count();
                    let why = format!(
                        "{shipped} entries were shipped but could not be recorded ({e}); they may be shipped again after their lease of {} s",
                        run.opts.lease.as_secs()
                    );
                    // Said even when another error stopped the run first: it explains later duplicates.
                    tracing::error!(entries = shipped, "{why}");
                    run.abort_puts(why);
                    return;
                }
            },
        }
    }
}
