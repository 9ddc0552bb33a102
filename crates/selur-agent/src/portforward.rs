//! Port-forwarding into a pod (the pod `portforward` subresource, served
//! over the tunnel at `/pods/{uid}/portforward?port=N`): one TCP connection
//! to `[::1]:N` inside the pod's network namespace per request, the request
//! body piped to it and its replies streamed back as the response body.
//! IPv6 only: servers that bind `::1` or `::` are reachable, IPv4-only ones
//! are not.

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use selur_runtime::sandbox::{connect_in_netns, SandboxError};

use crate::layout::sandbox_of;
use crate::reply::failure;
use crate::Agent;

/// How long connecting to the pod's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
pub struct PortQuery {
    port: u16,
}

/// Connect to `port` on the pod's `::1`, as an error response when that fails.
async fn connect(agent: &Agent, uid: &str, port: u16) -> Result<tokio::net::TcpStream, Response> {
    let netns = sandbox_of(agent, uid).net_path();
    if !netns.exists() {
        return Err(failure(
            StatusCode::NOT_FOUND,
            format!(
                "pod {uid} has no network namespace on node {}: it is not running here",
                agent.config.node_name
            ),
        ));
    }
    let addr = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let res = tokio::task::spawn_blocking(move || connect_in_netns(&netns, addr, CONNECT_TIMEOUT))
        .await
        .map_err(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let std = match res {
        Ok(s) => s,
        Err(SandboxError::Connect { source, .. })
            if source.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            return Err(failure(
                StatusCode::BAD_REQUEST,
                format!(
                    "nothing listens on port {port} in the pod (connection to [::1]:{port} refused); \
                     port-forward reaches servers bound to ::1 or :: (IPv6), not IPv4-only ones"
                ),
            ))
        }
        Err(SandboxError::Connect { source, .. })
            if source.kind() == std::io::ErrorKind::TimedOut =>
        {
            return Err(failure(
                StatusCode::GATEWAY_TIMEOUT,
                format!("connecting to [::1]:{port} in the pod timed out after {CONNECT_TIMEOUT:?}"),
            ))
        }
        Err(e @ SandboxError::EnterNetns { .. }) => return Err(failure(StatusCode::NOT_FOUND, e)),
        Err(e) => return Err(failure(StatusCode::BAD_GATEWAY, e)),
    };
    let _ = std.set_nodelay(true);
    std.set_nonblocking(true)
        .and_then(|()| tokio::net::TcpStream::from_std(std))
        .map_err(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// `/pods/{uid}/portforward?port=N`: a byte pipe to the pod's `[::1]:N`.
pub async fn handler(
    State(agent): State<Arc<Agent>>,
    Path(uid): Path<String>,
    Query(q): Query<PortQuery>,
    body: Body,
) -> Response {
    if q.port == 0 {
        return failure(StatusCode::BAD_REQUEST, "port 0 cannot be forwarded");
    }
    let conn = match connect(&agent, &uid, q.port).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (mut rd, mut wr) = conn.into_split();
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    // Client to pod; the end of the request body half-closes the connection.
    tokio::spawn(async move {
        let mut frames = body.into_data_stream();
        while let Some(Ok(chunk)) = frames.next().await {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    // Pod to client, until the pod closes or the client goes away.
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = tokio::select! {
                r = rd.read(&mut buf) => r,
                _ = tx.closed() => return,
            };
            match n {
                Ok(0) => return,
                Ok(n) => {
                    if tx
                        .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    Response::new(Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ))
}
