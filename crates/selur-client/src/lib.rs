//! The one client of Selur's API, for the CLI, the node agent, the benches
//! and the tests: where the server is (kubeconfig), requests with API
//! `Status` errors as [`ClientError`]s, typed access to k8s-openapi kinds
//! and to Selur's own kinds ([`resource`]), a [`watcher`] that never misses
//! a delete, an event [`recorder`], and the upgrade dials that the node
//! tunnel and the streaming subresources (exec, attach, port-forward) use.
//!
//! Every connection to the server starts here, so transport security and
//! credentials are added in one place.
//!
//! It is not a cache or a controller runtime: callers keep their own state.

#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod recorder;
pub mod resource;
pub mod upgrade;
pub mod watcher;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use config::DEFAULT_CONFIG;
pub use error::{status_error, ClientError};
/// The HTTP types requests and raw answers are made of ([`Client::send`],
/// [`Client::builder`]), so callers need no HTTP crate of their own.
pub use reqwest::{Body, Method, Response, StatusCode};
pub use resource::{Api, DeleteParams, ListParams, ResourcePath};

/// A handle on the API server; cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct Client {
    /// The server URL without a trailing slash, e.g. `http://127.0.0.1:6443`.
    pub base: String,
    http: reqwest::Client,
}

impl Client {
    /// From `--server`, else the kubeconfig at `config` (or [`DEFAULT_CONFIG`]).
    pub fn new(server: Option<&str>, config: Option<&Path>) -> Result<Self, ClientError> {
        match server {
            Some(s) => Self::from_url(s),
            None => {
                let path = config
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
                let text = std::fs::read_to_string(&path).map_err(|e| ClientError::Config {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let base =
                    config::server_from_kubeconfig(&text).ok_or_else(|| ClientError::Config {
                        path,
                        reason: "no clusters[].cluster.server in it".into(),
                    })?;
                Self::from_url(&base)
            }
        }
    }

    /// For the server at `url` (`http://HOST:PORT`).
    pub fn from_url(url: &str) -> Result<Self, ClientError> {
        let base = url.trim_end_matches('/').to_string();
        // The API client trusts only certificates it is given (the cluster
        // CA, with the security issue), never the host's CA store: so it
        // needs no CA bundle on the host (a chroot, a distroless image).
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .tls_certs_only(std::iter::empty())
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
        let resp = self
            .execute(self.request_builder(method, path, query, body))
            .await?;
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Send and return the raw response whatever its status (watch
    /// streams, downloads, tests of exact codes).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<reqwest::Response, ClientError> {
        self.execute_raw(self.request_builder(method, path, query, body))
            .await
    }

    fn request_builder(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<(&str, Vec<u8>)>,
    ) -> reqwest::RequestBuilder {
        let req = self.builder(method, path).query(query);
        match body {
            Some((ct, b)) => req.header(reqwest::header::CONTENT_TYPE, ct).body(b),
            None => req,
        }
    }

    /// A request builder for `path` on the server, for bodies that stream
    /// (image uploads); send it with [`Client::execute`].
    pub fn builder(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{}", self.base, path))
    }

    /// Send a request made with [`Client::builder`]; non-2xx answers become
    /// their `Status` error.
    pub async fn execute(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let resp = self.execute_raw(req).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let code = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(status_error(code, &v, &bytes))
    }

    /// Send a request made with [`Client::builder`] and return the raw
    /// answer whatever its status (streamed uploads whose caller reads the
    /// code itself).
    pub async fn execute_raw(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        req.send().await.map_err(|e| self.transport(e))
    }

    pub(crate) fn transport(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::Transport {
            url: self.base.clone(),
            reason: e.to_string(),
        }
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.request(Method::GET, path, &[], None).await
    }

    /// A request with a JSON body of `content_type`.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: &Value,
        content_type: &str,
    ) -> Result<Value, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Decode {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        self.request(method, path, query, Some((content_type, bytes)))
            .await
    }

    /// `PATCH path` with a JSON merge patch.
    pub async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Value, ClientError> {
        self.json(
            Method::PATCH,
            path,
            &[],
            patch,
            "application/merge-patch+json",
        )
        .await
    }

    /// `POST path` with a JSON object.
    pub async fn post(&self, path: &str, obj: &Value) -> Result<Value, ClientError> {
        self.json(Method::POST, path, &[], obj, "application/json")
            .await
    }
}
