//! The store contract every implementation passes (Redis's run is in tests/store_contract.rs).

use std::time::Duration;

use super::{Claim, DedupStore, Mark, Settlement};

pub async fn run_all(store: &dyn DedupStore) {
    let p = format!("contract:{}:", fastrand::u64(..));
    let key = |k: &str| format!("{p}{k}");
    let lease = Duration::from_secs(60);

    // A claim succeeds once; a second run cannot claim the same key.
    let keys = vec![key("a"), key("b")];
    assert_eq!(store.claim(&keys, "inflight:run1", lease).await.unwrap(), vec![true, true]);
    assert_eq!(store.claim(&keys, "inflight:run2", lease).await.unwrap(), vec![false, false]);

    // Settling marks shipped keys and releases the rest; a released key can be claimed again.
    let s = Settlement {
        marks: vec![(key("a"), Mark::Shipped, 100)],
        releases: vec![key("b")],
    };
    store.settle(&s, "inflight:run1").await.unwrap();
    assert_eq!(store.get(&key("a")).await.unwrap().as_deref(), Some("shipped"));
    assert_eq!(store.get(&key("b")).await.unwrap(), None);
    assert_eq!(store.claim(&keys, "inflight:run2", lease).await.unwrap(), vec![false, true]);

    // A release by a run that does not hold the claim changes nothing.
    store
        .settle(
            &Settlement {
                marks: vec![],
                releases: vec![key("b"), key("a")],
            },
            "inflight:run1",
        )
        .await
        .unwrap();
    assert_eq!(store.get(&key("b")).await.unwrap().as_deref(), Some("inflight:run2"));
    assert_eq!(store.get(&key("a")).await.unwrap().as_deref(), Some("shipped"));

    // Rejected entries are marked too, so they are not retried forever.
    let s = Settlement {
        marks: vec![(key("b"), Mark::Rejected("InvalidData".into()), 100)],
        releases: vec![],
    };
    store.settle(&s, "inflight:run2").await.unwrap();
    assert_eq!(store.get(&key("b")).await.unwrap().as_deref(), Some("rejected:InvalidData"));

    // Leases and marks expire.
    assert_eq!(
        store.claim(&[key("c")], "inflight:run3", Duration::from_millis(150)).await.unwrap(),
        vec![true]
    );
    let s = Settlement {
        marks: vec![(key("d"), Mark::Shipped, 1)],
        releases: vec![],
    };
    store.settle(&s, "inflight:run3").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        store.claim(&[key("c"), key("d")], "inflight:run4", lease).await.unwrap(),
        vec![true, true]
    );

    // The detailed claim tells done keys from keys another run holds: the watermark must not pass
    // an entry another run may still fail to ship.
    let detailed = store.claim_detailed(&[key("a"), key("e")], "inflight:run5", lease).await.unwrap();
    assert_eq!(detailed, vec![Claim::Done, Claim::Ours]);
    let held = store.claim_detailed(&[key("e")], "inflight:run6", lease).await.unwrap();
    assert_eq!(held, vec![Claim::HeldByOther]);

    // Plain values (the watermark) round-trip.
    store.put(&key("w"), "1700000000", None).await.unwrap();
    assert_eq!(store.get(&key("w")).await.unwrap().as_deref(), Some("1700000000"));
}
