//! One walk: every page of one fixed window, the bounds and the page size the same on every page,
//! each page asked for with the cursor of the one before, until a page has no next.
//!
//! Konnect documents neither the order of the pages nor what its cursors do while entries arrive.
//! A walk therefore never moves its bounds (an entry inside them and present from the first page to
//! the last is on some page, whatever the order) and never relies on the order of what it reads. A
//! cursor that comes back stops the walk with an error instead of a loop.

use std::collections::HashSet;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::client::{AuditLogPages, KonnectError, MAX_PAGE_SIZE, Page, PageRequest};
use super::entry::KonnectEntry;

/// `filter[ts][gte]` and `filter[ts][lte]`: both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub gte: DateTime<Utc>,
    pub lte: DateTime<Utc>,
}

impl TimeWindow {
    pub fn new(gte: DateTime<Utc>, lte: DateTime<Utc>) -> Result<TimeWindow, KonnectError> {
        if gte > lte {
            return Err(KonnectError::Request(format!("the window starts ({gte}) after it ends ({lte})")));
        }
        Ok(TimeWindow { gte, lte })
    }

    /// Whole seconds since the epoch, both inclusive.
    pub fn from_epoch(gte: i64, lte: i64) -> Result<TimeWindow, KonnectError> {
        let at = |t: i64| DateTime::from_timestamp(t, 0).ok_or_else(|| KonnectError::Request(format!("{t} is not a representable time")));
        TimeWindow::new(at(gte)?, at(lte)?)
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.gte <= t && t <= self.lte
    }
}

/// Where a walk stands: which page comes next, and every cursor it has followed.
#[derive(Debug, Clone)]
pub struct Walk {
    window: TimeWindow,
    size: u32,
    after: Option<String>,
    seen: HashSet<String>,
    pages: u32,
    done: bool,
}

impl Walk {
    pub fn new(window: TimeWindow, size: u32) -> Result<Walk, KonnectError> {
        if !(1..=MAX_PAGE_SIZE).contains(&size) {
            return Err(KonnectError::Request(format!(
                "page size {size} is not between 1 and {MAX_PAGE_SIZE}"
            )));
        }
        Ok(Walk {
            window,
            size,
            after: None,
            seen: HashSet::new(),
            pages: 0,
            done: false,
        })
    }

    /// The next page to fetch; `None` once the last page was read.
    pub fn request(&self) -> Option<PageRequest> {
        (!self.done).then(|| PageRequest {
            window: self.window,
            size: self.size,
            after: self.after.clone(),
            number: self.pages + 1,
        })
    }

    /// Takes in the cursor of the page just read (`None`: it was the last).
    pub fn advance(&mut self, next: Option<String>) -> Result<(), KonnectError> {
        self.pages += 1;
        match next {
            None => self.done = true,
            Some(cursor) => {
                if !self.seen.insert(cursor.clone()) {
                    self.done = true;
                    return Err(KonnectError::RepeatedCursor {
                        page: self.pages,
                        cursor: cursor.chars().take(120).collect(),
                    });
                }
                self.after = Some(cursor);
            }
        }
        Ok(())
    }

    pub fn window(&self) -> TimeWindow {
        self.window
    }

    /// Pages read so far.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Fetches the next page and moves on; `Ok(None)` after the last.
    pub async fn next_page(&mut self, source: &dyn AuditLogPages, deadline: Option<Instant>) -> Result<Option<Page>, KonnectError> {
        let Some(request) = self.request() else {
            return Ok(None);
        };
        let page = source.page(&request, deadline).await?;
        self.advance(page.next.clone())?;
        Ok(Some(page))
    }
}

/// Every entry of one walk of `window`, in the order read (tests, `check`, small windows: the cycle
/// goes page by page instead).
pub async fn read_window(
    source: &dyn AuditLogPages,
    window: TimeWindow,
    page_size: u32,
    deadline: Option<Instant>,
) -> Result<Vec<KonnectEntry>, KonnectError> {
    let mut walk = Walk::new(window, page_size)?;
    let mut entries = Vec::new();
    while let Some(page) = walk.next_page(source, deadline).await? {
        entries.extend(page.entries);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> TimeWindow {
        TimeWindow::from_epoch(1_785_000_000, 1_785_003_600).unwrap()
    }

    #[test]
    fn every_page_asks_for_the_same_window_and_size_with_the_last_cursor() {
        let mut walk = Walk::new(window(), 500).unwrap();
        let first = walk.request().unwrap();
        assert_eq!((first.after.as_deref(), first.number, first.size), (None, 1, 500));
        walk.advance(Some("c1".into())).unwrap();
        let second = walk.request().unwrap();
        assert_eq!((second.after.as_deref(), second.number), (Some("c1"), 2));
        assert_eq!(second.window, first.window);
        walk.advance(Some("c2".into())).unwrap();
        walk.advance(None).unwrap();
        assert!(walk.request().is_none() && walk.is_done());
        assert_eq!(walk.pages(), 3);
    }

    #[test]
    fn a_cursor_seen_before_stops_the_walk() {
        let mut walk = Walk::new(window(), 10).unwrap();
        walk.advance(Some("a".into())).unwrap();
        walk.advance(Some("b".into())).unwrap();
        let e = walk.advance(Some("a".into())).unwrap_err();
        assert!(matches!(e, KonnectError::RepeatedCursor { page: 3, .. }), "{e}");
        assert!(e.to_string().contains("\"a\""), "{e}");
        assert!(walk.request().is_none());
    }

    #[test]
    fn bad_walks_are_refused() {
        assert!(Walk::new(window(), 0).is_err());
        assert!(Walk::new(window(), 1001).is_err());
        assert!(Walk::new(window(), 1000).is_ok());
        assert!(TimeWindow::from_epoch(10, 9).is_err());
        let w = TimeWindow::from_epoch(10, 10).unwrap();
        assert!(w.contains(DateTime::from_timestamp(10, 0).unwrap()), "bounds are inclusive");
        assert!(!w.contains(DateTime::from_timestamp(10, 1).unwrap()));
    }
}
