//! Where the next run starts reading: each endpoint's watermark, and the periodic sweep.
//!
//! A watermark `W` promises that every entry stamped before `W` was handled (shipped, found shipped,
//! or dead-lettered). Runs read from `W - overlap`, so rows that Kong writes a little late, or that a
//! node stamps with a clock a little behind, are still read. Rows stamped further behind than the
//! overlap are caught by the sweep: a read of the whole trail whenever the last complete one is
//! older than the sweep interval (the store makes re-reading shipped entries cheap). A sweep that
//! does not finish within one run's budget goes on from where it stopped in the next, so a long
//! trail and a slow Kong never make every run start over from the oldest entry.
//!
//! Kong nodes stamp rows with their own clocks, so a row may carry a time in the future: `W` never
//! passes the shipper's own clock at the start of the run, and such rows are read again by every run
//! until that clock passes them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::claim::Keys;
use crate::dedup::{DedupStore, StoreError};
use crate::kong::EntryKind;

/// What one run learned about one endpoint.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Read to its last page.
    pub complete: bool,
    /// Newest `request_timestamp` among the entries this run claimed (or tried to).
    pub newest_read: Option<i64>,
    /// Oldest `request_timestamp` of an entry read and not handled (failed, or held by another run).
    pub oldest_unhandled: Option<i64>,
}

impl Progress {
    pub fn read(&mut self, timestamp: i64) {
        self.newest_read = Some(self.newest_read.map_or(timestamp, |n| n.max(timestamp)));
    }

    pub fn unhandled(&mut self, timestamp: i64) {
        self.oldest_unhandled = Some(self.oldest_unhandled.map_or(timestamp, |o| o.min(timestamp)));
    }
}

/// The next watermark of an endpoint, or `None` to leave it as it is.
///
/// What is known handled: everything below the current watermark (earlier runs), and everything this
/// run read up to the newest entry it claimed. The next watermark is the end of that, held back to
/// the oldest entry not handled, and never past `run_started` (the shipper's clock when the run
/// began). It stays at the newest entry rather than moving to the end of a complete read: the
/// next run then reads that entry's second again, and rows a little late in it are not missed.
pub fn next_watermark(current: Option<i64>, progress: &Progress, run_started: i64) -> Option<i64> {
    let reached = progress.newest_read;
    let covered = match (current, reached) {
        (Some(c), Some(r)) => c.max(r),
        (c, r) => c.or(r)?,
    };
    let held_back = progress.oldest_unhandled.map_or(covered, |u| covered.min(u));
    Some(held_back.min(run_started))
}

/// Whether a sweep is due: none on record, or the last began `interval` ago.
pub fn sweep_due(last_sweep: Option<i64>, now: i64, interval: Duration) -> bool {
    last_sweep.is_none_or(|last| now.saturating_sub(last) >= interval.as_secs() as i64)
}

/// Where a read of an endpoint starts (inclusive), or `None` for the beginning of the trail: an
/// overlap before the watermark, or, while sweeping, before where the sweep has got to (which starts
/// at the beginning).
pub fn read_from(watermark: Option<i64>, overlap: Duration, sweep: Option<SweepAt>) -> Option<i64> {
    let start = match sweep {
        None => watermark,
        Some(SweepAt::Beginning) => None,
        Some(SweepAt::Reached(p)) => Some(watermark.map_or(p, |w| w.min(p))),
    };
    start.map(|s| s.saturating_sub(overlap.as_secs() as i64))
}

/// How far a sweep in progress has read an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepAt {
    Beginning,
    /// Every entry stamped before this was read by the sweep.
    Reached(i64),
}

/// Where the sweep of an endpoint stands after a run that swept it: `None` once it read to the end.
pub fn next_sweep_position(current: SweepAt, progress: &Progress, run_started: i64) -> Option<SweepAt> {
    if progress.complete {
        return None;
    }
    let reached = progress.newest_read.map(|n| n.min(run_started));
    Some(match (current, reached) {
        (SweepAt::Reached(p), Some(r)) => SweepAt::Reached(p.max(r)),
        (SweepAt::Beginning, Some(r)) => SweepAt::Reached(r),
        (current, None) => current,
    })
}

/// What the store holds for the next run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stored {
    pub watermarks: HashMap<EntryKind, i64>,
    /// When the last complete sweep began.
    pub last_sweep: Option<i64>,
    /// A sweep in progress: when it began, and how far it has read each endpoint (absent: not yet).
    pub sweeping_since: Option<i64>,
    pub sweep_positions: HashMap<EntryKind, i64>,
}

impl Stored {
    /// Where this run's sweep starts for an endpoint, when it sweeps.
    pub fn sweep_at(&self, kind: EntryKind) -> SweepAt {
        self.sweep_positions.get(&kind).map_or(SweepAt::Beginning, |p| SweepAt::Reached(*p))
    }
}

/// The store's values as numbers.
pub async fn load(store: &dyn DedupStore, keys: &Keys) -> Result<Stored, StoreError> {
    let mut names: Vec<String> = EntryKind::ALL.iter().map(|k| keys.watermark(*k)).collect();
    names.extend(EntryKind::ALL.iter().map(|k| keys.sweep_position(*k)));
    names.extend([keys.sweep(), keys.sweeping_since()]);
    let values = store.get_many(&names).await?;
    let number = |i: usize| values.get(i).and_then(|v| v.as_deref()).and_then(|v| v.trim().parse::<i64>().ok());
    let n = EntryKind::ALL.len();
    let per_kind = |offset: usize| {
        EntryKind::ALL
            .iter()
            .enumerate()
            .filter_map(|(i, k)| number(offset + i).map(|v| (*k, v)))
            .collect()
    };
    Ok(Stored {
        watermarks: per_kind(0),
        sweep_positions: per_kind(n),
        last_sweep: number(2 * n),
        sweeping_since: number(2 * n + 1),
    })
}

/// Writes `(key, value)` pairs and deletes `(key, value it holds)` pairs, giving up at `until`.
pub async fn save(
    store: &dyn DedupStore,
    writes: &[(String, String)],
    deletes: &[(String, String)],
    until: Option<Instant>,
) -> Result<(), StoreError> {
    let all = async {
        for (key, value) in writes {
            store.put(key, value, None).await?;
        }
        for (key, value) in deletes {
            // A release deletes a key only while it holds the given value: here, what we read.
            let delete = crate::dedup::Settlement {
                releases: vec![key.clone()],
                ..Default::default()
            };
            store.settle(&delete, value).await?;
        }
        Ok(())
    };
    match until {
        Some(at) => tokio::time::timeout_at(at.into(), all).await.unwrap_or_else(|_| {
            Err(StoreError {
                location: store.describe(),
                detail: "no time left before the deadline to write the watermark".into(),
            })
        }),
        None => all.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn progress(complete: bool, newest_read: Option<i64>, oldest_unhandled: Option<i64>) -> Progress {
        Progress {
            complete,
            newest_read,
            oldest_unhandled,
        }
    }

    #[test]
    fn the_watermark_moves_to_the_newest_entry_read_but_never_past_our_own_clock() {
        assert_eq!(
            next_watermark(Some(NOW - 3_600), &progress(true, Some(NOW - 60), None), NOW),
            Some(NOW - 60)
        );
        // A node an hour ahead stamped a row NOW + 3600: the watermark stops at our own clock.
        let p = progress(true, Some(NOW + 3_600), None);
        assert_eq!(next_watermark(Some(NOW - 3_600), &p, NOW), Some(NOW));
        // A quiet Kong: nothing read, nothing moves.
        assert_eq!(
            next_watermark(Some(NOW - 3_600), &progress(true, None, None), NOW),
            Some(NOW - 3_600)
        );
        assert_eq!(next_watermark(None, &progress(true, None, None), NOW), None);
    }

    #[test]
    fn a_watermark_left_in_the_future_is_pulled_back_to_our_clock() {
        assert_eq!(next_watermark(Some(NOW + 3_300), &progress(false, None, None), NOW), Some(NOW));
    }

    #[test]
    fn an_entry_not_handled_holds_the_watermark_back_even_below_the_current_one() {
        let p = progress(true, Some(NOW - 10), Some(NOW - 500));
        assert_eq!(next_watermark(None, &p, NOW), Some(NOW - 500));
        assert_eq!(next_watermark(Some(NOW - 400), &p, NOW), Some(NOW - 500));
        // A future row that failed holds nothing back beyond our clock.
        let p = progress(true, Some(NOW + 3_600), Some(NOW + 3_600));
        assert_eq!(next_watermark(Some(NOW - 400), &p, NOW), Some(NOW));
    }

    #[test]
    fn a_read_stopped_early_moves_only_as_far_as_it_claimed_and_never_back() {
        // Stopped at the budget after claiming up to NOW - 2000: entries after it are unread.
        let p = progress(false, Some(NOW - 2_000), None);
        assert_eq!(next_watermark(Some(NOW - 5_000), &p, NOW), Some(NOW - 2_000));
        // A run that read only the overlap before stopping keeps what earlier runs established.
        let p = progress(false, Some(NOW - 5_100), None);
        assert_eq!(next_watermark(Some(NOW - 5_000), &p, NOW), Some(NOW - 5_000));
        // Nothing read, nothing known.
        assert_eq!(next_watermark(None, &progress(false, None, None), NOW), None);
        assert_eq!(next_watermark(Some(NOW - 5), &progress(false, None, None), NOW), Some(NOW - 5));
    }

    #[test]
    fn a_sweep_is_due_without_a_record_or_after_the_interval() {
        let day = Duration::from_secs(86_400);
        assert!(sweep_due(None, NOW, day));
        assert!(!sweep_due(Some(NOW - 86_399), NOW, day));
        assert!(sweep_due(Some(NOW - 86_400), NOW, day));
        // A record from a clock ahead of ours is no reason to never sweep again.
        assert!(!sweep_due(Some(NOW + 10), NOW, day));
    }

    #[test]
    fn reads_start_an_overlap_before_the_watermark_or_where_the_sweep_has_got_to() {
        let overlap = Duration::from_secs(300);
        assert_eq!(read_from(Some(NOW), overlap, None), Some(NOW - 300));
        assert_eq!(read_from(None, overlap, None), None);
        assert_eq!(read_from(Some(NOW), overlap, Some(SweepAt::Beginning)), None);
        assert_eq!(
            read_from(Some(NOW), overlap, Some(SweepAt::Reached(NOW - 5_000))),
            Some(NOW - 5_300)
        );
        // A watermark held back below the sweep's position (a failed entry) is read from.
        assert_eq!(
            read_from(Some(NOW - 9_000), overlap, Some(SweepAt::Reached(NOW - 5_000))),
            Some(NOW - 9_300)
        );
    }

    #[test]
    fn a_sweep_cut_short_goes_on_from_where_it_stopped_and_ends_when_read_to_the_end() {
        let cut = progress(false, Some(NOW - 20_000), None);
        assert_eq!(
            next_sweep_position(SweepAt::Beginning, &cut, NOW),
            Some(SweepAt::Reached(NOW - 20_000))
        );
        let only_the_overlap = progress(false, Some(NOW - 20_100), None);
        assert_eq!(
            next_sweep_position(SweepAt::Reached(NOW - 20_000), &only_the_overlap, NOW),
            Some(SweepAt::Reached(NOW - 20_000)),
            "never back"
        );
        let nothing = progress(false, None, None);
        assert_eq!(next_sweep_position(SweepAt::Beginning, &nothing, NOW), Some(SweepAt::Beginning));
        assert_eq!(
            next_sweep_position(SweepAt::Reached(NOW - 5), &progress(true, None, None), NOW),
            None
        );
        let future = progress(false, Some(NOW + 3_600), None);
        assert_eq!(next_sweep_position(SweepAt::Beginning, &future, NOW), Some(SweepAt::Reached(NOW)));
    }

    #[tokio::test]
    async fn the_store_round_trip_writes_and_deletes() {
        let store = crate::dedup::MemoryStore::new();
        let keys = Keys::new("p:");
        assert_eq!(load(&store, &keys).await.unwrap(), Stored::default());
        let writes = [
            (keys.watermark(EntryKind::Object), NOW.to_string()),
            (keys.sweep(), (NOW - 1).to_string()),
            (keys.sweep_position(EntryKind::Request), (NOW - 7).to_string()),
            (keys.sweeping_since(), (NOW - 9).to_string()),
            (keys.sweep_position(EntryKind::Object), (NOW - 8).to_string()),
        ];
        save(&store, &writes, &[], None).await.unwrap();
        let deletes = [(keys.sweep_position(EntryKind::Object), (NOW - 8).to_string())];
        save(&store, &[], &deletes, None).await.unwrap();
        let stored = load(&store, &keys).await.unwrap();
        assert_eq!(stored.watermarks.get(&EntryKind::Object), Some(&NOW));
        assert_eq!(stored.watermarks.get(&EntryKind::Request), None);
        assert_eq!(stored.last_sweep, Some(NOW - 1));
        assert_eq!(stored.sweeping_since, Some(NOW - 9));
        assert_eq!(stored.sweep_at(EntryKind::Request), SweepAt::Reached(NOW - 7));
        assert_eq!(stored.sweep_at(EntryKind::Object), SweepAt::Beginning);
    }
}
