//! Pod-level cgroups, as the kubelet makes them: every pod gets a cgroup
//! under the agent's parent, inside its QoS class (`<parent>/pod<uid>` for
//! Guaranteed, `<parent>/burstable/pod<uid>`, `<parent>/besteffort/pod<uid>`),
//! with the pod's summed limits; the runtime puts each container's own
//! cgroup inside it. Works on cgroup v1 (one hierarchy per controller, also
//! the hybrid layout this machine has) and on the v2 unified hierarchy.
//!
//! The pod cgroup also tells whether a container was OOM-killed: the
//! `oom_kill` counter of the pod's memory cgroup counts kills in the
//! containers below it and survives the container's own cgroup.

use std::path::{Path, PathBuf};

/// Errors creating or removing a pod cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A pod's summed limits, applied to its cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLimits {
    /// Bytes; only when every container sets a memory limit.
    pub memory: Option<i64>,
    /// cgroup v1 `cpu.shares` from the summed CPU requests (minimum 2).
    pub cpu_shares: u64,
    /// CFS quota in microseconds per 100 ms period; only when every container sets a CPU limit.
    pub cpu_quota: Option<i64>,
    pub pids: Option<i64>,
}

/// CFS period Selur uses (as the kubelet does).
pub const CPU_PERIOD_US: i64 = 100_000;

/// How the host mounts cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mounts {
    /// v1 hierarchies: (controllers of the mount, mount point).
    v1: Vec<(Vec<String>, PathBuf)>,
    /// The v2 unified hierarchy, when mounted.
    v2: Option<PathBuf>,
}

fn parse_mounts(mountinfo: &str) -> Mounts {
    let mut m = Mounts {
        v1: Vec::new(),
        v2: None,
    };
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let point = left.split(' ').nth(4).unwrap_or("");
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or("");
        let opts = r.nth(1).unwrap_or("");
        match fstype {
            "cgroup2" => m.v2 = Some(PathBuf::from(point)),
            "cgroup" => {
                let ctrls = opts
                    .split(',')
                    .filter(|o| {
                        !matches!(*o, "rw" | "ro" | "relatime" | "nosuid" | "nodev" | "noexec")
                    })
                    .map(String::from)
                    .collect();
                m.v1.push((ctrls, PathBuf::from(point)));
            }
            _ => {}
        }
    }
    m
}

fn mounts() -> Mounts {
    parse_mounts(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

impl Mounts {
    /// Whether this is a v2-only host (no v1 controller hierarchies).
    fn unified(&self) -> bool {
        self.v1
            .iter()
            .all(|(c, _)| c.iter().all(|x| x.starts_with("name=")))
    }

    fn v1_for(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(c, _)| c.iter().any(|x| x == controller))
            .map(|(_, p)| p.as_path())
    }

    /// Every hierarchy a runtime may create the pod's directories in.
    fn roots(&self) -> Vec<PathBuf> {
        let mut r: Vec<PathBuf> = self.v1.iter().map(|(_, p)| p.clone()).collect();
        r.extend(self.v2.clone());
        // A hierarchy mounted twice is still one place.
        let mut seen = std::collections::HashSet::new();
        r.retain(|p| seen.insert(p.clone()));
        r
    }
}

/// One pod's cgroup, named relative to each hierarchy's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    rel: PathBuf,
    /// The agent's own parent (removed when empty, so nothing is left behind).
    parent: PathBuf,
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Io {
        what: "writing",
        path: path.to_path_buf(),
        source,
    })
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir_all(path).map_err(|source| CgroupError::Io {
        what: "creating",
        path: path.to_path_buf(),
        source,
    })
}

/// cgroup v2 `cpu.weight` for a v1 share count (the runc/kubelet formula).
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

impl PodCgroup {
    /// The cgroup of pod `uid` in QoS class `qos` (`Guaranteed`,
    /// `Burstable`, `BestEffort`) under `parent` (e.g. `selur-node1`).
    pub fn new(parent: &str, qos: &str, uid: &str) -> Self {
        let pod = format!("pod{uid}");
        let parent = PathBuf::from(parent.trim_matches('/'));
        let rel = match qos {
            "Guaranteed" => parent.join(pod),
            "Burstable" => parent.join("burstable").join(pod),
            _ => parent.join("besteffort").join(pod),
        };
        Self { rel, parent }
    }

    /// The OCI `linux.cgroupsPath` for a container of this pod.
    pub fn container_path(&self, container_id: &str) -> String {
        format!("/{}/{container_id}", self.rel.display())
    }

    /// The pod cgroup's path relative to each hierarchy root.
    pub fn relative(&self) -> &Path {
        &self.rel
    }

    /// Create the pod cgroup and apply `limits`.
    pub fn create(&self, limits: &PodLimits) -> Result<(), CgroupError> {
        let m = mounts();
        if m.unified() {
            let Some(root) = &m.v2 else {
                return Ok(());
            };
            // Enable the controllers down to the pod so its limits apply.
            let mut dir = root.clone();
            for comp in self.rel.components() {
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory +pids");
                dir = dir.join(comp);
                mkdir(&dir)?;
            }
            if let Some(mem) = limits.memory {
                write(&dir.join("memory.max"), &mem.to_string())?;
            }
            write(
                &dir.join("cpu.weight"),
                &shares_to_weight(limits.cpu_shares).to_string(),
            )?;
            if let Some(q) = limits.cpu_quota {
                write(&dir.join("cpu.max"), &format!("{q} {CPU_PERIOD_US}"))?;
            }
            if let Some(p) = limits.pids {
                write(&dir.join("pids.max"), &p.to_string())?;
            }
            return Ok(());
        }
        for ctrl in ["memory", "cpu", "pids"] {
            if let Some(root) = m.v1_for(ctrl) {
                mkdir(&root.join(&self.rel))?;
            }
        }
        if let (Some(root), Some(mem)) = (m.v1_for("memory"), limits.memory) {
            write(
                &root.join(&self.rel).join("memory.limit_in_bytes"),
                &mem.to_string(),
            )?;
        }
        if let Some(root) = m.v1_for("cpu") {
            let dir = root.join(&self.rel);
            write(
                &dir.join("cpu.shares"),
                &limits.cpu_shares.max(2).to_string(),
            )?;
            if let Some(q) = limits.cpu_quota {
                write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &q.to_string())?;
            }
        }
        if let (Some(root), Some(p)) = (m.v1_for("pids"), limits.pids) {
            write(&root.join(&self.rel).join("pids.max"), &p.to_string())?;
        }
        Ok(())
    }

    /// OOM kills counted in the pod's memory cgroup so far (0 when unknown).
    pub fn oom_kills(&self) -> u64 {
        let m = mounts();
        let file = if m.unified() {
            m.v2.map(|r| r.join(&self.rel).join("memory.events"))
        } else {
            m.v1_for("memory")
                .map(|r| r.join(&self.rel).join("memory.oom_control"))
        };
        file.and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("oom_kill ").map(|v| v.trim().parse().ok()))
                    .flatten()
            })
            .unwrap_or(0)
    }

    /// Whether the pod cgroup exists in any hierarchy.
    pub fn exists(&self) -> bool {
        mounts().roots().iter().any(|r| r.join(&self.rel).is_dir())
    }

    /// Remove the pod cgroup from every hierarchy (on cgroup v1 each
    /// controller's, and the named and unified ones the runtime may have
    /// used too), container cgroups below it first, retrying for a few
    /// seconds while their tasks drain (`EBUSY`); then the QoS and agent
    /// parents when they are empty. Containers must be gone first. Every
    /// directory that still cannot be removed is logged with its path; the
    /// first such error is returned.
    pub fn remove(&self) -> Result<(), CgroupError> {
        self.remove_within(REMOVE_PATIENCE)
    }

    /// [`PodCgroup::remove`], waiting at most `patience` for busy cgroups.
    pub fn remove_within(&self, patience: std::time::Duration) -> Result<(), CgroupError> {
        let m = mounts();
        let deadline = std::time::Instant::now() + patience;
        let mut failed = Vec::new();
        for root in m.roots() {
            let dir = root.join(&self.rel);
            remove_tree(&dir, deadline, &mut failed);
            // Empty parents up to and including the agent's own parent;
            // others' pods may still be there, which is fine.
            let mut up = self.rel.parent();
            while let Some(p) = up {
                if p.as_os_str().is_empty() || !p.starts_with(&self.parent) {
                    break;
                }
                let path = root.join(p);
                match std::fs::remove_dir(&path) {
                    Ok(()) => {}
                    Err(e) if is_in_use_or_gone(&e) => {}
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove an empty cgroup parent")
                    }
                }
                up = p.parent();
            }
        }
        for (path, e) in &failed {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a pod cgroup directory");
        }
        match failed.into_iter().next() {
            Some((path, source)) => Err(CgroupError::Io {
                what: "removing",
                path,
                source,
            }),
            None => Ok(()),
        }
    }
}

/// How long [`PodCgroup::remove`] waits for cgroups whose tasks are still
/// leaving.
pub const REMOVE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether a failed `rmdir` means "still has children or tasks" or "already gone".
fn is_in_use_or_gone(e: &std::io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(e),
        Some(rustix::io::Errno::BUSY | rustix::io::Errno::NOTEMPTY | rustix::io::Errno::NOENT)
    )
}

/// Remove the cgroup `dir` and every cgroup below it, children first;
/// failures are collected in `failed`.
fn remove_tree(
    dir: &Path,
    deadline: std::time::Instant,
    failed: &mut Vec<(PathBuf, std::io::Error)>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            failed.push((dir.to_path_buf(), e));
            return;
        }
    };
    for e in entries.flatten() {
        // Cgroup directories only; the control files are not removable.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path(), deadline, failed);
        }
    }
    if let Err(e) = remove_dir_retry(dir, deadline) {
        failed.push((dir.to_path_buf(), e));
    }
}

/// The v1 memory cgroup directory of a container with OCI
/// `cgroupsPath` `path`, when this host uses cgroup v1 for memory.
pub fn v1_memory_dir(path: &str) -> Option<PathBuf> {
    let m = mounts();
    if m.unified() {
        return None;
    }
    m.v1_for("memory")
        .map(|r| r.join(path.trim_start_matches('/')))
}

/// Watches one container's v1 memory cgroup for OOM kills. On cgroup v1 a
/// child's kills are not counted in its parent, and the runtime removes the
/// container's cgroup as soon as it exits, so the watch registers for the
/// kernel's OOM notification (an eventfd on `memory.oom_control`) as soon as
/// the cgroup appears, and checks the kill counter when it fires.
pub struct OomWatch {
    fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl OomWatch {
    /// Start watching `dir` (waiting up to `appear` for it to be created).
    pub fn start(dir: PathBuf, appear: std::time::Duration) -> Self {
        let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = fired.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + appear;
            let control = dir.join("memory.oom_control");
            while !control.exists() {
                if std::time::Instant::now() > deadline {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            if let Err(e) = wait_for_oom(&dir, &flag) {
                tracing::debug!(error = %e, dir = %dir.display(), "OOM watch ended");
            }
        });
        Self { fired }
    }

    /// Whether an OOM kill happened in the cgroup.
    pub fn fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn oom_kill_count(control: &Path) -> Option<u64> {
    std::fs::read_to_string(control).ok().and_then(|t| {
        t.lines().find_map(|l| {
            l.strip_prefix("oom_kill ")
                .and_then(|v| v.trim().parse().ok())
        })
    })
}

fn wait_for_oom(dir: &Path, flag: &std::sync::atomic::AtomicBool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let control_path = dir.join("memory.oom_control");
    let control = std::fs::File::open(&control_path)?;
    let efd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)?;
    std::fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
    )?;
    let mut buf = [0u8; 8];
    loop {
        // Fires on OOM and when the cgroup is removed.
        rustix::io::read(&efd, &mut buf)?;
        // The notification comes just before the kill is counted.
        for _ in 0..200 {
            match oom_kill_count(&control_path) {
                Some(n) if n > 0 => {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    return Ok(());
                }
                Some(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
                None => return Ok(()),
            }
        }
    }
}

/// `rmdir`, retried with a growing pause while the cgroup is busy (tasks
/// still leaving, a child not yet gone) until `deadline`.
fn remove_dir_retry(dir: &Path, deadline: std::time::Instant) -> std::io::Result<()> {
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if is_in_use_or_gone(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
35 25 0:30 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
36 35 0:31 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
37 35 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 35 0:33 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
39 35 0:34 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_layout_is_v1_with_controllers() {
        let m = parse_mounts(HYBRID);
        assert!(!m.unified());
        assert_eq!(m.v1_for("memory"), Some(Path::new("/sys/fs/cgroup/memory")));
        assert_eq!(m.v1_for("pids"), None);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(m.roots().len(), 4);
    }

    #[test]
    fn pure_v2_is_unified() {
        let m = parse_mounts("30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n");
        assert!(m.unified());
    }

    #[test]
    fn qos_places_the_pod() {
        assert_eq!(
            PodCgroup::new("selur-n1", "Guaranteed", "u1").container_path("c"),
            "/selur-n1/podu1/c"
        );
        assert_eq!(
            PodCgroup::new("/selur-n1/", "Burstable", "u1").relative(),
            Path::new("selur-n1/burstable/podu1")
        );
        assert_eq!(
            PodCgroup::new("selur-n1", "BestEffort", "u1").relative(),
            Path::new("selur-n1/besteffort/podu1")
        );
    }

    #[test]
    fn weight_conversion_matches_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }
}
