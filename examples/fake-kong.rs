//! A fake Kong Enterprise Admin API with a realistic audit trail, to try kong-audit-shipper without a
//! Kong: the same fake the tests use (versioned behaviour, keyset paging, `after`/`before` filters,
//! RBAC token, rows signed as Kong signs them). Never part of the release binary.
//!
//! ```sh
//! cargo run --example fake-kong -- --port 8001 [--entries 500] [--version 3.8.1.0] [--token T]
//! KONG_ADMIN_API=http://127.0.0.1:8001 cargo run -- check
//! KONG_ADMIN_API=http://127.0.0.1:8001 cargo run -- backfill --dry-run
//!
//! # Signed rows, two of them altered after signing, and the public key in a file:
//! cargo run --example fake-kong -- --signed-share 0.9 --tamper 2 --public-key-out kong-audit.pub
//! KONG_ADMIN_API=http://127.0.0.1:8001 KONG_AUDIT_SIGNING_PUBLIC_KEY=kong-audit.pub cargo run -- verify
//! ```

#[path = "../tests/support/fake_kong.rs"]
mod fake_kong;

use clap::Parser;
use kong_audit_shipper::kong::KongVersion;
use serde_json::Value;

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
    /// Sign this share of the rows (0 to 1) with an RSA-2048 key generated at start, as Kong does
    /// with audit_log_signing_key
    #[arg(long, default_value_t = 0.0)]
    signed_share: f64,
    /// After signing, alter this many signed rows (a request's path, an object's operation), as
    /// someone with write access to Kong's database could
    #[arg(long, default_value_t = 0)]
    tamper: usize,
    /// Write the signing key's public half here (PEM); without it, it is printed
    #[arg(long)]
    public_key_out: Option<std::path::PathBuf>,
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
    let signer = (args.signed_share > 0.0).then(|| kong.sign_rows(args.signed_share));
    kong.add("requests", &requests);
    kong.add("objects", &objects);
    let tampered = tamper(&kong, &requests, &objects, args.tamper);
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
    if let Some(signer) = &signer {
        println!(
            "{:.0} % of the rows are signed with key {}",
            args.signed_share.min(1.0) * 100.0,
            signer.fingerprint()
        );
        for (kind, key) in &tampered {
            println!("altered after signing: {kind} {key}");
        }
        let pem = signer.public_key_pem();
        let key_setting = match &args.public_key_out {
            Some(path) => {
                if let Err(e) = std::fs::write(path, &pem) {
                    eprintln!("fake-kong: cannot write {}: {e}", path.display());
                    std::process::exit(2);
                }
                println!("public key written to {}", path.display());
                path.display().to_string()
            }
            None => {
                println!("public key:\n{pem}");
                "<the public key above, or a file holding it>".into()
            }
        };
        println!(
            "try: KONG_ADMIN_API={} KONG_AUDIT_SIGNING_PUBLIC_KEY={key_setting} kong-audit-shipper verify",
            kong.url()
        );
    }
    println!("Ctrl-C stops it.");
    let _ = tokio::signal::ctrl_c().await;
    let hits = kong.with(|s| s.page_hits);
    println!("stopped after serving {hits} audit pages");
}

/// Alters up to `count` signed rows, alternately a request's path and an object's operation.
fn tamper(kong: &fake_kong::FakeKong, requests: &[Value], objects: &[Value], count: usize) -> Vec<(&'static str, String)> {
    let mut done = Vec::new();
    let mut candidates = requests
        .iter()
        .map(|r| ("requests", r["request_id"].as_str().unwrap_or_default()))
        .zip(objects.iter().map(|o| ("objects", o["id"].as_str().unwrap_or_default())))
        .flat_map(|(r, o)| [r, o]);
    while done.len() < count {
        let Some((kind, key)) = candidates.next() else { break };
        let mut signed = false;
        kong.tamper(kind, key, |row| {
            signed = !row["signature"].is_null();
            if !signed {
                return;
            }
            if kind == "requests" {
                row["path"] = Value::String("/default/consumers".into());
            } else {
                let other = if row["operation"] == "delete" { "create" } else { "delete" };
                row["operation"] = Value::String(other.into());
            }
        });
        if signed {
            done.push((kind, key.to_string()));
        }
    }
    done
}
