//! Errors of the client: an API `Status`, a transport failure, a bad config.

use std::path::PathBuf;

use serde_json::Value;

/// An error talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a `Status` failure.
    #[error("{message}")]
    Api {
        code: u16,
        reason: String,
        message: String,
        /// `details.kind` (resource) and `details.name`, when given.
        details_kind: Option<String>,
        details_name: Option<String>,
    },
    #[error("cannot reach the Selur API at {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("cannot read client config {path}: {reason} (start `selur server`, or pass --kubeconfig FILE / set SELUR_CONFIG)")]
    Config { path: PathBuf, reason: String },
    /// A 2xx answer whose body is not the object asked for.
    #[error("unexpected answer from {url}: {reason}")]
    Decode { url: String, reason: String },
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// 404.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// 409 (already exists, or a conflict).
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }

    /// 410: the resourceVersion asked for is older than what the server keeps.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }
}

/// Turn an error response into a [`ClientError`].
pub fn status_error(code: u16, v: &Value, raw: &[u8]) -> ClientError {
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| String::from_utf8_lossy(raw).trim().to_string());
    ClientError::Api {
        code,
        reason: v
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        message,
        details_kind: v
            .pointer("/details/kind")
            .and_then(Value::as_str)
            .map(String::from),
        details_name: v
            .pointer("/details/name")
            .and_then(Value::as_str)
            .map(String::from),
    }
}
