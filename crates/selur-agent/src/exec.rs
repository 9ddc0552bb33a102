//! Running commands in a pod's running containers (`runc exec`): streamed
//! for `selur exec` (the pod `exec` subresource, served over the tunnel at
//! `/pods/{uid}/exec`), or captured with a timeout by [`exec_capture`] for
//! exec probes and lifecycle hooks.
//!
//! The process inherits the container's environment, user, capabilities and
//! seccomp profile from its runtime config. With a terminal, runc allocates
//! the container's pty and copies it to its own stdio, a pty of ours
//! (`selur_runtime::terminal` says why not a console socket). The process is
//! killed (by the pid runc writes, since killing runc would orphan it) when
//! the client goes away or the capture times out.

mod pty;
mod session;
#[cfg(test)]
mod tests;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use tokio::io::AsyncReadExt;
use tokio::process::Child;

use crate::layout::{container_id, runtime};
use crate::reply::failure;
use crate::Agent;

use pty::Pty;

/// Errors running a command in a container.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no command given")]
    NoCommand,
    #[error("container {container} is not running on this node (runtime state: {state})")]
    NotRunning { container: String, state: String },
    #[error(transparent)]
    Runtime(#[from] selur_runtime::runc::RuntimeError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("asking the runtime for the container's state failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the command did not finish within {0:?} and was killed")]
    Timeout(Duration),
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> ExecError {
    move |source| ExecError::Io { what, source }
}

/// A started `runc exec`.
pub(crate) struct Started {
    pub(crate) child: Child,
    /// The terminal's master, when one was asked for.
    pub(crate) pty: Option<Pty>,
    pid_file: PathBuf,
    /// Holds the pid file; removed on drop.
    _dir: tempfile::TempDir,
}

impl Started {
    /// Kill the exec'd process (and, when it leads one, its process group),
    /// then runc. Waits briefly for runc to have written the pid when the
    /// process is only just starting.
    pub(crate) async fn kill(&mut self) {
        for _ in 0..20 {
            if kill_by_pid_file(&self.pid_file) {
                break;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Err(e) = self.child.start_kill() {
            tracing::debug!(pid_file = %self.pid_file.display(), error = %e, "cannot kill runc exec (it may have ended)");
        }
    }
}

fn kill_by_pid_file(pid_file: &Path) -> bool {
    use rustix::process::{getpgid, kill_process, kill_process_group, Pid, Signal};
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .and_then(Pid::from_raw)
    else {
        return false;
    };
    // With a terminal the process leads its own session and group: take its children too.
    if getpgid(Some(pid)).is_ok_and(|g| g == pid) {
        if let Err(e) = kill_process_group(pid, Signal::KILL) {
            tracing::debug!(pid = pid.as_raw_nonzero().get(), error = %e, "cannot kill the exec'd process group");
        }
    }
    if let Err(e) = kill_process(pid, Signal::KILL) {
        // ESRCH: it ended meanwhile.
        tracing::debug!(pid = pid.as_raw_nonzero().get(), error = %e, "cannot kill the exec'd process");
    }
    true
}

/// The exit code Kubernetes reports: the code, or 128 + signal.
pub(crate) fn exit_code(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// How long an exec waits for a container that is still being created (the
/// pod reports it running once its supervisor started it).
const START_WAIT: Duration = Duration::from_secs(10);

/// Wait until the runtime reports container `id` running, refusing one
/// that stopped (or never appears within [`START_WAIT`]).
async fn wait_running(
    rt: &selur_runtime::runc::Runtime,
    id: &str,
    container: &str,
) -> Result<(), ExecError> {
    let deadline = tokio::time::Instant::now() + START_WAIT;
    loop {
        let (rt2, id2) = (rt.clone(), id.to_string());
        let state = tokio::task::spawn_blocking(move || rt2.status(&id2)).await??;
        match state.as_deref() {
            Some("running") => return Ok(()),
            None | Some("creating") | Some("created") if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            _ => {
                return Err(ExecError::NotRunning {
                    container: container.to_string(),
                    state: state.unwrap_or_else(|| "no such container".into()),
                })
            }
        }
    }
}

/// Start `cmd` in container `container` of the pod `uid` running here.
/// `stdin`: pipe stdin (else `/dev/null`); `tty`: run it on a terminal.
pub(crate) async fn start(
    agent: &Agent,
    uid: &str,
    container: &str,
    cmd: &[String],
    stdin: bool,
    tty: bool,
) -> Result<Started, ExecError> {
    if cmd.is_empty() {
        return Err(ExecError::NoCommand);
    }
    let rt = runtime(agent);
    let id = container_id(agent, uid, container);
    wait_running(&rt, &id, container).await?;
    // Under the data dir, so that even a crash leaves nothing elsewhere.
    let parent = agent.config.data_dir.join("exec");
    std::fs::create_dir_all(&parent).map_err(io_err("creating the exec state dir"))?;
    let dir = tempfile::Builder::new()
        .prefix("exec-")
        .tempdir_in(&parent)
        .map_err(io_err("creating a temp dir for exec"))?;
    let pid_file = dir.path().join("pid");
    let mut command = tokio::process::Command::from(rt.exec_command(&id, cmd, tty, &pid_file));
    let master = if tty {
        // runc's stdio is our terminal's slave: runc copies it to the container's terminal.
        let (master, slave) =
            selur_runtime::terminal::open_pty().map_err(io_err("allocating a terminal"))?;
        if let Err(e) = selur_runtime::terminal::set_window_size(&master, 80, 24) {
            tracing::debug!(container, error = %e, "cannot set the initial terminal size");
        }
        let dup = |fd: &std::os::fd::OwnedFd| fd.try_clone().map_err(io_err("terminal"));
        command
            .stdin(Stdio::from(dup(&slave)?))
            .stdout(Stdio::from(dup(&slave)?))
            .stderr(Stdio::from(slave));
        Some(master)
    } else {
        command
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        None
    };
    command.kill_on_drop(true);
    let child = command.spawn().map_err(|source| ExecError::Spawn {
        binary: rt.binary.clone(),
        source,
    })?;
    // Our copies of the slave must go, or the terminal never reports its end.
    drop(command);
    let mut started = Started {
        pty: None,
        pid_file,
        _dir: dir,
        child,
    };
    if let Some(master) = master {
        match Pty::new(master, started.child.id()) {
            Ok(p) => started.pty = Some(p),
            Err(e) => {
                started.kill().await;
                return Err(ExecError::Io {
                    what: "terminal",
                    source: e,
                });
            }
        }
    }
    Ok(started)
}

/// Most output [`exec_capture`] keeps per stream; the rest is dropped.
pub const CAPTURE_LIMIT: usize = 4 << 20;

/// Run `cmd` in container `container` of the pod with `uid` on this node and
/// collect its exit code, stdout and stderr (no stdin, no terminal), as exec
/// probes and lifecycle hooks need. A command still running after `timeout`
/// is killed and [`ExecError::Timeout`] returned. Each stream keeps at most
/// [`CAPTURE_LIMIT`] bytes.
pub async fn exec_capture(
    agent: &Agent,
    uid: &str,
    container: &str,
    cmd: &[String],
    timeout: Duration,
) -> Result<(i32, Vec<u8>, Vec<u8>), ExecError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut started = start(agent, uid, container, cmd, false, false).await?;
    let out = tokio::spawn(read_capped(started.child.stdout.take()));
    let err = tokio::spawn(read_capped(started.child.stderr.take()));
    let status = match tokio::time::timeout_at(deadline, started.child.wait()).await {
        Ok(s) => s.map_err(io_err("waiting for the command"))?,
        Err(_) => {
            started.kill().await;
            if tokio::time::timeout(Duration::from_secs(5), started.child.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    container,
                    uid,
                    "a timed-out command did not end within 5s of KILL"
                );
            }
            out.abort();
            err.abort();
            return Err(ExecError::Timeout(timeout));
        }
    };
    // Background children may hold the pipes open: do not wait for them long.
    let grace = Duration::from_secs(1);
    let collect = |h: tokio::task::JoinHandle<Vec<u8>>| async move {
        let abort = h.abort_handle();
        match tokio::time::timeout(grace, h).await {
            Ok(Ok(v)) => v,
            _ => {
                abort.abort();
                Vec::new()
            }
        }
    };
    let (stdout, stderr) = tokio::join!(collect(out), collect(err));
    Ok((exit_code(status), stdout, stderr))
}

async fn read_capped(r: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(mut r) = r else { return out };
    let mut buf = vec![0u8; 16 << 10];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = CAPTURE_LIMIT.saturating_sub(out.len());
        out.extend_from_slice(&buf[..n.min(room)]);
    }
    out
}

fn flag(q: &[(String, String)], name: &str) -> bool {
    q.iter()
        .any(|(k, v)| k == name && (v == "true" || v == "1"))
}

/// `/pods/{uid}/exec?container=C&command=..&stdin=true&tty=true`: start the
/// command, then stream frames of the `selur-stream` protocol
/// ([`selur_api::stream`]): stdin and resizes in the request body, output
/// and the final status in the response body. Errors before the start are
/// Status JSON.
pub async fn handler(
    State(agent): State<Arc<Agent>>,
    UrlPath(uid): UrlPath<String>,
    Query(q): Query<Vec<(String, String)>>,
    body: Body,
) -> Response {
    let Some(container) = q.iter().find(|(k, _)| k == "container").map(|(_, v)| v) else {
        return failure(StatusCode::BAD_REQUEST, "exec needs ?container=NAME");
    };
    let cmd: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let (stdin, tty) = (flag(&q, "stdin"), flag(&q, "tty"));
    match start(&agent, &uid, container, &cmd, stdin, tty).await {
        Ok(started) => session::respond(started, body),
        Err(e) => {
            let code = match e {
                ExecError::NoCommand => StatusCode::BAD_REQUEST,
                ExecError::NotRunning { .. } => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            failure(code, e)
        }
    }
}
