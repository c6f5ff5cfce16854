//! Settling: what each entry's delivery came to becomes store writes and dead letters.
//!
//! Order matters when time runs out: commits of what the destination accepted and releases of
//! what it did not go first (a shipped entry left unmarked ships again), dead letters after, and
//! only a stored letter lets its entry be marked rejected; an unstored one is released instead,
//! so the entry is read again rather than lost.

use std::time::{Duration, Instant};

use super::Run;
use super::claim::{Item, parts_record};
use crate::dead_letter::{DeadLetter, DeadLetterError};
use crate::dedup::{Commit, Mark, Settlement, StoreError};
use crate::summary::Counters;

/// What became of an entry in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Every event of the entry is stored.
    Shipped,
    /// The destination already held every event of the entry (a store rebuilt from it): marked, not sent.
    Found,
    /// Refused for good (or not mappable): dead-lettered, with this code and reason.
    Rejected { code: String, reason: String },
    /// Not shipped in this run, for this reason: released for the next run.
    Failed(String),
}

/// How long a mark outlives Kong's row. Kong's `ttl` is whole seconds and its clock is not ours: a
/// mark that lapses before its row lets the row ship again, while one that outlives the row by a
/// minute or two costs nothing.
pub const MARK_GRACE_SECONDS: u64 = 120;
/// A mark for a row Kong served as already expired (`ttl` ≤ 0: a node's clock ahead of the
/// database's, or a cleanup not yet run): kept long enough that reading it again does not ship it
/// again, whatever Kong's cleanup interval.
pub const EXPIRED_ROW_MARK_SECONDS: u64 = 86_400;

/// Seconds to keep an entry's mark: Kong's `ttl` as read (0: expired), less the whole seconds since
/// it was read, plus `MARK_GRACE_SECONDS`, so the mark never dies before Kong's row however long the
/// run took.
pub fn commit_ttl(ttl_read: u64, since_read: Duration) -> u64 {
    if ttl_read == 0 {
        return EXPIRED_ROW_MARK_SECONDS;
    }
    ttl_read.saturating_sub(since_read.as_secs()) + MARK_GRACE_SECONDS
}

/// The first write for a set of outcomes: marks for shipped (and found) entries, records of the parts
/// accepted so far for entries shipped in parts and not yet whole (rejected ones too: a redrive must
/// not send again what the destination took), releases for everything not shipped. Rejected entries
/// are marked once their letter is stored. `accepted_at` (epoch seconds) is when the destination
/// answered.
pub fn first_write(
    resolved: &[(Item, Resolution)],
    now: Instant,
    accepted_at: i64,
    run: &str,
    parts_key: impl Fn(&Item) -> String,
) -> Settlement {
    let mut s = Settlement::default();
    for (item, resolution) in resolved {
        let ttl = commit_ttl(item.ttl, now.saturating_duration_since(item.read_at));
        let record_parts = |s: &mut Settlement| {
            if let Some(sha) = item.parts_sha256.as_ref().filter(|_| item.any_accepted()) {
                s.records
                    .push((parts_key(item), parts_record(sha, &item.accepted, accepted_at), ttl));
            }
        };
        match resolution {
            Resolution::Shipped => s.marks.push((
                item.key.clone(),
                Mark::Shipped {
                    at: accepted_at,
                    run: run.to_string(),
                },
                ttl,
            )),
            Resolution::Found => s.marks.push((item.key.clone(), Mark::Found, ttl)),
            Resolution::Failed(_) => {
                record_parts(&mut s);
                s.releases.push(item.key.clone());
            }
            Resolution::Rejected { .. } => record_parts(&mut s),
        }
    }
    s
}

/// Records the outcomes of a set of entries: commits and releases, then dead letters and the
/// rejected marks. Never fails: what cannot be recorded is said, and stops the run's puts.
pub async fn settle(run: &Run, resolved: Vec<(Item, Resolution)>) {
    if resolved.is_empty() {
        return;
    }
    let c = &run.counters;
    let tail = run.tail();
    let accepted_at = run.store_clock.now();
    let run_id = run.token.strip_prefix(crate::dedup::CLAIM_PREFIX).unwrap_or(&run.token);
    let first = first_write(&resolved, Instant::now(), accepted_at, run_id, |item| {
        run.keys.parts(item.entry.kind, &item.entry.key)
    });
    let shipped = resolved.iter().filter(|(_, r)| *r == Resolution::Shipped).count();
    let found = resolved.iter().filter(|(_, r)| *r == Resolution::Found).count();
    let mut failed_problems: Vec<&str> = Vec::new();
    for (item, resolution) in &resolved {
        if let Resolution::Failed(why) = resolution {
            run.unhandled(item.entry.kind, item.timestamp, item.event_time);
            failed_problems.push(why);
        }
    }
    Counters::add(&c.shipped, shipped);
    Counters::add(&c.already_shipped, found);
    Counters::add(&c.rebuilt, found);
    Counters::add(&c.failed, failed_problems.len());
    if let Some(why) = failed_problems.first() {
        tracing::warn!(entries = failed_problems.len(), problem = %why, "entries not shipped in this run; released for the next run");
    }
    if let Err(e) = write(run, &first, tail.map(|t| t.settle_until)).await {
        let why = super::ShipError::Unrecorded {
            shipped: shipped + found,
            lease: run.opts.lease.as_secs(),
            source: e,
        };
        // Said even when another error stopped the run first: it explains later duplicates.
        tracing::error!(entries = shipped, "{why}");
        run.abort_puts(why);
    }

    let rejected: Vec<&(Item, Resolution)> = resolved.iter().filter(|(_, r)| matches!(r, Resolution::Rejected { .. })).collect();
    if rejected.is_empty() {
        return;
    }
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let letters: Vec<DeadLetter> = rejected
        .iter()
        .map(|(item, resolution)| {
            let Resolution::Rejected { code, reason } = resolution else {
                unreachable!("filtered above")
            };
            DeadLetter {
                kind: item.entry.kind,
                key: item.entry.key.clone(),
                code: code.clone(),
                reason: reason.clone(),
                at: at.clone(),
                entry: item.entry.raw.clone(),
            }
        })
        .collect();
    letters.iter().for_each(crate::dead_letter::log_letter);
    let stored = if !run.opts.claim {
        Ok(())
    } else {
        let send = run.dead_letters.send(&letters);
        match tail.map(|t| t.letters_until) {
            Some(until) => tokio::time::timeout_at(until.into(), send)
                .await
                .unwrap_or(Err(DeadLetterError::OutOfTime)),
            None => send.await,
        }
    };
    let now = Instant::now();
    let mut second = Settlement::default();
    match &stored {
        Ok(()) => {
            Counters::add(&c.rejected, rejected.len());
            for ((item, _), letter) in rejected.iter().zip(letters) {
                let ttl = commit_ttl(item.ttl, now.saturating_duration_since(item.read_at));
                second.marks.push((item.key.clone(), Mark::Rejected(letter.code), ttl));
            }
        }
        Err(e) => {
            // A letter that cannot be stored is not marked: the entry stays unshipped and is read again.
            tracing::warn!(entries = rejected.len(), problem = %format!("cannot dead-letter: {e}"), "entries not shipped in this run; released for the next run");
            Counters::add(&c.failed, rejected.len());
            for (item, _) in &rejected {
                run.unhandled(item.entry.kind, item.timestamp, item.event_time);
                second.releases.push(item.key.clone());
            }
        }
    }
    if let Err(e) = write(run, &second, tail.map(|t| t.settle_until)).await {
        tracing::error!(entries = rejected.len(), error = %e, "dead-lettered entries could not be marked rejected; they will be refused and dead-lettered again");
    }
}

/// One settlement, retried a few times within `until`; reports commits that did not go as planned.
async fn write(run: &Run, settlement: &Settlement, until: Option<Instant>) -> Result<(), StoreError> {
    if !run.opts.claim || settlement.is_empty() {
        return Ok(());
    }
    let mut tries = 0;
    let commits = loop {
        tries += 1;
        Counters::add(&run.counters.store_round_trips, 1);
        let attempt = run.store.settle(settlement, &run.token);
        let result = match until {
            Some(at) => tokio::time::timeout_at(at.into(), attempt).await.unwrap_or_else(|_| {
                Err(StoreError {
                    location: run.store.describe(),
                    detail: "no time left before the deadline".into(),
                })
            }),
            None => attempt.await,
        };
        match result {
            Ok(commits) => break commits,
            Err(e) => match run.opts.backoff.wait(tries, None, until).filter(|_| tries < 4) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(e),
            },
        }
    };
    let lapsed = commits.iter().filter(|c| **c == Commit::LeaseLapsed).count();
    if lapsed > 0 {
        tracing::warn!(
            entries = lapsed,
            lease_seconds = run.opts.lease.as_secs(),
            "claims lapsed before their entries were committed; nothing else held them, so they are marked now"
        );
    }
    let lost: Vec<&str> = commits
        .iter()
        .filter_map(|c| match c {
            Commit::Lost(holder) => Some(holder.as_str()),
            _ => None,
        })
        .collect();
    if let Some(holder) = lost.first() {
        tracing::warn!(
            entries = lost.len(),
            now_held_by = %holder,
            lease_seconds = run.opts.lease.as_secs(),
            "claims lapsed before their entries were committed and another run took them: they may be shipped twice (raise CLAIM_LEASE_SECONDS)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kong::EntryKind;

    fn item(key: &str, ttl: u64, read_at: Instant, parts: usize) -> Item {
        let mut item = Item::for_test(EntryKind::Object, key, &vec![1; parts]);
        item.key = format!("p:object:{key}");
        (item.ttl, item.read_at) = (ttl, read_at);
        item.parts_sha256 = (parts > 1).then(|| "sha".to_string());
        item
    }

    #[test]
    fn marks_expire_with_kongs_row_however_long_the_run_took() {
        let g = MARK_GRACE_SECONDS;
        assert!((30..=120).contains(&g));
        assert_eq!(commit_ttl(1_000, Duration::ZERO), 1_000 + g);
        // Kong's whole-second ttl may be up to a second short, and the run's elapsed time is
        // measured here: the grace covers both, so the mark never lapses first.
        assert_eq!(commit_ttl(1_000, Duration::from_millis(1_999)), 999 + g);
        assert_eq!(commit_ttl(1_000, Duration::from_secs(232)), 768 + g);
        assert_eq!(commit_ttl(10, Duration::from_secs(60)), g, "past its row: the grace is left");
        assert_eq!(
            commit_ttl(0, Duration::ZERO),
            EXPIRED_ROW_MARK_SECONDS,
            "a row served already expired"
        );
    }

    #[test]
    fn shipped_entries_are_marked_failed_ones_released_with_their_accepted_parts_recorded() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_millis(2_500);
        let shipped = item("a", 100, t0, 1);
        let mut half = item("b", 100, t0, 3);
        half.accepted = vec![true, false, true];
        let none = item("c", 100, t0, 3);
        let rejected = item("d", 100, t0, 1);
        let mut rejected_in_parts = item("e", 100, t0, 2);
        rejected_in_parts.accepted = vec![true, false];
        let resolved = vec![
            (
                rejected_in_parts,
                Resolution::Rejected {
                    code: "InvalidData".into(),
                    reason: "part 2 refused".into(),
                },
            ),
            (shipped, Resolution::Shipped),
            (half, Resolution::Failed("Throttling".into())),
            (none, Resolution::Failed("deadline".into())),
            (
                rejected,
                Resolution::Rejected {
                    code: "InvalidData".into(),
                    reason: "x".into(),
                },
            ),
        ];
        let s = first_write(&resolved, now, 1_700_000_000, "r1", |i| format!("parts:{}", i.entry.key));
        let ttl = 98 + MARK_GRACE_SECONDS;
        let shipped = Mark::Shipped {
            at: 1_700_000_000,
            run: "r1".into(),
        };
        assert_eq!(s.marks, vec![("p:object:a".to_string(), shipped, ttl)]);
        assert_eq!(
            s.records,
            vec![
                ("parts:e".to_string(), "sha:1@1700000000".to_string(), ttl),
                ("parts:b".to_string(), "sha:1,3@1700000000".to_string(), ttl)
            ],
            "parts the destination took are recorded, for a rejected entry too (its redrive sends only the rest)"
        );
        assert_eq!(s.releases, vec!["p:object:b".to_string(), "p:object:c".to_string()]);
    }
}
