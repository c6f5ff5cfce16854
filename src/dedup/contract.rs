//! The store contract every implementation passes (Redis's run is in tests/store_contract.rs).

use std::time::Duration;

use super::{Claim, Commit, DedupStore, Mark, Settlement, Swap};

pub async fn run_all(store: &dyn DedupStore) {
    let p = format!("contract:{}:", fastrand::u64(..));
    let key = |k: &str| format!("{p}{k}");
    let lease = Duration::from_secs(60);
    let marks = |m: Vec<(String, Mark, u64)>| Settlement {
        marks: m,
        ..Default::default()
    };

    // A claim succeeds once; a second run cannot claim the same key, and learns that a run holds it.
    let keys = vec![key("a"), key("b")];
    assert_eq!(store.claim(&keys, "inflight:run1", lease).await.unwrap(), vec![Claim::Ours; 2]);
    assert_eq!(
        store.claim(&keys, "inflight:run2", lease).await.unwrap(),
        vec![Claim::HeldByOther; 2]
    );
    // The same run reading an entry twice does not take it twice.
    assert_eq!(
        store.claim(&[key("a")], "inflight:run1", lease).await.unwrap(),
        vec![Claim::AlreadyOurs]
    );

    // Settling marks shipped keys and releases the rest; a released key can be claimed again.
    let s = Settlement {
        marks: vec![(key("a"), Mark::Shipped { at: 7, run: "run1".into() }, 100)],
        releases: vec![key("b")],
        ..Default::default()
    };
    assert_eq!(store.settle(&s, "inflight:run1").await.unwrap(), vec![Commit::Committed]);
    assert_eq!(store.get(&key("a")).await.unwrap().as_deref(), Some("shipped@7:run1"));
    assert_eq!(store.get(&key("b")).await.unwrap(), None);
    assert_eq!(
        store.claim(&keys, "inflight:run2", lease).await.unwrap(),
        vec![Claim::Done, Claim::Ours]
    );

    // A release by a run that does not hold the claim changes nothing.
    store
        .settle(
            &Settlement {
                releases: vec![key("b"), key("a")],
                ..Default::default()
            },
            "inflight:run1",
        )
        .await
        .unwrap();
    assert_eq!(store.get(&key("b")).await.unwrap().as_deref(), Some("inflight:run2"));
    assert_eq!(store.get(&key("a")).await.unwrap().as_deref(), Some("shipped@7:run1"));

    // A mark is never written over another run's claim or over a mark: the commit says what is there.
    assert_eq!(
        store
            .settle(
                &marks(vec![
                    (key("b"), Mark::Shipped { at: 7, run: "run1".into() }, 100),
                    (key("a"), Mark::Shipped { at: 7, run: "run1".into() }, 100)
                ]),
                "inflight:run1"
            )
            .await
            .unwrap(),
        vec![Commit::Lost("inflight:run2".into()), Commit::Lost("shipped@7:run1".into())]
    );
    assert_eq!(store.get(&key("b")).await.unwrap().as_deref(), Some("inflight:run2"));

    // Rejected entries are marked too, so they are not retried forever.
    assert_eq!(
        store
            .settle(&marks(vec![(key("b"), Mark::Rejected("InvalidData".into()), 100)]), "inflight:run2")
            .await
            .unwrap(),
        vec![Commit::Committed]
    );
    assert_eq!(store.get(&key("b")).await.unwrap().as_deref(), Some("rejected:InvalidData"));

    // A lease that ran out with nobody else on the key: the mark is written, and the commit says
    // the entry was unguarded for a while.
    assert_eq!(
        store.claim(&[key("c")], "inflight:run3", Duration::from_millis(150)).await.unwrap(),
        vec![Claim::Ours]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        store
            .settle(
                &marks(vec![(key("c"), Mark::Shipped { at: 7, run: "run1".into() }, 1)]),
                "inflight:run3"
            )
            .await
            .unwrap(),
        vec![Commit::LeaseLapsed]
    );
    assert_eq!(store.get(&key("c")).await.unwrap().as_deref(), Some("shipped@7:run1"));

    // Records are written whatever the key holds, with their time to live.
    let record = Settlement {
        records: vec![(key("r"), "parts:1,3".into(), 100)],
        ..Default::default()
    };
    assert!(store.settle(&record, "inflight:any").await.unwrap().is_empty());
    assert_eq!(
        store.get_many(&[key("r"), key("nothing")]).await.unwrap(),
        vec![Some("parts:1,3".to_string()), None]
    );

    // Leases and marks expire.
    assert_eq!(
        store.claim(&[key("d")], "inflight:run4", Duration::from_millis(150)).await.unwrap(),
        vec![Claim::Ours]
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        store.claim(&[key("c"), key("d")], "inflight:run5", lease).await.unwrap(),
        vec![Claim::Ours, Claim::Ours]
    );

    // Plain values (the watermark) round-trip.
    store.put(&key("w"), "1700000000", None).await.unwrap();
    assert_eq!(store.get(&key("w")).await.unwrap().as_deref(), Some("1700000000"));

    // Conditional writes apply only where the key holds what they expect, each on its own.
    store.put(&key("s1"), "shipped@1", None).await.unwrap();
    store.put(&key("s2"), "inflight:run9", None).await.unwrap();
    let applied = store
        .swap(&[
            Swap::create(key("s0"), "found", Some(100)),
            Swap::create(key("s1"), "found", Some(100)),
            Swap::delete(key("s1"), "shipped@1"),
            Swap::delete(key("s2"), "shipped@1"),
            Swap {
                key: key("w"),
                expected: Some("1700000000".into()),
                new: Some(("1700000100".into(), None)),
            },
            Swap {
                key: key("w"),
                expected: Some("1700000000".into()),
                new: Some(("1699999999".into(), None)),
            },
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![true, false, true, false, true, false]);
    assert_eq!(
        store.get_many(&[key("s0"), key("s1"), key("s2"), key("w")]).await.unwrap(),
        vec![
            Some("found".to_string()),
            None,
            Some("inflight:run9".to_string()),
            Some("1700000100".to_string())
        ]
    );
    // A created key expires with its time to live.
    store.swap(&[Swap::create(key("s3"), "found", Some(1))]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(store.get(&key("s3")).await.unwrap(), None);
}
