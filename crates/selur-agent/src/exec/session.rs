//! One streamed exec session: request-body frames drive stdin and the
//! terminal size; output and the exit status go out as response-body
//! frames. The end of the request body (or a dropped response) means the
//! client went away, and the process is killed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use selur_api::stream::{self, ExecStatus, TerminalSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;
use tokio::sync::{mpsc, Notify};

use super::pty::PtyInput;
use super::{exit_code, Started};

type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// Answer 200 now and run the session in the background.
pub(super) fn respond(started: Started, body: Body) -> Response {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(run(started, body, tx));
    let mut resp = Response::new(Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/x-selur-stream"),
    );
    resp
}

async fn run(mut started: Started, body: Body, tx: Tx) {
    let gone = Arc::new(Notify::new());
    let (pty_output, pty_input) = match started.pty.take() {
        Some(p) => (Some(p.output), Some(p.input)),
        None => (None, None),
    };
    let mut outputs = vec![
        // Without a terminal the process writes here; with one, only runc could.
        tokio::spawn(pump(
            started.child.stdout.take(),
            stream::STDOUT,
            tx.clone(),
        )),
        // With a terminal, runc's own stderr carries only its errors.
        tokio::spawn(pump(
            started.child.stderr.take(),
            stream::STDERR,
            tx.clone(),
        )),
    ];
    if let Some(p) = pty_output {
        // The terminal's output; its EIO at the end is an end of file to `pump`.
        outputs.push(tokio::spawn(pump(Some(p), stream::STDOUT, tx.clone())));
    }
    let input = tokio::spawn(read_input(
        body,
        started.child.stdin.take(),
        pty_input,
        gone.clone(),
    ));
    let status = tokio::select! {
        s = started.child.wait() => Some(s),
        _ = gone.notified() => None,
        _ = tx.closed() => None,
    };
    input.abort();
    let Some(status) = status else {
        tracing::debug!("exec client went away; killing the command");
        started.kill().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), started.child.wait()).await;
        for o in outputs {
            o.abort();
        }
        return;
    };
    // Let the output drain; background children may hold it open, so not for long.
    for o in outputs {
        let abort = o.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), o)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    let status = match status {
        Ok(s) => ExecStatus::ExitCode(exit_code(s)),
        Err(e) => ExecStatus::Error(format!("waiting for the command: {e}")),
    };
    let _ = tx
        .send(Ok(Bytes::from(stream::encode(
            stream::STATUS,
            &status.to_json(),
        ))))
        .await;
}

async fn pump(r: Option<impl AsyncRead + Unpin>, channel: u8, tx: Tx) {
    let Some(mut r) = r else { return };
    let mut buf = vec![0u8; 32 << 10];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx
                    .send(Ok(Bytes::from(stream::encode(channel, &buf[..n]))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Apply the client's frames; notify `gone` when its stream ends or breaks.
async fn read_input(
    body: Body,
    mut stdin: Option<ChildStdin>,
    mut pty: Option<PtyInput>,
    gone: Arc<Notify>,
) {
    let mut frames = body.into_data_stream();
    let mut dec = stream::Decoder::new();
    while let Some(Ok(chunk)) = frames.next().await {
        dec.push(&chunk);
        loop {
            let f = match dec.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "bad exec frame");
                    gone.notify_one();
                    return;
                }
            };
            match (f.channel, pty.as_mut()) {
                (stream::STDIN, Some(p)) => {
                    // A terminal's EOF is its EOF character (^D).
                    let data: &[u8] = if f.payload.is_empty() {
                        b"\x04"
                    } else {
                        &f.payload
                    };
                    let _ = p.writer.write_all(data).await;
                }
                (stream::STDIN, None) if f.payload.is_empty() => stdin = None,
                (stream::STDIN, None) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&f.payload).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                (stream::RESIZE, Some(p)) => {
                    if let Ok(s) = serde_json::from_slice::<TerminalSize>(&f.payload) {
                        let _ = p.resize(s.cols, s.rows);
                    }
                }
                _ => {}
            }
        }
    }
    gone.notify_one();
}
