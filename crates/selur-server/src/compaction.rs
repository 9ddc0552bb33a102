//! History compaction: the store keeps every change for watches to resume
//! from; this loop drops what the policy no longer keeps. A watch from a
//! compacted revision then gets 410 Gone.

use std::sync::Arc;
use std::time::Duration;

use selur_store::Store;

/// How much watch history to keep.
#[derive(Debug, Clone, PartialEq)]
pub enum CompactionPolicy {
    /// Keep the last N revisions.
    Revisions(i64),
    /// Keep changes younger than this.
    Age(Duration),
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        // Kubernetes keeps about five minutes of etcd history; an hour costs little here.
        CompactionPolicy::Age(Duration::from_secs(3600))
    }
}

/// The revision at or below which history may go.
pub async fn target(store: &dyn Store, policy: &CompactionPolicy) -> selur_store::Result<i64> {
    match policy {
        CompactionPolicy::Revisions(n) => Ok(store.revision() - n),
        CompactionPolicy::Age(age) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            store.revision_before(now - age.as_millis() as i64).await
        }
    }
}

/// Compact every `interval` according to `policy`.
pub async fn run(store: Arc<dyn Store>, policy: CompactionPolicy, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        match target(store.as_ref(), &policy).await {
            Ok(t) if t > store.compacted_revision() => match store.compact(t).await {
                Ok(r) => tracing::debug!(revision = r, "compacted watch history"),
                Err(e) => tracing::warn!(error = %e, "compaction failed"),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "compaction target failed"),
        }
    }
}
