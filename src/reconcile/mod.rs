//! `reconcile`: Kong's trail against what the destination holds, entry by entry. The destination is
//! the record; the store is its cache.
//!
//! 1. Ask the destination which of this shipper's events it holds for the window (`inventory`:
//!    CloudTrail Lake queries, CloudWatch Logs reads), padded so no entry is missed at its edges.
//! 2. Read Kong's trail in the window and judge each entry (`holdings::judge`): found, missing, with
//!    parts missing, pending (accepted less than the settle time ago: the destination may still be
//!    ingesting it; the store records when each was accepted), or dead-lettered.
//! 3. With `repair`: release the marks of what the destination lacks, then run the cycle over
//!    exactly those entries, knowing what the destination holds: missing entries and missing parts
//!    are sent, entries it holds but the store has no mark for are marked, nothing else is sent.

mod holdings;
mod inventory;
mod lake;
mod logs;
mod memory;
mod report;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use holdings::{HeldEvents, Holding, Holdings, Scope, Status, entry_digest, judge};
pub use inventory::{Answer, Inventory, InventoryError, PAD_SECONDS, QueryRecord};
pub use lake::{CallFail, LakeApi, LakeInventory, MAX_CONCURRENT_QUERIES, QueryState, ResultsPage, SdkLake, Store, Stores};
pub use logs::{FilterApi, FilterPage, LogsInventory, SdkFilter, parse_message};
pub use memory::MemoryInventory;
pub use report::{Counts, EntryRef, Repair, Report, Totals, Window};

use crate::dedup::{KeyState, StoreClock, Swap};
use crate::event::{MapContext, event_time, uid};
use crate::ship::{Keys, Known, Life, Reading, ShipOptions, Shipper, info_within, parts_record_time, read_window};
use crate::summary::Counters;

/// What to reconcile, and how.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Entries whose time is in `[since, until)`; `None`: all Kong holds.
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// How long the destination may take to ingest what it accepted.
    pub settle: Duration,
    /// Send what the destination lacks, and mark what the store lacks.
    pub repair: bool,
}

/// How often a long comparison says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Runs a reconciliation; never panics, and the report says what stopped it.
pub async fn reconcile(shipper: &Shipper, inventory: &dyn Inventory, ship: &ShipOptions, opts: &ReconcileOptions) -> Report {
    let started = Instant::now();
    // What the store says was accepted is judged by the store's clock (see `judge`), and the
    // destination is asked from the start of one of its whole seconds.
    let asked_at = StoreClock::measure(shipper.store.as_ref()).await.next_second().await;
    let now = chrono::Utc::now().timestamp();
    let mut report = Report {
        program: concat!("kong-audit-shipper ", env!("CARGO_PKG_VERSION")).into(),
        generated_at: inventory::rfc3339(now),
        status: "incomplete",
        window: Window {
            since: String::new(),
            until: String::new(),
        },
        destination: inventory.destination(),
        counts: Totals::default(),
        days: Default::default(),
        missing: Vec::new(),
        partial: Vec::new(),
        pending: Vec::new(),
        dead_lettered: Vec::new(),
        queries: Vec::new(),
        bytes_scanned: 0,
        repair: None,
        seconds: 0.0,
        error: None,
    };
    if let Err(e) = compare_and_repair(shipper, inventory, ship, opts, now, asked_at, &mut report).await {
        tracing::error!(error = %e, "reconcile stopped");
        report.error = Some(e);
    }
    report.destination = inventory.destination();
    report.seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    report.decide_status();
    report
}

/// What the comparison learnt of each entry it must act on.
struct Plan {
    /// `(kind, key)` digests of the entries the repair handles.
    only: HashSet<u128>,
    /// Marks of entries the destination lacks, to release first.
    releases: Vec<Swap>,
    to_ship: u64,
    marks_to_restore: u64,
}

async fn compare_and_repair(
    shipper: &Shipper,
    inventory: &dyn Inventory,
    ship: &ShipOptions,
    opts: &ReconcileOptions,
    now: i64,
    asked_at: i64,
    report: &mut Report,
) -> Result<(), String> {
    let deadline = ship.limits.map(|l| l.stop_claiming_at);
    let info = info_within(shipper.source.as_ref(), deadline).await.map_err(|e| e.to_string())?;
    let mut scope = Scope {
        since: opts.since.unwrap_or(now - info.record_ttl - 3_600),
        until: opts.until.unwrap_or(now + 86_400),
    };
    if let Some(konnect) = shipper.source.konnect() {
        // Konnect's trail is what it keeps (by its clock): nothing older is read, so nothing older
        // is compared.
        let floor = konnect.floor(info.kong_time(now));
        if opts.since.is_some_and(|since| since < floor) {
            tracing::warn!(
                floor = %inventory::rfc3339(floor),
                "Konnect keeps its audit log KONNECT_RETENTION_SECONDS: the window starts at the retention floor"
            );
        }
        scope.since = scope.since.max(floor);
    }
    report.window = Window {
        since: inventory::rfc3339(scope.since),
        until: inventory::rfc3339(scope.until),
    };
    tracing::info!(
        destination = %inventory.describe(),
        since = %report.window.since,
        until = %report.window.until,
        "asking the destination what it holds"
    );
    let answer = inventory.holdings(scope, now, deadline).await.map_err(|e| e.to_string())?;
    report.queries = answer.queries;
    report.bytes_scanned = answer.bytes_scanned;
    let mut holdings = answer.holdings;
    report.counts.destination_events = holdings.events;
    report.counts.unreadable = holdings.unreadable;

    let keys = Keys::for_source(ship.key_prefix.clone(), shipper.source.as_ref());
    let plan = compare(
        shipper,
        &info,
        &mut holdings,
        &keys,
        scope,
        ship.page_size,
        opts,
        now,
        asked_at,
        deadline,
        report,
    )
    .await;
    report.counts.extra = holdings.unmatched();
    report.counts.duplicates = holdings.duplicates();
    let plan = plan?;
    tracing::info!(
        kong = report.counts.entries.kong,
        found = report.counts.entries.found,
        missing = report.counts.entries.missing,
        partial = report.counts.entries.partial,
        pending = report.counts.entries.pending,
        "Kong's trail compared with the destination"
    );
    if !opts.repair {
        return Ok(());
    }
    repair(shipper, holdings, ship, opts, scope, plan, &keys, asked_at, report).await
}

/// Reads Kong's trail in the scope and judges every entry against the holdings. `now` is this
/// machine's time; `asked_at`, the store's whole second from which the destination was asked, which
/// the store's marks are judged by.
#[allow(clippy::too_many_arguments)]
async fn compare(
    shipper: &Shipper,
    info: &crate::kong::KongInfo,
    holdings: &mut Holdings,
    keys: &Keys,
    scope: Scope,
    page_size: u32,
    opts: &ReconcileOptions,
    now: i64,
    asked_at: i64,
    deadline: Option<Instant>,
    report: &mut Report,
) -> Result<Plan, String> {
    let window = crate::ship::Window {
        since: Some(scope.since),
        until: Some(scope.until),
    };
    let counters = Arc::new(Counters::default());
    let starts: Vec<(crate::kong::EntryKind, Option<i64>)> = shipper.source.kinds().into_iter().map(|kind| (kind, None)).collect();
    let reading = Reading {
        window: &window,
        starts: &starts,
        run_started: chrono::Utc::now().timestamp(),
        sweep: false,
        page_size,
        deadline,
    };
    let mut chunks = read_window(shipper.source.clone(), info, &reading, counters);
    let ctx = MapContext {
        recipient_account_id: String::new(),
        record_ttl: info.record_ttl,
        now,
        signatures: Arc::new(crate::signature::Verifier::default()),
    };
    let settle = opts.settle.as_secs() as i64;
    let mut plan = Plan {
        only: HashSet::new(),
        releases: Vec::new(),
        to_ship: 0,
        marks_to_restore: 0,
    };
    let mut last_progress = Instant::now();
    loop {
        let chunk = match chunks.next().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return Err(e.to_string()),
        };
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err("out of time before the trail was read to its end".into());
        }
        // (kind, key, day, what the destination holds)
        let mut batch = Vec::with_capacity(chunk.entries.len());
        for read in chunk.entries {
            let entry = read.entry;
            let (time, _) = event_time(&entry, &ctx);
            if !scope.contains(time) {
                continue;
            }
            // An entry read twice is judged once.
            let Some(holding) = holdings.find_first(entry.kind, &uid(&entry.key)) else {
                continue;
            };
            batch.push((entry.kind, entry.key, day(time), holding));
        }
        // The store says whether what the destination lacks may still be on its way; a repair also
        // needs to know which entries it holds have no mark.
        let asked: Vec<usize> = (0..batch.len()).filter(|i| opts.repair || batch[*i].3 != Holding::Whole).collect();
        let mut names = Vec::with_capacity(asked.len() * 2);
        for i in &asked {
            let (kind, key, ..) = &batch[*i];
            names.push(keys.entry(*kind, key));
            names.push(keys.parts(*kind, key));
        }
        let values = shipper.store.get_many(&names).await.map_err(|e| e.to_string())?;
        let mut stored: Vec<(Option<String>, Option<String>)> = vec![(None, None); batch.len()];
        for (n, i) in asked.iter().enumerate() {
            stored[*i] = (values[2 * n].clone(), values[2 * n + 1].clone());
        }
        for ((kind, key, day, holding), (mark, parts)) in batch.into_iter().zip(stored) {
            let state = mark.as_deref().map(KeyState::parse);
            let parts_time = parts.as_deref().and_then(parts_record_time);
            let status = judge(holding, state.as_ref(), parts_time, asked_at, settle);
            let counts = report.days.entry(day).or_default();
            counts.kong += 1;
            report.counts.entries.kong += 1;
            let lacking = |plan: &mut Plan| {
                plan.only.insert(entry_digest(kind, &key));
                plan.to_ship += 1;
                if let (Some(value), Some(state)) = (&mark, &state)
                    && state.is_shipped()
                {
                    plan.releases.push(Swap::delete(keys.entry(kind, &key), value.clone()));
                }
            };
            match status {
                Status::Found => {
                    counts.found += 1;
                    report.counts.entries.found += 1;
                    if opts.repair && mark.is_none() {
                        plan.only.insert(entry_digest(kind, &key));
                        plan.marks_to_restore += 1;
                    }
                }
                Status::Missing => {
                    counts.missing += 1;
                    report.counts.entries.missing += 1;
                    lacking(&mut plan);
                    report.missing.push(EntryRef::new(kind, &key));
                }
                Status::Partial { missing_parts } => {
                    counts.partial += 1;
                    report.counts.entries.partial += 1;
                    lacking(&mut plan);
                    report.partial.push(EntryRef {
                        missing_parts: Some(missing_parts),
                        ..EntryRef::new(kind, &key)
                    });
                }
                Status::Pending => {
                    counts.pending += 1;
                    report.counts.entries.pending += 1;
                    report.pending.push(EntryRef::new(kind, &key));
                }
                Status::DeadLettered(code) => {
                    counts.dead_lettered += 1;
                    report.counts.entries.dead_lettered += 1;
                    report.dead_lettered.push(EntryRef {
                        code: Some(code),
                        ..EntryRef::new(kind, &key)
                    });
                }
            }
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            tracing::info!(read = report.counts.entries.kong, "reconcile: comparing Kong's trail");
        }
    }
    Ok(plan)
}

/// Releases the marks of what the destination lacks, and sends exactly that through the cycle.
#[allow(clippy::too_many_arguments)]
async fn repair(
    shipper: &Shipper,
    holdings: Holdings,
    ship: &ShipOptions,
    opts: &ReconcileOptions,
    scope: Scope,
    plan: Plan,
    keys: &Keys,
    asked_at: i64,
    report: &mut Report,
) -> Result<(), String> {
    let store = shipper.store.as_ref();
    let life = crate::ship::rebuild::load(store, keys).await.map_err(|e| e.to_string())?;
    let released = store.swap(&plan.releases).await.map_err(|e| e.to_string())?;
    let marks_released = released.iter().filter(|r| **r).count() as u64;
    let mut run_opts = ship.clone();
    run_opts.window = crate::ship::Window {
        since: Some(scope.since),
        until: Some(scope.until),
    };
    run_opts.incremental = false;
    run_opts.rebuild = false;
    run_opts.respect_floor = false;
    run_opts.claim = true;
    let to_ship = plan.to_ship;
    let marks_to_restore = plan.marks_to_restore;
    let known = Known {
        holdings: Arc::new(holdings),
        defer_unfound: false,
        only: Some(plan.only),
    };
    tracing::info!(
        to_ship,
        marks_to_restore,
        marks_released,
        "repairing: sending what the destination lacks, marking what the store lacks"
    );
    let counters = Arc::new(Counters::default());
    let summary = if to_ship + marks_to_restore == 0 {
        counters.snapshot(0.0)
    } else {
        shipper.run_knowing(&run_opts, counters, Some(Arc::new(known))).await
    };
    crate::runner::report(&summary, run_opts.lease.as_secs());
    report.repair = Some(Repair {
        to_ship,
        marks_restored: summary.rebuilt,
        marks_released,
        run: summary.clone(),
    });
    // A repair of all Kong holds leaves a store with a mark for everything the destination holds.
    let whole_window = opts.since.is_none() && opts.until.is_none();
    if whole_window && summary.complete() && !matches!(life, Life::Whole { .. }) {
        crate::ship::rebuild::save(store, keys, life, Life::Whole { since: asked_at })
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!("the store is whole: it holds a mark for everything the destination holds");
    }
    Ok(())
}

/// The UTC day of a time, `YYYY-MM-DD`.
fn day(t: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}
