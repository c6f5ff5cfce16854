//! The dedup store contract, run against a real redis-server and the embedded file store (the
//! in-memory store runs it in its unit tests).

mod support;

use std::time::Duration;

use kong_audit_shipper::config::RedisConfig;
use kong_audit_shipper::dedup::{Claim, DedupStore, RedisStore, Settlement, contract};
use support::RedisServer;

#[tokio::test]
async fn redis_store_keeps_the_contract() {
    let server = RedisServer::start_with(Some("contract-pw"), None);
    let config = RedisConfig { db: 1, ..server.config() };
    let store = RedisStore::connect(&config).await.unwrap();
    contract::run_all(&store).await;
}

#[tokio::test]
async fn file_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = kong_audit_shipper::dedup::FileStore::open(dir.path().join("state/state.redb"))
        .await
        .unwrap();
    contract::run_all(&store).await;
}

#[tokio::test]
async fn redis_store_keeps_the_contract_on_the_path_servers_before_7_take() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.config()).await.unwrap();
    store.use_script_claims();
    contract::run_all(&store).await;
}

/// A claim is one command per key: no `GET` after a `SET NX`, in which a key released in between
/// reads as "done" and its entry is skipped.
#[tokio::test]
async fn a_claim_is_one_atomic_command_per_key() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.config()).await.unwrap();
    server.cli(&["CONFIG", "RESETSTAT"]).unwrap();
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    store.claim(&keys, "inflight:a", Duration::from_secs(60)).await.unwrap();
    let stats = server.cli(&["INFO", "commandstats"]).unwrap();
    let calls = |cmd: &str| {
        stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|v| v.split(',').next())
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    assert_eq!((calls("set"), calls("get"), calls("eval")), (50, 0, 0), "{stats}");
}

/// Another run claims and releases a key over and over while this run claims it: the key is always
/// either ours or held by the other run, never "done" (it was never shipped).
#[tokio::test]
async fn a_key_released_during_a_claim_never_reads_as_done() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.config()).await.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut other = client.get_multiplexed_async_connection().await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _: () = redis::pipe()
                    .cmd("SET")
                    .arg("hot")
                    .arg("inflight:other")
                    .ignore()
                    .cmd("DEL")
                    .arg("hot")
                    .ignore()
                    .query_async(&mut other)
                    .await
                    .unwrap();
            }
        })
    };
    let (mut ours, mut held) = (0, 0);
    for _ in 0..3_000 {
        match store
            .claim(&["hot".to_string()], "inflight:me", Duration::from_secs(60))
            .await
            .unwrap()[0]
        {
            Claim::Ours => {
                ours += 1;
                let release = Settlement {
                    releases: vec!["hot".into()],
                    ..Default::default()
                };
                store.settle(&release, "inflight:me").await.unwrap();
            }
            Claim::HeldByOther => held += 1,
            other => panic!("a key nobody shipped read as {other:?}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.await.unwrap();
    assert!(ours > 0, "ours {ours}, held {held}");
}

/// Redis's own clock is the one acceptances are stamped by; a user the ACL denies `TIME` gets an
/// error naming it, and the machine's clock stands in rather than stopping the run.
#[tokio::test]
async fn redis_tells_its_time_and_a_user_denied_it_leaves_the_machines_clock_standing_in() {
    use kong_audit_shipper::dedup::StoreClock;
    use kong_audit_shipper::secret::Secret;

    let server = RedisServer::start();
    let store = RedisStore::connect(&server.config()).await.unwrap();
    let local = chrono::Utc::now().timestamp_millis();
    let told = store.clock_ms().await.unwrap();
    assert!((told - local).abs() < 5_000, "Redis {told}, this machine {local}");

    let set = server.cli(&["ACL", "SETUSER", "shipper", "on", ">shipper-pw", "~*", "+@all", "-time"]);
    assert_eq!(set.as_deref(), Some("OK"));
    let config = RedisConfig {
        username: Some("shipper".into()),
        password: Some(Secret::new("shipper-pw".to_string())),
        ..server.config()
    };
    let denied = RedisStore::connect(&config).await.unwrap();
    let e = denied.clock_ms().await.unwrap_err();
    assert!(
        e.detail.to_lowercase().contains("noperm") && !e.to_string().contains("shipper-pw"),
        "{e}"
    );
    let clock = StoreClock::measure(&denied).await;
    assert!((clock.now() - chrono::Utc::now().timestamp()).abs() <= 1);
}
