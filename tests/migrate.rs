//! Switching from Kong's 2023 proof of concept: its marks are carried over, so no request it
//! shipped is shipped again; objects, which it never shipped, are.

mod support;

use support::*;

#[tokio::test]
async fn the_proof_of_concepts_marks_are_carried_over_with_their_expiry() {
    let kong = FakeKong::start("3.4.3.12").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 60, true);
    // What the proof of concept left: bare request ids holding 1, expiring with the entry.
    let shipped_by_poc: Vec<String> = requests
        .iter()
        .take(40)
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    for id in &shipped_by_poc {
        redis.cli(&["SET", id, "1", "EX", "5000"]);
    }
    redis.cli(&["SET", "unrelated:key", "1", "EX", "5000"]);
    let env = env_for(&kong, &ct, Some(&redis));
    let migrated = run_bin(&["migrate-poc-keys"], &env).await;
    assert_eq!(migrated.code, 0, "{}", migrated.stderr);
    assert!(migrated.stdout.contains("imported 40 request marks"), "{}", migrated.stdout);
    let ttl = redis.ttl(&format!("kong-audit-shipper:request:{}", shipped_by_poc[0]));
    assert!((4_990..=5_000).contains(&ttl), "the mark keeps the old key's expiry: {ttl}");
    assert_eq!(redis.get(&shipped_by_poc[0]), "1", "old keys stay for the old shipper");

    let again = run_bin(&["migrate-poc-keys"], &env).await;
    assert!(
        again
            .stdout
            .contains("imported 0 request marks of the proof of concept (40 were already present)"),
        "{}",
        again.stdout
    );

    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.count("already_shipped"), 40);
    assert_eq!(ran.count("shipped"), (requests.len() - 40 + objects.len()) as u64);
    let accepted = ct.accepted_ids();
    assert!(shipped_by_poc.iter().all(|id| !accepted.contains_key(&format!("req-{id}"))));
}
