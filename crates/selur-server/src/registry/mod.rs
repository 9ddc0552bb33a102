//! The generic object registry: create, read, list, update, patch and delete
//! for every kind over the [`Store`], keeping the metadata the server owns
//! (`uid`, `resourceVersion`, `generation`, `creationTimestamp`,
//! `deletionTimestamp`) and running the admission chain.
//!
//! Objects are stored as JSON without `resourceVersion`; it is filled from the
//! key's `mod_revision` on every read, as Kubernetes does over etcd. Store keys
//! are `/registry/<group>/<plural>/[<namespace>/]<name>`.

mod binding;
mod deletes;
mod keys;
mod reads;
mod writes;

#[cfg(test)]
mod test_support;

pub use deletes::{pod_grace, DeleteOptions, Deleted, PodGrace, DEFAULT_POD_GRACE_SECONDS};
pub use keys::{key, kind_of_key, ns_kind, prefix, ROOT};
pub use reads::{decode_kv, field_selector_fields, meta_str, ListOptions};
pub use writes::{PatchType, Subresource};

use std::sync::Arc;

use serde_json::{json, Map, Value};

use selur_store::Store;

use crate::admission::Admission;
use crate::clock::{rfc3339, Clock};
use crate::status::{ApiError, ApiResult};

fn meta_mut(obj: &mut Value) -> ApiResult<&mut Map<String, Value>> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj.get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| ApiError::bad_request("metadata must be a mapping"))
}

fn without_rv(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    o
}

fn serialize(obj: &Value) -> ApiResult<Vec<u8>> {
    serde_json::to_vec(&without_rv(obj)).map_err(|e| ApiError::internal(e.to_string()))
}

/// The registry over one store.
#[derive(Clone)]
pub struct Registry {
    pub store: Arc<dyn Store>,
    pub admission: Arc<Admission>,
    pub clock: Arc<dyn Clock>,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, admission: Admission, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            admission: Arc::new(admission),
            clock,
        }
    }

    fn now(&self) -> String {
        rfc3339(self.clock.now())
    }
}
