//! A real all-in-one `selur server` process, its API, image builds and watches.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use futures::StreamExt;
use selur_client::{Client, Method, Response};
use serde_json::Value;

use super::host::Host;
use super::workload::Workload;
use super::NODE;

pub const PODS: &str = "/api/v1/namespaces/default/pods";
// ---------------------------------------------------------------- server and API

pub struct Api {
    pub c: Client,
}

impl Api {
    /// `method path` with an optional JSON body; the raw answer, whatever its status.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Response> {
        let body = match body {
            Some(b) => Some(("application/json", serde_json::to_vec(b)?)),
            None => None,
        };
        Ok(self.c.send(method, path, &[], body).await?)
    }

    /// `GET path`, the answer's JSON whatever its status.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        Ok(self.send(Method::GET, path, None).await?.json().await?)
    }

    pub async fn post_pod(&self, pod: &Value) -> Result<Value> {
        let r = self.send(Method::POST, PODS, Some(pod)).await?;
        let code = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        ensure!(code == 201, "create pod: HTTP {code}: {body}");
        Ok(body)
    }

    pub async fn delete_pod(&self, name: &str) -> Result<()> {
        let r = self
            .send(Method::DELETE, &format!("{PODS}/{name}"), None)
            .await?;
        let code = r.status().as_u16();
        ensure!(
            matches!(code, 200 | 202 | 404),
            "delete pod {name}: HTTP {code}: {}",
            r.text().await.unwrap_or_default()
        );
        Ok(())
    }
}

/// Start `selur server` (all-in-one, node `NODE`, loopback port, data in a
/// temp dir named `{host.label}-*`) with `extra` arguments, and wait until
/// the node registered.
pub async fn start_server(
    selur: &Path,
    server_log: Option<&Path>,
    extra: &[&str],
    host: &mut Host,
) -> Result<Api> {
    let data = tempfile::Builder::new()
        .prefix(&format!("{}-", host.label))
        .tempdir()?;
    let dir = data.path().to_path_buf();
    host.data = Some(data);
    let log_path = server_log
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("server.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    use std::os::unix::process::CommandExt;
    let child = Command::new(selur)
        .arg("server")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen", "127.0.0.1:0", "--node-name", NODE])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // Its own process group: Ctrl-C reaches the bench, which cleans up.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} server", selur.display()))?;
    host.server = Some(child);
    let log_tail = || {
        let t = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    let kc = dir.join("kubeconfig");
    let start = Instant::now();
    let url = loop {
        if let Ok(t) = std::fs::read_to_string(&kc) {
            if let Some(l) = t.lines().find(|l| l.trim_start().starts_with("server:")) {
                break l
                    .trim_start()
                    .trim_start_matches("server:")
                    .trim()
                    .to_string();
            }
        }
        if let Some(c) = host.server.as_mut() {
            if let Some(st) = c.try_wait()? {
                bail!("selur server exited ({st}):\n{}", log_tail());
            }
        }
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "no kubeconfig after 30 s:\n{}",
            log_tail()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let api = Api {
        c: Client::from_url(&url)?,
    };
    loop {
        let r = api
            .send(Method::GET, &format!("/api/v1/nodes/{NODE}"), None)
            .await;
        if r.is_ok_and(|r| r.status().as_u16() == 200) {
            break;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(60),
            "node {NODE} did not register within 60 s:\n{}",
            log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(api)
}

/// `selur image build -t TAG` of a context holding the workload's binary.
pub async fn build_image(
    host: &Host,
    w: &Workload,
    tag: &str,
    kubeconfig: &Path,
    selur: &Path,
) -> Result<()> {
    let ctx = host.data_dir()?.join("ctx");
    std::fs::create_dir_all(&ctx)?;
    let name = Path::new(w.binary.1)
        .file_name()
        .ok_or_else(|| anyhow!("bad binary path"))?;
    std::fs::copy(&w.binary.0, ctx.join(name))
        .with_context(|| format!("copying {}", w.binary.0.display()))?;
    std::fs::write(ctx.join("Containerfile"), &w.containerfile)?;
    let out = tokio::process::Command::new(selur)
        .args(["image", "build", "-t", tag])
        .arg(&ctx)
        .env("SELUR_CONFIG", kubeconfig)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "selur image build: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// When things were first seen, by key (`running/NAME`, `runc/NAME`,
/// `Pulled/NAME`, `Started/NAME`, `pod/NAME` for any pod event).
#[derive(Default)]
pub struct Marks {
    pub seen: Mutex<HashMap<String, Instant>>,
    pub notify: tokio::sync::Notify,
    /// Why a watch ended, when it did.
    pub ended: Mutex<Option<String>>,
}

impl Marks {
    pub fn mark(&self, key: String, at: Instant) {
        if let Ok(mut m) = self.seen.lock() {
            m.entry(key).or_insert(at);
        }
        self.notify.notify_waiters();
    }

    pub fn get(&self, key: &str) -> Option<Instant> {
        self.seen.lock().ok().and_then(|m| m.get(key).copied())
    }

    pub async fn wait(&self, key: &str, timeout: Duration) -> Result<Instant> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let n = self.notify.notified();
            if let Some(t) = self.get(key) {
                return Ok(t);
            }
            if let Some(why) = self.ended.lock().ok().and_then(|e| e.clone()) {
                if !key.starts_with("runc/") {
                    bail!("waiting for {key}: {why}");
                }
            }
            if tokio::time::timeout_at(deadline, n).await.is_err() {
                bail!("{key} not seen within {} s", timeout.as_secs());
            }
        }
    }
}

/// Open a watch and record what `classify` finds in each event.
pub async fn spawn_watch(
    api: &Api,
    path: &str,
    marks: Arc<Marks>,
    classify: fn(&Value) -> Vec<String>,
) -> Result<tokio::task::JoinHandle<()>> {
    let resp = api
        .c
        .send(Method::GET, path, &[("watch", "true".into())], None)
        .await?;
    ensure!(
        resp.status().is_success(),
        "watch {path}: HTTP {}",
        resp.status()
    );
    let mut stream = resp.bytes_stream();
    let path = path.to_string();
    Ok(tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        let why = loop {
            match stream.next().await {
                None => break format!("watch {path} ended"),
                Some(Err(e)) => break format!("watch {path}: {e}"),
                Some(Ok(chunk)) => {
                    let at = Instant::now();
                    buf.extend_from_slice(&chunk);
                    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        if let Ok(ev) = serde_json::from_slice::<Value>(&line) {
                            for k in classify(&ev) {
                                marks.mark(k, at);
                            }
                        }
                    }
                }
            }
        };
        if let Ok(mut e) = marks.ended.lock() {
            *e = Some(why);
        }
        marks.notify.notify_waiters();
    }))
}
