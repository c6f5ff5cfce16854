//! Building PutLogEvents requests from the cycle's events: each event's timestamp (the entry's time),
//! clamped into the window the service accepts; then sorted, split where the span would pass 24 hours,
//! and packed to the per-call limits. Pure functions, no I/O.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::AuditEvent;

/// Events per PutLogEvents call.
pub const MAX_EVENTS: usize = 10_000;
/// Bytes per call: the sum of each message's UTF-8 bytes plus `EVENT_OVERHEAD`.
pub const MAX_BYTES: usize = 1_048_576;
/// What the service adds to each message when it counts a call's bytes.
pub const EVENT_OVERHEAD: usize = 26;
/// The widest span of timestamps one call may carry.
pub const MAX_SPAN_MS: i64 = 24 * 3_600_000;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// What an event counts against `MAX_BYTES`.
pub fn event_size(message: &str) -> usize {
    message.len() + EVENT_OVERHEAD
}

/// One log event on its way, with the cycle event it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// The cycle's event id (never sent: Logs has no ids).
    pub id: String,
    /// Index of the cycle event in the `put`.
    pub source: usize,
    /// Milliseconds since the epoch, as sent.
    pub timestamp: i64,
    pub message: String,
}

/// The timestamps a call may carry without the service skipping the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub oldest_ms: i64,
    pub newest_ms: i64,
}

impl Window {
    /// What PutLogEvents documents (no older than 14 days, no more than 2 hours ahead), with an
    /// hour's margin on each side for the difference between this clock and the service's.
    pub fn documented(now_ms: i64) -> Window {
        Window {
            oldest_ms: now_ms - 14 * DAY_MS + HOUR_MS,
            newest_ms: now_ms + HOUR_MS,
        }
    }

    /// After the service skipped events the documented window allows (a group retention under 14
    /// days, or a clock further off than the margin): the last 23 hours, never ahead of this clock.
    /// Retention is at least a day, so this holds for every group.
    pub fn narrow(now_ms: i64) -> Window {
        Window {
            oldest_ms: now_ms - DAY_MS + HOUR_MS,
            newest_ms: now_ms,
        }
    }
}

/// Why an event's timestamp is not the entry's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clamp {
    TooOld,
    TooNew,
    /// The message has no readable `eventTime` (not an event of this program).
    NoEventTime,
}

impl Clamp {
    fn as_str(self) -> &'static str {
        match self {
            Clamp::TooOld => "tooOld",
            Clamp::TooNew => "tooNew",
            Clamp::NoEventTime => "noEventTime",
        }
    }
}

#[derive(Deserialize)]
struct Time<'a> {
    #[serde(rename = "eventTime", borrow)]
    event_time: Option<&'a str>,
}

/// The entry's time in milliseconds: the message's `eventTime` (`YYYY-MM-DDTHH:MM:SSZ`).
pub fn event_time_ms(message: &str) -> Option<i64> {
    let time = serde_json::from_str::<Time<'_>>(message).ok()?.event_time?;
    let t = chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%dT%H:%M:%SZ").ok()?;
    Some(t.and_utc().timestamp_millis())
}

/// The log event for one cycle event: its timestamp clamped into `window`, and when it had to be,
/// the message says so in `additionalEventData.logTimestampClamped` (the original time and why);
/// `eventTime` and the embedded entry are left exactly as they were.
pub fn log_event(source: usize, event: &AuditEvent, window: Window, now_ms: i64) -> LogEvent {
    let original = event_time_ms(&event.event_data);
    let (timestamp, clamp) = match original {
        None => (now_ms.clamp(window.oldest_ms, window.newest_ms), Some(Clamp::NoEventTime)),
        Some(t) if t < window.oldest_ms => (window.oldest_ms, Some(Clamp::TooOld)),
        Some(t) if t > window.newest_ms => (window.newest_ms, Some(Clamp::TooNew)),
        Some(t) => (t, None),
    };
    let message = match clamp {
        Some(why) => annotate(&event.event_data, original, why).unwrap_or_else(|| event.event_data.clone()),
        None => event.event_data.clone(),
    };
    LogEvent {
        id: event.id.clone(),
        source,
        timestamp,
        message,
    }
}

#[derive(Deserialize)]
struct Members<'a> {
    #[serde(rename = "additionalEventData", borrow)]
    additional_event_data: Option<&'a RawValue>,
}

/// The message with `"logTimestampClamped":{...}` added as the last member of its
/// `additionalEventData` object, every other byte unchanged. `None` when there is no such object.
pub fn annotate(message: &str, original_ms: Option<i64>, why: Clamp) -> Option<String> {
    let raw = serde_json::from_str::<Members<'_>>(message).ok()?.additional_event_data?.get();
    let start = (raw.as_ptr() as usize).checked_sub(message.as_ptr() as usize)?;
    let end = start + raw.len();
    if !raw.starts_with('{') || !raw.ends_with('}') || end > message.len() {
        return None;
    }
    let empty = raw[1..raw.len() - 1].trim().is_empty();
    let original = original_ms.map_or_else(|| "null".to_string(), |t| t.to_string());
    let member = format!(
        r#"{}"logTimestampClamped":{{"originalTimestamp":{original},"reason":"{}"}}"#,
        if empty { "" } else { "," },
        why.as_str()
    );
    let close = end - 1;
    Some(format!("{}{member}{}", &message[..close], &message[close..]))
}

/// Sorts by timestamp (stable: an entry's parts keep their order), then cuts into calls that keep
/// within the span and both limits, in order.
pub fn calls(mut events: Vec<LogEvent>) -> Vec<Vec<LogEvent>> {
    events.sort_by_key(|e| e.timestamp);
    let mut calls: Vec<Vec<LogEvent>> = Vec::new();
    let mut bytes = 0;
    for e in events {
        let size = event_size(&e.message);
        let fits = calls
            .last()
            .is_some_and(|call| call.len() < MAX_EVENTS && bytes + size <= MAX_BYTES && e.timestamp - call[0].timestamp <= MAX_SPAN_MS);
        if !fits {
            calls.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        calls.last_mut().expect("just pushed").push(e);
    }
    calls
}

/// What the service skipped in a call, from `rejectedLogEventsInfo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    pub too_new_start: Option<i32>,
    pub too_old_end: Option<i32>,
    pub expired_end: Option<i32>,
}

/// Why the service skipped an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    TooOld,
    Expired,
    TooNew,
}

impl SkipReason {
    pub fn code(self) -> &'static str {
        match self {
            SkipReason::TooOld => "TooOldLogEvent",
            SkipReason::Expired => "ExpiredLogEvent",
            SkipReason::TooNew => "TooNewLogEvent",
        }
    }

    pub fn explain(self) -> &'static str {
        match self {
            SkipReason::TooOld => "CloudWatch Logs skipped the event as older than 14 days (rejectedLogEventsInfo); it was not stored",
            SkipReason::Expired => {
                "CloudWatch Logs skipped the event as older than the log group's retention (rejectedLogEventsInfo); it was not stored"
            }
            SkipReason::TooNew => {
                "CloudWatch Logs skipped the event as more than 2 hours ahead of its clock (rejectedLogEventsInfo); it was not stored"
            }
        }
    }
}

/// The events of a call (by index) that may not have been stored, given what the service reported.
///
/// Read so that nothing skipped is ever counted as stored: AWS documents `tooOldLogEventEndIndex` as
/// "the index of the last log event that is too old" and "exclusive", and implementations disagree
/// (moto reports the last skipped index), so the end indexes are read as inclusive. And since
/// moto reports the *last* too-new index where AWS documents the first, every event ahead of this
/// clock counts as too new as well. The price is the possible duplicate of one event at the edge of
/// a skipped range, only in a call where the service skipped something (which clamping prevents
/// unless the group keeps less than 14 days or a clock is off by an hour or more).
pub fn skipped(info: Skipped, timestamps: &[i64], now_ms: i64) -> Vec<(usize, SkipReason)> {
    let n = timestamps.len();
    let upto = |end: Option<i32>| end.map_or(0, |e| (e.max(0) as usize).saturating_add(1).min(n));
    let (expired, too_old) = (upto(info.expired_end), upto(info.too_old_end));
    let too_new_from = info.too_new_start.map(|s| (s.max(0) as usize).min(n));
    (0..n)
        .filter_map(|i| {
            if i < expired {
                Some((i, SkipReason::Expired))
            } else if i < too_old {
                Some((i, SkipReason::TooOld))
            } else if too_new_from.is_some_and(|s| i >= s || timestamps[i] > now_ms) {
                Some((i, SkipReason::TooNew))
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_760_000_000_000;

    fn data(time: &str) -> String {
        format!(
            r#"{{"version":"1.0","eventTime":"{time}","UID":"u","additionalEventData":{{"kongEntryKind":"request","kongAuditEntry":{{"request_id":"u", "ttl":5}},"shipper":"s"}}}}"#
        )
    }

    fn ev(id: &str, time_ms: i64) -> AuditEvent {
        let time = chrono::DateTime::from_timestamp_millis(time_ms)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ");
        AuditEvent {
            id: id.into(),
            event_data: data(&time.to_string()),
        }
    }

    #[test]
    fn the_timestamp_is_the_entry_time_in_milliseconds() {
        assert_eq!(event_time_ms(&data("2025-10-09T08:53:20Z")), Some(NOW));
        assert_eq!(event_time_ms(r#"{"eventTime":"not a time"}"#), None);
        assert_eq!(event_time_ms("{}"), None);
        assert_eq!(event_time_ms("junk"), None);
        let e = log_event(0, &ev("a", NOW - 3_600_000), Window::documented(NOW), NOW);
        assert_eq!(e.timestamp, NOW - 3_600_000);
        assert_eq!(
            e.message,
            ev("a", NOW - 3_600_000).event_data,
            "in the window: the message is untouched"
        );
    }

    #[test]
    fn out_of_window_times_are_clamped_and_the_message_says_so_leaving_the_rest_verbatim() {
        let w = Window::documented(NOW);
        let old = ev("old", NOW - 20 * DAY_MS);
        let e = log_event(3, &old, w, NOW);
        assert_eq!((e.timestamp, e.source), (w.oldest_ms, 3));
        let v: serde_json::Value = serde_json::from_str(&e.message).unwrap();
        let clamp = &v["additionalEventData"]["logTimestampClamped"];
        assert_eq!(clamp["originalTimestamp"], NOW - 20 * DAY_MS);
        assert_eq!(clamp["reason"], "tooOld");
        // Only the member was added: everything else is byte for byte what it was.
        let added = r#","logTimestampClamped":{"originalTimestamp":"#;
        let at = e.message.find(added).unwrap();
        let rest = &e.message[at..];
        let end = rest.find('}').unwrap() + 1;
        assert_eq!(format!("{}{}", &e.message[..at], &rest[end..]), old.event_data);
        assert!(e.message.contains(r#""kongAuditEntry":{"request_id":"u", "ttl":5}"#));

        let new = log_event(0, &ev("new", NOW + 5 * 3_600_000), w, NOW);
        assert_eq!(new.timestamp, w.newest_ms);
        assert!(new.message.contains(r#""reason":"tooNew""#));
        let odd = log_event(
            0,
            &AuditEvent {
                id: "x".into(),
                event_data: r#"{"additionalEventData":{}}"#.into(),
            },
            w,
            NOW,
        );
        assert_eq!(odd.timestamp, NOW);
        assert_eq!(
            odd.message,
            r#"{"additionalEventData":{"logTimestampClamped":{"originalTimestamp":null,"reason":"noEventTime"}}}"#
        );
        let not_ours = log_event(
            0,
            &AuditEvent {
                id: "x".into(),
                event_data: "plain text".into(),
            },
            w,
            NOW,
        );
        assert_eq!(not_ours.message, "plain text", "nothing to annotate: left as it is");
    }

    #[test]
    fn the_narrow_window_fits_any_retention_and_no_clock_ahead() {
        let n = Window::narrow(NOW);
        assert!(NOW - n.oldest_ms < DAY_MS && n.newest_ms == NOW);
        let d = Window::documented(NOW);
        assert!(NOW - d.oldest_ms < 14 * DAY_MS && d.newest_ms - NOW < 2 * HOUR_MS);
    }

    fn le(i: usize, t: i64, size: usize) -> LogEvent {
        LogEvent {
            id: format!("e{i}"),
            source: i,
            timestamp: t,
            message: "x".repeat(size),
        }
    }

    #[test]
    fn calls_are_sorted_within_a_day_and_within_both_limits() {
        // Out of order, over three days, with ties (an entry's parts share its time).
        let events = vec![
            le(0, 3 * DAY_MS, 10),
            le(1, 0, 10),
            le(2, DAY_MS / 2, 10),
            le(3, 0, 10),
            le(4, DAY_MS + 1, 10),
        ];
        let got = calls(events);
        let ids: Vec<Vec<&str>> = got.iter().map(|c| c.iter().map(|e| e.id.as_str()).collect()).collect();
        assert_eq!(ids, vec![vec!["e1", "e3", "e2"], vec!["e4"], vec!["e0"]]);
        // A span of exactly 24 hours is allowed.
        assert_eq!(calls(vec![le(0, 0, 1), le(1, DAY_MS, 1)]).len(), 1);

        let many: Vec<LogEvent> = (0..25_000).map(|i| le(i, 7, 1)).collect();
        assert_eq!(calls(many).iter().map(Vec::len).collect::<Vec<_>>(), [10_000, 10_000, 5_000]);
        let big: Vec<LogEvent> = (0..9).map(|i| le(i, 7, 300_000)).collect();
        let got = calls(big);
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3]);
        assert!(
            got.iter()
                .all(|c| c.iter().map(|e| event_size(&e.message)).sum::<usize>() <= MAX_BYTES)
        );
        assert!(calls(Vec::new()).is_empty());
    }

    #[test]
    fn skipped_events_are_never_read_as_stored() {
        let ts = [10, 20, 30, 40, 50, 60];
        let reasons = |info| skipped(info, &ts, 1_000);
        assert!(reasons(Skipped::default()).is_empty());
        // The end index is read inclusively (documented as exclusive, reported as the last by moto).
        let old = reasons(Skipped {
            too_old_end: Some(2),
            ..Default::default()
        });
        assert_eq!(old, vec![(0, SkipReason::TooOld), (1, SkipReason::TooOld), (2, SkipReason::TooOld)]);
        let both = reasons(Skipped {
            expired_end: Some(0),
            too_old_end: Some(1),
            too_new_start: Some(5),
        });
        assert_eq!(
            both,
            vec![(0, SkipReason::Expired), (1, SkipReason::TooOld), (5, SkipReason::TooNew)]
        );
        // Too new from the start index on, and every event ahead of this clock.
        let ahead = skipped(
            Skipped {
                too_new_start: Some(5),
                ..Default::default()
            },
            &ts,
            35,
        );
        assert_eq!(ahead.iter().map(|s| s.0).collect::<Vec<_>>(), [3, 4, 5]);
        // Indexes past the call are harmless.
        assert_eq!(
            reasons(Skipped {
                too_old_end: Some(99),
                ..Default::default()
            })
            .len(),
            6
        );
    }
}
