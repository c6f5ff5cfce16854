//! Verification beside the cycle instead of in it: an `AuditSource` whose pages come with each
//! entry's verdict made. Pages are fetched ahead of the cycle, so the signature work (tens of
//! microseconds a row) is done on a blocking thread while the cycle maps and ships the page before.

use std::sync::Arc;

use async_trait::async_trait;

use super::verify::Verifier;
use crate::kong::{AuditSource, Entry, KongError, KongInfo, Page, PageRequest};

pub struct VerifyingSource {
    inner: Arc<dyn AuditSource>,
    verifier: Arc<Verifier>,
}

impl VerifyingSource {
    /// `inner`, verifying every entry it returns; `inner` itself when there is no key to verify with.
    pub fn wrap(inner: Arc<dyn AuditSource>, verifier: &Arc<Verifier>) -> Arc<dyn AuditSource> {
        if !verifier.has_keys() {
            return inner;
        }
        Arc::new(VerifyingSource {
            inner,
            verifier: verifier.clone(),
        })
    }
}

/// Sets each entry's verdict, the entries split over the machine's cores: an ECDSA P-384
/// verification takes about 300 µs, so a page of 1,000 rows would otherwise hold one core for a third
/// of a second while the others wait.
pub fn verify_all(verifier: &Verifier, entries: &mut [Entry]) {
    const PER_THREAD_AT_LEAST: usize = 32;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = entries.len().div_ceil(threads).max(PER_THREAD_AT_LEAST);
    if entries.len() <= per {
        entries.iter_mut().for_each(|entry| entry.signature = Some(verifier.check(entry)));
        return;
    }
    std::thread::scope(|scope| {
        for chunk in entries.chunks_mut(per) {
            scope.spawn(|| chunk.iter_mut().for_each(|entry| entry.signature = Some(verifier.check(entry))));
        }
    });
}

#[async_trait]
impl AuditSource for VerifyingSource {
    async fn info(&self) -> Result<KongInfo, KongError> {
        self.inner.info().await
    }

    async fn page(&self, request: &PageRequest) -> Result<Page, KongError> {
        let mut page = self.inner.page(request).await?;
        let mut entries = std::mem::take(&mut page.entries);
        let verifier = self.verifier.clone();
        page.entries = tokio::task::spawn_blocking(move || {
            verify_all(&verifier, &mut entries);
            entries
        })
        .await
        .map_err(|e| KongError::Task {
            url: format!("/{}", request.kind.path()),
            detail: format!("verifying the signatures of a page failed: {e}"),
        })?;
        Ok(page)
    }

    fn kinds(&self) -> Vec<crate::kong::EntryKind> {
        self.inner.kinds()
    }

    fn konnect(&self) -> Option<Arc<crate::konnect::KonnectSource>> {
        self.inner.konnect()
    }

    fn konnect_region(&self) -> Option<String> {
        self.inner.konnect_region()
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::tests::{pairs, spki_pem};
    use super::*;
    use crate::kong::EntryKind;
    use crate::signature::Verdict;

    struct OnePage;

    #[async_trait]
    impl AuditSource for OnePage {
        async fn info(&self) -> Result<KongInfo, KongError> {
            unreachable!()
        }
        async fn page(&self, _: &PageRequest) -> Result<Page, KongError> {
            let entries = [r#"{"request_id":"a","signature":null}"#, r#"{"request_id":"b","signature":"c2ln"}"#]
                .iter()
                .map(|t| Entry::parse(EntryKind::Request, t).unwrap())
                .collect();
            Ok(Page { entries, offset: None })
        }
    }

    #[tokio::test]
    async fn pages_come_with_verdicts_and_without_keys_the_source_is_left_alone() {
        let request = PageRequest {
            kind: EntryKind::Request,
            size: 10,
            sort_by: "request_id",
            sort_desc: false,
            after: None,
            before: None,
            offset: None,
        };
        let keyed = Arc::new(Verifier::from_setting(&spki_pem(&pairs()[0])).unwrap());
        let page = VerifyingSource::wrap(Arc::new(OnePage), &keyed).page(&request).await.unwrap();
        let statuses: Vec<&str> = page.entries.iter().map(|e| e.signature.as_ref().unwrap().status()).collect();
        assert_eq!(statuses, ["unsigned", "invalid"]);
        let page = VerifyingSource::wrap(Arc::new(OnePage), &Arc::new(Verifier::default()))
            .page(&request)
            .await
            .unwrap();
        assert!(
            page.entries.iter().all(|e| e.signature.is_none()),
            "nothing to verify with: not wrapped"
        );
    }

    #[test]
    fn a_large_page_is_verified_on_every_core_and_each_entry_keeps_its_own_verdict() {
        let verifier = Verifier::from_setting(&spki_pem(&pairs()[0])).unwrap();
        // Unsigned and signed-but-wrong rows in turn: each verdict must land on its own entry.
        let mut entries: Vec<Entry> = (0..500)
            .map(|i| {
                let signature = if i % 2 == 0 { "null" } else { "\"c2ln\"" };
                Entry::parse(EntryKind::Request, &format!(r#"{{"request_id":"r{i}","signature":{signature}}}"#)).unwrap()
            })
            .collect();
        verify_all(&verifier, &mut entries);
        for (i, entry) in entries.iter().enumerate() {
            let expected = if i % 2 == 0 { "unsigned" } else { "invalid" };
            assert_eq!(entry.signature.as_ref().map(Verdict::status), Some(expected), "entry {i}");
        }
    }
}
