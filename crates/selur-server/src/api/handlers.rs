//! The verbs on collections and objects, with their query parameters and bodies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::paths::{parse_path, Route};
use super::subresources::{bind, pod_log, scale};
use super::ApiState;
use crate::registry::{DeleteOptions, Deleted, ListOptions, PatchType, Subresource};
use crate::status::{ApiError, ApiResult};
use crate::watch::{self, WatchParams};

pub(super) fn parse_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
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

pub(super) fn json_response(code: StatusCode, v: Value) -> Response {
    (code, Json(v)).into_response()
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v == "true" || v == "1")
}

pub(super) fn dry_run(q: &HashMap<String, String>) -> ApiResult<bool> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "dryRun {other:?} is not supported: the only value is All"
        ))),
    }
}

/// The largest request body the API takes (Kubernetes' 3 MiB).
pub const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;

pub(super) async fn dispatch(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!(
                    "Request entity too large: limit is {MAX_REQUEST_BODY_BYTES} bytes; split the manifest into several files or make the object smaller"
                ),
            )
            .into_response();
        }
        Err(r) => {
            return ApiError::bad_request(format!("reading the request body: {r}")).into_response()
        }
    };
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

pub(super) fn patch_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<(PatchType, Value)> {
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
