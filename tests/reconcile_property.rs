//! A property of `reconcile`, over in-memory fakes of Kong, the store and the destination: for any
//! trail (requests, objects sharing their request's id, entries too large for one event and shipped
//! in parts) and any set of events removed from the destination (whole entries, single parts),
//! `reconcile` reports exactly the entries that set touches (missing, or partial with exactly the
//! parts removed), `--repair` sends exactly the removed events and nothing else, and a second
//! `reconcile` finds the trail complete.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kong_audit_shipper::dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink};
use kong_audit_shipper::dedup::MemoryStore;
use kong_audit_shipper::kong::{AuditSource, Entry, EntryKind, KongError, KongInfo, KongVersion, Page, PageRequest};
use kong_audit_shipper::reconcile::{MemoryInventory, ReconcileOptions, reconcile};
use kong_audit_shipper::ship::{ShipOptions, Shipper};
use kong_audit_shipper::sink::MemorySink;
use kong_audit_shipper::summary::Counters;
use proptest::prelude::*;
use serde_json::json;

/// Kong's two endpoints over a fixed trail, paged oldest first as Kong does with the filters.
struct StaticKong {
    rows: Vec<(EntryKind, i64, String, String)>,
}

#[async_trait]
impl AuditSource for StaticKong {
    async fn info(&self) -> Result<KongInfo, KongError> {
        Ok(KongInfo {
            version_text: Some("3.8.1.0".into()),
            version: KongVersion::parse("3.8.1.0"),
            record_ttl: 2_592_000,
            audit_log: Some(true),
            clock_offset: None,
        })
    }

    async fn page(&self, r: &PageRequest) -> Result<Page, KongError> {
        let mut rows: Vec<&(EntryKind, i64, String, String)> = self
            .rows
            .iter()
            .filter(|(kind, ts, ..)| *kind == r.kind && r.after.is_none_or(|a| *ts >= a) && r.before.is_none_or(|b| *ts < b))
            .collect();
        rows.sort_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
        let from: usize = r.offset.as_deref().map_or(0, |o| o.parse().unwrap());
        let page: Vec<Entry> = rows
            .iter()
            .skip(from)
            .take(r.size as usize)
            .map(|(kind, _, _, text)| Entry::parse(*kind, text).unwrap())
            .collect();
        let next = from + page.len();
        Ok(Page {
            entries: page,
            offset: (next < rows.len()).then(|| next.to_string()),
        })
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
        "test dead letters".into()
    }
}

/// `(objects per request, whether each object is too large for one event)` per request.
fn trail() -> impl Strategy<Value = Vec<Vec<bool>>> {
    prop::collection::vec(prop::collection::vec(prop::bool::weighted(0.15), 0..3), 1..18)
}

fn rows(shape: &[Vec<bool>], now: i64) -> Vec<(EntryKind, i64, String, String)> {
    let mut rows = Vec::new();
    for (i, objects) in shape.iter().enumerate() {
        let ts = now - 9 * 86_400 + i as i64 * 3_607;
        let request_id = format!("R{i:031}");
        let request = json!({"request_id": request_id, "request_timestamp": ts, "method": "POST", "path": "/services", "status": 201, "ttl": 2_592_000 - (now - ts)});
        rows.push((EntryKind::Request, ts, request_id.clone(), request.to_string()));
        for (k, big) in objects.iter().enumerate() {
            let id = format!("{i:08x}-{k:04x}-4000-8000-000000000000");
            let entity = if *big { "x".repeat(40_000 + 9_000 * k) } else { "{}".into() };
            let object = json!({"id": id, "request_id": request_id, "dao_name": "services", "operation": "create", "entity": entity, "request_timestamp": ts, "ttl": 2_592_000 - (now - ts)});
            rows.push((EntryKind::Object, ts, id, object.to_string()));
        }
    }
    rows
}

/// The entry an event id belongs to, and its part (1 for a whole event).
fn entry_of(id: &str) -> ((String, String), u32) {
    let (kind, rest) = id.split_once('-').unwrap();
    let kind = if kind == "req" { "request" } else { "object" };
    match rest.rsplit_once("-p") {
        Some((key, part)) if part.parse::<u32>().is_ok() => ((kind.into(), key.into()), part.parse().unwrap()),
        _ => ((kind.into(), rest.into()), 1),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn reconcile_reports_exactly_what_was_removed_and_repair_sends_exactly_it(shape in trail(), picks in prop::collection::vec(any::<prop::sample::Index>(), 0..10)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let now = chrono::Utc::now().timestamp();
            let sink = Arc::new(MemorySink::new());
            let shipper = Shipper {
                source: Arc::new(StaticKong { rows: rows(&shape, now) }),
                store: Arc::new(MemoryStore::new()),
                sink: sink.clone(),
                dead_letters: Arc::new(Letters::default()),
                recipient_account_id: "123456789012".into(),
                signatures: Default::default(),
                inventory: Some(Arc::new(MemoryInventory::new(sink.clone()))),
            };
            let opts = ShipOptions { page_size: 7, ..ShipOptions::default() };
            let first = shipper.run(&opts, Arc::new(Counters::default())).await;
            assert!(first.complete(), "{}", first.line());
            let shipped: Vec<String> = sink.accepted().into_iter().map(|e| e.id).collect();

            // Remove a set of events: whole entries, single parts, or every part of one.
            let removed: BTreeSet<String> = picks.iter().map(|p| p.get(&shipped).clone()).collect();
            sink.remove(&removed.iter().cloned().collect());
            let mut parts_of: BTreeMap<(String, String), BTreeSet<u32>> = BTreeMap::new();
            for id in &shipped {
                let (entry, part) = entry_of(id);
                parts_of.entry(entry).or_default().insert(part);
            }
            let mut lacking: BTreeMap<(String, String), BTreeSet<u32>> = BTreeMap::new();
            for id in &removed {
                let (entry, part) = entry_of(id);
                lacking.entry(entry).or_default().insert(part);
            }
            let want_missing: BTreeSet<(String, String)> =
                lacking.iter().filter(|(e, p)| **p == parts_of[*e]).map(|(e, _)| e.clone()).collect();
            let want_partial: BTreeMap<(String, String), Vec<u32>> = lacking
                .iter()
                .filter(|(e, p)| **p != parts_of[*e])
                .map(|(e, p)| (e.clone(), p.iter().copied().collect()))
                .collect();

            let inventory = shipper.inventory.clone().unwrap();
            let check = ReconcileOptions { since: None, until: None, settle: Duration::ZERO, repair: false };
            let report = reconcile(&shipper, inventory.as_ref(), &opts, &check).await;
            assert!(report.error.is_none(), "{:?}", report.error);
            let key = |e: &kong_audit_shipper::reconcile::EntryRef| (e.kind.as_str().to_string(), e.key.clone());
            let missing: BTreeSet<(String, String)> = report.missing.iter().map(key).collect();
            let partial: BTreeMap<(String, String), Vec<u32>> =
                report.partial.iter().map(|e| (key(e), e.missing_parts.clone().unwrap())).collect();
            assert_eq!(missing, want_missing);
            assert_eq!(partial, want_partial);
            assert_eq!(report.counts.entries.kong as usize, parts_of.len());
            assert_eq!(report.counts.entries.found as usize, parts_of.len() - lacking.len());
            assert_eq!(report.status, if removed.is_empty() { "complete" } else { "incomplete" });

            let before = sink.accepted().len();
            let repair = ReconcileOptions { repair: true, ..check.clone() };
            let repaired = reconcile(&shipper, inventory.as_ref(), &opts, &repair).await;
            let sent: Vec<String> = sink.accepted().into_iter().skip(before).map(|e| e.id).collect();
            assert_eq!(sent.len(), removed.len(), "nothing else is sent: {sent:?}");
            assert_eq!(sent.iter().cloned().collect::<BTreeSet<_>>(), removed);
            assert_eq!(repaired.status, if removed.is_empty() { "complete" } else { "repaired" });

            let after = reconcile(&shipper, inventory.as_ref(), &opts, &check).await;
            assert_eq!(after.status, "complete", "{}", after.line());
            let ids: HashSet<String> = sink.accepted().into_iter().map(|e| e.id).collect();
            assert_eq!(ids.len(), shipped.len(), "every event once");
        });
    }
}
