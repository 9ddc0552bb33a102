//! The OCI runtime binary (runc by default; a setting), driven through its CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Errors from the runtime binary.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot run {binary}: {source} (install it, e.g. `apt-get install runc`, or set the runtime setting)")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{binary} {verb} {id} failed: {stderr}")]
    Failed {
        binary: PathBuf,
        verb: &'static str,
        id: String,
        stderr: String,
    },
}

/// An OCI runtime CLI with its own state directory (one per agent, so
/// several agents on one machine never see each other's containers).
#[derive(Debug, Clone)]
pub struct Runtime {
    pub binary: PathBuf,
    pub root: PathBuf,
}

impl Runtime {
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            root: root.into(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root);
        c
    }

    /// `<binary> --root R <verb> <args...>`; `id` only names the container in errors.
    fn exec(&self, verb: &'static str, id: &str, args: &[&str]) -> Result<(), RuntimeError> {
        self.output(verb, id, args).map(drop)
    }

    /// [`Runtime::exec`], returning what the runtime printed on stdout.
    fn output(&self, verb: &'static str, id: &str, args: &[&str]) -> Result<Vec<u8>, RuntimeError> {
        let out = self
            .cmd()
            .arg(verb)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RuntimeError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(RuntimeError::Failed {
                binary: self.binary.clone(),
                verb,
                id: id.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// Send a signal (`TERM`, `KILL`) to the container's init process.
    pub fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        self.exec("kill", id, &[id, signal])
    }

    /// Whether the runtime has state for `id` (without running it).
    pub fn knows(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }

    /// Remove the container's runtime state (`--force` kills it first).
    pub fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        self.exec("delete", id, &["--force", id])
    }

    /// The ids of the containers this runtime knows whose bundle lies at or
    /// below `dir` (e.g. every container of one pod directory).
    pub fn containers_under(&self, dir: &Path) -> Result<Vec<String>, RuntimeError> {
        let stdout = self.output("list", "", &["--format", "json"])?;
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        // `null` when there are none.
        let list: Vec<serde_json::Value> = serde_json::from_slice(&stdout).unwrap_or_default();
        Ok(list
            .iter()
            .filter(|c| {
                c["bundle"]
                    .as_str()
                    .is_some_and(|b| Path::new(b).starts_with(&dir))
            })
            .filter_map(|c| c["id"].as_str().map(String::from))
            .collect())
    }

    /// The container's status (`created`, `running`, `stopped`, ...) and
    /// init pid, or `None` when the runtime does not know it.
    pub fn state(&self, id: &str) -> Option<(String, u32)> {
        let out = self.cmd().args(["state", id]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some((
            v["status"].as_str()?.to_string(),
            u32::try_from(v["pid"].as_u64().unwrap_or(0)).unwrap_or(0),
        ))
    }

    /// The first working runtime among `candidates` (each checked with
    /// `--version`), with its version line; the error names every failure.
    pub fn detect(candidates: &[PathBuf]) -> Result<(PathBuf, String), String> {
        let mut why = Vec::new();
        for c in candidates {
            match Self::check(c) {
                Ok(v) if !v.is_empty() => return Ok((c.clone(), v)),
                Ok(_) => why.push(format!("{}: no version output", c.display())),
                Err(e) => why.push(e.to_string()),
            }
        }
        Err(format!(
            "no working OCI runtime found ({}); install runc (`apt-get install runc`) or pass --runtime",
            why.join("; ")
        ))
    }

    /// The container's state as the runtime reports it (`running`,
    /// `stopped`, `paused`, `created`); `Ok(None)` when it does not exist.
    pub fn status(&self, id: &str) -> Result<Option<String>, RuntimeError> {
        let out = self
            .cmd()
            .args(["state", id])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RuntimeError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if stderr.contains("does not exist") || stderr.contains("not exist") {
                return Ok(None);
            }
            return Err(RuntimeError::Failed {
                binary: self.binary.clone(),
                verb: "state",
                id: id.to_string(),
                stderr,
            });
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        Ok(v["status"].as_str().map(String::from))
    }

    /// The command that runs `args` in the running container `id`:
    /// `<binary> --root R exec [--tty] --pid-file P ID ARGS...`. The process
    /// inherits the container's environment, user, working directory,
    /// capabilities and seccomp profile. With `tty`, runc allocates the
    /// container's terminal and copies between it and its own stdio, which
    /// must then be a terminal too (see [`crate::terminal`]). The caller
    /// sets stdio and spawns it; the pid file names the process (to kill it:
    /// killing runc alone would leave it running).
    pub fn exec_command(&self, id: &str, args: &[String], tty: bool, pid_file: &Path) -> Command {
        let mut c = self.cmd();
        c.arg("exec");
        if tty {
            c.arg("--tty");
        }
        c.arg("--pid-file").arg(pid_file).arg(id).args(args);
        c
    }

    /// Whether the runtime works here (`<binary> --version`).
    pub fn check(binary: &Path) -> Result<String, RuntimeError> {
        let out = Command::new(binary)
            .arg("--version")
            .output()
            .map_err(|source| RuntimeError::Spawn {
                binary: binary.to_path_buf(),
                source,
            })?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string())
    }
}
