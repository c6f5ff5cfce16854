//! The dedup store contract, run against a real redis-server and the embedded file store (the
//! in-memory store runs it in its unit tests).

mod support;

use kong_audit_shipper::config::RedisConfig;
use kong_audit_shipper::dedup::{RedisStore, contract};
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
