//! ResourceQuota admission: the charger that counts a create against every
//! quota of its namespace and writes the new `status.used` in the object's
//! own store transaction (compared on the quota's revision, so two creates
//! racing for the last slot cannot both commit: the loser's transaction fails
//! and the registry runs its admission again against the new usage), and
//! LimitRange defaulting ([`limitrange`]). Releases (deletes, finished pods)
//! are left to the quota controller, which recomputes `status.used` from the
//! objects as Kubernetes' resourcequota controller does.
//!
//! Not done: quota scopes and `scopeSelector`, updates that change a pod's
//! resources (pod resources are immutable here).

pub mod limitrange;
pub mod usage;

use std::sync::Arc;

use selur_api::kinds::{ResourceKind, KINDS};
use selur_api::TypedObject;
use selur_store::{Compare, KeyValue, Op, Store};
use serde_json::Value;

use crate::admission::{AdmissionRequest, Charge, Operation, QuotaCharger};
use crate::registry::prefix;
use crate::status::{ApiError, ApiResult};
use usage::{exceeded, mask, parse_list, pretty, to_json, ResourceList};

/// The ResourceQuota kind.
pub fn quota_kind() -> ApiResult<&'static ResourceKind> {
    KINDS
        .iter()
        .find(|k| k.group.is_empty() && k.plural == "resourcequotas")
        .ok_or_else(|| ApiError::internal("kind resourcequotas missing"))
}

/// What the objects of `kind` in `namespace` cost together.
pub async fn namespace_usage(
    store: &dyn Store,
    kind: &ResourceKind,
    namespace: &str,
) -> ApiResult<ResourceList> {
    let items = store
        .list(&prefix(kind, Some(namespace)), None, 0)
        .await?
        .items;
    let mut total = ResourceList::new();
    for kv in items {
        let Ok(obj) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        for (r, q) in usage::usage(kind, &obj) {
            let e = total.entry(r).or_default();
            *e = e.checked_add(&q).unwrap_or(*e);
        }
    }
    Ok(total)
}

/// The resources of `hard` that objects of `kind` are counted in.
pub fn tracked_for(hard: &ResourceList, kind: &ResourceKind) -> Vec<String> {
    hard.keys()
        .filter(|r| usage::kind_of_resource(r) == Some(kind))
        .cloned()
        .collect()
}

/// The quota's object with `status.hard` mirroring `spec.hard` and `status.used` = `used`.
pub fn with_status(quota: &Value, hard: &ResourceList, used: &ResourceList) -> Value {
    let mut q = quota.clone();
    q["status"] = serde_json::json!({"hard": to_json(hard), "used": to_json(used)});
    if let Some(m) = q.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    q
}

/// The ResourceQuota charger.
pub struct ResourceQuotas {
    store: Arc<dyn Store>,
}

impl ResourceQuotas {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    async fn charge_one(
        &self,
        kind: &'static ResourceKind,
        namespace: &str,
        obj: &Value,
        kv: &KeyValue,
    ) -> ApiResult<Option<(Compare, Op)>> {
        let quota: Value = serde_json::from_slice(&kv.value)
            .map_err(|e| ApiError::internal(format!("corrupt quota at {}: {e}", kv.key)))?;
        let qname = quota
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let hard = parse_list(quota.pointer("/spec/hard"));
        let tracked = tracked_for(&hard, kind);
        if tracked.is_empty() {
            return Ok(None);
        }
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let forbidden = |msg: String| {
            ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: {msg}",
                kind.qualified_plural()
            ))
        };
        if kind.group.is_empty() && kind.plural == "pods" {
            usage::pod_constraints(&tracked, obj)
                .map_err(|e| forbidden(format!("failed quota: {qname}: {e}")))?;
        }
        let requested: ResourceList = mask(&usage::usage(kind, obj), &tracked)
            .into_iter()
            .filter(|(_, q)| *q != Default::default())
            .collect();
        if requested.is_empty() {
            return Ok(None);
        }
        let mut used = parse_list(quota.pointer("/status/used"));
        if tracked.iter().any(|r| !used.contains_key(r)) {
            // Not counted yet (a new quota): count now. A concurrent charge
            // writes the quota, so this charge's compare fails and it recounts.
            let counted = namespace_usage(self.store.as_ref(), kind, namespace).await?;
            for r in &tracked {
                used.entry(r.clone())
                    .or_insert_with(|| counted.get(r).copied().unwrap_or_default());
            }
        }
        let over = exceeded(&hard, &used, &requested);
        if !over.is_empty() {
            return Err(forbidden(format!(
                "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                pretty(&mask(&requested, &over)),
                pretty(&mask(&used, &over)),
                pretty(&mask(&hard, &over)),
            )));
        }
        for (r, q) in &requested {
            let e = used.entry(r.clone()).or_default();
            *e = e.checked_add(q).unwrap_or(*e);
        }
        let updated = with_status(&quota, &hard, &used);
        let bytes = serde_json::to_vec(&updated).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Some((
            Compare::at(kv.key.clone(), kv.mod_revision),
            Op::Put {
                key: kv.key.clone(),
                value: bytes,
            },
        )))
    }
}

#[async_trait::async_trait]
impl QuotaCharger for ResourceQuotas {
    async fn charge(&self, req: &AdmissionRequest<'_>, obj: &TypedObject) -> ApiResult<Charge> {
        let mut charge = Charge::default();
        let (Operation::Create, Some(ns)) = (req.operation, req.namespace) else {
            return Ok(charge);
        };
        if !req.kind.namespaced {
            return Ok(charge);
        }
        let quotas = self
            .store
            .list(&prefix(quota_kind()?, Some(ns)), None, 0)
            .await?
            .items;
        if quotas.is_empty() {
            return Ok(charge);
        }
        let value = obj
            .to_value()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        for kv in &quotas {
            if let Some((c, op)) = self.charge_one(req.kind, ns, &value, kv).await? {
                charge.compares.push(c);
                charge.ops.push(op);
            }
        }
        Ok(charge)
    }
}
