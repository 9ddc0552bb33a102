//! `selur exec`: run a command in a container, over the pod's `exec`
//! streaming subresource: an upgraded HTTP/1.1 connection to the server
//! ([`crate::upgrade`]), which splices it through the node's tunnel to the
//! agent.

use std::io::Write;

use anyhow::Context;
use clap::Args;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use selur_api::stream::{self, ExecStatus};

use crate::client::Client;
use crate::upgrade;

/// The annotation naming the container used when `-c` is not given.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// A remote command's nonzero exit code, to become this process's exit code.
#[derive(Debug)]
pub struct RemoteExit(pub i32);

impl std::fmt::Display for RemoteExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "command terminated with exit code {}", self.0)
    }
}

impl std::error::Error for RemoteExit {}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The pod: NAME or pod/NAME.
    pub pod: String,
    /// Container (default: the pod's `kubectl.kubernetes.io/default-container` annotation, else its first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Run the command on a terminal (with -i on a terminal, the local one goes into raw mode).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The pod's name in `NAME`, `pod/NAME`, `pods/NAME` or `po/NAME`.
pub(super) fn pod_name(arg: &str) -> &str {
    arg.strip_prefix("pod/")
        .or_else(|| arg.strip_prefix("pods/"))
        .or_else(|| arg.strip_prefix("po/"))
        .unwrap_or(arg)
}

/// The REST path of pod `name` in `ns`.
pub(super) fn pod_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/pods/{name}")
}

/// The container to exec into; says on stderr which one when it had to choose among several.
fn choose_container(pod: &Value, wanted: Option<&str>) -> anyhow::Result<String> {
    if let Some(c) = wanted {
        return Ok(c.to_string());
    }
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let annotated = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DEFAULT_CONTAINER))
        .and_then(Value::as_str);
    let chosen = annotated
        .or(names.first().copied())
        .context("the pod has no containers")?;
    if names.len() > 1 {
        eprintln!(
            "Defaulted container {chosen:?} out of: {}",
            names.join(", ")
        );
    }
    Ok(chosen.to_string())
}

/// `selur exec`: run a command in a container; returns once it exited
/// ([`RemoteExit`] carries a nonzero code).
pub async fn run(client: &Client, ns: &str, a: ExecArgs) -> anyhow::Result<()> {
    let name = pod_name(&a.pod);
    let pod = client.get(&pod_path(ns, name)).await?;
    let container = choose_container(&pod, a.container.as_deref())?;
    let mut q: Vec<(&str, String)> = vec![
        ("container", container),
        ("stdin", a.stdin.to_string()),
        ("stdout", "true".into()),
        ("stderr", (!a.tty).to_string()),
        ("tty", a.tty.to_string()),
    ];
    q.extend(a.command.iter().map(|c| ("command", c.clone())));
    let conn = upgrade::open(client, &format!("{}/exec", pod_path(ns, name)), &q).await?;
    let (mut rd, mut wr) = tokio::io::split(conn);

    // Everything we send goes through one writer.
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
        // Keep the connection open: for exec, its end means "the client went away".
        std::future::pending::<()>().await;
    });
    let raw = if a.tty && a.stdin {
        upgrade::RawMode::enable().context("putting the terminal into raw mode")?
    } else {
        None
    };
    if a.tty {
        spawn_resizes(tx.clone());
    }
    if a.stdin {
        spawn_stdin(tx.clone());
    }
    drop(tx);
    let status = read_output(&mut rd).await;
    writer.abort();
    drop(raw);
    match status? {
        ExecStatus::ExitCode(0) => Ok(()),
        ExecStatus::ExitCode(n) => Err(RemoteExit(n).into()),
        ExecStatus::Error(m) => anyhow::bail!("{m}"),
    }
}

/// Copy stdout and stderr frames out until the status frame.
async fn read_output(rd: &mut (impl tokio::io::AsyncRead + Unpin)) -> anyhow::Result<ExecStatus> {
    let mut dec = stream::Decoder::new();
    let mut buf = vec![0u8; 32 << 10];
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    loop {
        while let Some(f) = dec.next_frame()? {
            match f.channel {
                stream::STDOUT => {
                    out.write_all(&f.payload)?;
                    out.flush()?;
                }
                stream::STDERR => {
                    err.write_all(&f.payload)?;
                    err.flush()?;
                }
                stream::STATUS => {
                    return serde_json::from_slice(&f.payload)
                        .context("the server sent a malformed exit status");
                }
                _ => {}
            }
        }
        let n = rd.read(&mut buf).await.context("the exec stream broke")?;
        if n == 0 {
            anyhow::bail!("the connection closed before the command's exit status arrived");
        }
        dec.push(&buf[..n]);
    }
}

/// Send the terminal size now and on every `SIGWINCH`.
fn spawn_resizes(tx: mpsc::Sender<Vec<u8>>) {
    tokio::spawn(async move {
        let mut winch =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
        loop {
            if let Some(size) = upgrade::terminal_size() {
                let json = serde_json::to_vec(&size).unwrap_or_default();
                if tx
                    .send(stream::encode(stream::RESIZE, &json))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let Some(w) = winch.as_mut() else { return };
            if w.recv().await.is_none() {
                return;
            }
        }
    });
}

/// Forward stdin from a plain thread (a blocking read there never holds up
/// the exit), then an empty frame for EOF.
fn spawn_stdin(tx: mpsc::Sender<Vec<u8>>) {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 << 10];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if tx
                .blocking_send(stream::encode(stream::STDIN, &buf[..n]))
                .is_err()
                || n == 0
            {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_container_follows_the_annotation() {
        let pod = serde_json::json!({"metadata": {"annotations": {DEFAULT_CONTAINER: "b"}},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(choose_container(&pod, None).unwrap(), "b");
        assert_eq!(choose_container(&pod, Some("a")).unwrap(), "a");
        let plain = serde_json::json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(choose_container(&plain, None).unwrap(), "a");
    }
}
