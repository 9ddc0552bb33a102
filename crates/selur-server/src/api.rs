//! HTTP front of the registry: Kubernetes REST paths, verbs, query
//! parameters, subresources and discovery.
//!
//! Paths are parsed by hand rather than with router patterns because
//! Kubernetes' layout is ambiguous for a pattern router
//! (`/api/v1/namespaces/{name}` is an object, `/api/v1/namespaces/{ns}/pods`
//! a collection).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use selur_api::kinds::{self, ResourceKind, KINDS};
use selur_api::selector::LabelSelector;

use crate::registry::{DeleteOptions, Deleted, ListOptions, PatchType, Registry, Subresource};
use crate::status::{ApiError, ApiResult};
use crate::watch::{self, WatchParams};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct ApiState {
    pub registry: Registry,
    pub bookmark_interval: Duration,
    pub tunnels: crate::tunnel::Tunnels,
    pub registries: Arc<selur_image::registries::RegistrySettings>,
}

/// The router for the whole API.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .route("/api", get(api_versions))
        .route("/apis", get(api_groups))
        .route("/api/v1/nodes/{name}/tunnel", get(crate::tunnel::accept))
        .route(
            "/apis/images.selur.io/v1/resolve",
            axum::routing::post(crate::controllers::catalog::resolve),
        )
        .route(
            "/api/v1/nodes/{name}/proxy/{*path}",
            any(crate::tunnel::proxy),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/exec",
            any(crate::pod_stream::exec),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/portforward",
            any(crate::pod_stream::portforward),
        )
        .fallback(dispatch)
        .with_state(state)
}

async fn ok() -> &'static str {
    "ok"
}

async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": "33",
        "gitVersion": format!("v1.33.0-selur.{}", env!("CARGO_PKG_VERSION")),
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

async fn api_versions() -> Json<Value> {
    Json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))
}

async fn api_groups() -> Json<Value> {
    let mut groups: Vec<(&str, &str)> = KINDS
        .iter()
        .filter(|k| !k.group.is_empty())
        .map(|k| (k.group, k.version))
        .collect();
    groups.dedup();
    let groups: Vec<Value> = groups
        .iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
}

fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for k in KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        let mut verbs = vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        if k.kind == "Event" {
            verbs.retain(|v| *v != "deletecollection");
        }
        resources.push(
            json!({"name": k.plural, "singularName": k.singular(), "namespaced": k.namespaced,
            "kind": k.kind, "verbs": verbs, "shortNames": k.short_names}),
        );
        if k.status {
            resources.push(json!({"name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced,
                "kind": k.kind, "verbs": ["get", "patch", "update"]}));
        }
        if k.scale {
            resources.push(json!({"name": format!("{}/scale", k.plural), "singularName": "", "namespaced": k.namespaced,
                "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
        if k.kind == "Pod" {
            resources.push(
                json!({"name": "pods/binding", "singularName": "", "namespaced": true,
                "kind": "Binding", "verbs": ["create"]}),
            );
            for sub in ["exec", "portforward"] {
                resources.push(json!({"name": format!("pods/{sub}"), "singularName": "", "namespaced": true,
                    "kind": format!("Pod{}Options", if sub == "exec" { "Exec" } else { "PortForward" }),
                    "verbs": ["create", "get"]}));
            }
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// What a request path names.
#[derive(Debug)]
struct Target {
    kind: &'static ResourceKind,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

enum Route {
    Discovery(Value),
    Resource(Target),
}

fn parse_path(path: &str) -> ApiResult<Route> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::not_found_path(path)),
    };
    if rest.is_empty() {
        return resource_list(group, version)
            .map(Route::Discovery)
            .ok_or_else(|| ApiError::not_found_path(path));
    }
    let lookup = |plural: &str| {
        kinds::by_plural(group, version, plural).ok_or_else(|| ApiError::not_found_path(path))
    };
    let target = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if kinds::by_plural(group, version, plural).is_some() =>
        {
            let kind = lookup(plural)?;
            if !kind.namespaced {
                return Err(ApiError::not_found_path(path));
            }
            Target {
                kind,
                namespace: Some(ns.to_string()),
                name: tail.first().map(|s| s.to_string()),
                sub: match tail {
                    [_] | [] => None,
                    [_, sub] => Some(sub.to_string()),
                    _ => return Err(ApiError::not_found_path(path)),
                },
            }
        }
        [plural, tail @ ..] => {
            let kind = lookup(plural)?;
            if kind.namespaced && !tail.is_empty() {
                return Err(ApiError::not_found_path(path));
            }
            Target {
                kind,
                namespace: None,
                name: tail.first().map(|s| s.to_string()),
                sub: match tail {
                    [_] | [] => None,
                    [_, sub] => Some(sub.to_string()),
                    _ => return Err(ApiError::not_found_path(path)),
                },
            }
        }
        [] => return Err(ApiError::not_found_path(path)),
    };
    Ok(Route::Resource(target))
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty: send the object as JSON or YAML",
        ));
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if ct.contains("yaml") {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the YAML body is not UTF-8"))?;
        let mut docs = selur_api::decode::parse_documents(text)
            .map_err(|e| ApiError::bad_request(format!("the YAML body does not parse: {e}")))?;
        if docs.len() != 1 {
            return Err(ApiError::bad_request(
                "the request body must hold exactly one object",
            ));
        }
        Ok(docs.remove(0))
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the request body is not valid JSON: line {}, column {}: {e}",
                e.line(),
                e.column()
            ))
        })
    }
}

fn json_response(code: StatusCode, v: Value) -> Response {
    (code, Json(v)).into_response()
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v == "true" || v == "1")
}

fn dry_run(q: &HashMap<String, String>) -> ApiResult<bool> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "dryRun {other:?} is not supported: the only value is All"
        ))),
    }
}

async fn dispatch(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&state, method, uri.path(), &q, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    state: &ApiState,
    method: Method,
    path: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let t = match parse_path(path)? {
        Route::Discovery(v) => return Ok(json_response(StatusCode::OK, v)),
        Route::Resource(t) => t,
    };
    let reg = &state.registry;
    let kind = t.kind;
    let ns = t.namespace.as_deref();
    if kind.namespaced && t.name.is_some() && ns.is_none() {
        return Err(ApiError::not_found_path(path));
    }
    match (t.name.as_deref(), t.sub.as_deref(), method.clone()) {
        (None, None, Method::GET) if flag(q, "watch") => {
            let params = WatchParams {
                label_selector: q.get("labelSelector").cloned(),
                field_selector: q.get("fieldSelector").cloned(),
                resource_version: q.get("resourceVersion").cloned(),
                allow_bookmarks: flag(q, "allowWatchBookmarks"),
                timeout: q
                    .get("timeoutSeconds")
                    .and_then(|s| s.parse::<u64>().ok())
                    .map(Duration::from_secs),
            };
            let rx = watch::start(reg, kind, ns, params, state.bookmark_interval).await?;
            let stream = ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>);
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CACHE_CONTROL, "no-cache")
                .body(Body::from_stream(stream))
                .map_err(|e| ApiError::internal(e.to_string()))?)
        }
        (None, None, Method::GET) => {
            let opts = ListOptions {
                label_selector: q.get("labelSelector").cloned(),
                field_selector: q.get("fieldSelector").cloned(),
                limit: match q.get("limit") {
                    Some(l) => l.parse().map_err(|_| {
                        ApiError::bad_request(format!("limit {l:?} is not a number"))
                    })?,
                    None => 0,
                },
                continue_token: q.get("continue").cloned().filter(|s| !s.is_empty()),
            };
            Ok(json_response(
                StatusCode::OK,
                reg.list(kind, ns, &opts).await?,
            ))
        }
        (None, None, Method::POST) => {
            let obj = parse_body(headers, &body)?;
            let created = reg.create(kind, ns, obj, dry_run(q)?).await?;
            Ok(json_response(StatusCode::CREATED, created))
        }
        (None, None, Method::DELETE) => {
            // deletecollection
            let opts = ListOptions {
                label_selector: q.get("labelSelector").cloned(),
                field_selector: q.get("fieldSelector").cloned(),
                ..Default::default()
            };
            let list = reg.list(kind, ns, &opts).await?;
            let dopts = delete_options(q, headers, &body)?;
            let mut items = Vec::new();
            for item in list["items"].as_array().cloned().unwrap_or_default() {
                let name = item["metadata"]["name"].as_str().unwrap_or("").to_string();
                let item_ns = item["metadata"]["namespace"].as_str().map(String::from);
                match reg.delete(kind, item_ns.as_deref(), &name, &dopts).await {
                    Ok(Deleted::Gone(v)) | Ok(Deleted::Pending(v)) => items.push(v),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let mut out = list;
            out["items"] = Value::Array(items);
            Ok(json_response(StatusCode::OK, out))
        }
        (Some(name), None, Method::GET) => Ok(json_response(
            StatusCode::OK,
            reg.get(kind, ns, name).await?,
        )),
        (Some(name), None, Method::PUT) => {
            let obj = parse_body(headers, &body)?;
            let v = reg
                .update(kind, ns, name, obj, Subresource::Main, dry_run(q)?)
                .await?;
            Ok(json_response(StatusCode::OK, v))
        }
        (Some(name), sub @ (None | Some("status")), Method::PATCH) => {
            if sub == Some("status") && !kind.status {
                return Err(ApiError::not_found_path(path));
            }
            let (pt, patch) = patch_body(headers, &body)?;
            let sub = if sub.is_some() {
                Subresource::Status
            } else {
                Subresource::Main
            };
            let v = reg
                .patch(kind, ns, name, pt, &patch, sub, dry_run(q)?)
                .await?;
            Ok(json_response(StatusCode::OK, v))
        }
        (Some(name), None, Method::DELETE) => {
            let opts = delete_options(q, headers, &body)?;
            match reg.delete(kind, ns, name, &opts).await? {
                Deleted::Gone(obj) => Ok(json_response(
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "group": kind.group, "kind": kind.plural,
                            "uid": obj["metadata"]["uid"]}}),
                )),
                Deleted::Pending(obj) => Ok(json_response(StatusCode::OK, obj)),
            }
        }
        (Some(name), Some("status"), Method::GET) if kind.status => Ok(json_response(
            StatusCode::OK,
            reg.get(kind, ns, name).await?,
        )),
        (Some(name), Some("status"), Method::PUT) if kind.status => {
            let obj = parse_body(headers, &body)?;
            let v = reg
                .update(kind, ns, name, obj, Subresource::Status, dry_run(q)?)
                .await?;
            Ok(json_response(StatusCode::OK, v))
        }
        (Some(name), Some("scale"), m) if kind.scale => {
            scale(reg, kind, ns, name, m, q, headers, &body).await
        }
        (Some(name), Some("log"), Method::GET) if kind.kind == "Pod" => {
            pod_log(state, kind, ns, name, q).await
        }
        (Some(name), Some("binding"), Method::POST) if kind.kind == "Pod" => {
            let b = parse_body(headers, &body)?;
            bind(reg, kind, ns, name, &b, dry_run(q)?).await
        }
        (None, _, _) | (Some(_), None, _) => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on {path}"
        ))),
        (Some(_), Some(sub), _) => Err(ApiError::not_found_path(&format!(
            "{path} (subresource {sub})"
        ))),
    }
}

fn patch_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<(PatchType, Value)> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let pt = PatchType::from_content_type(ct).ok_or_else(|| {
        ApiError::unsupported_media(format!(
            "the content type {ct:?} is not a supported patch type: use application/json-patch+json, application/merge-patch+json or application/strategic-merge-patch+json"
        ))
    })?;
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
    Ok((pt, v))
}

fn delete_options(
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<DeleteOptions> {
    let mut o = DeleteOptions {
        propagation_policy: q.get("propagationPolicy").cloned(),
        dry_run: dry_run(q)?,
        ..Default::default()
    };
    if let Some(g) = q.get("gracePeriodSeconds") {
        o.grace_period_seconds = Some(g.trim().parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "gracePeriodSeconds {g:?} is not a whole number of seconds: use e.g. gracePeriodSeconds=30, or 0 to delete at once"
            ))
        })?);
    }
    if !body.is_empty() {
        let b = parse_body(headers, body)?;
        match b.get("gracePeriodSeconds") {
            None | Some(Value::Null) => {}
            Some(v) => {
                o.grace_period_seconds = Some(v.as_i64().ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "DeleteOptions.gracePeriodSeconds {v} is not a whole number of seconds: use e.g. 30, or 0 to delete at once"
                    ))
                })?);
            }
        }
        if let Some(p) = b.get("propagationPolicy").and_then(Value::as_str) {
            o.propagation_policy = Some(p.to_string());
        }
        if b.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            o.propagation_policy = Some("Orphan".into());
        }
        if let Some(p) = b.get("preconditions") {
            o.precondition_uid = p.get("uid").and_then(Value::as_str).map(String::from);
            o.precondition_resource_version = p
                .get("resourceVersion")
                .and_then(Value::as_str)
                .map(String::from);
        }
        if b.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"))
        {
            o.dry_run = true;
        }
    }
    Ok(o)
}

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
async fn scale(
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

async fn bind(
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
async fn pod_log(
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
