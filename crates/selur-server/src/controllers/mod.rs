//! In-process controllers of the control plane. Each is a small reconcile
//! pass (observe the store, diff against what should be, act through the
//! registry) that is idempotent and is re-run whenever a relevant change
//! arrives on a watch, and periodically as a safety net.

pub mod catalog;
pub mod cronjob;
pub mod cronjob_logic;
pub mod daemonset;
pub mod daemonset_plan;
pub mod daemonset_status;
pub mod deployment;
mod deployment_rs;
pub mod deployment_status;
pub mod endpoints;
pub mod gc;
pub mod job;
pub mod job_logic;
mod job_status;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod podstate;
pub mod replicaset;
pub mod resourcequota;
pub mod rollout;
pub mod workqueue;

use std::future::Future;
use std::time::Duration;

use selur_store::Event;

use selur_api::kinds::{self, ResourceKind};
use serde_json::Value;

use crate::registry::{decode_kv, prefix, Registry, ROOT};
use crate::status::{ApiError, ApiResult};

/// Start the workload controllers (ReplicaSet, Deployment, Job, CronJob, DaemonSet) on `tasks`: each
/// a work queue fed by a store watch (and a full resync every `resync`),
/// drained by a few workers.
pub fn spawn_workloads(
    tasks: &mut tokio::task::JoinSet<()>,
    reg: &Registry,
    resync: Duration,
    job_backoff: job_logic::Backoff,
) {
    use workqueue::{feed, run_workers, WorkQueue};
    let rs_ctx = replicaset::Ctx::new(reg.clone());
    let rs_queue = WorkQueue::new();
    tasks.spawn(feed(
        "replicaset",
        reg.clone(),
        rs_queue.clone(),
        replicaset::PREFIX.into(),
        resync,
        replicaset::keys_of,
    ));
    tasks.spawn(run_workers("replicaset", rs_queue, 4, move |k| {
        replicaset::reconcile(rs_ctx.clone(), k)
    }));
    let d_ctx = deployment::Ctx::new(reg.clone());
    let d_queue = WorkQueue::new();
    tasks.spawn(feed(
        "deployment",
        reg.clone(),
        d_queue.clone(),
        deployment::PREFIX.into(),
        resync,
        deployment::keys_of,
    ));
    tasks.spawn(run_workers("deployment", d_queue, 4, move |k| {
        deployment::reconcile(d_ctx.clone(), k)
    }));
    let j_ctx = job::Ctx::new(reg.clone(), job_backoff);
    let j_queue = WorkQueue::new();
    tasks.spawn(feed(
        "job",
        reg.clone(),
        j_queue.clone(),
        job::PREFIX.into(),
        resync,
        job::keys_of,
    ));
    tasks.spawn(run_workers("job", j_queue, 4, move |k| {
        job::reconcile(j_ctx.clone(), k)
    }));
    let c_ctx = cronjob::Ctx::new(reg.clone());
    let c_queue = WorkQueue::new();
    tasks.spawn(feed(
        "cronjob",
        reg.clone(),
        c_queue.clone(),
        cronjob::PREFIX.into(),
        resync,
        cronjob::keys_of,
    ));
    tasks.spawn(run_workers("cronjob", c_queue, 2, move |k| {
        cronjob::reconcile(c_ctx.clone(), k)
    }));
    let ds_ctx = daemonset::Ctx::new(reg.clone());
    let ds_queue = WorkQueue::new();
    tasks.spawn(feed(
        "daemonset",
        reg.clone(),
        ds_queue.clone(),
        daemonset::PREFIX.into(),
        resync,
        daemonset::keys_of,
    ));
    tasks.spawn(daemonset::feed_nodes(reg.clone(), ds_queue.clone()));
    tasks.spawn(run_workers("daemonset", ds_queue, 4, move |k| {
        daemonset::reconcile(ds_ctx.clone(), k)
    }));
}

/// A served kind by its CLI name (`pods`, `replicasets`, ...).
pub(crate) fn kind(name: &str) -> ApiResult<&'static ResourceKind> {
    kinds::by_cli_name(name).ok_or_else(|| ApiError::internal(format!("kind {name} missing")))
}

/// Whether `needle` occurs in `hay` (cheap checks on raw stored bytes before parsing).
pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The objects of `kind` in `namespace` whose stored bytes contain `needle`
/// (a uid: a cheap filter before parsing), decoded.
pub(crate) async fn list_containing(
    reg: &Registry,
    kind: &'static ResourceKind,
    namespace: &str,
    needle: &str,
) -> ApiResult<Vec<Value>> {
    let (items, _) = reg.list_all(&prefix(kind, Some(namespace))).await?;
    items
        .iter()
        .filter(|kv| contains(&kv.value, needle.as_bytes()))
        .map(decode_kv)
        .collect()
}

/// Run `pass` once now, then again after every watched change for which
/// `relevant` holds (changes arriving together share one pass), every
/// `period` and when the registry's clock jumps (tests' manual clock).
/// Passes never overlap, so one object is never reconciled twice at once.
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
    let mut jumps = reg.clock.jumps();
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
                _ = crate::clock::next_jump(&mut jumps) => true,
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
