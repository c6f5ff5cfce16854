//! A randomized simulation: many schedules of runs over in-memory fakes of Kong, the destination
//! and the store, with random faults — Kong pages failing, events throttled, calls failing whole,
//! answers lost after acceptance, the store going away for a while, rows stamped an hour ahead or
//! behind, time budgets, two runs at once, entries too large for one event, entries refused for good.
//!
//! After each schedule the faults stop and runs go on (each reading the whole trail) until one
//! completes. Then every entry Kong still holds must be in the destination or dead-lettered, and the
//! only duplicates allowed are those no client can avoid: events of a call whose answer was lost, and
//! entries whose "shipped" mark the store lost.
//!
//! Seeded: `SIMULATION_SEED=N` replays one schedule; `SIMULATION_SCHEDULES=N` runs more (200 by
//! default).
//!
//! Also here, with the same fakes: the claim lease is checked before every call, and a commit never
//! overwrites a claim another run took over.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kong_audit_shipper::dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink};
use kong_audit_shipper::dedup::{Claim, Commit, DedupStore, MemoryStore, Settlement, StoreError, Swap};
use kong_audit_shipper::event::AuditEvent;
use kong_audit_shipper::kong::{AuditSource, Entry, EntryKind, KongError, KongInfo, KongVersion, Page, PageRequest};
use kong_audit_shipper::reconcile::{Answer, Holdings, Inventory, InventoryError, Scope, parse_message};
use kong_audit_shipper::retry::Backoff;
use kong_audit_shipper::ship::{Position, RunLimits, ShipOptions, Shipper, Sweep};
use kong_audit_shipper::sink::{CallLimits, PutReport, Refusal, Sink, SinkError};
use kong_audit_shipper::summary::{Counters, Summary};

// ---------------------------------------------------------------- Kong

struct Row {
    kind: EntryKind,
    key: String,
    ts: i64,
    expires_at: i64,
    /// The members of the row's JSON object, without `ttl` (added when served, as Kong does).
    members: String,
}

#[derive(Default)]
struct SimKong {
    rows: Mutex<Vec<Row>>,
    /// Share of page requests that fail (after the client's own retries).
    page_errors: Mutex<(f64, Option<fastrand::Rng>)>,
}

impl SimKong {
    fn add(&self, row: Row) {
        self.rows.lock().unwrap().push(row);
    }

    fn fail_pages(&self, share: f64, seed: u64) {
        *self.page_errors.lock().unwrap() = (share, Some(fastrand::Rng::with_seed(seed)));
    }

    /// Rows Kong will still hold for a while, with the event ids each must be found under.
    fn held(&self, margin: i64) -> Vec<(String, String)> {
        let now = chrono::Utc::now().timestamp();
        let rows = self.rows.lock().unwrap();
        rows.iter()
            .filter(|r| r.expires_at > now + margin)
            .map(|r| (id_prefix(r.kind, &r.key), r.key.clone()))
            .collect()
    }
}

fn id_prefix(kind: EntryKind, key: &str) -> String {
    match kind {
        EntryKind::Request => format!("req-{key}"),
        EntryKind::Object => format!("obj-{key}"),
        EntryKind::Konnect => unreachable!("a simulated Kong serves Kong's two kinds"),
    }
}

#[async_trait]
impl AuditSource for SimKong {
    async fn info(&self) -> Result<KongInfo, KongError> {
        Ok(KongInfo {
            version_text: Some("3.8.1.0".into()),
            version: KongVersion::parse("3.8.1.0"),
            record_ttl: 2_592_000,
            audit_log: Some(true),
            clock_offset: None,
        })
    }

    async fn page(&self, request: &PageRequest) -> Result<Page, KongError> {
        let url = format!("/{}", request.kind.path());
        {
            let mut faults = self.page_errors.lock().unwrap();
            let share = faults.0;
            if faults.1.as_mut().is_some_and(|rng| rng.f64() < share) {
                return Err(KongError::Unavailable {
                    url,
                    attempts: 3,
                    last: "injected".into(),
                });
            }
        }
        let now = chrono::Utc::now().timestamp();
        let rows = self.rows.lock().unwrap();
        let mut matching: Vec<&Row> = rows
            .iter()
            .filter(|r| r.kind == request.kind && r.expires_at > now)
            .filter(|r| request.after.is_none_or(|a| r.ts >= a) && request.before.is_none_or(|b| r.ts < b))
            .collect();
        matching.sort_by(|a, b| (a.ts, &a.key).cmp(&(b.ts, &b.key)));
        let start = match &request.offset {
            None => 0,
            Some(o) => {
                let (ts, key) = o.split_once('/').expect("our own offset");
                let cursor = (ts.parse::<i64>().unwrap(), key.to_string());
                matching.partition_point(|r| (r.ts, r.key.clone()) <= cursor)
            }
        };
        let size = request.size as usize;
        let page: Vec<&Row> = matching.iter().skip(start).take(size).copied().collect();
        let more = start + page.len() < matching.len();
        let entries = page
            .iter()
            .map(|r| Entry::parse(r.kind, &format!("{{{},\"ttl\":{}}}", r.members, r.expires_at - now)).unwrap())
            .collect();
        Ok(Page {
            entries,
            offset: more.then(|| page.last().map(|r| format!("{}/{}", r.ts, r.key))).flatten(),
        })
    }
}

// ---------------------------------------------------------------- the destination

#[derive(Default, Clone, Copy)]
struct SinkFaults {
    throttled_events: f64,
    failed_calls: f64,
    throttled_calls: f64,
    lost_answers: f64,
}

struct SimSink {
    accepted: Mutex<HashMap<String, usize>>,
    /// The eventData of each id accepted (its first copy): what the destination can be asked about.
    held: Mutex<HashMap<String, String>>,
    /// Ids of calls accepted whose answer was lost.
    lost: Mutex<HashSet<String>>,
    faults: Mutex<(SinkFaults, fastrand::Rng)>,
    /// Entries (id prefixes) this destination refuses for good.
    refused: HashSet<String>,
    limits: CallLimits,
}

impl SimSink {
    fn new(refused: HashSet<String>, limits: CallLimits) -> SimSink {
        SimSink {
            accepted: Mutex::default(),
            held: Mutex::default(),
            lost: Mutex::default(),
            faults: Mutex::new((SinkFaults::default(), fastrand::Rng::with_seed(0))),
            refused,
            limits,
        }
    }

    fn set_faults(&self, faults: SinkFaults, seed: u64) {
        *self.faults.lock().unwrap() = (faults, fastrand::Rng::with_seed(seed));
    }
}

fn entry_of(id: &str) -> &str {
    id.rsplit_once("-p")
        .filter(|(_, n)| n.parse::<u32>().is_ok())
        .map_or(id, |(e, _)| e)
}

#[async_trait]
impl Sink for SimSink {
    async fn put(&self, events: &[AuditEvent]) -> Result<PutReport, SinkError> {
        assert!(events.len() <= self.limits.max_events, "the cycle packs calls to the limits");
        let mut f = self.faults.lock().unwrap();
        let (faults, rng) = &mut *f;
        if rng.f64() < faults.failed_calls {
            return Err(SinkError::Transient("HTTP 500 (injected)".into()));
        }
        if rng.f64() < faults.throttled_calls {
            return Err(SinkError::Throttled("HTTP 429 (injected)".into()));
        }
        let mut report = PutReport::default();
        for e in events {
            if self.refused.contains(entry_of(&e.id)) {
                report
                    .failed
                    .push(Refusal::from_cloudtrail(e.id.clone(), "InvalidData", "injected"));
            } else if rng.f64() < faults.throttled_events {
                report.failed.push(Refusal::from_cloudtrail(e.id.clone(), "Throttling", "injected"));
            } else {
                *self.accepted.lock().unwrap().entry(e.id.clone()).or_default() += 1;
                self.held
                    .lock()
                    .unwrap()
                    .entry(e.id.clone())
                    .or_insert_with(|| e.event_data.clone());
                report.successful.push(e.id.clone());
            }
        }
        if rng.f64() < faults.lost_answers {
            self.lost.lock().unwrap().extend(report.successful.iter().cloned());
            return Err(SinkError::Transient("the answer was lost (injected)".into()));
        }
        Ok(report)
    }

    fn describe(&self) -> String {
        "simulated destination".into()
    }

    fn limits(&self) -> CallLimits {
        self.limits
    }
}

/// The destination answers what it holds, exactly and at once (no ingestion delay).
#[async_trait]
impl Inventory for SimSink {
    async fn holdings(&self, scope: Scope, _now: i64, _until: Option<std::time::Instant>) -> Result<Answer, InventoryError> {
        let mut holdings = Holdings::new(scope);
        for data in self.held.lock().unwrap().values() {
            let held = parse_message(data).expect("the shipper's own event");
            holdings.add(&held);
        }
        Ok(Answer {
            holdings,
            ..Answer::default()
        })
    }

    fn destination(&self) -> serde_json::Value {
        serde_json::json!({"type": "simulated"})
    }

    fn describe(&self) -> String {
        "simulated destination".into()
    }
}

// ---------------------------------------------------------------- the store

/// The in-memory store, unavailable while `down`; remembers the marks it could not write.
#[derive(Default)]
struct FlakyStore {
    inner: MemoryStore,
    down: AtomicBool,
    unrecorded: Mutex<HashSet<String>>,
}

impl FlakyStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError {
                location: "simulated store".into(),
                detail: "connection refused (injected)".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl DedupStore for FlakyStore {
    async fn claim(&self, keys: &[String], token: &str, lease: Duration) -> Result<Vec<Claim>, StoreError> {
        self.check()?;
        self.inner.claim(keys, token, lease).await
    }

    async fn settle(&self, s: &Settlement, token: &str) -> Result<Vec<Commit>, StoreError> {
        if let Err(e) = self.check() {
            // The marks of shipped entries, and the records of parts accepted, are lost.
            let parts = format!("{PREFIX}parts:");
            let lost = s
                .marks
                .iter()
                .map(|(key, _, _)| key.clone())
                .chain(s.records.iter().map(|(key, _, _)| key.replacen(&parts, PREFIX, 1)));
            self.unrecorded.lock().unwrap().extend(lost);
            return Err(e);
        }
        self.inner.settle(s, token).await
    }

    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.check()?;
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put(key, value, ttl).await
    }

    async fn swap(&self, swaps: &[Swap]) -> Result<Vec<bool>, StoreError> {
        self.check()?;
        self.inner.swap(swaps).await
    }

    fn describe(&self) -> String {
        "simulated store".into()
    }
}

#[derive(Default)]
struct Letters(Mutex<Vec<DeadLetter>>);

#[async_trait]
impl DeadLetterSink for Letters {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        self.0.lock().unwrap().extend_from_slice(letters);
        Ok(())
    }

    fn describe(&self) -> String {
        "simulated dead letters".into()
    }
}

// ---------------------------------------------------------------- schedules

const PREFIX: &str = "sim:";

struct World {
    kong: Arc<SimKong>,
    sink: Arc<SimSink>,
    store: Arc<FlakyStore>,
    letters: Arc<Letters>,
    next_key: usize,
}

impl World {
    fn shipper(&self) -> Shipper {
        Shipper {
            source: self.kong.clone(),
            store: self.store.clone(),
            sink: self.sink.clone(),
            dead_letters: self.letters.clone(),
            recipient_account_id: "123456789012".into(),
            signatures: Default::default(),
            inventory: Some(self.sink.clone()),
        }
    }

    /// A request stamped `ts` and 0 to 3 objects of it; one object in 30 too large for one event.
    fn add_request(&mut self, rng: &mut fastrand::Rng, ts: i64) {
        let now = chrono::Utc::now().timestamp();
        let expires_at = if rng.u8(..50) == 0 { now + 2 } else { now + 2_592_000 };
        self.next_key += 1;
        let request_id = format!("R{:07}", self.next_key);
        self.kong.add(Row {
            kind: EntryKind::Request,
            key: request_id.clone(),
            ts,
            expires_at,
            members: format!(
                r#""request_id":"{request_id}","request_timestamp":{ts},"method":"POST","path":"/services","status":201,"client_ip":"10.0.0.1","payload":"{{\"name\":\"é\"}}""#
            ),
        });
        for _ in 0..rng.usize(..4) {
            self.next_key += 1;
            let id = format!("O{:07}", self.next_key);
            let entity = if rng.u8(..30) == 0 { "y".repeat(70_000) } else { "{}".into() };
            self.kong.add(Row {
                kind: EntryKind::Object,
                key: id.clone(),
                ts,
                expires_at,
                members: format!(
                    r#""id":"{id}","request_id":"{request_id}","request_timestamp":{ts},"dao_name":"services","operation":"create","entity":"{entity}""#
                ),
            });
        }
    }
}

/// The timestamp of a row written now: mostly now or a little before (written late), some by a node
/// whose clock is an hour ahead or behind.
fn stamp(rng: &mut fastrand::Rng, now: i64) -> i64 {
    match rng.u8(..20) {
        0 => now + 3_600,
        1 => now - 3_600,
        _ => now - rng.i64(0..60),
    }
}

fn options(rng: &mut fastrand::Rng, sweep_every_run: bool) -> ShipOptions {
    ShipOptions {
        key_prefix: PREFIX.into(),
        page_size: rng.u32(3..40),
        put_concurrency: rng.usize(1..5),
        backoff: Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(5),
            attempts: 3,
        },
        incremental: rng.u8(..10) != 0,
        sweep: Sweep::Every(if sweep_every_run {
            Duration::ZERO
        } else {
            Duration::from_secs(86_400)
        }),
        put_rate: 2_000.0,
        limits: (rng.u8(..3) == 0)
            .then(|| RunLimits::budget(Duration::from_millis(rng.u64(40..300)), Duration::from_millis(rng.u64(10..40)))),
        // A store that comes back empty is rebuilt from the destination, which ingests at once.
        rebuild: true,
        settle: Duration::ZERO,
        ..ShipOptions::default()
    }
}

/// The watermark never passes an entry that is not handled: after a run (sweeps off), every row Kong
/// held when the run began, stamped at or after where the run began reading and before where the next
/// run will begin (the stored watermark, less the overlap still due), is in the destination,
/// dead-lettered, or held by a claim. (Rows stamped behind where a read begins are the sweep's; rows
/// Kong deletes meanwhile are nobody's; rows inside the overlap are read again by the next run.)
async fn check_watermarks(
    world: &World,
    overlap: Duration,
    before: &[(EntryKind, String, i64)],
    read_from: &HashMap<EntryKind, i64>,
    what: &str,
) {
    let accepted = world.sink.accepted.lock().unwrap().clone();
    let lettered: HashSet<String> = world.letters.0.lock().unwrap().iter().map(|l| id_prefix(l.kind, &l.key)).collect();
    let still_held: HashSet<String> = world.kong.held(60).into_iter().map(|(_, key)| key).collect();
    for kind in EntryKind::ALL {
        let stored = world
            .store
            .inner
            .get(&format!("{PREFIX}watermark:{}", kind.as_str()))
            .await
            .unwrap();
        let Some(w) = stored.as_deref().and_then(Position::parse) else {
            continue;
        };
        let from = read_from.get(&kind).copied().unwrap_or(i64::MIN);
        let next = w.resume_from(overlap);
        for (k, key, ts) in before
            .iter()
            .filter(|(k, key, ts)| *k == kind && *ts >= from && *ts < next && still_held.contains(key))
        {
            let id = id_prefix(*k, key);
            let value = world
                .store
                .inner
                .get(&format!("{PREFIX}{}:{key}", k.as_str()))
                .await
                .unwrap()
                .unwrap_or_default();
            let handled = accepted.contains_key(&id) || lettered.contains(&id) || value.starts_with("inflight:");
            assert!(
                handled,
                "{what}: the {} watermark ({}, the next run reads from {next}) passed {key} (stamped {ts}), which is neither shipped, dead-lettered nor held (store: {value:?})",
                kind.as_str(),
                w.render()
            );
        }
    }
}

fn adds_up(s: &Summary, what: &str) {
    if std::env::var_os("SIMULATION_SEED").is_some() {
        eprintln!("{what}: {}", s.line());
    }
    assert_eq!(
        s.read,
        s.shipped + s.already_shipped + s.held + s.rejected + s.failed + s.deferred,
        "{what}: the summary adds up: {}",
        s.line()
    );
}

async fn one_schedule(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let now = chrono::Utc::now().timestamp();
    let limits = if rng.bool() {
        CallLimits::CLOUDTRAIL
    } else {
        CallLimits {
            max_events: rng.usize(2..20),
            max_bytes: 1_000_000,
        }
    };
    // Entries refused for good, chosen among the first keys.
    let refused: HashSet<String> = (1..200)
        .filter(|_| rng.u8(..40) == 0)
        .flat_map(|k| [format!("req-R{k:07}"), format!("obj-O{k:07}")])
        .collect();
    let mut world = World {
        kong: Arc::new(SimKong::default()),
        sink: Arc::new(SimSink::new(refused, limits)),
        store: Arc::new(FlakyStore::default()),
        letters: Arc::new(Letters::default()),
        next_key: 0,
    };
    // A backlog of up to 30 days, then rows written as the runs go on.
    for _ in 0..rng.usize(10..60) {
        let ts = now - rng.i64(0..2_592_000 - 3_600);
        world.add_request(&mut rng, ts);
    }

    for run in 0..rng.usize(2..6) {
        for _ in 0..rng.usize(..10) {
            let ts = stamp(&mut rng, chrono::Utc::now().timestamp());
            world.add_request(&mut rng, ts);
        }
        world.kong.fail_pages(rng.f64() * 0.1, rng.u64(..));
        let faults = SinkFaults {
            throttled_events: rng.f64() * 0.15,
            failed_calls: rng.f64() * 0.1,
            throttled_calls: rng.f64() * 0.05,
            lost_answers: rng.f64() * 0.05,
        };
        world.sink.set_faults(faults, rng.u64(..));
        // Now and then the store goes away for a moment while the run works.
        let outage = (rng.u8(..5) == 0).then(|| (Duration::from_millis(rng.u64(..20)), Duration::from_millis(rng.u64(1..20))));
        let store = world.store.clone();
        let outage_task = tokio::spawn(async move {
            if let Some((after, lasting)) = outage {
                tokio::time::sleep(after).await;
                store.down.store(true, Ordering::SeqCst);
                tokio::time::sleep(lasting).await;
                store.down.store(false, Ordering::SeqCst);
            }
        });
        // Now and then the store comes back empty before a run: it is rebuilt, never re-shipped.
        if rng.u8(..6) == 0 {
            world.store.inner.flush();
        }
        let shipper = world.shipper();
        let (mut a, b) = (options(&mut rng, false), options(&mut rng, false));
        // Half the runs sweep never: after those, the watermark alone must be right.
        let watch = rng.bool();
        if watch {
            a.sweep = Sweep::Never;
        }
        let before: Vec<(EntryKind, String, i64)> = world
            .kong
            .rows
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.kind, r.key.clone(), r.ts))
            .collect();
        let mut read_from = HashMap::new();
        for kind in EntryKind::ALL {
            let stored = world
                .store
                .inner
                .get(&format!("{PREFIX}watermark:{}", kind.as_str()))
                .await
                .unwrap();
            let from = stored
                .as_deref()
                .and_then(Position::parse)
                .map_or(i64::MIN, |w| w.resume_from(a.overlap));
            read_from.insert(kind, from);
        }
        if rng.u8(..4) == 0 {
            let other = world.shipper();
            let (x, y) = tokio::join!(
                shipper.run(&a, Arc::new(Counters::default())),
                other.run(&b, Arc::new(Counters::default()))
            );
            adds_up(&x, &format!("seed {seed} run {run}a"));
            adds_up(&y, &format!("seed {seed} run {run}b"));
        } else {
            let s = shipper.run(&a, Arc::new(Counters::default())).await;
            adds_up(&s, &format!("seed {seed} run {run}"));
            if watch {
                check_watermarks(&world, a.overlap, &before, &read_from, &format!("seed {seed} run {run}")).await;
            }
        }
        outage_task.await.unwrap();
        world.store.down.store(false, Ordering::SeqCst);
    }

    // The faults stop. Claims of runs that could not release them lapse with their lease.
    world.kong.fail_pages(0.0, 0);
    world.sink.set_faults(SinkFaults::default(), 0);
    world.store.inner.lapse_claims();
    // Each run sweeps; two complete runs in a row mean that a sweep began after every row was
    // written (a row stamped behind a sweep in progress is for the next sweep).
    let (mut complete_in_a_row, mut last) = (0, None);
    for _ in 0..10 {
        let mut o = options(&mut rng, true);
        o.limits = None;
        o.incremental = true;
        let s = world.shipper().run(&o, Arc::new(Counters::default())).await;
        adds_up(&s, &format!("seed {seed} final"));
        let complete = s.error.is_none() && s.failed == 0 && s.held == 0 && !s.stopped_early;
        complete_in_a_row = if complete { complete_in_a_row + 1 } else { 0 };
        last = Some(s);
        if complete_in_a_row == 2 {
            break;
        }
    }
    let last = last.unwrap();
    assert_eq!(complete_in_a_row, 2, "seed {seed}: never completed: {}", last.line());

    // Every entry Kong holds is in the destination (every event of it) or dead-lettered.
    let accepted = world.sink.accepted.lock().unwrap().clone();
    let lettered: HashSet<String> = world.letters.0.lock().unwrap().iter().map(|l| id_prefix(l.kind, &l.key)).collect();
    let mut by_entry: HashMap<&str, Vec<(&String, usize)>> = HashMap::new();
    for (id, n) in &accepted {
        by_entry.entry(entry_of(id)).or_default().push((id, *n));
    }
    for (prefix, key) in world.kong.held(60) {
        let shipped = by_entry.get(prefix.as_str());
        if shipped.is_none() && !lettered.contains(&prefix) {
            let ts = world.kong.rows.lock().unwrap().iter().find(|r| r.key == key).unwrap().ts;
            let kept = world.store.inner.get(&format!("{PREFIX}request:{key}")).await;
            panic!(
                "seed {seed}: {key} is neither in the destination nor dead-lettered (stamped {} s from now, store: {kept:?})",
                ts - chrono::Utc::now().timestamp(),
            );
        }
        if let Some(ids) = shipped {
            let count = ids
                .iter()
                .filter_map(|(id, _)| id.rsplit_once("-p").and_then(|(_, n)| n.parse::<usize>().ok()))
                .max()
                .unwrap_or(1);
            assert!(ids.len() >= count, "seed {seed}: {key}: parts missing: {ids:?}");
        }
    }
    // The only duplicates are the unavoidable ones.
    let lost = world.sink.lost.lock().unwrap().clone();
    let unrecorded: HashSet<String> = world
        .store
        .unrecorded
        .lock()
        .unwrap()
        .iter()
        .filter_map(|k| {
            let rest = k.strip_prefix(PREFIX)?;
            let (kind, key) = rest.split_once(':')?;
            let kind = if kind == "request" { EntryKind::Request } else { EntryKind::Object };
            Some(id_prefix(kind, key))
        })
        .collect();
    for (id, n) in &accepted {
        if *n > 1 {
            assert!(
                lost.contains(id) || unrecorded.contains(entry_of(id)),
                "seed {seed}: {id} shipped {n} times, but no answer of it was lost and its mark was never refused"
            );
        }
    }
    // And once complete, a run ships nothing.
    let mut o = options(&mut rng, true);
    o.limits = None;
    let again = world.shipper().run(&o, Arc::new(Counters::default())).await;
    assert_eq!(
        (again.shipped, again.failed, again.held),
        (0, 0, 0),
        "seed {seed}: {}",
        again.line()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_schedules_of_faults_lose_nothing_and_duplicate_only_what_no_client_can_avoid() {
    if let Some(seed) = std::env::var("SIMULATION_SEED").ok().and_then(|s| s.parse().ok()) {
        return one_schedule(seed).await;
    }
    let schedules: u64 = std::env::var("SIMULATION_SCHEDULES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let base = fastrand::u64(..);
    for n in 0..schedules {
        let seed = base.wrapping_add(n);
        let run = tokio::spawn(one_schedule(seed));
        if let Err(e) = run.await {
            panic!("schedule failed; replay it with SIMULATION_SEED={seed}: {e}");
        }
    }
}

// ---------------------------------------------------------------- the claim's lease

/// A destination that takes a while per call and checks, as each call starts, how long the claims
/// of its events have left.
struct SlowSink {
    store: Arc<MemoryStore>,
    latency: Duration,
    shortest_left: Mutex<Option<Duration>>,
    accepted: Mutex<Vec<String>>,
    /// On the first call, hand the keys over to another run's claim before answering.
    take_over: AtomicBool,
}

#[async_trait]
impl Sink for SlowSink {
    async fn put(&self, events: &[AuditEvent]) -> Result<PutReport, SinkError> {
        for e in events {
            let key = format!("{PREFIX}request:{}", e.id.trim_start_matches("req-"));
            let left = self.store.ttl(&key).unwrap_or_default();
            let mut shortest = self.shortest_left.lock().unwrap();
            *shortest = Some(shortest.map_or(left, |s| s.min(left)));
        }
        tokio::time::sleep(self.latency).await;
        if self.take_over.swap(false, Ordering::SeqCst) {
            for e in events {
                let key = format!("{PREFIX}request:{}", e.id.trim_start_matches("req-"));
                self.store
                    .put(&key, "inflight:another-run", Some(Duration::from_secs(600)))
                    .await
                    .unwrap();
            }
        }
        self.accepted.lock().unwrap().extend(events.iter().map(|e| e.id.clone()));
        Ok(PutReport {
            successful: events.iter().map(|e| e.id.clone()).collect(),
            failed: Vec::new(),
        })
    }

    fn describe(&self) -> String {
        "slow destination".into()
    }

    fn limits(&self) -> CallLimits {
        CallLimits {
            max_events: 10,
            max_bytes: 1_000_000,
        }
    }
}

fn lease_world(n: usize, latency: Duration) -> (Arc<SimKong>, Arc<MemoryStore>, Arc<SlowSink>, Shipper) {
    let kong = Arc::new(SimKong::default());
    let now = chrono::Utc::now().timestamp();
    for i in 0..n {
        let key = format!("L{i:07}");
        kong.add(Row {
            kind: EntryKind::Request,
            members: format!(
                r#""request_id":"{key}","request_timestamp":{},"method":"GET","path":"/","status":200"#,
                now - 100
            ),
            key,
            ts: now - 100,
            expires_at: now + 86_400,
        });
    }
    let store = Arc::new(MemoryStore::new());
    let sink = Arc::new(SlowSink {
        store: store.clone(),
        latency,
        shortest_left: Mutex::default(),
        accepted: Mutex::default(),
        take_over: AtomicBool::new(false),
    });
    let shipper = Shipper {
        source: kong.clone(),
        store: store.clone(),
        sink: sink.clone(),
        dead_letters: Arc::new(Letters::default()),
        recipient_account_id: "123456789012".into(),
        signatures: Default::default(),
        inventory: None,
    };
    (kong, store, sink, shipper)
}

/// The lease is checked before every call, not once per round: with 100 entries in calls of 10 at
/// 200 ms each and a 1.2 s lease, no call starts on a claim with less than the margin (a quarter of
/// the lease) left; the entries whose claims ran short are released, and the next run ships them.
#[tokio::test]
async fn no_call_starts_on_a_claim_about_to_lapse() {
    let (_kong, _store, sink, shipper) = lease_world(100, Duration::from_millis(200));
    let opts = ShipOptions {
        key_prefix: PREFIX.into(),
        lease: Duration::from_millis(1_200),
        put_concurrency: 1,
        ..ShipOptions::default()
    };
    let first = shipper.run(&opts, Arc::new(Counters::default())).await;
    adds_up(&first, "first");
    assert!(first.failed > 0 && first.shipped > 0, "{}", first.line());
    let shortest = sink.shortest_left.lock().unwrap().unwrap();
    assert!(
        shortest >= Duration::from_millis(200),
        "a call started with only {shortest:?} left on a claim (margin 300 ms)"
    );
    let mut runs = 1;
    while sink.accepted.lock().unwrap().len() < 100 {
        let next = shipper.run(&opts, Arc::new(Counters::default())).await;
        adds_up(&next, "next");
        runs += 1;
        assert!(runs < 20, "never finished: {}", next.line());
    }
    let ids = sink.accepted.lock().unwrap().clone();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "nothing shipped twice");
}

/// The lease is checked again when a call's slot comes: with eight calls packed at once and a pace
/// of two calls a second, the last calls wait seconds for their slots, longer than a 1.6 s lease
/// leaves; their entries are released instead of sent on claims that have lapsed.
#[tokio::test]
async fn no_call_goes_out_on_a_claim_that_ran_short_while_waiting_for_its_slot() {
    let (_kong, _store, sink, shipper) = lease_world(80, Duration::from_millis(5));
    let opts = ShipOptions {
        key_prefix: PREFIX.into(),
        lease: Duration::from_millis(1_600),
        put_concurrency: 8,
        put_rate: 2.0,
        ..ShipOptions::default()
    };
    let first = shipper.run(&opts, Arc::new(Counters::default())).await;
    adds_up(&first, "first");
    assert!(first.failed > 0 && first.shipped > 0, "{}", first.line());
    let shortest = sink.shortest_left.lock().unwrap().unwrap();
    assert!(
        shortest >= Duration::from_millis(300),
        "a call went out with only {shortest:?} left on a claim (margin 400 ms)"
    );
}

/// When another run took a claim over while this run's put was under way, the commit leaves the
/// other run's claim in place (and says so) instead of writing over it.
#[tokio::test]
async fn a_commit_never_writes_over_a_claim_another_run_took_over() {
    let (_kong, store, sink, shipper) = lease_world(3, Duration::from_millis(10));
    sink.take_over.store(true, Ordering::SeqCst);
    let opts = ShipOptions {
        key_prefix: PREFIX.into(),
        ..ShipOptions::default()
    };
    let ran = shipper.run(&opts, Arc::new(Counters::default())).await;
    assert_eq!(ran.shipped, 3, "{}", ran.line());
    for i in 0..3 {
        let key = format!("{PREFIX}request:L{i:07}");
        assert_eq!(store.get(&key).await.unwrap().as_deref(), Some("inflight:another-run"), "{key}");
    }
}
