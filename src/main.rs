use std::process::ExitCode;

use clap::Parser;
use kong_audit_shipper::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    cli::main(Cli::parse()).await
}
