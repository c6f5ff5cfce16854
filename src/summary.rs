//! What a run did: live counters while it runs, and one summary line at the end.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// Counters shared by the cycle and whoever shows progress.
#[derive(Debug, Default)]
pub struct Counters {
    pub read: AtomicU64,
    pub shipped: AtomicU64,
    pub already_shipped: AtomicU64,
    /// Entries another run held when this one read them: not shipped by this run, maybe not at all.
    pub held: AtomicU64,
    pub retried: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub pages: AtomicU64,
    pub put_calls: AtomicU64,
    pub store_round_trips: AtomicU64,
    /// `eventTime` of the oldest entry this run knows is not shipped yet, epoch seconds (0: none).
    pub oldest_pending_time: AtomicI64,
    /// Entries of this run whose Kong signature verified, and whose signature did not.
    pub signatures_valid: AtomicU64,
    pub signatures_invalid: AtomicU64,
    /// Entries found in the destination by a store rebuilt from it: marked, not sent (counted in
    /// `already_shipped` too).
    pub rebuilt: AtomicU64,
    /// Entries not shipped by a run rebuilding its store, because the destination may still be
    /// ingesting them from before the store was lost: the next run ships what it still lacks.
    pub deferred: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Relaxed);
    }

    /// Notes an entry (by its `eventTime`) that this run leaves unshipped.
    pub fn pending(&self, event_time: i64) {
        if event_time > 0 {
            let _ = self
                .oldest_pending_time
                .fetch_update(Relaxed, Relaxed, |t| (t == 0 || event_time < t).then_some(event_time));
        }
    }

    pub fn snapshot(&self, seconds: f64) -> Summary {
        let pending = self.oldest_pending_time.load(Relaxed);
        Summary {
            read: self.read.load(Relaxed),
            shipped: self.shipped.load(Relaxed),
            already_shipped: self.already_shipped.load(Relaxed),
            held: self.held.load(Relaxed),
            retried: self.retried.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            failed: self.failed.load(Relaxed),
            seconds: (seconds * 1000.0).round() / 1000.0,
            pages: self.pages.load(Relaxed),
            put_calls: self.put_calls.load(Relaxed),
            store_round_trips: self.store_round_trips.load(Relaxed),
            lag_seconds: if pending > 0 {
                (chrono::Utc::now().timestamp() - pending).max(0)
            } else {
                0
            },
            stopped_early: false,
            error: None,
            signatures_valid: self.signatures_valid.load(Relaxed),
            signatures_invalid: self.signatures_invalid.load(Relaxed),
            rebuilt: self.rebuilt.load(Relaxed),
            deferred: self.deferred.load(Relaxed),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub read: u64,
    pub shipped: u64,
    pub already_shipped: u64,
    /// Held by another run (a backfill beside the schedule, or a run that died within its lease).
    pub held: u64,
    pub retried: u64,
    pub rejected: u64,
    pub failed: u64,
    pub seconds: f64,
    pub pages: u64,
    pub put_calls: u64,
    pub store_round_trips: u64,
    /// Age of the oldest entry this run knows is not shipped yet (left failed, held, or unread at the
    /// deadline); 0 when everything read was handled and the trail was read to its end.
    pub lag_seconds: i64,
    /// The run stopped before the end of the trail (its time budget); the next run continues.
    pub stopped_early: bool,
    /// Why the run stopped, when something stopped it.
    pub error: Option<String>,
    /// Entries this run mapped whose Kong signature verified under a configured key.
    #[serde(default)]
    pub signatures_valid: u64,
    /// Entries this run mapped whose Kong signature did not verify: shipped all the same, logged
    /// at error level. They do not change the status: shipping them is the right thing to do.
    #[serde(default)]
    pub signatures_invalid: u64,
    /// Entries the destination already held, found while rebuilding a lost store: marked, not sent
    /// (also in `already_shipped`).
    #[serde(default)]
    pub rebuilt: u64,
    /// Entries a rebuilding run left for the next one (the destination may still be ingesting them).
    #[serde(default)]
    pub deferred: u64,
}

impl Summary {
    /// True when nothing went wrong: no entry failed or was refused, and nothing stopped the run.
    /// Entries held by another run and a stop at the time budget are not failures: see `complete`.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.rejected == 0 && self.failed == 0
    }

    /// `ok`, and every entry read was shipped (now or before) and the trail was read to its end.
    pub fn complete(&self) -> bool {
        self.ok() && self.held == 0 && self.deferred == 0 && !self.stopped_early
    }

    /// `ok`, `partial` (nothing lost, but the budget or another run left work for the next run) or `failed`.
    pub fn status(&self) -> &'static str {
        match (self.ok(), self.complete()) {
            (true, true) => "ok",
            (true, false) => "partial",
            (false, _) => "failed",
        }
    }

    /// `summary status=ok read=3 shipped=2 ...`: logfmt, for people and for `grep`/`awk`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "summary status={} read={} shipped={} already_shipped={} held={} retried={} rejected={} failed={} seconds={:.3} pages={} put_calls={} store_round_trips={} lag_seconds={}",
            self.status(),
            self.read,
            self.shipped,
            self.already_shipped,
            self.held,
            self.retried,
            self.rejected,
            self.failed,
            self.seconds,
            self.pages,
            self.put_calls,
            self.store_round_trips,
            self.lag_seconds
        );
        line.push_str(&format!(
            " signatures_valid={} signatures_invalid={}",
            self.signatures_valid, self.signatures_invalid
        ));
        line.push_str(&format!(" rebuilt={} deferred={}", self.rebuilt, self.deferred));
        if self.stopped_early {
            line.push_str(" stopped_early=true");
        }
        if let Some(e) = &self.error {
            line.push_str(&format!(" error={}", serde_json::to_string(e).unwrap_or_default()));
        }
        line
    }

    /// One CloudWatch Embedded Metric Format record with the counts.
    pub fn emf(&self, function_name: &str, now_ms: i64) -> String {
        let metrics = [
            ("Read", self.read as i64, "Count"),
            ("Shipped", self.shipped as i64, "Count"),
            ("AlreadyShipped", self.already_shipped as i64, "Count"),
            ("Held", self.held as i64, "Count"),
            ("Retried", self.retried as i64, "Count"),
            ("Rejected", self.rejected as i64, "Count"),
            ("Failed", self.failed as i64, "Count"),
            ("LagSeconds", self.lag_seconds, "Seconds"),
            ("SignaturesValid", self.signatures_valid as i64, "Count"),
            ("SignaturesInvalid", self.signatures_invalid as i64, "Count"),
            ("Rebuilt", self.rebuilt as i64, "Count"),
            ("Deferred", self.deferred as i64, "Count"),
        ];
        emf_record(function_name, now_ms, &metrics, ("status", self.status()))
    }
}

/// One CloudWatch Embedded Metric Format record: `metrics` as `(name, value, unit)` in the
/// `KongAuditShipper` namespace by `FunctionName`, and one more field to say what it is about.
pub fn emf_record(function_name: &str, now_ms: i64, metrics: &[(&str, i64, &str)], about: (&str, &str)) -> String {
    let mut record = serde_json::json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": "KongAuditShipper",
                "Dimensions": [["FunctionName"]],
                "Metrics": metrics.iter().map(|(n, _, u)| serde_json::json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }],
        },
        "FunctionName": function_name,
        "level": "INFO",
    });
    record[about.0] = about.1.into();
    for (name, value, _) in metrics {
        record[*name] = (*value).into();
    }
    record.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_reads_for_people_and_parses_for_machines() {
        let s = Summary {
            read: 3,
            shipped: 2,
            already_shipped: 1,
            seconds: 0.5,
            ..Default::default()
        };
        assert!(s.ok());
        let line = s.line();
        assert!(
            line.starts_with("summary status=ok read=3 shipped=2 already_shipped=1 held=0 retried=0 rejected=0 failed=0 seconds=0.500"),
            "{line}"
        );
        let failed = Summary {
            read: 1,
            failed: 1,
            error: Some("Kong \"down\"".into()),
            ..Default::default()
        };
        assert!(!failed.ok());
        assert!(failed.line().ends_with(r#"error="Kong \"down\"""#), "{}", failed.line());
    }

    #[test]
    fn held_entries_and_a_stop_at_the_budget_are_partial_not_failed_and_not_ok() {
        let held = Summary {
            read: 2,
            shipped: 1,
            held: 1,
            ..Default::default()
        };
        assert!(held.ok() && !held.complete());
        assert_eq!(held.status(), "partial");
        assert!(held.line().contains(" held=1 "), "{}", held.line());
        let stopped = Summary {
            stopped_early: true,
            ..Default::default()
        };
        assert_eq!(stopped.status(), "partial");
        assert!(stopped.line().contains("stopped_early=true"));
        let both = Summary {
            held: 1,
            failed: 1,
            ..Default::default()
        };
        assert_eq!(both.status(), "failed");
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_pending_entry_and_zero_without_one() {
        let c = Counters::default();
        assert_eq!(c.snapshot(0.0).lag_seconds, 0);
        let now = chrono::Utc::now().timestamp();
        c.pending(now - 100);
        c.pending(now - 50);
        c.pending(0);
        let lag = c.snapshot(0.0).lag_seconds;
        assert!((100..=102).contains(&lag), "{lag}");
    }

    #[test]
    fn emf_has_the_metrics_and_their_values() {
        let s = Summary {
            read: 5,
            shipped: 4,
            rejected: 1,
            lag_seconds: 42,
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(&s.emf("fn", 1)).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "KongAuditShipper");
        assert_eq!(
            (v["Read"].as_i64(), v["Rejected"].as_i64(), v["LagSeconds"].as_i64()),
            (Some(5), Some(1), Some(42))
        );
        assert_eq!(v["FunctionName"], "fn");
    }

    #[test]
    fn signature_counts_are_in_the_line_the_json_and_the_emf_without_changing_the_status() {
        let c = Counters::default();
        Counters::add(&c.signatures_valid, 3);
        Counters::add(&c.signatures_invalid, 1);
        let s = c.snapshot(0.0);
        assert_eq!((s.signatures_valid, s.signatures_invalid, s.status()), (3, 1, "ok"));
        assert!(
            s.line().contains(" lag_seconds=0 signatures_valid=3 signatures_invalid=1"),
            "{}",
            s.line()
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            (json["signatures_valid"].as_u64(), json["signatures_invalid"].as_u64()),
            (Some(3), Some(1))
        );
        let older: Summary = serde_json::from_str(r#"{"read":1,"shipped":1,"already_shipped":0,"held":0,"retried":0,"rejected":0,"failed":0,"seconds":0.1,"pages":1,"put_calls":1,"store_round_trips":1,"lag_seconds":0,"stopped_early":false,"error":null}"#).unwrap();
        assert_eq!(older.signatures_invalid, 0);
        let v: serde_json::Value = serde_json::from_str(&s.emf("fn", 1)).unwrap();
        assert_eq!((v["SignaturesValid"].as_i64(), v["SignaturesInvalid"].as_i64()), (Some(3), Some(1)));
        let names: Vec<&str> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["Name"].as_str())
            .collect();
        assert!(
            names.contains(&"SignaturesInvalid") && names.contains(&"SignaturesValid"),
            "{names:?}"
        );
    }
}
