//! Node lifecycle: a node whose Lease (`kube-node-lease/<node>`) has not been
//! renewed within the grace period gets its Ready condition set to Unknown and
//! the `node.kubernetes.io/unreachable:NoSchedule` taint; both are cleared when
//! the heartbeats return. (Evicting pods from lost nodes comes later.)

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use selur_api::kinds;
use selur_store::Event;

use crate::clock::rfc3339;
use crate::registry::{decode_kv, prefix, Registry, Subresource};
use crate::status::{ApiError, ApiResult};

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Leases and nodes are what this controller looks at.
pub fn relevant(ev: &Event) -> bool {
    ev.kv
        .key
        .starts_with("/registry/coordination.k8s.io/leases/kube-node-lease/")
        || ev.kv.key.starts_with("/registry/core/nodes/")
}

fn ready_status(node: &Value) -> Option<&str> {
    node.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str())
}

fn has_unreachable_taint(node: &Value) -> bool {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .is_some_and(|ts| ts.iter().any(|t| t["key"] == UNREACHABLE))
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn kind(name: &str) -> ApiResult<&'static kinds::ResourceKind> {
    kinds::by_cli_name(name).ok_or_else(|| ApiError::internal(format!("kind {name} missing")))
}

/// One pass over all nodes.
pub async fn pass(reg: Registry, grace: Duration) -> ApiResult<()> {
    let now = reg.clock.now();
    let lease_kind = kind("leases")?;
    let node_kind = kind("nodes")?;
    let (leases, _) = reg
        .list_all(&prefix(lease_kind, Some("kube-node-lease")))
        .await?;
    let mut renewed: HashMap<String, DateTime<Utc>> = HashMap::new();
    for kv in &leases {
        let l = decode_kv(kv)?;
        if let (Some(n), Some(t)) = (
            l.pointer("/metadata/name").and_then(Value::as_str),
            l.pointer("/spec/renewTime")
                .and_then(Value::as_str)
                .and_then(parse_time),
        ) {
            renewed.insert(n.to_string(), t);
        }
    }
    let (nodes, _) = reg.list_all(&prefix(node_kind, None)).await?;
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::seconds(40));
    for kv in &nodes {
        let node = decode_kv(kv)?;
        let name = node
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let since = renewed.get(&name).copied().or_else(|| {
            node.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(parse_time)
        });
        let fresh = since.is_some_and(|t| now - t <= grace);
        let tainted = has_unreachable_taint(&node);
        let ready = ready_status(&node).unwrap_or("Unknown").to_string();
        let mut taints: Vec<Value> = node
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let (want_taint, want_ready, reason, message) = if fresh {
            (
                false,
                if ready == "Unknown" {
                    "True".to_string()
                } else {
                    ready.clone()
                },
                "KubeletReady",
                "heartbeats resumed",
            )
        } else {
            (
                true,
                "Unknown".to_string(),
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
            )
        };
        if want_taint != tainted {
            if want_taint {
                taints.push(
                    json!({"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": rfc3339(now)}),
                );
                tracing::warn!(node = %name, "node heartbeats stopped; marking Ready=Unknown and tainting unreachable");
            } else {
                taints.retain(|t| t["key"] != UNREACHABLE);
                tracing::info!(node = %name, "node heartbeats returned; clearing unreachable");
            }
            let patch = json!({"spec": {"taints": taints}});
            reg.merge(node_kind, None, &name, &patch, Subresource::Main)
                .await?;
        }
        if want_ready != ready {
            let mut conds: Vec<Value> = node
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            conds.retain(|c| c["type"] != "Ready");
            let last_heartbeat = since.map(rfc3339).unwrap_or_default();
            conds.push(
                json!({"type": "Ready", "status": want_ready, "reason": reason, "message": message,
                "lastHeartbeatTime": last_heartbeat, "lastTransitionTime": rfc3339(now)}),
            );
            let patch = json!({"status": {"conditions": conds}});
            reg.merge(node_kind, None, &name, &patch, Subresource::Status)
                .await?;
        }
    }
    Ok(())
}
