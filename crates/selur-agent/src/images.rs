//! The node-local image API the agent serves over its tunnel (the server
//! exposes it at `/api/v1/nodes/{node}/proxy/images...`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::Agent;

/// An error as a Kubernetes-style Status body.
pub fn failure(code: StatusCode, message: impl std::fmt::Display) -> Response {
    let m = message.to_string();
    (
        code,
        Json(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": m,
            "reason": code.canonical_reason().unwrap_or(""), "code": code.as_u16()}),
        ),
    )
        .into_response()
}

fn store_failure(e: selur_image::StoreError) -> Response {
    let code = match e {
        selur_image::StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        selur_image::StoreError::Reference(_) | selur_image::StoreError::DigestMismatch { .. } => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    failure(code, e)
}

#[derive(Deserialize)]
pub struct NameQuery {
    name: String,
}

async fn list(State(a): State<Arc<Agent>>) -> Response {
    match a.images.list() {
        Ok(l) => Json(json!({"node": a.config.node_name, "images": l})).into_response(),
        Err(e) => store_failure(e),
    }
}

async fn inspect(State(a): State<Arc<Agent>>, Query(q): Query<NameQuery>) -> Response {
    match a.images.inspect(&q.name) {
        Ok(i) => Json(i).into_response(),
        Err(e) => store_failure(e),
    }
}

async fn remove(State(a): State<Arc<Agent>>, Query(q): Query<NameQuery>) -> Response {
    match a.images.remove(&q.name) {
        Ok(names) => {
            a.changed.notify_one();
            Json(json!({"untagged": names})).into_response()
        }
        Err(e) => store_failure(e),
    }
}

async fn prune(State(a): State<Arc<Agent>>) -> Response {
    match a.images.prune(&Default::default()) {
        Ok(freed) => {
            a.changed.notify_one();
            Json(json!({"freedBytes": freed})).into_response()
        }
        Err(e) => store_failure(e),
    }
}

/// The router served over the tunnel.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/images", get(list))
        .route("/images/inspect", get(inspect))
        .route("/images/remove", post(remove))
        .route("/images/prune", post(prune))
        .with_state(agent)
}
