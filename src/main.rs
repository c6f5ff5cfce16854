use std::process::ExitCode;

use clap::Parser;
use kong_audit_shipper::cli::{self, Cli};
use kong_audit_shipper::lambda;

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    // Started by the Lambda runtime: serve invocations. A subcommand always means the CLI.
    if cli.command.is_none() && std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return lambda::main(cli.settings).await;
    }
    cli::main(cli).await
}
