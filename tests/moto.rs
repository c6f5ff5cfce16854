//! A second opinion on the AWS paths the fakes cover: the real binary against moto's server mode (PyPI
//! `moto[server]`, an implementation of SQS and Secrets Manager that nobody here wrote), started on a free
//! loopback port (the Kong and the Konnect token read from Secrets Manager, dead letters in SQS). The
//! CloudWatch Logs destination has its own moto test in tests/cloudwatch_logs.rs.

#[path = "support/moto_server.rs"]
mod moto_server;
mod support;

use aws_sdk_sqs::types::QueueAttributeName;
use moto_server::MotoServer;
use serde_json::Value;
use support::*;

const VERSION: &str = "3.8.1.0";

fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
            aws_sdk_sqs::config::Credentials::new("AKIDTEST", "test-secret", None, None, "test"),
        ))
        .endpoint_url(endpoint)
        .build()
}

async fn messages_in(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn dead_letters_reach_an_sqs_queue_in_moto_and_redrive_ships_them_once_fixed() {
    let moto = MotoServer::start();
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(&moto.url()));
    let queue = sqs
        .create_queue()
        .queue_name("kong-audit-shipper-rejected")
        .send()
        .await
        .expect("CreateQueue on moto");
    let url = queue.queue_url().unwrap().to_string();
    let kong = FakeKong::start(VERSION).await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 20, true);
    let refused: Vec<&Value> = vec![&requests[2], &requests[9]];
    ct.with(|s| {
        for r in &refused {
            s.refuse.insert(format!("req-{}", r["request_id"].as_str().unwrap()), "InvalidData");
        }
    });
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("DEAD_LETTER_QUEUE_URL".into(), url.clone());
    env.insert("AWS_ENDPOINT_URL_SQS".into(), moto.url());

    let ran = run_bin(&["run"], &env).await;
    assert_eq!((ran.code, ran.count("rejected")), (1, 2), "{}", ran.stderr);
    assert_eq!(messages_in(&sqs, &url).await, 2);
    // Look without taking: a visibility timeout of 0 leaves them for redrive.
    let got = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let mut entries: Vec<Value> = got
        .messages()
        .iter()
        .map(|m| serde_json::from_str::<Value>(m.body().unwrap()).unwrap()["entry"].clone())
        .collect();
    entries.sort_by_key(|e| e["request_id"].as_str().unwrap().to_string());
    assert_eq!(
        entries,
        vec![refused[0].clone(), refused[1].clone()],
        "whole entries in the letters"
    );

    ct.with(|s| s.refuse.clear());
    let redrive = run_bin(&["redrive"], &env).await;
    assert_eq!(redrive.code, 0, "{}", redrive.stderr);
    assert!(redrive.stderr.contains("shipped=2"), "{}", redrive.stderr);
    assert_eq!(messages_in(&sqs, &url).await, 0, "shipped letters are deleted");
    assert_eq!(ct.accepted().len(), requests.len() + objects.len(), "everything once");
}

#[tokio::test]
async fn the_kong_token_is_read_from_a_secret_in_moto_and_never_shown() {
    const TOKEN: &str = "kong-t0ken-from-moto";
    let moto = MotoServer::start();
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk_config(&moto.url()));
    let secret = secrets
        .create_secret()
        .name("kong/audit-reader")
        .secret_string(TOKEN)
        .send()
        .await
        .expect("CreateSecret on moto");
    let arn = secret.arn().unwrap().to_string();
    let kong = FakeKong::start(VERSION).await;
    kong.with(|s| s.token = Some(TOKEN.into()));
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 10, true);
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("KONG_ADMIN_TOKEN_SECRET_ARN".into(), arn);
    env.insert("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), moto.url());
    env.insert("RUST_LOG".into(), "trace".into());

    let ran = run_bin(&["run"], &env).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.count("shipped"), (requests.len() + objects.len()) as u64);
    assert!(!ran.stderr.contains(TOKEN) && !ran.stdout.contains(TOKEN), "the token was printed");

    let mut missing = env.clone();
    missing.insert("KONG_ADMIN_TOKEN_SECRET_ARN".into(), "kong/no-such-secret".into());
    let ran = run_bin(&["run"], &missing).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("KONG_ADMIN_TOKEN_SECRET_ARN"), "{}", ran.stderr);
}

#[tokio::test]
async fn the_konnect_token_is_read_from_a_secret_in_moto_and_never_shown() {
    use support::fake_konnect::{self, FakeKonnect};

    let moto = MotoServer::start();
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk_config(&moto.url()));
    let secret = secrets
        .create_secret()
        .name("konnect/audit-reader")
        .secret_string(fake_konnect::TOKEN)
        .send()
        .await
        .expect("CreateSecret on moto");
    let arn = secret.arn().unwrap().to_string();
    let konnect = FakeKonnect::start().await;
    let t = chrono::Utc::now();
    konnect.add(&fake_konnect::trail(
        9,
        t - chrono::Duration::hours(5),
        t - chrono::Duration::minutes(5),
    ));
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let mut env = env_without_source(&ct, Some(&redis));
    env.insert("KONNECT_API_URL".into(), konnect.url());
    env.insert("KONNECT_TOKEN_SECRET_ARN".into(), arn);
    env.insert("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), moto.url());
    env.insert("RUST_LOG".into(), "trace".into());

    let ran = run_bin(&["run"], &env).await;
    assert_eq!((ran.code, ran.count("shipped")), (0, 9), "{}", ran.stderr);
    assert!(
        !ran.stderr.contains(fake_konnect::TOKEN) && !ran.stdout.contains(fake_konnect::TOKEN),
        "the token was printed"
    );

    let mut missing = env.clone();
    missing.insert("KONNECT_TOKEN_SECRET_ARN".into(), "konnect/no-such-secret".into());
    let ran = run_bin(&["run"], &missing).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("KONNECT_TOKEN_SECRET_ARN"), "{}", ran.stderr);
}
