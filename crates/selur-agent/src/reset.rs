//! What a node leaves on the host, and removing it when its agent is gone
//! (`selur node reset`, as `kubeadm reset` and k3s's killall script do).
//!
//! A running agent holds an exclusive `flock` on `agent.lock` in its data
//! dir (released by the kernel however it dies) and records in `node.json`
//! what a reset needs to find its host state: the node name (the cgroup
//! parent `selur-<node>`), the OCI runtime binary and the log link dir.
//! [`reset`] then stops every container under the node's runtime root,
//! kills the node's shims and runtime processes (found by the runtime root
//! on their command lines), unmounts everything under the data dir
//! (namespace bind mounts, root file systems, volumes), removes the pods'
//! cgroups, the runtime state, the pod and log dirs and the node's links in
//! the log link dir. The image store stays. Every step is safe to repeat:
//! a reset killed halfway is finished by the next, and a second reset finds
//! nothing to do.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use selur_runtime::cgroups::PodCgroup;
use selur_runtime::runc::Runtime;

/// What `node.json` records about the node that uses a data dir.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    pub node_name: String,
    pub cgroup_parent: String,
    pub runtime: PathBuf,
    pub log_link_dir: PathBuf,
    /// The node's pod network in its network namespace (none for
    /// `--pod-network none`).
    #[serde(default)]
    pub network: Option<NetworkRecord>,
}

/// What the node's pod network made: its bridge, and its nftables table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRecord {
    pub bridge: String,
    #[serde(default)]
    pub nft_table: Option<String>,
    /// CNI mode: no bridge of Selur's; the cluster DNS address is on `lo`
    /// (written to `<data dir>/dns-address` when added).
    #[serde(default)]
    pub cni: bool,
}

/// Where a CNI-mode agent records the DNS address it put on `lo`.
pub const DNS_ADDRESS_FILE: &str = "dns-address";

/// Errors of taking a node's data dir or of resetting it.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the agent of node {node} is running on {dir} (it holds {dir}/agent.lock); stop it \
         (its `selur server` or `selur agent`) first, or pass --force to reset under it"
    )]
    AgentAlive { node: String, dir: PathBuf },
    #[error(
        "{dir} is not a node's data dir (no node.json or runc/ there, nor under {dir}/agent); \
         pass the --data-dir of `selur agent`, or of `selur server` for its own node"
    )]
    NotANode { dir: PathBuf },
    #[error("{path} is not readable node state: {reason}")]
    Record { path: PathBuf, reason: String },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ResetError {
    let path = path.to_path_buf();
    move |source| ResetError::Io { what, path, source }
}

/// The lock a running agent holds on its data dir (released on drop, or
/// by the kernel when the process dies).
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
}

/// Take `data_dir` for the agent of `record.node_name`: lock it (refused
/// while another agent holds it) and record `node.json`.
pub fn lock(data_dir: &Path, record: &NodeRecord) -> Result<NodeLock, ResetError> {
    std::fs::create_dir_all(data_dir).map_err(io("creating", data_dir))?;
    let file = try_lock(data_dir)?.ok_or_else(|| ResetError::AgentAlive {
        node: record.node_name.clone(),
        dir: data_dir.to_path_buf(),
    })?;
    let path = data_dir.join("node.json");
    let tmp = data_dir.join("node.json.tmp");
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| ResetError::Record {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    std::fs::write(&tmp, bytes).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("renaming", &tmp))?;
    Ok(NodeLock { _file: file })
}

/// The lock file, locked; `None` when someone else holds it.
fn try_lock(data_dir: &Path) -> Result<Option<File>, ResetError> {
    let path = data_dir.join("agent.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("opening", &path))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(io("locking", &path)(e.into())),
    }
}

/// The node data dir `dir` names: `dir` itself when it holds a node's state,
/// else the all-in-one server's own node under `dir/agent`.
pub fn node_dir(dir: &Path) -> Result<PathBuf, ResetError> {
    let is_node = |d: &Path| d.join("node.json").exists() || d.join("runc").is_dir();
    if is_node(dir) {
        Ok(dir.to_path_buf())
    } else if is_node(&dir.join("agent")) {
        Ok(dir.join("agent"))
    } else {
        Err(ResetError::NotANode {
            dir: dir.to_path_buf(),
        })
    }
}

/// What [`reset`] removed, per kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResetReport {
    pub node: String,
    pub containers: usize,
    pub processes: usize,
    pub mounts: usize,
    pub cgroups: usize,
    pub log_links: usize,
    pub dirs: usize,
    /// The bridge, routes and nftables table of the pod network.
    pub network: usize,
    /// What could not be removed (each with its path and reason).
    pub failures: Vec<String>,
}

impl ResetReport {
    /// Whether the host was already clean.
    pub fn nothing_done(&self) -> bool {
        self.containers
            + self.processes
            + self.mounts
            + self.cgroups
            + self.log_links
            + self.dirs
            + self.network
            == 0
    }
}

/// Remove the node's routes to other nodes, its nftables table and its
/// bridge (the pods' veth pairs went with their namespaces).
fn remove_network(dir: &Path, n: &NetworkRecord, report: &mut ResetReport) {
    match crate::network::routes::current() {
        Ok(r) if !r.is_empty() => match crate::network::routes::remove_all() {
            Ok(()) => report.network += r.len(),
            Err(e) => report.failures.push(format!("routes: {e}")),
        },
        Ok(_) => {}
        Err(e) => report.failures.push(format!("listing routes: {e}")),
    }
    if let Some(t) = &n.nft_table {
        match crate::network::proxy::remove_table(t) {
            Ok(true) => report.network += 1,
            Ok(false) => {}
            Err(e) => report.failures.push(format!("nftables table {t}: {e}")),
        }
    }
    if n.cni {
        let file = dir.join(DNS_ADDRESS_FILE);
        if let Ok(addr) = std::fs::read_to_string(&file) {
            match crate::network::bridge::remove_local_address("lo", addr.trim()) {
                Ok(true) => report.network += 1,
                Ok(false) => {}
                Err(e) => report
                    .failures
                    .push(format!("address {} on lo: {e}", addr.trim())),
            }
            let _ = std::fs::remove_file(&file);
        }
    }
    if !n.bridge.is_empty() && selur_runtime::sandbox::link_exists(&n.bridge) {
        match crate::network::bridge::remove(&n.bridge) {
            Ok(()) => report.network += 1,
            Err(e) => report.failures.push(format!("bridge {}: {e}", n.bridge)),
        }
    }
}

/// Remove what the node using `dir` (see [`node_dir`]) left on the host.
/// Refused while its agent runs, unless `force`.
pub fn reset(dir: &Path, force: bool) -> Result<ResetReport, ResetError> {
    let dir = node_dir(dir)?;
    let dir = std::fs::canonicalize(&dir).map_err(io("resolving", &dir))?;
    let record_path = dir.join("node.json");
    let record: Option<NodeRecord> = match std::fs::read(&record_path) {
        Ok(b) => Some(serde_json::from_slice(&b).map_err(|e| ResetError::Record {
            path: record_path.clone(),
            reason: e.to_string(),
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("reading", &record_path)(e)),
    };
    let node = record
        .as_ref()
        .map_or_else(|| "(unknown)".to_string(), |r| r.node_name.clone());
    // Held for the whole reset: an agent starting meanwhile waits for it.
    let _lock = match try_lock(&dir)? {
        Some(l) => Some(l),
        None if force => None,
        None => return Err(ResetError::AgentAlive { node, dir }),
    };
    let mut report = ResetReport {
        node,
        ..Default::default()
    };
    let runtime_root = dir.join("runc");
    let runtime = Runtime::new(
        record
            .as_ref()
            .map_or_else(|| PathBuf::from("runc"), |r| r.runtime.clone()),
        &runtime_root,
    );

    // Containers, then whatever process still names the runtime root
    // (shims, runtime commands and execs left half done).
    if runtime_root.is_dir() {
        match runtime.containers_under(&dir) {
            Ok(ids) => {
                for id in ids {
                    // `delete --force` kills what still runs first.
                    match runtime.delete(&id) {
                        Ok(()) => report.containers += 1,
                        Err(e) => report.failures.push(format!("container {id}: {e}")),
                    }
                }
            }
            Err(e) => report.failures.push(format!("listing containers: {e}")),
        }
    }
    report.processes += kill_processes_naming(&runtime_root);

    // Mounts under the data dir, deepest first; again while some remain
    // (a lazy unmount can reveal a mount below).
    for _ in 0..5 {
        let left = selur_runtime::rootfs::mounts_under(&dir);
        if left.is_empty() {
            break;
        }
        let failed = selur_runtime::rootfs::unmount_under(&dir);
        report.mounts += left.len().saturating_sub(failed.len());
        if !failed.is_empty() && selur_runtime::rootfs::mounts_under(&dir).len() == left.len() {
            for (path, e) in failed {
                report
                    .failures
                    .push(format!("unmounting {}: {e}", path.display()));
            }
            break;
        }
    }

    // The pods' cgroups (only this node's pods: other nodes on this host
    // may share the parent's name).
    let pods_dir = dir.join("pods");
    let uids: Vec<String> = std::fs::read_dir(&pods_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if let Some(r) = &record {
        for uid in &uids {
            for qos in ["Guaranteed", "Burstable", "BestEffort"] {
                let cg = PodCgroup::new(&r.cgroup_parent, qos, uid);
                if !cg.exists() {
                    continue;
                }
                match cg.remove_within(std::time::Duration::from_secs(5)) {
                    Ok(()) => report.cgroups += 1,
                    Err(e) => report.failures.push(format!("pod {uid} cgroup: {e}")),
                }
            }
        }
    }

    // The pod network, in the caller's network namespace (the node's).
    if let Some(n) = record.as_ref().and_then(|r| r.network.as_ref()) {
        remove_network(&dir, n, &mut report);
    }

    // The node's links in the log link dir.
    let logs = dir.join("logs");
    if let Some(r) = &record {
        for e in std::fs::read_dir(&r.log_link_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            if std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(&logs)) {
                match std::fs::remove_file(e.path()) {
                    Ok(()) => report.log_links += 1,
                    Err(err) => report
                        .failures
                        .push(format!("removing {}: {err}", e.path().display())),
                }
            }
        }
    }

    // Runtime state, pods, logs: only once nothing is mounted there.
    if selur_runtime::rootfs::mounts_under(&dir).is_empty() {
        for d in [runtime_root, pods_dir, logs] {
            if !d.exists() {
                continue;
            }
            match std::fs::remove_dir_all(&d) {
                Ok(()) => report.dirs += 1,
                Err(e) => report
                    .failures
                    .push(format!("removing {}: {e}", d.display())),
            }
        }
    }
    Ok(report)
}

/// SIGKILL every process whose command line names `root` (a shim's
/// `--runtime-root ROOT`, a runtime's `--root ROOT`); returns how many.
fn kill_processes_naming(root: &Path) -> usize {
    let root = root.as_os_str().as_encoded_bytes();
    let me = std::process::id();
    let mut killed = 0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let names = args
            .windows(2)
            .any(|w| (w[0] == b"--runtime-root" || w[0] == b"--root") && w[1] == root);
        let Some(pid) = names
            .then(|| i32::try_from(pid).ok())
            .flatten()
            .and_then(rustix::process::Pid::from_raw)
        else {
            continue;
        };
        if rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok() {
            killed += 1;
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> NodeRecord {
        NodeRecord {
            node_name: "n1".into(),
            cgroup_parent: "selur-n1".into(),
            runtime: "runc".into(),
            log_link_dir: "/nonexistent".into(),
            network: None,
        }
    }

    #[test]
    fn a_locked_data_dir_is_refused_to_a_second_agent_and_to_reset() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path(), &record()).unwrap();
        let e = lock(dir.path(), &record()).unwrap_err();
        assert!(matches!(e, ResetError::AgentAlive { .. }), "{e}");
        let e = reset(dir.path(), false).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        drop(held);
        // Another test of this process may fork at the moment the lock file
        // is open: the child shares the lock until its exec closes the
        // (close-on-exec) descriptor. So allow a moment.
        let start = std::time::Instant::now();
        let r = loop {
            match reset(dir.path(), false) {
                Err(ResetError::AgentAlive { .. })
                    if start.elapsed() < std::time::Duration::from_secs(5) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => break other.unwrap(),
            }
        };
        assert!(r.nothing_done(), "{r:?}");
        // Locked again after the reset (the lock file stays).
        let start = std::time::Instant::now();
        let _again = loop {
            match lock(dir.path(), &record()) {
                Err(ResetError::AgentAlive { .. })
                    if start.elapsed() < std::time::Duration::from_secs(5) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => break other.unwrap(),
            }
        };
    }

    #[test]
    fn the_servers_own_node_is_found_under_its_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            node_dir(dir.path()),
            Err(ResetError::NotANode { .. })
        ));
        let _l = lock(&dir.path().join("agent"), &record()).unwrap();
        assert_eq!(node_dir(dir.path()).unwrap(), dir.path().join("agent"));
        assert_eq!(
            node_dir(&dir.path().join("agent")).unwrap(),
            dir.path().join("agent")
        );
    }

    #[test]
    fn reset_removes_pod_dirs_and_log_links_and_a_second_run_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node");
        let links = dir.path().join("links");
        std::fs::create_dir_all(&links).unwrap();
        let mut r = record();
        r.log_link_dir = links.clone();
        drop(lock(&node, &r).unwrap());
        let node = std::fs::canonicalize(&node).unwrap();
        let log = node.join("logs/default_p_u1/c/0.log");
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        std::fs::write(&log, "").unwrap();
        std::fs::create_dir_all(node.join("pods/u1/c/c")).unwrap();
        std::os::unix::fs::symlink(&log, links.join("p_default_c-x.log")).unwrap();
        std::os::unix::fs::symlink("/elsewhere", links.join("other.log")).unwrap();
        let first = reset(&node, false).unwrap();
        assert_eq!(first.log_links, 1, "{first:?}");
        assert_eq!(first.dirs, 2, "{first:?}");
        assert!(first.failures.is_empty(), "{first:?}");
        assert!(!node.join("pods").exists() && !node.join("logs").exists());
        assert!(links.join("other.log").is_symlink());
        let second = reset(&node, false).unwrap();
        assert!(second.nothing_done(), "{second:?}");
    }
}
