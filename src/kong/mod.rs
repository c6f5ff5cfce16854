//! Kong's Admin API audit log: the entry types, version capabilities, and the HTTP client.

mod client;
mod entry;
pub mod raw;
mod version;

pub use client::{AuditSource, KongClient, KongError, KongInfo, Page, PageRequest};
pub use entry::{Entry, EntryKind};
pub use version::KongVersion;
