//! Paces PutAuditEvents calls under CloudTrail's quota, shared by every batch of a run: calls are
//! spaced at most `rate` per second, the spacing grows on throttling and shrinks back on success.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Pacer {
    fastest: Duration,
    slowest: Duration,
    state: Mutex<(Duration, Instant)>,
}

impl Pacer {
    pub fn new(calls_per_second: f64) -> Pacer {
        let fastest = Duration::from_secs_f64(1.0 / calls_per_second.max(0.001));
        Pacer {
            fastest,
            slowest: Duration::from_secs(2).max(fastest),
            state: Mutex::new((fastest, Instant::now())),
        }
    }

    /// Waits for this call's slot.
    pub async fn wait(&self) {
        let slot = {
            let mut state = self.state.lock().unwrap();
            let (interval, next) = *state;
            let slot = next.max(Instant::now());
            state.1 = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }

    /// CloudTrail throttled a call or an event: space calls out by half again.
    pub fn throttled(&self) {
        let mut state = self.state.lock().unwrap();
        state.0 = state.0.mul_f64(1.5).min(self.slowest);
    }

    /// A call went through: creep back towards the configured rate.
    pub fn succeeded(&self) {
        let mut state = self.state.lock().unwrap();
        state.0 = state.0.mul_f64(0.95).max(self.fastest);
    }

    pub fn interval(&self) -> Duration {
        self.state.lock().unwrap().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_slows_and_success_recovers_within_bounds() {
        let p = Pacer::new(100.0);
        assert_eq!(p.interval(), Duration::from_millis(10));
        for _ in 0..50 {
            p.throttled();
        }
        assert_eq!(p.interval(), Duration::from_secs(2));
        for _ in 0..500 {
            p.succeeded();
        }
        assert_eq!(p.interval(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn calls_are_spaced() {
        let p = Pacer::new(10.0);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            p.wait().await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(400) && took < Duration::from_millis(500), "{took:?}");
    }
}
