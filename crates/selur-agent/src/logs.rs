//! `GET /containerLogs/{ns}/{pod}/{uid}/{container}` over the tunnel: a
//! container's json-file log as plain text (the `log` fields), with
//! `tailLines`, `timestamps`, `sinceSeconds` and `follow` (the file is polled
//! for growth until the client goes away).

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use crate::images::failure;
use crate::Agent;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    follow: Option<bool>,
    tail_lines: Option<usize>,
    timestamps: Option<bool>,
    since_seconds: Option<i64>,
}

/// Where a container's current log lives.
pub fn log_path(agent: &Agent, ns: &str, pod: &str, uid: &str, container: &str) -> PathBuf {
    agent
        .config
        .data_dir
        .join("logs")
        .join(format!("{ns}_{pod}_{uid}"))
        .join(container)
        .join("0.log")
}

fn render(
    line: &str,
    q: &LogQuery,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    let time = v["time"].as_str().unwrap_or("");
    if let Some(s) = since {
        let t = chrono::DateTime::parse_from_rfc3339(time).ok()?;
        if t < s {
            return None;
        }
    }
    let text = v["log"].as_str().unwrap_or("");
    Some(if q.timestamps.unwrap_or(false) {
        format!("{time} {text}")
    } else {
        text.to_string()
    })
}

pub async fn container_logs(
    State(agent): State<Arc<Agent>>,
    Path((ns, pod, uid, container)): Path<(String, String, String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let path = log_path(&agent, &ns, &pod, &uid, &container);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => {
            return failure(
                StatusCode::NOT_FOUND,
                format!("container {container:?} in pod {pod:?} has no log on this node yet (has it started?)"),
            )
        }
    };
    let since = q
        .since_seconds
        .map(|s| chrono::Utc::now() - chrono::Duration::seconds(s));
    let mut reader = BufReader::new(file);
    let mut lines: Vec<String> = Vec::new();
    let mut buf = String::new();
    while reader.read_line(&mut buf).unwrap_or(0) > 0 {
        if buf.ends_with('\n') {
            if let Some(l) = render(buf.trim_end(), &q, since) {
                lines.push(l);
            }
            buf.clear();
        } else {
            break;
        }
    }
    let pos = reader.stream_position().unwrap_or(0) - buf.len() as u64;
    if let Some(n) = q.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    let follow = q.follow.unwrap_or(false);
    tokio::spawn(async move {
        if !lines.is_empty() && tx.send(bytes::Bytes::from(lines.concat())).await.is_err() {
            return;
        }
        if !follow {
            return;
        }
        let mut pos = pos;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = tx.closed() => return,
            }
            let Ok(mut f) = std::fs::File::open(&path) else {
                return;
            };
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len < pos {
                pos = 0; // rotated
            }
            if len == pos || f.seek(SeekFrom::Start(pos)).is_err() {
                continue;
            }
            let mut r = BufReader::new(f);
            let mut out = String::new();
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 && line.ends_with('\n') {
                pos += line.len() as u64;
                if let Some(l) = render(line.trim_end(), &q, None) {
                    out.push_str(&l);
                }
                line.clear();
            }
            if !out.is_empty() && tx.send(bytes::Bytes::from(out)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        Ok::<_, std::convert::Infallible>,
    );
    Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(axum::body::Body::from_stream(stream))
        .unwrap_or_else(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, e))
        .into_response()
}
