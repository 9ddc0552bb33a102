//! Replies of the node-local API: errors as Kubernetes `Status` bodies.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

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
