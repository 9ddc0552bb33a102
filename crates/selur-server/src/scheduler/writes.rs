//! The scheduler's writes: the binding (optimistic on the pod's revision)
//! and the report on a pod that fits nowhere (PodScheduled=False and a
//! FailedScheduling event).

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{json, Value};

use selur_api::kinds::ResourceKind;
use selur_store::{KeyValue, Revision};

use super::run::Pending;
use crate::clock::rfc3339;
use crate::events::Recorder;
use crate::registry::{meta_str, Registry, Subresource};
use crate::status::ApiResult;

/// How a binding went.
pub(super) struct BindDone {
    pub key: String,
    pub node: String,
    pub started: Instant,
    pub result: ApiResult<Value>,
    /// After a failure: the pod as it is now (re-read), if it still exists.
    pub fresh: Option<KeyValue>,
}

pub(super) fn p_value(pending: &HashMap<String, Pending>, key: &str) -> Value {
    pending
        .get(key)
        .map(|p| p.pod.clone())
        .unwrap_or(Value::Null)
}

/// The binding write (the `binding` subresource's), only if the pod is still at `rev`.
pub(super) async fn bind(
    reg: Registry,
    kind: &'static ResourceKind,
    key: String,
    pod: Value,
    rev: Revision,
    node: String,
    started: Instant,
) -> BindDone {
    let ns = meta_str(&pod, "namespace").unwrap_or("default").to_string();
    let name = meta_str(&pod, "name").unwrap_or("").to_string();
    let result = reg
        .bind_node(kind, Some(&ns), &name, rev, pod, &node, false)
        .await;
    let fresh = match &result {
        Err(e) if e.code != 404 => reg.store.get(&key).await.ok().flatten(),
        _ => None,
    };
    BindDone {
        key,
        node,
        started,
        result,
        fresh,
    }
}

/// PodScheduled=False (reason Unschedulable) on the pod if it still waits for a
/// node and does not say so already, and a FailedScheduling event (deduplicated).
pub(super) async fn report_unschedulable(
    reg: &Registry,
    rec: &Recorder,
    kind: &'static ResourceKind,
    pod: &Value,
    message: &str,
) {
    let ns = meta_str(pod, "namespace").unwrap_or("default").to_string();
    let name = meta_str(pod, "name").unwrap_or("").to_string();
    let current = match reg.get(kind, Some(&ns), &name).await {
        Ok(p) => p,
        Err(_) => return,
    };
    let bound = current
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if bound {
        return;
    }
    let mut conds: Vec<Value> = current
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let same = conds.iter().any(|c| {
        c["type"] == "PodScheduled"
            && c["status"] == "False"
            && c["reason"] == "Unschedulable"
            && c["message"] == message
    });
    if !same {
        conds.retain(|c| c["type"] != "PodScheduled");
        conds.push(
            json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": null,
            "lastTransitionTime": rfc3339(reg.clock.now())}),
        );
        let mut body = current.clone();
        body["status"]["conditions"] = json!(conds);
        if body["status"].get("phase").is_none() {
            body["status"]["phase"] = json!("Pending");
        }
        // Conditional on the pod being as read: never overwrites a binding.
        if let Err(e) = reg
            .update(kind, Some(&ns), &name, body, Subresource::Status, false)
            .await
        {
            tracing::debug!(pod = %name, error = %e, "PodScheduled=False not written");
        }
    }
    rec.record(&current, "Warning", "FailedScheduling", message)
        .await;
}
