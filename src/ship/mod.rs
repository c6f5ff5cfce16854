//! One cycle, built as stages; every entry point runs this and only this. An entry's path is the
//! path through this folder:
//!
//! - `read`: pages of both endpoints, merged into one stream, oldest first;
//! - `windows`: a source read in windows instead (Konnect's audit log), the oldest first;
//! - `claim`: one round trip claims a chunk of that stream for this run (the store's key layout);
//! - `deliver`: claimed entries are packed into calls, paced, put, and retried;
//! - `settle`: what each entry came to becomes commits, releases and dead letters;
//! - `watermark`: where the next run starts reading;
//! - `deadline`: how the run's time is shared out.
//!
//! The decisions of each stage are pure functions with unit tests beside them; this file only
//! drives: it reads while there is room and time, hands claimed entries to the delivery, and waits
//! for every call and settlement before it moves the watermarks. Memory stays flat however long the
//! trail: a page is prefetched per endpoint, and reading pauses while enough is queued to fill every
//! call slot.

mod claim;
mod deadline;
mod deliver;
mod read;
pub mod rebuild;
mod settle;
mod watermark;
pub mod windows;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use claim::{Item, Keys, accepted_parts, parts_record, parts_record_time};
pub use deadline::{RunLimits, Tail, run_limits};
pub use deliver::{Pacer, Signal, next_rate};
pub use read::{Chunk, Chunks, ReadEntry, Window, first_page, spawn as read_trail};
pub use rebuild::{Known, Life};
pub use settle::{MARK_GRACE_SECONDS, commit_ttl};
pub use watermark::{Position, Progress, Sweep, next_watermark, set_floor, sweep_due, sweep_interval};

use crate::dead_letter::DeadLetterSink;
use crate::dedup::{DedupStore, StoreClock, StoreError, Swap, claim_token};
use crate::kong::{AuditSource, EntryKind, KongError, KongInfo};
use crate::reconcile::{Inventory, InventoryError, Scope};
use crate::retry::Backoff;
use crate::signature::Verifier;
use crate::sink::Sink;
use crate::summary::{Counters, Summary};

#[derive(Debug, Clone)]
pub struct ShipOptions {
    pub key_prefix: String,
    pub page_size: u32,
    /// How long a claim holds an entry; no put starts on a claim about to lapse.
    pub lease: Duration,
    pub put_concurrency: usize,
    pub backoff: Backoff,
    pub window: Window,
    /// `false` for a dry run: no claims, no marks, no dead letters stored.
    pub claim: bool,
    /// The run's time: when it stops claiming, stops putting, and ends. `None`: no limit.
    pub limits: Option<RunLimits>,
    /// Read only what is newer than the stored watermark (less `overlap`), and advance it.
    pub incremental: bool,
    /// How far before the watermark incremental reads start: rows are stamped by each node's
    /// clock and written after the response, so late rows land slightly in the past.
    pub overlap: Duration,
    /// How often incremental runs read the whole trail (rows stamped further behind than `overlap`).
    pub sweep: Sweep,
    /// Most calls per second to the destination.
    pub put_rate: f64,
    /// Read nothing older than the store's floor (`run --since`); a backfill's own window does not.
    pub respect_floor: bool,
    /// A store with no record of its life is rebuilt from the destination before anything older
    /// than the overlap ships (see `rebuild`). Off for redrive, whose entries the destination refused.
    pub rebuild: bool,
    /// How long the destination may take to ingest what it accepted (`RECONCILE_SETTLE_SECONDS`).
    pub settle: Duration,
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
            limits: None,
            incremental: false,
            overlap: Duration::from_secs(300),
            sweep: Sweep::Default,
            put_rate: 95.0,
            respect_floor: true,
            rebuild: false,
            settle: Duration::from_secs(900),
        }
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error(transparent)]
    Kong(#[from] KongError),
    #[error("cannot claim entries: {0}")]
    Claim(StoreError),
    #[error("cannot read the watermark: {0}")]
    Watermark(StoreError),
    #[error("{0}")]
    Sink(String),
    #[error(
        "{shipped} entries were shipped but could not be recorded ({source}); they may be shipped again after their lease of {lease} s"
    )]
    Unrecorded { shipped: usize, lease: u64, source: StoreError },
    #[error("a task of the run failed: {0}")]
    Task(String),
    #[error("{0}")]
    Store(String),
}

/// The clients one cycle works with; built once, used for many runs.
pub struct Shipper {
    pub source: Arc<dyn AuditSource>,
    pub store: Arc<dyn DedupStore>,
    pub sink: Arc<dyn Sink>,
    pub dead_letters: Arc<dyn DeadLetterSink>,
    /// The channel owner's account, `recipientAccountId` of every event.
    pub recipient_account_id: String,
    /// Kong's signing keys, to record a verdict on every entry shipped.
    pub signatures: Arc<Verifier>,
    /// What the destination holds, when it can be asked (a dry run's cannot).
    pub inventory: Option<Arc<dyn Inventory>>,
}

/// What every stage of one run shares.
pub(crate) struct Run {
    store: Arc<dyn DedupStore>,
    sink: Arc<dyn Sink>,
    dead_letters: Arc<dyn DeadLetterSink>,
    counters: Arc<Counters>,
    token: String,
    opts: ShipOptions,
    keys: Keys,
    limits: Option<RunLimits>,
    recipient_account_id: String,
    signatures: Arc<Verifier>,
    record_ttl: i64,
    /// The source's clock less this machine's (`KongInfo::clock_offset`): an entry's time and its
    /// mark's lifetime are reckoned by the clock that stamped it.
    clock_offset: i64,
    /// Acceptances are stamped by the store's clock, which every run and reconcile shares.
    store_clock: StoreClock,
    pacer: Pacer,
    /// The first error that stopped the run.
    fatal: Mutex<Option<ShipError>>,
    /// Set when puts can no longer succeed or be recorded (the destination refused the
    /// configuration, the store is lost): entries not yet put are released instead. A failed Kong
    /// read does not set it: what was claimed before the failure is still shipped.
    puts_aborted: AtomicBool,
    /// A task died with entries in hand: their claims lapse with the lease, but the watermark must
    /// not pass them.
    lost_track: AtomicBool,
    progress: Mutex<HashMap<EntryKind, watermark::Progress>>,
    /// What the destination holds, when this run learnt it (rebuilding the store, or a repair).
    known: Option<Arc<Known>>,
    /// The kinds of entries the source serves.
    kinds: Vec<EntryKind>,
    /// The Konnect region of the source, recorded on Konnect events.
    konnect_region: Option<String>,
    /// The source is Konnect's audit log: nothing older than its retention is claimed.
    retention_floor: bool,
}

impl Run {
    fn stop(&self, why: ShipError) {
        // A task that died (a panic) may have taken entries with it: no watermark moves past them.
        if matches!(why, ShipError::Task(_) | ShipError::Kong(KongError::Task { .. })) {
            self.lost_track.store(true, Ordering::SeqCst);
        }
        let mut fatal = self.fatal.lock().unwrap();
        if fatal.is_none() {
            tracing::error!(error = %why, "stopping the run");
            *fatal = Some(why);
        }
    }

    fn stopped(&self) -> bool {
        self.fatal.lock().unwrap().is_some()
    }

    fn abort_puts(&self, why: ShipError) {
        self.puts_aborted.store(true, Ordering::SeqCst);
        self.stop(why);
    }

    fn puts_aborted(&self) -> bool {
        self.puts_aborted.load(Ordering::SeqCst)
    }

    fn tail(&self) -> Option<Tail> {
        self.limits.map(|l| l.tail())
    }

    fn note(&self, kind: EntryKind, update: impl FnOnce(&mut watermark::Progress)) {
        update(self.progress.lock().unwrap().entry(kind).or_default());
    }

    /// An entry read and left unshipped by this run: it holds the watermark back (by its time as
    /// stamped, `Entry::timestamp`), and counts in the lag (by its `eventTime`).
    fn unhandled(&self, kind: EntryKind, timestamp: Option<i64>, event_time: i64) {
        if let Some(t) = timestamp {
            self.note(kind, |p| p.unhandled(t));
        }
        self.counters.pending(event_time);
    }
}

impl Shipper {
    /// Ships everything new in both endpoints. Never panics on bad input; the summary tells the truth.
    pub async fn run(&self, opts: &ShipOptions, counters: Arc<Counters>) -> Summary {
        self.run_knowing(opts, counters, None).await
    }

    /// `run`, knowing already what the destination holds (`reconcile --repair`): entries it holds
    /// are marked instead of sent, parts it holds are not sent again, and `known.only` limits which
    /// entries are handled at all.
    pub async fn run_knowing(&self, opts: &ShipOptions, counters: Arc<Counters>, known: Option<Arc<Known>>) -> Summary {
        let started = Instant::now();
        let run_started = chrono::Utc::now().timestamp();
        let run_id = format!("{:016x}", fastrand::u64(..));
        tracing::info!(
            run = %run_id,
            store = %self.store.describe(),
            sink = %self.sink.describe(),
            dead_letters = %self.dead_letters.describe(),
            "run started"
        );
        let summary = |run: Option<&Run>, error: Option<String>, stopped_early: bool| {
            let mut s = counters.snapshot(started.elapsed().as_secs_f64());
            s.stopped_early = stopped_early;
            s.error = error.or_else(|| run.and_then(|r| r.fatal.lock().unwrap().as_ref().map(ToString::to_string)));
            s
        };
        let info = match info_within(self.source.as_ref(), opts.limits.map(|l| l.stop_claiming_at)).await {
            Ok(info) => info,
            Err(e) => {
                tracing::error!(error = %e, "stopping the run");
                return summary(None, Some(e.to_string()), false);
            }
        };
        let sweep_every = match watermark::sweep_interval(opts.sweep, info.record_ttl) {
            Ok(every) => every,
            Err(e) => {
                tracing::error!(error = %e, "stopping the run");
                return summary(None, Some(e), false);
            }
        };
        describe_capabilities(&info);
        let konnect = self.source.konnect();
        let kinds = self.source.kinds();
        let keys = Keys::for_source(opts.key_prefix.clone(), self.source.as_ref());
        let mut opts = opts.clone();
        if opts.respect_floor && opts.claim {
            match watermark::floor(self.store.as_ref(), &keys).await {
                Ok(Some(floor)) => {
                    tracing::info!(floor, "nothing stamped before the floor set by `run --since` is read");
                    opts.window.since = opts.window.since.max(Some(floor));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "stopping the run");
                    return summary(None, Some(ShipError::Watermark(e).to_string()), false);
                }
            }
        }
        let store_clock = if opts.claim {
            StoreClock::measure(self.store.as_ref()).await
        } else {
            StoreClock::default()
        };
        let life = match known {
            Some(known) => LifeCheck {
                known: Some(known),
                ..LifeCheck::default()
            },
            None if opts.rebuild && opts.claim => match self
                .check_life(&keys, info.record_ttl, &mut opts, run_started, store_clock.now())
                .await
            {
                Ok(check) => check,
                Err(e) => {
                    tracing::error!(error = %e, "stopping the run");
                    return summary(None, Some(e.to_string()), false);
                }
            },
            None => LifeCheck::default(),
        };
        let opts = &opts;
        let run = Arc::new(Run {
            store: self.store.clone(),
            sink: self.sink.clone(),
            dead_letters: self.dead_letters.clone(),
            counters: counters.clone(),
            token: claim_token(&run_id),
            keys,
            limits: opts.limits,
            recipient_account_id: self.recipient_account_id.clone(),
            signatures: self.signatures.clone(),
            record_ttl: info.record_ttl,
            clock_offset: info.clock_offset.unwrap_or(0),
            store_clock,
            pacer: Pacer::new(opts.put_rate),
            opts: opts.clone(),
            fatal: Mutex::new(None),
            puts_aborted: AtomicBool::new(false),
            lost_track: AtomicBool::new(false),
            progress: Mutex::new(HashMap::new()),
            known: life.known.clone(),
            kinds: kinds.clone(),
            konnect_region: self.source.konnect_region(),
            retention_floor: konnect.is_some(),
        });

        // Konnect's audit log is always read by time (in windows).
        let by_time = konnect.is_some() || info.has_timestamp_filters();
        let incremental = opts.incremental && opts.claim && by_time;
        let (stored, sweep) = if incremental {
            match watermark::load(self.store.as_ref(), &run.keys, &kinds).await {
                Ok(stored) => {
                    let due = sweep_every.is_some_and(|every| watermark::sweep_due(stored.last_sweep, run_started, every));
                    let sweep = stored.sweeping_since.is_some() || due;
                    (stored, sweep)
                }
                Err(e) => {
                    run.stop(ShipError::Watermark(e));
                    return summary(Some(&run), None, false);
                }
            }
        } else {
            (watermark::Stored::default(), false)
        };
        let starts: Vec<(EntryKind, Option<i64>)> = kinds
            .iter()
            .map(|kind| {
                let sweep_at = sweep.then(|| stored.sweep_at(*kind));
                let from = incremental
                    .then(|| watermark::read_from(stored.watermarks.get(kind).copied(), opts.overlap, sweep_at))
                    .flatten();
                (*kind, from)
            })
            .collect();
        if incremental && konnect.is_none() {
            let from = |k: EntryKind| starts.iter().find(|s| s.0 == k).and_then(|s| s.1);
            tracing::info!(
                requests_after = ?from(EntryKind::Request),
                objects_after = ?from(EntryKind::Object),
                sweep,
                "reading both endpoints oldest first{}",
                if sweep { ", sweeping the whole trail" } else { "" }
            );
        }
        let reading = Reading {
            window: &opts.window,
            starts: &starts,
            run_started,
            sweep,
            page_size: opts.page_size,
            deadline: opts.limits.map(|l| l.stop_claiming_at),
        };
        let chunks = read_window(self.source.clone(), &info, &reading, counters.clone());

        let stopped_early = self.drive(&run, chunks).await;

        let progress = run.progress.lock().unwrap().clone();
        for (kind, from) in &starts {
            // Entries not read before the budget ran out are pending too: from the newest claimed on.
            let p = progress.get(kind).copied().unwrap_or_default();
            let unread_from = p.newest_read.or(*from).or(stored.watermarks.get(kind).map(|w| w.at));
            if let (false, Some(t)) = (p.complete, unread_from) {
                counters.pending(t);
            }
        }
        if incremental {
            self.advance_watermarks(&run, &stored, &progress, sweep, run_started, info.kong_time(run_started))
                .await;
        }
        if let Some(before) = life.rebuilding {
            let read_all = kinds.iter().all(|k| progress.get(k).is_some_and(|p| p.complete));
            let whole_trail = opts.window.since.is_none() && opts.window.until.is_none();
            if read_all && whole_trail && !stopped_early && !run.stopped() {
                let after = rebuild::after_rebuild(before, counters.deferred.load(Ordering::Relaxed), store_clock.now());
                match rebuild::save(self.store.as_ref(), &run.keys, before, after).await {
                    Ok(_) if matches!(after, Life::Whole { .. }) => {
                        tracing::info!("the store is whole again: it holds a mark for everything the destination holds")
                    }
                    Ok(_) => tracing::warn!(
                        deferred = counters.deferred.load(Ordering::Relaxed),
                        settle_seconds = opts.settle.as_secs(),
                        "entries the destination does not show yet are left for a run RECONCILE_SETTLE_SECONDS after this one, which asks it again (it may still be ingesting what was shipped before the store was lost)"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot write the store's record of its life; the next run asks the destination again")
                    }
                }
            }
        }
        let mut s = summary(Some(&run), None, stopped_early);
        if s.error.is_none() {
            s.error = life.degraded;
        }
        s
    }

    /// The store's record of its own life, and what this run does about it: nothing (whole), adopt
    /// a store kept by an earlier version, rebuild from the destination, or, where the destination
    /// cannot be asked, read only the overlap and say so.
    /// `stamped`: the store's time now, which the record of the store's life is kept by.
    async fn check_life(
        &self,
        keys: &Keys,
        record_ttl: i64,
        opts: &mut ShipOptions,
        run_started: i64,
        stamped: i64,
    ) -> Result<LifeCheck, ShipError> {
        let store = self.store.as_ref();
        let life = rebuild::load(store, keys).await.map_err(ShipError::Watermark)?;
        if matches!(life, Life::Whole { .. }) {
            return Ok(LifeCheck::default());
        }
        let stored = watermark::load(store, keys, &self.source.kinds())
            .await
            .map_err(ShipError::Watermark)?;
        let survived = !stored.watermarks.is_empty() || stored.last_sweep.is_some() || stored.sweeping_since.is_some();
        if rebuild::plan(life, survived, false, stamped, 0) == rebuild::Plan::Adopt {
            tracing::info!(
                "the store keeps the watermarks of earlier runs but no record of its life (written by an earlier version): recorded as whole"
            );
            rebuild::save(store, keys, life, Life::Whole { since: stamped })
                .await
                .map_err(ShipError::Watermark)?;
            return Ok(LifeCheck::default());
        }
        let Some(inventory) = &self.inventory else {
            return Ok(degrade(opts, run_started, "this destination cannot be asked".into()));
        };
        let scope = Scope {
            since: opts.window.since.unwrap_or(run_started - record_ttl - 3_600),
            until: opts.window.until.unwrap_or(run_started + 86_400),
        };
        tracing::warn!(
            destination = %inventory.describe(),
            "the store has no record of its life (it was lost, or this is a first install): asking the destination what it holds, so that nothing it holds is shipped again"
        );
        let until = opts.limits.map(|l| l.stop_claiming_at);
        match inventory.holdings(scope, run_started, until).await {
            // Without credentials no put can be made either: the first put stops the run, naming
            // the fix, before anything is sent (and nothing is recorded about the store's life).
            Err(InventoryError::Unsigned(why)) => {
                tracing::debug!(why, "cannot ask the destination without credentials");
                Ok(LifeCheck::default())
            }
            Err(e) => Ok(degrade(opts, run_started, e.to_string())),
            Ok(answer) => {
                // Another run may have settled the question while this one asked.
                if matches!(rebuild::load(store, keys).await.map_err(ShipError::Watermark)?, Life::Whole { .. }) {
                    return Ok(LifeCheck::default());
                }
                let held = answer.holdings.entries();
                if held == 0 && life == Life::Unknown {
                    // Nothing of ours in the destination: nothing this store forgot can ship twice.
                    tracing::info!("the destination holds nothing of this trail yet (a first install): the store is whole");
                    rebuild::save(store, keys, life, Life::Whole { since: stamped })
                        .await
                        .map_err(ShipError::Watermark)?;
                    return Ok(LifeCheck::default());
                }
                // Recorded before anything else is written (marks, watermarks): a run that stops part
                // way leaves a store that says it is being rebuilt, never one that looks whole.
                let life = match life {
                    Life::Unknown => {
                        let begun = Life::Rebuilding { since: stamped };
                        rebuild::save(store, keys, life, begun).await.map_err(ShipError::Watermark)?;
                        rebuild::load(store, keys).await.map_err(ShipError::Watermark)?
                    }
                    other => other,
                };
                if matches!(life, Life::Whole { .. }) {
                    return Ok(LifeCheck::default());
                }
                let plan = rebuild::plan(life, false, held > 0, stamped, opts.settle.as_secs() as i64);
                let defer_unfound = plan == rebuild::Plan::Rebuild { defer: true };
                tracing::info!(
                    entries_held = held,
                    queries = answer.queries.len(),
                    bytes_scanned = answer.bytes_scanned,
                    defer_unfound,
                    "rebuilding the store from the destination: entries it holds are marked, not sent"
                );
                Ok(LifeCheck {
                    known: Some(Arc::new(Known {
                        holdings: Arc::new(answer.holdings),
                        defer_unfound,
                        only: None,
                    })),
                    rebuilding: Some(life),
                    degraded: None,
                })
            }
        }
    }

    /// Reads, claims and delivers until the trail ends, the run stops, or its time is up; returns
    /// whether it stopped claiming at its time budget.
    async fn drive(&self, run: &Arc<Run>, mut chunks: Chunks) -> bool {
        let mut delivery = deliver::Delivery::new(run.clone());
        let stop_claiming_at = run.limits.map(|l| l.stop_claiming_at);
        let (mut reading, mut stopped_early) = (true, false);
        loop {
            if reading && run.stopped() {
                reading = false;
            }
            if reading && stop_claiming_at.is_some_and(|at| Instant::now() >= at) {
                tracing::warn!("time budget: no more entries are claimed in this run; the next run continues");
                (reading, stopped_early) = (false, true);
            }
            delivery.dispatch(!reading);
            if !reading && delivery.idle() {
                break;
            }
            tokio::select! {
                chunk = chunks.next(), if reading && delivery.has_room() && !delivery.claiming() => match chunk {
                    Ok(None) => {
                        reading = false;
                        for kind in &run.kinds {
                            run.note(*kind, |p| p.complete = true);
                        }
                    }
                    Err(e) if e.is_out_of_time() => {
                        tracing::warn!(reason = %e, "time budget: no more entries are read in this run; the next run continues");
                        (reading, stopped_early) = (false, true);
                    }
                    Err(e) => {
                        run.stop(ShipError::Kong(e));
                        reading = false;
                    }
                    Ok(Some(chunk)) => {
                        for kind in &chunk.complete {
                            run.note(*kind, |p| p.complete = true);
                        }
                        if let Some(t) = chunk.walked_to {
                            run.note(EntryKind::Konnect, |p| p.read(t));
                        }
                        // Claimed (and mapped) beside the calls in flight, not in their way.
                        delivery.claim(chunk);
                    }
                },
                () = delivery.progress() => {}
                () = tokio::time::sleep_until(stop_claiming_at.unwrap_or_else(Instant::now).into()),
                    if reading && stop_claiming_at.is_some() => {}
            }
        }
        stopped_early
    }

    /// Moves each endpoint's watermark (see `watermark::next_watermark`) and the sweep's progress,
    /// within the run's deadline.
    async fn advance_watermarks(
        &self,
        run: &Run,
        stored: &watermark::Stored,
        progress: &HashMap<EntryKind, watermark::Progress>,
        sweep: bool,
        run_started: i64,
        read_at: i64,
    ) {
        if run.lost_track.load(Ordering::SeqCst) {
            tracing::warn!("watermarks left as they were: a task of this run failed with entries in hand");
            return;
        }
        let keys = &run.keys;
        // Each move applies only while the key holds what this run read at its start.
        let mut swaps: Vec<Swap> = Vec::new();
        let mut swept = sweep;
        for kind in run.kinds.iter().copied() {
            let p = progress.get(&kind).copied().unwrap_or_default();
            let current = stored.watermarks.get(&kind).copied();
            match watermark::next_watermark(current, &p, run_started, read_at) {
                Some(next) if Some(next) != current => swaps.push(Swap {
                    key: keys.watermark(kind),
                    expected: current.map(|c| c.render()),
                    new: Some((next.render(), None)),
                }),
                _ => {}
            }
            if sweep {
                let at = stored.sweep_at(kind);
                let reached = match at {
                    watermark::SweepAt::Reached(position) => Some(position.render()),
                    watermark::SweepAt::Beginning => None,
                };
                match watermark::next_sweep_position(at, &p, run_started, read_at) {
                    None => {
                        if let Some(position) = reached {
                            swaps.push(Swap::delete(keys.sweep_position(kind), position));
                        }
                    }
                    Some(next) => {
                        swept = false;
                        if let (watermark::SweepAt::Reached(position), true) = (next, next != at) {
                            swaps.push(Swap {
                                key: keys.sweep_position(kind),
                                expected: reached,
                                new: Some((position.render(), None)),
                            });
                        }
                    }
                }
            }
        }
        if sweep {
            let began = stored.sweeping_since.unwrap_or(run_started);
            if swept {
                swaps.push(Swap {
                    key: keys.sweep(),
                    expected: stored.last_sweep.map(|t| t.to_string()),
                    new: Some((began.to_string(), None)),
                });
                if let Some(since) = stored.sweeping_since {
                    swaps.push(Swap::delete(keys.sweeping_since(), since.to_string()));
                }
                tracing::info!("sweep complete: the whole trail was read");
            } else if stored.sweeping_since.is_none() && swaps.iter().any(|s| s.key.starts_with(&keys.sweep_position_prefix())) {
                // A sweep that got somewhere goes on in the next runs.
                swaps.push(Swap::create(keys.sweeping_since(), began.to_string(), None));
            }
        }
        let until = run.tail().map(|t| t.watermark_until);
        match watermark::save(self.store.as_ref(), &swaps, until).await {
            Ok(moved) if !moved.is_empty() => tracing::info!(
                keys = %moved.join(","),
                "another run moved these positions while this one ran: left as that run wrote them"
            ),
            Ok(_) => {}
            // Not fatal: the next run reads from the old watermark, and the store skips what shipped.
            Err(e) => tracing::warn!(error = %e, "cannot write the watermark; the next run reads a little more"),
        }
    }
}

/// What the source is (`AuditSource::info`), asked within `deadline`: a source answering 429 with a
/// long Retry-After must not hold a Lambda past it. The cycle and `reconcile` both ask through it.
pub async fn info_within(source: &dyn AuditSource, deadline: Option<Instant>) -> Result<KongInfo, KongError> {
    let asked = source.info();
    match deadline {
        Some(at) => tokio::time::timeout_at(at.into(), asked).await.unwrap_or_else(|_| {
            Err(KongError::Unavailable {
                url: "GET /".into(),
                attempts: 0,
                last: "no answer before the run's time ran out".into(),
            })
        }),
        None => asked.await,
    }
}

/// What a read of a source takes in.
pub struct Reading<'a> {
    pub window: &'a Window,
    /// Each kind of the source, and the entry time it is read from (`None`: the window's start,
    /// or for Konnect all it keeps).
    pub starts: &'a [(EntryKind, Option<i64>)],
    /// When the read began, by this machine's clock.
    pub run_started: i64,
    /// Whether this is the periodic read of the whole trail (said in the log).
    pub sweep: bool,
    pub page_size: u32,
    /// No page is asked for after this (Konnect's walks; Kong's reads end when the stream is dropped).
    pub deadline: Option<Instant>,
}

/// The entries of `source` in `reading.window`, oldest first: Kong's endpoints from their starts,
/// merged; Konnect's audit log in windows (never older than its retention, by Konnect's clock). The
/// cycle and `reconcile` both read through it.
pub fn read_window(source: Arc<dyn AuditSource>, info: &KongInfo, reading: &Reading, counters: Arc<Counters>) -> Chunks {
    match source.konnect() {
        Some(konnect) => {
            let from = reading.starts.first().and_then(|s| s.1);
            let span = windows::span(&konnect, info.kong_time(reading.run_started), from, reading.window);
            let plan = span.map_or_else(Vec::new, |(a, b)| windows::plan(a, b, windows::WINDOW_SECONDS));
            tracing::info!(
                source = %konnect.describe(),
                from = span.map(|s| s.0),
                to = span.map(|s| s.1),
                windows = plan.len(),
                sweep = reading.sweep,
                "reading Konnect's audit log in windows, oldest first{}",
                if reading.sweep { ", sweeping all it keeps" } else { "" }
            );
            let clock_offset = info.clock_offset.unwrap_or(0);
            windows::spawn(konnect, plan, reading.page_size, reading.deadline, clock_offset, counters)
        }
        None => {
            let firsts = reading
                .starts
                .iter()
                .map(|(kind, from)| read::first_page(*kind, info, reading.page_size, reading.window, *from))
                .collect();
            read::spawn(source, firsts, info.has_timestamp_filters(), reading.page_size as usize, counters)
        }
    }
}

/// A store with no record of its life and a destination that cannot be asked: this run reads only
/// the overlap (rows stamped so recently they cannot have been shipped long ago), moves no
/// watermark, and fails naming the fix.
fn degrade(opts: &mut ShipOptions, run_started: i64, why: String) -> LifeCheck {
    let overlap = opts.overlap.as_secs() as i64;
    opts.window.since = opts.window.since.max(Some(run_started - overlap));
    opts.incremental = false;
    let text = format!(
        "the store has no record of its life (it was lost, or this is a first install) and the destination could not be asked what it holds ({why}): only entries of the last OVERLAP_SECONDS ({overlap} s) were read, so that nothing is shipped twice; grant the role the destination's read permissions (see the Terraform module), or run `kong-audit-shipper reconcile --repair` (rebuilds the store from the destination) or `kong-audit-shipper run --since T` (ships nothing stamped before T)"
    );
    tracing::error!("{text}");
    LifeCheck {
        degraded: Some(text),
        ..LifeCheck::default()
    }
}

/// What a run learnt of the store's life before it began.
#[derive(Default)]
struct LifeCheck {
    known: Option<Arc<Known>>,
    /// The record as found, when this run rebuilds the store.
    rebuilding: Option<Life>,
    /// Why this run reads only the overlap.
    degraded: Option<String>,
}

fn describe_capabilities(info: &KongInfo) {
    // Sources that are not a Kong (redrive's dead letters) have no version to speak of.
    let Some(version) = info.version_text.as_deref() else { return };
    if info.audit_log == Some(false) {
        tracing::warn!(version, "Kong reports audit_log = off: there will be nothing to read");
    }
    if info.has_timestamp_filters() {
        tracing::info!(version, record_ttl = info.record_ttl, "Kong has audit timestamp filters");
    } else {
        tracing::info!(
            version,
            record_ttl = info.record_ttl,
            "Kong has no audit timestamp filters: reading the whole trail, endpoints in turn; shipped entries are skipped"
        );
    }
}
