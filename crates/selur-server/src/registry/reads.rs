//! Reads: one object, a selected and paginated list, a full scan.

use base64::Engine;
use serde_json::{json, Value};

use selur_api::kinds::ResourceKind;
use selur_api::selector::{FieldSelector, LabelSelector};
use selur_store::{KeyValue, Revision};

use super::{key, prefix, Registry};
use crate::status::{ApiError, ApiResult};

/// Options of a list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: usize,
    pub continue_token: Option<String>,
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

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: Revision,
    start: String,
}

impl Registry {
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

    /// Everything under the registry root (controllers' full scans).
    pub async fn list_all(&self, prefix: &str) -> ApiResult<(Vec<KeyValue>, Revision)> {
        let resp = self.store.list(prefix, None, 0).await?;
        Ok((resp.items, resp.revision))
    }
}
