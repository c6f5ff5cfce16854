//! A loopback fake of SQS's JSON 1.0 protocol (`X-Amz-Target: AmazonSQS.<Operation>`), strict about
//! the limits that matter to dead letters: 10 messages per batch, the queue's maximum message size
//! for each body and for the sum of a batch, and the characters a body may hold. The real AWS SDK
//! talks to it through `AWS_ENDPOINT_URL_SQS`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const QUEUE_URL: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/kong-audit-shipper-rejected";

#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub body: String,
    receipt: String,
    visible_at: Instant,
    pub receives: u32,
}

#[derive(Debug)]
pub struct SqsState {
    pub queue_url: String,
    /// The queue's `MaximumMessageSize`: each body and each batch's sum.
    pub max_message_size: usize,
    pub messages: Vec<Message>,
    /// Whole calls to fail with HTTP 500 before answering normally.
    pub fail_next_calls: u32,
    /// How long every call waits before it is answered (a queue that hangs).
    pub latency: std::time::Duration,
    /// Calls received, by operation.
    pub calls: Vec<String>,
    pub deleted: u64,
    next_id: u64,
}

#[derive(Clone)]
pub struct FakeSqs {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<SqsState>>,
}

impl FakeSqs {
    pub async fn start() -> FakeSqs {
        let state = Arc::new(Mutex::new(SqsState {
            queue_url: QUEUE_URL.into(),
            max_message_size: 262_144,
            messages: Vec::new(),
            fail_next_calls: 0,
            latency: std::time::Duration::ZERO,
            calls: Vec::new(),
            deleted: 0,
            next_id: 0,
        }));
        let app = Router::new().route("/", post(handle)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeSqs { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut SqsState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Bodies of every message in the queue, visible or not.
    pub fn bodies(&self) -> Vec<String> {
        self.with(|s| s.messages.iter().map(|m| m.body.clone()).collect())
    }

    /// Makes every message visible again (as if their visibility timeout had passed).
    pub fn reveal_all(&self) {
        self.with(|s| s.messages.iter_mut().for_each(|m| m.visible_at = Instant::now()));
    }
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/x-amz-json-1.0")],
        json!({"__type": format!("com.amazonaws.sqs#{kind}"), "message": message}).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, [("content-type", "application/x-amz-json-1.0")], body.to_string()).into_response()
}

/// SQS accepts #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF.
fn allowed(c: char) -> bool {
    matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

async fn handle(State(state): State<Arc<Mutex<SqsState>>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type != "application/x-amz-json-1.0" {
        return error(400, "InvalidParameterValue", "not JSON 1.0");
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return error(400, "SerializationException", "bad body"),
    };
    let latency = state.lock().unwrap().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut s = state.lock().unwrap();
    s.calls.push(target.clone());
    if s.fail_next_calls > 0 {
        s.fail_next_calls -= 1;
        return error(500, "InternalError", "injected");
    }
    if request["QueueUrl"] != s.queue_url.as_str() {
        return error(400, "QueueDoesNotExist", "The specified queue does not exist.");
    }
    match target.as_str() {
        "AmazonSQS.SendMessageBatch" => {
            let entries = request["Entries"].as_array().cloned().unwrap_or_default();
            if entries.is_empty() {
                return error(400, "AWS.SimpleQueueService.EmptyBatchRequest", "empty");
            }
            if entries.len() > 10 {
                return error(400, "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "more than 10");
            }
            let total: usize = entries.iter().map(|e| e["MessageBody"].as_str().unwrap_or_default().len()).sum();
            if total > s.max_message_size {
                return error(400, "AWS.SimpleQueueService.BatchRequestTooLong", "batch too long");
            }
            let mut successful = Vec::new();
            let mut failed = Vec::new();
            for e in entries {
                let id = e["Id"].as_str().unwrap_or_default().to_string();
                let body = e["MessageBody"].as_str().unwrap_or_default().to_string();
                if body.len() > s.max_message_size {
                    failed.push(json!({"Id": id, "SenderFault": true, "Code": "InvalidParameterValue", "Message": "message too long"}));
                } else if !body.chars().all(allowed) {
                    failed.push(json!({"Id": id, "SenderFault": true, "Code": "InvalidMessageContents", "Message": "invalid characters"}));
                } else {
                    s.next_id += 1;
                    let message_id = format!("m-{:08}", s.next_id);
                    s.messages.push(Message {
                        id: message_id.clone(),
                        body,
                        receipt: String::new(),
                        visible_at: Instant::now(),
                        receives: 0,
                    });
                    successful.push(json!({"Id": id, "MessageId": message_id, "MD5OfMessageBody": "00000000000000000000000000000000"}));
                }
            }
            ok(json!({"Successful": successful, "Failed": failed}))
        }
        "AmazonSQS.ReceiveMessage" => {
            let max = request["MaxNumberOfMessages"].as_u64().unwrap_or(1).clamp(1, 10) as usize;
            let visibility = Duration::from_secs(request["VisibilityTimeout"].as_u64().unwrap_or(30));
            let now = Instant::now();
            let mut out = Vec::new();
            let mut n = 0;
            let next = s.next_id;
            for m in s.messages.iter_mut().filter(|m| m.visible_at <= now).take(max) {
                n += 1;
                m.receives += 1;
                m.receipt = format!("rh-{}-{}-{}", m.id, m.receives, next + n);
                m.visible_at = now + visibility;
                out.push(
                    json!({"MessageId": m.id, "ReceiptHandle": m.receipt, "MD5OfBody": "00000000000000000000000000000000", "Body": m.body}),
                );
            }
            s.next_id += n;
            ok(json!({"Messages": out}))
        }
        "AmazonSQS.DeleteMessageBatch" => {
            let entries = request["Entries"].as_array().cloned().unwrap_or_default();
            if entries.is_empty() || entries.len() > 10 {
                return error(400, "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "1 to 10 entries");
            }
            let mut successful = Vec::new();
            for e in entries {
                let receipt = e["ReceiptHandle"].as_str().unwrap_or_default();
                let before = s.messages.len();
                s.messages.retain(|m| m.receipt != receipt);
                s.deleted += (before - s.messages.len()) as u64;
                // Like SQS: deleting with a stale or unknown handle still succeeds.
                successful.push(json!({"Id": e["Id"]}));
            }
            ok(json!({"Successful": successful, "Failed": []}))
        }
        other => error(400, "UnknownOperationException", &format!("{other} is not faked")),
    }
}
