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
//!
//! A source read in windows (Konnect's audit log, `windows`) uses the same positions, but what a run
//! has read up to is the end of the last window it walked whole, never its newest entry: Konnect's
//! pages come newest first, so the newest entry is met on a walk's first page.

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
    /// Newest `request_timestamp` among the entries this run claimed (or tried to); for a source
    /// read in windows, the end of the newest window walked whole.
    pub newest_read: Option<i64>,
    /// Oldest time (`Entry::timestamp`) of an entry read and not handled (failed, or held by another run).
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

/// A point of an endpoint's trail (a watermark, or how far a sweep got), and when the run that got
/// there read the entries just below it. Stored as `<at>@<read_at>` (or `<at>` from older versions).
///
/// The overlap is there for rows that reach Kong's table after their region was read: stamped by a
/// clock a little behind, or inserted a little late, they can be at most `overlap` older than the
/// moment they appear. So the region below a point needs reading again only as far as it lies within
/// `overlap` of when it was read: after a run that stopped in an old backlog, the next one goes on
/// where it stopped instead of spending its time on the overlap again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub at: i64,
    pub read_at: Option<i64>,
}

impl Position {
    pub fn parse(text: &str) -> Option<Position> {
        let (at, read_at) = match text.trim().split_once('@') {
            Some((at, read_at)) => (at, Some(read_at.parse().ok()?)),
            None => (text.trim(), None),
        };
        Some(Position {
            at: at.parse().ok()?,
            read_at,
        })
    }

    pub fn render(&self) -> String {
        match self.read_at {
            Some(t) => format!("{}@{t}", self.at),
            None => self.at.to_string(),
        }
    }

    /// Where a read that must not miss late rows below this point starts (inclusive).
    pub fn resume_from(&self, overlap: Duration) -> i64 {
        let o = overlap.as_secs() as i64;
        match self.read_at {
            Some(t) => self.at.min(self.at.saturating_sub(o).max(t.saturating_sub(o))),
            None => self.at.saturating_sub(o),
        }
    }
}

/// The next watermark of an endpoint, or `None` to leave it as it is.
///
/// What is known handled: everything below the current watermark (earlier runs), and everything this
/// run read up to the newest entry it claimed. The next watermark is the end of that, held back to
/// the oldest entry not handled, and never past `run_started` (the shipper's clock when the run
/// began). It stays at the newest entry rather than moving to the end of a complete read: the
/// next run then reads that entry's second again, and rows a little late in it are not missed.
/// `read_at` is when this run read, by Kong's clock (the one that stamps rows), as near as known.
pub fn next_watermark(current: Option<Position>, progress: &Progress, run_started: i64, read_at: i64) -> Option<Position> {
    let covered = match (current.map(|c| c.at), progress.newest_read) {
        (Some(c), Some(r)) => c.max(r),
        (c, r) => c.or(r)?,
    };
    let held_back = progress.oldest_unhandled.map_or(covered, |u| covered.min(u));
    // This run read the region below the new watermark when it read up to (or past) the old one.
    let reread = progress.newest_read.is_some_and(|n| current.is_none_or(|c| n >= c.at));
    Some(Position {
        at: held_back.min(run_started),
        read_at: if reread { Some(read_at) } else { current.and_then(|c| c.read_at) },
    })
}

/// How often incremental runs read the whole trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// A day, or half of Kong's retention when that is shorter.
    Default,
    /// As set (`SWEEP_INTERVAL_SECONDS`; zero: every run).
    Every(Duration),
    /// Never (tests of what the watermark alone does).
    Never,
}

/// The default sweep interval where Kong keeps rows long enough.
pub const DEFAULT_SWEEP: Duration = Duration::from_secs(86_400);

/// The interval a run sweeps at, given Kong's `audit_log_record_ttl`. A row stamped further behind
/// than the overlap is only caught by a sweep, and only if the sweep comes before Kong deletes it:
/// with sweeps at most half the retention apart, every row is read by one while Kong still has it.
/// An interval set longer than that is refused, naming both.
pub fn sweep_interval(sweep: Sweep, record_ttl: i64) -> Result<Option<Duration>, String> {
    let half = Duration::from_secs((record_ttl.max(2) / 2) as u64);
    match sweep {
        Sweep::Never => Ok(None),
        Sweep::Default => Ok(Some(DEFAULT_SWEEP.min(half))),
        Sweep::Every(every) if every > half => Err(format!(
            "SWEEP_INTERVAL_SECONDS ({} s) is longer than half of Kong's audit_log_record_ttl ({record_ttl} s): rows stamped behind the overlap would expire before a sweep reads them; set it to {} s or less, or leave it unset",
            every.as_secs(),
            half.as_secs()
        )),
        Sweep::Every(every) => Ok(Some(every)),
    }
}

/// Whether a sweep is due: none on record, or the last began `interval` ago.
pub fn sweep_due(last_sweep: Option<i64>, now: i64, interval: Duration) -> bool {
    last_sweep.is_none_or(|last| now.saturating_sub(last) >= interval.as_secs() as i64)
}

/// How far a sweep in progress has read an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepAt {
    Beginning,
    /// Every entry stamped before this point was read by the sweep.
    Reached(Position),
}

/// Where a read of an endpoint starts (inclusive), or `None` for the beginning of the trail: before
/// the watermark, or, while sweeping, before where the sweep has got to (if that is earlier).
pub fn read_from(watermark: Option<Position>, overlap: Duration, sweep: Option<SweepAt>) -> Option<i64> {
    let after_watermark = watermark.map(|w| w.resume_from(overlap));
    match sweep {
        None => after_watermark,
        Some(SweepAt::Beginning) => None,
        Some(SweepAt::Reached(p)) => {
            let after_sweep = p.resume_from(overlap);
            Some(after_watermark.map_or(after_sweep, |w| w.min(after_sweep)))
        }
    }
}

/// Where the sweep of an endpoint stands after a run that swept it: `None` once it read to the end.
/// `read_at` as for `next_watermark`.
pub fn next_sweep_position(current: SweepAt, progress: &Progress, run_started: i64, read_at: i64) -> Option<SweepAt> {
    if progress.complete {
        return None;
    }
    let reached = progress.newest_read.map(|n| n.min(run_started));
    let moved = |at| {
        SweepAt::Reached(Position {
            at,
            read_at: Some(read_at),
        })
    };
    Some(match (current, reached) {
        (SweepAt::Reached(p), Some(r)) if r > p.at => moved(r),
        (SweepAt::Beginning, Some(r)) => moved(r),
        (current, _) => current,
    })
}

/// What the store holds for the next run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stored {
    pub watermarks: HashMap<EntryKind, Position>,
    /// When the last complete sweep began.
    pub last_sweep: Option<i64>,
    /// A sweep in progress: when it began, and how far it has read each endpoint (absent: not yet).
    pub sweeping_since: Option<i64>,
    pub sweep_positions: HashMap<EntryKind, Position>,
}

impl Stored {
    /// Where this run's sweep starts for an endpoint, when it sweeps.
    pub fn sweep_at(&self, kind: EntryKind) -> SweepAt {
        self.sweep_positions.get(&kind).map_or(SweepAt::Beginning, |p| SweepAt::Reached(*p))
    }
}

/// The positions of the source whose entries are of `kinds`.
pub async fn load(store: &dyn DedupStore, keys: &Keys, kinds: &[EntryKind]) -> Result<Stored, StoreError> {
    let mut names: Vec<String> = kinds.iter().map(|k| keys.watermark(*k)).collect();
    names.extend(kinds.iter().map(|k| keys.sweep_position(*k)));
    names.extend([keys.sweep(), keys.sweeping_since()]);
    let values = store.get_many(&names).await?;
    let text = |i: usize| values.get(i).and_then(|v| v.as_deref());
    let number = |i: usize| text(i).and_then(|v| v.trim().parse::<i64>().ok());
    let n = kinds.len();
    let per_kind = |offset: usize| {
        kinds
            .iter()
            .enumerate()
            .filter_map(|(i, k)| text(offset + i).and_then(Position::parse).map(|p| (*k, p)))
            .collect()
    };
    Ok(Stored {
        watermarks: per_kind(0),
        sweep_positions: per_kind(n),
        last_sweep: number(2 * n),
        sweeping_since: number(2 * n + 1),
    })
}

/// Sets the floor: no run that respects it reads entries stamped before `since`. For a store that
/// was lost (a new Redis): without it, the first run would ship Kong's whole retained trail again.
pub async fn set_floor(store: &dyn DedupStore, keys: &Keys, since: i64) -> Result<(), StoreError> {
    store.put(&keys.floor(), &since.to_string(), None).await
}

/// The floor, if one was set.
pub async fn floor(store: &dyn DedupStore, keys: &Keys) -> Result<Option<i64>, StoreError> {
    Ok(store.get(&keys.floor()).await?.and_then(|v| v.trim().parse().ok()))
}

/// Applies the moves of the watermarks and the sweep, each only while its key still holds what this
/// run read at its start (two runs at once never put back a position the other moved on from);
/// gives up at `until`. Returns the keys another run had moved meanwhile.
pub async fn save(store: &dyn DedupStore, swaps: &[crate::dedup::Swap], until: Option<Instant>) -> Result<Vec<String>, StoreError> {
    if swaps.is_empty() {
        return Ok(Vec::new());
    }
    let all = store.swap(swaps);
    let applied = match until {
        Some(at) => tokio::time::timeout_at(at.into(), all).await.unwrap_or_else(|_| {
            Err(StoreError {
                location: store.describe(),
                detail: "no time left before the deadline to write the watermark".into(),
            })
        })?,
        None => all.await?,
    };
    Ok(swaps
        .iter()
        .zip(applied)
        .filter(|(_, applied)| !applied)
        .map(|(swap, _)| swap.key.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::Swap;

    const NOW: i64 = 1_700_000_000;
    const OVERLAP: Duration = Duration::from_secs(300);

    fn progress(complete: bool, newest_read: Option<i64>, oldest_unhandled: Option<i64>) -> Progress {
        Progress {
            complete,
            newest_read,
            oldest_unhandled,
        }
    }

    fn at(at: i64) -> Option<Position> {
        Some(Position { at, read_at: None })
    }

    fn next(current: Option<Position>, p: Progress) -> Option<i64> {
        next_watermark(current, &p, NOW, NOW).map(|w| w.at)
    }

    #[test]
    fn the_watermark_moves_to_the_newest_entry_read_but_never_past_our_own_clock() {
        assert_eq!(next(at(NOW - 3_600), progress(true, Some(NOW - 60), None)), Some(NOW - 60));
        // A node an hour ahead stamped a row NOW + 3600: the watermark stops at our own clock.
        assert_eq!(next(at(NOW - 3_600), progress(true, Some(NOW + 3_600), None)), Some(NOW));
        // A quiet Kong: nothing read, nothing moves.
        assert_eq!(next(at(NOW - 3_600), progress(true, None, None)), Some(NOW - 3_600));
        assert_eq!(next(None, progress(true, None, None)), None);
    }

    #[test]
    fn a_watermark_left_in_the_future_is_pulled_back_to_our_clock() {
        assert_eq!(next(at(NOW + 3_300), progress(false, None, None)), Some(NOW));
    }

    #[test]
    fn an_entry_not_handled_holds_the_watermark_back_even_below_the_current_one() {
        let p = progress(true, Some(NOW - 10), Some(NOW - 500));
        assert_eq!(next(at(NOW - 400), p), Some(NOW - 500));
        assert_eq!(next(None, p), Some(NOW - 500));
        // A future row that failed holds nothing back beyond our clock.
        assert_eq!(next(at(NOW - 400), progress(true, Some(NOW + 3_600), Some(NOW + 3_600))), Some(NOW));
    }

    #[test]
    fn a_read_stopped_early_moves_only_as_far_as_it_claimed_and_never_back() {
        assert_eq!(next(at(NOW - 5_000), progress(false, Some(NOW - 2_000), None)), Some(NOW - 2_000));
        // A run that read only the overlap before stopping keeps what earlier runs established.
        assert_eq!(next(at(NOW - 5_000), progress(false, Some(NOW - 5_100), None)), Some(NOW - 5_000));
        assert_eq!(next(None, progress(false, None, None)), None);
        assert_eq!(next(at(NOW - 5), progress(false, None, None)), Some(NOW - 5));
    }

    #[test]
    fn a_watermark_remembers_when_its_region_was_read() {
        let old = Some(Position {
            at: NOW - 5_000,
            read_at: Some(NOW - 3_600),
        });
        let reached = next_watermark(old, &progress(false, Some(NOW - 2_000), None), NOW, NOW).unwrap();
        assert_eq!(reached.read_at, Some(NOW), "read up to it in this run");
        let fell_short = next_watermark(old, &progress(false, Some(NOW - 5_100), None), NOW, NOW).unwrap();
        assert_eq!(fell_short.read_at, Some(NOW - 3_600), "not read again: the old time stands");
    }

    #[test]
    fn positions_round_trip_and_older_plain_values_still_parse() {
        let p = Position {
            at: NOW,
            read_at: Some(NOW + 5),
        };
        assert_eq!(Position::parse(&p.render()), Some(p));
        assert_eq!(Position::parse("1700000000"), at(NOW));
        assert_eq!(Position::parse("junk"), None);
        assert_eq!(Position::parse("1@junk"), None);
    }

    #[test]
    fn the_overlap_is_read_again_only_where_rows_could_still_arrive_late() {
        // Read just now up to a recent entry: rows may still land below it.
        let recent = Position {
            at: NOW - 60,
            read_at: Some(NOW),
        };
        assert_eq!(recent.resume_from(OVERLAP), NOW - 300, "rows can only be late by the overlap");
        // Stopped in an old backlog: nothing can arrive that far back (the sweep is for that).
        let backlog = Position {
            at: NOW - 86_400,
            read_at: Some(NOW),
        };
        assert_eq!(backlog.resume_from(OVERLAP), NOW - 86_400);
        // Partly within the overlap of the read.
        let edge = Position {
            at: NOW - 100,
            read_at: Some(NOW - 60),
        };
        assert_eq!(edge.resume_from(OVERLAP), NOW - 360);
        let edge = Position {
            at: NOW - 300,
            read_at: Some(NOW - 200),
        };
        assert_eq!(edge.resume_from(OVERLAP), NOW - 500);
        // Unknown read time (older versions): the whole overlap.
        assert_eq!(at(NOW - 86_400).unwrap().resume_from(OVERLAP), NOW - 86_700);
    }

    #[test]
    fn the_sweep_comes_at_least_twice_within_kongs_retention() {
        let day = Duration::from_secs(86_400);
        assert_eq!(sweep_interval(Sweep::Default, 2_592_000), Ok(Some(day)));
        assert_eq!(
            sweep_interval(Sweep::Default, 36_000),
            Ok(Some(Duration::from_secs(18_000))),
            "half a 10 h retention"
        );
        assert_eq!(sweep_interval(Sweep::Every(Duration::ZERO), 60), Ok(Some(Duration::ZERO)));
        assert_eq!(sweep_interval(Sweep::Never, 60), Ok(None));
        let refused = sweep_interval(Sweep::Every(day), 86_400).unwrap_err();
        assert!(
            refused.contains("SWEEP_INTERVAL_SECONDS (86400 s)") && refused.contains("audit_log_record_ttl (86400 s)"),
            "{refused}"
        );
    }

    #[test]
    fn positions_record_when_they_were_read_by_kongs_clock() {
        // Our clock an hour ahead of Kong's: rows may still land in the overlap before Kong's now.
        let w = next_watermark(None, &progress(true, Some(NOW - 3_660), None), NOW, NOW - 3_600).unwrap();
        assert_eq!(w.read_at, Some(NOW - 3_600));
        assert_eq!(w.resume_from(OVERLAP), NOW - 3_600 - 300);
        // By our own clock, the overlap would have been spent already: nothing read again.
        let ours = next_watermark(None, &progress(true, Some(NOW - 3_660), None), NOW, NOW).unwrap();
        assert_eq!(ours.resume_from(OVERLAP), NOW - 3_660);
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
    fn reads_start_before_the_watermark_or_where_the_sweep_has_got_to() {
        let w = Some(Position {
            at: NOW,
            read_at: Some(NOW),
        });
        assert_eq!(read_from(w, OVERLAP, None), Some(NOW - 300));
        assert_eq!(read_from(None, OVERLAP, None), None);
        assert_eq!(read_from(w, OVERLAP, Some(SweepAt::Beginning)), None);
        let swept = SweepAt::Reached(Position {
            at: NOW - 5_000,
            read_at: Some(NOW - 10),
        });
        assert_eq!(read_from(w, OVERLAP, Some(swept)), Some(NOW - 5_000));
        // A watermark held back below the sweep's position (a failed entry) is read from.
        assert_eq!(read_from(at(NOW - 9_000), OVERLAP, Some(swept)), Some(NOW - 9_300));
    }

    #[test]
    fn a_sweep_cut_short_goes_on_from_where_it_stopped_and_ends_when_read_to_the_end() {
        let reached = |at| Some(SweepAt::Reached(Position { at, read_at: Some(NOW) }));
        let cut = progress(false, Some(NOW - 20_000), None);
        assert_eq!(next_sweep_position(SweepAt::Beginning, &cut, NOW, NOW), reached(NOW - 20_000));
        let before = SweepAt::Reached(Position {
            at: NOW - 20_000,
            read_at: Some(NOW - 3_600),
        });
        let only_the_overlap = progress(false, Some(NOW - 20_100), None);
        assert_eq!(next_sweep_position(before, &only_the_overlap, NOW, NOW), Some(before), "never back");
        let nothing = progress(false, None, None);
        assert_eq!(
            next_sweep_position(SweepAt::Beginning, &nothing, NOW, NOW),
            Some(SweepAt::Beginning)
        );
        assert_eq!(next_sweep_position(before, &progress(true, None, None), NOW, NOW), None);
        let future = progress(false, Some(NOW + 3_600), None);
        assert_eq!(next_sweep_position(SweepAt::Beginning, &future, NOW, NOW), reached(NOW));
    }

    #[tokio::test]
    async fn the_store_round_trip_writes_and_deletes() {
        let store = crate::dedup::MemoryStore::new();
        let keys = Keys::new("p:");
        assert_eq!(load(&store, &keys, &EntryKind::ALL).await.unwrap(), Stored::default());
        let p = |at| Position {
            at,
            read_at: Some(NOW + 1),
        };
        let writes = [
            (keys.watermark(EntryKind::Object), p(NOW).render()),
            (keys.sweep(), (NOW - 1).to_string()),
            (keys.sweep_position(EntryKind::Request), p(NOW - 7).render()),
            (keys.sweeping_since(), (NOW - 9).to_string()),
            (keys.sweep_position(EntryKind::Object), p(NOW - 8).render()),
        ];
        let creates: Vec<Swap> = writes.iter().map(|(k, v)| Swap::create(k.clone(), v.clone(), None)).collect();
        assert!(save(&store, &creates, None).await.unwrap().is_empty());
        let deletes = [Swap::delete(keys.sweep_position(EntryKind::Object), p(NOW - 8).render())];
        assert!(save(&store, &deletes, None).await.unwrap().is_empty());
        // A run that read a position another run has moved since does not put it back.
        let stale = Swap {
            key: keys.watermark(EntryKind::Object),
            expected: Some(p(NOW - 100).render()),
            new: Some((p(NOW - 50).render(), None)),
        };
        assert_eq!(save(&store, &[stale], None).await.unwrap(), vec![keys.watermark(EntryKind::Object)]);
        let stored = load(&store, &keys, &EntryKind::ALL).await.unwrap();
        assert_eq!(stored.watermarks.get(&EntryKind::Object), Some(&p(NOW)));
        assert_eq!(stored.watermarks.get(&EntryKind::Request), None);
        assert_eq!(stored.last_sweep, Some(NOW - 1));
        assert_eq!(stored.sweeping_since, Some(NOW - 9));
        assert_eq!(stored.sweep_at(EntryKind::Request), SweepAt::Reached(p(NOW - 7)));
        assert_eq!(stored.sweep_at(EntryKind::Object), SweepAt::Beginning);
    }
}
