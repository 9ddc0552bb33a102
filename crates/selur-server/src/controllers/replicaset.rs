//! The ReplicaSet controller: per ReplicaSet, observe the pods it controls
//! (controller owner reference, matching its selector, not finished, not
//! being deleted), create the missing ones from its template or delete the
//! extra ones (unscheduled, pending, not ready, newest first, as Kubernetes
//! ranks them), and report `status` (replicas, fullyLabeledReplicas,
//! readyReplicas, availableReplicas, observedGeneration, ReplicaFailure).
//!
//! Reads go straight to the store and a key is never reconciled twice at
//! once, so the controller needs no "expectations": its own creates and
//! deletes are visible to its next reconcile. Adopting orphans that match the
//! selector is not done.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};

use selur_api::selector::{labels_of, LabelSelector};
use selur_store::Event;

use super::podstate::{self, controlled_by, is_active, is_available, is_ready};
use super::workqueue::split_key;
use super::{kind, list_containing};
use crate::clock::rfc3339;
use crate::events::Recorder;
use crate::registry::{meta_str, DeleteOptions, Registry, Subresource};
use crate::status::{ApiError, ApiResult};

/// Store prefix of all ReplicaSets.
pub const PREFIX: &str = "/registry/apps/replicasets/";
const POD_PREFIX: &str = "/registry/core/pods/";
/// Most pods created or deleted in one reconcile (Kubernetes' burstReplicas).
const BURST: usize = 500;

/// What the controller works with.
pub struct Ctx {
    pub reg: Registry,
    pub recorder: Recorder,
}

impl Ctx {
    pub fn new(reg: Registry) -> Arc<Self> {
        Arc::new(Self {
            recorder: Recorder::new(reg.clone(), "replicaset-controller"),
            reg,
        })
    }
}

/// The ReplicaSets a change concerns: the ReplicaSet itself, or a pod's controller.
pub fn keys_of(ev: &Event) -> Vec<String> {
    super::workqueue::owner_keys(ev, PREFIX, POD_PREFIX, "ReplicaSet")
}

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// Reconcile one ReplicaSet; `Ok(Some(d))` when a pod becomes available after `d`.
pub async fn reconcile(ctx: Arc<Ctx>, key: String) -> ApiResult<Option<Duration>> {
    let (ns, name) = split_key(&key);
    let rs_kind = kind("replicasets")?;
    let rs = match ctx.reg.get(rs_kind, Some(ns), name).await {
        Ok(v) => v,
        // Its pods go with it (garbage collector).
        Err(e) if e.code == 404 => return Ok(None),
        Err(e) => return Err(e),
    };
    let uid = meta_str(&rs, "uid").unwrap_or("").to_string();
    let selector = rs
        .pointer("/spec/selector")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .and_then(|s| LabelSelector::from_k8s(&s).ok())
        .ok_or_else(|| ApiError::internal(format!("replicaset {key} has no valid selector")))?;
    let pods = list_containing(&ctx.reg, kind("pods")?, ns, &uid).await?;
    let mut active: Vec<Value> = pods
        .into_iter()
        .filter(|p| controlled_by(p, &uid) && selector.matches_object(p) && is_active(p))
        .collect();
    let want = int(&rs, "/spec/replicas").max(0) as usize;
    let mut failure = None;
    if !podstate::deleting(&rs) {
        if active.len() < want {
            let (created, err) = create_pods(&ctx, &rs, (want - active.len()).min(BURST)).await;
            active.extend(created);
            failure = err.map(|e| ("FailedCreate", e));
        } else if active.len() > want {
            active.sort_by_key(deletion_rank);
            let doomed = active.split_off(0);
            let (extra, keep) = doomed.split_at((doomed.len() - want).min(BURST));
            let (kept_back, err) = delete_pods(&ctx, &rs, extra).await;
            active = keep.to_vec();
            active.extend(kept_back);
            failure = err.map(|e| ("FailedDelete", e));
        }
    }
    let now = ctx.reg.clock.now();
    let min_ready = int(&rs, "/spec/minReadySeconds");
    let status = status_of(&rs, &active, min_ready, now, failure.as_ref());
    if status_changed(&rs, &status) {
        ctx.reg
            .merge(
                rs_kind,
                Some(ns),
                name,
                &json!({"status": status}),
                Subresource::Status,
            )
            .await?;
    }
    if let Some((_, e)) = failure {
        return Err(e);
    }
    Ok(podstate::next_available_in(active.iter(), min_ready, now))
}

/// A pod for `rs` from its template.
fn pod_from_template(rs: &Value) -> Value {
    let t = &rs["spec"]["template"];
    let mut meta = json!({
        "generateName": format!("{}-", meta_str(rs, "name").unwrap_or("")),
        "namespace": rs["metadata"]["namespace"],
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": rs["metadata"]["name"], "uid": rs["metadata"]["uid"],
            "controller": true, "blockOwnerDeletion": true}],
    });
    for f in ["labels", "annotations"] {
        if let Some(v) = t.pointer(&format!("/metadata/{f}")) {
            meta[f] = v.clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": t["spec"]})
}

/// Create `count` pods in batches of 1, 2, 4, ... (Kubernetes' slow start: a
/// refused create, such as by a quota, stops before many more fail the same way).
async fn create_pods(ctx: &Arc<Ctx>, rs: &Value, count: usize) -> (Vec<Value>, Option<ApiError>) {
    let body = pod_from_template(rs);
    let mut created = Vec::with_capacity(count);
    let mut batch = 1;
    while created.len() < count {
        let n = batch.min(count - created.len());
        let results = join_all((0..n).map(|_| create_one(ctx, rs, body.clone()))).await;
        let mut failed = None;
        for r in results {
            match r {
                Ok(p) => created.push(p),
                Err(e) => failed = Some(e),
            }
        }
        if failed.is_some() {
            return (created, failed);
        }
        batch *= 2;
    }
    (created, None)
}

async fn create_one(ctx: &Arc<Ctx>, rs: &Value, body: Value) -> ApiResult<Value> {
    let pod_kind = kind("pods")?;
    let ns = meta_str(rs, "namespace");
    let mut res = ctx.reg.create(pod_kind, ns, body.clone(), false).await;
    if matches!(&res, Err(e) if e.code == 409 && e.reason == "AlreadyExists") {
        // A generated name collided; draw another.
        res = ctx.reg.create(pod_kind, ns, body, false).await;
    }
    match &res {
        Ok(p) => {
            let msg = format!("Created pod: {}", meta_str(p, "name").unwrap_or(""));
            ctx.recorder
                .record_later(rs, "Normal", "SuccessfulCreate", msg);
        }
        Err(e) => ctx.recorder.record_later(
            rs,
            "Warning",
            "FailedCreate",
            format!("Error creating: {}", e.message),
        ),
    }
    res
}

/// Delete `pods` concurrently; returns those that could not be deleted.
async fn delete_pods(ctx: &Arc<Ctx>, rs: &Value, pods: &[Value]) -> (Vec<Value>, Option<ApiError>) {
    let results = join_all(pods.iter().map(|p| async move {
        let pod_kind = kind("pods")?;
        let name = meta_str(p, "name").unwrap_or("");
        let opts = DeleteOptions {
            precondition_uid: meta_str(p, "uid").map(String::from),
            ..Default::default()
        };
        match ctx
            .reg
            .delete(pod_kind, meta_str(p, "namespace"), name, &opts)
            .await
        {
            Ok(_) => {
                ctx.recorder.record_later(
                    rs,
                    "Normal",
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                );
                Ok(())
            }
            Err(e) if e.code == 404 => Ok(()),
            Err(e) => {
                ctx.recorder.record_later(
                    rs,
                    "Warning",
                    "FailedDelete",
                    format!("Error deleting: {}", e.message),
                );
                Err(e)
            }
        }
    }))
    .await;
    let mut kept = Vec::new();
    let mut err = None;
    for (p, r) in pods.iter().zip(results) {
        if let Err(e) = r {
            kept.push(p.clone());
            err = Some(e);
        }
    }
    (kept, err)
}

/// Sort key: pods to delete first sort first (unscheduled, then pending /
/// unknown before running, not ready before ready, ready for less time,
/// more restarts, newer).
fn deletion_rank(p: &Value) -> impl Ord {
    let assigned = p
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let phase = match podstate::phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    let ready_since = podstate::available_at(p, 0);
    let restarts: i64 = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().map(|c| int(c, "/restartCount")).sum())
        .unwrap_or(0);
    let created = p
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    (
        assigned,
        phase,
        is_ready(p),
        Reverse(ready_since),
        Reverse(restarts),
        Reverse(created),
    )
}

fn status_of(
    rs: &Value,
    pods: &[Value],
    min_ready: i64,
    now: chrono::DateTime<chrono::Utc>,
    failure: Option<&(&str, ApiError)>,
) -> Value {
    let template_labels = rs
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object);
    let fully_labeled = pods
        .iter()
        .filter(|p| {
            let l = labels_of(p);
            template_labels
                .into_iter()
                .flatten()
                .all(|(k, v)| l.get(k).map(String::as_str) == v.as_str())
        })
        .count();
    let mut conditions: Vec<Value> = rs
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let previous = conditions
        .iter()
        .position(|c| c["type"] == "ReplicaFailure")
        .map(|i| conditions.remove(i));
    if let Some((reason, e)) = failure {
        let since = previous
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(rfc3339(now)));
        conditions.push(
            json!({"type": "ReplicaFailure", "status": "True", "reason": reason,
            "message": e.message, "lastTransitionTime": since}),
        );
    }
    json!({
        "replicas": pods.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": pods.iter().filter(|p| is_ready(p)).count(),
        "availableReplicas": pods.iter().filter(|p| is_available(p, min_ready, now)).count(),
        "observedGeneration": int(rs, "/metadata/generation"),
        "conditions": conditions,
    })
}

fn status_changed(rs: &Value, status: &Value) -> bool {
    let old = &rs["status"];
    status.as_object().into_iter().flatten().any(|(k, v)| {
        let o = old.get(k);
        match v {
            Value::Array(a) if a.is_empty() => {
                o.and_then(Value::as_array).is_some_and(|x| !x.is_empty())
            }
            Value::Number(n) if n.as_i64() == Some(0) => {
                o.and_then(Value::as_i64).unwrap_or(0) != 0
            }
            _ => o != Some(v),
        }
    })
}

#[cfg(test)]
#[path = "replicaset_tests.rs"]
mod tests;
