//! Upgrade dials: an HTTP/1.1 request with `Connection: Upgrade`, after
//! whose `101` the connection is a raw byte stream. The node tunnel
//! (`selur-tunnel`) and the streaming pod subresources (`selur-stream`)
//! both start here.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::{status_error, Client, ClientError};

/// An upgraded connection to the server.
pub type Stream = TokioIo<Upgraded>;

impl Client {
    /// `METHOD path?query` with `Upgrade: protocol`; the upgraded
    /// connection once the server answers `101`, or its Status error.
    pub async fn upgrade(
        &self,
        method: hyper::Method,
        path: &str,
        query: &[(&str, String)],
        protocol: &str,
    ) -> Result<Stream, ClientError> {
        let base = &self.base;
        let url = reqwest::Url::parse_with_params(&format!("{base}{path}"), query)
            .map_err(|e| self.transport(e))?;
        if url.scheme() != "http" {
            return Err(self.transport(format!(
                "upgrades speak plain HTTP to the server for now, not {}",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| self.transport("the server URL has no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let tcp = tokio::net::TcpStream::connect((
            host.trim_start_matches('[').trim_end_matches(']'),
            port,
        ))
        .await
        .map_err(|e| self.transport(e))?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| self.transport(e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upgrade connection ended");
            }
        });
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let req = hyper::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::HOST, format!("{host}:{port}"))
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, protocol)
            .body(Empty::<Bytes>::new())
            .map_err(|e| self.transport(e))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.transport(e))?;
        if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            let code = resp.status().as_u16();
            let raw = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
            return Err(status_error(code, &v, &raw));
        }
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| self.transport(e))?;
        Ok(TokioIo::new(upgraded))
    }
}
