//! The streaming pod subresources `exec` and `portforward`. Kubernetes
//! speaks SPDY or WebSocket there; Selur speaks `selur-stream`
//! ([`selur_api::stream`]) over an HTTP/1.1 Upgrade. The pod, its node and
//! the container are checked here, then the stream is spliced onto a
//! full-duplex HTTP/2 stream to the node's agent over its tunnel
//! ([`crate::tunnel::Tunnels::forward_upgrade`]); the agent runs the
//! command or connects to the port, and its refusals come back as Status
//! errors before the upgrade.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use selur_api::stream::PROTOCOL;

use crate::api::ApiState;
use crate::status::{ApiError, ApiResult};

/// The annotation naming the container `exec` and `logs` use by default.
pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

fn query(req: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn values<'a>(q: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    q.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn flag(q: &[(String, String)], name: &str) -> bool {
    values(q, name).iter().any(|v| *v == "true" || *v == "1")
}

/// The pod, its node and its uid; refuses pods not placed on a node or already finished.
async fn placed_pod(state: &ApiState, ns: &str, name: &str) -> ApiResult<(Value, String, String)> {
    let kind = selur_api::kinds::by_plural("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("the pods kind is not registered"))?;
    let pod = state.registry.get(kind, Some(ns), name).await?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "pod {name} is not scheduled to a node yet, so nothing of it runs"
            ))
        })?
        .to_string();
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    if phase == "Succeeded" || phase == "Failed" {
        return Err(ApiError::bad_request(format!(
            "pod {name} has completed (phase {phase}): its containers no longer run"
        )));
    }
    let uid = pod
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok((pod, node, uid))
}

/// The container `exec` targets: the one named, else the default-container
/// annotation's, else the only (or first) one.
fn container_of(pod: &Value, name: &str, wanted: Option<&str>) -> ApiResult<String> {
    let names: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|f| pod["spec"][f].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    let annotated = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DEFAULT_CONTAINER))
        .and_then(Value::as_str);
    match wanted.filter(|w| !w.is_empty()).or(annotated) {
        Some(c) if names.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::new(
            404,
            "NotFound",
            format!(
                "container {c:?} not found in pod {name}; choose one of: [{}]",
                names.join(" ")
            ),
        )),
        None => pod["spec"]["containers"][0]["name"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| ApiError::bad_request(format!("pod {name} has no containers"))),
    }
}

fn encode(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// `GET|POST /api/v1/namespaces/{ns}/pods/{name}/exec?container=C&command=a&command=b&stdin=true&tty=true`
pub async fn exec(
    State(state): State<Arc<ApiState>>,
    Path((ns, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    exec_inner(&state, &ns, &name, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn exec_inner(state: &ApiState, ns: &str, name: &str, req: Request) -> ApiResult<Response> {
    let q = query(&req);
    let command = values(&q, "command");
    if command.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container (?command=...)",
        ));
    }
    let (pod, node, uid) = placed_pod(state, ns, name).await?;
    let container = container_of(&pod, name, values(&q, "container").first().copied())?;
    let bool_str = |b: bool| if b { "true" } else { "false" };
    let mut pairs = vec![
        ("container", container.as_str()),
        ("stdin", bool_str(flag(&q, "stdin"))),
        ("tty", bool_str(flag(&q, "tty"))),
    ];
    pairs.extend(command.iter().map(|c| ("command", *c)));
    let path = format!("/pods/{uid}/exec?{}", encode(&pairs));
    state
        .tunnels
        .forward_upgrade(&node, &path, req, PROTOCOL)
        .await
}

/// `GET|POST /api/v1/namespaces/{ns}/pods/{name}/portforward?ports=8080`: one
/// connection to one port of the pod (`[::1]:PORT` in its network namespace).
pub async fn portforward(
    State(state): State<Arc<ApiState>>,
    Path((ns, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    portforward_inner(&state, &ns, &name, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn portforward_inner(
    state: &ApiState,
    ns: &str,
    name: &str,
    req: Request,
) -> ApiResult<Response> {
    let q = query(&req);
    let port = match values(&q, "ports").as_slice() {
        [one] => one.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            ApiError::bad_request(format!("ports={one:?} is not a port number (1-65535)"))
        })?,
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one ports=N: each forwarded connection is its own request",
            ))
        }
    };
    let (_, node, uid) = placed_pod(state, ns, name).await?;
    let path = format!("/pods/{uid}/portforward?port={port}");
    state
        .tunnels
        .forward_upgrade(&node, &path, req, PROTOCOL)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn picks_the_named_annotated_or_first_container() {
        let pod = json!({"metadata": {"annotations": {DEFAULT_CONTAINER: "b"}},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(container_of(&pod, "p", None).unwrap(), "b");
        assert_eq!(container_of(&pod, "p", Some("a")).unwrap(), "a");
        assert_eq!(container_of(&pod, "p", Some("i")).unwrap(), "i");
        let e = container_of(&pod, "p", Some("x")).unwrap_err();
        assert_eq!(e.code, 404);
        assert!(e.message.contains("[a b i]"), "{}", e.message);
        let plain = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(container_of(&plain, "p", None).unwrap(), "a");
    }

    #[test]
    fn agent_query_is_encoded() {
        assert_eq!(
            encode(&[("command", "sh"), ("command", "echo a&b=c")]),
            "command=sh&command=echo+a%26b%3Dc"
        );
    }
}
