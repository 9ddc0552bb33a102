//! `GET /containerLogs/{ns}/{pod}/{uid}/{container}` over the tunnel: a
//! container's json-file log as plain text (the `log` fields), with
//! `tailLines`, `timestamps`, `sinceSeconds`, `previous` and `follow` (the
//! file is polled for growth until the client goes away).
//!
//! Each run of a container logs to its own file, `<restart count>.log`, as
//! the kubelet does, so `previous` reads the run before the current one;
//! older runs are removed when a new one starts.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use crate::reply::failure;
use crate::Agent;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    follow: Option<bool>,
    tail_lines: Option<usize>,
    timestamps: Option<bool>,
    since_seconds: Option<i64>,
    previous: Option<bool>,
}

/// The directory of a container's logs (one file per run).
pub fn log_dir(agent: &Agent, ns: &str, pod: &str, uid: &str, container: &str) -> PathBuf {
    agent
        .config
        .data_dir
        .join("logs")
        .join(format!("{ns}_{pod}_{uid}"))
        .join(container)
}

/// Run numbers with a log in `dir`, ascending.
pub fn runs(dir: &std::path::Path) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    out.sort_unstable();
    out
}

/// The log file of run `n` in `dir`.
pub fn run_log(dir: &std::path::Path, n: u32) -> PathBuf {
    dir.join(format!("{n}.log"))
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
    let dir = log_dir(&agent, &ns, &pod, &uid, &container);
    let runs = runs(&dir);
    let previous = q.previous.unwrap_or(false);
    let pick = if previous {
        runs.len().checked_sub(2).map(|i| runs[i])
    } else {
        runs.last().copied()
    };
    let Some(path) = pick.map(|n| run_log(&dir, n)) else {
        let msg = if previous {
            format!("previous terminated container {container:?} in pod {pod:?} not found")
        } else {
            format!("container {container:?} in pod {pod:?} has no log on this node yet (has it started?)")
        };
        return failure(
            if previous {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::NOT_FOUND
            },
            msg,
        );
    };
    let Ok(file) = std::fs::File::open(&path) else {
        return failure(
            StatusCode::NOT_FOUND,
            format!("container {container:?} in pod {pod:?}: log vanished"),
        );
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
    let follow = q.follow.unwrap_or(false) && !previous;
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
