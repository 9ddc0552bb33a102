//! The DaemonSet controller: one pod per eligible node. A node is eligible
//! when the pod template (with the tolerations Kubernetes adds to daemon
//! pods) passes the scheduler's NodeUnschedulable, TaintToleration and
//! NodeAffinity filters; an existing pod stays while its node still matches
//! and has no untolerated NoExecute taint. Pods are pinned with required node
//! affinity `matchFields metadata.name In [node]` (as Kubernetes does) and
//! bound by the scheduler. Templates are told apart by the
//! `controller-revision-hash` label (FNV of the template, as for
//! Deployments; no ControllerRevision objects). Decisions are in
//! [`super::daemonset_plan`]; this file observes and acts.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use selur_store::Event;

use super::daemonset_plan::{plan, scaled, NodeView, PodView, Strategy};
use super::deployment_rs::template_hash;
use super::podstate::{self, controlled_by, deleting, is_available, is_ready};
use super::workqueue::{key_under, split_key, WorkQueue};
use super::{kind, list_containing};
use crate::clock::rfc3339;
use crate::events::Recorder;
use crate::registry::{meta_str, DeleteOptions, Registry, Subresource, ROOT};
use crate::scheduler::filter::{node_affinity, node_unschedulable, taint_toleration, tolerates};
use crate::scheduler::pod::PodInfo;
use crate::scheduler::snapshot::NodeInfo;
use crate::status::{ApiError, ApiResult};

/// Store prefix of all DaemonSets.
pub const PREFIX: &str = "/registry/apps/daemonsets/";
const POD_PREFIX: &str = "/registry/core/pods/";
const NODE_PREFIX: &str = "/registry/core/nodes/";
pub const HASH_LABEL: &str = "controller-revision-hash";
pub const GENERATION_LABEL: &str = "pod-template-generation";

/// The tolerations Kubernetes adds to every daemon pod.
const ADDED_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// What the controller works with.
pub struct Ctx {
    pub reg: Registry,
    pub recorder: Recorder,
}

impl Ctx {
    pub fn new(reg: Registry) -> Arc<Self> {
        Arc::new(Self {
            recorder: Recorder::new(reg.clone(), "daemonset-controller"),
            reg,
        })
    }
}

/// The DaemonSets a change concerns: the DaemonSet itself, or a pod's controller.
pub fn keys_of(ev: &Event) -> Vec<String> {
    super::workqueue::owner_keys(ev, PREFIX, POD_PREFIX, "DaemonSet")
}

/// Node changes (join, leave, labels, taints) concern every DaemonSet.
pub async fn feed_nodes(reg: Registry, queue: Arc<WorkQueue>) {
    loop {
        let from = reg.store.revision();
        let mut events = match reg.store.watch(ROOT, from).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(controller = "daemonset", error = %e, "node watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(Ok(ev)) = events.recv().await {
            if !ev.kv.key.starts_with(NODE_PREFIX) {
                continue;
            }
            if let Ok((items, _)) = reg.list_all(PREFIX).await {
                for kv in items {
                    if let Some(k) = key_under(PREFIX, &kv.key) {
                        queue.add(k);
                    }
                }
            }
        }
    }
}

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// The template's pod spec with the added tolerations.
fn template_pod(ds: &Value) -> Value {
    let mut spec = ds
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let tol = spec["tolerations"].as_array().cloned().unwrap_or_default();
    let mut all = tol.clone();
    for (key, effect) in ADDED_TOLERATIONS {
        let present = tol
            .iter()
            .any(|t| t["key"] == *key && t["effect"] == *effect && t["operator"] == "Exists");
        if !present {
            all.push(json!({"key": key, "operator": "Exists", "effect": effect}));
        }
    }
    spec["tolerations"] = json!(all);
    let meta = ds
        .pointer("/spec/template/metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

/// The node a daemon pod is bound or pinned to.
fn pod_node(p: &Value) -> Option<String> {
    if let Some(n) = p.pointer("/spec/nodeName").and_then(Value::as_str) {
        if !n.is_empty() {
            return Some(n.to_string());
        }
    }
    let terms = p
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")?
        .as_array()?;
    terms.iter().find_map(|t| {
        t["matchFields"].as_array()?.iter().find_map(|f| {
            (f["key"] == "metadata.name")
                .then(|| f["values"].get(0)?.as_str().map(String::from))
                .flatten()
        })
    })
}

fn node_views(nodes: &[Node], pod: &PodInfo) -> Vec<NodeView> {
    nodes
        .iter()
        .map(|n| {
            let info = NodeInfo::from_node(n);
            let affinity = node_affinity(pod, &info).is_ok();
            let should_run = affinity
                && node_unschedulable(pod, &info).is_ok()
                && taint_toleration(pod, &info).is_ok();
            let no_execute_ok = info.taints.iter().all(|t| {
                t.effect != "NoExecute"
                    || pod.tolerations.iter().any(|tol| {
                        tolerates(tol, &t.key, t.value.as_deref().unwrap_or(""), &t.effect)
                    })
            });
            NodeView {
                name: info.name.to_string(),
                should_run,
                should_continue: affinity && no_execute_ok,
            }
        })
        .collect()
}

/// Reconcile one DaemonSet; `Ok(Some(d))` when a pod becomes available after `d`.
pub async fn reconcile(ctx: Arc<Ctx>, key: String) -> ApiResult<Option<Duration>> {
    let (ns, name) = split_key(&key);
    let ds_kind = kind("daemonsets")?;
    let ds = match ctx.reg.get(ds_kind, Some(ns), name).await {
        Ok(v) => v,
        Err(e) if e.code == 404 => return Ok(None),
        Err(e) => return Err(e),
    };
    if deleting(&ds) {
        return Ok(None);
    }
    let uid = meta_str(&ds, "uid").unwrap_or("").to_string();
    let template = ds.pointer("/spec/template").cloned().unwrap_or_default();
    let hash = template_hash(&template, int(&ds, "/status/collisionCount"));
    let tpod = template_pod(&ds);
    let typed: Pod = serde_json::from_value(tpod.clone())
        .map_err(|e| ApiError::internal(format!("daemonset {key}: template: {e}")))?;
    let info = PodInfo::from_pod(&typed);
    let (node_kvs, _) = ctx.reg.list_all(NODE_PREFIX).await?;
    let nodes: Vec<Node> = node_kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    let views = node_views(&nodes, &info);
    let now = ctx.reg.clock.now();
    let min_ready = int(&ds, "/spec/minReadySeconds");
    let pods: Vec<Value> = list_containing(&ctx.reg, kind("pods")?, ns, &uid)
        .await?
        .into_iter()
        .filter(|p| controlled_by(p, &uid))
        .collect();
    let pod_views: Vec<PodView> = pods
        .iter()
        .filter_map(|p| {
            Some(PodView {
                name: meta_str(p, "name")?.to_string(),
                node: pod_node(p)?,
                updated: p.pointer(&format!("/metadata/labels/{HASH_LABEL}")) == Some(&json!(hash)),
                ready: is_ready(p),
                available: is_available(p, min_ready, now),
                failed: podstate::phase(p) == "Failed",
                terminating: deleting(p),
            })
        })
        .collect();
    let desired = views.iter().filter(|v| v.should_run).count();
    let strategy = match ds
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
    {
        Some("OnDelete") => Strategy::OnDelete,
        _ => {
            let ru = ds.pointer("/spec/updateStrategy/rollingUpdate");
            let surge = scaled(ru.and_then(|r| r.get("maxSurge")), desired, true, 0);
            let unavail = scaled(ru.and_then(|r| r.get("maxUnavailable")), desired, false, 1);
            Strategy::RollingUpdate {
                max_unavailable: if unavail == 0 && surge == 0 {
                    1
                } else {
                    unavail
                },
                max_surge: surge,
            }
        }
    };
    let decided = plan(&views, &pod_views, strategy);
    let mut failure = None;
    let created = join_all(
        decided
            .create
            .iter()
            .map(|node| create_pod(&ctx, &ds, &tpod, &hash, node)),
    )
    .await;
    for r in created {
        if let Err(e) = r {
            failure = Some(e);
        }
    }
    for victim in &decided.delete {
        if let Err(e) = delete_pod(&ctx, &ds, ns, victim).await {
            failure = Some(e);
        }
    }
    let status = super::daemonset_status::status(
        &ds,
        &views,
        &pod_views,
        failure.as_ref().map(|e| e.message.as_str()),
        &rfc3339(now),
    );
    if status != ds["status"] {
        ctx.reg
            .merge(
                ds_kind,
                Some(ns),
                name,
                &json!({"status": status}),
                Subresource::Status,
            )
            .await?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(podstate::next_available_in(
        pods.iter().filter(|p| !deleting(p)),
        min_ready,
        now,
    ))
}

async fn create_pod(
    ctx: &Arc<Ctx>,
    ds: &Value,
    tpod: &Value,
    hash: &str,
    node: &str,
) -> ApiResult<()> {
    let mut body = tpod.clone();
    let meta = &mut body["metadata"];
    meta["generateName"] = json!(format!("{}-", meta_str(ds, "name").unwrap_or("")));
    meta["namespace"] = ds["metadata"]["namespace"].clone();
    meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet",
        "name": ds["metadata"]["name"], "uid": ds["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true}]);
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    meta["labels"][HASH_LABEL] = json!(hash);
    meta["labels"][GENERATION_LABEL] = json!(int(ds, "/metadata/generation").to_string());
    if !body["spec"]["affinity"].is_object() {
        body["spec"]["affinity"] = json!({});
    }
    let na = &mut body["spec"]["affinity"]["nodeAffinity"];
    if !na.is_object() {
        *na = json!({});
    }
    na["requiredDuringSchedulingIgnoredDuringExecution"] = json!({"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]});
    let ns = meta_str(ds, "namespace");
    match ctx.reg.create(kind("pods")?, ns, body, false).await {
        Ok(p) => {
            let msg = format!("Created pod: {}", meta_str(&p, "name").unwrap_or(""));
            ctx.recorder
                .record_later(ds, "Normal", "SuccessfulCreate", msg);
            Ok(())
        }
        Err(e) => {
            ctx.recorder.record_later(
                ds,
                "Warning",
                "FailedCreate",
                format!("Error creating: {}", e.message),
            );
            Err(e)
        }
    }
}

async fn delete_pod(ctx: &Arc<Ctx>, ds: &Value, ns: &str, name: &str) -> ApiResult<()> {
    match ctx
        .reg
        .delete(kind("pods")?, Some(ns), name, &DeleteOptions::default())
        .await
    {
        Ok(_) => {
            ctx.recorder.record_later(
                ds,
                "Normal",
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
            );
            Ok(())
        }
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => {
            ctx.recorder.record_later(
                ds,
                "Warning",
                "FailedDelete",
                format!("Error deleting: {}", e.message),
            );
            Err(e)
        }
    }
}
