//! `selur logs`: a container's log, through the server and the node's tunnel.

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;

use super::{kind_arg, object_path, parse_duration};
use crate::client::{status_error, Client};

/// `selur logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The pod (or pod/NAME).
    pod: String,
    /// Container (needed when the pod has several).
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Keep streaming new lines.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    tail: Option<usize>,
    /// Prefix each line with its RFC 3339 timestamp.
    #[arg(long)]
    timestamps: bool,
    /// Only lines newer than this (`30s`, `5m`, `1h`).
    #[arg(long)]
    since: Option<String>,
    /// The previous run of the container (before its last restart).
    #[arg(short = 'p', long)]
    previous: bool,
}

/// Copy the log to stdout as it arrives (with `-f`, new lines as they come).
pub async fn run(client: &Client, ns: &str, a: LogsArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let name = a
        .pod
        .strip_prefix("pod/")
        .or_else(|| a.pod.strip_prefix("po/"))
        .unwrap_or(&a.pod);
    let kind = kind_arg("pods")?;
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(c) = a.container {
        q.push(("container", c));
    }
    if a.follow {
        q.push(("follow", "true".into()));
    }
    if let Some(t) = a.tail {
        q.push(("tailLines", t.to_string()));
    }
    if a.timestamps {
        q.push(("timestamps", "true".into()));
    }
    if a.previous {
        q.push(("previous", "true".into()));
    }
    if let Some(s) = a.since {
        q.push(("sinceSeconds", parse_duration(&s)?.as_secs().to_string()));
    }
    let resp = client
        .send(
            Method::GET,
            &format!("{}/log", object_path(kind, ns, name)),
            &q,
            None,
        )
        .await?;
    if !resp.status().is_success() {
        let code = resp.status().as_u16();
        let raw = resp.bytes().await.unwrap_or_default();
        let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        return Err(status_error(code, &v, &raw).into());
    }
    let mut stream = resp.bytes_stream();
    let mut out = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk.context("log stream broke")?)?;
        out.flush()?;
    }
    Ok(())
}
