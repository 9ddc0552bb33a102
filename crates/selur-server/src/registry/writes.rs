//! Writes: create, update (`PUT`), patch, and the controllers' write-backs.

use rand::Rng;
use serde_json::{json, Value};

use selur_api::decode;
use selur_api::kinds::ResourceKind;
use selur_api::patch;
use selur_api::TypedObject;
use selur_store::{Compare, Revision, Txn};

use super::{decode_kv, key, meta_mut, meta_str, ns_kind, serialize, without_rv, Registry};
use crate::admission::{AdmissionRequest, Operation};
use crate::status::{ApiError, ApiResult};

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// Everything but `status` (for kinds with a status subresource).
    Main,
    /// Only `status`.
    Status,
}

/// The patch formats the API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            _ => None,
        }
    }
}

/// Whether a write leaves an object to be removed: deleted, no finalizer left,
/// and not within a grace period (a terminating pod waits for its node's
/// confirmation however its status or finalizers change), as Kubernetes'
/// `ShouldDeleteDuringUpdate`.
fn finalized(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
        && obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_none_or(|g| g == 0)
        && obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty())
}

/// The object minus what does not count as a change of its desired state.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

/// How often a create is charged again when a quota changed under it.
const CHARGE_ATTEMPTS: usize = 200;

fn generated_suffix() -> String {
    // Kubernetes' alphabet: no vowels, no confusable characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Registry {
    /// Decode a request body as `kind`, refusing a different kind.
    fn decode_as(&self, kind: &'static ResourceKind, body: Value) -> ApiResult<TypedObject> {
        let mut body = body;
        // A body may leave apiVersion/kind out; the URL says what it is.
        if let Some(m) = body.as_object_mut() {
            m.entry("apiVersion")
                .or_insert_with(|| json!(kind.api_version()));
            m.entry("kind").or_insert_with(|| json!(kind.kind));
        }
        let (found, obj) = decode::decode(body).map_err(|e| ApiError::decode(&e))?;
        if found.kind != kind.kind || found.group != kind.group {
            return Err(ApiError::bad_request(format!(
                "the body is a {} ({}) but the request is for {}; send it to {}",
                found.kind,
                found.api_version(),
                kind.qualified_plural(),
                found.collection_path(Some("<namespace>"))
            )));
        }
        Ok(obj)
    }

    /// Check that `namespace` exists and is not terminating; returns its key's revision.
    async fn namespace_guard(&self, namespace: &str) -> ApiResult<(String, Revision)> {
        let ns_kind = ns_kind();
        let k = key(ns_kind, None, namespace);
        let kv = self
            .store
            .get(&k)
            .await?
            .ok_or_else(|| ApiError::not_found(ns_kind, namespace))?;
        let ns = decode_kv(&kv)?;
        if ns.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            )));
        }
        Ok((k, kv.mod_revision))
    }

    /// Create an object (`POST`).
    pub async fn create(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        body: Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let mut obj = self.decode_as(kind, body)?;
        let ns = self.place(kind, namespace, &mut obj)?;
        let generated = obj.metadata().name.as_deref().unwrap_or("").is_empty()
            && obj.metadata().generate_name.is_some();
        if generated {
            let base = obj.metadata().generate_name.clone().unwrap_or_default();
            obj.metadata_mut().name = Some(format!("{base}{}", generated_suffix()));
        }
        {
            let m = obj.metadata_mut();
            m.uid = None;
            m.resource_version = None;
            m.deletion_timestamp = None;
            m.deletion_grace_period_seconds = None;
            m.self_link = None;
            m.managed_fields = None;
            m.creation_timestamp = None;
        }
        let req = AdmissionRequest {
            kind,
            operation: Operation::Create,
            namespace: ns.as_deref(),
            old: None,
            dry_run,
        };
        self.admission.admit(&req, &mut obj).await?;
        let name = obj.metadata().name.clone().unwrap_or_default();
        let mut value = obj
            .to_value()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        {
            let m = meta_mut(&mut value)?;
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(self.now()));
            m.insert("generation".into(), json!(1));
        }
        let k = key(kind, ns.as_deref(), &name);
        // A quota charge compares on the quota's revision: when another write
        // charged it first, charge again against the new usage. Every failed
        // round means another write committed, so this is bounded by progress.
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let mut txn = Txn::new();
            if let Some(ns) = ns.as_deref().filter(|_| kind.namespaced) {
                let (ns_key, ns_rev) = self.namespace_guard(ns).await?;
                // Fails if the namespace is deleted or starts terminating meanwhile.
                txn = txn.when(Compare::at(ns_key, ns_rev));
            }
            // Allocations (a Service's clusterIP, nodePorts) are made afresh
            // on every attempt: a value a concurrent create took is replaced.
            let mut attempt_value = value.clone();
            let alloc = self.admission.allocate(&req, &mut attempt_value).await?;
            let charge = self.admission.charge(&req, &obj).await?;
            if dry_run {
                return Ok(attempt_value);
            }
            let charged = !charge.compares.is_empty() || !alloc.compares.is_empty();
            txn.compares.extend(alloc.compares);
            txn.compares.extend(charge.compares);
            // Last, so a failure on it reads as "already exists" below.
            txn = txn.when(Compare::absent(k.clone()));
            txn.ops.extend(alloc.ops);
            txn.ops.extend(charge.ops);
            txn = txn.put(k.clone(), serialize(&attempt_value)?);
            let resp = self.store.txn(txn).await?;
            if resp.succeeded {
                value = attempt_value;
                break resp;
            }
            if resp.current.last().cloned().flatten().is_some() {
                return Err(ApiError::already_exists(kind, &name));
            }
            if !charged || attempt >= CHARGE_ATTEMPTS {
                return Err(ApiError::conflict(
                    kind,
                    &name,
                    "the namespace, a quota or an allocation changed while the object was being created; try again",
                ));
            }
        };
        value["metadata"]["resourceVersion"] = json!(resp.revision.to_string());
        Ok(value)
    }

    /// Resolve the namespace of a write from the URL and the body; cluster-scoped kinds have none.
    fn place(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        obj: &mut TypedObject,
    ) -> ApiResult<Option<String>> {
        if !kind.namespaced {
            obj.metadata_mut().namespace = None;
            return Ok(None);
        }
        let body_ns = obj.metadata().namespace.clone().filter(|s| !s.is_empty());
        let ns = match (namespace, body_ns) {
            (Some(url), Some(body)) if url != body => {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({body}) does not match the namespace sent on the request ({url})"
                )))
            }
            (Some(url), _) => url.to_string(),
            (None, Some(body)) => body,
            (None, None) => "default".to_string(),
        };
        obj.metadata_mut().namespace = Some(ns.clone());
        Ok(Some(ns))
    }

    /// Replace an object (`PUT`), or its status.
    pub async fn update(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        name: &str,
        body: Value,
        sub: Subresource,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let (old, old_rev) = self.get_kv(kind, namespace, name).await?;
        self.update_from(kind, namespace, name, &old, old_rev, body, sub, dry_run)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn update_from(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        name: &str,
        old: &Value,
        old_rev: Revision,
        body: Value,
        sub: Subresource,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let body_name = meta_str(&body, "name").unwrap_or(name).to_string();
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(rv) = meta_str(&body, "resourceVersion").filter(|s| !s.is_empty()) {
            if rv != old_rev.to_string() {
                return Err(ApiError::stale(kind, name));
            }
        }
        // What the caller may change: status only via /status; with a status
        // subresource, the main resource keeps the stored status.
        let mut merged = match sub {
            Subresource::Status => {
                let mut o = old.clone();
                o["status"] = body.get("status").cloned().unwrap_or(json!({}));
                o
            }
            Subresource::Main => {
                let mut b = body;
                if kind.status {
                    b["status"] = old.get("status").cloned().unwrap_or(json!({}));
                }
                b
            }
        };
        // Server-owned metadata always comes from the stored object.
        {
            let m = meta_mut(&mut merged)?;
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old.get("metadata").and_then(|om| om.get(f)) {
                    Some(v) => m.insert(f.into(), v.clone()),
                    None => m.remove(f),
                };
            }
            m.remove("resourceVersion");
            m.remove("managedFields");
            m.remove("selfLink");
        }
        let old_typed = self.decode_as(kind, old.clone())?;
        let mut obj = self.decode_as(kind, merged)?;
        let ns = self.place(kind, namespace, &mut obj)?;
        let req = AdmissionRequest {
            kind,
            operation: Operation::Update,
            namespace: ns.as_deref(),
            old: Some(&old_typed),
            dry_run,
        };
        self.admission.admit(&req, &mut obj).await?;
        let mut value = obj
            .to_value()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if spec_part(&value) != spec_part(old) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            value["metadata"]["generation"] = json!(g + 1);
        }
        if without_rv(&value) == without_rv(old) {
            // No change: no write, no new resourceVersion (as Kubernetes).
            return Ok(old.clone());
        }
        let k = key(kind, ns.as_deref(), name);
        let finalized = finalized(&value);
        let alloc = if finalized {
            crate::admission::Charge {
                compares: Vec::new(),
                ops: self.admission.release(kind, old),
            }
        } else {
            self.admission.allocate(&req, &mut value).await?
        };
        let charge = self.admission.charge(&req, &obj).await?;
        if dry_run {
            return Ok(value);
        }
        let mut txn = Txn::new().when(Compare::at(k.clone(), old_rev));
        txn.compares.extend(alloc.compares);
        txn.compares.extend(charge.compares);
        txn.ops.extend(alloc.ops);
        txn.ops.extend(charge.ops);
        txn = if finalized {
            txn.delete(k)
        } else {
            txn.put(k, serialize(&value)?)
        };
        let resp = self.store.txn(txn).await?;
        if !resp.succeeded {
            return Err(ApiError::stale(kind, name));
        }
        value["metadata"]["resourceVersion"] = json!(resp.revision.to_string());
        Ok(value)
    }

    /// Patch an object (`PATCH`); retried on a concurrent write unless the patch pins a resourceVersion.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch_body: &Value,
        sub: Subresource,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let pinned = patch_body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .is_some();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (old, old_rev) = self.get_kv(kind, namespace, name).await?;
            let patched = match patch_type {
                PatchType::Json => patch::apply_json_patch(&old, patch_body)
                    .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?,
                PatchType::Merge => patch::apply_merge_patch(&old, patch_body),
                PatchType::StrategicMerge => patch::apply_strategic_merge(&old, patch_body)
                    .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?,
            };
            let mut patched = patched;
            if !pinned {
                if let Some(m) = patched.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
            }
            match self
                .update_from(kind, namespace, name, &old, old_rev, patched, sub, dry_run)
                .await
            {
                Err(e) if e.code == 409 && !pinned && attempts < 5 => continue,
                other => return other,
            }
        }
    }

    /// A JSON merge patch written by a controller (never a dry run).
    pub async fn merge(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
        sub: Subresource,
    ) -> ApiResult<Value> {
        self.patch(kind, namespace, name, PatchType::Merge, patch, sub, false)
            .await
    }

    /// Write an object back as is (controllers changing metadata such as finalizers or
    /// ownerReferences), with optimistic concurrency on `rev`; deletes it when its last
    /// finalizer went away while it was being deleted.
    pub async fn write_back(&self, key: &str, rev: Revision, obj: &Value) -> ApiResult<bool> {
        let finalized = finalized(obj);
        let mut txn = Txn::new().when(Compare::at(key, rev));
        if finalized {
            if let Some(kind) = super::kind_of_key(key) {
                txn.ops.extend(self.admission.release(kind, obj));
            }
        }
        let txn = if finalized {
            txn.delete(key)
        } else {
            txn.put(key, serialize(obj)?)
        };
        Ok(self.store.txn(txn).await?.succeeded)
    }

    /// Make sure a namespace exists (server start).
    pub async fn ensure_namespace(&self, name: &str) -> ApiResult<()> {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match self.create(ns_kind(), None, body, false).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}
