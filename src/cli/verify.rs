//! `kong-audit-shipper verify [--since T] [--until T] | --input FILE [--require-signed]`: checks Kong's
//! signatures over its audit trail (read like `backfill` reads it; no store, no destination, no AWS),
//! or over an export of shipped events. One line per row that fails, per key the valid rows, then
//! the totals; exit 1 when any row is invalid (or cannot be checked), else 0.
//!
//! Konnect's entries in an export are reported `unchecked`, with the reason: which bytes Konnect
//! signs for a pulled entry is not documented, and this program does not guess.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::backfill::parse_time;
use crate::config::{SIGNING_KEY_SETTING, Settings};
use crate::kong::KongClient;
use crate::ship::Window;
use crate::signature::{Finding, TrailReport, Verdict, Verifier, verify_export, verify_kong};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Oldest entry time to check, inclusive: RFC 3339 (2026-11-01T00:00:00Z) or epoch seconds
    #[arg(long, value_parser = parse_time, conflicts_with = "input")]
    pub since: Option<i64>,
    /// Newest entry time to check, exclusive: RFC 3339 or epoch seconds
    #[arg(long, value_parser = parse_time, conflicts_with = "input")]
    pub until: Option<i64>,
    /// Check an NDJSON export of shipped events instead of Kong (eventData lines, or query rows with
    /// an `eventData` member, as `recover` reads them); `-` for stdin
    #[arg(long)]
    pub input: Option<String>,
    /// Rows without a signature fail too (for a Kong that has signed every row it holds)
    #[arg(long)]
    pub require_signed: bool,
}

pub async fn main(settings: &Settings, args: VerifyArgs) -> ExitCode {
    let fail = |message: String| {
        eprintln!("kong-audit-shipper verify: {message}");
        ExitCode::from(super::EXIT_CONFIG)
    };
    if args.input.is_none() && settings.reads_konnect() {
        return fail(format!(
            "Konnect's audit log has no signatures this program can check: {}; `verify --input FILE` reads an export of shipped events and reports Konnect's entries as unchecked, with that reason",
            crate::konnect::mapping::SIGNATURE_UNCHECKED_REASON
        ));
    }
    let verifier = match settings.signature_verifier() {
        Ok(v) if v.has_keys() => Arc::new(v),
        // An export may hold only Konnect's entries, which no key checks; Kong's would be unchecked.
        Ok(v) if args.input.is_some() => Arc::new(v),
        Ok(_) => {
            return fail(format!(
                "{SIGNING_KEY_SETTING}: not set: give Kong's audit signing public key(s), as PEM text or the path of a PEM file"
            ));
        }
        Err(e) => return fail(e.to_string()),
    };
    if let (Some(since), Some(until)) = (args.since, args.until)
        && since >= until
    {
        return fail("--since must be before --until".into());
    }
    let require_signed = args.require_signed;
    let mut print = move |f: &Finding| {
        if matches!(f.verdict, Verdict::Invalid { .. }) || require_signed {
            println!("{f}");
        }
    };
    let report = match &args.input {
        Some(input) => match super::recover::read_event_lines(input) {
            Ok((lines, unreadable)) => {
                let mut report = verify_export(lines.iter().map(String::as_str), &verifier, &mut print);
                report.problems.splice(0..0, unreadable);
                report
            }
            Err(e) => return fail(format!("--input {input}: cannot read it: {e}")),
        },
        None => match from_kong(settings, &verifier, args.since, args.until, &mut print).await {
            Ok(report) => report,
            Err(message) => return fail(message),
        },
    };
    for problem in &report.problems {
        println!("problem {problem}");
    }
    if report.konnect > 0 {
        println!(
            "unchecked konnect rows={}: {}",
            report.konnect,
            crate::konnect::mapping::SIGNATURE_UNCHECKED_REASON
        );
    }
    for (key, rows) in &report.valid_by_key {
        println!("valid key={key} rows={rows}");
    }
    println!("{}", report.line());
    if report.clean(require_signed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_INCOMPLETE)
    }
}

async fn from_kong(
    settings: &Settings,
    verifier: &Arc<Verifier>,
    since: Option<i64>,
    until: Option<i64>,
    print: &mut (dyn FnMut(&Finding) + Send),
) -> Result<TrailReport, String> {
    let kong = settings.kong_config().map_err(|e| e.to_string())?;
    let client = KongClient::new(&kong, settings.backoff()).map_err(|e| e.to_string())?;
    verify_kong(Arc::new(client), verifier, Window { since, until }, kong.page_size, print)
        .await
        .map_err(|e| e.to_string())
}
