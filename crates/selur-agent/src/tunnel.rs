//! The agent's side of the tunnel: dial the server, upgrade the connection,
//! then serve the node-local API over HTTP/2 on it. Reconnects with back-off.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
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
    let path = format!("/api/v1/nodes/{}/tunnel", agent.config.node_name);
    let upgraded = agent
        .client
        .upgrade(hyper::Method::GET, &path, &[], PROTOCOL)
        .await?;
    tracing::info!(node = %agent.config.node_name, "tunnel to API server established");
    let svc = TowerToHyperService::new(crate::node_api::router(agent.clone()));
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
        .serve_connection(upgraded.into_inner(), svc)
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
