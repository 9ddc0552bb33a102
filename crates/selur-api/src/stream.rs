//! The `selur-stream` protocol of the `exec` and `portforward` pod
//! subresources (Kubernetes speaks SPDY or WebSocket there; Selur speaks
//! this simpler protocol over an HTTP/1.1 Upgrade).
//!
//! After `101 Switching Protocols`, an `exec` connection carries frames
//! `[channel u8][len u32 big-endian][payload]` both ways: the client sends
//! [`STDIN`] (an empty payload is stdin EOF) and [`RESIZE`]; the server sends
//! [`STDOUT`], [`STDERR`] (a terminal's output is all on stdout) and, last,
//! [`STATUS`] (`{"exitCode":N}` or `{"error":"..."}`). A `portforward`
//! connection is a raw byte pipe to one port of the pod; one connection per
//! forwarded TCP connection.
//!
//! Only framing lives here (no I/O), so the CLI, the server and the agent
//! agree on it.

use serde::{Deserialize, Serialize};

/// The `Upgrade` header value.
pub const PROTOCOL: &str = "selur-stream";

/// Client to server: bytes for the process's stdin; an empty frame is EOF.
pub const STDIN: u8 = 0;
/// Server to client: the process's stdout (or its terminal's output).
pub const STDOUT: u8 = 1;
/// Server to client: the process's stderr (not used with a terminal).
pub const STDERR: u8 = 2;
/// Server to client, last frame: [`ExecStatus`] as JSON.
pub const STATUS: u8 = 3;
/// Client to server: [`TerminalSize`] as JSON.
pub const RESIZE: u8 = 4;

/// Largest payload a peer accepts in one frame.
pub const MAX_FRAME: usize = 1 << 20;

const HEADER: usize = 5;

/// How an exec'd command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExecStatus {
    /// The command ran and exited with this code (128 + N when killed by signal N).
    ExitCode(i32),
    /// The command could not be run or was cut off.
    Error(String),
}

impl ExecStatus {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A terminal's size, sent on [`RESIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    pub cols: u16,
    pub rows: u16,
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub channel: u8,
    pub payload: Vec<u8>,
}

/// Encode one frame.
pub fn encode(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(channel);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A malformed stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes on channel {channel} is larger than the {MAX_FRAME}-byte limit")]
    TooLarge { channel: u8, len: usize },
}

/// Splits a byte stream, fed in arbitrary pieces, into frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let channel = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge { channel, len });
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let payload = self.buf[HEADER..HEADER + len].to_vec();
        self.buf.drain(..HEADER + len);
        Ok(Some(Frame { channel, payload }))
    }

    /// Bytes received that do not make a whole frame yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_arbitrary_splits() {
        let mut wire = encode(STDOUT, b"hello");
        wire.extend(encode(STDIN, b""));
        wire.extend(encode(STATUS, &ExecStatus::ExitCode(3).to_json()));
        for split in 0..wire.len() {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                d.push(part);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 3, "split at {split}");
            assert_eq!(got[0].payload, b"hello");
            assert!(got[1].payload.is_empty() && got[1].channel == STDIN);
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn status_and_resize_json_shapes() {
        assert_eq!(ExecStatus::ExitCode(3).to_json(), br#"{"exitCode":3}"#);
        assert_eq!(
            ExecStatus::Error("x".into()).to_json(),
            br#"{"error":"x"}"#.to_vec()
        );
        let s: TerminalSize = serde_json::from_str(r#"{"cols":80,"rows":24}"#).unwrap();
        assert_eq!(s, TerminalSize { cols: 80, rows: 24 });
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut d = Decoder::new();
        d.push(&[STDIN, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            d.next_frame(),
            Err(FrameError::TooLarge { channel: 0, .. })
        ));
    }
}
