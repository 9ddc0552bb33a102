//! Pod sandboxes without a pause container: the pod's network, IPC and UTS
//! namespaces are created once and kept alive by bind mounts of their
//! `/proc/<pid>/ns/*` files into the pod's directory (as `ip netns` does for
//! network namespaces), so every container of the pod joins them by path and
//! no process has to stay around to hold them. Created with util-linux's
//! `unshare --net=FILE --ipc=FILE --uts=FILE`, which sets up exactly those
//! persistent bind mounts; loopback is brought up with iproute2 inside.
//!
//! With a [`PodInterface`] the same `ip -batch` process also gives the pod
//! its one IPv6 interface: a veth pair made inside the new namespace
//! (`eth0`, no link-local address, its address added without duplicate
//! address detection so it is usable at once, a default route via the
//! node's bridge) whose other end is moved to the agent's namespace, where
//! one more `ip` puts it on the bridge. No IPv4 address is left in the pod
//! (loopback's `127.0.0.1` is removed) and there is no IPv4 route. The
//! veth pair goes away with the namespace.
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

/// The pod's network interface, made while the sandbox is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInterface {
    /// The host end's name (at most 15 bytes), in the agent's namespace.
    pub host_name: String,
    /// The node's bridge the host end joins.
    pub bridge: String,
    /// The pod's address and prefix length on `eth0`.
    pub addr: std::net::Ipv6Addr,
    pub prefix: u8,
    /// The default route's next hop (the bridge's address).
    pub gateway: std::net::Ipv6Addr,
    /// A process in the namespace the host end goes to (the agent itself).
    pub host_pid: u32,
}

impl PodInterface {
    /// The `ip -batch` lines run inside the new namespace.
    fn batch(&self) -> String {
        format!(
            "link add eth0 type veth peer name {host} netns {pid}\n\
             link set eth0 addrgenmode none\n\
             addr add {addr}/{prefix} dev eth0 nodad\n\
             link set eth0 up\n\
             route add default via {gw} dev eth0\n",
            host = self.host_name,
            pid = self.host_pid,
            addr = self.addr,
            prefix = self.prefix,
            gw = self.gateway,
        )
    }
}

/// The `ip -batch` lines for loopback: up, and IPv6 only.
const LOOPBACK_BATCH: &str = "link set lo up\naddr del 127.0.0.1/8 dev lo\n";

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
    iface: Option<PodInterface>,
}

impl Pending {
    /// Wait for the namespaces; on failure they are removed again.
    pub fn finish(self) -> Result<Sandbox, SandboxError> {
        let Pending {
            sb,
            child,
            shown,
            iface,
        } = self;
        match child.wait_with_output() {
            Ok(out) if out.status.success() => match iface {
                None => Ok(sb),
                Some(i) => match attach_host_end(&i) {
                    Ok(()) => Ok(sb),
                    Err(e) => {
                        sb.destroy_logged();
                        Err(e)
                    }
                },
            },
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
        Self::begin(dir, None)?.finish()
    }

    /// Start creating the sandbox under `dir` and return at once, so the
    /// caller can prepare other things while `unshare` runs; [`Pending::finish`]
    /// waits for it.
    ///
    /// A directory left by an earlier attempt that was killed (namespace
    /// files present, still bind-mounted, maybe several times) is cleaned
    /// first: the old mounts go (the old namespaces live on only while
    /// something still uses them) and fresh namespaces are made.
    pub fn begin(dir: &Path, iface: Option<&PodInterface>) -> Result<Pending, SandboxError> {
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
        if let Some(i) = iface {
            // The host end of an earlier attempt's pair lingers while the
            // old namespace is being freed: a new pair of that name would
            // fail to be made.
            remove_link(&i.host_name)?;
        }
        // One process: `ip` sets up loopback (and the pod's interface)
        // inside the new namespaces; the hostname is set in the UTS
        // namespace by the runtime from each container's spec.
        let mut batch = LOOPBACK_BATCH.to_string();
        if let Some(i) = iface {
            batch.push_str(&i.batch());
        }
        let mut cmd = Command::new("unshare");
        cmd.arg(format!("--net={}", sb.path("net").display()))
            .arg(format!("--ipc={}", sb.path("ipc").display()))
            .arg(format!("--uts={}", sb.path("uts").display()))
            .args(["ip", "-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let shown = format!("{cmd:?} <<< {batch:?}");
        match cmd.spawn() {
            Ok(mut child) => {
                use std::io::Write;
                // A few hundred bytes: the pipe takes them without blocking.
                let written = match child.stdin.take() {
                    Some(mut stdin) => stdin.write_all(batch.as_bytes()),
                    None => Err(std::io::Error::other("no stdin pipe")),
                };
                if let Err(e) = written {
                    let _ = child.kill();
                    let _ = child.wait();
                    sb.destroy_logged();
                    return Err(SandboxError::Command {
                        command: shown,
                        stderr: e.to_string(),
                    });
                }
                Ok(Pending {
                    sb,
                    child,
                    shown,
                    iface: iface.cloned(),
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

    /// The sandbox already created under `dir`.
    pub fn at(dir: &Path) -> Self {
        Sandbox {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, kind: &str) -> PathBuf {
        self.dir.join(kind)
    }

    /// The directory holding the namespace files.
    pub fn dir(&self) -> &Path {
        &self.dir
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

/// Run `ip` with `args` in the caller's network namespace.
pub fn ip(args: &[&str]) -> Result<(), SandboxError> {
    ip_output(args).map(|_| ())
}

/// Run `ip` with `args` in the caller's network namespace; its output.
pub fn ip_output(args: &[&str]) -> Result<Vec<u8>, SandboxError> {
    let out = Command::new("ip")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output();
    let shown = || format!("ip {}", args.join(" "));
    match out {
        Ok(o) if o.status.success() => Ok(o.stdout),
        Ok(o) => Err(SandboxError::Command {
            command: shown(),
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        }),
        Err(e) => Err(SandboxError::Command {
            command: shown(),
            stderr: e.to_string(),
        }),
    }
}

/// Whether a link named `name` exists in the caller's network namespace.
pub fn link_exists(name: &str) -> bool {
    let Ok(sock) = rustix::net::socket(
        rustix::net::AddressFamily::INET6,
        rustix::net::SocketType::DGRAM,
        None,
    ) else {
        return false;
    };
    rustix::net::netdevice::name_to_index(&sock, name).is_ok()
}

/// Delete the link `name` if it exists (its veth peer goes with it).
pub fn remove_link(name: &str) -> Result<(), SandboxError> {
    if !link_exists(name) {
        return Ok(());
    }
    match ip(&["link", "del", name]) {
        // Gone meanwhile (its namespace was freed): fine.
        Err(_) if !link_exists(name) => Ok(()),
        r => r,
    }
}

/// Put the host end of the pod's pair on the bridge and bring it up, in
/// hairpin mode: where br_netfilter is loaded, a pod's packet to its own
/// Service is DNATed on the bridge and must go back out of the port it came
/// in by.
fn attach_host_end(i: &PodInterface) -> Result<(), SandboxError> {
    use std::io::Write;
    let batch = format!(
        "link set {h} master {b} up\nlink set {h} type bridge_slave hairpin on\n",
        h = i.host_name,
        b = i.bridge
    );
    let shown = format!("ip -batch - <<< {batch:?}");
    let fail = |stderr: String| SandboxError::Command {
        command: shown.clone(),
        stderr,
    };
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(batch.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
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
