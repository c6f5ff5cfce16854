//! Reading a source in windows (Konnect's audit log): fixed bounds, each walked whole, the oldest
//! window first.
//!
//! Konnect documents no order for its pages (newest first, most likely) and nothing about what its
//! cursors do while entries arrive, so nothing here depends on either. A walk keeps both bounds of
//! its window from its first page to its last, and only a walk read to its last page counts: the
//! watermark moves to the end of the last window walked whole (never to the newest entry read,
//! which a newest-first walk meets on its first page). A run reads from the watermark, less the
//! overlap, to `KONNECT_SETTLE_SECONDS` behind its start, cut into windows of an hour taken oldest
//! first, so a catch-up stopped by its budget has shipped the oldest entries, and the next run goes
//! on from there.
//!
//! No window reaches below the retention floor (now less `KONNECT_RETENTION_SECONDS`), fixed again
//! as each walk starts: an entry's mark lives as long as Konnect keeps the entry, so an older entry
//! that a longer retention still serves would be shipped twice.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::read::{Chunk, Chunks, Read, ReadEntry, Window};
use crate::kong::KongError;
use crate::konnect::{KonnectEntry, KonnectSource, TimeWindow, Walk};
use crate::summary::Counters;

/// The longest window one walk reads.
pub const WINDOW_SECONDS: i64 = 3_600;

/// `[from, to]` (both inclusive, epoch seconds) cut into windows of at most `step` seconds, oldest
/// first. Two neighbours share their bound: an entry stamped on it is read twice and claimed once.
pub fn plan(from: i64, to: i64, step: i64) -> Vec<(i64, i64)> {
    let step = step.max(1);
    let mut out = Vec::new();
    let mut at = from;
    while at <= to {
        let end = at.saturating_add(step).min(to);
        out.push((at, end));
        if end == to {
            break;
        }
        at = end;
    }
    out
}

/// What a run started at `run_started` reads: from `from` (the watermark less the overlap, or where
/// a sweep has got to; `None`: everything retained), never below the retention floor, within the
/// run's `window`, to the settle time behind its start. `None` when that is empty.
pub fn span(source: &KonnectSource, run_started: i64, from: Option<i64>, window: &Window) -> Option<(i64, i64)> {
    let floor = source.floor(run_started);
    if window.since.is_some_and(|since| since < floor) {
        tracing::warn!(
            since = window.since,
            floor,
            retention_seconds = source.retention_seconds(),
            "Konnect keeps its audit log KONNECT_RETENTION_SECONDS: entries stamped before the floor are not read (Konnect has deleted them, and a longer retention would bring back entries whose marks have lapsed)"
        );
    }
    let start = from.unwrap_or(floor).max(floor).max(window.since.unwrap_or(i64::MIN));
    // `until` is exclusive in whole seconds and the bounds inclusive with fractions: an entry at
    // `until` itself is read, and left out by the window's filter when it is claimed.
    let end = source.newest(run_started).min(window.until.unwrap_or(i64::MAX));
    (start <= end).then_some((start, end))
}

/// Walks `windows` oldest first, each to its last page, and hands out a chunk per page; the chunk
/// that ends a walk says so (`walked_to`). Every page is asked for before `deadline` (a
/// `Retry-After` past it ends the read at once); dropping the stream stops the walk. `clock_offset`
/// is Konnect's clock less this machine's (`KongInfo::clock_offset`): the retention floor is
/// Konnect's.
pub fn spawn(
    source: Arc<KonnectSource>,
    windows: Vec<(i64, i64)>,
    page_size: u32,
    deadline: Option<Instant>,
    clock_offset: i64,
    counters: Arc<Counters>,
) -> Chunks {
    let (tx, rx) = mpsc::channel(1);
    let walking = tokio::spawn(async move {
        for (gte, lte) in windows {
            // Fixed as each walk starts: a long run does not read what has aged past its marks.
            let gte = gte.max(source.floor(chrono::Utc::now().timestamp() + clock_offset));
            if gte > lte {
                let Ok(slot) = tx.reserve().await else { return };
                slot.send(Ok(Read::Chunk(Chunk {
                    walked_to: Some(lte),
                    ..Chunk::default()
                })));
                continue;
            }
            let mut walk = match TimeWindow::from_epoch(gte, lte).and_then(|w| Walk::new(w, page_size)) {
                Ok(walk) => walk,
                Err(e) => {
                    let _ = tx.send(Err(KongError::Konnect(e))).await;
                    return;
                }
            };
            while !walk.is_done() {
                // The next page is asked for once the last one was taken: one waits, never two.
                let Ok(slot) = tx.reserve().await else { return };
                match walk.next_page(source.pages().as_ref(), deadline).await {
                    Ok(Some(page)) => {
                        Counters::add(&counters.pages, 1);
                        let read_at = Instant::now();
                        let entries = page
                            .entries
                            .into_iter()
                            .map(|e| ReadEntry {
                                entry: KonnectEntry::into_entry(e),
                                read_at,
                            })
                            .collect();
                        slot.send(Ok(Read::Chunk(Chunk {
                            entries,
                            complete: Vec::new(),
                            walked_to: walk.is_done().then_some(lte),
                        })));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        slot.send(Err(KongError::Konnect(e)));
                        return;
                    }
                }
            }
            tracing::debug!(gte, lte, pages = walk.pages(), "Konnect window walked whole");
        }
        if let Ok(slot) = tx.reserve().await {
            slot.send(Ok(Read::End));
        }
    });
    Chunks::new(rx, vec![walking.abort_handle()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use async_trait::async_trait;

    use crate::konnect::{ApiUrl, AuditLogPages, KonnectError, Page, PageRequest};

    #[test]
    fn a_span_is_cut_into_windows_oldest_first_that_cover_it_exactly() {
        assert_eq!(plan(0, 10, 4), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(plan(0, 8, 4), vec![(0, 4), (4, 8)]);
        assert_eq!(plan(5, 5, 4), vec![(5, 5)], "a one-second span is one window");
        assert_eq!(plan(6, 5, 4), vec![]);
        assert_eq!(plan(0, 3, 0), vec![(0, 1), (1, 2), (2, 3)]);
        let week = plan(0, 7 * 86_400, WINDOW_SECONDS);
        assert_eq!(week.len(), 168);
        assert!(week.windows(2).all(|w| w[0].1 == w[1].0 && w[0].0 < w[1].0));
    }

    struct Script {
        pages: std::sync::Mutex<Vec<Result<Page, KonnectError>>>,
        asked: std::sync::Mutex<Vec<PageRequest>>,
    }

    #[async_trait]
    impl AuditLogPages for Script {
        async fn page(&self, request: &PageRequest, _: Option<Instant>) -> Result<Page, KonnectError> {
            self.asked.lock().unwrap().push(request.clone());
            self.pages.lock().unwrap().remove(0)
        }
    }

    fn source(script: Arc<Script>, retention: u64) -> Arc<KonnectSource> {
        Arc::new(KonnectSource::new(
            script,
            ApiUrl::parse("https://us.api.konghq.com").unwrap(),
            Duration::from_secs(60),
            Duration::from_secs(retention),
        ))
    }

    fn entry(sig: &str) -> KonnectEntry {
        KonnectEntry::parse(&format!(
            r#"{{"type":"authorization","signature":"{sig}","ts":"2026-08-01T10:00:00Z"}}"#
        ))
        .unwrap()
    }

    #[test]
    fn the_span_starts_at_the_watermark_or_the_floor_and_ends_behind_now() {
        let script = Arc::new(Script {
            pages: Default::default(),
            asked: Default::default(),
        });
        let s = source(script, 86_400);
        let now = 1_785_000_000;
        let all = Window::default();
        assert_eq!(
            span(&s, now, None, &all),
            Some((now - 86_400, now - 60)),
            "no watermark: all that is retained"
        );
        assert_eq!(span(&s, now, Some(now - 600), &all), Some((now - 600, now - 60)));
        assert_eq!(
            span(&s, now, Some(now - 200_000), &all),
            Some((now - 86_400, now - 60)),
            "never below the floor"
        );
        let asked = Window {
            since: Some(now - 300_000),
            until: Some(now - 3_600),
        };
        assert_eq!(
            span(&s, now, None, &asked),
            Some((now - 86_400, now - 3_600)),
            "a backfill's window within retention"
        );
        assert_eq!(span(&s, now, Some(now - 30), &all), None, "nothing settled yet");
    }

    #[tokio::test]
    async fn windows_are_walked_oldest_first_and_each_walk_says_when_it_is_whole() {
        let now = chrono::Utc::now().timestamp();
        let page = |sigs: &[&str], next: Option<&str>| {
            Ok(Page {
                entries: sigs.iter().map(|s| entry(s)).collect(),
                next: next.map(str::to_string),
                date: None,
            })
        };
        let script = Arc::new(Script {
            pages: std::sync::Mutex::new(vec![page(&["a", "b"], Some("c1")), page(&["c"], None), page(&[], None)]),
            asked: Default::default(),
        });
        let windows = vec![(now - 7_200, now - 3_600), (now - 3_600, now - 60)];
        let mut chunks = spawn(source(script.clone(), 86_400), windows, 2, None, 0, Arc::new(Counters::default()));
        let mut seen = Vec::new();
        while let Some(chunk) = chunks.next().await.unwrap() {
            seen.push((
                chunk.entries.iter().map(|e| e.entry.key.clone()).collect::<Vec<_>>(),
                chunk.walked_to,
            ));
        }
        assert_eq!(
            seen,
            vec![
                (vec!["a".to_string(), "b".to_string()], None),
                (vec!["c".to_string()], Some(now - 3_600)),
                (vec![], Some(now - 60)),
            ]
        );
        let asked = script.asked.lock().unwrap();
        assert_eq!(asked[1].after.as_deref(), Some("c1"));
        assert_eq!(asked[1].window, asked[0].window, "one walk keeps its bounds");
        assert_eq!(asked[2].window.gte.timestamp(), now - 3_600);
        assert_eq!(asked[2].after, None);
    }

    #[tokio::test]
    async fn a_window_past_the_retention_floor_is_not_asked_for_and_an_error_ends_the_read() {
        let now = chrono::Utc::now().timestamp();
        let script = Arc::new(Script {
            pages: std::sync::Mutex::new(vec![Err(KonnectError::Forbidden {
                url: "u".into(),
                trace: String::new(),
            })]),
            asked: Default::default(),
        });
        let windows = vec![(now - 10_000, now - 9_000), (now - 9_000, now - 60)];
        let mut chunks = spawn(source(script.clone(), 5_000), windows, 10, None, 0, Arc::new(Counters::default()));
        let first = chunks.next().await.unwrap().unwrap();
        assert!(
            first.entries.is_empty() && first.walked_to == Some(now - 9_000),
            "aged out: nothing to read"
        );
        let e = chunks.next().await.unwrap_err();
        assert!(e.to_string().contains("Audit Logs role"), "{e}");
        let asked = script.asked.lock().unwrap();
        assert_eq!(asked.len(), 1);
        assert!(asked[0].window.gte.timestamp() >= now - 5_000, "raised to the floor");
    }
}
