//! What an in-memory sink holds, as an inventory: for tests and the simulation.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::holdings::{Holdings, Scope};
use super::inventory::{Answer, Inventory, InventoryError, QueryRecord, padded, rfc3339};
use super::logs::parse_message;
use crate::sink::MemorySink;

pub struct MemoryInventory {
    sink: Arc<MemorySink>,
    /// Answer with this instead (a destination that cannot be asked).
    pub refuse: std::sync::Mutex<Option<InventoryError>>,
}

impl MemoryInventory {
    pub fn new(sink: Arc<MemorySink>) -> MemoryInventory {
        MemoryInventory {
            sink,
            refuse: std::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl Inventory for MemoryInventory {
    async fn holdings(&self, scope: Scope, now: i64, _until: Option<Instant>) -> Result<Answer, InventoryError> {
        if let Some(e) = self.refuse.lock().unwrap().clone() {
            return Err(e);
        }
        let (from, to) = padded(scope, now);
        let mut holdings = Holdings::new(scope);
        let events = self.sink.accepted();
        for event in &events {
            match parse_message(&event.event_data) {
                Some(held) if held.event_time.is_none_or(|t| t >= from && t < to) => holdings.add(&held),
                Some(_) => {}
                None => holdings.unreadable += 1,
            }
        }
        Ok(Answer {
            holdings,
            queries: vec![QueryRecord {
                id: "memory".into(),
                target: "in-memory sink".into(),
                from: rfc3339(from),
                to: rfc3339(to),
                rows: events.len() as u64,
                bytes_scanned: 0,
            }],
            bytes_scanned: 0,
        })
    }

    fn destination(&self) -> serde_json::Value {
        serde_json::json!({"type": "memory"})
    }

    fn describe(&self) -> String {
        "in-memory sink".into()
    }
}
