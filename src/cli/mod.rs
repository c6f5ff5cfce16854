//! The command line: parse, build the clients once, run the library cycle, report, exit.
//! Each command lives in its own file beside this one.

mod backfill;
mod check;
mod migrate;
mod reconcile;
mod recover;
mod redrive;
mod run;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::logging::{self, LogFormat};
use crate::setup::SetupError;

#[derive(Debug, Parser)]
#[command(
    name = "kong-audit-shipper",
    version,
    about = "Ships Kong Gateway Enterprise's audit trail to AWS CloudTrail Lake, exactly once."
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One cycle from the shell: exactly what the Lambda does on each invocation, within MAX_RUN_SECONDS
    Run(run::RunArgs),
    /// The original Kong (or Konnect) entries from shipped eventData (NDJSON, any order; parts reassembled)
    Recover {
        /// eventData lines, or CloudTrail Lake query rows with an `eventData` member; `-` for stdin
        #[arg(long, default_value = "-")]
        input: String,
        /// Where the entries go, one per line; `-` for stdout (a file is created 0600)
        #[arg(long, default_value = "-")]
        output: String,
    },
    /// Re-submit dead-lettered entries after their cause is fixed (from the file or the queue)
    Redrive {
        /// A dead-letter file; default: the queue when DEAD_LETTER_QUEUE_URL is set, else DEAD_LETTER_FILE or the default file
        #[arg(long)]
        input: Option<std::path::PathBuf>,
    },
    /// Ship everything in a time window (default: all Kong holds), with progress; --dry-run prints the events instead
    Backfill(backfill::BackfillArgs),
    /// Will it work? Checks Kong (version, audit logging, token) or Konnect (token, region, read access), the store, the channel and AWS; one line each, with the fix for each ✗
    Check,
    /// Carry over the Redis marks of Kong's 2023 proof of concept, so the switch ships no request twice
    MigratePocKeys,
    /// Kong's trail against what the destination holds, entry by entry: proves it complete, or names what is missing; --repair sends exactly that
    Reconcile(reconcile::ReconcileArgs),
    /// Check Kong's signatures over its audit trail (or, with --input, over an export of shipped events); exit 1 when any row is invalid
    Verify(verify::VerifyArgs),
}

pub use crate::runner::{EXIT_CONFIG, EXIT_INCOMPLETE, exit_code};

pub async fn main(cli: Cli) -> ExitCode {
    logging::init(LogFormat::choose(cli.settings.log_format.as_deref(), false));
    let Some(command) = cli.command else {
        eprintln!("kong-audit-shipper: no command given; try `kong-audit-shipper run` or `--help`");
        return ExitCode::from(EXIT_CONFIG);
    };
    match command {
        Command::Run(args) => run::main(&cli.settings, args).await,
        Command::Recover { input, output } => recover::main(&input, &output),
        Command::Redrive { input } => redrive::main(&cli.settings, input).await,
        Command::Backfill(args) => backfill::main(&cli.settings, args).await,
        Command::Check => check::main(&cli.settings).await,
        Command::MigratePocKeys => migrate::main(&cli.settings).await,
        Command::Verify(args) => verify::main(&cli.settings, args).await,
        Command::Reconcile(args) => reconcile::main(&cli.settings, args).await,
    }
}

pub fn setup_failed(e: &SetupError) -> ExitCode {
    tracing::error!(error = %e, "cannot start");
    eprintln!("kong-audit-shipper: {e}");
    ExitCode::from(EXIT_CONFIG)
}
