//! The node-local image API (list, inspect, remove, prune, import, save,
//! build, lint, pull), routed by [`crate::node_api`] and reached through the
//! server at `/api/v1/nodes/{node}/proxy/images...`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::reply::failure;
use crate::Agent;

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

pub(crate) async fn list(State(a): State<Arc<Agent>>) -> Response {
    match a.images.list() {
        Ok(l) => Json(json!({"node": a.config.node_name, "images": l})).into_response(),
        Err(e) => store_failure(e),
    }
}

pub(crate) async fn inspect(State(a): State<Arc<Agent>>, Query(q): Query<NameQuery>) -> Response {
    match a.images.inspect(&q.name) {
        Ok(i) => Json(i).into_response(),
        Err(e) => store_failure(e),
    }
}

pub(crate) async fn remove(State(a): State<Arc<Agent>>, Query(q): Query<NameQuery>) -> Response {
    match a.images.remove(&q.name) {
        Ok(names) => {
            a.changed.notify_one();
            Json(json!({"untagged": names})).into_response()
        }
        Err(e) => store_failure(e),
    }
}

pub(crate) async fn prune(State(a): State<Arc<Agent>>) -> Response {
    match a.images.prune(&Default::default()) {
        Ok(freed) => {
            a.changed.notify_one();
            Json(json!({"freedBytes": freed})).into_response()
        }
        Err(e) => store_failure(e),
    }
}

/// A `Write` that hands what is written to an async body stream in chunks.
struct ChannelWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
}

impl ChannelWriter {
    const CHUNK: usize = 256 << 10;

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The image as an oci-archive (a tar of an OCI layout), streamed.
pub(crate) async fn save(State(a): State<Arc<Agent>>, Query(q): Query<NameQuery>) -> Response {
    // Unknown names answer 404 before anything is streamed.
    if let Err(e) = a.images.resolve(&q.name) {
        return store_failure(e);
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let agent = a.clone();
    tokio::task::spawn_blocking(move || {
        let err_tx = tx.clone();
        let w = ChannelWriter {
            buf: Vec::with_capacity(ChannelWriter::CHUNK),
            tx,
        };
        if let Err(e) = selur_image::export::export_oci_archive(&agent.images, &q.name, w) {
            tracing::warn!(image = %q.name, error = %e, "image save failed");
            // Ends the response with an error: the client sees a cut-off body.
            let _ = err_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-tar")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// Write a request body to a temp file in the image store (same file system).
async fn body_to_temp(
    a: &Agent,
    body: axum::body::Body,
) -> Result<tempfile::NamedTempFile, Response> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let tmp = a.images.temp_file().map_err(store_failure)?;
    let std_file = tmp
        .reopen()
        .map_err(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let mut f = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(std_file));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| failure(StatusCode::BAD_REQUEST, format!("upload interrupted: {e}")))?;
        f.write_all(&chunk)
            .await
            .map_err(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    }
    f.flush()
        .await
        .map_err(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(tmp)
}

#[derive(Deserialize)]
pub struct ImportQuery {
    tag: Option<String>,
}

pub(crate) async fn import(
    State(a): State<Arc<Agent>>,
    Query(q): Query<ImportQuery>,
    body: axum::body::Body,
) -> Response {
    let tmp = match body_to_temp(&a, body).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let agent = a.clone();
    let res = tokio::task::spawn_blocking(move || {
        selur_image::import::import(&agent.images, tmp.path(), q.tag.as_deref())
    })
    .await;
    match res {
        Ok(Ok(images)) => {
            a.changed.notify_one();
            let list: Vec<_> = images
                .iter()
                .map(|i| json!({"name": i.name, "digest": i.digest, "size": i.size}))
                .collect();
            Json(json!({"images": list})).into_response()
        }
        Ok(Err(e)) => failure(StatusCode::BAD_REQUEST, e),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Why an image build over the node API failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the build context archive is not valid: {source}")]
    Context {
        #[source]
        source: std::io::Error,
    },
    /// Shown with paths relative to the build context (the temp dir it was
    /// unpacked to means nothing to the user).
    #[error("{}", .source.to_string().replace(&.context.display().to_string(), ""))]
    Build {
        context: std::path::PathBuf,
        #[source]
        source: selur_image::build::BuildError,
    },
}

pub(crate) async fn build(
    State(a): State<Arc<Agent>>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    body: axum::body::Body,
) -> Response {
    let tags: Vec<String> = raw
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.strip_prefix("tag="))
        .map(percent_decode)
        .collect();
    let tmp = match body_to_temp(&a, body).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let agent = a.clone();
    let res = tokio::task::spawn_blocking(move || -> Result<_, BuildError> {
        let tmp_root = agent.images.root().join("tmp");
        let dir = tempfile::tempdir_in(&tmp_root).map_err(|source| BuildError::Io {
            what: "creating a build dir in",
            path: tmp_root.clone(),
            source,
        })?;
        let file = std::fs::File::open(tmp.path()).map_err(|source| BuildError::Io {
            what: "opening",
            path: tmp.path().to_path_buf(),
            source,
        })?;
        // The tar crate refuses entries that would land outside `dir`.
        tar::Archive::new(file)
            .unpack(dir.path())
            .map_err(|source| BuildError::Context { source })?;
        let cf = dir.path().join(".selur/Containerfile");
        selur_image::build::build(
            &agent.images,
            &cf,
            dir.path(),
            &tags,
            &selur_image::build::BuildOptions::default(),
        )
        .map_err(|source| BuildError::Build {
            context: dir.path().join(".selur/"),
            source,
        })
    })
    .await;
    match res {
        Ok(Ok(b)) => {
            a.changed.notify_one();
            Json(json!({"digest": b.digest, "names": b.names})).into_response()
        }
        Ok(Err(e)) => failure(StatusCode::BAD_REQUEST, e),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LintQuery {
    name: String,
    budget_bytes: Option<u64>,
}

pub(crate) async fn lint(State(a): State<Arc<Agent>>, Query(q): Query<LintQuery>) -> Response {
    let agent = a.clone();
    let res = tokio::task::spawn_blocking(move || {
        selur_image::lint::lint(&agent.images, &q.name, q.budget_bytes)
    })
    .await;
    match res {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => failure(StatusCode::BAD_REQUEST, e),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
pub struct PullQuery {
    name: String,
}

/// Pull through the registry settings, streaming progress as JSON lines
/// (`{"progress": ...}`), then `{"result": ...}` or `{"error": "..."}`.
pub(crate) async fn pull(State(a): State<Arc<Agent>>, Query(q): Query<PullQuery>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    let agent = a.clone();
    tokio::spawn(async move {
        let line = |v: serde_json::Value| bytes::Bytes::from(format!("{v}\n"));
        let ptx = tx.clone();
        let progress = move |p: selur_image::pull::PullProgress| {
            // Dropped progress lines only make the bar coarser.
            let _ = ptx.try_send(line(
                json!({"progress": {"layer": p.layer, "done": p.done, "total": p.total}}),
            ));
        };
        let res =
            selur_image::pull::pull(&agent.images, &agent.config.registries, &q.name, &progress)
                .await;
        let last = match res {
            Ok(r) => {
                agent.changed.notify_one();
                json!({"result": {"name": r.name, "digest": r.digest, "size": r.size,
                    "layersFetched": r.layers_fetched, "layersReused": r.layers_reused}})
            }
            Err(e) => json!({"error": e.to_string()}),
        };
        let _ = tx.send(line(last)).await;
    });
    let stream = futures::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        Ok::<_, std::convert::Infallible>,
    );
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(axum::body::Body::from_stream(stream))
        .unwrap_or_else(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, e))
}
