//! Deletes: finalizers, propagation policies and pods' graceful deletion.

use serde_json::{json, Value};

use selur_api::kinds::{self, ResourceKind};
use selur_store::{Compare, Revision, Txn};

use super::{key, meta_mut, meta_str, serialize, Registry};
use crate::clock::rfc3339;
use crate::status::{ApiError, ApiResult};

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `Background` (default), `Foreground` or `Orphan`.
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
    /// `gracePeriodSeconds`: `None` is the object's own (a pod's
    /// `spec.terminationGracePeriodSeconds`); `Some(0)` deletes at once.
    pub grace_period_seconds: Option<i64>,
}

/// The grace period of a pod without `spec.terminationGracePeriodSeconds`.
pub const DEFAULT_POD_GRACE_SECONDS: i64 = 30;

/// What deleting a pod does (Kubernetes' pod `CheckGracefulDelete`, plus
/// PodGC's rule for pods whose node is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodGrace {
    /// Remove it now (still held by finalizers, if it has any).
    Remove,
    /// Mark it terminating (`deletionTimestamp` = now + grace) and let its
    /// node stop the containers and confirm with a grace-0 delete.
    Mark { grace: i64 },
}

/// The grace decision for deleting `pod` with the requested grace period
/// (`None` = the pod's own), given whether its node object exists.
pub fn pod_grace(pod: &Value, requested: Option<i64>, node_exists: bool) -> PodGrace {
    let mut grace = requested.unwrap_or_else(|| {
        pod.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_POD_GRACE_SECONDS)
    });
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if node.is_none() || finished || !node_exists {
        grace = 0;
    }
    if grace < 0 {
        grace = 1;
    }
    match grace {
        0 => PodGrace::Remove,
        grace => PodGrace::Mark { grace },
    }
}

fn is_pod(kind: &ResourceKind) -> bool {
    kind.kind == "Pod" && kind.group.is_empty()
}

/// What a delete did.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// Gone from the store; the last state.
    Gone(Value),
    /// Marked with `deletionTimestamp`; finalizers still pending.
    Pending(Value),
}

impl Registry {
    /// Delete an object. With finalizers (or Foreground/Orphan propagation, which
    /// add the `foregroundDeletion`/`orphan` finalizers the garbage collector
    /// acts on) it is only marked; otherwise it is removed and the garbage
    /// collector deletes its dependents in the background.
    pub async fn delete(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        // Without preconditions a delete is not a read-modify-write: a
        // concurrent update (a status report) must not make it fail.
        let unconditional =
            opts.precondition_uid.is_none() && opts.precondition_resource_version.is_none();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.delete_once(kind, namespace, name, opts).await {
                Err(e)
                    if e.code == 409 && e.reason == "Conflict" && unconditional && attempt < 5 =>
                {
                    continue
                }
                other => return other,
            }
        }
    }

    async fn delete_once(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        let (mut obj, rev) = self.get_kv(kind, namespace, name).await?;
        if let Some(uid) = &opts.precondition_uid {
            if meta_str(&obj, "uid") != Some(uid.as_str()) {
                return Err(ApiError::conflict(
                    kind,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&obj, "uid").unwrap_or("")
                    ),
                ));
            }
        }
        if let Some(want) = &opts.precondition_resource_version {
            if *want != rev.to_string() {
                return Err(ApiError::conflict(
                    kind,
                    name,
                    &format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rev}"),
                ));
            }
        }
        let mut finalizers: Vec<String> = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let extra = match opts.propagation_policy.as_deref() {
            None | Some("Background") => None,
            Some("Foreground") => Some("foregroundDeletion"),
            Some("Orphan") => Some("orphan"),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy {other:?} is not supported: use Background, Foreground or Orphan"
                )))
            }
        };
        if let Some(f) = extra {
            if !finalizers.iter().any(|x| x == f) {
                finalizers.push(f.to_string());
            }
        }
        let k = key(kind, namespace, name);
        if is_pod(kind) {
            let node_exists = match obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                Some(node) => match kinds::by_api_version_kind("v1", "Node") {
                    Some(nk) => self.store.get(&key(nk, None, node)).await?.is_some(),
                    None => false,
                },
                None => false,
            };
            let grace = match pod_grace(&obj, opts.grace_period_seconds, node_exists) {
                PodGrace::Remove => 0,
                PodGrace::Mark { grace } => grace,
            };
            let marked = obj
                .pointer("/metadata/deletionTimestamp")
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc));
            let old_grace = obj
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            let write = match (marked, old_grace) {
                // Terminating: a delete may only shorten the grace period.
                (Some(at), Some(old)) if old > 0 => {
                    if grace >= old {
                        return Ok(Deleted::Pending(obj));
                    }
                    let at = at - chrono::Duration::seconds(old) + chrono::Duration::seconds(grace);
                    let m = meta_mut(&mut obj)?;
                    m.insert("deletionTimestamp".into(), json!(rfc3339(at)));
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    m.remove("resourceVersion");
                    // Shortened to 0 with no finalizer left: removed below.
                    grace > 0 || !finalizers.is_empty()
                }
                // Already at grace 0 (held by finalizers): as any other kind.
                (Some(_), _) => false,
                (None, _) if grace > 0 => {
                    let at = self.clock.now() + chrono::Duration::seconds(grace);
                    let m = meta_mut(&mut obj)?;
                    m.insert("deletionTimestamp".into(), json!(rfc3339(at)));
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    if !finalizers.is_empty() {
                        m.insert("finalizers".into(), json!(finalizers));
                    }
                    m.remove("resourceVersion");
                    true
                }
                (None, _) => false,
            };
            if write {
                return self
                    .write_pending(kind, name, &k, rev, obj, opts.dry_run)
                    .await;
            }
        }
        // Namespaces empty themselves first (the namespace controller finalizes them).
        let is_namespace = kind.kind == "Namespace" && kind.group.is_empty();
        if finalizers.is_empty() && !is_namespace {
            if opts.dry_run {
                return Ok(Deleted::Gone(obj));
            }
            let mut txn = Txn::new().when(Compare::at(k.clone(), rev));
            // Free its allocations (a Service's clusterIP, nodePorts) with it.
            txn.ops.extend(self.admission.release(kind, &obj));
            let resp = self.store.txn(txn.delete(k)).await?;
            if !resp.succeeded {
                return Err(ApiError::stale(kind, name));
            }
            return Ok(Deleted::Gone(obj));
        }
        if obj.pointer("/metadata/deletionTimestamp").is_some() && extra.is_none() {
            return Ok(Deleted::Pending(obj));
        }
        {
            let m = meta_mut(&mut obj)?;
            m.entry("deletionTimestamp")
                .or_insert_with(|| json!(rfc3339(self.clock.now())));
            m.entry("deletionGracePeriodSeconds").or_insert(json!(0));
            if !finalizers.is_empty() {
                m.insert("finalizers".into(), json!(finalizers));
            }
            let g = m.get("generation").and_then(Value::as_i64).unwrap_or(0);
            m.insert("generation".into(), json!(g + 1));
            m.remove("resourceVersion");
        }
        if is_namespace {
            obj["status"]["phase"] = json!("Terminating");
        }
        self.write_pending(kind, name, &k, rev, obj, opts.dry_run)
            .await
    }

    /// Store an object marked for deletion (it stays until its node or its
    /// finalizers let it go), if it is still at `rev`.
    async fn write_pending(
        &self,
        kind: &'static ResourceKind,
        name: &str,
        k: &str,
        rev: Revision,
        mut obj: Value,
        dry_run: bool,
    ) -> ApiResult<Deleted> {
        if dry_run {
            return Ok(Deleted::Pending(obj));
        }
        let resp = self
            .store
            .txn(
                Txn::new()
                    .when(Compare::at(k, rev))
                    .put(k, serialize(&obj)?),
            )
            .await?;
        if !resp.succeeded {
            return Err(ApiError::stale(kind, name));
        }
        obj["metadata"]["resourceVersion"] = json!(resp.revision.to_string());
        Ok(Deleted::Pending(obj))
    }

    /// Remove an object outright if it is still at `rev` (controllers finishing a delete).
    pub async fn remove_at(&self, key: &str, rev: Revision) -> ApiResult<bool> {
        let resp = self
            .store
            .txn(Txn::new().when(Compare::at(key, rev)).delete(key))
            .await?;
        Ok(resp.succeeded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::test_support::{add_node, add_pod, bound, grace, pod_kind, registry};
    use crate::registry::Subresource;

    #[test]
    fn grace_comes_from_the_request_then_the_pod_then_30() {
        let p = bound("n1", "Running", Some(5));
        assert_eq!(pod_grace(&p, Some(7), true), PodGrace::Mark { grace: 7 });
        assert_eq!(pod_grace(&p, None, true), PodGrace::Mark { grace: 5 });
        let p = bound("n1", "Running", None);
        assert_eq!(pod_grace(&p, None, true), PodGrace::Mark { grace: 30 });
        assert_eq!(pod_grace(&p, Some(-3), true), PodGrace::Mark { grace: 1 });
    }

    #[test]
    fn grace_zero_unbound_finished_or_nodeless_pods_are_removed() {
        let p = bound("n1", "Running", Some(5));
        assert_eq!(pod_grace(&p, Some(0), true), PodGrace::Remove);
        assert_eq!(pod_grace(&p, None, false), PodGrace::Remove);
        assert_eq!(
            pod_grace(&bound("", "Pending", None), None, true),
            PodGrace::Remove
        );
        let mut unbound = bound("n1", "Pending", None);
        unbound["spec"]
            .as_object_mut()
            .map(|s| s.remove("nodeName"));
        assert_eq!(pod_grace(&unbound, Some(10), true), PodGrace::Remove);
        for phase in ["Succeeded", "Failed"] {
            assert_eq!(
                pod_grace(&bound("n1", phase, None), None, true),
                PodGrace::Remove
            );
        }
        let zero_own = bound("n1", "Running", Some(0));
        assert_eq!(pod_grace(&zero_own, None, true), PodGrace::Remove);
    }

    #[tokio::test]
    async fn graceful_delete_marks_shortens_and_is_confirmed_by_uid() {
        let (_d, reg, _clock) = registry().await;
        add_node(&reg, "n1").await;
        let created = add_pod(&reg, "p", "n1", &[]).await;
        let gen = created["metadata"]["generation"].clone();
        let Deleted::Pending(marked) = reg
            .delete(pod_kind(), Some("default"), "p", &grace(None))
            .await
            .expect("delete")
        else {
            panic!("a bound pod must be marked, not removed");
        };
        assert_eq!(
            marked["metadata"]["deletionTimestamp"],
            "2024-01-01T00:00:20Z"
        );
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 20);
        assert_eq!(marked["metadata"]["generation"], gen);
        let stored = reg
            .get(pod_kind(), Some("default"), "p")
            .await
            .expect("get");
        assert_eq!(stored["metadata"]["deletionGracePeriodSeconds"], 20);
        // Same or longer: no-op.
        for g in [None, Some(20), Some(60)] {
            let Deleted::Pending(v) = reg
                .delete(pod_kind(), Some("default"), "p", &grace(g))
                .await
                .expect("repeat")
            else {
                panic!("repeat delete removed the pod");
            };
            assert_eq!(
                v["metadata"]["resourceVersion"],
                stored["metadata"]["resourceVersion"]
            );
            assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 20);
        }
        // Shorter: both shortened.
        let Deleted::Pending(v) = reg
            .delete(pod_kind(), Some("default"), "p", &grace(Some(5)))
            .await
            .expect("shorten")
        else {
            panic!("shortening removed the pod");
        };
        assert_eq!(v["metadata"]["deletionTimestamp"], "2024-01-01T00:00:05Z");
        assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 5);
        // The node's confirmation with a wrong uid is refused; the right one removes it.
        let mut confirm = grace(Some(0));
        confirm.precondition_uid = Some("wrong".into());
        let e = reg
            .delete(pod_kind(), Some("default"), "p", &confirm)
            .await
            .expect_err("wrong uid");
        assert_eq!(e.code, 409);
        confirm.precondition_uid = created["metadata"]["uid"].as_str().map(String::from);
        assert!(matches!(
            reg.delete(pod_kind(), Some("default"), "p", &confirm).await,
            Ok(Deleted::Gone(_))
        ));
        assert!(reg.get(pod_kind(), Some("default"), "p").await.is_err());
    }

    #[tokio::test]
    async fn pods_without_a_node_or_on_a_missing_node_go_at_once() {
        let (_d, reg, _clock) = registry().await;
        add_pod(&reg, "unbound", "", &[]).await;
        add_pod(&reg, "orphan", "gone-node", &[]).await;
        for name in ["unbound", "orphan"] {
            assert!(matches!(
                reg.delete(pod_kind(), Some("default"), name, &grace(None))
                    .await,
                Ok(Deleted::Gone(_))
            ));
        }
    }

    #[tokio::test]
    async fn finalizers_hold_a_confirmed_pod() {
        let (_d, reg, _clock) = registry().await;
        add_node(&reg, "n1").await;
        add_pod(&reg, "p", "n1", &["example.com/hold"]).await;
        let Ok(Deleted::Pending(_)) = reg
            .delete(pod_kind(), Some("default"), "p", &grace(None))
            .await
        else {
            panic!("graceful delete");
        };
        let Ok(Deleted::Pending(v)) = reg
            .delete(pod_kind(), Some("default"), "p", &grace(Some(0)))
            .await
        else {
            panic!("a finalizer must hold the pod");
        };
        assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 0);
        let mut v = reg
            .get(pod_kind(), Some("default"), "p")
            .await
            .expect("get");
        assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 0);
        v["metadata"]["finalizers"] = json!([]);
        reg.update(
            pod_kind(),
            Some("default"),
            "p",
            v,
            Subresource::Main,
            false,
        )
        .await
        .expect("drop finalizer");
        assert!(reg.get(pod_kind(), Some("default"), "p").await.is_err());
    }
}
