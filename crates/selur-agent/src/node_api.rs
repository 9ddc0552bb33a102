//! The node-local API the agent serves over its tunnel ([`crate::tunnel`]):
//! images, container logs, exec and port-forward. It only routes; the
//! handlers live with what they serve.

use std::sync::Arc;

use axum::routing::{any, get, post};
use axum::Router;

use crate::{exec, images, logs, portforward, Agent};

/// The router served over the tunnel.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/images", get(images::list))
        .route("/images/inspect", get(images::inspect))
        .route("/images/remove", post(images::remove))
        .route("/images/prune", post(images::prune))
        .route("/images/import", post(images::import))
        .route("/images/save", get(images::save))
        .route("/images/build", post(images::build))
        .route("/images/lint", get(images::lint))
        .route("/images/pull", post(images::pull))
        .route(
            "/containerLogs/{ns}/{pod}/{uid}/{container}",
            get(logs::container_logs),
        )
        .route("/pods/{uid}/exec", any(exec::handler))
        .route("/pods/{uid}/portforward", any(portforward::handler))
        .with_state(agent)
}
