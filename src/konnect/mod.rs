//! Kong Konnect's audit log, pulled from `GET /v3/audit-logs`: a second source beside Kong's Admin API.
//!
//! - `api_url`: `KONNECT_API_URL`, checked (a regional host, HTTPS, no `/v3`);
//! - `client`: one page at a time, every URL built here from the configured base, retries within a
//!   deadline, errors that name the fix;
//! - `cursor`: the cursor taken out of `meta.page.next` (a path without `/v3`);
//! - `walk`: one walk of a fixed window, page after page, a repeated cursor stopping it;
//! - `entry`: the three entry shapes, kept verbatim, keyed by their signature or a digest of the
//!   whole entry;
//! - `mapping`: an entry → CloudTrail Lake `eventData`, and back;
//! - `source`: the source the cycle reads (its retention, settle time and positions' keys).
//!
//! Konnect does not document the order of its pages (newest first, most likely) nor how cursors
//! behave while entries arrive: a walk fixes both bounds of its window and reads it to the end, and
//! nothing here relies on the order.

mod api_url;
mod client;
mod cursor;
mod entry;
pub mod mapping;
mod source;
mod walk;

pub use api_url::{ApiUrl, REGIONS};
pub use client::{AuditLogPages, ClientOptions, DEFAULT_MAX_PAGE_BYTES, KonnectClient, KonnectError, MAX_PAGE_SIZE, Page, PageRequest};
pub use cursor::cursor_from_next;
pub use entry::{KonnectEntry, LogType, entry_time};
pub use source::{DEFAULT_RETENTION, KonnectSource};
pub use walk::{TimeWindow, Walk, read_window};
