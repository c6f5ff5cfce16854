//! `kong-audit-shipper recover [--input FILE|-] [--output FILE|-]`: the original Kong (and Konnect)
//! entries from shipped events.
//!
//! Input: one event per line, in any order: the `eventData` JSON itself, or an object with an
//! `eventData` member holding it as an object or as a JSON string (the shapes CloudTrail Lake query
//! results and exports give), or CloudWatch Logs' shapes: an event with a `message` member holding it
//! (`aws logs filter-log-events` / `get-log-events`), or a `TIMESTAMP MESSAGE` line (an export to S3). Output: each entry's JSON text exactly as Kong (or Konnect) served it, one per line;
//! parts are reassembled and checked against their SHA-256; an entry shipped twice (an unavoidable
//! duplicate) is written once; an entry shipped in two versions (read twice: its `ttl` differs) is
//! written in both, and counted as `other_versions`. Problems (junk lines, missing parts, checksum mismatches) go to stderr
//! with their line numbers, and make the exit status 1.
//!
//! The whole input is held in memory (parts may be anywhere in it): split very large exports by
//! time range.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::recover;

#[derive(Deserialize)]
struct Wrapped {
    #[serde(rename = "eventData")]
    event_data: Option<Box<RawValue>>,
    /// A CloudWatch Logs event: the eventData text is its message.
    message: Option<Box<RawValue>>,
    /// Present when the line is the eventData itself.
    #[serde(rename = "additionalEventData")]
    additional_event_data: Option<serde::de::IgnoredAny>,
}

/// The `eventData` text of one input line: the line itself, its `eventData` member, the `message` of
/// a CloudWatch Logs event, or what follows the timestamp of a line exported to S3.
pub fn event_data_of(line: &str) -> String {
    let line = line.trim();
    if !line.starts_with('{')
        && let Some((stamp, rest)) = line.split_once(' ')
        && chrono::DateTime::parse_from_rfc3339(stamp).is_ok()
    {
        return rest.trim().to_string();
    }
    let wrapped = match serde_json::from_str::<Wrapped>(line) {
        Ok(w) if w.additional_event_data.is_none() => w,
        _ => return line.to_string(),
    };
    match (wrapped.event_data, wrapped.message) {
        (Some(raw), _) | (None, Some(raw)) => {
            let text = raw.get();
            // A JSON string holding the eventData text, or the object itself.
            serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_string())
        }
        _ => line.to_string(),
    }
}

/// The `eventData` text of every line of `input` (`-`: stdin), one per input line so that line
/// numbers hold, and the lines that are not text.
pub fn read_event_lines(input: &str) -> std::io::Result<(Vec<String>, Vec<String>)> {
    let mut bytes = Vec::new();
    if input == "-" {
        std::io::stdin().read_to_end(&mut bytes)?;
    } else {
        std::fs::File::open(input)?.read_to_end(&mut bytes)?;
    }
    let mut problems = Vec::new();
    let lines: Vec<String> = bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(n, raw)| match std::str::from_utf8(raw) {
            Ok(text) => event_data_of(text),
            Err(e) => {
                problems.push(format!("line {}: not UTF-8 text: {e}", n + 1));
                String::new()
            }
        })
        .collect();
    Ok((lines, problems))
}

pub fn main(input: &str, output: &str) -> ExitCode {
    let (lines, mut problems) = match read_event_lines(input) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("kong-audit-shipper recover: cannot read {input}: {e}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    let events = lines.iter().filter(|l| !l.trim().is_empty()).count();
    let recovery = recover(lines.iter().map(String::as_str));
    problems.extend(recovery.problems);

    let mut seen = HashSet::new();
    let mut uids = HashSet::new();
    let mut out = String::new();
    let mut written = 0;
    let mut duplicates = 0;
    // The same entry read and shipped twice (a store restarted empty, a redrive) differs in `ttl`:
    // both versions are what Kong served, so both are written, and counted here.
    let mut other_versions = 0;
    for entry in &recovery.entries {
        if !seen.insert((entry.kind, entry.uid.as_str(), entry.json.as_str())) {
            duplicates += 1;
            continue;
        }
        if !uids.insert((entry.kind, entry.uid.as_str())) {
            other_versions += 1;
        }
        out.push_str(&entry.json);
        out.push('\n');
        written += 1;
    }
    if let Err(e) = write_output(output, out.as_bytes()) {
        eprintln!("kong-audit-shipper recover: cannot write {output}: {e}");
        return ExitCode::from(super::EXIT_CONFIG);
    }
    for p in &problems {
        eprintln!("kong-audit-shipper recover: {p}");
    }
    eprintln!(
        "recover events={events} entries={written} duplicates_skipped={duplicates} other_versions={other_versions} problems={}",
        problems.len()
    );
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_INCOMPLETE)
    }
}

/// stdout, or a file created readable by its owner only (it holds whole audit entries).
fn write_output(output: &str, bytes: &[u8]) -> std::io::Result<()> {
    if output == "-" {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(bytes)?;
        return stdout.flush();
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(output)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_and_plain_lines_give_the_event_data() {
        let data = r#"{"UID":"a","additionalEventData":{"x":1}}"#;
        assert_eq!(event_data_of(data), data);
        assert_eq!(event_data_of(&format!(r#"{{"eventID":"e","eventData":{data}}}"#)), data);
        let as_string = serde_json::to_string(data).unwrap();
        assert_eq!(event_data_of(&format!(r#"{{"eventData":{as_string},"eventTime":"t"}}"#)), data);
        assert_eq!(event_data_of("  junk  "), "junk");
    }

    #[test]
    fn cloudwatch_logs_events_and_s3_export_lines_give_the_event_data() {
        let data = r#"{"UID":"a","eventTime":"2026-01-02T03:04:05Z","additionalEventData":{"x":1}}"#;
        let event = serde_json::json!({"logStreamName": "s", "timestamp": 1, "message": data, "eventId": "9"});
        assert_eq!(event_data_of(&event.to_string()), data);
        assert_eq!(event_data_of(&format!("2026-01-02T03:04:05.000Z {data}")), data);
        // The eventData itself is never mistaken for a wrapper, whatever members it has.
        let with_message = r#"{"message":"m","additionalEventData":{"x":1}}"#;
        assert_eq!(event_data_of(with_message), with_message);
        assert_eq!(event_data_of("2026 is not a timestamp"), "2026 is not a timestamp");
    }
}
