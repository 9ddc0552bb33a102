//! Splicing an upgraded client connection onto a node stream, and a node's
//! refusal as an API error.

use axum::body::Body;
use axum::response::Response;

use crate::status::ApiError;

/// A node's error response as an [`ApiError`] (its Status message kept).
pub(super) async fn node_error(node: &str, resp: Response) -> ApiError {
    use http_body_util::BodyExt;
    let code = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let message = v["message"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| format!("node {node:?} answered HTTP {code}"));
    let reason = match code {
        400 => "BadRequest",
        404 => "NotFound",
        409 => "Conflict",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    ApiError::new(code, reason, message)
}

/// Pipe an upgraded client connection and a node stream both ways until
/// both directions end. The client's EOF ends the request body (a half
/// close); the end of the node's response shuts down the client's write side.
/// A reset from either side ends both.
pub(super) async fn splice<IO>(
    io: IO,
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    body: Body,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut rd, mut wr) = tokio::io::split(io);
    let up = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = tokio::select! {
                r = rd.read(&mut buf) => r,
                _ = tx.closed() => return,
            };
            match n {
                Ok(0) => return,
                Ok(n) => {
                    if tx
                        .send(Ok(bytes::Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    };
    let down = async move {
        let mut data = body.into_data_stream();
        while let Some(chunk) = data.next().await {
            match chunk {
                Ok(b) => {
                    if wr.write_all(&b).await.is_err() {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        let _ = wr.shutdown().await;
        true
    };
    let up = tokio::spawn(up);
    // A broken node stream ends the client's connection too; a clean end
    // lets the client finish sending (half close) until the node stops reading.
    if down.await {
        let _ = up.await;
    } else {
        up.abort();
    }
}
