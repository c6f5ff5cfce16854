//! A store that comes back empty is rebuilt from the destination, not re-shipped.
//!
//! The store keeps a record of its own life (`<prefix>store:life`, no expiry): `whole@<t>` once it
//! holds a mark for everything shipped, `rebuilding@<t>` from the moment a rebuild begins at `t`
//! until a run has read the whole trail with nothing left for later (so a rebuild cut short never
//! leaves watermarks that make the store look whole). A run that finds no record (a failover to a replica without the
//! data, a rebuilt cluster, a `FLUSHALL`, a first install beside another shipper) asks the
//! destination what it holds for the window Kong holds, and marks those entries instead of sending
//! them. What the destination does not show yet may still be on its way in (it ingests in minutes):
//! when the destination holds anything at all, a rebuilding run leaves those entries for a run at
//! least `settle` later, which asks again; then the store is whole. A destination that cannot be
//! asked leaves the run to ship only the overlap, fail, and name the fix.

use std::sync::Arc;

use super::claim::Keys;
use crate::dedup::{DedupStore, StoreError, Swap};
use crate::reconcile::Holdings;

/// What the store's record of its own life says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// No record: a store that was lost, or never used by this version.
    Unknown,
    /// Holds a mark for everything shipped, since this time.
    Whole { since: i64 },
    /// Rebuilt from the destination at this time; entries it did not show then wait for a second look.
    Rebuilding { since: i64 },
}

impl Life {
    pub fn parse(value: Option<&str>) -> Life {
        let Some(value) = value else { return Life::Unknown };
        let parsed = |prefix: &str| value.strip_prefix(prefix).and_then(|t| t.parse::<i64>().ok());
        if let Some(since) = parsed("whole@") {
            Life::Whole { since }
        } else if let Some(since) = parsed("rebuilding@") {
            Life::Rebuilding { since }
        } else {
            Life::Unknown
        }
    }

    pub fn render(&self) -> Option<String> {
        match self {
            Life::Unknown => None,
            Life::Whole { since } => Some(format!("whole@{since}")),
            Life::Rebuilding { since } => Some(format!("rebuilding@{since}")),
        }
    }
}

/// What one run does about the store's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The store is whole: ship.
    Ship,
    /// No record, but the store holds the watermarks of earlier runs: it was not lost, it was kept
    /// by a version that wrote no record. Record it whole and ship.
    Adopt,
    /// Ask the destination, mark what it holds, ship the rest, or leave it for a later run
    /// (`defer`) when the destination may still be ingesting it.
    Rebuild { defer: bool },
}

/// The plan for a run that starts at `now`, given the record, whether any watermark survived, and
/// (once asked) whether the destination holds anything.
pub fn plan(life: Life, watermarks_survived: bool, destination_holds_anything: bool, now: i64, settle: i64) -> Plan {
    match life {
        Life::Whole { .. } => Plan::Ship,
        Life::Unknown if watermarks_survived => Plan::Adopt,
        // A destination that holds nothing of ours received nothing we could ship twice.
        Life::Unknown => Plan::Rebuild {
            defer: destination_holds_anything && settle > 0,
        },
        Life::Rebuilding { since } => Plan::Rebuild {
            defer: destination_holds_anything && now < since.saturating_add(settle),
        },
    }
}

/// The record after a run that read the whole trail: whole, unless it left entries for later.
pub fn after_rebuild(life: Life, deferred: u64, run_started: i64) -> Life {
    match (life, deferred) {
        (_, 0) => Life::Whole { since: run_started },
        (Life::Rebuilding { since }, _) => Life::Rebuilding { since },
        _ => Life::Rebuilding { since: run_started },
    }
}

pub async fn load(store: &dyn DedupStore, keys: &Keys) -> Result<Life, StoreError> {
    Ok(Life::parse(store.get(&keys.life()).await?.as_deref()))
}

/// Moves the record from `from` to `to`, unless another run moved it first.
pub async fn save(store: &dyn DedupStore, keys: &Keys, from: Life, to: Life) -> Result<bool, StoreError> {
    let Some(value) = to.render() else { return Ok(false) };
    let swap = Swap {
        key: keys.life(),
        expected: from.render(),
        new: Some((value, None)),
    };
    Ok(store.swap(&[swap]).await?.first().copied().unwrap_or(false))
}

/// What the destination holds, as the cycle's claim stage uses it.
#[derive(Debug)]
pub struct Known {
    pub holdings: Arc<Holdings>,
    /// Entries the destination does not hold are left for a later run.
    pub defer_unfound: bool,
    /// Only these entries (by `reconcile::entry_digest` of kind and key) are handled; `None`: all.
    pub only: Option<std::collections::HashSet<u128>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn the_record_round_trips_and_anything_else_reads_as_unknown() {
        for life in [Life::Whole { since: NOW }, Life::Rebuilding { since: NOW }] {
            assert_eq!(Life::parse(life.render().as_deref()), life);
        }
        assert_eq!(Life::parse(None), Life::Unknown);
        assert_eq!(Life::parse(Some("whole@x")), Life::Unknown);
        assert_eq!(Life::Unknown.render(), None);
    }

    #[test]
    fn a_lost_store_is_rebuilt_and_what_may_still_be_ingesting_waits() {
        assert_eq!(plan(Life::Whole { since: 1 }, false, true, NOW, 900), Plan::Ship);
        assert_eq!(
            plan(Life::Unknown, true, true, NOW, 900),
            Plan::Adopt,
            "watermarks survived: not lost"
        );
        assert_eq!(plan(Life::Unknown, false, true, NOW, 900), Plan::Rebuild { defer: true });
        assert_eq!(
            plan(Life::Unknown, false, false, NOW, 900),
            Plan::Rebuild { defer: false },
            "a first install: nothing was shipped"
        );
        assert_eq!(plan(Life::Unknown, false, true, NOW, 0), Plan::Rebuild { defer: false });
        let begun = Life::Rebuilding { since: NOW - 100 };
        assert_eq!(
            plan(begun, true, true, NOW, 900),
            Plan::Rebuild { defer: true },
            "too soon to look again"
        );
        assert_eq!(plan(begun, true, true, NOW + 800, 900), Plan::Rebuild { defer: false });
    }

    #[test]
    fn the_record_is_whole_once_nothing_was_left_for_later() {
        assert_eq!(after_rebuild(Life::Unknown, 0, NOW), Life::Whole { since: NOW });
        assert_eq!(after_rebuild(Life::Unknown, 3, NOW), Life::Rebuilding { since: NOW });
        let begun = Life::Rebuilding { since: NOW - 100 };
        assert_eq!(after_rebuild(begun, 3, NOW), begun, "the wait counts from the first look");
        assert_eq!(after_rebuild(begun, 0, NOW), Life::Whole { since: NOW });
    }
}
