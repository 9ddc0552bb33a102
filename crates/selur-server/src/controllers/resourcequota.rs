//! The ResourceQuota controller: recomputes every quota's `status.used` from
//! the objects in its namespace (so deletes and finished pods release their
//! share) and mirrors `spec.hard` into `status.hard`, as Kubernetes'
//! resourcequota controller does.
//!
//! Exactness: the quotas are read first, the objects after, and the new
//! status is written only if the quota is still at the revision read. Every
//! admitted create writes its quota, so a create that committed in between
//! makes the write fail and the next pass counts it.

use std::collections::BTreeSet;

use selur_store::{Event, EventType};
use serde_json::Value;

use super::contains;
use crate::quota::usage::{self, mask, parse_list, ResourceList};
use crate::quota::{namespace_usage, quota_kind, with_status};
use crate::registry::{prefix, Registry};
use crate::status::ApiResult;

const QUOTA_PREFIX: &str = "/registry/core/resourcequotas/";
const POD_PREFIX: &str = "/registry/core/pods/";

/// Quotas, deletions and pods that finished change what is used.
pub fn relevant(ev: &Event) -> bool {
    let k = &ev.kv.key;
    if k.starts_with(QUOTA_PREFIX) || ev.event_type == EventType::Delete {
        return true;
    }
    k.starts_with(POD_PREFIX)
        && (contains(&ev.kv.value, b"\"Succeeded\"") || contains(&ev.kv.value, b"\"Failed\""))
}

/// One pass over every quota.
pub async fn pass(reg: Registry) -> ApiResult<()> {
    let (quotas, _) = reg.list_all(&prefix(quota_kind()?, None)).await?;
    for kv in quotas {
        let Ok(quota) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let Some(ns) = quota.pointer("/metadata/namespace").and_then(Value::as_str) else {
            continue;
        };
        let hard = parse_list(quota.pointer("/spec/hard"));
        let kinds: BTreeSet<_> = hard
            .keys()
            .filter_map(|r| usage::kind_of_resource(r))
            .map(|k| (k.group, k.plural))
            .collect();
        let mut counted = ResourceList::new();
        for (group, plural) in kinds {
            let Some(kind) = selur_api::kinds::KINDS
                .iter()
                .find(|k| k.group == group && k.plural == plural)
            else {
                continue;
            };
            counted.extend(namespace_usage(reg.store.as_ref(), kind, ns).await?);
        }
        let names: Vec<String> = hard.keys().cloned().collect();
        let used = mask(&counted, &names);
        let updated = with_status(&quota, &hard, &used);
        if updated.get("status") == quota.get("status") {
            continue;
        }
        // A failed compare means a create charged it meanwhile: that write
        // triggers another pass.
        reg.write_back(&kv.key, kv.mod_revision, &updated).await?;
    }
    Ok(())
}
