//! The dry-run sink: writes each event's `eventData` as one NDJSON line and ships nothing.

use std::io::Write;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{PutReport, Sink, SinkError};
use crate::event::AuditEvent;

pub struct NdjsonSink {
    out: Mutex<Box<dyn Write + Send>>,
    name: String,
}

impl NdjsonSink {
    pub fn new(out: Box<dyn Write + Send>, name: impl Into<String>) -> Self {
        NdjsonSink {
            out: Mutex::new(out),
            name: name.into(),
        }
    }
}

#[async_trait]
impl Sink for NdjsonSink {
    async fn put(&self, events: &[AuditEvent]) -> Result<PutReport, SinkError> {
        let mut out = self.out.lock().unwrap();
        for e in events {
            writeln!(out, "{}", e.event_data).map_err(|err| SinkError::Fatal(format!("cannot write {}: {err}", self.name)))?;
        }
        out.flush()
            .map_err(|err| SinkError::Fatal(format!("cannot write {}: {err}", self.name)))?;
        Ok(PutReport {
            successful: events.iter().map(|e| e.id.clone()).collect(),
            failed: Vec::new(),
        })
    }

    fn describe(&self) -> String {
        format!("NDJSON to {}", self.name)
    }
}
