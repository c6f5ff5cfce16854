//! The Lambda handler end to end: the real binary serving invocations from the Runtime API emulator of
//! `cargo lambda watch --only-lambda-apis`, invoked over the Invoke API with the scheduled-event fixture
//! (and other payloads), against the loopback fakes of Kong and CloudTrail and a real redis-server.
//!
//! cargo-lambda comes from PyPI (`pip install cargo-lambda`); `scripts/test` installs it. Without it
//! these tests fail, on purpose: the Lambda path is what runs in production.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::redis_server::free_port;
use support::*;

const SCHEDULED_EVENT: &str = include_str!("fixtures/scheduled-event.json");

/// Where `cargo-lambda` is: on PATH, or in the virtualenv `scripts/test` makes when pip may not
/// install into the system Python.
fn cargo_lambda() -> PathBuf {
    let venv = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/kong-audit-shipper/cargo-lambda/bin"))
        .into_iter();
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(venv)
        .map(|dir| dir.join("cargo-lambda"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("cargo-lambda is not installed: run scripts/test, which installs cargo-lambda (from PyPI: pip install cargo-lambda)")
        })
}

/// A child process killed (and reaped) when the test ends, however it ends.
struct Proc {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let collect = |stream: Box<dyn std::io::Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
            (lines, reader)
        };
        let (stdout, out_reader) = collect(Box::new(child.stdout.take().unwrap()));
        let (stderr, err_reader) = collect(Box::new(child.stderr.take().unwrap()));
        Proc {
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// Waits for the process to exit on its own, and for every line it wrote to be read.
    fn exited(&mut self, within: Duration, what: &str) -> std::process::ExitStatus {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(start.elapsed() < within, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        status
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_for_stderr(&mut self, needle: &str, within: Duration) {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.stderr().iter().any(|l| l.contains(needle)) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("exited ({status}) before {needle:?}:\n{}", self.stderr().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no {needle:?} within {within:?}:\n{}", self.stderr().join("\n"));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Runtime API emulator and the function it serves, on a free loopback port.
struct Lambda {
    port: u16,
    function: Proc,
    _emulator: Proc,
    invocations: std::sync::atomic::AtomicUsize,
}

impl Lambda {
    fn start(env: &HashMap<String, String>) -> Lambda {
        let port = free_port();
        let mut cmd = Command::new(cargo_lambda());
        cmd.args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        let mut emulator = Proc::spawn(cmd);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = emulator.child.try_wait() {
                panic!("cargo lambda watch exited ({status}):\n{}", emulator.stderr().join("\n"));
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "cargo lambda watch did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        let mut function = start_function(env, &format!("http://127.0.0.1:{port}/.rt"));
        function.wait_for_stderr("Lambda handler ready", Duration::from_secs(30));
        Lambda {
            port,
            function,
            _emulator: emulator,
            invocations: Default::default(),
        }
    }

    /// POSTs a payload to the Invoke API; returns the HTTP status, the answer and how long it took,
    /// once the invocation's summary log line and EMF record have been read from the function's
    /// pipes (it writes both before it answers, but other threads read them).
    async fn invoke(&self, payload: &str) -> (u16, Value, Duration) {
        let url = format!("http://127.0.0.1:{}/2015-03-31/functions/_/invocations", self.port);
        let started = Instant::now();
        let resp = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(payload.to_string())
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("the emulator answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let took = started.elapsed();
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        let n = self.invocations.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let written = Instant::now();
        loop {
            let summaries = self.function.stderr().iter().filter(|l| l.contains("summary status=")).count();
            if self.emf().len() >= n && summaries >= n {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(10),
                "invocation {n}: its summary and EMF lines never arrived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (status, body, took)
    }

    /// The EMF records the function printed on stdout, in order.
    fn emf(&self) -> Vec<Value> {
        self.function
            .stdout()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["_aws"]["CloudWatchMetrics"].is_array())
            .collect()
    }
}

/// The real binary, started as the Lambda runtime starts it: no arguments, the runtime's environment.
/// These tests have no queue: unless a test says otherwise, dead letters go to the log, accepted out
/// loud with ALLOW_EPHEMERAL_DEAD_LETTERS.
fn start_function(env: &HashMap<String, String>, runtime_api: &str) -> Proc {
    let mut env = env.clone();
    if !env.contains_key("DEAD_LETTER_QUEUE_URL") {
        env.entry("ALLOW_EPHEMERAL_DEAD_LETTERS".into()).or_insert_with(|| "true".into());
    }
    let mut cmd = Command::new(BIN);
    cmd.env_clear().envs(&env);
    for keep in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128");
    Proc::spawn(cmd)
}

fn kong_entry(event_data: &str) -> Value {
    let v: Value = serde_json::from_str(event_data).unwrap();
    v["additionalEventData"]["kongAuditEntry"].clone()
}

/// Every stderr line is a JSON object with `level` and an RFC 3339 `timestamp` (Lambda's log format).
fn assert_json_logs(lines: &[String]) -> Vec<Value> {
    assert!(!lines.is_empty(), "no log lines");
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"));
            let level = v["level"].as_str().unwrap_or_else(|| panic!("no level: {l}"));
            assert!(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level), "{l}");
            let ts = v["timestamp"].as_str().unwrap_or_else(|| panic!("no timestamp: {l}"));
            chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|e| panic!("timestamp {ts} is not RFC 3339 ({e})"));
            v
        })
        .collect()
}

/// The values of these keys, in one `MGET` per 500 keys (one redis-cli per key would be slow).
fn values(redis: &RedisServer, keys: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in keys.chunks(500) {
        let mut args = vec!["MGET"];
        args.extend(chunk.iter().map(String::as_str));
        let text = redis.cli(&args).unwrap_or_default();
        let got: Vec<String> = text.lines().map(str::to_string).collect();
        assert_eq!(
            got.len(),
            chunk.len(),
            "MGET answered {} values for {} keys",
            got.len(),
            chunk.len()
        );
        out.extend(got);
    }
    out
}

/// Values of the entry keys (`<prefix>request:*`, `<prefix>object:*`) in Redis.
fn entry_keys(redis: &RedisServer) -> HashMap<String, String> {
    let mut keys = redis.keys("kong-audit-shipper:request:*");
    keys.extend(redis.keys("kong-audit-shipper:object:*"));
    let vals = values(redis, &keys);
    keys.into_iter().zip(vals).collect()
}

fn assert_no_claims_left(redis: &RedisServer) {
    let keys = redis.keys("*");
    for (key, value) in keys.iter().zip(values(redis, &keys)) {
        assert!(!value.starts_with("inflight:"), "{key} still holds a claim: {value}");
    }
}

#[tokio::test]
async fn a_scheduled_event_ships_the_whole_trail_once_then_nothing() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 120, true);
    let total = (requests.len() + objects.len()) as u64;
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("KONG_PAGE_SIZE".into(), "50".into());
    let lambda = Lambda::start(&env);

    let (status, body, _) = lambda.invoke(SCHEDULED_EVENT).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["read"].as_u64(), Some(total), "{body}");
    assert_eq!(body["shipped"].as_u64(), Some(total), "{body}");
    assert_eq!((body["failed"].as_u64(), body["rejected"].as_u64()), (Some(0), Some(0)));
    assert!(body["pages"].as_u64().unwrap() >= total / 50, "{body}");

    // CloudTrail got every entry once, whole.
    let mut originals: HashMap<String, Value> = HashMap::new();
    for r in &requests {
        originals.insert(format!("req-{}", r["request_id"].as_str().unwrap()), r.clone());
    }
    for o in &objects {
        originals.insert(format!("obj-{}", o["id"].as_str().unwrap()), o.clone());
    }
    let accepted = ct.accepted();
    assert_eq!(accepted.len() as u64, total);
    let ids: HashSet<&str> = accepted.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len() as u64, total, "no id twice");
    for (id, data) in &accepted {
        assert_eq!(kong_entry(data), originals[id], "{id}");
    }
    assert!(ct.with(|s| s.violations.is_empty()), "{:?}", ct.with(|s| s.violations.clone()));

    // Redis holds one `shipped` key per entry, and no claim.
    let keys = entry_keys(&redis);
    assert_eq!(keys.len() as u64, total);
    assert!(keys.values().all(|v| v.starts_with("shipped@")), "{keys:?}");
    assert_no_claims_left(&redis);

    // Logs are JSON lines with level and timestamp; the summary is one of them.
    let logs = assert_json_logs(&lambda.function.stderr());
    let summary_line = logs
        .iter()
        .find(|l| l["message"].as_str().is_some_and(|m| m.starts_with("summary status=ok")))
        .expect("a summary log line");
    assert!(
        summary_line["span"]["requestId"].as_str().is_some_and(|id| !id.is_empty()),
        "log lines of an invocation carry its request id: {summary_line}"
    );
    assert!(
        logs.iter()
            .any(|l| l["message"] == "invocation started" && l["source"] == "aws.events")
    );

    // One EMF record on stdout per invocation, with the counts.
    let emf = lambda.emf();
    assert_eq!(emf.len(), 1, "{:?}", lambda.function.stdout());
    assert_eq!(emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"], "KongAuditShipper");
    assert_eq!(emf[0]["FunctionName"], "_");
    assert_eq!((emf[0]["Read"].as_u64(), emf[0]["Shipped"].as_u64()), (Some(total), Some(total)));
    assert!(emf[0]["_aws"]["Timestamp"].as_i64().unwrap() > 1_700_000_000_000);

    // The same container, invoked again: the clients are reused and nothing is shipped twice.
    let (status, body, _) = lambda.invoke(SCHEDULED_EVENT).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["shipped"].as_u64(), body["failed"].as_u64()), (Some(0), Some(0)), "{body}");
    assert_eq!(body["read"], body["already_shipped"], "{body}");
    assert_eq!(ct.accepted().len() as u64, total, "a second invocation ships nothing");
    assert_eq!(lambda.emf().len(), 2);
    let ready = lambda
        .function
        .stderr()
        .iter()
        .filter(|l| l.contains("Lambda handler ready"))
        .count();
    assert_eq!(ready, 1, "clients are built once per container");
}

#[tokio::test]
async fn scheduler_payloads_and_empty_events_are_accepted_and_ignored_for_the_window() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let lambda = Lambda::start(&env_for(&kong, &ct, Some(&redis)));
    let now = chrono::Utc::now().timestamp();
    let payloads = [
        r#"{"detail":"{}"}"#,
        "{}",
        r#"{"source":"aws.scheduler","detail-type":"Scheduled Event","time":"1999-01-01T00:00:00Z","detail":{"since":"1999"}}"#,
        r#""any JSON at all""#,
    ];
    for (i, payload) in payloads.iter().enumerate() {
        let request = json!({"request_id": format!("SCHED{i:027}"), "request_timestamp": now, "method": "POST", "path": "/services", "status": 201, "ttl": 2_591_999});
        kong.add("requests", &[request]);
        let (status, body, _) = lambda.invoke(payload).await;
        assert_eq!(status, 200, "{payload}: {body}");
        assert_eq!(body["shipped"].as_u64(), Some(1), "{payload}: {body}");
        assert_eq!(body["failed"].as_u64(), Some(0), "{payload}: {body}");
    }
    assert_eq!(ct.accepted().len(), payloads.len());
    assert_no_claims_left(&redis);
}

#[tokio::test]
async fn rejected_entries_make_the_invocation_an_error_with_the_summary() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let (requests, objects) = load_trail(&kong, 30, true);
    let total = (requests.len() + objects.len()) as u64;
    let victim = requests[3]["request_id"].as_str().unwrap().to_string();
    ct.with(|s| s.refuse.insert(format!("req-{victim}"), "InvalidData"));
    let lambda = Lambda::start(&env_for(&kong, &ct, Some(&redis)));

    let (status, body, _) = lambda.invoke(SCHEDULED_EVENT).await;
    assert_ne!(status, 200, "{body}");
    assert_eq!(body["errorType"], "KongAuditShipper.EntriesNotShipped", "{body}");
    let message = body["errorMessage"].as_str().unwrap();
    assert!(
        message.starts_with("summary status=failed")
            && message.contains("rejected=1")
            && message.contains(&format!("shipped={}", total - 1)),
        "{message}"
    );
    // The EMF line is written on the error path too, and the rejected entry is in the error log.
    let emf = lambda.emf();
    assert_eq!(emf.len(), 1);
    assert_eq!((emf[0]["Rejected"].as_u64(), emf[0]["status"].as_str()), (Some(1), Some("failed")));
    let logs = assert_json_logs(&lambda.function.stderr());
    assert!(
        logs.iter().any(|l| l["level"] == "ERROR" && l.to_string().contains(&victim)),
        "the rejected entry is logged at error level"
    );
    assert_eq!(redis.get(&format!("kong-audit-shipper:request:{victim}")), "rejected:InvalidData");

    // The container keeps serving; the refused entry is not retried forever.
    let (status, body, _) = lambda.invoke("{}").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["shipped"].as_u64(), Some(0), "{body}");
}

/// What makes the run slow in a deadline test.
#[derive(Debug, Clone, Copy)]
enum Slow {
    /// Each Kong page takes 400 ms: reading is the bottleneck.
    Kong,
    /// Each PutAuditEvents call takes 300 ms, one at a time: shipping is the bottleneck, and the
    /// next pages are already waiting when the deadline comes.
    CloudTrail,
}

/// With `MAX_RUN_SECONDS=4` and a deadline the emulator leaves unknown, every invocation returns
/// within 4 s, leaves only `shipped` keys (no claim), and the next invocations continue until every
/// entry is shipped exactly once.
async fn a_run_stops_in_time_and_leaves_no_claims(slow: Slow) {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    // About 1,800 entries: 18 pages and 18 PutAuditEvents calls, 5 to 7 s of work.
    let (requests, objects) = load_trail(&kong, 900, true);
    let total = requests.len() + objects.len();
    match slow {
        Slow::Kong => kong.with(|s| s.latency = Duration::from_millis(400)),
        Slow::CloudTrail => ct.with(|s| s.latency = Duration::from_millis(300)),
    }
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("MAX_RUN_SECONDS".into(), "4".into());
    env.insert("DEADLINE_MARGIN_SECONDS".into(), "2".into());
    env.insert("PUT_CONCURRENCY".into(), "1".into());
    env.insert("KONG_PAGE_SIZE".into(), "100".into());
    // The whole sample trail spans minutes: the default 5-minute overlap would re-read all of it
    // on every run, and a 4 s run would never get past it.
    env.insert("OVERLAP_SECONDS".into(), "1".into());
    let lambda = Lambda::start(&env);

    // cargo lambda watch sends a deadline in 1970: the handler treats it as unknown.
    let (status, body, took) = lambda.invoke(SCHEDULED_EVENT).await;
    let logs = lambda.function.stderr().join("\n");
    assert_eq!(status, 200, "{body}");
    assert!(
        took < Duration::from_secs(4),
        "{slow:?}: returned after {took:?}, past MAX_RUN_SECONDS=4:\n{logs}"
    );
    assert_eq!(body["status"], "partial", "{body}");
    assert_eq!(body["stopped_early"], true, "{body}");
    assert_eq!(body["failed"].as_u64(), Some(0), "{body}");
    let shipped = body["shipped"].as_u64().unwrap() as usize;
    assert!(0 < shipped && shipped < total, "shipped {shipped} of {total}");
    let keys = entry_keys(&redis);
    assert_eq!(keys.len(), shipped, "a key for each shipped entry, none for the rest");
    assert!(keys.values().all(|v| v.starts_with("shipped@")), "{keys:?}");
    assert_no_claims_left(&redis);
    let logs = assert_json_logs(&lambda.function.stderr());
    assert!(
        logs.iter()
            .any(|l| l["message"].as_str().is_some_and(|m| m.contains("deadline is unknown")))
    );

    // The next invocations continue where it stopped, until everything is shipped exactly once.
    let mut invocations = 1;
    while ct.accepted().len() < total {
        invocations += 1;
        assert!(
            invocations <= 12,
            "not done after 12 invocations: {} of {total}",
            ct.accepted().len()
        );
        let (status, body, took) = lambda.invoke(SCHEDULED_EVENT).await;
        assert_eq!(status, 200, "{body}");
        assert!(took < Duration::from_secs(4), "{slow:?}: returned after {took:?}");
        assert_no_claims_left(&redis);
    }
    let counts = ct.accepted_ids();
    assert_eq!(counts.len(), total);
    assert!(counts.values().all(|n| *n == 1), "every entry shipped exactly once");
    assert!(entry_keys(&redis).values().all(|v| v.starts_with("shipped@")));
}

#[tokio::test]
async fn an_unknown_deadline_falls_back_to_max_run_seconds_with_a_slow_kong() {
    a_run_stops_in_time_and_leaves_no_claims(Slow::Kong).await;
}

#[tokio::test]
async fn an_unknown_deadline_falls_back_to_max_run_seconds_with_a_slow_cloudtrail() {
    a_run_stops_in_time_and_leaves_no_claims(Slow::CloudTrail).await;
}

#[tokio::test]
async fn without_redis_the_handler_stops_before_serving_with_a_json_error() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    // No emulator is needed: the handler must stop before it asks the Runtime API for anything.
    let runtime_api = format!("http://127.0.0.1:{}/.rt", free_port());
    let mut function = start_function(&env_for(&kong, &ct, None), &runtime_api);
    let status = function.exited(Duration::from_secs(20), "still running without Redis");
    assert_eq!(status.code(), Some(2), "{:?}", function.stderr());
    let logs = assert_json_logs(&function.stderr());
    let error = logs.iter().find(|l| l["level"] == "ERROR").expect("an error line");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("REDIS_URL") && message.contains("needs Redis"), "{message}");
    assert!(function.stdout().is_empty(), "nothing on stdout: {:?}", function.stdout());
}

/// In Lambda a dead letter must outlive the container: without a queue, and without the loss
/// accepted out loud, the handler stops before serving and says what would be lost.
#[tokio::test]
async fn without_a_dead_letter_queue_the_handler_stops_before_serving_and_says_what_is_lost() {
    let kong = FakeKong::start("3.8.1.0").await;
    let ct = FakeCloudTrail::start().await;
    let redis = RedisServer::start();
    let mut env = env_for(&kong, &ct, Some(&redis));
    env.insert("ALLOW_EPHEMERAL_DEAD_LETTERS".into(), "false".into());
    env.insert("DEAD_LETTER_FILE".into(), "/tmp/dead-letters.ndjson".into());
    let runtime_api = format!("http://127.0.0.1:{}/.rt", free_port());
    let mut function = start_function(&env, &runtime_api);
    let status = function.exited(Duration::from_secs(20), "still running without a dead-letter queue");
    assert_eq!(status.code(), Some(2), "{:?}", function.stderr());
    let logs = assert_json_logs(&function.stderr());
    let error = logs.iter().find(|l| l["level"] == "ERROR").expect("an error line");
    let message = error["message"].as_str().unwrap();
    for needed in ["DEAD_LETTER_QUEUE_URL", "ALLOW_EPHEMERAL_DEAD_LETTERS", "256 KB", "/tmp"] {
        assert!(message.contains(needed), "{needed} missing from: {message}");
    }
    assert!(redis.keys("*").is_empty(), "nothing was claimed");
}
