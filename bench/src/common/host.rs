//! Host helpers shared by the benchmarks: processes, runc roots, mounts,
//! cgroups, and `Host`, which removes everything a bench made.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};

use super::NODE;
// ---------------------------------------------------------------- host helpers

pub fn sh(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd}"))?;
    ensure!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// `Rss:` and `Pss:` of a process, in kB, from smaps_rollup.
pub fn rss_pss_kb(pid: u32) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| -> Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/smaps_rollup"))
    };
    Ok((field("Rss:")?, field("Pss:")?))
}

pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// `selur shim` processes whose `--runtime-root` lies under `dir`.
pub fn shims_under(dir: &Path) -> Vec<u32> {
    pids()
        .into_iter()
        .filter(|pid| {
            let argv = cmdline(*pid);
            argv.get(1).is_some_and(|a| a == "shim")
                && argv
                    .windows(2)
                    .any(|w| w[0] == "--runtime-root" && Path::new(&w[1]).starts_with(dir))
        })
        .collect()
}

/// Ids of the containers a runc state root holds.
pub fn runc_ids(root: &Path) -> Vec<String> {
    if !root.exists() {
        return Vec::new();
    }
    Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["list", "-q"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `runc delete --force` every container of `root`, four at a time.
pub fn runc_delete_all(root: &Path) {
    let ids = runc_ids(root);
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(id) = ids.get(i) else {
                    return;
                };
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(root)
                    .args(["delete", "--force", id])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            });
        }
    });
}

/// `umount -l` everything under `dir`, innermost first, in batches;
/// returns what is still mounted.
pub fn umount_under(dir: &Path) -> Vec<String> {
    for _ in 0..5 {
        let ms = mounts_under(dir);
        if ms.is_empty() {
            break;
        }
        for batch in ms.chunks(64) {
            let _ = Command::new("umount")
                .arg("-l")
                .args(batch)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    mounts_under(dir)
}

/// Mount points under `dir`, innermost (latest) first.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    v.reverse();
    v
}

/// rmdir a cgroup directory tree, children first.
pub fn rmdir_tree(dir: &Path) -> bool {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            rmdir_tree(&e.path());
        }
    }
    std::fs::remove_dir(dir).is_ok() || !dir.exists()
}

pub fn cgroup_dirs() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/sys/fs/cgroup").join(format!("selur-{NODE}"))];
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        if !p.is_symlink() && p.is_dir() {
            v.push(p.join(format!("selur-{NODE}")));
        }
    }
    v.into_iter().filter(|p| p.is_dir()).collect()
}

// ---------------------------------------------------------------- cleanup

/// Everything the bench made on the host; removed by `cleanup` (also on drop).
pub struct Host {
    /// The bench's name: temp dir prefix and log prefix.
    pub label: &'static str,
    pub data: Option<tempfile::TempDir>,
    pub floor: Option<tempfile::TempDir>,
    pub server: Option<std::process::Child>,
    /// The selur binary: set, `cleanup` runs `selur node reset --data-dir`
    /// on the server's data dir once the server is gone (bridge, routes,
    /// nftables table; call only inside the bench's own network namespace).
    pub reset_with: Option<PathBuf>,
}

impl Host {
    pub fn new(label: &'static str) -> Host {
        Host {
            label,
            data: None,
            floor: None,
            server: None,
            reset_with: None,
        }
    }

    pub fn data_dir(&self) -> Result<&Path> {
        self.data
            .as_ref()
            .map(|d| d.path())
            .ok_or_else(|| anyhow!("no data dir"))
    }

    pub fn agent_runc_root(&self) -> Result<PathBuf> {
        Ok(self.data_dir()?.join("agent").join("runc"))
    }

    pub fn server_pid(&self) -> Result<u32> {
        self.server
            .as_ref()
            .map(|c| c.id())
            .ok_or_else(|| anyhow!("no server"))
    }

    /// Remove everything; returns what could not be removed.
    pub fn cleanup(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let dirs: Vec<PathBuf> = [&self.data, &self.floor]
            .into_iter()
            .flatten()
            .map(|d| d.path().to_path_buf())
            .collect();
        if dirs.is_empty() {
            return problems;
        }
        let roots: Vec<PathBuf> = self
            .data
            .iter()
            .map(|d| d.path().join("agent").join("runc"))
            .chain(self.floor.iter().map(|d| d.path().join("runc")))
            .collect();
        for _ in 0..3 {
            for r in &roots {
                runc_delete_all(r);
            }
            if roots.iter().all(|r| runc_ids(r).is_empty()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for r in &roots {
            let left = runc_ids(r);
            if !left.is_empty() {
                problems.push(format!("runc containers left in {}: {left:?}", r.display()));
            }
        }
        // Shims exit once their `runc run` ended; kill stragglers.
        if let Some(d) = &self.data {
            let deadline = Instant::now() + Duration::from_secs(3);
            while !shims_under(d.path()).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            for pid in shims_under(d.path()) {
                let _ = Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if let (Some(selur), Some(d)) = (&self.reset_with, &self.data) {
            match Command::new(selur)
                .args(["node", "reset", "--data-dir"])
                .arg(d.path())
                .stdin(Stdio::null())
                .output()
            {
                Ok(o) if o.status.success() => {}
                Ok(o) => problems.push(format!(
                    "selur node reset: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => problems.push(format!("selur node reset: {e}")),
            }
        }
        for d in &dirs {
            let left = umount_under(d);
            if !left.is_empty() {
                problems.push(format!("mounts left: {left:?}"));
            }
        }
        if let Ok(entries) = std::fs::read_dir("/var/log/containers") {
            for e in entries.flatten() {
                if std::fs::read_link(e.path()).is_ok_and(|t| dirs.iter().any(|d| t.starts_with(d)))
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        for cg in cgroup_dirs() {
            let mut ok = false;
            for _ in 0..20 {
                if rmdir_tree(&cg) {
                    ok = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !ok {
                problems.push(format!("cgroup left: {}", cg.display()));
            }
        }
        for d in [self.data.take(), self.floor.take()].into_iter().flatten() {
            let p = d.path().to_path_buf();
            if let Err(e) = d.close() {
                problems.push(format!("removing {}: {e}", p.display()));
            }
        }
        problems
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for p in self.cleanup() {
            eprintln!("{}: cleanup: {p}", self.label);
        }
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub fn machine() -> String {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let runc = sh("runc", &["--version"])
        .ok()
        .and_then(|s| s.lines().next().map(String::from))
        .unwrap_or_else(|| "runc not found".into());
    format!("nproc {nproc}, kernel {kernel}, {runc}")
}
