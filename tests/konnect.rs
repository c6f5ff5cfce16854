//! Konnect's audit logs: the client against a fake of `GET /v3/audit-logs`, and the mapping.
//!
//! - a walk reads every retained entry of its window exactly once, with the same bounds and size on
//!   every page, brackets encoded;
//! - a property: any trail, any page size, either cursor kind, any shape of `next`, entries inserted
//!   between page fetches (late ones included), members served in any order → every entry present
//!   for the whole walk and inside its bounds is read at least once per walk, nothing outside them,
//!   and every entry keeps its key from walk to walk;
//! - errors: a repeated cursor, 401, 403, 400, an HTML page, no `meta`, a page over the size cap stop
//!   with a clear error and no retry loop; 429 honours `Retry-After` (seconds or a date) within the
//!   deadline and backs off without it; 5xx and hung requests are retried;
//! - every mapped event passes CloudTrail's schema rules, and any entry comes back byte for byte.

#[path = "support/arb_json.rs"]
mod arb_json;
mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use arb_json::{J, Piece};
use chrono::{DateTime, TimeZone, Utc};
use kong_audit_shipper::konnect::mapping::{self, MapContext, MapError};
use kong_audit_shipper::konnect::{
    ApiUrl, AuditLogPages, ClientOptions, DEFAULT_MAX_PAGE_BYTES, KonnectClient, KonnectEntry, KonnectError, TimeWindow, Walk, read_window,
};
use kong_audit_shipper::retry::Backoff;
use kong_audit_shipper::secret::Secret;
use proptest::prelude::*;
use serde_json::{Value, json};
use support::fake_konnect::{self, CursorMode, FakeKonnect, Fault, NextStyle};

fn options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(5),
        backoff: Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            attempts: 5,
        },
        max_page_bytes: DEFAULT_MAX_PAGE_BYTES,
    }
}

fn client_with(fake: &FakeKonnect, token: &str, options: ClientOptions) -> KonnectClient {
    KonnectClient::new(ApiUrl::parse(&fake.url()).unwrap(), &Secret::new(token), options).unwrap()
}

fn client(fake: &FakeKonnect) -> KonnectClient {
    client_with(fake, fake_konnect::TOKEN, options())
}

/// Now, to the second.
fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(Utc::now().timestamp(), 0).unwrap()
}

fn trace(e: &KonnectEntry) -> String {
    e.str_field("trace_id").unwrap_or("?").to_string()
}

fn ts_of(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).unwrap().with_timezone(&Utc)
}

/// A small trail inside the last hour, and the window that holds it.
async fn small(n: u64) -> (FakeKonnect, TimeWindow) {
    let fake = FakeKonnect::start().await;
    let end = now() - chrono::Duration::seconds(60);
    fake.add(&fake_konnect::trail(n, end - chrono::Duration::seconds(3_000), end));
    (fake, TimeWindow::new(end - chrono::Duration::seconds(3_600), end).unwrap())
}

#[tokio::test]
async fn a_walk_reads_every_retained_entry_of_its_window_exactly_once() {
    let fake = FakeKonnect::start().await;
    fake.with(|s| s.retention = Some(chrono::Duration::days(7)));
    let now = now();
    let (gte, lte) = (now - chrono::Duration::days(6), now - chrono::Duration::seconds(60));
    // Eight days of all three shapes: the oldest day is past retention, the last minute past `lte`.
    let mut trail = fake_konnect::trail(2_400, now - chrono::Duration::days(8), now);
    // On the bounds (inclusive) and a millisecond outside them.
    let ms = chrono::Duration::milliseconds(1);
    for (i, at) in [gte, lte, gte - ms, lte + ms].into_iter().enumerate() {
        trail.push(fake_konnect::entry(
            "authorization",
            90_000 + i as u64,
            &fake_konnect::rfc3339(at, 0),
            true,
        ));
    }
    fake.add(&trail);
    let window = TimeWindow::new(gte, lte).unwrap();
    let want: HashSet<String> = trail
        .iter()
        .filter(|e| window.contains(ts_of(e)))
        .map(|e| e["trace_id"].as_str().unwrap().to_string())
        .collect();
    assert!(want.len() > 1_700 && want.contains("t90000") && want.contains("t90001"));
    assert!(!want.contains("t90002") && !want.contains("t90003"));

    let entries = read_window(&client(&fake), window, 1000, None).await.unwrap();

    let mut counts: HashMap<String, usize> = HashMap::new();
    for e in &entries {
        *counts.entry(trace(e)).or_default() += 1;
    }
    let got: HashSet<String> = counts.keys().cloned().collect();
    assert_eq!(got, want, "missing {:?}", want.difference(&got).take(5).collect::<Vec<_>>());
    assert!(
        counts.values().all(|n| *n == 1),
        "read twice: {:?}",
        counts.iter().filter(|(_, n)| **n > 1).take(5).collect::<Vec<_>>()
    );
    let keys: HashSet<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys.len(), entries.len(), "one key per entry");
    assert!(entries.iter().any(|e| e.key.starts_with("sha256-")) && entries.iter().any(|e| e.signature() == Some(e.key.as_str())));
    assert!(fake.len() < trail.len(), "retention dropped the oldest day");

    // Every page: the same bounds and size, encoded; the cursor from the page before.
    let received = fake.received();
    assert_eq!(received.len(), want.len().div_ceil(1000));
    for (i, r) in received.iter().enumerate() {
        assert!(r.uri.contains("filter%5Bts%5D%5Bgte%5D=") && !r.uri.contains('['), "{}", r.uri);
        assert_eq!(r.param("filter[ts][gte]"), received[0].param("filter[ts][gte]"));
        assert_eq!(r.param("filter[ts][lte]"), received[0].param("filter[ts][lte]"));
        assert_eq!(r.param("page[size]"), Some("1000"));
        assert_eq!(r.param("page[after]").is_some(), i > 0);
        assert_eq!(r.params.len(), if i > 0 { 4 } else { 3 });
    }
    assert_eq!(
        received[0].param("filter[ts][lte]").unwrap(),
        lte.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn entries_stamped_late_are_read_by_the_next_walk_of_their_window_if_not_by_this_one() {
    let fake = FakeKonnect::start().await;
    let end = now() - chrono::Duration::seconds(60);
    let at = |secs_before_end: i64| fake_konnect::rfc3339(end - chrono::Duration::seconds(secs_before_end), 0);
    // 25 entries, one every 100 s: newest first, page 1 holds the ten newest (down to end − 900 s).
    fake.add(
        &(0..25)
            .map(|i| fake_konnect::entry("authorization", i, &at(i as i64 * 100), true))
            .collect::<Vec<_>>(),
    );
    // After page 1, two entries appear stamped minutes in the past: one behind the cursor (in the part
    // still to read), one ahead of it (in the part already read).
    let behind = fake_konnect::entry("gateway_access", 500, &at(2_450), true);
    let ahead = fake_konnect::entry("gateway_access", 501, &at(150), true);
    fake.with(|s| s.inserts_after_page.push_back(vec![behind.to_string(), ahead.to_string()]));
    let window = TimeWindow::new(end - chrono::Duration::seconds(3_600), end).unwrap();
    let c = client(&fake);

    let first: HashSet<String> = read_window(&c, window, 10, None).await.unwrap().iter().map(trace).collect();
    assert!(first.contains("t500"), "behind the cursor: read in the same walk");
    assert!(!first.contains("t501"), "ahead of the cursor: this walk has passed it");
    assert_eq!(first.len(), 26);
    let second: HashSet<String> = read_window(&c, window, 10, None).await.unwrap().iter().map(trace).collect();
    assert!(
        second.contains("t500") && second.contains("t501"),
        "the next walk of the window reads both"
    );
    assert_eq!(second.len(), 27);
}

// ---- the property: any trail, any page size, any order, any inserts between pages ----

/// Window of the property: an hour, starting on a fraction of a second.
fn property_window() -> TimeWindow {
    let gte = Utc.with_ymd_and_hms(2026, 8, 1, 10, 0, 0).unwrap() + chrono::Duration::milliseconds(250);
    TimeWindow::new(gte, gte + chrono::Duration::hours(1)).unwrap()
}

#[derive(Debug, Clone)]
struct Planned {
    kind: usize,
    /// Milliseconds from the window's start: inside, on a bound, or outside.
    at_ms: i64,
    offset_minutes: i32,
    signed: bool,
}

fn planned() -> impl Strategy<Value = Planned> {
    let hour = 3_600_000i64;
    let at = prop_oneof![
        6 => 0..=hour,
        1 => Just(0),
        1 => Just(hour),
        1 => -120_000i64..0,
        1 => (hour + 1)..(hour + 120_000),
    ];
    (
        0usize..3,
        at,
        prop_oneof![Just(0), Just(120), Just(-330)],
        proptest::bool::weighted(0.8),
    )
        .prop_map(|(kind, at_ms, offset_minutes, signed)| Planned {
            kind,
            at_ms,
            offset_minutes,
            signed,
        })
}

fn render(p: &Planned, n: u64) -> (String, DateTime<Utc>) {
    let at = property_window().gte + chrono::Duration::milliseconds(p.at_ms);
    let e = fake_konnect::entry(
        fake_konnect::TYPES[p.kind],
        n,
        &fake_konnect::rfc3339(at, p.offset_minutes),
        p.signed,
    );
    (e.to_string(), at)
}

const STYLES: [NextStyle; 5] = [
    NextStyle::Path,
    NextStyle::EncodedPath,
    NextStyle::Url,
    NextStyle::Bare,
    NextStyle::TopLevel,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_entry_present_for_a_whole_walk_is_read_and_keeps_its_key(
        initial in proptest::collection::vec(planned(), 0..70),
        batches in proptest::collection::vec(proptest::collection::vec(planned(), 0..6), 0..10),
        size in prop_oneof![3 => 1u32..=15, 1 => Just(1000u32)],
        keyset in any::<bool>(),
        shuffle in any::<bool>(),
        style in 0usize..5,
    ) {
        let window = property_window();
        // Every entry by its trace id: its original text and time.
        let mut all: HashMap<String, (String, DateTime<Utc>)> = HashMap::new();
        let mut initial_texts = Vec::new();
        let initial_ids: HashSet<String> = (0..initial.len()).map(|i| format!("t{i}")).collect();
        for (i, p) in initial.iter().enumerate() {
            let (text, at) = render(p, i as u64);
            all.insert(format!("t{i}"), (text.clone(), at));
            initial_texts.push(text);
        }
        let mut batch_traces: Vec<Vec<String>> = Vec::new();
        let mut batch_texts: Vec<Vec<String>> = Vec::new();
        for (b, batch) in batches.iter().enumerate() {
            let (mut traces, mut texts) = (Vec::new(), Vec::new());
            for (j, p) in batch.iter().enumerate() {
                let n = 10_000 + (b * 100 + j) as u64;
                let (text, at) = render(p, n);
                all.insert(format!("t{n}"), (text.clone(), at));
                traces.push(format!("t{n}"));
                texts.push(text);
            }
            batch_traces.push(traces);
            batch_texts.push(texts);
        }

        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (first, second, pages_first, violations) = rt.block_on(async {
            let fake = FakeKonnect::start().await;
            fake.with(|s| {
                s.cursor_mode = if keyset { CursorMode::Keyset } else { CursorMode::Offset };
                s.next_style = STYLES[style];
                s.shuffle_fields = shuffle;
                s.inserts_after_page = batch_texts.clone().into();
            });
            fake.add_raw(initial_texts.clone());
            let c = client(&fake);
            let first = read_window(&c, window, size, None).await.unwrap();
            let pages_first = fake.with(|s| s.pages) as usize;
            let second = read_window(&c, window, size, None).await.unwrap();
            (first, second, pages_first, fake.violations())
        });
        prop_assert!(violations.is_empty(), "{:?}", violations);

        let count = |entries: &[KonnectEntry]| {
            let mut m: HashMap<String, usize> = HashMap::new();
            for e in entries {
                *m.entry(trace(e)).or_default() += 1;
            }
            m
        };
        let (c1, c2) = (count(&first), count(&second));
        // Present for the whole of walk 1: the initial entries. For walk 2: those and every batch
        // inserted during walk 1 (the one after its last page too).
        let during_first: Vec<&String> = batch_traces.iter().take(pages_first).flatten().collect();
        for (id, (_, at)) in &all {
            let inside = window.contains(*at);
            let initial_entry = initial_ids.contains(id);
            if !inside {
                prop_assert!(!c1.contains_key(id) && !c2.contains_key(id), "{} outside the window was read", id);
                continue;
            }
            if initial_entry {
                let n = c1.get(id).copied().unwrap_or(0);
                prop_assert!(n >= 1, "{} present for the whole first walk was not read", id);
                if keyset {
                    prop_assert_eq!(n, 1, "{} read twice in one walk with stable cursors", id);
                }
            }
            if initial_entry || during_first.contains(&id) {
                prop_assert!(c2.get(id).copied().unwrap_or(0) >= 1, "{} present for the whole second walk was not read", id);
            }
        }
        // One key per entry, the same on every read, whatever order its members came in.
        for e in first.iter().chain(&second) {
            let (text, _) = &all[&trace(e)];
            prop_assert_eq!(&e.key, &KonnectEntry::parse(text).unwrap().key, "{}", trace(e));
        }
    }
}

// ---- errors: clear, and no retry loop ----

#[tokio::test]
async fn a_repeated_cursor_stops_the_walk_with_an_error() {
    let (fake, window) = small(30).await;
    fake.fault(Fault::Pass);
    fake.fault(Fault::RepeatCursor);
    let e = read_window(&client(&fake), window, 10, None).await.unwrap_err();
    assert!(matches!(e, KonnectError::RepeatedCursor { page: 2, .. }), "{e}");
    assert!(e.to_string().contains("paging would loop"), "{e}");
    assert_eq!(fake.received().len(), 2);
}

#[tokio::test]
async fn a_refused_token_stops_at_once_naming_the_setting_and_never_the_token() {
    let (fake, window) = small(5).await;
    let wrong = "kpat_wrongwrongwrong0123456789";
    let e = read_window(&client_with(&fake, wrong, options()), window, 10, None)
        .await
        .unwrap_err();
    assert!(matches!(e, KonnectError::Unauthorized { .. }) && e.is_config_problem(), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("KONNECT_TOKEN") && text.contains("invalid or expired") && text.contains("kong:trace:"),
        "{text}"
    );
    assert!(!text.contains(wrong) && !format!("{e:?}").contains(wrong), "{text}");
    assert_eq!(fake.received().len(), 1, "no retry");
}

#[tokio::test]
async fn a_forbidden_answer_names_the_admin_only_audit_logs_role() {
    let (fake, window) = small(5).await;
    fake.fault(Fault::Forbidden);
    let e = read_window(&client(&fake), window, 10, None).await.unwrap_err();
    assert!(matches!(e, KonnectError::Forbidden { .. }) && e.is_config_problem(), "{e}");
    assert!(e.to_string().contains("Audit Logs role 'Admin'"), "{e}");
    assert_eq!(fake.received().len(), 1, "no retry");
}

#[tokio::test]
async fn a_bad_request_stops_with_the_parameter_konnect_named() {
    let (fake, window) = small(5).await;
    fake.fault(Fault::BadRequest);
    let e = read_window(&client(&fake), window, 10, None).await.unwrap_err();
    assert!(matches!(e, KonnectError::BadRequest { .. }), "{e}");
    assert!(
        e.to_string().contains("filter[ts][gte]: is not a valid date-time (kong:trace:"),
        "{e}"
    );
    assert_eq!(fake.received().len(), 1, "no retry");
}

#[tokio::test]
async fn answers_that_are_not_the_api_are_errors_not_empty_pages() {
    let (fake, window) = small(25).await;
    fake.fault(Fault::Html);
    let e = read_window(&client(&fake), window, 10, None).await.unwrap_err();
    assert!(
        matches!(e, KonnectError::NotJson { page: 1, .. }) && e.to_string().contains("KONNECT_API_URL"),
        "{e}"
    );
    fake.fault(Fault::Pass);
    fake.fault(Fault::NoMeta);
    let e = read_window(&client(&fake), window, 10, None).await.unwrap_err();
    assert!(
        matches!(e, KonnectError::BadPage { page: 2, .. }) && e.to_string().contains("no meta"),
        "{e}"
    );
    assert_eq!(fake.received().len(), 3, "no retry");
}

#[tokio::test]
async fn a_page_over_the_size_cap_fails_naming_the_page() {
    let fake = FakeKonnect::start().await;
    let end = now() - chrono::Duration::seconds(60);
    // Newest first: the first page has the small entries, the second the large ones.
    let mut trail = Vec::new();
    for i in 0..20u64 {
        let at = end - chrono::Duration::seconds(i as i64);
        let mut e = fake_konnect::entry("gateway_access", i, &fake_konnect::rfc3339(at, 0), true);
        if i >= 10 {
            e["user_agent"] = json!("u".repeat(2_000));
        }
        trail.push(e);
    }
    fake.add(&trail);
    let window = TimeWindow::new(end - chrono::Duration::seconds(60), end).unwrap();
    let small_cap = ClientOptions {
        max_page_bytes: 12_000,
        ..options()
    };
    let e = read_window(&client_with(&fake, fake_konnect::TOKEN, small_cap), window, 10, None)
        .await
        .unwrap_err();
    assert!(matches!(e, KonnectError::PageTooLarge { page: 2, .. }), "{e}");
    assert!(e.to_string().starts_with("page 2 of the walk"), "{e}");
    assert_eq!(fake.received().len(), 2, "no retry");
}

// ---- retries within the deadline ----

fn gap(received: &[support::fake_konnect::Received], i: usize) -> Duration {
    received[i].at.duration_since(received[i - 1].at)
}

#[tokio::test]
async fn retry_after_in_seconds_is_honoured_within_the_deadline() {
    let (fake, window) = small(5).await;
    fake.fault(Fault::TooManyRequests {
        retry_after: Some("1".into()),
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let entries = read_window(&client(&fake), window, 10, Some(deadline)).await.unwrap();
    assert_eq!(entries.len(), 5);
    let received = fake.received();
    assert_eq!(received.len(), 2);
    assert!(gap(&received, 1) >= Duration::from_secs(1), "{:?}", gap(&received, 1));
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let (fake, window) = small(5).await;
    let at = (Utc::now() + chrono::Duration::seconds(2)).to_rfc2822();
    fake.fault(Fault::TooManyRequests { retry_after: Some(at) });
    let deadline = Instant::now() + Duration::from_secs(10);
    read_window(&client(&fake), window, 10, Some(deadline)).await.unwrap();
    let received = fake.received();
    // A date has whole seconds: two seconds ahead is at least one from now.
    assert!(gap(&received, 1) >= Duration::from_millis(950), "{:?}", gap(&received, 1));
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_fails_at_once_and_says_so() {
    let (fake, window) = small(5).await;
    fake.fault(Fault::TooManyRequests {
        retry_after: Some("77".into()),
    });
    let started = Instant::now();
    let e = read_window(&client(&fake), window, 10, Some(started + Duration::from_secs(3)))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(matches!(e, KonnectError::WaitPastDeadline { wait_secs: 77, .. }), "{e}");
    assert!(e.to_string().contains("HTTP 429") && e.to_string().contains("next run"), "{e}");
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn a_429_without_retry_after_backs_off_then_succeeds() {
    let (fake, window) = small(5).await;
    for _ in 0..2 {
        fake.fault(Fault::TooManyRequests { retry_after: None });
    }
    let entries = read_window(&client(&fake), window, 10, Some(Instant::now() + Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(entries.len(), 5);
    let received = fake.received();
    assert_eq!(received.len(), 3);
    // Backoff of 20 ms then 40 ms, half of each fixed.
    assert!(gap(&received, 1) >= Duration::from_millis(10), "{:?}", gap(&received, 1));
    assert!(gap(&received, 2) >= Duration::from_millis(20), "{:?}", gap(&received, 2));
}

#[tokio::test]
async fn server_errors_are_retried_then_the_walk_goes_on() {
    let (fake, window) = small(25).await;
    fake.fault(Fault::Pass);
    for code in [500, 502, 503] {
        fake.fault(Fault::Status(code));
    }
    let entries = read_window(&client(&fake), window, 10, None).await.unwrap();
    assert_eq!(entries.len(), 25);
    assert_eq!(fake.received().len(), 3 + 3);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn server_errors_that_do_not_end_fail_after_the_tries_naming_the_page() {
    let (fake, window) = small(25).await;
    fake.fault(Fault::Pass);
    for _ in 0..10 {
        fake.fault(Fault::Status(503));
    }
    let e = read_window(&client(&fake), window, 10, None).await.unwrap_err();
    assert!(matches!(e, KonnectError::Unavailable { page: 2, attempts: 5, .. }), "{e}");
    assert!(e.to_string().contains("HTTP 503"), "{e}");
    assert_eq!(fake.received().len(), 1 + 5);
}

#[tokio::test]
async fn a_hung_request_times_out_and_is_retried() {
    let (fake, window) = small(5).await;
    fake.fault(Fault::Delay(Duration::from_secs(3)));
    let quick = ClientOptions {
        timeout: Duration::from_millis(400),
        ..options()
    };
    let entries = read_window(&client_with(&fake, fake_konnect::TOKEN, quick), window, 10, None)
        .await
        .unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(fake.received().len(), 2);
}

#[tokio::test]
async fn the_deadline_ends_a_request_in_flight() {
    let (fake, window) = small(5).await;
    fake.fault(Fault::Delay(Duration::from_secs(5)));
    let started = Instant::now();
    let e = read_window(&client(&fake), window, 10, Some(started + Duration::from_millis(500)))
        .await
        .unwrap_err();
    assert!(matches!(e, KonnectError::DeadlineReached { page: 1, .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

// ---- shapes of `next`, a base with a path ----

#[tokio::test]
async fn next_in_every_shape_is_followed_with_the_walk_s_own_filters() {
    for style in STYLES {
        let (fake, window) = small(25).await;
        fake.with(|s| s.next_style = style);
        let entries = read_window(&client(&fake), window, 10, None).await.unwrap();
        let traces: HashSet<String> = entries.iter().map(trace).collect();
        assert_eq!((entries.len(), traces.len()), (25, 25), "{style:?}");
        assert!(fake.violations().is_empty(), "{style:?}: {:?}", fake.violations());
        assert_eq!(fake.received().len(), 3, "{style:?}");
    }
}

#[tokio::test]
async fn a_base_with_a_path_prefix_is_kept() {
    let fake = FakeKonnect::start_with_prefix("/konnect").await;
    let end = now() - chrono::Duration::seconds(60);
    fake.add(&fake_konnect::trail(12, end - chrono::Duration::seconds(600), end));
    let window = TimeWindow::new(end - chrono::Duration::seconds(600), end).unwrap();
    assert_eq!(read_window(&client(&fake), window, 5, None).await.unwrap().len(), 12);
}

#[tokio::test]
async fn a_walk_can_be_driven_page_by_page() {
    let (fake, window) = small(25).await;
    let c = client(&fake);
    let source: &dyn AuditLogPages = &c;
    let mut walk = Walk::new(window, 10).unwrap();
    let mut sizes = Vec::new();
    while let Some(page) = walk.next_page(source, None).await.unwrap() {
        sizes.push(page.entries.len());
    }
    assert_eq!(sizes, [10, 10, 5]);
    assert!(walk.is_done() && walk.pages() == 3);
}

// ---- the mapping of what the fake serves ----

#[tokio::test]
async fn every_entry_of_a_trail_maps_to_a_valid_event_that_gives_it_back() {
    let (fake, window) = small(300).await;
    let entries = read_window(&client(&fake), window, 1000, None).await.unwrap();
    assert_eq!(entries.len(), 300);
    let ctx = MapContext {
        recipient_account_id: support::fake_cloudtrail::ACCOUNT.into(),
        now: Utc::now().timestamp(),
        region: Some("us".into()),
    };
    let mut ids = HashSet::new();
    for e in &entries {
        let event = mapping::map_entry(e, &ctx).unwrap();
        assert_eq!(
            support::fake_cloudtrail::validate(&event.id, &event.event_data, None),
            None,
            "{}",
            event.event_data
        );
        assert!(ids.insert(event.id.clone()), "duplicate id {}", event.id);
        assert_eq!(mapping::recover(&event.event_data).unwrap().json, e.raw.get());
    }
}

// ---- properties of keys and recovery over arbitrary entries ----

fn plain(s: &str) -> Vec<Piece> {
    s.chars().map(|c| Piece::Char(c, false)).collect()
}

/// A Konnect-like entry: a type, a `ts` (usually valid, any offset), maybe a signature, the fields
/// the mapping reads with values of any type, and any other members; member names unique.
fn konnect_members(max_repeat: usize) -> impl Strategy<Value = Vec<(Vec<Piece>, J)>> {
    let ts = prop_oneof![
        4 => (0i64..4_000_000_000, 0u32..1000, -720i32..=720).prop_map(|(s, ms, off)| {
            let t = Utc.timestamp_opt(s, ms * 1_000_000).unwrap();
            J::Str(plain(&fake_konnect::rfc3339(t, off)))
        }),
        1 => arb_json::pieces(4).prop_map(J::Str),
    ];
    let kind = prop_oneof![
        Just("authentication".to_string()),
        Just("authorization".to_string()),
        Just("gateway_access".to_string()),
        "[a-z_]{0,12}",
    ];
    let known = proptest::sample::select(vec![
        "signature",
        "principal_id",
        "user_agent",
        "client_ip",
        "uri",
        "method",
        "status_code",
        "successful",
        "granted",
        "outcome",
        "action",
        "authentication_type",
        "org_id",
        "actor_id",
        "query",
    ])
    .prop_flat_map(move |name| {
        prop_oneof![
            3 => arb_json::pieces(max_repeat).prop_map(J::Str),
            1 => arb_json::value(4),
        ]
        .prop_map(move |v| (plain(name), v))
    });
    let extra = (arb_json::pieces(4), arb_json::value(max_repeat));
    (kind, ts, proptest::collection::vec(prop_oneof![2 => known, 1 => extra], 0..10)).prop_map(|(kind, ts, rest)| {
        let mut members = vec![(plain("type"), J::Str(plain(&kind))), (plain("ts"), ts)];
        let mut names: HashSet<String> = ["type".to_string(), "ts".to_string()].into();
        for (name, value) in rest {
            if names.insert(arb_json::decoded(&name)) {
                members.push((name, value));
            }
        }
        members
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn an_entry_keeps_its_key_whatever_the_member_order_and_spacing(
        members in konnect_members(40),
        rotate in any::<proptest::sample::Index>(),
        ws in (0u8..4, 0u8..4),
    ) {
        let one = J::Obj(members.clone(), ws.0).text();
        let mut moved = members;
        let n = moved.len();
        moved.rotate_left(rotate.index(n));
        moved.reverse();
        let other = J::Obj(moved, ws.1).text();
        let (a, b) = (KonnectEntry::parse(&one).unwrap(), KonnectEntry::parse(&other).unwrap());
        prop_assert_eq!(&a.key, &b.key);
        prop_assert_eq!(mapping::uid(&a.key), mapping::uid(&b.key));
        prop_assert_eq!(mapping::event_id(&a.key), mapping::event_id(&b.key));
    }

    #[test]
    fn any_entry_comes_back_byte_for_byte_from_its_event(members in konnect_members(3_000), ws in 0u8..4) {
        let text = J::Obj(members, ws).text();
        let entry = KonnectEntry::parse(&text).unwrap();
        let ctx = MapContext { recipient_account_id: support::fake_cloudtrail::ACCOUNT.into(), now: 1_785_000_000, region: None };
        match mapping::map_entry(&entry, &ctx) {
            Ok(event) => {
                prop_assert_eq!(support::fake_cloudtrail::validate(&event.id, &event.event_data, None), None);
                let back = mapping::recover(&event.event_data).unwrap();
                prop_assert_eq!(back.json, text.trim());
                prop_assert_eq!(back.uid, mapping::uid(&entry.key));
            }
            // Refused only when too large (numbers may grow up to six times when re-encoded), or
            // when no parser could hold it: the caller dead-letters it whole.
            Err(MapError::DoesNotFit { .. }) => prop_assert!(text.len() * 6 > 28_000, "{} bytes refused", text.len()),
            Err(MapError::Malformed { .. }) => prop_assert!(entry.problem.is_some()),
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}
