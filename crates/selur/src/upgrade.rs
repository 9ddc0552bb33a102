//! The client side of the streaming subresources: an HTTP/1.1 request with
//! `Upgrade: selur-stream`, after whose `101` the connection is a raw byte
//! stream; and the local terminal's raw mode for `exec -t`.

use std::io::IsTerminal;

use selur_api::stream::PROTOCOL;

use crate::client::{Client, ClientError};

/// An upgraded connection to the server.
pub type Stream = selur_client::upgrade::Stream;

/// `POST path?query` with `Upgrade: selur-stream`; the upgraded connection
/// once the server answers `101`, or its Status error.
pub async fn open(
    client: &Client,
    path: &str,
    query: &[(&str, String)],
) -> Result<Stream, ClientError> {
    client
        .upgrade(hyper::Method::POST, path, query, PROTOCOL)
        .await
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
