//! The `scale`, `binding` and `log` subresources.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use selur_api::kinds::ResourceKind;
use selur_api::selector::LabelSelector;

use super::handlers::{dry_run, json_response, parse_body, patch_body};
use super::ApiState;
use crate::registry::{PatchType, Registry, Subresource};
use crate::status::{ApiError, ApiResult};

fn scale_of(kind: &ResourceKind, obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| {
            serde_json::from_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>(
                s.clone(),
            )
            .ok()
        })
        .map(|s| selector_string(&s))
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"], "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
        "_kind": kind.kind,
    })
}

/// The string form of a selector (`a=b,c in (d)`), as Scale's `status.selector`.
pub fn selector_string(
    s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> String {
    let mut parts = Vec::new();
    for (k, v) in s.match_labels.iter().flatten() {
        parts.push(format!("{k}={v}"));
    }
    for e in s.match_expressions.iter().flatten() {
        let vals = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({vals})", e.key),
            "NotIn" => format!("{} notin ({vals})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    // Validate the round trip so a selector we print can be parsed back.
    let joined = parts.join(",");
    if LabelSelector::parse(&joined).is_ok() {
        joined
    } else {
        String::new()
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn scale(
    reg: &Registry,
    kind: &'static ResourceKind,
    ns: Option<&str>,
    name: &str,
    method: Method,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let strip = |mut v: Value| {
        if let Some(m) = v.as_object_mut() {
            m.remove("_kind");
        }
        v
    };
    let obj = reg.get(kind, ns, name).await?;
    let current = scale_of(kind, &obj);
    let wanted = match method {
        Method::GET => return Ok(json_response(StatusCode::OK, strip(current))),
        Method::PUT => parse_body(headers, body)?,
        Method::PATCH => {
            let (pt, patch) = patch_body(headers, body)?;
            let base = strip(current.clone());
            match pt {
                PatchType::Json => selur_api::patch::apply_json_patch(&base, &patch)
                    .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?,
                PatchType::Merge => selur_api::patch::apply_merge_patch(&base, &patch),
                PatchType::StrategicMerge => selur_api::patch::apply_strategic_merge(&base, &patch)
                    .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?,
            }
        }
        other => {
            return Err(ApiError::method_not_allowed(format!(
                "{other} is not supported on scale"
            )))
        }
    };
    let replicas = wanted
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            ApiError::new(
                422,
                "Invalid",
                "Scale.spec.replicas: Required value: set spec.replicas to a number",
            )
        })?;
    if replicas < 0 {
        return Err(ApiError::new(422, "Invalid", format!("Scale.spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0")));
    }
    let mut patch = json!({"spec": {"replicas": replicas}});
    if let Some(rv) = wanted
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        if method == Method::PUT && !rv.is_empty() {
            patch["metadata"] = json!({"resourceVersion": rv});
        }
    }
    let updated = reg
        .patch(
            kind,
            ns,
            name,
            PatchType::Merge,
            &patch,
            Subresource::Main,
            dry_run(q)?,
        )
        .await?;
    Ok(json_response(
        StatusCode::OK,
        strip(scale_of(kind, &updated)),
    ))
}

pub(super) async fn bind(
    reg: &Registry,
    kind: &'static ResourceKind,
    ns: Option<&str>,
    name: &str,
    binding: &Value,
    dry_run: bool,
) -> ApiResult<Response> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                422,
                "Invalid",
                "Binding.target.name: Required value: name the node to bind to",
            )
        })?;
    let (pod, rev) = reg.get_kv(kind, ns, name).await?;
    if let Some(existing) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        return Err(ApiError::conflict(
            kind,
            name,
            &format!("pod {name} is already assigned to node \"{existing}\""),
        ));
    }
    reg.bind_node(kind, ns, name, rev, pod, node, dry_run)
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// `GET .../pods/{name}/log`: the container's log from its node's agent, over the tunnel.
pub(super) async fn pod_log(
    state: &ApiState,
    kind: &'static ResourceKind,
    ns: Option<&str>,
    name: &str,
    q: &HashMap<String, String>,
) -> ApiResult<Response> {
    let pod = state.registry.get(kind, ns, name).await?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "pod {name} is not scheduled to a node yet, so it has no logs"
            ))
        })?;
    let names: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let container = match (q.get("container").map(String::as_str), names.as_slice()) {
        (Some(c), _) if names.contains(&c) => c.to_string(),
        (Some(c), _) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}; choose one of: [{}]",
                names.join(" ")
            )))
        }
        (None, [one]) => one.to_string(),
        (None, _) => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )))
        }
    };
    let uid = pod
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ns = ns.unwrap_or("default");
    let mut query = Vec::new();
    for k in [
        "follow",
        "tailLines",
        "timestamps",
        "sinceSeconds",
        "previous",
    ] {
        if let Some(v) = q.get(k) {
            query.push(format!("{k}={}", v.replace(['&', '=', ' '], "")));
        }
    }
    let path = format!(
        "/containerLogs/{ns}/{name}/{uid}/{container}?{}",
        query.join("&")
    );
    state.tunnels.forward_get(node, &path).await
}
