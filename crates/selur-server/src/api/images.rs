//! `POST /apis/images.selur.io/v1/resolve`: resolving an image reference
//! through the server's registry settings into the image catalog (whose
//! reconcile loop is [`crate::controllers::catalog`]).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::controllers::catalog::{image_kind, object_name, SOURCE};
use crate::registry::{Registry, Subresource};
use crate::status::{ApiError, ApiResult};

/// `POST /apis/images.selur.io/v1/resolve?ref=NAME`: resolve a reference through
/// the server's registry settings (manifest and config only, no layers) and
/// record it in the catalog, so the scheduler and policy can reason about an
/// image before any node pulls it. Returns the Image.
pub async fn resolve(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<crate::api::ApiState>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match resolve_into_catalog(
        &state.registry,
        &state.registries,
        q.get("ref").map(String::as_str),
    )
    .await
    {
        Ok(v) => (axum::http::StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn resolve_into_catalog(
    reg: &Registry,
    settings: &selur_registry::registries::RegistrySettings,
    reference: Option<&str>,
) -> ApiResult<Value> {
    let reference = reference
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad_request("give the image reference as ?ref=NAME"))?;
    let name = selur_registry::reference::normalize(reference)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (digest, manifest, config) = selur_registry::resolve_remote(settings, reference)
        .await
        .map_err(|e| {
            ApiError::new(
                502,
                "RegistryError",
                format!("cannot resolve {reference}: {e}"),
            )
        })?;
    let layers: Vec<Value> = manifest
        .layers()
        .iter()
        .map(|l| json!({"digest": l.digest().to_string(), "size": l.size(), "mediaType": l.media_type().to_string()}))
        .collect();
    let size: u64 =
        manifest.config().size() + manifest.layers().iter().map(|l| l.size()).sum::<u64>();
    let cfg = config.config().clone().unwrap_or_default();
    let mut spec =
        json!({"digest": digest.to_string(), "names": [name], "layers": layers, "sizeBytes": size});
    if let Some(l) = cfg.labels().clone().filter(|l| !l.is_empty()) {
        spec["labels"] = json!(l);
    }
    if let Some(u) = cfg.user().clone().filter(|u| !u.is_empty()) {
        spec["user"] = json!(u);
    }
    if let Some(e) = cfg.entrypoint().clone() {
        spec["entrypoint"] = json!(e);
    }
    let kind = image_kind()?;
    let obj_name = object_name(digest.as_str());
    match reg.get(kind, None, &obj_name).await {
        Ok(existing) => {
            let mut names: BTreeSet<String> = existing
                .pointer("/spec/names")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(String::from))
                .collect();
            names.insert(name);
            let patch = json!({"spec": {"names": names}});
            reg.merge(kind, None, &obj_name, &patch, Subresource::Main)
                .await
        }
        Err(e) if e.code == 404 => {
            let obj = json!({"apiVersion": "images.selur.io/v1", "kind": "Image",
                "metadata": {"name": obj_name, "annotations": {SOURCE: "registry"}}, "spec": spec});
            reg.create(kind, None, obj, false).await
        }
        Err(e) => Err(e),
    }
}
