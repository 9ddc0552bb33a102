//! The Deployment controller's ReplicaSets: template hashes, the planner's
//! view of a ReplicaSet, creating the one for the current template.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::deployment::{annotation, int, Ctx, CHANGE_CAUSE, DESIRED, HASH_LABEL, MAX, REVISION};
use super::kind;
use super::podstate::{self, controlled_by};
use super::rollout::Rs;
use crate::registry::{meta_str, Subresource};
use crate::status::{ApiError, ApiResult};

/// Kubernetes' pod-template-hash: FNV-1a of the template (and collision
/// count), its decimal digits mapped onto a vowel-free alphabet.
pub fn template_hash(template: &Value, collisions: i64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u32 = 0x811c_9dc5;
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if collisions > 0 {
        bytes.extend_from_slice(collisions.to_string().as_bytes());
    }
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// A template without the pod-template-hash label (for comparing with the Deployment's).
pub fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove(HASH_LABEL);
    }
    t
}

pub fn view(rs: &Value, pods: Option<&Vec<Value>>, min_ready: i64, now: DateTime<Utc>) -> Rs {
    let pods = pods.map(Vec::as_slice).unwrap_or_default();
    let gen = int(rs, "/metadata/generation");
    Rs {
        name: meta_str(rs, "name").unwrap_or("").to_string(),
        revision: annotation(rs, REVISION).unwrap_or(0),
        created: meta_str(rs, "creationTimestamp").unwrap_or("").to_string(),
        replicas: int(rs, "/spec/replicas") as i32,
        available: pods
            .iter()
            .filter(|p| podstate::is_active(p) && podstate::is_available(p, min_ready, now))
            .count() as i32,
        pods: pods
            .iter()
            .filter(|p| !matches!(podstate::phase(p), "Succeeded" | "Failed"))
            .count() as i32,
        status_replicas: int(rs, "/status/replicas") as i32,
        desired: annotation(rs, DESIRED).map(|v| v as i32),
        max: annotation(rs, MAX).map(|v| v as i32),
        settled: int(rs, "/status/observedGeneration") >= gen,
    }
}

/// Create the ReplicaSet for the Deployment's template; `None` on a hash
/// collision (an existing ReplicaSet of that name with another template),
/// after bumping `status.collisionCount`.
pub async fn create_rs(
    ctx: &Ctx,
    d: &Value,
    replicas: i32,
    revision: i64,
    surge: i32,
) -> ApiResult<Option<Value>> {
    let (ns, name) = (meta_str(d, "namespace"), meta_str(d, "name").unwrap_or(""));
    let collisions = int(d, "/status/collisionCount");
    let hash = template_hash(&d["spec"]["template"], collisions);
    let rs_name = format!("{name}-{hash}");
    let mut template = d["spec"]["template"].clone();
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = d["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let mut annotations = json!({REVISION: revision.to_string(), DESIRED: int(d, "/spec/replicas").to_string(),
        MAX: (int(d, "/spec/replicas") + i64::from(surge)).to_string()});
    if let Some(c) = d
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(CHANGE_CAUSE))
    {
        annotations[CHANGE_CAUSE] = c.clone();
    }
    let body = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": rs_name, "namespace": ns, "labels": template["metadata"]["labels"],
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                "uid": d["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"replicas": replicas, "minReadySeconds": int(d, "/spec/minReadySeconds"),
            "selector": selector, "template": template}});
    let rs_kind = kind("replicasets")?;
    match ctx.reg.create(rs_kind, ns, body, false).await {
        Ok(rs) => Ok(Some(rs)),
        Err(e) if e.code == 409 && e.reason == "AlreadyExists" => {
            let existing = ctx.reg.get(rs_kind, ns, &rs_name).await?;
            let ours = controlled_by(&existing, meta_str(d, "uid").unwrap_or(""));
            if ours && without_hash(&existing["spec"]["template"]) == d["spec"]["template"] {
                return Ok(Some(existing));
            }
            let patch = json!({"status": {"collisionCount": collisions + 1}});
            ctx.reg
                .merge(kind("deployments")?, ns, name, &patch, Subresource::Status)
                .await?;
            Ok(None)
        }
        Err(e) => Err(ApiError::new(
            e.code,
            e.reason,
            format!("creating replica set {rs_name}: {}", e.message),
        )),
    }
}
