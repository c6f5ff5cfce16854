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
        let failed = |err: std::io::Error| {
            if err.kind() == std::io::ErrorKind::BrokenPipe {
                SinkError::Closed(format!("{} was closed by its reader", self.name))
            } else {
                SinkError::Fatal(format!("cannot write {}: {err}", self.name))
            }
        };
        for e in events {
            writeln!(out, "{}", e.event_data).map_err(failed)?;
        }
        out.flush().map_err(failed)?;
        Ok(PutReport {
            successful: events.iter().map(|e| e.id.clone()).collect(),
            failed: Vec::new(),
        })
    }

    fn describe(&self) -> String {
        format!("NDJSON to {}", self.name)
    }
}
