//! Claiming: one round trip takes a chunk's entries for this run, and each entry this run now owns
//! becomes an `Item` with its events. The store's key layout lives here, and only here.

use std::time::Instant;

use super::Run;
use super::read::{Chunk, ReadEntry};
use crate::dedup::{Claim, StoreError};
use crate::event::{AuditEvent, MapContext, event_time, map_entry_from, remaining_ttl, uid};
use crate::kong::{AuditSource, Entry, EntryKind};
use crate::reconcile::{Holding, entry_digest};
use crate::summary::Counters;

/// Every key the shipper writes: `<prefix><kind>:<key>` per entry, plus the watermarks, the sweep's
/// time and the parts already accepted of entries shipped in parts.
///
/// A source may keep its positions (watermarks, sweep, floor, the store's life) under a scope of
/// its own (`<prefix><scope>watermark:…`): Konnect's are per region. Kong's have none.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    /// The prefix of position keys: `prefix` and the source's scope.
    positions: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Keys {
        let prefix = prefix.into();
        Keys {
            positions: prefix.clone(),
            prefix,
        }
    }

    /// The keys of what `source` reads: its positions under its own scope.
    pub fn for_source(prefix: impl Into<String>, source: &dyn AuditSource) -> Keys {
        let mut keys = Keys::new(prefix);
        if let Some(konnect) = source.konnect() {
            keys.positions.push_str(&konnect.key_scope());
        }
        keys
    }

    /// An entry's key: requests by `request_id`, objects by their own `id`.
    pub fn entry(&self, kind: EntryKind, key: &str) -> String {
        format!("{}{}:{key}", self.prefix, kind.as_str())
    }

    /// Every entry of this endpoint stamped before the value is handled.
    pub fn watermark(&self, kind: EntryKind) -> String {
        format!("{}watermark:{}", self.positions, kind.as_str())
    }

    /// When the last complete read of the whole trail began (epoch seconds).
    pub fn sweep(&self) -> String {
        format!("{}watermark:sweep", self.positions)
    }

    /// The oldest entry time any run reads (set by `run --since` after the store was lost).
    pub fn floor(&self) -> String {
        format!("{}watermark:floor", self.positions)
    }

    /// When the sweep in progress began.
    pub fn sweeping_since(&self) -> String {
        format!("{}watermark:sweep:since", self.positions)
    }

    /// How far the sweep in progress has read an endpoint.
    pub fn sweep_position(&self, kind: EntryKind) -> String {
        format!("{}{}", self.sweep_position_prefix(), kind.as_str())
    }

    pub fn sweep_position_prefix(&self) -> String {
        format!("{}watermark:sweep:at:", self.positions)
    }

    /// The store's record of its own life (see `rebuild`).
    pub fn life(&self) -> String {
        format!("{}store:life", self.positions)
    }

    /// The parts accepted so far of an entry shipped in parts.
    pub fn parts(&self, kind: EntryKind, key: &str) -> String {
        format!("{}parts:{}:{key}", self.prefix, kind.as_str())
    }
}

/// One entry this run has claimed, on its way out.
#[derive(Debug)]
pub struct Item {
    pub entry: Entry,
    /// Its store key.
    pub key: String,
    /// When its page arrived: its `ttl` was true then.
    pub read_at: Instant,
    pub claimed_at: Instant,
    /// Kong's remaining `ttl` when read, in seconds.
    pub ttl: u64,
    /// When the entry was stamped (`Entry::timestamp`), for the watermark.
    pub timestamp: Option<i64>,
    /// `eventTime`, epoch seconds.
    pub event_time: i64,
    /// Every event of the entry (one, or its parts), with its size against the sink's limits.
    pub events: Vec<AuditEvent>,
    pub sizes: Vec<usize>,
    /// Per event: stored by the destination (in this run or, for parts, an earlier one).
    pub accepted: Vec<bool>,
    /// For an entry shipped in parts: the SHA-256 that identifies what its parts carry.
    pub parts_sha256: Option<String>,
    /// `(code, reason)` when the entry cannot be shipped at all.
    pub unshippable: Option<(String, String)>,
    /// Failed tries other than throttling.
    pub failures: u32,
    /// Since when the destination has only throttled it.
    pub throttled_since: Option<Instant>,
    /// Not to be put again before this.
    pub not_before: Option<Instant>,
    /// What went wrong last, for the log.
    pub problem: Option<String>,
    /// Counted as retried already.
    pub retried: bool,
    /// The destination already holds every event of the entry: it is marked, not sent.
    pub found: bool,
    /// Which parts are accepted was learnt from the destination, not the store's record.
    pub parts_known: bool,
}

impl Item {
    /// An entry the destination already holds whole: nothing to send, only a mark to write.
    fn found(entry: Entry, key: String, ctx: &MapContext, read_at: Instant, claimed_at: Instant) -> Item {
        let (event_time, _) = event_time(&entry, ctx);
        let (ttl, timestamp) = (remaining_ttl(&entry, ctx), entry.timestamp());
        let mut entry = entry;
        entry.fields = serde_json::Map::new();
        Item {
            entry,
            key,
            read_at,
            claimed_at,
            ttl,
            timestamp,
            event_time,
            events: Vec::new(),
            sizes: Vec::new(),
            accepted: Vec::new(),
            parts_sha256: None,
            unshippable: None,
            failures: 0,
            throttled_since: None,
            not_before: None,
            problem: None,
            retried: false,
            found: true,
            parts_known: true,
        }
    }

    /// Indexes of the events not stored yet.
    pub fn pending(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.events.len()).filter(|i| !self.accepted[*i])
    }

    pub fn pending_events(&self) -> usize {
        self.pending().count()
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending().map(|i| self.sizes[i]).sum()
    }

    pub fn all_accepted(&self) -> bool {
        self.accepted.iter().all(|a| *a)
    }

    pub fn any_accepted(&self) -> bool {
        self.accepted.iter().any(|a| *a)
    }
}

#[cfg(test)]
impl Item {
    /// An entry of one event per size given, read and claimed now, for the stages' unit tests.
    pub fn for_test(kind: EntryKind, key: &str, sizes: &[usize]) -> Item {
        let text = format!(r#"{{"{}":"{key}"}}"#, kind.key_field());
        Item {
            entry: Entry::parse(kind, &text).unwrap(),
            key: key.into(),
            read_at: Instant::now(),
            claimed_at: Instant::now(),
            ttl: 100,
            timestamp: None,
            event_time: 0,
            events: (0..sizes.len())
                .map(|i| AuditEvent {
                    id: format!("{key}-{i}"),
                    event_data: "{}".into(),
                })
                .collect(),
            sizes: sizes.to_vec(),
            accepted: vec![false; sizes.len()],
            parts_sha256: None,
            unshippable: None,
            failures: 0,
            throttled_since: None,
            not_before: None,
            problem: None,
            retried: false,
            found: false,
            parts_known: false,
        }
    }
}

/// The record of an entry's accepted parts: `<sha256>:<part>,<part>,…@<time>` (parts numbered from 1;
/// the time, epoch seconds, is when the last of them was accepted: `reconcile` does not call those
/// parts missing while the destination may still be ingesting them).
pub fn parts_record(sha256: &str, accepted: &[bool], at: i64) -> String {
    let parts: Vec<String> = (1..=accepted.len()).filter(|p| accepted[p - 1]).map(|p| p.to_string()).collect();
    format!("{sha256}:{}@{at}", parts.join(","))
}

/// When the parts a record lists were last accepted (records of older versions say nothing).
pub fn parts_record_time(record: &str) -> Option<i64> {
    record.rsplit_once('@').and_then(|(_, at)| at.parse().ok())
}

/// The accepted parts a record lists, for an entry of `count` parts whose parts carry `sha256`; a
/// record of other parts (another split, an older version) lists none.
pub fn accepted_parts(record: &str, sha256: &str, count: usize) -> Vec<bool> {
    let mut accepted = vec![false; count];
    let record = record.rsplit_once('@').map_or(record, |(parts, _)| parts);
    if let Some((sha, parts)) = record.split_once(':').filter(|(sha, _)| *sha == sha256) {
        debug_assert_eq!(sha, sha256);
        for part in parts.split(',').filter_map(|p| p.parse::<usize>().ok()) {
            if (1..=count).contains(&part) {
                accepted[part - 1] = true;
            }
        }
    }
    accepted
}

/// Claims a chunk's entries (those in the run's window) and returns the ones this run now owns.
/// Entries shipped earlier count as already shipped; entries another run holds count as held.
pub async fn claim_chunk(run: &Run, chunk: Chunk) -> Result<Vec<Item>, StoreError> {
    let c = &run.counters;
    let ctx = MapContext {
        recipient_account_id: run.recipient_account_id.clone(),
        record_ttl: run.record_ttl,
        now: chrono::Utc::now().timestamp() + run.clock_offset,
        signatures: run.signatures.clone(),
    };
    let entries: Vec<ReadEntry> = chunk
        .entries
        .into_iter()
        .filter(|e| run.opts.window.contains(event_time(&e.entry, &ctx).0))
        .filter(|e| !run.retention_floor || within_retention(&e.entry, &ctx))
        .filter(|e| {
            let only = run.known.as_ref().and_then(|k| k.only.as_ref());
            only.is_none_or(|only| only.contains(&entry_digest(e.entry.kind, &e.entry.key)))
        })
        .collect();
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    for e in &entries {
        // Konnect's progress is counted in windows walked whole (`Chunk::walked_to`), never by the
        // newest entry read: its pages come newest first.
        if let (Some(t), false) = (e.entry.request_timestamp(), e.entry.kind == EntryKind::Konnect) {
            run.note(e.entry.kind, |p| p.read(t));
        }
    }
    let keys: Vec<String> = entries.iter().map(|e| run.keys.entry(e.entry.kind, &e.entry.key)).collect();
    let claims = if run.opts.claim {
        Counters::add(&c.store_round_trips, 1);
        match run.store.claim(&keys, &run.token, run.opts.lease).await {
            Ok(claims) => claims,
            Err(e) => {
                Counters::add(&c.read, entries.len());
                Counters::add(&c.failed, entries.len());
                for e in &entries {
                    run.unhandled(e.entry.kind, e.entry.timestamp(), event_time(&e.entry, &ctx).0);
                }
                return Err(e);
            }
        }
    } else {
        vec![Claim::Ours; entries.len()]
    };
    let claimed_at = Instant::now();
    let mut items = Vec::new();
    let mut deferred = Vec::new();
    for ((read, key), claim) in entries.into_iter().zip(keys).zip(claims) {
        let entry = read.entry;
        let (time, _) = event_time(&entry, &ctx);
        match claim {
            Claim::AlreadyOurs => continue,
            Claim::Done => Counters::add(&c.already_shipped, 1),
            Claim::HeldByOther => {
                Counters::add(&c.held, 1);
                run.unhandled(entry.kind, entry.timestamp(), time);
            }
            Claim::Ours => {}
        }
        Counters::add(&c.read, 1);
        if claim != Claim::Ours {
            continue;
        }
        let holding = run
            .known
            .as_ref()
            .map(|k| (k.holdings.peek(entry.kind, &uid(&entry.key)), k.defer_unfound));
        match holding {
            Some((Holding::Whole, _)) => {
                items.push(Item::found(entry, key, &ctx, read.read_at, claimed_at));
                continue;
            }
            Some((Holding::Nothing, true)) => {
                // The destination may still be ingesting it from before the store was lost.
                run.unhandled(entry.kind, entry.timestamp(), time);
                deferred.push(key);
                continue;
            }
            _ => {}
        }
        let (mapped, unshippable) = match map_entry_from(&entry, &ctx, run.konnect_region.as_deref()) {
            Ok(m) => {
                crate::signature::note(c, &entry, &m.signature);
                (Some(m), None)
            }
            Err(e) => (None, Some(("Unmappable".to_string(), e.0))),
        };
        let (events, parts_sha256) = mapped.map_or((Vec::new(), None), |m| (m.events, m.parts_sha256));
        let sizes = events.iter().map(|e| run.sink.event_size(e)).collect();
        let (ttl, timestamp) = (remaining_ttl(&entry, &ctx), entry.timestamp());
        // What is left to do needs the entry's bytes (for a dead letter), not its parsed view.
        let mut entry = entry;
        entry.fields = serde_json::Map::new();
        let (accepted, parts_known) = match holding {
            // Parts the destination holds are not sent again, whatever the store recorded.
            Some((Holding::Parts { missing, .. }, _)) => ((1..=events.len() as u32).map(|part| !missing.contains(&part)).collect(), true),
            _ => (vec![false; events.len()], false),
        };
        items.push(Item {
            ttl,
            timestamp,
            event_time: time,
            accepted,
            events,
            sizes,
            parts_sha256,
            unshippable,
            key,
            entry,
            read_at: read.read_at,
            claimed_at,
            failures: 0,
            throttled_since: None,
            not_before: None,
            problem: None,
            retried: false,
            found: false,
            parts_known,
        });
    }
    if !deferred.is_empty() {
        Counters::add(&c.deferred, deferred.len());
        Counters::add(&c.store_round_trips, 1);
        let release = crate::dedup::Settlement {
            releases: deferred,
            ..Default::default()
        };
        // A release that fails leaves claims that lapse with the lease: the entries wait either way.
        let _ = run.store.settle(&release, &run.token).await;
    }
    if let Err(e) = recall_accepted_parts(run, &mut items).await {
        // Without the record, parts accepted earlier would ship twice: these entries wait for the
        // next run (their claims are released, or lapse with the lease if the store is gone).
        Counters::add(&c.failed, items.len());
        for item in &items {
            run.unhandled(item.entry.kind, item.timestamp, item.event_time);
        }
        let release = crate::dedup::Settlement {
            releases: items.iter().map(|i| i.key.clone()).collect(),
            ..Default::default()
        };
        let _ = run.store.settle(&release, &run.token).await;
        return Err(e);
    }
    Ok(items)
}

/// A Konnect entry stamped before now less Konnect's retention (`record_ttl`) is left alone: its mark
/// lived that long, so if it was shipped, nothing says so any more. Entries of other kinds, and
/// entries without a time, always pass.
fn within_retention(entry: &Entry, ctx: &MapContext) -> bool {
    entry.kind != EntryKind::Konnect || entry.timestamp().is_none_or(|ts| ts >= ctx.now - ctx.record_ttl)
}

/// Parts accepted by earlier runs are not sent again (one more round trip, only for chunks with
/// entries shipped in parts).
async fn recall_accepted_parts(run: &Run, items: &mut [Item]) -> Result<(), StoreError> {
    if !run.opts.claim {
        return Ok(());
    }
    let split: Vec<usize> = (0..items.len())
        .filter(|i| items[*i].parts_sha256.is_some() && !items[*i].parts_known)
        .collect();
    if split.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = split
        .iter()
        .map(|i| run.keys.parts(items[*i].entry.kind, &items[*i].entry.key))
        .collect();
    Counters::add(&run.counters.store_round_trips, 1);
    let records = run.store.get_many(&keys).await?;
    for (i, record) in split.into_iter().zip(records) {
        let item = &mut items[i];
        if let (Some(record), Some(sha)) = (record, &item.parts_sha256) {
            item.accepted = accepted_parts(&record, sha, item.events.len());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_say_kind_and_key_under_the_prefix() {
        let k = Keys::new("p:");
        assert_eq!(k.entry(EntryKind::Request, "r1"), "p:request:r1");
        assert_eq!(k.entry(EntryKind::Object, "o1"), "p:object:o1");
        assert_eq!(k.watermark(EntryKind::Object), "p:watermark:object");
        assert_eq!(k.sweep(), "p:watermark:sweep");
        assert_eq!(k.floor(), "p:watermark:floor");
        assert_eq!(k.sweep_position(EntryKind::Request), "p:watermark:sweep:at:request");
        assert_eq!(k.parts(EntryKind::Object, "o1"), "p:parts:object:o1");
        assert_eq!(k.life(), "p:store:life");
        assert_eq!(k.entry(EntryKind::Konnect, "sig"), "p:konnect:sig");
    }

    #[test]
    fn a_parts_record_round_trips_and_ignores_other_splits() {
        let record = parts_record("abc", &[true, false, true], 1_700_000_000);
        assert_eq!(record, "abc:1,3@1700000000");
        assert_eq!(parts_record_time(&record), Some(1_700_000_000));
        assert_eq!(accepted_parts(&record, "abc", 3), vec![true, false, true]);
        assert_eq!(
            accepted_parts("abc:1,3", "abc", 3),
            vec![true, false, true],
            "records of older versions"
        );
        assert_eq!(parts_record_time("abc:1,3"), None);
        assert_eq!(accepted_parts(&record, "other", 3), vec![false; 3], "another version's parts");
        assert_eq!(accepted_parts("abc:1,9,x,", "abc", 2), vec![true, false], "out of range ignored");
        assert_eq!(accepted_parts(&parts_record("abc", &[false, false], 1), "abc", 2), vec![false; 2]);
    }
}
