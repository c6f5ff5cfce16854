//! What the destination holds of this shipper's events, entry by entry, and what that means for each
//! of Kong's entries (the verdict is a pure function, tested below).
//!
//! Entries are told apart by kind and `UID` (the entry's key, as the mapping writes it), kept as a
//! 128-bit digest so a million of them fit in a few tens of MiB. An entry is held whole (an event
//! carrying the whole entry), or in parts (`kongAuditEntryPart` of `kongAuditEntryParts`).

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::dedup::KeyState;
use crate::kong::EntryKind;

/// Entries whose `eventTime` falls in `[since, until)`, epoch seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Scope {
    pub since: i64,
    pub until: i64,
}

impl Scope {
    pub fn contains(&self, t: i64) -> bool {
        t >= self.since && t < self.until
    }
}

/// One row of the destination's answer: events of one entry (and part) with the same fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldEvents {
    pub kind: EntryKind,
    pub uid: String,
    /// `kongAuditEntryPart`, for an entry shipped in parts.
    pub part: Option<u32>,
    /// `kongAuditEntryParts`, for an entry shipped in parts.
    pub parts: Option<u32>,
    /// The event's `eventTime`, epoch seconds, when known.
    pub event_time: Option<i64>,
    /// How many such events the destination holds (more than one: duplicates).
    pub count: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Held {
    /// Events carrying the whole entry.
    whole: u32,
    /// For an entry in parts: how many parts it has (the largest `kongAuditEntryParts` seen).
    parts_total: u32,
    /// Some event of the entry has an `eventTime` inside the scope (else it only pads the query).
    in_scope: bool,
    /// A Kong entry was matched to it.
    matched: bool,
}

/// The most parts an entry can have and still be tracked part by part (an entry of 24 MB).
const MAX_TRACKED_PARTS: u32 = 1_000;

/// What the destination holds, by entry.
#[derive(Debug, Default)]
pub struct Holdings {
    scope: Option<Scope>,
    entries: HashMap<u128, Held>,
    /// Per entry held in parts: how many events of each part (index 0 is part 1).
    parts: HashMap<u128, Vec<u64>>,
    /// Events the destination holds, all told.
    pub events: u64,
    /// Rows that are not this shipper's events (no kind, no `UID`), or name an impossible part.
    pub unreadable: u64,
    /// Entries of the trail the destination holds nothing of (few: the held ones are noted in
    /// `entries`), so that one read twice is judged once.
    unheld_seen: HashSet<u128>,
}

/// The digest an entry is known by: its kind and its `UID`.
pub fn entry_digest(kind: EntryKind, uid: &str) -> u128 {
    let mut hash = Sha256::new();
    hash.update(kind.as_str().as_bytes());
    hash.update([0]);
    hash.update(uid.as_bytes());
    let digest = hash.finalize();
    u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"))
}

impl Holdings {
    /// Empty holdings for entries of `scope`; rows outside it (the queries are padded) still count
    /// when a Kong entry matches them, but never as extra events.
    pub fn new(scope: Scope) -> Holdings {
        Holdings {
            scope: Some(scope),
            ..Holdings::default()
        }
    }

    pub fn add(&mut self, row: &HeldEvents) {
        self.events += row.count;
        let valid_part = match (row.part, row.parts) {
            (None, _) => true,
            (Some(p), total) => (1..=MAX_TRACKED_PARTS).contains(&p) && total.is_none_or(|t| p <= t && t <= MAX_TRACKED_PARTS),
        };
        if row.uid.is_empty() || !valid_part {
            self.unreadable += row.count;
            return;
        }
        let digest = entry_digest(row.kind, &row.uid);
        let in_scope = match (self.scope, row.event_time) {
            (Some(scope), Some(t)) => scope.contains(t),
            _ => true,
        };
        let held = self.entries.entry(digest).or_default();
        held.in_scope |= in_scope;
        match row.part {
            None => held.whole = held.whole.saturating_add(u32::try_from(row.count).unwrap_or(u32::MAX)),
            Some(part) => {
                held.parts_total = held.parts_total.max(row.parts.unwrap_or(part)).max(part);
                let counts = self.parts.entry(digest).or_default();
                if counts.len() < part as usize {
                    counts.resize(part as usize, 0);
                }
                counts[part as usize - 1] += row.count;
            }
        }
    }

    /// Adds everything another answer (another store, another slice of time) holds. The smaller
    /// map goes into the larger: one day of a busy trail must not be held twice.
    pub fn merge(&mut self, mut other: Holdings) {
        if other.entries.len() > self.entries.len() {
            std::mem::swap(&mut self.entries, &mut other.entries);
            std::mem::swap(&mut self.parts, &mut other.parts);
        }
        self.events += other.events;
        self.unreadable += other.unreadable;
        for (digest, theirs) in other.entries {
            let held = self.entries.entry(digest).or_default();
            held.whole = held.whole.saturating_add(theirs.whole);
            held.parts_total = held.parts_total.max(theirs.parts_total);
            held.in_scope |= theirs.in_scope;
        }
        for (digest, theirs) in other.parts {
            let counts = self.parts.entry(digest).or_default();
            if counts.len() < theirs.len() {
                counts.resize(theirs.len(), 0);
            }
            for (i, n) in theirs.into_iter().enumerate() {
                counts[i] += n;
            }
        }
    }

    /// How many entries the destination holds something of.
    pub fn entries(&self) -> usize {
        self.entries.len()
    }

    /// What the destination holds of one entry, noting that the trail has it; `None` when the
    /// trail had it before (a source may serve an entry twice: Konnect's windows share their
    /// bounds, and a cursor counting positions serves one again after an insert ahead of it).
    pub fn find_first(&mut self, kind: EntryKind, uid: &str) -> Option<Holding> {
        let digest = entry_digest(kind, uid);
        match self.entries.get_mut(&digest) {
            Some(held) if held.matched => return None,
            Some(held) => held.matched = true,
            None if !self.unheld_seen.insert(digest) => return None,
            None => {}
        }
        Some(self.holding(digest))
    }

    /// What the destination holds of one entry, without noting anything.
    pub fn peek(&self, kind: EntryKind, uid: &str) -> Holding {
        self.holding(entry_digest(kind, uid))
    }

    fn holding(&self, digest: u128) -> Holding {
        let Some(held) = self.entries.get(&digest) else {
            return Holding::Nothing;
        };
        if held.whole > 0 {
            return Holding::Whole;
        }
        let counts = self.parts.get(&digest).map(Vec::as_slice).unwrap_or(&[]);
        let missing: Vec<u32> = (1..=held.parts_total)
            .filter(|p| counts.get(*p as usize - 1).copied().unwrap_or(0) == 0)
            .collect();
        if missing.is_empty() {
            Holding::Whole
        } else {
            Holding::Parts {
                total: held.parts_total,
                missing,
            }
        }
    }

    /// Events beyond one per entry (or per part): what a lost answer or a lost store shipped twice.
    pub fn duplicates(&self) -> u64 {
        let whole: u64 = self.entries.values().map(|h| u64::from(h.whole.saturating_sub(1))).sum();
        let parts: u64 = self.parts.values().flatten().map(|n| n.saturating_sub(1)).sum();
        let both: u64 = self
            .entries
            .iter()
            .filter(|(_, h)| h.whole > 0)
            .filter_map(|(d, _)| self.parts.get(d))
            .flatten()
            .sum();
        whole + parts + both
    }

    /// Entries the destination holds in the scope that no Kong entry matched: entries Kong has
    /// deleted since (or never had: another shipper's).
    pub fn unmatched(&self) -> u64 {
        self.entries.values().filter(|h| h.in_scope && !h.matched).count() as u64
    }
}

/// What the destination holds of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    Nothing,
    /// Whole, or every one of its parts.
    Whole,
    /// Some of its parts: these are missing.
    Parts {
        total: u32,
        missing: Vec<u32>,
    },
}

/// What reconciliation found for one of Kong's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The destination holds it (every part).
    Found,
    /// The destination holds nothing of it.
    Missing,
    /// The destination holds some of its parts; these are missing.
    Partial { missing_parts: Vec<u32> },
    /// Not in the destination yet, but accepted (or being shipped) less than the settle time ago:
    /// the destination may still be ingesting it. Neither missing nor repaired.
    Pending,
    /// Refused for good by the destination and dead-lettered, with this code: in the dead-letter
    /// queue, not in the destination (`redrive` sends it once the cause is fixed).
    DeadLettered(String),
}

/// The verdict on one entry: what the destination holds, and, where it lacks something, what the
/// store says of it. `parts_record_time`: when the store last recorded parts of it as accepted.
/// `now`: the whole second from which this reconcile asked the destination.
pub fn judge(held: Holding, store: Option<&KeyState>, parts_record_time: Option<i64>, now: i64, settle: i64) -> Status {
    let lacking = match held {
        Holding::Whole => return Status::Found,
        Holding::Nothing => Status::Missing,
        Holding::Parts { missing, .. } => Status::Partial { missing_parts: missing },
    };
    // Accepted in the second the destination was first asked or later, the answer may predate it (a
    // repair running beside this one ships in that time); accepted up to `settle` before, the
    // destination may still be ingesting it.
    let recent = |t: i64| t >= now - settle;
    match store {
        Some(KeyState::Claimed(_)) => Status::Pending,
        Some(KeyState::Shipped { at: Some(t) }) if recent(*t) => Status::Pending,
        Some(KeyState::Rejected(code)) => Status::DeadLettered(code.clone()),
        _ if parts_record_time.is_some_and(recent) => Status::Pending,
        _ => lacking,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;
    const SETTLE: i64 = 900;

    fn row(kind: EntryKind, uid: &str, part: Option<(u32, u32)>, count: u64) -> HeldEvents {
        HeldEvents {
            kind,
            uid: uid.into(),
            part: part.map(|p| p.0),
            parts: part.map(|p| p.1),
            event_time: Some(NOW - 10),
            count,
        }
    }

    fn scope() -> Scope {
        Scope {
            since: NOW - 3_600,
            until: NOW,
        }
    }

    #[test]
    fn entries_are_found_by_kind_and_uid_whole_or_by_every_part() {
        let mut h = Holdings::new(scope());
        h.add(&row(EntryKind::Request, "r1", None, 1));
        h.add(&row(EntryKind::Object, "o1", Some((1, 3)), 1));
        h.add(&row(EntryKind::Object, "o1", Some((3, 3)), 1));
        h.add(&row(EntryKind::Object, "o2", Some((2, 2)), 1));
        h.add(&row(EntryKind::Object, "o2", Some((1, 2)), 1));
        assert_eq!(h.find_first(EntryKind::Request, "r1"), Some(Holding::Whole));
        assert_eq!(
            h.find_first(EntryKind::Object, "r1"),
            Some(Holding::Nothing),
            "the kind is part of the identity"
        );
        assert_eq!(
            h.find_first(EntryKind::Object, "o1"),
            Some(Holding::Parts {
                total: 3,
                missing: vec![2]
            })
        );
        assert_eq!(h.find_first(EntryKind::Object, "o2"), Some(Holding::Whole));
        assert_eq!(h.find_first(EntryKind::Request, "r1"), None, "an entry read twice is judged once");
        assert_eq!(h.find_first(EntryKind::Object, "r1"), None, "so is one the destination lacks");
        assert_eq!(h.events, 5);
        assert_eq!(h.duplicates(), 0);
    }

    #[test]
    fn duplicates_and_entries_kong_no_longer_has_are_counted_apart() {
        let mut h = Holdings::new(scope());
        h.add(&row(EntryKind::Request, "r1", None, 2));
        h.add(&row(EntryKind::Request, "gone", None, 1));
        let mut outside = row(EntryKind::Request, "padding", None, 1);
        outside.event_time = Some(NOW + 10);
        h.add(&outside);
        h.add(&row(EntryKind::Object, "o1", Some((1, 2)), 2));
        h.add(&row(EntryKind::Object, "o1", Some((2, 2)), 1));
        assert_eq!(h.duplicates(), 2);
        h.find_first(EntryKind::Request, "r1");
        h.find_first(EntryKind::Object, "o1");
        assert_eq!(h.unmatched(), 1, "the row outside the scope only pads the query");
    }

    #[test]
    fn answers_merge_across_stores_and_slices() {
        let mut a = Holdings::new(scope());
        a.add(&row(EntryKind::Object, "o1", Some((1, 2)), 1));
        let mut b = Holdings::new(scope());
        b.add(&row(EntryKind::Object, "o1", Some((2, 2)), 1));
        a.merge(b);
        assert_eq!(a.peek(EntryKind::Object, "o1"), Holding::Whole);
        assert_eq!(a.events, 2);
    }

    #[test]
    fn rows_that_are_not_ours_are_set_aside() {
        let mut h = Holdings::new(scope());
        h.add(&row(EntryKind::Request, "", None, 3));
        h.add(&row(EntryKind::Object, "o", Some((0, 2)), 1));
        h.add(&row(EntryKind::Object, "o", Some((3, 2)), 1));
        assert_eq!((h.unreadable, h.entries()), (5, 0));
    }

    #[test]
    fn what_is_lacking_is_pending_while_the_destination_may_still_be_ingesting_it() {
        let shipped = |at| KeyState::Shipped { at: Some(at) };
        let parts = |m: Vec<u32>| Holding::Parts { total: 3, missing: m };
        assert_eq!(judge(Holding::Whole, None, None, NOW, SETTLE), Status::Found);
        assert_eq!(judge(Holding::Nothing, None, None, NOW, SETTLE), Status::Missing);
        assert_eq!(
            judge(Holding::Nothing, Some(&shipped(NOW - 60)), None, NOW, SETTLE),
            Status::Pending
        );
        assert_eq!(
            judge(Holding::Nothing, Some(&shipped(NOW - 901)), None, NOW, SETTLE),
            Status::Missing
        );
        // Marks of older versions carry no time: accepted long ago.
        assert_eq!(
            judge(Holding::Nothing, Some(&KeyState::Shipped { at: None }), None, NOW, SETTLE),
            Status::Missing
        );
        assert_eq!(judge(Holding::Nothing, Some(&KeyState::Found), None, NOW, SETTLE), Status::Missing);
        assert_eq!(
            judge(Holding::Nothing, Some(&KeyState::Claimed("r".into())), None, NOW, SETTLE),
            Status::Pending
        );
        assert_eq!(
            judge(Holding::Nothing, Some(&KeyState::Rejected("InvalidData".into())), None, NOW, SETTLE),
            Status::DeadLettered("InvalidData".into())
        );
        assert_eq!(
            judge(parts(vec![2]), None, None, NOW, SETTLE),
            Status::Partial { missing_parts: vec![2] }
        );
        assert_eq!(judge(parts(vec![2]), None, Some(NOW - 5), NOW, SETTLE), Status::Pending);
        assert_eq!(
            judge(parts(vec![2]), Some(&shipped(NOW - 5_000)), Some(NOW - 5_000), NOW, SETTLE),
            Status::Partial { missing_parts: vec![2] }
        );
        // Accepted after the destination was asked (by a repair beside this one), even with no
        // settle time: the answer cannot show it, so it is not missing, and its mark is not released.
        assert_eq!(judge(Holding::Nothing, Some(&shipped(NOW)), None, NOW, 0), Status::Pending);
        assert_eq!(judge(parts(vec![2]), None, Some(NOW), NOW, 0), Status::Pending);
        assert_eq!(judge(Holding::Nothing, Some(&shipped(NOW - 1)), None, NOW, 0), Status::Missing);
        // An acceptance stamped by a clock ahead of ours is recent, not missing.
        assert_eq!(
            judge(Holding::Nothing, Some(&shipped(NOW + 3_600)), None, NOW, SETTLE),
            Status::Pending
        );
    }
}
