//! What `reconcile` found: counts per day, the entries missing, partial, pending or dead-lettered,
//! the queries it ran, and what a repair did. One summary line for people and machines; a JSON
//! document an auditor can keep.

use std::collections::BTreeMap;

use serde::Serialize;

use super::inventory::QueryRecord;
use crate::kong::EntryKind;
use crate::summary::Summary;

/// One of Kong's entries, by kind and key (`request_id` for requests, `id` for objects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryRef {
    pub kind: EntryKind,
    pub key: String,
    /// Partial entries: the parts the destination lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_parts: Option<Vec<u32>>,
    /// Dead-lettered entries: the destination's refusal code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl EntryRef {
    pub fn new(kind: EntryKind, key: &str) -> EntryRef {
        EntryRef {
            kind,
            key: key.to_string(),
            missing_parts: None,
            code: None,
        }
    }
}

/// Entries of one day (UTC, by their own time), by verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub kong: u64,
    pub found: u64,
    pub missing: u64,
    pub partial: u64,
    pub pending: u64,
    pub dead_lettered: u64,
}

/// What a repair did.
#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    /// Entries the repair set out to send (missing, or with parts missing).
    pub to_ship: u64,
    /// Marks the store lacked for entries the destination holds, written.
    pub marks_restored: u64,
    /// Marks of entries the destination lacks, released before the repair sent them.
    pub marks_released: u64,
    /// The repair's own run.
    pub run: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub since: String,
    pub until: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub program: String,
    pub generated_at: String,
    pub status: &'static str,
    pub window: Window,
    pub destination: serde_json::Value,
    pub counts: Totals,
    pub days: BTreeMap<String, Counts>,
    pub missing: Vec<EntryRef>,
    pub partial: Vec<EntryRef>,
    pub pending: Vec<EntryRef>,
    pub dead_lettered: Vec<EntryRef>,
    pub queries: Vec<QueryRecord>,
    pub bytes_scanned: u64,
    pub repair: Option<Repair>,
    pub seconds: f64,
    /// Why the comparison could not be made or finished; the other fields then say only what was
    /// learnt before.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    #[serde(flatten)]
    pub entries: Counts,
    /// Events the destination holds, all told.
    pub destination_events: u64,
    /// Entries the destination holds in the window that Kong no longer has (deleted since, or
    /// another shipper's).
    pub extra: u64,
    /// Events beyond one per entry or part.
    pub duplicates: u64,
    /// Rows the destination returned that are not this shipper's events.
    pub unreadable: u64,
}

impl Report {
    /// Nothing missing, partial or dead-lettered, and nothing stopped the comparison.
    pub fn complete(&self) -> bool {
        let c = &self.counts.entries;
        self.error.is_none() && c.missing == 0 && c.partial == 0 && c.dead_lettered == 0
    }

    /// What was missing was sent, and the repair lost nothing.
    pub fn repaired(&self) -> bool {
        let c = &self.counts.entries;
        self.error.is_none()
            && c.dead_lettered == 0
            && self
                .repair
                .as_ref()
                .is_some_and(|r| r.run.complete() && r.run.shipped == r.to_ship && c.missing + c.partial == r.to_ship)
    }

    pub fn decide_status(&mut self) {
        self.status = if self.complete() {
            "complete"
        } else if self.repaired() {
            "repaired"
        } else {
            "incomplete"
        };
    }

    /// `reconcile status=… kong=… found=… missing=… partial=… pending=… queries=… bytes_scanned=…`
    /// and what else there is to say.
    pub fn line(&self) -> String {
        let c = &self.counts;
        let mut line = format!(
            "reconcile status={} kong={} found={} missing={} partial={} pending={} queries={} bytes_scanned={} dead_lettered={} extra={} duplicates={} seconds={:.3}",
            self.status,
            c.entries.kong,
            c.entries.found,
            c.entries.missing,
            c.entries.partial,
            c.entries.pending,
            self.queries.len(),
            self.bytes_scanned,
            c.entries.dead_lettered,
            c.extra,
            c.duplicates,
            self.seconds
        );
        if let Some(r) = &self.repair {
            line.push_str(&format!(
                " repair_shipped={} repair_failed={} marks_restored={} marks_released={}",
                r.run.shipped,
                r.run.failed + r.run.rejected + r.run.held,
                r.marks_restored,
                r.marks_released
            ));
        }
        if let Some(e) = &self.error {
            line.push_str(&format!(" error={}", serde_json::to_string(e).unwrap_or_default()));
        }
        line
    }

    /// One CloudWatch Embedded Metric Format record with the counts.
    pub fn emf(&self, function_name: &str, now_ms: i64) -> String {
        let c = &self.counts.entries;
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let metrics = [
            ("MissingEntries", count(c.missing), "Count"),
            ("PartialEntries", count(c.partial), "Count"),
            ("ReconcileFound", count(c.found), "Count"),
            ("ReconcilePending", count(c.pending), "Count"),
            ("ReconcileDeadLettered", count(c.dead_lettered), "Count"),
            ("ReconcileBytesScanned", count(self.bytes_scanned), "Bytes"),
        ];
        crate::summary::emf_record(function_name, now_ms, &metrics, ("reconcile", self.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            program: "p".into(),
            generated_at: "t".into(),
            status: "",
            window: Window {
                since: "a".into(),
                until: "b".into(),
            },
            destination: serde_json::json!({}),
            counts: Totals::default(),
            days: BTreeMap::new(),
            missing: vec![],
            partial: vec![],
            pending: vec![],
            dead_lettered: vec![],
            queries: vec![],
            bytes_scanned: 0,
            repair: None,
            seconds: 0.0,
            error: None,
        }
    }

    #[test]
    fn the_status_says_complete_only_when_nothing_is_lacking_and_repaired_only_when_all_of_it_was_sent() {
        let mut r = report();
        r.counts.entries.pending = 3;
        r.decide_status();
        assert_eq!(r.status, "complete", "pending entries are neither missing nor a failure");
        r.counts.entries.missing = 2;
        r.counts.entries.partial = 1;
        r.decide_status();
        assert_eq!(r.status, "incomplete");
        let run = Summary {
            shipped: 3,
            ..Summary::default()
        };
        r.repair = Some(Repair {
            to_ship: 3,
            marks_restored: 0,
            marks_released: 1,
            run: run.clone(),
        });
        r.decide_status();
        assert_eq!(r.status, "repaired");
        r.repair.as_mut().unwrap().run.failed = 1;
        r.decide_status();
        assert_eq!(r.status, "incomplete", "a repair that left entries unsent");
        r.repair.as_mut().unwrap().run = run;
        r.error = Some("query failed".into());
        r.decide_status();
        assert_eq!(r.status, "incomplete");
        assert!(
            r.line()
                .starts_with("reconcile status=incomplete kong=0 found=0 missing=2 partial=1 pending=3 queries=0 bytes_scanned=0")
        );
        assert!(r.line().contains(" error=\"query failed\""));
    }

    #[test]
    fn the_metrics_record_names_what_the_alarm_watches() {
        let mut r = report();
        r.counts.entries.missing = 3;
        r.counts.entries.partial = 1;
        r.bytes_scanned = 4096;
        r.decide_status();
        let emf: serde_json::Value = serde_json::from_str(&r.emf("fn", 1)).unwrap();
        assert_eq!((emf["MissingEntries"].as_u64(), emf["PartialEntries"].as_u64()), (Some(3), Some(1)));
        assert_eq!(emf["ReconcileBytesScanned"], 4096);
        assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], "KongAuditShipper");
        assert_eq!(
            emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["FunctionName"]])
        );
        let units: Vec<&str> = emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Unit"].as_str().unwrap())
            .collect();
        assert_eq!(units.last(), Some(&"Bytes"));
        assert_eq!(emf["reconcile"], "incomplete");
    }

    #[test]
    fn entries_are_listed_by_kind_and_key() {
        let mut e = EntryRef::new(EntryKind::Object, "o1");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"kind": "object", "key": "o1"})
        );
        e.missing_parts = Some(vec![2]);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"kind": "object", "key": "o1", "missing_parts": [2]})
        );
    }
}
