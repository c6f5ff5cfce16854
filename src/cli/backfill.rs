//! `kong-audit-shipper backfill`: ship (or, with `--dry-run`, print) everything in a time window,
//! with progress. The same library cycle as `run`, minus the watermark.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use clap::Args;

use crate::config::Settings;
use crate::setup::{SinkChoice, StoreChoice, build};
use crate::ship::Window;
use crate::summary::Counters;

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Oldest entry time to ship, inclusive: RFC 3339 (2026-11-01T00:00:00Z) or epoch seconds
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Newest entry time to ship, exclusive: RFC 3339 or epoch seconds
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
    /// Write the events that would be sent as NDJSON; claim nothing, send nothing
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: write the events to this file (created readable by its owner only) instead of stdout
    #[arg(long, requires = "dry_run")]
    pub output: Option<PathBuf>,
    /// Seconds between progress lines when stderr is not a terminal
    #[arg(long, default_value_t = 10)]
    pub progress_seconds: u64,
}

/// RFC 3339 or epoch seconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|e| format!("'{text}' is neither RFC 3339 (2026-11-01T00:00:00Z) nor epoch seconds: {e}"))
}

pub async fn main(settings: &Settings, args: BackfillArgs) -> ExitCode {
    if let (Some(since), Some(until)) = (args.since, args.until)
        && since >= until
    {
        eprintln!("kong-audit-shipper: --since must be before --until");
        return ExitCode::from(super::EXIT_CONFIG);
    }
    let (store, sink) = if args.dry_run {
        let (out, name): (Box<dyn std::io::Write + Send>, String) = match &args.output {
            Some(path) => match owner_only_file(path) {
                Ok(f) => (Box::new(std::io::BufWriter::new(f)), path.display().to_string()),
                Err(e) => {
                    eprintln!("kong-audit-shipper: --output {}: {e}", path.display());
                    return ExitCode::from(super::EXIT_CONFIG);
                }
            },
            None => (Box::new(SilentOnceClosed(std::io::stdout())), "stdout".into()),
        };
        (StoreChoice::Nothing, SinkChoice::Ndjson(out, name))
    } else {
        (StoreChoice::RedisOrFile, SinkChoice::Destination)
    };
    if args.dry_run && settings.channel_arn.is_none() {
        tracing::warn!("CHANNEL_ARN is not set: recipientAccountId is shown as 000000000000 in this dry run");
    }
    let shipper = match build(settings, store, sink).await {
        Ok(s) => s,
        Err(e) => return super::setup_failed(&e),
    };
    let mut opts = crate::runner::ship_options(settings);
    opts.window = Window {
        since: args.since,
        until: args.until,
    };
    opts.incremental = false;
    // The window is the operator's choice, even below a floor set by `run --since`.
    opts.respect_floor = false;
    opts.claim = !args.dry_run;
    if args.dry_run {
        // One call at a time: the events come out oldest first.
        opts.put_concurrency = 1;
    }
    let counters = Arc::new(Counters::default());
    let progress = tokio::spawn(show_progress(counters.clone(), Duration::from_secs(args.progress_seconds.max(1))));
    let summary = shipper.run(&opts, counters).await;
    progress.abort();
    let _ = progress.await;
    if crate::logging::silenced() {
        // `backfill --dry-run | head`: the reader took what it wanted. A dry run holds nothing
        // (no claims, no marks), so stopping here loses nothing.
        return ExitCode::SUCCESS;
    }
    crate::runner::report(&summary, opts.lease.as_secs());
    crate::runner::exit_code(&summary)
}

/// A bar on a terminal; a log line every `every` otherwise (CI, files, `| tee`).
async fn show_progress(counters: Arc<Counters>, every: Duration) {
    let started = Instant::now();
    let line = |c: &Counters| {
        let shipped = c.shipped.load(Relaxed);
        let rate = shipped as f64 / started.elapsed().as_secs_f64().max(0.001);
        format!(
            "read {} · shipped {} · already shipped {} · held {} · rejected {} · failed {} · {:.0}/s",
            c.read.load(Relaxed),
            shipped,
            c.already_shipped.load(Relaxed),
            c.held.load(Relaxed),
            c.rejected.load(Relaxed),
            c.failed.load(Relaxed),
            rate
        )
    };
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("static template"));
        let _guard = scopeguard(bar.clone());
        loop {
            bar.set_message(line(&counters));
            bar.tick();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    } else {
        loop {
            tokio::time::sleep(every).await;
            tracing::info!("progress: {}", line(&counters));
        }
    }
}

/// Clears the bar when the progress task is aborted, so the summary line starts on a clean line.
fn scopeguard(bar: indicatif::ProgressBar) -> impl Drop {
    struct Clear(indicatif::ProgressBar);
    impl Drop for Clear {
        fn drop(&mut self) {
            self.0.finish_and_clear();
        }
    }
    Clear(bar)
}

/// A dry run's stdout: once its reader has gone (`| head`), writes fail with `BrokenPipe` and every
/// later log line is dropped, so the run ends as quietly as `head` expects of a pipe.
struct SilentOnceClosed<W>(W);

impl<W: std::io::Write> SilentOnceClosed<W> {
    fn watch<T>(result: std::io::Result<T>) -> std::io::Result<T> {
        if result.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
            crate::logging::silence();
        }
        result
    }
}

impl<W: std::io::Write> std::io::Write for SilentOnceClosed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Self::watch(self.0.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Self::watch(self.0.flush())
    }
}

pub(super) fn owner_only_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_epoch_seconds() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-14T23:13:20+01:00"), Ok(1_700_000_000));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
