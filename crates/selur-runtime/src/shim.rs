//! The per-container supervisor (the role conmon or containerd-shim play):
//! it starts `runc run` for one container, holds its stdout and stderr,
//! writes them to the json-file log, and records the exit status in a file,
//! so the agent can restart without touching running containers or losing a
//! log line. `selur shim ...` runs it as its own process.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, Utc};

use crate::logs::{JsonLog, LogConfig};
use crate::runc::Runtime;

/// What one shim supervises.
#[derive(Debug, Clone)]
pub struct ShimOptions {
    pub runtime: Runtime,
    pub id: String,
    pub bundle: PathBuf,
    pub log: LogConfig,
    /// Written when the container exits: `{"exitCode": N, "finishedAt": "...", "signal": S?, "oomKilled": B}`.
    pub exit_file: PathBuf,
    /// The container's v1 memory cgroup, watched for OOM kills.
    pub memory_cgroup: Option<PathBuf>,
}

/// Errors of the shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn pump(reader: impl Read, stream: &'static str, log: Arc<Mutex<JsonLog>>) {
    let mut r = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if let Ok(mut l) = log.lock() {
                    if let Err(e) = l.write_line(stream, &line) {
                        tracing::warn!(error = %e, "cannot write container log");
                    }
                }
            }
        }
    }
}

fn write_exit(path: &Path, code: i32, signal: Option<i32>, oom: bool) -> Result<(), ShimError> {
    let v = serde_json::json!({"exitCode": code, "signal": signal, "oomKilled": oom,
        "finishedAt": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)});
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, v.to_string()).map_err(|source| ShimError::Io {
        what: "writing",
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| ShimError::Io {
        what: "renaming",
        path: path.to_path_buf(),
        source,
    })
}

/// Run the container to completion; returns its exit code (128+signal when killed).
pub fn run(opts: &ShimOptions) -> Result<i32, ShimError> {
    let log = Arc::new(Mutex::new(JsonLog::open(opts.log.clone()).map_err(
        |source| ShimError::Io {
            what: "opening log",
            path: opts.log.path.clone(),
            source,
        },
    )?));
    let oom = opts
        .memory_cgroup
        .clone()
        .map(|d| crate::cgroups::OomWatch::start(d, std::time::Duration::from_secs(10)));
    let mut child = Command::new(&opts.runtime.binary)
        .arg("--root")
        .arg(&opts.runtime.root)
        .arg("run")
        .arg("--bundle")
        .arg(&opts.bundle)
        // Written once the container's process runs: the agent waits for it.
        .arg("--pid-file")
        .arg(opts.bundle.join("pid"))
        .arg(&opts.id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ShimError::Io {
            what: "starting runtime",
            path: opts.runtime.binary.clone(),
            source,
        })?;
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        let l = log.clone();
        pumps.push(std::thread::spawn(move || pump(out, "stdout", l)));
    }
    if let Some(err) = child.stderr.take() {
        let l = log.clone();
        pumps.push(std::thread::spawn(move || pump(err, "stderr", l)));
    }
    let status = child.wait().map_err(|source| ShimError::Io {
        what: "waiting for",
        path: opts.runtime.binary.clone(),
        source,
    })?;
    for p in pumps {
        let _ = p.join();
    }
    use std::os::unix::process::ExitStatusExt;
    let (code, signal) = match (status.code(), status.signal()) {
        (Some(c), _) => (c, None),
        (None, Some(s)) => (128 + s, Some(s)),
        (None, None) => (255, None),
    };
    let oom_killed = oom.is_some_and(|w| w.fired()) && code == 137;
    write_exit(&opts.exit_file, code, signal, oom_killed)?;
    Ok(code)
}
