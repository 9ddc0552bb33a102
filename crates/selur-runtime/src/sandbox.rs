//! Pod sandboxes without a pause container: the pod's network, IPC and UTS
//! namespaces are created once and kept alive by bind mounts of their
//! `/proc/<pid>/ns/*` files into the pod's directory (as `ip netns` does for
//! network namespaces), so every container of the pod joins them by path and
//! no process has to stay around to hold them. Created with util-linux's
//! `unshare --net=FILE --ipc=FILE --uts=FILE`, which sets up exactly those
//! persistent bind mounts; loopback is brought up with iproute2 inside.
//!
//! Every step is safe to repeat after the caller was killed at any point:
//! [`Sandbox::begin`] over a directory left by an earlier attempt first
//! unmounts whatever is still bound on the namespace files (also several
//! stacked mounts) and recreates them, and [`Sandbox::destroy`] unmounts
//! until nothing is mounted there any more.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::rootfs::unmount_all;

/// Errors creating or removing a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{command}` failed: {stderr} (needs util-linux's unshare and iproute2's ip, and root)"
    )]
    Command { command: String, stderr: String },
    #[error(
        "cannot enter the network namespace {path}: {source} (is the pod running on this node?)"
    )]
    EnterNetns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {addr} inside the network namespace {path}: {source}")]
    Connect {
        addr: SocketAddr,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The namespaces of one pod.
#[derive(Debug, Clone)]
pub struct Sandbox {
    dir: PathBuf,
}

const KINDS: [&str; 3] = ["net", "ipc", "uts"];

/// A sandbox whose `unshare` is still running.
pub struct Pending {
    sb: Sandbox,
    child: std::process::Child,
    shown: String,
}

impl Pending {
    /// Wait for the namespaces; on failure they are removed again.
    pub fn finish(self) -> Result<Sandbox, SandboxError> {
        let Pending { sb, child, shown } = self;
        match child.wait_with_output() {
            Ok(out) if out.status.success() => Ok(sb),
            Ok(out) => {
                sb.destroy_logged();
                Err(SandboxError::Command {
                    command: shown,
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                })
            }
            Err(e) => {
                sb.destroy_logged();
                Err(SandboxError::Command {
                    command: shown,
                    stderr: e.to_string(),
                })
            }
        }
    }
}

impl Sandbox {
    /// Create the namespaces under `dir` (files `net`, `ipc`, `uts`) and
    /// bring loopback up, with one `unshare` process. The hostname is set
    /// by the runtime from each container's spec. Partial work is undone on
    /// failure.
    pub fn create(dir: &Path) -> Result<Self, SandboxError> {
        Self::begin(dir)?.finish()
    }

    /// Start creating the sandbox under `dir` and return at once, so the
    /// caller can prepare other things while `unshare` runs; [`Pending::finish`]
    /// waits for it.
    ///
    /// A directory left by an earlier attempt that was killed (namespace
    /// files present, still bind-mounted, maybe several times) is cleaned
    /// first: the old mounts go (the old namespaces live on only while
    /// something still uses them) and fresh namespaces are made.
    pub fn begin(dir: &Path) -> Result<Pending, SandboxError> {
        std::fs::create_dir_all(dir).map_err(|source| SandboxError::Io {
            what: "creating",
            path: dir.to_path_buf(),
            source,
        })?;
        let sb = Sandbox {
            dir: dir.to_path_buf(),
        };
        for k in KINDS {
            let p = sb.path(k);
            // Left by an earlier, interrupted attempt: writing to a file
            // that still holds a namespace fails with EPERM.
            unmount_all(&p).map_err(|source| SandboxError::Io {
                what: "unmounting the stale namespace at",
                path: p.clone(),
                source,
            })?;
            std::fs::write(&p, b"").map_err(|source| SandboxError::Io {
                what: "creating",
                path: p.clone(),
                source,
            })?;
        }
        // One process: `ip` brings loopback up inside the new namespaces;
        // the hostname is set in the UTS namespace by the runtime from
        // each container's spec.
        let mut cmd = Command::new("unshare");
        cmd.arg(format!("--net={}", sb.path("net").display()))
            .arg(format!("--ipc={}", sb.path("ipc").display()))
            .arg(format!("--uts={}", sb.path("uts").display()))
            .args(["ip", "link", "set", "lo", "up"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let shown = format!("{cmd:?}");
        match cmd.spawn() {
            Ok(child) => Ok(Pending { sb, child, shown }),
            Err(e) => {
                sb.destroy_logged();
                Err(SandboxError::Command {
                    command: shown,
                    stderr: e.to_string(),
                })
            }
        }
    }

    /// The sandbox already created under `dir`.
    pub fn at(dir: &Path) -> Self {
        Sandbox {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, kind: &str) -> PathBuf {
        self.dir.join(kind)
    }

    pub fn net_path(&self) -> PathBuf {
        self.path("net")
    }
    pub fn ipc_path(&self) -> PathBuf {
        self.path("ipc")
    }
    pub fn uts_path(&self) -> PathBuf {
        self.path("uts")
    }

    /// Unmount the namespace files (every mount stacked on them; the
    /// namespaces go once no container uses them) and remove them. Safe to
    /// repeat; files already gone are fine.
    pub fn destroy(&self) -> Result<(), SandboxError> {
        let mut first_err = None;
        for k in KINDS {
            let p = self.path(k);
            if let Err(source) = unmount_all(&p) {
                first_err.get_or_insert(SandboxError::Io {
                    what: "unmounting",
                    path: p.clone(),
                    source,
                });
            }
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    first_err.get_or_insert(SandboxError::Io {
                        what: "removing",
                        path: p,
                        source,
                    });
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// [`Sandbox::destroy`] for undoing partial work: a failure is logged
    /// with the sandbox's path (the caller reports its own, first error).
    fn destroy_logged(&self) {
        if let Err(e) = self.destroy() {
            tracing::warn!(sandbox = %self.dir.display(), error = %e, "cannot remove a half-created sandbox");
        }
    }
}

/// Open a TCP connection to `addr` from inside the network namespace held by
/// `netns_file` (a pod's `net` file, or any `/proc/<pid>/ns/net` link), for
/// port-forwarding, httpGet/tcpSocket probes and hooks.
///
/// A short-lived thread enters the namespace (`setns(CLONE_NEWNET)`, which
/// affects only that thread) and connects; the socket stays in the namespace
/// it was created in after the thread ends, so the caller's threads never
/// change namespace. Blocking (up to `timeout` to connect): call it from a
/// blocking context (`spawn_blocking` in async code).
pub fn connect_in_netns(
    netns_file: &Path,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, SandboxError> {
    let path = netns_file.to_path_buf();
    let enter_err = |source: std::io::Error| SandboxError::EnterNetns {
        path: netns_file.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(netns_file).map_err(enter_err)?;
    let handle = std::thread::Builder::new()
        .name("netns-connect".into())
        .spawn(move || {
            if let Err(e) = rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            ) {
                return Err(SandboxError::EnterNetns {
                    path,
                    source: e.into(),
                });
            }
            TcpStream::connect_timeout(&addr, timeout).map_err(|source| SandboxError::Connect {
                addr,
                path,
                source,
            })
        })
        .map_err(enter_err)?;
    handle.join().unwrap_or_else(|_| {
        Err(enter_err(std::io::Error::other(
            "the connecting thread panicked",
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::is_mounted;

    #[test]
    fn namespaces_persist_without_a_process_and_go_away() {
        let d = tempfile::tempdir().unwrap();
        let sb = Sandbox::create(&d.path().join("sb")).unwrap();
        struct Guard(Sandbox);
        impl Drop for Guard {
            fn drop(&mut self) {
                let _ = self.0.destroy();
            }
        }
        let g = Guard(sb.clone());
        assert!(is_mounted(&sb.net_path()) && is_mounted(&sb.uts_path()));
        let out = Command::new("nsenter")
            .arg(format!("--net={}", sb.net_path().display()))
            .args(["ip", "-o", "addr"])
            .output()
            .unwrap();
        let addrs = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(addrs.contains("::1"), "{addrs}");
        assert_eq!(
            addrs.lines().filter(|l| !l.contains(" lo ")).count(),
            0,
            "only loopback: {addrs}"
        );
        drop(g);
        assert!(!is_mounted(&sb.net_path()));
    }

    #[test]
    fn connects_inside_the_namespace_only() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let sb = Sandbox::create(&d.path().join("sb")).unwrap();
        struct Guard(Sandbox, Option<std::process::Child>);
        impl Drop for Guard {
            fn drop(&mut self) {
                if let Some(c) = self.1.as_mut() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                let _ = self.0.destroy();
            }
        }
        let mut g = Guard(sb.clone(), None);
        // Nothing listens yet: refused, and the caller's namespace is untouched.
        let addr: SocketAddr = "[::1]:18081".parse().unwrap();
        let err = connect_in_netns(&sb.net_path(), addr, Duration::from_secs(2)).unwrap_err();
        assert!(matches!(err, SandboxError::Connect { .. }), "{err}");
        // A listener inside the namespace (busybox nc) answers.
        g.1 = Some(
            Command::new("nsenter")
                .arg(format!("--net={}", sb.net_path().display()))
                .args(["busybox", "nc", "-l", "-p", "18081"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let start = std::time::Instant::now();
        let mut conn = loop {
            match connect_in_netns(&sb.net_path(), addr, Duration::from_secs(2)) {
                Ok(c) => break c,
                Err(e) => {
                    assert!(start.elapsed() < Duration::from_secs(10), "{e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        conn.write_all(b"ping\n").unwrap();
        let mut out = String::new();
        let stdout = g.1.as_mut().unwrap().stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut out).unwrap();
        assert_eq!(out, "ping\n");
        // The host's own ::1 is another namespace: nothing there on that port.
        assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
    }
}
