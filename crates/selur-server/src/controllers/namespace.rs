//! Namespace lifecycle: a namespace being deleted is emptied (everything in it
//! is deleted), and removed once nothing is left.

use serde_json::Value;

use selur_api::kinds::KINDS;
use selur_store::{Event, EventType};

use crate::registry::{decode_kv, ns_kind, prefix, DeleteOptions, Registry};
use crate::status::ApiResult;

/// Namespaces being deleted, or deletions that may have emptied one.
pub fn relevant(ev: &Event) -> bool {
    ev.event_type == EventType::Delete
        || (ev.kv.key.starts_with(&prefix(ns_kind(), None))
            && ev
                .kv
                .value
                .windows(19)
                .any(|w| w == b"\"deletionTimestamp\""))
}

/// One pass: empty and finalize every terminating namespace.
pub async fn pass(reg: Registry) -> ApiResult<()> {
    let (namespaces, _) = reg.list_all(&prefix(ns_kind(), None)).await?;
    for kv in namespaces {
        let ns = decode_kv(&kv)?;
        if ns.pointer("/metadata/deletionTimestamp").is_none() {
            continue;
        }
        let name = ns
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut remaining = 0usize;
        for kind in KINDS.iter().filter(|k| k.namespaced) {
            let (items, _) = reg.list_all(&prefix(kind, Some(&name))).await?;
            for item in items {
                remaining += 1;
                let obj = decode_kv(&item)?;
                if obj.pointer("/metadata/deletionTimestamp").is_some() {
                    continue;
                }
                let n = obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                match reg
                    .delete(kind, Some(&name), n, &DeleteOptions::default())
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if remaining == 0 {
            tracing::info!(namespace = %name, "namespace emptied; removing it");
            reg.remove_at(&kv.key, kv.mod_revision).await?;
        }
    }
    Ok(())
}
