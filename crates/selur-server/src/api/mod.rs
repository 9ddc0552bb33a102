//! HTTP front of the registry: Kubernetes REST paths, verbs, query
//! parameters, subresources and discovery.
//!
//! Paths are parsed by hand rather than with router patterns because
//! Kubernetes' layout is ambiguous for a pattern router
//! (`/api/v1/namespaces/{name}` is an object, `/api/v1/namespaces/{ns}/pods`
//! a collection).

mod discovery;
mod handlers;
mod images;
mod paths;
mod subresources;

pub use subresources::selector_string;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{any, get};
use axum::Router;

use crate::registry::Registry;

use discovery::{api_groups, api_versions, ok, version};
use handlers::dispatch;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct ApiState {
    pub registry: Registry,
    pub bookmark_interval: Duration,
    pub tunnels: crate::tunnel::Tunnels,
    pub registries: Arc<selur_registry::registries::RegistrySettings>,
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
            axum::routing::post(images::resolve),
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
        .layer(axum::extract::DefaultBodyLimit::max(
            handlers::MAX_REQUEST_BODY_BYTES,
        ))
        .with_state(state)
}
