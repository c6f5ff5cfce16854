//! Capped exponential backoff with jitter, shared by the Kong client and the sink.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Total tries, the first one included.
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(20),
            attempts: 8,
        }
    }
}

impl Backoff {
    /// The wait before retry number `retry` (1 for the first retry): half fixed, half random,
    /// so that concurrent runs that failed together do not retry together.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, fastrand::f64())
    }

    /// `delay` with its random half chosen by `jitter` (0 to 1): what is retried together draws
    /// one `jitter` for all of it.
    pub fn delay_with(&self, retry: u32, jitter: f64) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let base = exp.min(self.max);
        let half = base / 2;
        half + half.mul_f64(jitter)
    }

    /// `delay`, but never less than what the server asked for, and never past `deadline`.
    /// `None` means: no time is left for another try.
    pub fn wait(&self, retry: u32, server_hint: Option<Duration>, deadline: Option<Instant>) -> Option<Duration> {
        if retry >= self.attempts {
            return None;
        }
        let mut wait = self.delay(retry);
        if let Some(hint) = server_hint {
            wait = wait.max(hint.min(Duration::from_secs(300)));
        }
        match deadline {
            Some(d) if Instant::now() + wait >= d => None,
            _ => Some(wait),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            attempts: 10,
        };
        for retry in 1..10 {
            let d = b.delay(retry);
            let cap = (Duration::from_millis(100) * (1 << (retry - 1))).min(Duration::from_secs(1));
            assert!(d >= cap / 2 && d <= cap, "retry {retry}: {d:?} not in [{:?}, {cap:?}]", cap / 2);
        }
    }

    #[test]
    fn wait_honours_server_hint_attempts_and_deadline() {
        let b = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(20),
            attempts: 3,
        };
        assert!(b.wait(1, Some(Duration::from_secs(2)), None).unwrap() >= Duration::from_secs(2));
        assert!(b.wait(3, None, None).is_none(), "no try past the attempt budget");
        let soon = Instant::now() + Duration::from_millis(500);
        assert!(
            b.wait(1, Some(Duration::from_secs(2)), Some(soon)).is_none(),
            "no wait past the deadline"
        );
    }
}
