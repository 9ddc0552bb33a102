//! The garbage collector: owner references with cascading deletion.
//!
//! * Background (default): an object all of whose owners are gone is deleted.
//! * Foreground: an owner carrying the `foregroundDeletion` finalizer has its
//!   dependents deleted first; the finalizer is removed once none remain.
//! * Orphan: an owner carrying the `orphan` finalizer has its uid removed from
//!   its dependents' owner references, then the finalizer is removed.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use selur_store::{Event, EventType, KeyValue};

use crate::registry::{decode_kv, kind_of_key, DeleteOptions, Registry, ROOT};
use crate::status::ApiResult;

/// A change the collector may have to act on.
pub fn relevant(ev: &Event) -> bool {
    match ev.event_type {
        EventType::Delete => true,
        EventType::Put => {
            let v = &ev.kv.value;
            // Cheap byte checks avoid parsing every object on every write.
            contains(v, b"\"deletionTimestamp\"")
                || (ev.prev.is_none() && contains(v, b"\"ownerReferences\""))
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

struct Obj {
    kv: KeyValue,
    value: Value,
}

impl Obj {
    fn uid(&self) -> &str {
        self.value
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    fn owner_uids(&self) -> Vec<String> {
        self.value
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|o| o.get("uid")?.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
    fn has_finalizer(&self, f: &str) -> bool {
        self.value
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == f))
    }
    fn deleting(&self) -> bool {
        self.value.pointer("/metadata/deletionTimestamp").is_some()
    }
}

fn remove_finalizer(v: &mut Value, f: &str) {
    if let Some(a) = v
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        a.retain(|x| x != f);
    }
}

async fn delete_obj(reg: &Registry, o: &Obj) -> ApiResult<()> {
    let Some(kind) = kind_of_key(&o.kv.key) else {
        return Ok(());
    };
    let ns = o
        .value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    let name = o
        .value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    match reg.delete(kind, ns, name, &DeleteOptions::default()).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// One collection pass over the whole store.
pub async fn pass(reg: Registry) -> ApiResult<()> {
    let (items, _) = reg.list_all(ROOT).await?;
    let mut objs = Vec::with_capacity(items.len());
    for kv in items {
        let value = decode_kv(&kv)?;
        objs.push(Obj { kv, value });
    }
    let uids: HashSet<&str> = objs.iter().map(Obj::uid).collect();
    let mut dependents: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, o) in objs.iter().enumerate() {
        for u in o.owner_uids() {
            dependents.entry(u).or_default().push(i);
        }
    }
    let mut acted = HashSet::new();
    for o in objs.iter().filter(|o| o.deleting()) {
        let deps = dependents.get(o.uid()).cloned().unwrap_or_default();
        if o.has_finalizer("orphan") {
            for &d in &deps {
                let dep = &objs[d];
                let mut v = dep.value.clone();
                if let Some(refs) = v
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(o.uid()));
                }
                reg.write_back(&dep.kv.key, dep.kv.mod_revision, &v).await?;
                acted.insert(d);
            }
            let mut v = o.value.clone();
            remove_finalizer(&mut v, "orphan");
            reg.write_back(&o.kv.key, o.kv.mod_revision, &v).await?;
        } else if o.has_finalizer("foregroundDeletion") {
            if deps.is_empty() {
                let mut v = o.value.clone();
                remove_finalizer(&mut v, "foregroundDeletion");
                reg.write_back(&o.kv.key, o.kv.mod_revision, &v).await?;
            } else {
                for &d in &deps {
                    delete_obj(&reg, &objs[d]).await?;
                    acted.insert(d);
                }
            }
        }
    }
    for (i, o) in objs.iter().enumerate() {
        if acted.contains(&i) {
            continue;
        }
        let owners = o.owner_uids();
        if !owners.is_empty() && owners.iter().all(|u| !uids.contains(u.as_str())) && !o.deleting()
        {
            tracing::debug!(key = %o.kv.key, "garbage collecting object whose owners are gone");
            delete_obj(&reg, o).await?;
        }
    }
    Ok(())
}
