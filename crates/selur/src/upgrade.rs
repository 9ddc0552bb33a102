//! The client side of the streaming subresources: an HTTP/1.1 request with
//! `Upgrade: selur-stream`, after whose `101` the connection is a raw byte
//! stream; and the local terminal's raw mode for `exec -t`.

use std::io::IsTerminal;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use selur_api::stream::PROTOCOL;

use crate::client::{status_error, Client, ClientError};

/// An upgraded connection to the server.
pub type Stream = TokioIo<Upgraded>;

fn transport(base: &str, reason: impl std::fmt::Display) -> ClientError {
    ClientError::Transport {
        url: base.to_string(),
        reason: reason.to_string(),
    }
}

/// `POST path?query` with `Upgrade: selur-stream`; the upgraded connection
/// once the server answers `101`, or its Status error.
pub async fn open(
    client: &Client,
    path: &str,
    query: &[(&str, String)],
) -> Result<Stream, ClientError> {
    let base = &client.base;
    let url = reqwest::Url::parse_with_params(&format!("{base}{path}"), query)
        .map_err(|e| transport(base, e))?;
    if url.scheme() != "http" {
        return Err(transport(
            base,
            format!(
                "streaming commands speak plain HTTP to the server for now, not {}",
                url.scheme()
            ),
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| transport(base, "the server URL has no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let tcp =
        tokio::net::TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
            .await
            .map_err(|e| transport(base, e))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| transport(base, e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let path_and_query = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let req = hyper::Request::post(path_and_query)
        .header(header::HOST, format!("{host}:{port}"))
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, PROTOCOL)
        .body(Empty::<Bytes>::new())
        .map_err(|e| transport(base, e))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| transport(base, e))?;
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
        .map_err(|e| transport(base, e))?;
    Ok(TokioIo::new(upgraded))
}

/// The local terminal in raw mode (no echo, no line editing, no signals
/// from keys: everything goes to the remote terminal); restored on drop.
pub struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    /// Raw mode on stdin, when stdin is a terminal.
    pub fn enable() -> std::io::Result<Option<Self>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = rustix::termios::tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw)?;
        Ok(Some(Self { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// The local terminal's size (from stdout, else stdin), if either is one.
pub fn terminal_size() -> Option<selur_api::stream::TerminalSize> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout())
        .or_else(|_| rustix::termios::tcgetwinsize(std::io::stdin()))
        .ok()?;
    (ws.ws_col > 0 && ws.ws_row > 0).then_some(selur_api::stream::TerminalSize {
        cols: ws.ws_col,
        rows: ws.ws_row,
    })
}
