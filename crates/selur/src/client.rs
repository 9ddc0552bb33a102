//! A small API client over HTTP: reads the kubeconfig the server wrote,
//! sends requests, and turns `Status` error bodies into [`ClientError`]s.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::Value;

/// Default admin config written by `selur server` with the default data dir.
pub const DEFAULT_CONFIG: &str = "/var/lib/selur/kubeconfig";

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
    #[error("cannot read client config {path}: {reason} (start `selur server`, or pass --config FILE / set SELUR_CONFIG)")]
    Config { path: PathBuf, reason: String },
}

impl ClientError {
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Where the API is.
#[derive(Debug, Clone)]
pub struct Client {
    pub base: String,
    http: reqwest::Client,
}

fn server_from_kubeconfig(text: &str) -> Option<String> {
    let v: Value = yaml_serde::from_str(text).ok()?;
    let current = v.get("current-context").and_then(Value::as_str);
    let contexts = v.get("contexts").and_then(Value::as_array);
    let cluster_name = contexts
        .and_then(|cs| {
            cs.iter()
                .find(|c| current.is_none() || c.get("name").and_then(Value::as_str) == current)
        })
        .and_then(|c| c.pointer("/context/cluster"))
        .and_then(Value::as_str);
    let clusters = v.get("clusters").and_then(Value::as_array)?;
    let cluster = clusters.iter().find(|c| {
        cluster_name.is_none() || c.get("name").and_then(Value::as_str) == cluster_name
    })?;
    cluster
        .pointer("/cluster/server")
        .and_then(Value::as_str)
        .map(|s| s.trim_end_matches('/').to_string())
}

impl Client {
    /// From `--server`, else the kubeconfig at `config` (or [`DEFAULT_CONFIG`]).
    pub fn new(server: Option<&str>, config: Option<&Path>) -> Result<Self, ClientError> {
        let base = match server {
            Some(s) => s.trim_end_matches('/').to_string(),
            None => {
                let path = config
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
                let text = std::fs::read_to_string(&path).map_err(|e| ClientError::Config {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                server_from_kubeconfig(&text).ok_or_else(|| ClientError::Config {
                    path,
                    reason: "no clusters[].cluster.server in it".into(),
                })?
            }
        };
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| ClientError::Transport {
                url: base.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self { base, http })
    }

    /// Send a request; `Ok` carries the JSON body of a 2xx answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Value, ClientError> {
        let resp = self.send(method, path, query, body).await?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            Ok(v)
        } else {
            Err(status_error(status.as_u16(), &v, &bytes))
        }
    }

    /// Send and return the raw response (watch streams).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url).query(query);
        if let Some((ct, b)) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, ct).body(b);
        }
        req.send().await.map_err(|e| self.transport(e))
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        ClientError::Transport {
            url: self.base.clone(),
            reason: e.to_string(),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.request(Method::GET, path, &[], None).await
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: &Value,
        content_type: &str,
    ) -> Result<Value, ClientError> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.request(method, path, query, Some((content_type, bytes)))
            .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_server_from_kubeconfig() {
        let kc = "apiVersion: v1\nkind: Config\nclusters:\n- name: selur\n  cluster:\n    server: http://127.0.0.1:6443/\ncontexts:\n- name: selur\n  context:\n    cluster: selur\ncurrent-context: selur\n";
        assert_eq!(
            server_from_kubeconfig(kc).as_deref(),
            Some("http://127.0.0.1:6443")
        );
    }
}
