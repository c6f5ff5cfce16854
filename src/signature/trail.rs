//! Verdicts over a whole trail: Kong's (both endpoints, a time window), or an export of shipped
//! events (the shapes `recover` reads), so evidence in CloudTrail Lake or in Logs can be re-checked
//! long after it was shipped.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use super::source::VerifyingSource;
use super::verify::{Verdict, Verifier};
use crate::event::{MapContext, event_time, recover};
use crate::kong::{AuditSource, Entry, EntryKind, KongError};
use crate::ship::{Window, first_page, read_trail};
use crate::summary::Counters;

/// A row whose verdict is not `valid`, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: EntryKind,
    /// `request_id` for requests, `id` for objects (the event's `UID` in an export).
    pub key: String,
    pub verdict: Verdict,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}={}",
            self.verdict.status(),
            self.kind.as_str(),
            self.kind.key_field(),
            self.key.escape_debug()
        )?;
        if let Verdict::Invalid { reason } = &self.verdict {
            write!(f, ": {reason}")?;
        }
        if (self.kind, &self.verdict) == (EntryKind::Konnect, &Verdict::Unchecked) {
            write!(f, ": {}", crate::konnect::mapping::SIGNATURE_UNCHECKED_REASON)?;
        }
        Ok(())
    }
}

/// What a trail came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrailReport {
    pub rows: u64,
    pub valid: u64,
    pub invalid: u64,
    pub unsigned: u64,
    pub unchecked: u64,
    /// Valid rows per key fingerprint: which keys a trail spans, e.g. across a rotation.
    pub valid_by_key: BTreeMap<String, u64>,
    /// Rows of an export shipped more than once (an unavoidable duplicate), checked once.
    pub duplicates_skipped: u64,
    /// Rows of Konnect's audit log: their signatures are recorded, never checked (which bytes
    /// Konnect signs for a pulled entry is not documented), so they count as unchecked.
    pub konnect: u64,
    /// Lines of an export that hold no entry that can be checked: junk, missing parts, or an entry
    /// that does not match the SHA-256 shipped beside it.
    pub problems: Vec<String>,
    /// Why reading stopped before the end, if it did: the rows after it were not checked.
    pub error: Option<String>,
}

impl TrailReport {
    fn add(&mut self, kind: EntryKind, key: &str, verdict: Verdict, on_finding: &mut dyn FnMut(&Finding)) {
        self.rows += 1;
        if kind == EntryKind::Konnect {
            self.konnect += 1;
        }
        match &verdict {
            Verdict::Valid { key_fingerprint } => {
                self.valid += 1;
                *self.valid_by_key.entry(key_fingerprint.clone()).or_default() += 1;
                return;
            }
            Verdict::Invalid { .. } => self.invalid += 1,
            Verdict::Unsigned => self.unsigned += 1,
            Verdict::Unchecked => self.unchecked += 1,
        }
        on_finding(&Finding {
            kind,
            key: key.to_string(),
            verdict,
        });
    }

    /// True when every row checked is valid or unsigned (or, with `require_signed`, valid), and the
    /// whole trail was read.
    pub fn clean(&self, require_signed: bool) -> bool {
        self.invalid == 0
            && self.unchecked == 0
            && self.problems.is_empty()
            && self.error.is_none()
            && (!require_signed || self.unsigned == 0)
    }

    /// `verify rows=… valid=… invalid=… unsigned=… problems=…`: logfmt, like the run's summary.
    pub fn line(&self) -> String {
        let mut line = format!(
            "verify rows={} valid={} invalid={} unsigned={} problems={}",
            self.rows,
            self.valid,
            self.invalid,
            self.unsigned,
            self.problems.len()
        );
        if self.unchecked > 0 {
            line.push_str(&format!(" unchecked={}", self.unchecked));
        }
        if self.konnect > 0 {
            line.push_str(&format!(" konnect={}", self.konnect));
        }
        if self.duplicates_skipped > 0 {
            line.push_str(&format!(" duplicates_skipped={}", self.duplicates_skipped));
        }
        if let Some(e) = &self.error {
            line.push_str(&format!(" error={}", serde_json::to_string(e).unwrap_or_default()));
        }
        line
    }
}

/// The verdict on an entry read back (made already when its source verified it), also when it is
/// no JSON object (no Kong row is that).
fn verdict_of(verifier: &Verifier, entry: &Entry) -> Verdict {
    if entry.kind == EntryKind::Konnect {
        // Never a guess: which bytes Konnect signs for a pulled entry is not documented.
        return match entry.fields.get("signature") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Verdict::Unchecked,
            _ => Verdict::Unsigned,
        };
    }
    match &entry.problem {
        Some(problem) if entry.fields.is_empty() => Verdict::Invalid {
            reason: format!("not a Kong audit row: {problem}"),
        },
        _ => entry.signature.clone().unwrap_or_else(|| verifier.check(entry)),
    }
}

/// Reads both endpoints of Kong (entries whose `eventTime` is in `window`, as `backfill` reads
/// them) and checks every row. `on_finding` hears of each row that is not valid as it is read.
/// Fails only when Kong cannot be reached at all; a read that fails later ends the report with
/// its `error`.
pub async fn verify_kong(
    source: Arc<dyn AuditSource>,
    verifier: &Arc<Verifier>,
    window: Window,
    page_size: u32,
    on_finding: &mut (dyn FnMut(&Finding) + Send),
) -> Result<TrailReport, KongError> {
    let info = source.info().await?;
    let by_time = info.has_timestamp_filters();
    let firsts = EntryKind::ALL
        .iter()
        .map(|kind| first_page(*kind, &info, page_size, &window, None))
        .collect();
    // Pages are verified as they arrive, beside this loop.
    let source = VerifyingSource::wrap(source, verifier);
    let mut chunks = read_trail(source, firsts, by_time, page_size as usize, Arc::new(Counters::default()));
    let ctx = MapContext {
        recipient_account_id: String::new(),
        record_ttl: info.record_ttl,
        now: chrono::Utc::now().timestamp(),
        signatures: Default::default(),
    };
    let mut report = TrailReport::default();
    loop {
        match chunks.next().await {
            Ok(Some(chunk)) => {
                for read in chunk.entries {
                    let entry = read.entry;
                    if window.contains(event_time(&entry, &ctx).0) {
                        let verdict = verdict_of(verifier, &entry);
                        report.add(entry.kind, &entry.key, verdict, on_finding);
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                report.error = Some(e.to_string());
                break;
            }
        }
    }
    Ok(report)
}

/// Checks the entries of shipped events (`eventData` lines, in any order; parts reassembled and
/// checked against their SHA-256, as `recover` does). An entry shipped twice is checked once.
pub fn verify_export<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    verifier: &Verifier,
    on_finding: &mut dyn FnMut(&Finding),
) -> TrailReport {
    let recovery = recover(lines);
    let mut report = TrailReport {
        problems: recovery.problems,
        ..TrailReport::default()
    };
    let mut seen = HashSet::new();
    for recovered in &recovery.entries {
        if !seen.insert((recovered.kind, recovered.uid.as_str(), recovered.json.as_str())) {
            report.duplicates_skipped += 1;
            continue;
        }
        let verdict = match Entry::parse(recovered.kind, &recovered.json) {
            Ok(entry) => verdict_of(verifier, &entry),
            Err(e) => Verdict::Invalid {
                reason: format!("the shipped entry is not JSON: {e}"),
            },
        };
        report.add(recovered.kind, &recovered.uid, verdict, on_finding);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_name_the_row_by_its_key_field_and_the_line_adds_up() {
        let mut report = TrailReport::default();
        let mut seen = Vec::new();
        let mut keep = |f: &Finding| seen.push(f.to_string());
        report.add(
            EntryKind::Request,
            "r1",
            Verdict::Valid {
                key_fingerprint: "sha256:aa".into(),
            },
            &mut keep,
        );
        report.add(EntryKind::Object, "o\n1", Verdict::Invalid { reason: "altered".into() }, &mut keep);
        report.add(EntryKind::Request, "r2", Verdict::Unsigned, &mut keep);
        assert_eq!(seen, ["invalid object id=o\\n1: altered", "unsigned request request_id=r2"]);
        assert_eq!(report.line(), "verify rows=3 valid=1 invalid=1 unsigned=1 problems=0");
        assert_eq!(report.valid_by_key.get("sha256:aa"), Some(&1));
        assert!(!report.clean(false));
        let unsigned_only = TrailReport {
            rows: 1,
            unsigned: 1,
            ..Default::default()
        };
        assert!(unsigned_only.clean(false) && !unsigned_only.clean(true));
        let stopped = TrailReport {
            error: Some("Kong down".into()),
            ..Default::default()
        };
        assert!(!stopped.clean(false) && stopped.line().ends_with(r#"error="Kong down""#));
    }
}
