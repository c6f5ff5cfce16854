//! Konnect's audit log as a source of the cycle: what it keeps (its retention), how far behind now a
//! run reads (the settle time), and where its positions live in the store.
//!
//! The cycle does not ask it for pages the way it asks Kong: it walks fixed windows with `Walk`
//! (see `ship::windows`), because Konnect documents no order. `page` is there for callers that
//! want one page of one window.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::api_url::ApiUrl;
use super::client::{AuditLogPages, PageRequest as KonnectPageRequest};
use super::walk::TimeWindow;
use crate::kong::{AuditSource, EntryKind, KongError, KongInfo, Page, PageRequest};

/// Konnect keeps its audit log 7 days (`KONNECT_RETENTION_SECONDS`'s default).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// Konnect's clock less this machine's (`None`: its answer had no `Date`), and when it was measured.
type ClockMeasure = (Instant, Option<i64>);

/// How long a measure of Konnect's clock serves: a run asks for it once, however many of its
/// steps want `info`.
const CLOCK_FRESH: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct KonnectSource {
    pages: Arc<dyn AuditLogPages>,
    api: ApiUrl,
    settle: i64,
    retention: i64,
    clock: Arc<Mutex<Option<ClockMeasure>>>,
}

impl KonnectSource {
    /// Reads `api` through `pages`, `settle` behind now, never further back than `retention`.
    pub fn new(pages: Arc<dyn AuditLogPages>, api: ApiUrl, settle: Duration, retention: Duration) -> KonnectSource {
        KonnectSource {
            pages,
            api,
            settle: settle.as_secs() as i64,
            retention: retention.as_secs().max(1) as i64,
            clock: Arc::default(),
        }
    }

    pub fn pages(&self) -> &Arc<dyn AuditLogPages> {
        &self.pages
    }

    pub fn api(&self) -> &ApiUrl {
        &self.api
    }

    /// `us`, `eu`, …: `None` for a host of one's own (a proxy).
    pub fn region(&self) -> Option<&str> {
        self.api.region()
    }

    /// How long Konnect keeps an entry, in seconds: marks live that long past the entry's `ts`.
    pub fn retention_seconds(&self) -> i64 {
        self.retention
    }

    /// How far behind now a run reads, in seconds.
    pub fn settle_seconds(&self) -> i64 {
        self.settle
    }

    /// The oldest entry time a read at `now` may reach. Older entries are deleted by Konnect, and,
    /// should a longer retention keep them, their marks have lapsed: reading them would ship them
    /// again.
    pub fn floor(&self, now: i64) -> i64 {
        now.saturating_sub(self.retention)
    }

    /// The newest entry time a run started at `now` reads: entries still being written stay for
    /// the next run.
    pub fn newest(&self, now: i64) -> i64 {
        now.saturating_sub(self.settle)
    }

    /// The part of the store's position keys (watermark, sweep, floor, the store's life) that is
    /// this source's: two regions, or a Kong beside Konnect, may share one Redis and one prefix
    /// without sharing positions. Entries' own keys need none: a signature is unique.
    pub fn key_scope(&self) -> String {
        let label = match self.region() {
            Some(region) => region.to_string(),
            None => self.api.label(),
        };
        format!("konnect-{label}:")
    }

    /// Konnect's clock less this machine's, from the `Date` of one page of the last second.
    async fn measure_clock(&self) -> Result<Option<i64>, KongError> {
        let now = chrono::Utc::now().timestamp();
        let probe = KonnectPageRequest {
            window: TimeWindow::from_epoch(now - 1, now)?,
            size: 1,
            after: None,
            number: 1,
        };
        let page = self.pages.page(&probe, None).await?;
        let offset = page.date.map(|date| date - chrono::Utc::now().timestamp());
        if let Some(offset) = offset.filter(|o| o.abs() >= 60) {
            tracing::warn!(
                offset_seconds = offset,
                "this machine's clock is off from Konnect's: windows and marks follow Konnect's clock"
            );
        }
        Ok(offset)
    }

    /// Where it reads, safe to log.
    pub fn describe(&self) -> String {
        match self.region() {
            Some(region) => format!("Konnect's audit log at {} (region {region})", self.api),
            None => format!("Konnect's audit log at {}", self.api),
        }
    }
}

#[async_trait]
impl AuditSource for KonnectSource {
    /// Konnect's clock: one page of the last second, whose `Date` places every window and every
    /// mark's lifetime by the clock that stamps `ts` (this machine's may be off by an hour). The
    /// answer also proves the token and the region before anything is read. The retention is a
    /// setting.
    async fn info(&self) -> Result<KongInfo, KongError> {
        let cached = *self.clock.lock().unwrap();
        let clock_offset = match cached {
            Some((at, offset)) if at.elapsed() < CLOCK_FRESH => offset,
            _ => {
                let offset = self.measure_clock().await?;
                *self.clock.lock().unwrap() = Some((Instant::now(), offset));
                offset
            }
        };
        Ok(KongInfo {
            version_text: None,
            version: None,
            record_ttl: self.retention,
            audit_log: None,
            clock_offset,
        })
    }

    /// One page of the window `[after, before]` (both inclusive, epoch seconds; both required), from
    /// the cursor in `offset`.
    async fn page(&self, request: &PageRequest) -> Result<Page, KongError> {
        let (Some(gte), Some(lte)) = (request.after, request.before) else {
            return Err(KongError::Konnect(super::KonnectError::Request(
                "a Konnect page needs both bounds of its window".into(),
            )));
        };
        let page = self
            .pages
            .page(
                &KonnectPageRequest {
                    window: TimeWindow::from_epoch(gte, lte)?,
                    size: request.size,
                    after: request.offset.clone(),
                    number: 1,
                },
                None,
            )
            .await?;
        Ok(Page {
            entries: page.entries.into_iter().map(super::KonnectEntry::into_entry).collect(),
            offset: page.next,
        })
    }

    fn kinds(&self) -> Vec<EntryKind> {
        vec![EntryKind::Konnect]
    }

    fn konnect(&self) -> Option<Arc<KonnectSource>> {
        Some(Arc::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::konnect::{KonnectError, Page as KonnectPage};

    struct Nothing;

    #[async_trait]
    impl AuditLogPages for Nothing {
        async fn page(&self, _: &KonnectPageRequest, _: Option<Instant>) -> Result<KonnectPage, KonnectError> {
            Ok(KonnectPage {
                entries: Vec::new(),
                next: None,
                date: Some(chrono::Utc::now().timestamp() - 3_600),
            })
        }
    }

    fn source(url: &str) -> KonnectSource {
        KonnectSource::new(
            Arc::new(Nothing),
            ApiUrl::parse(url).unwrap(),
            Duration::from_secs(60),
            DEFAULT_RETENTION,
        )
    }

    #[tokio::test]
    async fn positions_are_kept_per_region_and_the_retention_is_the_record_ttl() {
        let us = source("https://us.api.konghq.com");
        assert_eq!(us.key_scope(), "konnect-us:");
        assert_eq!(source("https://eu.api.konghq.com").key_scope(), "konnect-eu:");
        assert_eq!(
            source("https://egress.example.com/konnect").key_scope(),
            "konnect-egress-example-com-konnect:"
        );
        let info = us.info().await.unwrap();
        assert_eq!(info.record_ttl, 604_800);
        assert!(
            (-3_601..=-3_599).contains(&info.clock_offset.unwrap()),
            "Konnect's Date gives its clock"
        );
        assert_eq!(us.floor(1_000_000), 1_000_000 - 604_800);
        assert_eq!(us.newest(1_000_000), 999_940);
        assert_eq!(us.kinds(), vec![EntryKind::Konnect]);
        assert_eq!(us.konnect_region().as_deref(), Some("us"));
    }
}
