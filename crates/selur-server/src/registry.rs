//! The generic object registry: create, read, list, update, patch and delete
//! for every kind over the [`Store`], keeping the metadata the server owns
//! (`uid`, `resourceVersion`, `generation`, `creationTimestamp`,
//! `deletionTimestamp`) and running the admission chain.
//!
//! Objects are stored as JSON without `resourceVersion`; it is filled from the
//! key's `mod_revision` on every read, as Kubernetes does over etcd. Store keys
//! are `/registry/<group>/<plural>/[<namespace>/]<name>`.

use std::sync::Arc;

use base64::Engine;
use rand::Rng;
use serde_json::{json, Map, Value};

use selur_api::decode;
use selur_api::kinds::{self, ResourceKind};
use selur_api::patch;
use selur_api::selector::{FieldSelector, LabelSelector};
use selur_api::TypedObject;
use selur_store::{Compare, KeyValue, Revision, Store, Txn};

use crate::admission::{Admission, AdmissionRequest, Operation};
use crate::clock::{rfc3339, Clock};
use crate::status::{ApiError, ApiResult};

/// Root of every object key.
pub const ROOT: &str = "/registry/";

/// Store key of one object.
pub fn key(kind: &ResourceKind, namespace: Option<&str>, name: &str) -> String {
    match (kind.namespaced, namespace) {
        (true, Some(ns)) => format!("{ROOT}{}/{}/{ns}/{name}", kind.store_group(), kind.plural),
        _ => format!("{ROOT}{}/{}/{name}", kind.store_group(), kind.plural),
    }
}

/// Store prefix of a collection (one namespace, or all).
pub fn prefix(kind: &ResourceKind, namespace: Option<&str>) -> String {
    match (kind.namespaced, namespace) {
        (true, Some(ns)) => format!("{ROOT}{}/{}/{ns}/", kind.store_group(), kind.plural),
        _ => format!("{ROOT}{}/{}/", kind.store_group(), kind.plural),
    }
}

/// The kind a store key belongs to.
pub fn kind_of_key(key: &str) -> Option<&'static ResourceKind> {
    let rest = key.strip_prefix(ROOT)?;
    let mut parts = rest.splitn(3, '/');
    let group = parts.next()?;
    let plural = parts.next()?;
    let group = if group == "core" { "" } else { group };
    kinds::KINDS
        .iter()
        .find(|k| k.group == group && k.plural == plural)
}

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

/// Options of a list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: usize,
    pub continue_token: Option<String>,
}

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

/// Fields a kind can be selected by besides metadata.name/namespace.
pub fn field_selector_fields(kind: &ResourceKind) -> &'static [&'static str] {
    match kind.kind {
        "Pod" => &[
            "spec.nodeName",
            "status.phase",
            "spec.restartPolicy",
            "spec.schedulerName",
            "status.podIP",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.name",
            "involvedObject.namespace",
            "involvedObject.uid",
            "reason",
            "type",
        ],
        "Node" => &["spec.unschedulable"],
        "Namespace" => &["status.phase"],
        "Secret" => &["type"],
        _ => &[],
    }
}

/// Parse a stored value and stamp its `resourceVersion`.
pub fn decode_kv(kv: &KeyValue) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("corrupt object at {}: {e}", kv.key)))?;
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    }
    Ok(v)
}

/// `metadata.<field>` as a string.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn meta_mut(obj: &mut Value) -> ApiResult<&mut Map<String, Value>> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj.get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| ApiError::bad_request("metadata must be a mapping"))
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

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: Revision,
    start: String,
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

    /// One object, with its store revision.
    pub async fn get_kv(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<(Value, Revision)> {
        let kv = self
            .store
            .get(&key(kind, namespace, name))
            .await?
            .ok_or_else(|| ApiError::not_found(kind, name))?;
        Ok((decode_kv(&kv)?, kv.mod_revision))
    }

    pub async fn get(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<Value> {
        Ok(self.get_kv(kind, namespace, name).await?.0)
    }

    /// A `<Kind>List`, filtered by selectors, paginated by `limit`/`continue`.
    pub async fn list(
        &self,
        kind: &'static ResourceKind,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<Value> {
        let labels = LabelSelector::parse(opts.label_selector.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(
            opts.field_selector.as_deref().unwrap_or(""),
            field_selector_fields(kind),
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let pfx = prefix(kind, namespace);
        let mut start = match &opts.continue_token {
            Some(t) => {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t)
                    .map_err(|_| {
                        ApiError::bad_request(
                            "continue token is not valid; start the list again without it",
                        )
                    })?;
                let tok: ContinueToken = serde_json::from_slice(&raw).map_err(|_| {
                    ApiError::bad_request(
                        "continue token is not valid; start the list again without it",
                    )
                })?;
                if !tok.start.starts_with(&pfx) {
                    return Err(ApiError::bad_request(
                        "continue token belongs to another list",
                    ));
                }
                Some(tok.start)
            }
            None => None,
        };
        let mut items = Vec::new();
        let mut revision = None;
        let mut more = false;
        let page = if opts.limit == 0 {
            0
        } else {
            opts.limit.max(50)
        };
        loop {
            let resp = self.store.list(&pfx, start.as_deref(), page).await?;
            revision.get_or_insert(resp.revision);
            let mut last = None;
            for kv in &resp.items {
                last = Some(kv.key.clone());
                let obj = decode_kv(kv)?;
                if labels.matches_object(&obj) && fields.matches(&obj) {
                    items.push(obj);
                    if opts.limit > 0 && items.len() == opts.limit {
                        break;
                    }
                }
            }
            let reached = opts.limit > 0 && items.len() == opts.limit;
            let exhausted_page = last.as_ref() == resp.items.last().map(|k| &k.key);
            start = last;
            if reached {
                more = !exhausted_page || resp.more;
                break;
            }
            if !resp.more {
                break;
            }
        }
        let rv = revision.unwrap_or(0);
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if more {
            if let Some(s) = start {
                let tok = serde_json::to_vec(&ContinueToken { rv, start: s })
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                meta["continue"] =
                    json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tok));
            }
        }
        Ok(json!({
            "kind": format!("{}List", kind.kind),
            "apiVersion": kind.api_version(),
            "metadata": meta,
            "items": items,
        }))
    }

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
            let charge = self.admission.charge(&req, &obj).await?;
            if dry_run {
                return Ok(value);
            }
            let charged = !charge.compares.is_empty();
            txn.compares.extend(charge.compares);
            txn = txn.when(Compare::absent(k.clone()));
            txn.ops.extend(charge.ops);
            txn = txn.put(k.clone(), serialize(&value)?);
            let resp = self.store.txn(txn).await?;
            if resp.succeeded {
                break resp;
            }
            if resp.current.last().cloned().flatten().is_some() {
                return Err(ApiError::already_exists(kind, &name));
            }
            if !charged || attempt >= CHARGE_ATTEMPTS {
                return Err(ApiError::conflict(
                    kind,
                    &name,
                    "the namespace or a quota changed while the object was being created; try again",
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
        let charge = self.admission.charge(&req, &obj).await?;
        if dry_run {
            return Ok(value);
        }
        let mut txn = Txn::new().when(Compare::at(k.clone(), old_rev));
        txn.compares.extend(charge.compares);
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
            let resp = self
                .store
                .txn(Txn::new().when(Compare::at(k.clone(), rev)).delete(k))
                .await?;
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

    /// Write an object back as is (controllers changing metadata such as finalizers or
    /// ownerReferences), with optimistic concurrency on `rev`; deletes it when its last
    /// finalizer went away while it was being deleted.
    pub async fn write_back(&self, key: &str, rev: Revision, obj: &Value) -> ApiResult<bool> {
        let finalized = finalized(obj);
        let txn = Txn::new().when(Compare::at(key, rev));
        let txn = if finalized {
            txn.delete(key)
        } else {
            txn.put(key, serialize(obj)?)
        };
        Ok(self.store.txn(txn).await?.succeeded)
    }

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

    /// Everything under the registry root (controllers' full scans).
    pub async fn list_all(&self, prefix: &str) -> ApiResult<(Vec<KeyValue>, Revision)> {
        let resp = self.store.list(prefix, None, 0).await?;
        Ok((resp.items, resp.revision))
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

/// The Namespace kind.
pub fn ns_kind() -> &'static ResourceKind {
    // The table always holds Namespace; fall back to the first kind only to avoid a panic path.
    kinds::by_api_version_kind("v1", "Namespace").unwrap_or(&kinds::KINDS[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::{DateTime, Utc};
    use selur_store::{SqliteOptions, SqliteStore};

    fn bound(node: &str, phase: &str, own_grace: Option<i64>) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": phase}});
        if let Some(g) = own_grace {
            p["spec"]["terminationGracePeriodSeconds"] = json!(g);
        }
        p
    }

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

    async fn registry() -> (tempfile::TempDir, Registry, Arc<ManualClock>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).expect("store"));
        let start: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().expect("time");
        let clock = Arc::new(ManualClock::new(start));
        let reg = Registry::new(store, Admission::default(), clock.clone());
        reg.ensure_namespace("default").await.expect("namespace");
        (dir, reg, clock)
    }

    fn pod_kind() -> &'static ResourceKind {
        kinds::by_api_version_kind("v1", "Pod").expect("pod kind")
    }

    async fn add_node(reg: &Registry, name: &str) {
        let nk = kinds::by_api_version_kind("v1", "Node").expect("node kind");
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
        reg.create(nk, None, node, false).await.expect("node");
    }

    async fn add_pod(reg: &Registry, name: &str, node: &str, finalizers: &[&str]) -> Value {
        let mut p = bound(node, "Running", Some(20));
        p["metadata"]["name"] = json!(name);
        if !finalizers.is_empty() {
            p["metadata"]["finalizers"] = json!(finalizers);
        }
        reg.create(pod_kind(), Some("default"), p, false)
            .await
            .expect("pod")
    }

    fn grace(opts_grace: Option<i64>) -> DeleteOptions {
        DeleteOptions {
            grace_period_seconds: opts_grace,
            ..Default::default()
        }
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
