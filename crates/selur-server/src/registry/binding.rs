//! The `binding` subresource: placing a pod on a node.

use serde_json::{json, Value};

use selur_api::kinds::ResourceKind;
use selur_store::Revision;

use super::{key, Registry};
use crate::status::{ApiError, ApiResult};

impl Registry {
    /// Bind a pod to a node (the `binding` subresource): sets the otherwise
    /// immutable `spec.nodeName` and the PodScheduled condition, only if the pod
    /// is still at `rev`.
    #[allow(clippy::too_many_arguments)]
    pub async fn bind_node(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        name: &str,
        rev: Revision,
        mut pod: Value,
        node: &str,
        dry_run: bool,
    ) -> ApiResult<Value> {
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                kind,
                name,
                &format!("pod {name} is being deleted, cannot be assigned to a host (node {node:?}); create a new pod instead"),
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        if !pod.get("status").is_some_and(Value::is_object) {
            pod["status"] = json!({});
        }
        let cond = json!({"type": "PodScheduled", "status": "True",
            "lastTransitionTime": self.now()});
        let conds = pod["status"]
            .as_object_mut()
            .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
        if let Some(Value::Array(list)) = conds {
            list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            list.push(cond);
        }
        if dry_run {
            return Ok(pod);
        }
        let k = key(kind, namespace, name);
        if !self.write_back(&k, rev, &pod).await? {
            return Err(ApiError::stale(kind, name));
        }
        Ok(pod)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::test_support::{add_node, add_pod, grace, pod_kind, registry};

    #[tokio::test]
    async fn a_terminating_pod_cannot_be_bound() {
        let (_d, reg, _clock) = registry().await;
        add_node(&reg, "n1").await;
        add_pod(&reg, "p", "n1", &[]).await;
        reg.delete(pod_kind(), Some("default"), "p", &grace(None))
            .await
            .expect("delete");
        let (pod, rev) = reg
            .get_kv(pod_kind(), Some("default"), "p")
            .await
            .expect("get");
        let mut unbound = pod.clone();
        unbound["spec"]["nodeName"] = json!("");
        let e = reg
            .bind_node(pod_kind(), Some("default"), "p", rev, unbound, "n2", false)
            .await
            .expect_err("bind");
        assert_eq!(e.code, 409);
        assert!(e.message.contains("being deleted"), "{}", e.message);
    }
}
