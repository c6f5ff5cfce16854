//! The store's clock. Acceptances are stamped, and judged, by the one clock every run and reconcile
//! shares, whatever their machines' clocks say: a backfill from a laptop an hour behind must not
//! make what it shipped a minute ago look an hour old to the Lambda's repair, which would send it
//! again while the destination is still ingesting it.

use std::time::Duration;

use super::DedupStore;

/// The store's clock, as read through this machine's: measured once, then read without a round trip.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreClock {
    /// The store's clock less this machine's, in milliseconds.
    offset_ms: i64,
}

/// A difference worth a warning: the machine's clock, not the store's, is usually the one astray.
const WARN_OFFSET_MS: i64 = 60_000;

impl StoreClock {
    /// Asks the store for its time. Where it cannot tell, this machine's clock stands in (said in a
    /// warning): nothing can be marked in a store that does not answer anyway.
    pub async fn measure(store: &dyn DedupStore) -> StoreClock {
        let before = local_ms();
        match store.clock_ms().await {
            Ok(at) => {
                let offset_ms = at - (before + local_ms()) / 2;
                if offset_ms.abs() >= WARN_OFFSET_MS {
                    tracing::warn!(
                        offset_seconds = offset_ms / 1_000,
                        "this machine's clock differs from the store's: acceptances are stamped by the store's"
                    );
                }
                StoreClock { offset_ms }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the store's clock could not be read: this machine's stands in");
                StoreClock::default()
            }
        }
    }

    /// The store's time now, in milliseconds.
    pub fn now_ms(&self) -> i64 {
        local_ms() + self.offset_ms
    }

    /// The store's time now, in whole seconds.
    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1_000)
    }

    /// Waits for the store's next whole second, and returns it. Marks record acceptance in whole
    /// seconds: whatever is asked from the start of that second on is asked after everything stamped
    /// before it was accepted.
    pub async fn next_second(&self) -> i64 {
        let now = self.now_ms();
        let next = now.div_euclid(1_000) + 1;
        tokio::time::sleep(Duration::from_millis((next * 1_000 - now) as u64)).await;
        next
    }
}

fn local_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::MemoryStore;

    #[tokio::test]
    async fn the_next_second_is_a_whole_second_after_now_and_reached_before_it_is_returned() {
        let clock = StoreClock::measure(&MemoryStore::default()).await;
        let before = clock.now_ms();
        let second = clock.next_second().await;
        assert!(second * 1_000 > before && second * 1_000 - before <= 1_000, "{before} → {second}");
        assert!(clock.now_ms() >= second * 1_000);
    }

    #[tokio::test]
    async fn it_reads_the_stores_clock_however_far_this_machines_is_off() {
        for offset in [3_600, -3_600] {
            let store = MemoryStore::default();
            store.set_clock_offset(offset);
            let clock = StoreClock::measure(&store).await;
            let want = chrono::Utc::now().timestamp() + offset;
            assert!((clock.now() - want).abs() <= 1, "{} against {want}", clock.now());
        }
    }
}
