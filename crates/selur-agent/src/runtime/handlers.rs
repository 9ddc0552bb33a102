//! Lifecycle handlers as Kubernetes defines them (`exec`, `httpGet`,
//! `sleep`), run for `postStart` and `preStop` hooks. `exec` runs the
//! command inside the container through the runtime; `httpGet` connects to
//! `[::1]:port` inside the pod's network namespace (pods are IPv6-only), so
//! nothing on the host network is involved.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::container::Ctr;
use crate::exec::ExecError;
use crate::Agent;

/// Why a lifecycle hook (or the httpGet/port part of a probe) failed; shown
/// to users in FailedPostStartHook / FailedPreStopHook events and probe
/// failure messages.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("port {port} is out of range 1-65535")]
    PortRange { port: u64 },
    #[error("port {name:?} names no port of the container")]
    NoSuchPort { name: String },
    #[error("httpGet scheme {scheme} is not supported yet; use HTTP")]
    Scheme { scheme: String },
    #[error("httpGet host {host:?}: handlers reach the pod itself ([::1]); leave host empty")]
    Host { host: String },
    #[error("httpHeaders: invalid header {name:?}")]
    Header { name: String },
    #[error("Get \"http://[::1]:{port}\": {source}")]
    Connect {
        port: u16,
        #[source]
        source: selur_runtime::sandbox::SandboxError,
    },
    #[error("sending the request to [::1]:{port}: {source}")]
    Send {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the response: {source}")]
    Read {
        #[source]
        source: std::io::Error,
    },
    #[error("no HTTP response")]
    NoResponse,
    #[error("the request task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("timed out after {}s", .0.as_secs_f32())]
    Timeout(Duration),
    #[error("exec handler without a command")]
    NoCommand,
    #[error("command {cmd:?}: {source}")]
    Exec {
        cmd: Vec<String>,
        #[source]
        source: ExecError,
    },
    #[error("command {cmd:?} exited with {code}: {output}")]
    Exited {
        cmd: Vec<String>,
        code: i32,
        output: String,
    },
    #[error("HTTP hook returned status {code}")]
    Status { code: u16 },
    #[error("{which} handler: only exec, httpGet and sleep are supported")]
    Unsupported { which: String },
}

/// The port a handler names: a number, or the name of one of the
/// container's ports.
pub fn resolve_port(port: &Value, container: &Value) -> Result<u16, HookError> {
    if let Some(n) = port.as_u64() {
        return u16::try_from(n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or(HookError::PortRange { port: n });
    }
    let name = port.as_str().unwrap_or("");
    if let Ok(n) = name.parse::<u16>() {
        return Ok(n);
    }
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| HookError::NoSuchPort {
            name: name.to_string(),
        })
}

/// The HTTP request an `httpGet` handler sends.
pub fn http_request(get: &Value, port: u16) -> Result<Vec<u8>, HookError> {
    let scheme = get["scheme"].as_str().unwrap_or("HTTP");
    if !scheme.eq_ignore_ascii_case("HTTP") {
        return Err(HookError::Scheme {
            scheme: scheme.to_string(),
        });
    }
    if let Some(host) = get["host"].as_str().filter(|h| !h.is_empty()) {
        if !matches!(host, "::1" | "[::1]" | "localhost") {
            return Err(HookError::Host {
                host: host.to_string(),
            });
        }
    }
    let path = get["path"]
        .as_str()
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: [::1]:{port}\r\nUser-Agent: selur-agent\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for h in get["httpHeaders"].as_array().into_iter().flatten() {
        let (n, v) = (
            h["name"].as_str().unwrap_or(""),
            h["value"].as_str().unwrap_or(""),
        );
        if n.is_empty() || n.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
            return Err(HookError::Header {
                name: n.to_string(),
            });
        }
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    Ok(req.into_bytes())
}

/// The status code of an HTTP response's status line.
pub fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// `GET` inside the pod's network namespace; returns the status code.
pub async fn http_get(
    agent: &Agent,
    uid: &str,
    get: &Value,
    container: &Value,
    timeout: Duration,
) -> Result<u16, HookError> {
    let port = resolve_port(&get["port"], container)?;
    let req = http_request(get, port)?;
    let netns = super::sandbox_of(agent, uid).net_path();
    let task = tokio::task::spawn_blocking(move || -> Result<u16, HookError> {
        let addr = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        let mut conn = selur_runtime::sandbox::connect_in_netns(&netns, addr, timeout)
            .map_err(|source| HookError::Connect { port, source })?;
        conn.set_read_timeout(Some(timeout))
            .and_then(|()| conn.set_write_timeout(Some(timeout)))
            .map_err(|source| HookError::Send { port, source })?;
        conn.write_all(&req)
            .map_err(|source| HookError::Send { port, source })?;
        let mut head = vec![0u8; 256];
        let mut got = 0;
        while got < head.len() && !head[..got].contains(&b'\n') {
            match conn.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(source) => return Err(HookError::Read { source }),
            }
        }
        status_code(&head[..got]).ok_or(HookError::NoResponse)
    });
    match tokio::time::timeout(timeout + Duration::from_millis(200), task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(HookError::Timeout(timeout)),
    }
}

/// Run the `which` (`postStart`, `preStop`) handler of `ctr` of the pod
/// with `uid`, if it has one.
pub async fn run_hook(
    agent: &Arc<Agent>,
    uid: &str,
    ctr: &Ctr,
    which: &str,
    timeout: Duration,
) -> Result<(), HookError> {
    let h = &ctr.spec["lifecycle"][which];
    if h.is_null() {
        return Ok(());
    }
    if let Some(exec) = h.get("exec") {
        let cmd: Vec<String> = exec["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(String::from))
            .collect();
        if cmd.is_empty() {
            return Err(HookError::NoCommand);
        }
        let (code, out, err) =
            match crate::exec::exec_capture(agent, uid, &ctr.name, &cmd, timeout).await {
                Ok(r) => r,
                Err(source) => return Err(HookError::Exec { cmd, source }),
            };
        if code != 0 {
            let text = String::from_utf8_lossy(if err.is_empty() { &out } else { &err });
            return Err(HookError::Exited {
                output: text.trim().to_string(),
                cmd,
                code,
            });
        }
        return Ok(());
    }
    if let Some(get) = h.get("httpGet") {
        let code = http_get(agent, uid, get, &ctr.spec, timeout).await?;
        if !(200..400).contains(&code) {
            return Err(HookError::Status { code });
        }
        return Ok(());
    }
    if let Some(secs) = h.pointer("/sleep/seconds").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_secs(secs).min(timeout)).await;
        return Ok(());
    }
    Err(HookError::Unsupported {
        which: which.to_string(),
    })
}

/// The result of one probe run.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    /// Why it failed (empty on success).
    pub message: String,
    /// The parsed `obli-pkg status` output, for the Lago Grey check.
    pub obli: Option<Value>,
}

impl Outcome {
    fn fail(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            message: message.into(),
            obli: None,
        }
    }
}

/// Run one probe (`exec`, `httpGet`, `tcpSocket`) of `ctr` once.
pub async fn run_probe(
    agent: &Arc<Agent>,
    uid: &str,
    ctr: &Ctr,
    probe: &super::probes::Probe,
) -> Outcome {
    let spec = &probe.spec;
    let timeout = probe.timeout;
    if let Some(exec) = spec.get("exec") {
        let cmd: Vec<String> = exec["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(String::from))
            .collect();
        if cmd.is_empty() {
            return Outcome::fail("exec probe without a command");
        }
        return match crate::exec::exec_capture(agent, uid, &ctr.name, &cmd, timeout).await {
            Err(crate::exec::ExecError::Timeout(t)) => Outcome::fail(format!(
                "command {cmd:?} timed out after {}s",
                t.as_secs_f32()
            )),
            Err(e) => Outcome::fail(format!("command {cmd:?}: {e}")),
            Ok((code, out, err)) if super::probes::is_obli(&cmd) => {
                match super::probes::judge_obli(&out) {
                    Ok((true, v)) => Outcome {
                        ok: true,
                        message: String::new(),
                        obli: Some(v),
                    },
                    Ok((false, v)) => Outcome {
                        ok: false,
                        message: super::probes::obli_reason(&v),
                        obli: Some(v),
                    },
                    Err(why) => {
                        let e = String::from_utf8_lossy(&err);
                        Outcome::fail(if code != 0 && !e.trim().is_empty() {
                            format!("{why} (exit {code}: {})", e.trim())
                        } else {
                            why
                        })
                    }
                }
            }
            Ok((0, _, _)) => Outcome {
                ok: true,
                message: String::new(),
                obli: None,
            },
            Ok((code, out, err)) => {
                let text = String::from_utf8_lossy(if err.is_empty() { &out } else { &err })
                    .trim()
                    .to_string();
                Outcome::fail(format!("command {cmd:?} exited with {code}: {text}"))
            }
        };
    }
    if let Some(get) = spec.get("httpGet") {
        return match http_get(agent, uid, get, &ctr.spec, timeout).await {
            Ok(code) if (200..400).contains(&code) => Outcome {
                ok: true,
                message: String::new(),
                obli: None,
            },
            Ok(code) => Outcome::fail(format!("HTTP probe failed with statuscode: {code}")),
            Err(e) => Outcome::fail(e.to_string()),
        };
    }
    if let Some(tcp) = spec.get("tcpSocket") {
        let port = match resolve_port(&tcp["port"], &ctr.spec) {
            Ok(p) => p,
            Err(e) => return Outcome::fail(e.to_string()),
        };
        let netns = super::sandbox_of(agent, uid).net_path();
        let res = tokio::task::spawn_blocking(move || {
            let addr = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            selur_runtime::sandbox::connect_in_netns(&netns, addr, timeout).map(|_| ())
        })
        .await;
        return match res {
            Ok(Ok(())) => Outcome {
                ok: true,
                message: String::new(),
                obli: None,
            },
            Ok(Err(e)) => Outcome::fail(format!("dial tcp [::1]:{port}: {e}")),
            Err(e) => Outcome::fail(e.to_string()),
        };
    }
    Outcome::fail("only exec, httpGet and tcpSocket probes are supported")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ports_by_number_or_name() {
        let c = json!({"ports": [{"name": "http", "containerPort": 8080}]});
        assert_eq!(resolve_port(&json!(9000), &c).ok(), Some(9000));
        assert_eq!(resolve_port(&json!("http"), &c).ok(), Some(8080));
        assert!(resolve_port(&json!("nope"), &c)
            .unwrap_err()
            .to_string()
            .contains("names no port"));
        assert!(resolve_port(&json!(70000), &c).is_err());
    }

    #[test]
    fn requests_and_status_lines() {
        let req = http_request(
            &json!({"path": "health", "httpHeaders": [{"name": "X-A", "value": "1"}]}),
            8080,
        )
        .unwrap();
        let text = String::from_utf8(req).unwrap();
        assert!(text.starts_with("GET /health HTTP/1.1\r\nHost: [::1]:8080\r\n"));
        assert!(text.contains("X-A: 1\r\n"));
        assert!(http_request(&json!({"scheme": "HTTPS"}), 1).is_err());
        assert!(http_request(&json!({"host": "10.0.0.1"}), 1).is_err());
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"garbage"), None);
    }
}
