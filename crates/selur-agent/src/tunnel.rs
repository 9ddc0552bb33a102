//! The agent's side of the tunnel: dial the server, upgrade the connection,
//! then serve the node-local API over HTTP/2 on it. Reconnects with back-off.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;

use crate::{Agent, AgentError};

const PROTOCOL: &str = "selur-tunnel";

fn api_err(agent: &Agent, reason: impl std::fmt::Display) -> AgentError {
    AgentError::Api {
        url: agent.config.server.clone(),
        reason: format!("tunnel: {reason}"),
    }
}

/// One tunnel session; returns when the connection ends.
async fn session(agent: &Arc<Agent>) -> Result<(), AgentError> {
    let url = reqwest::Url::parse(&agent.config.server).map_err(|e| api_err(agent, e))?;
    let host = url
        .host_str()
        .ok_or_else(|| api_err(agent, "server URL has no host"))?
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let addr_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let stream = tokio::net::TcpStream::connect((addr_host.as_str(), port))
        .await
        .map_err(|e| api_err(agent, e))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| api_err(agent, e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let req = hyper::Request::get(format!("/api/v1/nodes/{}/tunnel", agent.config.node_name))
        .header(header::HOST, format!("{host}:{port}"))
        .header(header::UPGRADE, PROTOCOL)
        .header(header::CONNECTION, "Upgrade")
        .body(Empty::<Bytes>::new())
        .map_err(|e| api_err(agent, e))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| api_err(agent, e))?;
    if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        return Err(api_err(
            agent,
            format!("server refused the tunnel: HTTP {}", resp.status()),
        ));
    }
    let upgraded = hyper::upgrade::on(resp)
        .await
        .map_err(|e| api_err(agent, e))?;
    tracing::info!(node = %agent.config.node_name, "tunnel to API server established");
    let svc = TowerToHyperService::new(crate::images::router(agent.clone()));
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
        .serve_connection(upgraded, svc)
        .await
        .map_err(|e| api_err(agent, e))
}

/// Keep a tunnel up for as long as the agent runs.
pub async fn maintain(agent: Arc<Agent>) {
    let mut delay = Duration::from_millis(100);
    loop {
        let started = std::time::Instant::now();
        if let Err(e) = session(&agent).await {
            tracing::warn!(error = %e, "tunnel down; reconnecting");
        }
        if started.elapsed() > Duration::from_secs(10) {
            delay = Duration::from_millis(100);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
