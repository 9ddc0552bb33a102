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

impl ShimOptions {
    /// The options from `selur-shim`/`selur shim` arguments (a leading
    /// `shim` is skipped): `--id ID --bundle DIR --runtime BIN
    /// --runtime-root DIR --log FILE --exit-file FILE [--log-max-size N]
    /// [--log-max-files N] [--memory-cgroup DIR]`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut args = args.into_iter().peekable();
        if args.peek().map(String::as_str) == Some("shim") {
            args.next();
        }
        let mut get: std::collections::HashMap<String, String> = Default::default();
        while let Some(flag) = args.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {flag:?}"))?;
            let value = args
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            get.insert(name.to_string(), value);
        }
        fn need(
            get: &mut std::collections::HashMap<String, String>,
            k: &str,
        ) -> Result<String, String> {
            get.remove(k).ok_or_else(|| format!("--{k} is required"))
        }
        let id = need(&mut get, "id")?;
        let bundle = PathBuf::from(need(&mut get, "bundle")?);
        let binary = get.remove("runtime").unwrap_or_else(|| "runc".into());
        let runtime = crate::runc::Runtime::new(binary, need(&mut get, "runtime-root")?);
        let log_path = PathBuf::from(need(&mut get, "log")?);
        let exit_file = PathBuf::from(need(&mut get, "exit-file")?);
        let num = |v: Option<String>, d: u64, k: &str| -> Result<u64, String> {
            v.map_or(Ok(d), |v| {
                v.parse().map_err(|_| format!("--{k}: not a number: {v}"))
            })
        };
        let max_size = num(get.remove("log-max-size"), 10 << 20, "log-max-size")?;
        let max_files = num(get.remove("log-max-files"), 5, "log-max-files")?;
        let memory_cgroup = get.remove("memory-cgroup").map(PathBuf::from);
        if let Some(k) = get.keys().next() {
            return Err(format!("unknown option --{k}"));
        }
        Ok(Self {
            runtime,
            id,
            bundle,
            log: LogConfig {
                path: log_path,
                max_size,
                max_files: usize::try_from(max_files).unwrap_or(5),
            },
            exit_file,
            memory_cgroup,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_the_agents_arguments() {
        let o = ShimOptions::parse(args(
            "shim --id c1 --runtime runc --runtime-root /r --bundle /b --log /l/0.log --log-max-size 4096 --log-max-files 2 --exit-file /b/exit.json --memory-cgroup /sys/fs/cgroup/memory/x",
        ))
        .unwrap();
        assert_eq!(o.id, "c1");
        assert_eq!(o.log.max_size, 4096);
        assert_eq!(o.log.max_files, 2);
        assert_eq!(
            o.memory_cgroup,
            Some(PathBuf::from("/sys/fs/cgroup/memory/x"))
        );
        let e = ShimOptions::parse(args("--id c1 --bundle /b")).unwrap_err();
        assert_eq!(e, "--runtime-root is required");
        let e = ShimOptions::parse(args(
            "--id c --runtime-root r --bundle b --log l --exit-file e --bogus 1",
        ))
        .unwrap_err();
        assert_eq!(e, "unknown option --bogus");
    }
}
