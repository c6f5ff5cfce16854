//! Packing events into PutAuditEvents calls: at most 100 events and 1 MB each.

use crate::event::AuditEvent;

pub const MAX_BATCH_EVENTS: usize = 100;
/// 1 MB, less room for the request's JSON envelope and the checksums.
pub const MAX_BATCH_BYTES: usize = 1_000_000 - 16_384;

/// Bytes an event adds to the request body: its id, its eventData escaped as a JSON string, and
/// the 44-byte checksum, with their member names.
pub fn wire_size(event: &AuditEvent) -> usize {
    let escaped: usize = event
        .event_data
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum();
    escaped + event.id.len() + 100
}

/// Splits events into consecutive calls within both limits.
pub fn split_into_calls(events: &[AuditEvent]) -> Vec<&[AuditEvent]> {
    let mut calls = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, e) in events.iter().enumerate() {
        let size = wire_size(e);
        if i > start && (i - start == MAX_BATCH_EVENTS || bytes + size > MAX_BATCH_BYTES) {
            calls.push(&events[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < events.len() {
        calls.push(&events[start..]);
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: usize, size: usize) -> AuditEvent {
        AuditEvent {
            id: format!("e{i}"),
            event_data: "x".repeat(size),
        }
    }

    #[test]
    fn calls_respect_both_limits_and_keep_order() {
        let small: Vec<_> = (0..250).map(|i| ev(i, 10)).collect();
        let calls = split_into_calls(&small);
        assert_eq!(calls.iter().map(|c| c.len()).collect::<Vec<_>>(), vec![100, 100, 50]);
        let big: Vec<_> = (0..30).map(|i| ev(i, 120_000)).collect();
        let calls = split_into_calls(&big);
        assert!(calls.iter().all(|c| c.iter().map(wire_size).sum::<usize>() <= MAX_BATCH_BYTES));
        assert_eq!(calls.iter().map(|c| c.len()).sum::<usize>(), 30);
        assert_eq!(calls.concat(), big);
    }
}
