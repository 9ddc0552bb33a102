//! The per-container supervisor (the role conmon or containerd-shim play):
//! it starts one container with `runc run --detach` as the container's child
//! subreaper (runc exits, the container's init becomes the shim's child, so
//! no runc process stays), holds its stdout and stderr (or, with `tty`, the
//! terminal master runc sends through `--console-socket`),
//! writes them to the json-file log, and records the exit status in a file,
//! so the agent can restart without touching running containers or losing a
//! log line. `selur shim ...` runs it as its own process.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
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
    /// The container has a terminal (`tty: true`): runc sends its master.
    pub tty: bool,
    /// The container's stdin stays open (`stdin: true`).
    pub stdin: bool,
}

impl ShimOptions {
    /// The options from `selur-shim`/`selur shim` arguments (a leading
    /// `shim` is skipped): `--id ID --bundle DIR --runtime BIN
    /// --runtime-root DIR --log FILE --exit-file FILE [--log-max-size N]
    /// [--log-max-files N] [--memory-cgroup DIR] [--tty BOOL] [--stdin BOOL]`.
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
        let flag = |v: Option<String>, k: &str| -> Result<bool, String> {
            v.map_or(Ok(false), |v| {
                v.parse()
                    .map_err(|_| format!("--{k}: expected true or false, got {v}"))
            })
        };
        let tty = flag(get.remove("tty"), "tty")?;
        let stdin = flag(get.remove("stdin"), "stdin")?;
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
            tty,
            stdin,
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

/// The exit code recorded when the shim itself fails (Kubernetes reports a
/// container that could not be started with 128 and reason `StartError`).
pub const START_ERROR_CODE: i32 = 128;

/// Record how the run ended; `start_error` when the shim itself failed.
fn write_exit(
    path: &Path,
    code: i32,
    signal: Option<i32>,
    oom: bool,
    start_error: Option<&str>,
) -> Result<(), ShimError> {
    let mut v = serde_json::json!({"exitCode": code, "signal": signal, "oomKilled": oom,
        "finishedAt": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)});
    if let Some(message) = start_error {
        v["reason"] = "StartError".into();
        v["message"] = message.into();
    }
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

/// Where runc sends the terminal master of a `tty: true` container: in the
/// bundle when the path fits a socket address, else in the temp dir.
fn console_socket_path(bundle: &Path) -> PathBuf {
    let p = bundle.join("console.sock");
    if p.as_os_str().len() < 100 {
        p
    } else {
        std::env::temp_dir().join(format!("selur-console-{}.sock", std::process::id()))
    }
}

/// Receive the terminal master runc sends over `listener` (one connection,
/// one file descriptor in `SCM_RIGHTS`).
fn receive_console(listener: &UnixListener) -> std::io::Result<OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let (stream, _) = listener.accept()?;
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 256];
    rustix::net::recvmsg(
        &stream,
        &mut [std::io::IoSliceMut::new(&mut name)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(std::io::Error::other("runc sent no terminal"))
}

/// Run one `runc` verb to its end, its stdio the given pipes (its error
/// messages land in the container's log).
fn runc_step(
    opts: &ShimOptions,
    args: &[&std::ffi::OsStr],
    stdin: Stdio,
    out: &OwnedFd,
    err: &OwnedFd,
) -> Result<std::process::ExitStatus, ShimError> {
    let io = |source| ShimError::Io {
        what: "starting runtime",
        path: opts.runtime.binary.clone(),
        source,
    };
    Command::new(&opts.runtime.binary)
        .arg("--root")
        .arg(&opts.runtime.root)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::from(out.try_clone().map_err(io)?))
        .stderr(Stdio::from(err.try_clone().map_err(io)?))
        .status()
        .map_err(io)
}

fn code_and_signal(status: rustix::process::WaitStatus) -> (i32, Option<i32>) {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(c), _) => (c, None),
        (None, Some(s)) => (128 + s, Some(s)),
        (None, None) => (255, None),
    }
}

fn std_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(127))
}

/// Wait for the container's init process `pid` (this shim is its subreaper)
/// and reap every other orphan that comes to it meanwhile.
fn wait_for(pid: u32) -> Result<rustix::process::WaitStatus, ShimError> {
    let io = |source: std::io::Error| ShimError::Io {
        what: "waiting for the container",
        path: PathBuf::from(format!("/proc/{pid}")),
        source,
    };
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some((p, status))) if p.as_raw_nonzero().get() as u32 == pid => return Ok(status),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io(e.into())),
        }
    }
}

/// Run the container to completion; returns its exit code (128+signal when
/// killed).
///
/// The shim becomes a child subreaper, runs `runc create` and `runc start`
/// (both exit at once, as with containerd-shim-runc-v2 and conmon: no
/// `runc` process stays), then waits for the container's init process,
/// which comes to it as an orphan. Its stdout and stderr are pipes the shim
/// drains into the json-file log; a `tty: true` container's terminal
/// master comes through runc's console socket and is logged as stdout. The
/// shim keeps the terminal master, and with `stdin` the write end of the
/// container's stdin, open for as long as the container runs.
///
/// When the shim itself fails (a log it cannot open, a terminal it cannot
/// receive, a pid file it cannot read, ...), the container it may have
/// created is removed (`delete --force`) and the exit file records exit code
/// 128 with reason `StartError` and the error, so the agent learns at once
/// instead of waiting out its start timeout.
pub fn run(opts: &ShimOptions) -> Result<i32, ShimError> {
    let result = run_container(opts);
    if let Err(e) = &result {
        if !opts.exit_file.exists() {
            remove_if_created(opts, "after a shim failure");
            let message = e.to_string();
            if let Err(w) = write_exit(
                &opts.exit_file,
                START_ERROR_CODE,
                None,
                false,
                Some(&message),
            ) {
                tracing::warn!(container = %opts.id, error = %w, "cannot record the shim failure");
            }
        }
    }
    result
}

/// Remove the container if the runtime still knows it (`when` says why, in
/// the warning if that fails).
fn remove_if_created(opts: &ShimOptions, when: &str) {
    if opts.runtime.knows(&opts.id) {
        if let Err(e) = opts.runtime.delete(&opts.id) {
            tracing::warn!(container = %opts.id, error = %e, "cannot remove the container {when}");
        }
    }
}

fn run_container(opts: &ShimOptions) -> Result<i32, ShimError> {
    let log = Arc::new(Mutex::new(JsonLog::open(opts.log.clone()).map_err(
        |source| ShimError::Io {
            what: "opening log",
            path: opts.log.path.clone(),
            source,
        },
    )?));
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| ShimError::Io { what, path, source }
    };
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| io("becoming the subreaper of", &opts.bundle)(e.into()))?;
    let oom = opts
        .memory_cgroup
        .clone()
        .map(|d| crate::cgroups::OomWatch::start(d, std::time::Duration::from_secs(10)));
    let pipe = || -> Result<(OwnedFd, OwnedFd), ShimError> {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| io("creating a pipe for", &opts.bundle)(e.into()))
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let mut pumps = Vec::new();
    for (reader, stream) in [(out_r, "stdout"), (err_r, "stderr")] {
        let l = log.clone();
        pumps.push(std::thread::spawn(move || {
            pump(std::fs::File::from(reader), stream, l)
        }));
    }
    // The container's stdin: kept open (never written yet) with `stdin`.
    let (stdin, _stdin_writer) = if opts.stdin && !opts.tty {
        let (r, w) = pipe()?;
        (Stdio::from(r), Some(w))
    } else {
        (Stdio::null(), None)
    };
    let console = if opts.tty {
        let path = console_socket_path(&opts.bundle);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(io("listening on", &path))?;
        Some((path, listener))
    } else {
        None
    };
    // One runtime process creates and starts the container (`run
    // --detach`: create and start, then runc exits); as the subreaper the
    // shim inherits the container's init when runc exits, so no runc stays.
    // That is one Go process start (~10 ms here) less than `create` +
    // `start`. runc writes the pid file only once the process runs, and
    // removes the container itself when the start fails.
    let pid_file = opts.bundle.join("pid");
    let mut run: Vec<&std::ffi::OsStr> = vec![
        "run".as_ref(),
        "--detach".as_ref(),
        "--bundle".as_ref(),
        opts.bundle.as_os_str(),
        "--pid-file".as_ref(),
        pid_file.as_os_str(),
    ];
    let console_path = console.as_ref().map(|(path, _)| path.clone());
    if let Some(path) = &console_path {
        run.extend(["--console-socket".as_ref(), path.as_os_str()]);
    }
    run.push(opts.id.as_ref());
    // runc sends the terminal while `run` runs: receive it alongside.
    let terminal = console.map(|(path, listener)| {
        let t = std::thread::spawn(move || receive_console(&listener));
        (path, t)
    });
    let started = runc_step(opts, &run, stdin, &out_w, &err_w);
    let master = match terminal {
        Some((path, t)) => {
            if matches!(&started, Ok(s) if s.success()) {
                let got = t
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("panicked")));
                let _ = std::fs::remove_file(&path);
                Some(got.map_err(io("receiving the terminal through", &path))?)
            } else {
                // Nobody connects: unblock the accepting thread.
                let _ = std::os::unix::net::UnixStream::connect(&path);
                let _ = t.join();
                let _ = std::fs::remove_file(&path);
                None
            }
        }
        None => None,
    };
    let started = started?;
    drop((out_w, err_w));
    let end = |code: i32, signal: Option<i32>, oom_killed: bool| -> Result<i32, ShimError> {
        write_exit(&opts.exit_file, code, signal, oom_killed, None)?;
        Ok(code)
    };
    if !started.success() {
        // runc removes what it created when `run` fails; make sure.
        remove_if_created(opts, "that never started");
        for p in pumps {
            let _ = p.join();
        }
        return end(std_code(started), None, false);
    }
    if let Some(m) = &master {
        let reader = m
            .try_clone()
            .map_err(io("keeping the terminal of", &opts.bundle))?;
        let l = log.clone();
        pumps.push(std::thread::spawn(move || {
            pump(TerminalReader(std::fs::File::from(reader)), "stdout", l)
        }));
    }
    let pid = std::fs::read_to_string(&pid_file)
        .map_err(io("reading", &pid_file))?
        .trim()
        .parse::<u32>()
        .map_err(|e| io("reading", &pid_file)(std::io::Error::other(e)))?;
    let status = wait_for(pid)?;
    // The terminal's master is only closed now: the log has all it said.
    drop(master);
    for p in pumps {
        let _ = p.join();
    }
    let (code, signal) = code_and_signal(status);
    let oom_killed = oom.is_some_and(|w| w.fired()) && code == 137;
    end(code, signal, oom_killed)
}

/// A terminal master as a reader: `EIO` (every slave closed) is its end.
struct TerminalReader(std::fs::File);

impl Read for TerminalReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => Ok(0),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_shim_failing_after_the_runtime_created_the_container_removes_the_container_and_records_a_start_error(
    ) {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let bundle = d.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        let calls = d.path().join("calls");
        // A runtime whose `run` succeeds but writes no pid file.
        let fake = d.path().join("fake-runc");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho \"$3\" >> {calls}\ncase \"$3\" in\n  create|run) mkdir -p \"$2/c1\" ;;\n  delete) rm -rf \"$2/c1\" ;;\nesac\nexit 0\n",
                calls = calls.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let exit = bundle.join("exit.json");
        let o = ShimOptions::parse(args(&format!(
            "--id c1 --runtime {} --runtime-root {} --bundle {} --log {} --exit-file {}",
            fake.display(),
            root.display(),
            bundle.display(),
            d.path().join("0.log").display(),
            exit.display()
        )))
        .unwrap();
        let e = run(&o).unwrap_err();
        assert!(e.to_string().contains("reading"), "{e}");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&exit).unwrap()).unwrap();
        assert_eq!(v["exitCode"], START_ERROR_CODE);
        assert_eq!(v["reason"], "StartError");
        assert!(v["message"].as_str().unwrap().contains("/pid"), "{v}");
        let calls = std::fs::read_to_string(&calls).unwrap();
        assert_eq!(calls.lines().collect::<Vec<_>>(), ["run", "delete"]);
        assert!(!root.join("c1").exists(), "the created container is gone");
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
