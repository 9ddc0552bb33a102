//! In-process controllers of the control plane. Each is a small reconcile
//! pass (observe the store, diff against what should be, act through the
//! registry) that is idempotent and is re-run whenever a relevant change
//! arrives on a watch, and periodically as a safety net.

pub mod catalog;
pub mod gc;
pub mod namespace;
pub mod node_lifecycle;

use std::future::Future;
use std::time::Duration;

use selur_store::Event;

use crate::registry::{Registry, ROOT};

/// Run `pass` once now, then again after every watched change for which
/// `relevant` holds (changes arriving together share one pass), and every
/// `period`. Passes never overlap, so one object is never reconciled twice at once.
pub async fn run_loop<P, F>(
    name: &'static str,
    reg: Registry,
    relevant: fn(&Event) -> bool,
    period: Duration,
    pass: P,
) where
    P: Fn(Registry) -> F,
    F: Future<Output = Result<(), crate::status::ApiError>>,
{
    loop {
        let from = reg.store.revision();
        if let Err(e) = pass(reg.clone()).await {
            tracing::warn!(controller = name, error = %e, "reconcile pass failed");
        }
        let mut events = match reg.store.watch(ROOT, from).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(controller = name, error = %e, "watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut ticker = tokio::time::interval(period);
        ticker.tick().await;
        loop {
            let run = tokio::select! {
                ev = events.recv() => match ev {
                    Some(Ok(ev)) => relevant(&ev),
                    // Compacted or closed: start over from a fresh pass.
                    _ => break,
                },
                _ = ticker.tick() => true,
            };
            if !run {
                continue;
            }
            // Let a burst of changes settle into one pass.
            tokio::time::sleep(Duration::from_millis(20)).await;
            while let Ok(Ok(_)) = events.try_recv() {}
            if let Err(e) = pass(reg.clone()).await {
                tracing::warn!(controller = name, error = %e, "reconcile pass failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
