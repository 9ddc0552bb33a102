//! Agent tunnels: an agent dials the server (`GET /api/v1/nodes/{name}/tunnel`
//! with `Upgrade: selur-tunnel`), and the upgraded connection then carries
//! HTTP/2 the other way round: the server is the client, the agent serves its
//! node-local API. Nodes need no inbound port (as k3s does it). Requests to
//! `/api/v1/nodes/{name}/proxy/{path}` are forwarded over the node's tunnel,
//! bodies streamed both ways (image uploads, logs), and the pods' `exec` and
//! `portforward` subresources are spliced onto full-duplex streams to the
//! agent ([`Tunnels::forward_upgrade`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::TokioExecutor;

use crate::api::ApiState;
use crate::status::ApiError;
use splice::{node_error, splice};

mod splice;

/// The protocol name in the `Upgrade` header.
pub const PROTOCOL: &str = "selur-tunnel";

/// One live tunnel: a connection id (so a stale close cannot remove a newer tunnel) and its sender.
type Connected = (u64, SendRequest<Body>);

/// Connected agents, by node name.
#[derive(Clone, Default)]
pub struct Tunnels {
    inner: Arc<Mutex<HashMap<String, Connected>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
    /// Woken whenever a tunnel connects.
    connected: Arc<tokio::sync::Notify>,
}

/// How long a request waits for a node's tunnel to (re)connect, e.g. right
/// after the node registered or while its agent reconnects.
const TUNNEL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Tunnels {
    fn insert(&self, node: &str, sender: SendRequest<Body>) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut m) = self.inner.lock() {
            m.insert(node.to_string(), (id, sender));
        }
        self.connected.notify_waiters();
        id
    }
    fn remove(&self, node: &str, id: u64) {
        if let Ok(mut m) = self.inner.lock() {
            if m.get(node).is_some_and(|(i, _)| *i == id) {
                m.remove(node);
            }
        }
    }
    fn get_now(&self, node: &str) -> Option<SendRequest<Body>> {
        self.inner.lock().ok()?.get(node).map(|(_, s)| s.clone())
    }

    /// The node's tunnel, waiting up to [`TUNNEL_WAIT`] for it to connect.
    async fn get(&self, node: &str) -> Option<SendRequest<Body>> {
        let deadline = tokio::time::Instant::now() + TUNNEL_WAIT;
        loop {
            let woken = self.connected.notified();
            if let Some(s) = self.get_now(node) {
                return Some(s);
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return self.get_now(node);
            }
        }
    }
    /// Names of nodes with a live tunnel.
    pub fn connected(&self) -> Vec<String> {
        self.inner
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// `GET /api/v1/nodes/{name}/tunnel`: accept an agent's tunnel.
pub async fn accept(
    State(state): State<Arc<ApiState>>,
    Path(node): Path<String>,
    mut req: Request,
) -> Response {
    let tunnels = state.tunnels.clone();
    let wants = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(PROTOCOL));
    if !wants {
        return ApiError::bad_request(format!(
            "the tunnel endpoint needs `Upgrade: {PROTOCOL}` (it is for selur agents)"
        ))
        .into_response();
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(%node, error = %e, "tunnel upgrade failed");
                return;
            }
        };
        // Large flow-control windows: image uploads stream through here.
        let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(16 << 20)
            .handshake(upgraded)
            .await;
        let (sender, conn) = match handshake {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(%node, error = %e, "tunnel HTTP/2 handshake failed");
                return;
            }
        };
        let id = tunnels.insert(&node, sender);
        tracing::info!(%node, "agent tunnel connected");
        if let Err(e) = conn.await {
            tracing::info!(%node, error = %e, "agent tunnel closed");
        }
        tunnels.remove(&node, id);
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    resp
}

/// `ANY /api/v1/nodes/{name}/proxy/{*path}`: forward to the node's agent.
pub async fn proxy(
    State(state): State<Arc<ApiState>>,
    Path((node, path)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Some(mut sender) = state.tunnels.get(&node).await else {
        return ApiError::new(
            503,
            "ServiceUnavailable",
            format!("node {node:?} has no agent connected: is `selur agent --node-name {node}` running?"),
        )
        .into_response();
    };
    let (parts, body) = req.into_parts();
    let pq = match parts.uri.query() {
        Some(q) => format!("/{path}?{q}"),
        None => format!("/{path}"),
    };
    let uri: Uri = match format!("http://{node}{pq}").parse() {
        Ok(u) => u,
        Err(e) => {
            return ApiError::bad_request(format!("bad proxy path {pq:?}: {e}")).into_response()
        }
    };
    let mut fwd = Request::new(body);
    *fwd.method_mut() = parts.method;
    *fwd.uri_mut() = uri;
    for (k, v) in parts.headers.iter() {
        if k != header::HOST && k != header::CONNECTION && k != header::TRANSFER_ENCODING {
            fwd.headers_mut().insert(k.clone(), v.clone());
        }
    }
    if let Err(e) = sender.ready().await {
        return ApiError::new(
            503,
            "ServiceUnavailable",
            format!("node {node:?} tunnel is not usable: {e}"),
        )
        .into_response();
    }
    match sender.send_request(fwd).await {
        Ok(resp) => resp.map(Body::new),
        Err(e) => ApiError::new(
            502,
            "BadGateway",
            format!("node {node:?} did not answer over its tunnel: {e}"),
        )
        .into_response(),
    }
}

impl Tunnels {
    /// GET a JSON document from a node's agent over its tunnel.
    pub async fn get_json(
        &self,
        node: &str,
        path_and_query: &str,
    ) -> Result<serde_json::Value, ApiError> {
        use http_body_util::BodyExt;
        let resp = self.forward_get(node, path_and_query).await?;
        let code = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ApiError::new(502, "BadGateway", format!("node {node:?}: {e}")))?
            .to_bytes();
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        if code >= 300 {
            return Err(ApiError::new(
                code,
                "NodeError",
                v["message"]
                    .as_str()
                    .unwrap_or("node request failed")
                    .to_string(),
            ));
        }
        Ok(v)
    }

    /// GET `path_and_query` from a node's agent and hand back its response, body streamed.
    pub async fn forward_get(
        &self,
        node: &str,
        path_and_query: &str,
    ) -> Result<Response, ApiError> {
        self.forward(node, Method::GET, path_and_query, Body::empty())
            .await
    }

    /// Send a request to a node's agent with `body` streamed up, and hand
    /// back its response as soon as its headers arrive, body streamed down.
    /// HTTP/2 is full duplex: the request body may keep flowing while the
    /// response body is read (exec, port-forward).
    pub async fn forward(
        &self,
        node: &str,
        method: Method,
        path_and_query: &str,
        body: Body,
    ) -> Result<Response, ApiError> {
        let mut sender = self.get(node).await.ok_or_else(|| {
            ApiError::new(
                503,
                "ServiceUnavailable",
                format!("node {node:?} has no agent connected"),
            )
        })?;
        sender.ready().await.map_err(|e| {
            ApiError::new(
                503,
                "ServiceUnavailable",
                format!("node {node:?} tunnel: {e}"),
            )
        })?;
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{node}{path_and_query}"))
            .body(body)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ApiError::new(502, "BadGateway", format!("node {node:?}: {e}")))?;
        Ok(resp.map(Body::new))
    }

    /// Serve a client's HTTP/1.1 `Upgrade: <protocol>` request by a
    /// full-duplex stream to a node's agent: the request goes to the agent
    /// first, and only when it accepts (2xx) does the client get `101
    /// Switching Protocols`; then the client's bytes are the request body
    /// and the agent's response body goes back to the client, verbatim. An
    /// agent's refusal reaches the client as an ordinary error. When the
    /// client goes away the agent's stream ends, and the agent stops its side.
    pub async fn forward_upgrade(
        &self,
        node: &str,
        path_and_query: &str,
        mut req: Request,
        protocol: &'static str,
    ) -> Result<Response, ApiError> {
        let wants = req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case(protocol));
        if !wants {
            return Err(ApiError::bad_request(format!(
                "this endpoint streams: send the request with `Connection: Upgrade` and `Upgrade: {protocol}` (as `selur exec` and `selur port-forward` do)"
            )));
        }
        let on_upgrade = hyper::upgrade::on(&mut req);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
        let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        let resp = self
            .forward(node, Method::POST, path_and_query, body)
            .await?;
        if !resp.status().is_success() {
            return Err(node_error(node, resp).await);
        }
        let node = node.to_string();
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    splice(hyper_util::rt::TokioIo::new(upgraded), tx, resp.into_body()).await
                }
                Err(e) => tracing::debug!(%node, error = %e, "stream upgrade failed"),
            }
        });
        let mut out = Response::new(Body::empty());
        *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        out.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static(protocol));
        out.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        Ok(out)
    }
}
