//! What a run did: live counters while it runs, and one summary line at the end.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// Counters shared by the cycle and whoever shows progress.
#[derive(Debug, Default)]
pub struct Counters {
    pub read: AtomicU64,
    pub shipped: AtomicU64,
    pub already_shipped: AtomicU64,
    pub retried: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub pages: AtomicU64,
    pub put_calls: AtomicU64,
    pub store_round_trips: AtomicU64,
    /// `eventTime` of the newest entry read, epoch seconds (0: none yet).
    pub newest_entry_time: AtomicI64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Relaxed);
    }

    pub fn snapshot(&self, seconds: f64) -> Summary {
        let newest = self.newest_entry_time.load(Relaxed);
        Summary {
            read: self.read.load(Relaxed),
            shipped: self.shipped.load(Relaxed),
            already_shipped: self.already_shipped.load(Relaxed),
            retried: self.retried.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            failed: self.failed.load(Relaxed),
            seconds: (seconds * 1000.0).round() / 1000.0,
            pages: self.pages.load(Relaxed),
            put_calls: self.put_calls.load(Relaxed),
            store_round_trips: self.store_round_trips.load(Relaxed),
            lag_seconds: (newest > 0).then(|| (chrono::Utc::now().timestamp() - newest).max(0)),
            stopped_early: false,
            error: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub read: u64,
    pub shipped: u64,
    pub already_shipped: u64,
    pub retried: u64,
    pub rejected: u64,
    pub failed: u64,
    pub seconds: f64,
    pub pages: u64,
    pub put_calls: u64,
    pub store_round_trips: u64,
    /// Seconds from the newest entry read to the end of the run.
    pub lag_seconds: Option<i64>,
    /// The run stopped before the end of the trail (deadline); the next run continues.
    pub stopped_early: bool,
    /// Why the run stopped, when something stopped it.
    pub error: Option<String>,
}

impl Summary {
    /// True only when every entry read was shipped or already shipped, and nothing went wrong.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.rejected == 0 && self.failed == 0
    }

    pub fn status(&self) -> &'static str {
        match (self.ok(), self.stopped_early) {
            (true, false) => "ok",
            (true, true) => "partial",
            (false, _) => "failed",
        }
    }

    /// `summary status=ok read=3 shipped=2 ...`: logfmt, for people and for `grep`/`awk`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "summary status={} read={} shipped={} already_shipped={} retried={} rejected={} failed={} seconds={:.3} pages={} put_calls={} store_round_trips={}",
            self.status(),
            self.read,
            self.shipped,
            self.already_shipped,
            self.retried,
            self.rejected,
            self.failed,
            self.seconds,
            self.pages,
            self.put_calls,
            self.store_round_trips
        );
        if let Some(lag) = self.lag_seconds {
            line.push_str(&format!(" lag_seconds={lag}"));
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
            ("Retried", self.retried as i64, "Count"),
            ("Rejected", self.rejected as i64, "Count"),
            ("Failed", self.failed as i64, "Count"),
            ("LagSeconds", self.lag_seconds.unwrap_or(0), "Seconds"),
        ];
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
            "status": self.status(),
        });
        for (name, value, _) in metrics {
            record[name] = value.into();
        }
        record.to_string()
    }
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
            line.starts_with("summary status=ok read=3 shipped=2 already_shipped=1 retried=0 rejected=0 failed=0 seconds=0.500"),
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
    fn emf_has_the_metrics_and_their_values() {
        let s = Summary {
            read: 5,
            shipped: 4,
            rejected: 1,
            lag_seconds: Some(42),
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
}
