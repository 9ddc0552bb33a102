//! The Deployment controller: per Deployment, observe its ReplicaSets
//! (controller owner reference) and their pods, let [`rollout::plan`] decide,
//! act (create the ReplicaSet for the current template, scale, delete old
//! history), then write `status` (replicas, updatedReplicas, readyReplicas,
//! availableReplicas, unavailableReplicas, observedGeneration, conditions).
//!
//! The ReplicaSet for a template is `<deployment>-<hash>`, the hash of the
//! template (and `status.collisionCount`) as Kubernetes' `pod-template-hash`
//! label, which is added to its selector, template and pods. Revisions are
//! the `deployment.kubernetes.io/revision` annotations of the ReplicaSets; the
//! Deployment carries its current one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use selur_store::{Event, EventType};

use super::deployment_rs::{create_rs, view, without_hash};
use super::deployment_status::{self as dstatus, Counts};
use super::podstate::{self, controlled_by, deleting};
use super::rollout::{self, Action, Rs, Spec, Strategy};
use super::workqueue::{key_under, split_key};
use super::{contains, kind, list_containing};
use crate::events::Recorder;
use crate::registry::{meta_str, Registry, Subresource};
use crate::status::ApiResult;

pub const PREFIX: &str = "/registry/apps/deployments/";
const RS_PREFIX: &str = "/registry/apps/replicasets/";
const POD_PREFIX: &str = "/registry/core/pods/";
pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub(super) const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
pub(super) const MAX: &str = "deployment.kubernetes.io/max-replicas";
pub(super) const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

pub struct Ctx {
    pub reg: Registry,
    pub recorder: Recorder,
}

impl Ctx {
    pub fn new(reg: Registry) -> Arc<Self> {
        Arc::new(Self {
            recorder: Recorder::new(reg.clone(), "deployment-controller"),
            reg,
        })
    }
}

/// The Deployments a change concerns: itself, a ReplicaSet's controller, or
/// (for Recreate, which waits for old pods to be gone) a deleted pod's.
pub fn keys_of(ev: &Event) -> Vec<String> {
    let k = &ev.kv.key;
    if let Some(key) = key_under(PREFIX, k) {
        return vec![key];
    }
    let is_rs = k.starts_with(RS_PREFIX) && contains(&ev.kv.value, b"\"Deployment\"");
    let is_pod_gone = ev.event_type == EventType::Delete
        && k.starts_with(POD_PREFIX)
        && contains(&ev.kv.value, HASH_LABEL.as_bytes());
    if !is_rs && !is_pod_gone {
        return Vec::new();
    }
    let Ok(obj) = serde_json::from_slice::<Value>(&ev.kv.value) else {
        return Vec::new();
    };
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    match podstate::controller_ref(&obj) {
        Some(("Deployment", name, _)) if is_rs => vec![format!("{ns}/{name}")],
        // The ReplicaSet is `<deployment>-<hash>`.
        Some(("ReplicaSet", rs, _)) => obj
            .pointer(&format!("/metadata/labels/{HASH_LABEL}"))
            .and_then(Value::as_str)
            .and_then(|h| rs.strip_suffix(&format!("-{h}")))
            .map(|d| vec![format!("{ns}/{d}")])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

pub(super) fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

pub(super) fn annotation(v: &Value, key: &str) -> Option<i64> {
    v.pointer("/metadata/annotations")?
        .get(key)?
        .as_str()?
        .parse()
        .ok()
}

fn spec_of(d: &Value) -> (Spec, i32) {
    let replicas = int(d, "/spec/replicas") as i32;
    let ru = d.pointer("/spec/strategy/rollingUpdate");
    let get = |f: &str| {
        ru.and_then(|r| r.get(f))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    };
    let (strategy, max_unavailable) = match d.pointer("/spec/strategy/type").and_then(Value::as_str)
    {
        Some("Recreate") => (Strategy::Recreate, 0),
        _ => {
            let (s, u) = rollout::resolve(
                get("maxSurge").as_ref(),
                get("maxUnavailable").as_ref(),
                replicas,
            );
            (
                Strategy::RollingUpdate {
                    max_surge: s,
                    max_unavailable: u,
                },
                u,
            )
        }
    };
    let spec = Spec {
        replicas,
        strategy,
        paused: d
            .pointer("/spec/paused")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        revision_history_limit: d
            .pointer("/spec/revisionHistoryLimit")
            .and_then(Value::as_i64)
            .unwrap_or(10) as i32,
    };
    (spec, max_unavailable)
}

/// Reconcile one Deployment; `Ok(Some(d))` to look again after `d` (deadlines, minReadySeconds).
pub async fn reconcile(ctx: Arc<Ctx>, key: String) -> ApiResult<Option<Duration>> {
    let (ns, name) = split_key(&key);
    let (d_kind, rs_kind) = (kind("deployments")?, kind("replicasets")?);
    let d = match ctx.reg.get(d_kind, Some(ns), name).await {
        Ok(v) if !deleting(&v) => v,
        Ok(_) => return Ok(None),
        Err(e) if e.code == 404 => return Ok(None),
        Err(e) => return Err(e),
    };
    // Observe.
    let uid = meta_str(&d, "uid").unwrap_or("").to_string();
    let rss: Vec<Value> = list_containing(&ctx.reg, rs_kind, ns, &uid)
        .await?
        .into_iter()
        .filter(|r| controlled_by(r, &uid) && !deleting(r))
        .collect();
    let mut pods: HashMap<String, Vec<Value>> = HashMap::new();
    for p in list_containing(&ctx.reg, kind("pods")?, ns, HASH_LABEL).await? {
        if let Some((_, _, owner)) = podstate::controller_ref(&p) {
            pods.entry(owner.to_string()).or_default().push(p);
        }
    }
    let template = d["spec"]["template"].clone();
    let mut new_idx = rss
        .iter()
        .enumerate()
        .filter(|(_, r)| without_hash(&r["spec"]["template"]) == template)
        .min_by_key(|(_, r)| {
            (
                meta_str(r, "creationTimestamp").unwrap_or("").to_string(),
                meta_str(r, "name").unwrap_or("").to_string(),
            )
        })
        .map(|(i, _)| i);
    let now = ctx.reg.clock.now();
    let min_ready = int(&d, "/spec/minReadySeconds");
    let views: Vec<Rs> = rss
        .iter()
        .map(|r| {
            view(
                r,
                pods.get(meta_str(r, "uid").unwrap_or("")),
                min_ready,
                now,
            )
        })
        .collect();
    let (spec, max_unavailable) = spec_of(&d);
    let old: Vec<Rs> = views
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new_idx)
        .map(|(_, v)| v.clone())
        .collect();
    let max_old_rev = old.iter().map(|r| r.revision).max().unwrap_or(0);
    let new_view = new_idx.map(|i| views[i].clone());

    // Act.
    let actions = rollout::plan(&spec, new_view.as_ref(), &old);
    let surge = match spec.strategy {
        Strategy::RollingUpdate { max_surge, .. } => max_surge,
        Strategy::Recreate => 0,
    };
    let mut rss = rss;
    let mut created = false;
    for a in &actions {
        match a {
            Action::Create { replicas } => {
                let rs = create_rs(&ctx, &d, *replicas, max_old_rev + 1, surge).await?;
                let Some(rs) = rs else {
                    // A hash collision: the next pass uses the bumped collisionCount.
                    return Ok(Some(Duration::ZERO));
                };
                if *replicas > 0 {
                    event_scaled(&ctx, &d, &rs, 0, *replicas).await;
                }
                rss.push(rs);
                new_idx = Some(rss.len() - 1);
                created = true;
            }
            Action::Scale { name: rs, from, to } => {
                let patch = json!({"metadata": {"annotations": {DESIRED: spec.replicas.to_string(),
                    MAX: (spec.replicas + surge).to_string()}}, "spec": {"replicas": to}});
                let updated = ctx
                    .reg
                    .merge(rs_kind, Some(ns), rs, &patch, Subresource::Main)
                    .await?;
                event_scaled(&ctx, &d, &updated, *from, *to).await;
            }
            Action::Delete { name: rs } => {
                match ctx
                    .reg
                    .delete(rs_kind, Some(ns), rs, &Default::default())
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    // The current template's ReplicaSet carries the newest revision, and so does the Deployment.
    let mut revision = None;
    if let Some(i) = new_idx {
        let rev = annotation(&rss[i], REVISION).unwrap_or(0);
        let want = if rev > max_old_rev {
            rev
        } else {
            max_old_rev + 1
        };
        if want != rev {
            let patch = json!({"metadata": {"annotations": {REVISION: want.to_string()}}});
            let rs_name = meta_str(&rss[i], "name").unwrap_or("").to_string();
            ctx.reg
                .merge(rs_kind, Some(ns), &rs_name, &patch, Subresource::Main)
                .await?;
        }
        revision = Some(want);
    }
    if let Some(rev) = revision.filter(|r| annotation(&d, REVISION) != Some(*r)) {
        let patch = json!({"metadata": {"annotations": {REVISION: rev.to_string()}}});
        ctx.reg
            .merge(d_kind, Some(ns), name, &patch, Subresource::Main)
            .await?;
    }

    // Status.
    let sum = |f: &str| {
        rss.iter()
            .map(|r| int(r, &format!("/status/{f}")))
            .sum::<i64>()
    };
    let new_rs = new_idx.map(|i| &rss[i]);
    let after = Counts {
        replicas: sum("replicas"),
        updated: new_rs.map_or(0, |r| int(r, "/status/replicas")),
        ready: sum("readyReplicas"),
        available: sum("availableReplicas"),
    };
    let replica_failure = rss.iter().find_map(|r| {
        r.pointer("/status/conditions")?
            .as_array()?
            .iter()
            .find(|c| c["type"] == "ReplicaFailure")
            .cloned()
    });
    let input = dstatus::Input {
        replicas: i64::from(spec.replicas),
        max_unavailable: i64::from(max_unavailable),
        paused: spec.paused,
        progress_deadline: d
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(Value::as_i64),
        new_rs: new_rs.and_then(|r| meta_str(r, "name")),
        created_new_rs: created,
        before: Counts::of(&d["status"]),
        after,
        replica_failure,
        now,
    };
    let existing = d
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (conditions, deadline) = dstatus::conditions(&existing, &input);
    let mut status = json!({
        "observedGeneration": int(&d, "/metadata/generation"),
        "replicas": after.replicas, "updatedReplicas": after.updated,
        "readyReplicas": after.ready, "availableReplicas": after.available,
        "unavailableReplicas": (i64::from(spec.replicas) - after.available).max(0),
        "conditions": conditions,
    });
    if let Some(c) = d.pointer("/status/collisionCount") {
        status["collisionCount"] = c.clone();
    }
    if status
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| d["status"].get(k).unwrap_or(&json!(0)) != v)
    {
        ctx.reg
            .merge(
                d_kind,
                Some(ns),
                name,
                &json!({"status": status}),
                Subresource::Status,
            )
            .await?;
    }
    let pending = pods.values().flatten();
    let avail = podstate::next_available_in(pending, min_ready, now);
    Ok(match (deadline, avail) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

async fn event_scaled(ctx: &Ctx, d: &Value, rs: &Value, from: i32, to: i32) {
    let dir = if to > from { "up" } else { "down" };
    let msg = format!(
        "Scaled {dir} replica set {} from {from} to {to}",
        meta_str(rs, "name").unwrap_or("")
    );
    ctx.recorder
        .record(d, "Normal", "ScalingReplicaSet", &msg)
        .await;
}

#[cfg(test)]
#[path = "deployment_tests.rs"]
mod tests;
