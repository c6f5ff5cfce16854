//! What verifying Kong's signatures costs: per row in-process, and on the backfill rate side by side.
//!
//!     cargo run --release --example bench-signatures                # 25,000 requests (about 50,000 entries)
//!     cargo run --release --example bench-signatures -- 0.2         # a fifth of that
//!     cargo run --release --example bench-signatures -- 0.2 p384    # the backfill signed with EC P-384
//!
//! 1. Per row, for each kind of key Kong may sign with (RSA-2048 PKCS#1 v1.5, ECDSA on P-256, P-384
//!    and P-521; all over SHA-256): the verdict alone (signed text, base64, verification), and the
//!    whole mapping of an entry without a key, with its verdict made beforehand (as the cycle maps:
//!    pages are verified as they arrive, beside it), and with the verdict made inline; over the
//!    fakes' realistic rows, every one signed. Then the verdict of a P-384 row under a bundle that
//!    holds the RSA and P-256 keys first (a rotation's worst case: every other key is tried before).
//! 2. Backfill: the release binary (`run`, as in `bench`) against the loopback fakes (Kong 5 ms per
//!    page with every row signed, RSA-2048 unless the second argument names `p256`, `p384` or
//!    `p521`; CloudTrail 20 ms per call and its 100 calls/s quota) and a real redis-server, without
//!    and with KONG_AUDIT_SIGNING_PUBLIC_KEY, in turns (A B A B), the store emptied before each run.

#[path = "support/bench_run.rs"]
mod bench_run;
#[path = "../tests/support/fake_cloudtrail.rs"]
mod fake_cloudtrail;
#[path = "../tests/support/fake_kong.rs"]
mod fake_kong;
#[path = "../tests/support/fake_lake.rs"]
mod fake_lake;
#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_cloudtrail::FakeCloudTrail;
use fake_kong::FakeKong;
use fake_kong::kong_signer::{KongKey, KongSigner};
use kong_audit_shipper::event::{MapContext, map_entry_detailed};
use kong_audit_shipper::kong::{Entry, EntryKind};
use kong_audit_shipper::signature::Verifier;
use redis_server::RedisServer;
use serde_json::Value;

/// Median of per-row microseconds over `rounds` passes of `f` over every row.
fn per_row_micros(rows: usize, rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6 / rows as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Per-row microseconds of: the verdict, the mapping without a key, the mapping with the verdict
/// made beforehand, the mapping with the verdict made inline; `pems` is the key setting (the
/// signer's key among them).
fn micro(signer: &KongSigner, pems: &[String], requests: &[Value], objects: &[Value]) -> (f64, f64, f64, f64) {
    let sign = |kind: &str, rows: &[Value]| -> Vec<String> {
        rows.iter()
            .map(|r| {
                let mut r = r.clone();
                signer.sign(kind, &mut r);
                r.to_string()
            })
            .collect()
    };
    let entries: Vec<Entry> = sign("requests", requests)
        .iter()
        .map(|t| Entry::parse(EntryKind::Request, t).unwrap())
        .chain(sign("objects", objects).iter().map(|t| Entry::parse(EntryKind::Object, t).unwrap()))
        .collect();
    let verifier = Arc::new(Verifier::from_setting(&pems.concat()).unwrap());
    let ctx = |signatures: Arc<Verifier>| MapContext {
        recipient_account_id: fake_cloudtrail::ACCOUNT.into(),
        record_ttl: 2_592_000,
        now: chrono::Utc::now().timestamp(),
        signatures,
    };
    let (with, without) = (ctx(verifier.clone()), ctx(Arc::new(Verifier::default())));
    let n = entries.len();
    let verdict = per_row_micros(n, 9, || {
        for e in &entries {
            assert_eq!(verifier.check(e).status(), "valid");
        }
    });
    let mut verified = entries.clone();
    kong_audit_shipper::signature::source::verify_all(&verifier, &mut verified);
    let mut map_with = Vec::new();
    let mut map_without = Vec::new();
    let mut map_verified = Vec::new();
    for _ in 0..5 {
        map_without.push(per_row_micros(n, 1, || {
            for e in &entries {
                std::hint::black_box(map_entry_detailed(e, &without).unwrap());
            }
        }));
        map_verified.push(per_row_micros(n, 1, || {
            for e in &verified {
                std::hint::black_box(map_entry_detailed(e, &with).unwrap());
            }
        }));
        map_with.push(per_row_micros(n, 1, || {
            for e in &entries {
                std::hint::black_box(map_entry_detailed(e, &with).unwrap());
            }
        }));
    }
    for v in [&mut map_with, &mut map_without, &mut map_verified] {
        v.sort_by(f64::total_cmp);
    }
    (verdict, map_without[2], map_verified[2], map_with[2])
}

fn env(kong: &FakeKong, ct: &FakeCloudTrail, redis: &RedisServer, key: Option<&str>) -> HashMap<String, String> {
    let mut env = bench_run::env(kong, ct, redis);
    if let Some(pem) = key {
        env.insert("KONG_AUDIT_SIGNING_PUBLIC_KEY".into(), pem.into());
    }
    env
}

#[tokio::main]
async fn main() {
    let scale: f64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1.0);
    let requests_n = ((25_000.0 * scale) as usize).max(100);
    let bin = bench_run::binary();

    let backfill_key = match std::env::args().nth(2).as_deref() {
        None | Some("rsa") => KongKey::Rsa2048,
        Some("p256") => KongKey::EcP256,
        Some("p384") => KongKey::EcP384,
        Some("p521") => KongKey::EcP521,
        Some(other) => panic!("unknown key kind {other}: rsa, p256, p384 or p521"),
    };

    // 1. Per row, in-process, for each kind of key.
    let (sample_r, sample_o) = fake_kong::sample_trail(2_000, chrono::Utc::now().timestamp() - 86_400, true);
    let mut per_key = Vec::new();
    let mut signers = Vec::new();
    for kind in [KongKey::Rsa2048, KongKey::EcP256, KongKey::EcP384, KongKey::EcP521] {
        let signer = KongSigner::generate_key(kind);
        let measured = micro(&signer, &[signer.public_key_pem()], &sample_r, &sample_o);
        eprintln!(
            "{kind:?} per row: verdict {:.1} µs; mapping {:.1} µs without a key, {:.1} µs verified beforehand, {:.1} µs verified inline",
            measured.0, measured.1, measured.2, measured.3
        );
        per_key.push((kind, measured));
        signers.push(signer);
    }
    let bundle: Vec<String> = signers[..3].iter().map(KongSigner::public_key_pem).collect();
    let (bundle_us, ..) = micro(&signers[2], &bundle, &sample_r, &sample_o);
    eprintln!("P-384 row under [RSA, P-256, P-384]: verdict {bundle_us:.1} µs");

    // 2. Backfill, side by side.
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let signer = Arc::new(KongSigner::generate_key(backfill_key));
    kong.sign_rows_with(signer.clone(), 1.0);
    let signing = Instant::now();
    let (r, o) = fake_kong::sample_trail(requests_n, chrono::Utc::now().timestamp() - 86_400, true);
    kong.add("requests", &r);
    kong.add("objects", &o);
    let total = r.len() + o.len();
    eprintln!("{total} entries signed in {:.1} s", signing.elapsed().as_secs_f64());
    kong.with(|s| s.latency = Duration::from_millis(5));
    ct.with(|s| {
        s.latency = Duration::from_millis(20);
        s.quota_per_second = 100;
        s.count_only = true;
    });
    let pem = signer.public_key_pem();
    let mut without = Vec::new();
    let mut with = Vec::new();
    for round in 0..3 {
        for key in [None, Some(pem.as_str())] {
            redis.cli(&["FLUSHALL"]);
            let run = bench_run::ship(&bin, &env(&kong, &ct, &redis, key)).await;
            assert_eq!(run.count("shipped"), total as u64, "every entry shipped");
            let rate = run.rate();
            eprintln!(
                "round {} {}: {rate:.0} entries/s ({:.2} s; signatures_valid={} signatures_invalid={})",
                round + 1,
                if key.is_some() { "with the key" } else { "without a key" },
                run.seconds,
                run.count("signatures_valid"),
                run.count("signatures_invalid")
            );
            if key.is_some() {
                let verdicts = (run.count("signatures_valid"), run.count("signatures_invalid"));
                assert_eq!(verdicts, (total as u64, 0), "every row verified");
                with.push(rate);
            } else {
                without.push(rate);
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (a, b) = (mean(&without), mean(&with));
    println!(
        "Machine: {} cores; scale {scale}; every row signed; Kong 5 ms per page, CloudTrail 20 ms per call and 100 calls/s.\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "| key | verdict per row, µs | mapping per row without a key, µs | verdict made beforehand (what the cycle does) | verdict made inline |"
    );
    println!("|---|---|---|---|---|");
    for (kind, (verdict_us, map_without_us, map_verified_us, map_with_us)) in &per_key {
        println!(
            "| {kind:?} | {verdict_us:.1} | {map_without_us:.1} | {map_verified_us:.1} ({:+.1}) | {map_with_us:.1} ({:+.1}) |",
            map_verified_us - map_without_us,
            map_with_us - map_without_us
        );
    }
    println!("| EcP384 row, bundle [RSA, P-256, P-384] | {bundle_us:.1} | | | |\n");
    println!("| backfill ({backfill_key:?}) | without a key | with the key | change |");
    println!("|---|---|---|---|");
    println!(
        "| backfill of {total} entries, entries/s (mean of 3 runs each, in turns) | {a:.0} ({}) | {b:.0} ({}) | {:+.1} % |",
        without.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
        with.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
        (b / a - 1.0) * 100.0
    );
}
