//! A fake Kong Enterprise Admin API with a realistic audit trail, to try kong-audit-shipper without a
//! Kong: the same fake the tests use (versioned behaviour, keyset paging, `after`/`before` filters,
//! RBAC token). Never part of the release binary.
//!
//! ```sh
//! cargo run --example fake-kong -- --port 8001 [--entries 500] [--version 3.8.1.0] [--token T]
//! KONG_ADMIN_API=http://127.0.0.1:8001 cargo run -- check
//! KONG_ADMIN_API=http://127.0.0.1:8001 cargo run -- backfill --dry-run
//! ```

#[path = "../tests/support/fake_kong.rs"]
mod fake_kong;

use clap::Parser;
use kong_audit_shipper::kong::KongVersion;

#[derive(Debug, Parser)]
#[command(about = "A fake Kong Enterprise Admin API serving a realistic audit trail (for trying kong-audit-shipper)")]
struct Args {
    /// Port to listen on
    #[arg(long, default_value_t = 8001)]
    port: u16,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Admin API requests in the trail (objects are added for the writes among them)
    #[arg(long, default_value_t = 500)]
    entries: usize,
    /// Kong version to behave like: 3.4.3.9+, 3.5.0.5+, 3.6.1.5+ and 3.7+ have the audit timestamp filters
    #[arg(long, default_value = "3.8.1.0")]
    version: String,
    /// Require this RBAC token in Kong-Admin-Token
    #[arg(long)]
    token: Option<String>,
    /// Answer as if audit_log = off
    #[arg(long)]
    audit_off: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let with_filters = KongVersion::parse(&args.version).is_some_and(KongVersion::has_timestamp_filters);
    let kong = fake_kong::FakeKong::start_on(&format!("{}:{}", args.bind, args.port), &args.version).await;
    // The newest entry is an hour old; three requests a second before it, as in a busy change window.
    let start = chrono::Utc::now().timestamp() - 3_600 - (args.entries as i64) / 3;
    // Kong versions without the timestamp filters have no request_timestamp on objects either.
    let (requests, objects) = fake_kong::sample_trail(args.entries, start, with_filters);
    kong.add("requests", &requests);
    kong.add("objects", &objects);
    kong.with(|s| {
        s.token = args.token.clone();
        s.audit_enabled = !args.audit_off;
    });
    println!(
        "fake Kong {} Admin API at {} with {} requests and {} objects in /audit/requests and /audit/objects{}",
        args.version,
        kong.url(),
        requests.len(),
        objects.len(),
        if args.token.is_some() { " (Kong-Admin-Token required)" } else { "" }
    );
    println!("try: KONG_ADMIN_API={} kong-audit-shipper backfill --dry-run", kong.url());
    println!("Ctrl-C stops it.");
    let _ = tokio::signal::ctrl_c().await;
    let hits = kong.with(|s| s.page_hits);
    println!("stopped after serving {hits} audit pages");
}
