//! An in-process sink that records what it accepted, with scripted refusals, for tests.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{PutReport, Refusal, Sink, SinkError};
use crate::event::AuditEvent;

/// A scripted answer for the next call.
pub enum Script {
    /// Refuse these ids with this code; accept the rest.
    Refuse(Vec<String>, &'static str),
    /// Fail the whole call.
    Fail(SinkError),
}

#[derive(Default)]
pub struct MemorySink {
    accepted: Mutex<Vec<AuditEvent>>,
    script: Mutex<VecDeque<Script>>,
    calls: Mutex<usize>,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn then(&self, step: Script) -> &Self {
        self.script.lock().unwrap().push_back(step);
        self
    }

    pub fn accepted(&self) -> Vec<AuditEvent> {
        self.accepted.lock().unwrap().clone()
    }

    /// Forgets the accepted events with these ids (a destination that lost them).
    pub fn remove(&self, ids: &std::collections::HashSet<String>) -> usize {
        let mut accepted = self.accepted.lock().unwrap();
        let before = accepted.len();
        accepted.retain(|e| !ids.contains(&e.id));
        before - accepted.len()
    }

    pub fn calls(&self) -> usize {
        *self.calls.lock().unwrap()
    }
}

#[async_trait]
impl Sink for MemorySink {
    async fn put(&self, events: &[AuditEvent]) -> Result<PutReport, SinkError> {
        *self.calls.lock().unwrap() += 1;
        let step = self.script.lock().unwrap().pop_front();
        let refused: Vec<(String, &str)> = match step {
            Some(Script::Fail(e)) => return Err(e),
            Some(Script::Refuse(ids, code)) => ids.into_iter().map(|id| (id, code)).collect(),
            None => Vec::new(),
        };
        let mut report = PutReport::default();
        for e in events {
            if let Some((_, code)) = refused.iter().find(|(id, _)| *id == e.id) {
                report.failed.push(Refusal::from_cloudtrail(e.id.clone(), *code, "scripted"));
            } else {
                self.accepted.lock().unwrap().push(e.clone());
                report.successful.push(e.id.clone());
            }
        }
        Ok(report)
    }

    fn describe(&self) -> String {
        "in-memory sink".into()
    }
}
