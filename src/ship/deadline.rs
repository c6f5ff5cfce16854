//! The time a run has: when it stops claiming, when it stops putting, and by when each step of its
//! tail must be done. Pure; the instants are on the monotonic clock.
//!
//! A run that reaches `finish_by` still has puts in flight, outcomes to commit, dead letters to
//! send and a watermark to write, and `end` (the Lambda's deadline) kills it wherever it is. The tail
//! from `finish_by` to `end` is shared out so that commits come first: a put that CloudTrail
//! accepted and whose commit is lost ships again in the next run.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// No new page is claimed from here on.
    pub stop_claiming_at: Instant,
    /// No new put starts from here on; what is not shipped by then is released.
    pub finish_by: Instant,
    /// The run is over (the Lambda is killed) here.
    pub end: Instant,
    /// The time the run has: until the deadline, or the `max_run` budget when that is unknown.
    pub budget: Duration,
    pub deadline_known: bool,
}

/// By when each step after `finish_by` must be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// A put still in flight is abandoned (its claims released) here.
    pub puts_until: Instant,
    /// Dead letters not stored by then leave their entries released, not marked rejected.
    pub letters_until: Instant,
    /// Last moment to write commits and releases (retries included).
    pub settle_until: Instant,
    /// Last moment to write the watermark.
    pub watermark_until: Instant,
}

/// Turns the invocation's deadline (epoch ms) into the run's limits.
///
/// A deadline of zero, or one already passed at the start, means "unknown" (local emulators send
/// 1970): the run then has `max_run`, which is also the budget of `run` from a shell. It stops
/// claiming `margin` before the end and must be done putting `margin / 2` before it. A margin of
/// more than half the time available is cut to half, so that a short budget still leaves time to work.
pub fn run_limits(deadline_ms: u64, now_wall: SystemTime, now: Instant, margin: Duration, max_run: Duration) -> RunLimits {
    let deadline = UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let remaining = deadline.duration_since(now_wall).ok().filter(|d| deadline_ms > 0 && !d.is_zero());
    let (budget, deadline_known) = match remaining {
        Some(r) => (r, true),
        None => (max_run, false),
    };
    let margin = margin.min(budget / 2);
    RunLimits {
        stop_claiming_at: now + (budget - margin),
        finish_by: now + (budget - margin / 2),
        end: now + budget,
        budget,
        deadline_known,
    }
}

impl RunLimits {
    /// A budget of `max_run` from now (the CLI's `run`, with no deadline of its own).
    pub fn budget(max_run: Duration, margin: Duration) -> RunLimits {
        run_limits(0, SystemTime::now(), Instant::now(), margin, max_run)
    }

    /// The tail: puts get the first 35 % of it, dead letters end at 75 %, commits and releases at
    /// 90 %, the watermark at 95 %; the rest is slack for the process to report and exit.
    pub fn tail(&self) -> Tail {
        let span = self.end.saturating_duration_since(self.finish_by);
        let at = |share: f64| self.finish_by + span.mul_f64(share);
        Tail {
            puts_until: at(0.35),
            letters_until: at(0.75),
            settle_until: at(0.90),
            watermark_until: at(0.95),
        }
    }
}

/// The earlier of two optional instants.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn limits(deadline_ms: u64, now_ms: u64, margin: u64, max: u64) -> (RunLimits, Instant) {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_millis(now_ms);
        (run_limits(deadline_ms, wall, now, S(margin), S(max)), now)
    }

    #[test]
    fn a_real_deadline_gives_stop_at_deadline_less_margin_and_finish_at_half_the_margin() {
        let now_ms = 1_763_700_000_000;
        let (l, now) = limits(now_ms + 900_000, now_ms, 60, 840);
        assert!(l.deadline_known);
        assert_eq!(l.budget, S(900));
        assert_eq!(l.stop_claiming_at - now, S(840));
        assert_eq!(l.finish_by - now, S(870));
        assert_eq!(l.end - now, S(900));
    }

    #[test]
    fn a_deadline_in_the_past_or_zero_is_unknown_and_max_run_applies() {
        let now_ms = 1_763_700_000_000;
        for deadline in [0, 1_000, now_ms - 1, now_ms] {
            let (l, now) = limits(deadline, now_ms, 60, 840);
            assert!(!l.deadline_known, "deadline {deadline}");
            assert_eq!(l.budget, S(840));
            assert_eq!(l.stop_claiming_at - now, S(780));
            assert_eq!(l.finish_by - now, S(810));
        }
    }

    #[test]
    fn a_margin_longer_than_half_the_time_is_cut_to_half() {
        let now_ms = 1_763_700_000_000;
        let (l, now) = limits(now_ms + 30_000, now_ms, 60, 840);
        assert_eq!(l.stop_claiming_at - now, S(15));
        assert_eq!(l.finish_by - now, Duration::from_millis(22_500));
        let (l, now) = limits(0, now_ms, 60, 3);
        assert_eq!(l.stop_claiming_at - now, Duration::from_millis(1_500));
        assert!(l.finish_by > l.stop_claiming_at && l.finish_by - now < S(3));
    }

    #[test]
    fn sub_second_deadlines_count() {
        let now_ms = 1_763_700_000_000;
        let (l, now) = limits(now_ms + 800, now_ms, 0, 840);
        assert!(l.deadline_known);
        assert_eq!(l.finish_by - now, Duration::from_millis(800));
    }

    #[test]
    fn the_tail_puts_commits_before_letters_and_the_watermark_and_ends_before_the_deadline() {
        let now_ms = 1_763_700_000_000;
        let (l, _) = limits(now_ms + 900_000, now_ms, 60, 840);
        let t = l.tail();
        assert!(l.finish_by < t.puts_until);
        assert!(t.puts_until < t.letters_until && t.letters_until < t.settle_until);
        assert!(t.settle_until < t.watermark_until && t.watermark_until < l.end);
        // With the default margin of 60 s the tail is 30 s: an abandoned put leaves 19.5 s to commit.
        assert_eq!(t.puts_until - l.finish_by, Duration::from_millis(10_500));
        assert_eq!(t.settle_until - t.puts_until, Duration::from_millis(16_500));
        assert_eq!(l.end - t.watermark_until, Duration::from_millis(1_500));
    }

    #[test]
    fn earliest_of_two_optional_instants() {
        let now = Instant::now();
        let later = now + S(1);
        assert_eq!(earliest(Some(later), Some(now)), Some(now));
        assert_eq!(earliest(None, Some(now)), Some(now));
        assert_eq!(earliest(Some(later), None), Some(later));
        assert_eq!(earliest(None, None), None);
    }
}
