//! Delivering: claimed entries are packed into calls to the sink's limits, paced, put, and read
//! back event by event. Events the destination throttled or failed rejoin the queue and go out in
//! the next full call, not as calls of their own; every other outcome goes to `settle`.
//!
//! Pacing is additive increase, multiplicative decrease: a call answered in full raises the rate a
//! little, a call with a share of its events throttled lowers it in proportion to that share, a
//! whole call throttled halves it. A steady 5 % of throttled events costs a few percent of the rate,
//! not a fall to the slowest pace.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::Run;
use super::claim::{Item, claim_chunk};
use super::deadline::earliest;
use super::read::Chunk;
use super::settle::{Resolution, settle};
use crate::event::AuditEvent;
use crate::retry::Backoff;
use crate::sink::{CallLimits, PutReport, Refusal, RefusalKind, SinkError};
use crate::summary::Counters;

/// How long an entry may be only throttled before this run gives up on it (it is released).
pub const THROTTLE_PATIENCE: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------- pacing

/// What a call told us about the destination's capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// Every event was answered, none throttled.
    Clean,
    /// This share (0..=1) of the call's events was throttled.
    Throttled(f64),
    /// The whole call was throttled (HTTP 429 or a throttling exception).
    CallThrottled,
    /// The call failed for another reason (5xx, network): no news about capacity.
    Failed,
}

/// The slowest pace: one call every two seconds.
const SLOWEST_RATE: f64 = 0.5;

/// The next call rate (calls per second) after a call's signal.
pub fn next_rate(rate: f64, max: f64, signal: Signal) -> f64 {
    let floor = SLOWEST_RATE.min(max);
    let step = max / 20.0;
    let next = match signal {
        Signal::Clean => rate + step,
        Signal::Throttled(share) => rate * (1.0 - share.clamp(0.0, 1.0) / 2.0) + step * (1.0 - share.clamp(0.0, 1.0)),
        Signal::CallThrottled => rate / 2.0,
        Signal::Failed => rate,
    };
    next.clamp(floor, max)
}

/// Spaces calls at the current rate, shared by every call of a run.
pub struct Pacer {
    max: f64,
    /// (calls per second, the next free slot)
    state: Mutex<(f64, Instant)>,
}

impl Pacer {
    pub fn new(max_calls_per_second: f64) -> Pacer {
        let max = max_calls_per_second.max(0.001);
        Pacer {
            max,
            state: Mutex::new((max, Instant::now())),
        }
    }

    /// Waits for this call's slot. Returns `false`, without waiting, when the slot would come after
    /// `until` (the call must not start).
    pub async fn wait(&self, until: Option<Instant>) -> bool {
        let slot = {
            let mut state = self.state.lock().unwrap();
            let (rate, next) = *state;
            let slot = next.max(Instant::now());
            if until.is_some_and(|u| slot >= u) {
                return false;
            }
            state.1 = slot + Duration::from_secs_f64(1.0 / rate);
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
        true
    }

    pub fn observe(&self, signal: Signal) {
        let mut state = self.state.lock().unwrap();
        state.0 = next_rate(state.0, self.max, signal);
    }

    pub fn rate(&self) -> f64 {
        self.state.lock().unwrap().0
    }
}

// ---------------------------------------------------------------- outcomes

/// What became of one event of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    Accepted,
    Throttled(String),
    /// Not stored; a later try may store it.
    Retry(String),
    Refused(Refusal),
}

/// Reads a call's answer event by event. An event in neither list was not stored.
pub fn outcomes(ids: &[&str], answer: &Result<PutReport, SinkError>) -> Vec<EventOutcome> {
    let report = match answer {
        Ok(report) => report,
        Err(SinkError::Throttled(why)) => return vec![EventOutcome::Throttled(why.clone()); ids.len()],
        Err(e) => return vec![EventOutcome::Retry(e.to_string()); ids.len()],
    };
    let ok: HashSet<&str> = report.successful.iter().map(String::as_str).collect();
    let failed: HashMap<&str, &Refusal> = report.failed.iter().map(|r| (r.id.as_str(), r)).collect();
    ids.iter()
        .map(|id| match failed.get(id) {
            // Listed as both stored and refused: the answer cannot be trusted for it; send it again.
            Some(_) if ok.contains(id) => EventOutcome::Retry("listed as both successful and failed".into()),
            None if ok.contains(id) => EventOutcome::Accepted,
            Some(r) => match r.kind {
                RefusalKind::Throttled => EventOutcome::Throttled(r.code.clone()),
                RefusalKind::Retryable => EventOutcome::Retry(r.code.clone()),
                RefusalKind::Permanent => EventOutcome::Refused((*r).clone()),
            },
            None => EventOutcome::Retry("event missing from the answer".into()),
        })
        .collect()
}

/// The capacity signal of a call.
pub fn signal(answer: &Result<PutReport, SinkError>, outcomes: &[EventOutcome]) -> Signal {
    match answer {
        Err(SinkError::Throttled(_)) => Signal::CallThrottled,
        Err(_) => Signal::Failed,
        Ok(_) => {
            let throttled = outcomes.iter().filter(|o| matches!(o, EventOutcome::Throttled(_))).count();
            if throttled == 0 {
                Signal::Clean
            } else {
                Signal::Throttled(throttled as f64 / outcomes.len().max(1) as f64)
            }
        }
    }
}

/// What to do with an entry after a call, given what happened to its events in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Done(Resolution),
    /// Into the next call, as soon as there is one.
    Now,
    /// Into a call, not before then.
    At(Instant),
}

/// When the entries of one answered call go again: one draw of the backoff's jitter for the call,
/// so that entries that failed together are ready together and go out in one call, not one call
/// each as their retry times come.
pub struct RetryTimes<'a> {
    pub now: Instant,
    pub backoff: &'a Backoff,
    jitter: f64,
}

impl<'a> RetryTimes<'a> {
    pub fn new(now: Instant, backoff: &'a Backoff) -> RetryTimes<'a> {
        RetryTimes {
            now,
            backoff,
            jitter: fastrand::f64(),
        }
    }

    /// When retry number `retry` of an entry of this call may start.
    pub fn retry(&self, retry: u32) -> Instant {
        self.now + self.backoff.delay_with(retry, self.jitter)
    }
}

/// Applies a call's outcomes for one entry's events and decides its next step. Throttling only
/// slows an entry down (for up to `THROTTLE_PATIENCE`); other failures use up the backoff's attempts.
pub fn after_call(item: &mut Item, sent: &[(usize, EventOutcome)], times: &RetryTimes) -> Next {
    let now = times.now;
    let mut throttled = None;
    let mut failed = None;
    for (index, outcome) in sent {
        match outcome {
            EventOutcome::Accepted => item.accepted[*index] = true,
            EventOutcome::Refused(r) => {
                return Next::Done(Resolution::Rejected {
                    code: r.code.clone(),
                    reason: r.message.clone(),
                });
            }
            EventOutcome::Throttled(why) => throttled = Some(why.clone()),
            EventOutcome::Retry(why) => failed = Some(why.clone()),
        }
    }
    if item.all_accepted() {
        return Next::Done(Resolution::Shipped);
    }
    if let Some(why) = failed {
        item.failures += 1;
        item.problem = Some(why.clone());
        return if item.failures >= times.backoff.attempts {
            Next::Done(Resolution::Failed(why))
        } else {
            Next::At(times.retry(item.failures))
        };
    }
    if let Some(why) = throttled {
        let since = *item.throttled_since.get_or_insert(now);
        item.problem = Some(why.clone());
        if now.saturating_duration_since(since) >= THROTTLE_PATIENCE {
            return Next::Done(Resolution::Failed(format!("{why} for {} s", THROTTLE_PATIENCE.as_secs())));
        }
        return Next::Now;
    }
    // Only events that did not fit this call are left.
    Next::Now
}

/// Whether an entry's claim has less than the margin left: 60 s, or a quarter of a short lease.
pub fn about_to_lapse(item: &Item, lease: Duration, now: Instant) -> bool {
    let margin = Duration::from_secs(60).min(lease / 4);
    item.claimed_at + lease < now + margin
}

/// A call without the entries whose claims are about to lapse, and those entries.
pub fn split_lapsing(call: Call, lease: Duration, now: Instant) -> (Call, Vec<Item>) {
    let (keep, lapsing): (Call, Call) = call.into_iter().partition(|(item, _)| !about_to_lapse(item, lease, now));
    (keep, lapsing.into_iter().map(|(item, _)| item).collect())
}

// ---------------------------------------------------------------- packing

/// One call: entries and which of their pending events it carries.
pub type Call = Vec<(Item, Vec<usize>)>;

/// Takes the next call off the front of the queue: whole entries while they fit, and, when the first
/// entry alone is larger than a call, as many of its events as fit (the rest stay pending).
pub fn take_call(queue: &mut VecDeque<Item>, limits: CallLimits) -> Call {
    let mut call: Call = Vec::new();
    let (mut events, mut bytes) = (0, 0);
    while let Some(front) = queue.front() {
        let (n, size) = (front.pending_events(), front.pending_bytes());
        let fits = events + n <= limits.max_events && bytes + size <= limits.max_bytes;
        if fits || call.is_empty() {
            let item = queue.pop_front().expect("it has a front");
            let mut indexes = Vec::new();
            for i in item.pending() {
                let fits_one = events < limits.max_events && bytes + item.sizes[i] <= limits.max_bytes;
                let first_of_the_call = indexes.is_empty() && call.is_empty();
                if !(fits_one || first_of_the_call) {
                    break;
                }
                events += 1;
                bytes += item.sizes[i];
                indexes.push(i);
            }
            call.push((item, indexes));
            if !fits {
                break;
            }
        } else {
            break;
        }
    }
    call
}

// ---------------------------------------------------------------- the delivery

/// Entries waiting for a call, calls in flight, and entries waiting to be retried.
pub struct Delivery {
    run: Arc<Run>,
    queue: VecDeque<Item>,
    waiting: Vec<Item>,
    /// Pending events and bytes in `queue` and `waiting`.
    queued: (usize, usize),
    /// Calls, settlements and claims in flight.
    tasks: JoinSet<Finished>,
    /// The tasks that are calls.
    calls: HashSet<tokio::task::Id>,
    /// The claim in flight, if any: one at a time, so entries join the queue in their order.
    claiming: Option<tokio::task::Id>,
}

/// What a task hands back.
enum Finished {
    /// Entries of a call to put again (they go ahead of the queue: they are older).
    Again(Vec<Item>),
    /// Entries newly claimed (they join the end of the queue).
    Claimed(Vec<Item>),
}

impl Delivery {
    pub fn new(run: Arc<Run>) -> Delivery {
        Delivery {
            run,
            queue: VecDeque::new(),
            waiting: Vec::new(),
            queued: (0, 0),
            tasks: JoinSet::new(),
            calls: HashSet::new(),
            claiming: None,
        }
    }

    fn limits(&self) -> CallLimits {
        self.run.sink.limits()
    }

    /// Claims a chunk of the stream in a task of its own, so that calls keep going out meanwhile;
    /// its entries join the queue when it is done. A store that fails stops the run's puts.
    pub fn claim(&mut self, chunk: Chunk) {
        let run = self.run.clone();
        let task = self.tasks.spawn(async move {
            match claim_chunk(&run, chunk).await {
                Ok(items) => Finished::Claimed(items),
                Err(e) => {
                    // A put now could not be recorded and would only come back as a duplicate.
                    run.abort_puts(super::ShipError::Claim(e));
                    Finished::Claimed(Vec::new())
                }
            }
        });
        self.claiming = Some(task.id());
    }

    /// A claim is in flight.
    pub fn claiming(&self) -> bool {
        self.claiming.is_some()
    }

    /// Claimed entries join the queue; those with nothing to send are settled at once.
    fn push(&mut self, items: Vec<Item>) {
        let mut done = Vec::new();
        for item in items {
            if let Some((code, reason)) = item.unshippable.clone() {
                done.push((item, Resolution::Rejected { code, reason }));
            } else if item.found {
                done.push((item, Resolution::Found));
            } else if item.all_accepted() {
                // Every part went out in earlier runs; only the mark was missing.
                done.push((item, Resolution::Shipped));
            } else {
                self.enqueue_back(item);
            }
        }
        self.settle_apart(done);
    }

    fn enqueue_back(&mut self, item: Item) {
        self.queued.0 += item.pending_events();
        self.queued.1 += item.pending_bytes();
        self.queue.push_back(item);
    }

    fn dequeued(&mut self, item: &Item) {
        self.queued.0 -= item.pending_events();
        self.queued.1 -= item.pending_bytes();
    }

    /// Whether more entries may be claimed now: enough are queued to fill every call slot.
    pub fn has_room(&self) -> bool {
        let slots = self.run.opts.put_concurrency.max(1);
        let l = self.limits();
        self.queued.0 < slots * l.max_events && self.queued.1 < slots * l.max_bytes
    }

    /// Nothing queued, waiting or in flight.
    pub fn idle(&self) -> bool {
        self.queue.is_empty() && self.waiting.is_empty() && self.tasks.is_empty()
    }

    fn full_call_queued(&self) -> bool {
        let l = self.limits();
        self.queued.0 >= l.max_events || self.queued.1 >= l.max_bytes
    }

    /// Starts every call that can start now. Calls go out full; once nothing more is coming
    /// (`flush`), a partial call goes out when no call is in flight, so that what those calls fail
    /// joins it. Past `finish_by`, or once puts are aborted, nothing starts: queued entries are released.
    pub fn dispatch(&mut self, flush: bool) {
        let now = Instant::now();
        let run = self.run.clone();
        if run.puts_aborted() || run.limits.is_some_and(|l| now >= l.finish_by) {
            let why = if run.puts_aborted() {
                "the run stopped putting (see the error above)"
            } else {
                "the run's time budget ran out"
            };
            self.give_up_all(why);
            return;
        }
        // Entries whose retry time has come rejoin the front of the queue: they are the oldest.
        let (ready, waiting): (Vec<Item>, Vec<Item>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|i| i.not_before.is_none_or(|t| t <= now));
        self.waiting = waiting;
        for item in ready.into_iter().rev() {
            self.queue.push_front(item);
        }
        // No call starts on a claim about to lapse (checked again when the call's slot comes).
        let lease = run.opts.lease;
        let (lapsing, keep): (Vec<Item>, Vec<Item>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|i| about_to_lapse(i, lease, now));
        self.queue = keep.into();
        if !lapsing.is_empty() {
            let done = lapsing
                .into_iter()
                .map(|i| {
                    self.dequeued(&i);
                    (i, Resolution::Failed("its claim's lease is about to lapse".into()))
                })
                .collect();
            self.settle_apart(done);
        }
        while self.calls.len() < run.opts.put_concurrency.max(1)
            && !self.queue.is_empty()
            && (self.full_call_queued() || (flush && self.calls.is_empty()))
        {
            let limits = self.limits();
            let call = take_call(&mut self.queue, limits);
            for (item, _) in &call {
                self.queued.0 -= item.pending_events();
                self.queued.1 -= item.pending_bytes();
            }
            let run = run.clone();
            let task = self.tasks.spawn(async move { Finished::Again(put(&run, call).await) });
            self.calls.insert(task.id());
        }
    }

    /// Waits until a task finishes (its entries to retry are queued again) or a waiting entry's
    /// retry time comes. Pending forever when there is nothing to wait for.
    pub async fn progress(&mut self) {
        let wake = earliest(
            self.waiting.iter().filter_map(|i| i.not_before).min(),
            self.run
                .limits
                .map(|l| l.finish_by)
                .filter(|_| !self.queue.is_empty() || !self.waiting.is_empty()),
        );
        tokio::select! {
            Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => match joined {
                Ok((_, Finished::Claimed(items))) => {
                    self.claiming = None;
                    self.push(items);
                }
                Ok((id, Finished::Again(again))) => {
                    self.calls.remove(&id);
                    let now = Instant::now();
                    // In their order, ahead of the entries queued meanwhile: they are older.
                    for item in again.into_iter().rev() {
                        self.queued.0 += item.pending_events();
                        self.queued.1 += item.pending_bytes();
                        if item.not_before.is_some_and(|t| t > now) {
                            self.waiting.push(item);
                        } else {
                            self.queue.push_front(item);
                        }
                    }
                }
                Err(e) => {
                    // A panicked task took its entries with it: their claims lapse with the lease.
                    self.calls.remove(&e.id());
                    if self.claiming == Some(e.id()) {
                        self.claiming = None;
                    }
                    self.run.stop(super::ShipError::Task(e.to_string()));
                }
            },
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now).into()), if wake.is_some() => {}
            else => std::future::pending::<()>().await,
        }
    }

    /// Releases every entry not yet put.
    fn give_up_all(&mut self, why: &str) {
        let items: Vec<Item> = self.queue.drain(..).chain(self.waiting.drain(..)).collect();
        self.queued = (0, 0);
        if !items.is_empty() {
            let why = why.to_string();
            self.settle_apart(items.into_iter().map(|i| (i, Resolution::Failed(why.clone()))).collect());
        }
    }

    fn settle_apart(&mut self, done: Vec<(Item, Resolution)>) {
        if done.is_empty() {
            return;
        }
        let run = self.run.clone();
        self.tasks.spawn(async move {
            settle(&run, done).await;
            Finished::Again(Vec::new())
        });
    }
}

/// One call: waits for its slot, puts, reads the answer, settles what is decided, and returns the
/// entries to put again.
async fn put(run: &Run, call: Call) -> Vec<Item> {
    let c = &run.counters;
    let limits = run.limits;
    let finish_by = limits.map(|l| l.finish_by);
    if !run.pacer.wait(finish_by).await || run.puts_aborted() {
        // Its slot comes too late: nothing is sent, and the entries wait to be released at `finish_by`.
        return call
            .into_iter()
            .map(|(mut item, _)| {
                item.not_before = finish_by;
                item
            })
            .collect();
    }
    // The slot may have come minutes after the call was packed (a slow pace, many calls in flight):
    // no event goes out on a claim about to lapse.
    let (call, lapsing) = split_lapsing(call, run.opts.lease, Instant::now());
    if !lapsing.is_empty() {
        let why = "its claim's lease is about to lapse".to_string();
        settle(
            run,
            lapsing.into_iter().map(|item| (item, Resolution::Failed(why.clone()))).collect(),
        )
        .await;
    }
    if call.is_empty() {
        return Vec::new();
    }
    let events: Vec<AuditEvent> = call
        .iter()
        .flat_map(|(item, indexes)| indexes.iter().map(|i| item.events[*i].clone()))
        .collect();
    Counters::add(&c.put_calls, 1);
    // Past the deadline a put is abandoned: its claims are released, and what the destination may
    // have stored meanwhile is the one duplicate no client can avoid.
    let answer = match run.tail().map(|t| t.puts_until) {
        Some(until) => tokio::time::timeout_at(until.into(), run.sink.put(&events))
            .await
            .unwrap_or_else(|_| {
                Err(SinkError::Transient(
                    "the destination did not answer before the run's deadline".into(),
                ))
            }),
        None => run.sink.put(&events).await,
    };
    if let Err(SinkError::Fatal(why) | SinkError::Closed(why)) = &answer {
        run.abort_puts(super::ShipError::Sink(why.clone()));
        let done = call.into_iter().map(|(item, _)| (item, Resolution::Failed(why.clone()))).collect();
        settle(run, done).await;
        return Vec::new();
    }
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let mut outcomes = outcomes(&ids, &answer).into_iter();
    run.pacer.observe(signal(&answer, outcomes.as_slice()));
    let times = RetryTimes::new(Instant::now(), &run.opts.backoff);
    let mut done = Vec::new();
    let mut again = Vec::new();
    for (mut item, indexes) in call {
        let sent: Vec<(usize, EventOutcome)> = indexes.into_iter().map(|i| (i, outcomes.next().expect("one per event"))).collect();
        match after_call(&mut item, &sent, &times) {
            Next::Done(resolution) => done.push((item, resolution)),
            next => {
                item.not_before = match next {
                    Next::At(t) => Some(t),
                    _ => None,
                };
                let failed_here = sent.iter().any(|(_, o)| !matches!(o, EventOutcome::Accepted));
                if failed_here && !item.retried {
                    item.retried = true;
                    Counters::add(&c.retried, 1);
                }
                if failed_here {
                    tracing::debug!(key = %item.entry.key, problem = ?item.problem, "entry put again");
                }
                again.push(item);
            }
        }
    }
    // Throttling is routine under load (the pacer answers it; those entries go again at once);
    // other failures wait for a retry and are worth a warning.
    let failures: Vec<&str> = again
        .iter()
        .filter(|i| i.not_before.is_some())
        .filter_map(|i| i.problem.as_deref())
        .collect();
    if let Some(problem) = failures.first() {
        tracing::warn!(entries = failures.len(), problem = %problem, "retrying entries in a later call");
    } else if !again.is_empty() {
        tracing::debug!(
            entries = again.len(),
            rate = format!("{:.1}/s", run.pacer.rate()),
            "throttled entries rejoin the next call"
        );
    }
    settle(run, done).await;
    again
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kong::EntryKind;

    fn item(key: &str, sizes: &[usize]) -> Item {
        Item::for_test(EntryKind::Request, key, sizes)
    }

    const LIMITS: CallLimits = CallLimits {
        max_events: 4,
        max_bytes: 100,
    };

    fn shape(call: &Call) -> Vec<(String, Vec<usize>)> {
        call.iter().map(|(i, idx)| (i.key.clone(), idx.clone())).collect()
    }

    #[test]
    fn calls_take_whole_entries_while_they_fit_and_keep_order() {
        let mut q: VecDeque<Item> = ["a", "b", "c", "d", "e"].iter().map(|k| item(k, &[10])).collect();
        let first = take_call(&mut q, LIMITS);
        assert_eq!(shape(&first).iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        assert_eq!(q.len(), 1);
        let mut q: VecDeque<Item> = [item("a", &[60]), item("b", &[50])].into();
        assert_eq!(shape(&take_call(&mut q, LIMITS)), vec![("a".to_string(), vec![0])], "bytes limit");
        // An entry of several events that does not fit waits for the next call, whole.
        let mut q: VecDeque<Item> = [item("a", &[10, 10]), item("b", &[10, 10, 10])].into();
        assert_eq!(shape(&take_call(&mut q, LIMITS)), vec![("a".to_string(), vec![0, 1])]);
    }

    #[test]
    fn an_entry_larger_than_a_call_goes_out_in_several() {
        let mut q: VecDeque<Item> = [item("big", &[40, 40, 40, 40, 40, 40]), item("b", &[1])].into();
        let call = take_call(&mut q, LIMITS);
        assert_eq!(shape(&call), vec![("big".to_string(), vec![0, 1])]);
        // What it carried is accepted; the rest goes out next.
        let (mut big, _) = call.into_iter().next().unwrap();
        big.accepted[0] = true;
        big.accepted[1] = true;
        q.push_front(big);
        assert_eq!(shape(&take_call(&mut q, LIMITS)), vec![("big".to_string(), vec![2, 3])]);
    }

    #[test]
    fn an_answer_is_read_event_by_event() {
        let ids = ["a", "b", "c", "d", "e"];
        let report = PutReport {
            successful: vec!["a".into()],
            failed: vec![
                Refusal::from_cloudtrail("b", "Throttling", "slow"),
                Refusal::from_cloudtrail("c", "InternalFailure", "oops"),
                Refusal::from_cloudtrail("d", "InvalidData", "bad"),
            ],
        };
        let got = outcomes(&ids, &Ok(report));
        assert_eq!(got[0], EventOutcome::Accepted);
        assert_eq!(got[1], EventOutcome::Throttled("Throttling".into()));
        assert_eq!(got[2], EventOutcome::Retry("InternalFailure".into()));
        assert!(matches!(&got[3], EventOutcome::Refused(r) if r.code == "InvalidData"));
        assert_eq!(got[4], EventOutcome::Retry("event missing from the answer".into()));
        assert_eq!(signal(&Ok(PutReport::default()), &got), Signal::Throttled(0.2));
        let whole = Err(SinkError::Throttled("429".into()));
        assert_eq!(outcomes(&ids[..1], &whole), vec![EventOutcome::Throttled("429".into())]);
        assert_eq!(signal(&whole, &[]), Signal::CallThrottled);
        let down = Err(SinkError::Transient("500".into()));
        assert_eq!(outcomes(&ids[..1], &down), vec![EventOutcome::Retry("500".into())]);
        assert_eq!(signal(&down, &[]), Signal::Failed);
    }

    #[test]
    fn an_id_listed_both_successful_and_failed_is_sent_again_not_counted_accepted() {
        for code in ["Throttling", "InvalidData"] {
            let report = PutReport {
                successful: vec!["a".into()],
                failed: vec![Refusal::from_cloudtrail("a", code, "?")],
            };
            assert!(matches!(outcomes(&["a"], &Ok(report))[0], EventOutcome::Retry(_)), "{code}");
        }
    }

    #[test]
    fn a_claim_that_ran_short_while_its_call_waited_for_a_slot_is_taken_out_of_the_call() {
        let lease = Duration::from_secs(600);
        let now = Instant::now();
        let fresh = item("fresh", &[1]);
        let mut old = item("old", &[1]);
        old.claimed_at = now - Duration::from_secs(560);
        let (call, lapsing) = split_lapsing(vec![(fresh, vec![0]), (old, vec![0])], lease, now);
        assert_eq!(shape(&call), vec![("fresh".to_string(), vec![0])]);
        assert_eq!(lapsing.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["old"]);
        // The margin is 60 s, or a quarter of a short lease.
        assert!(!about_to_lapse(
            &item("x", &[1]),
            Duration::from_secs(100),
            now + Duration::from_secs(74)
        ));
        assert!(about_to_lapse(
            &item("x", &[1]),
            Duration::from_secs(100),
            now + Duration::from_secs(76)
        ));
    }

    #[test]
    fn a_steady_small_share_of_throttled_events_keeps_the_rate_near_its_maximum() {
        let max = 95.0;
        let mut rate = max;
        for _ in 0..10_000 {
            rate = next_rate(rate, max, Signal::Throttled(0.05));
        }
        assert!(rate >= 0.95 * max, "{rate}");
        // The old pacer climbed to its 2 s ceiling here: the collapse this rule prevents.
    }

    #[test]
    fn heavy_throttling_slows_down_in_proportion_and_whole_call_throttling_halves() {
        let max = 95.0;
        let mut rate = max;
        for _ in 0..200 {
            rate = next_rate(rate, max, Signal::Throttled(0.5));
        }
        assert!(rate < 0.5 * max && rate > SLOWEST_RATE, "{rate}");
        assert_eq!(next_rate(80.0, max, Signal::CallThrottled), 40.0);
        assert_eq!(next_rate(0.6, max, Signal::CallThrottled), SLOWEST_RATE, "never below the floor");
        assert_eq!(next_rate(40.0, max, Signal::Failed), 40.0, "a 500 says nothing about capacity");
        let mut rate = SLOWEST_RATE;
        for _ in 0..20 {
            rate = next_rate(rate, max, Signal::Clean);
        }
        assert_eq!(rate, max, "clean calls climb back to the maximum");
    }

    #[tokio::test(start_paused = true)]
    async fn calls_are_spaced_at_the_rate_and_none_starts_past_its_limit() {
        let p = Pacer::new(10.0);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            assert!(p.wait(None).await);
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(400) && took < Duration::from_millis(500), "{took:?}");
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(!p.wait(Some(soon)).await, "the next slot is 100 ms away");
    }

    #[test]
    fn throttling_only_slows_an_entry_other_failures_use_up_attempts() {
        let backoff = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(10),
            attempts: 2,
        };
        let now = Instant::now();
        let mut it = item("a", &[1, 1]);
        let throttled = [(0, EventOutcome::Accepted), (1, EventOutcome::Throttled("Throttling".into()))];
        assert_eq!(after_call(&mut it, &throttled, &RetryTimes::new(now, &backoff)), Next::Now);
        assert!(it.accepted[0] && !it.accepted[1]);
        let later = now + Duration::from_secs(299);
        assert_eq!(after_call(&mut it, &throttled[1..], &RetryTimes::new(later, &backoff)), Next::Now);
        assert!(matches!(
            after_call(&mut it, &throttled[1..], &RetryTimes::new(now + THROTTLE_PATIENCE, &backoff)),
            Next::Done(Resolution::Failed(_))
        ));

        let mut it = item("b", &[1]);
        let failed = [(0, EventOutcome::Retry("InternalFailure".into()))];
        assert!(matches!(after_call(&mut it, &failed, &RetryTimes::new(now, &backoff)), Next::At(_)));
        assert_eq!(
            after_call(&mut it, &failed, &RetryTimes::new(now, &backoff)),
            Next::Done(Resolution::Failed("InternalFailure".into()))
        );

        let mut it = item("c", &[1, 1]);
        let refused = Refusal::from_cloudtrail("c-1", "FieldTooLong", "too long");
        let outcome = [(0, EventOutcome::Accepted), (1, EventOutcome::Refused(refused))];
        assert_eq!(
            after_call(&mut it, &outcome, &RetryTimes::new(now, &backoff)),
            Next::Done(Resolution::Rejected {
                code: "FieldTooLong".into(),
                reason: "too long".into()
            })
        );
        let mut it = item("d", &[1]);
        assert_eq!(
            after_call(&mut it, &[(0, EventOutcome::Accepted)], &RetryTimes::new(now, &backoff)),
            Next::Done(Resolution::Shipped)
        );
    }

    #[test]
    fn entries_that_failed_in_one_call_are_ready_again_at_one_time() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            attempts: 5,
        };
        let now = Instant::now();
        let failed = [(0, EventOutcome::Retry("InternalFailure".into()))];
        let times = RetryTimes::new(now, &backoff);
        let mut at = Vec::new();
        for key in 0..50 {
            let mut it = item(&key.to_string(), &[1]);
            match after_call(&mut it, &failed, &times) {
                Next::At(t) => at.push(t),
                other => panic!("{other:?}"),
            }
        }
        assert!(at.iter().all(|t| *t == at[0]), "one retry time for the call");
        assert!(at[0] >= now + Duration::from_millis(50) && at[0] <= now + Duration::from_millis(100));

        // An entry on its second retry waits longer than those on their first, in the same call.
        let mut twice = item("again", &[1]);
        twice.failures = 1;
        let Next::At(second) = after_call(&mut twice, &failed, &times) else {
            panic!("a retry")
        };
        assert!(second >= now + Duration::from_millis(100), "{:?}", second - now);
    }
}
