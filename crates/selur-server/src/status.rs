//! API errors as Kubernetes `Status` objects with the matching HTTP codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use selur_api::decode::DecodeError;
use selur_api::{FieldError, ResourceKind};
use selur_store::StoreError;

/// One `details.causes[]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// An error the API returns to a client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details` of the Status; boxed to keep `Result<_, ApiError>` small.
    pub details: Box<Details>,
}

/// What a `Status` is about.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Details {
    pub name: Option<String>,
    pub group: Option<String>,
    pub kind: Option<String>,
    pub causes: Vec<Cause>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: Box::default(),
        }
    }
    fn about(mut self, kind: &ResourceKind, name: &str) -> Self {
        self.details.name = Some(name.to_string());
        self.details.group = Some(kind.group.to_string());
        self.details.kind = Some(kind.plural.to_string());
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    pub fn not_found(kind: &ResourceKind, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", kind.qualified_plural(), name),
        )
        .about(kind, name)
    }
    pub fn not_found_path(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }
    pub fn already_exists(kind: &ResourceKind, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", kind.qualified_plural(), name),
        )
        .about(kind, name)
    }
    pub fn conflict(kind: &ResourceKind, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {}",
                kind.qualified_plural(),
                name,
                why
            ),
        )
        .about(kind, name)
    }
    pub fn stale(kind: &ResourceKind, name: &str) -> Self {
        Self::conflict(
            kind,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }
    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }
    /// 422 with one cause per field error, as the API server words it.
    pub fn invalid(kind: &ResourceKind, name: &str, errors: &[FieldError]) -> Self {
        let mut e = Self::new(
            422,
            "Invalid",
            format!(
                "{} \"{}\" is invalid: {}",
                kind.kind,
                name,
                selur_api::error::join(errors)
            ),
        )
        .about(kind, name);
        e.details.kind = Some(kind.kind.to_string());
        e.details.causes = errors
            .iter()
            .map(|f| Cause {
                reason: f.reason().to_string(),
                message: f.to_string(),
                field: f.path.clone(),
            })
            .collect();
        e
    }
    /// A manifest that does not decode: 400 (unknown kind is 404 as `no matches for kind`).
    pub fn decode(e: &DecodeError) -> Self {
        let mut err = match e {
            DecodeError::UnknownKind { .. } => Self::new(404, "NotFound", e.to_string()),
            _ => Self::bad_request(e.to_string()),
        };
        err.details.causes = e
            .paths()
            .into_iter()
            .map(|p| Cause {
                reason: "FieldValueInvalid".into(),
                message: e.to_string(),
                field: p,
            })
            .collect();
        err
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        let d = &self.details;
        if let Some(n) = &d.name {
            details.insert("name".into(), json!(n));
        }
        if let Some(g) = &d.group {
            details.insert("group".into(), json!(g));
        }
        if let Some(k) = &d.kind {
            details.insert("kind".into(), json!(k));
        }
        if !d.causes.is_empty() {
            details.insert(
                "causes".into(),
                Value::Array(
                    d.causes
                        .iter()
                        .map(
                            |c| json!({"reason": c.reason, "message": c.message, "field": c.field}),
                        )
                        .collect(),
                ),
            );
        }
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !details.is_empty() {
            s["details"] = Value::Object(details);
        }
        s
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Compacted {
                requested,
                compacted,
            } => ApiError::gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.to_status())).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
