//! The cluster image catalog: one cluster-scoped `Image`
//! (`images.selur.io/v1`, named `sha256-<hex>`) per image manifest any node
//! holds, with its names, layers and sizes, config labels and user (fetched
//! from a node that has it, over its tunnel) and the nodes holding it. Built
//! from the nodes' `status.images`; this controller is the catalog's only
//! writer, so agents never race on it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use selur_api::kinds;
use selur_store::Event;

use crate::registry::{decode_kv, prefix, DeleteOptions, Registry, Subresource};
use crate::status::{ApiError, ApiResult};
use crate::tunnel::Tunnels;

/// Annotation marking catalog entries resolved from a registry (kept with no nodes).
pub const SOURCE: &str = "images.selur.io/source";

pub fn relevant(ev: &Event) -> bool {
    ev.kv.key.starts_with("/registry/core/nodes/")
}

#[derive(Default)]
struct Held {
    names: BTreeSet<String>,
    nodes: BTreeSet<String>,
    size: u64,
}

pub(crate) fn image_kind() -> ApiResult<&'static kinds::ResourceKind> {
    kinds::by_api_version_kind("images.selur.io/v1", "Image")
        .ok_or_else(|| ApiError::internal("Image kind missing"))
}

/// Catalog object name for a digest.
pub fn object_name(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

fn spec_from_inspect(digest: &str, held: &Held, info: Option<&Value>) -> Value {
    let mut spec =
        json!({"digest": digest, "names": held.names, "sizeBytes": held.size, "layers": []});
    if let Some(i) = info {
        spec["layers"] = Value::Array(
            i["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| json!({"digest": l["digest"], "size": l["size"], "mediaType": l["mediaType"]}))
                .collect(),
        );
        if let Some(l) = i
            .get("labels")
            .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        {
            spec["labels"] = l.clone();
        }
        if let Some(u) = i["user"].as_str() {
            spec["user"] = json!(u);
        }
        if let Some(e) = i.get("entrypoint").filter(|e| e.is_array()) {
            spec["entrypoint"] = e.clone();
        }
        if let Some(sz) = i["size"].as_u64() {
            spec["sizeBytes"] = json!(sz);
        }
    }
    spec
}

/// One pass: bring the catalog in line with what nodes report.
pub async fn pass(reg: Registry, tunnels: Tunnels) -> ApiResult<()> {
    let kind = image_kind()?;
    let node_kind =
        kinds::by_cli_name("nodes").ok_or_else(|| ApiError::internal("Node kind missing"))?;
    let (nodes, _) = reg.list_all(&prefix(node_kind, None)).await?;
    let mut held: BTreeMap<String, Held> = BTreeMap::new();
    for kv in &nodes {
        let n = decode_kv(kv)?;
        let node = n["metadata"]["name"].as_str().unwrap_or("").to_string();
        for img in n
            .pointer("/status/images")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let names: Vec<&str> = img["names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let Some(digest) = names.iter().find(|s| s.starts_with("sha256:")) else {
                continue;
            };
            let h = held.entry(digest.to_string()).or_default();
            h.names.extend(
                names
                    .iter()
                    .filter(|s| !s.starts_with("sha256:"))
                    .map(|s| s.to_string()),
            );
            h.nodes.insert(node.clone());
            h.size = img["sizeBytes"].as_u64().unwrap_or(h.size);
        }
    }
    let (existing, _) = reg.list_all(&prefix(kind, None)).await?;
    let mut current: BTreeMap<String, Value> = BTreeMap::new();
    for kv in &existing {
        let v = decode_kv(kv)?;
        current.insert(v["metadata"]["name"].as_str().unwrap_or("").to_string(), v);
    }
    for (digest, h) in &held {
        let name = object_name(digest);
        let nodes: Vec<&String> = h.nodes.iter().collect();
        let have = current.remove(&name);
        let needs_detail = have.as_ref().is_none_or(|v| {
            v.pointer("/spec/layers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
        });
        let mut info = None;
        if needs_detail {
            for n in &h.nodes {
                if let Ok(v) = tunnels
                    .get_json(n, &format!("/images/inspect?name={digest}"))
                    .await
                {
                    info = Some(v);
                    break;
                }
            }
        }
        match have {
            None => {
                let obj = json!({"apiVersion": "images.selur.io/v1", "kind": "Image",
                    "metadata": {"name": name}, "spec": spec_from_inspect(digest, h, info.as_ref())});
                match reg.create(kind, None, obj, false).await {
                    Ok(_) | Err(ApiError { code: 409, .. }) => {}
                    Err(e) => return Err(e),
                }
                let patch = json!({"status": {"nodes": nodes}});
                reg.merge(kind, None, &name, &patch, Subresource::Status)
                    .await?;
            }
            Some(v) => {
                let names: Vec<&String> = h.names.iter().collect();
                if info.is_some() || v.pointer("/spec/names") != Some(&json!(names)) {
                    let mut spec = spec_from_inspect(digest, h, info.as_ref());
                    if info.is_none() {
                        spec = json!({"names": names});
                    }
                    reg.merge(kind, None, &name, &json!({"spec": spec}), Subresource::Main)
                        .await?;
                }
                if v.pointer("/status/nodes") != Some(&json!(nodes)) {
                    let patch = json!({"status": {"nodes": nodes}});
                    reg.merge(kind, None, &name, &patch, Subresource::Status)
                        .await?;
                }
            }
        }
    }
    // Entries no node holds any more (registry-resolved ones stay, with no nodes).
    for (name, v) in current {
        let from_registry = v
            .pointer(&format!(
                "/metadata/annotations/{}",
                SOURCE.replace('/', "~1")
            ))
            .is_some();
        if from_registry {
            if v.pointer("/status/nodes")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
            {
                let patch = json!({"status": {"nodes": []}});
                reg.merge(kind, None, &name, &patch, Subresource::Status)
                    .await?;
            }
        } else {
            match reg
                .delete(kind, None, &name, &DeleteOptions::default())
                .await
            {
                Ok(_) | Err(ApiError { code: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
