//! Every setup step is safe to repeat after the agent was SIGKILLed at any
//! point, and removal leaves nothing behind (needs root: mounts, namespaces,
//! cgroups). Each test finds its mounts and cgroups through its own temp
//! dir and cgroup parent name, and cleans them up also when it fails.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use selur_runtime::cgroups::{PodCgroup, PodLimits};
use selur_runtime::rootfs::{unmount_under, Rootfs};
use selur_runtime::runc::Runtime;
use selur_runtime::sandbox::Sandbox;

/// Mount points at or below `dir`, one entry per mount (stacked ones repeat).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(&dir))
        .collect()
}

/// Unmounts everything under the test's temp dir on drop (then the temp dir goes).
struct MountGuard(tempfile::TempDir);

impl Drop for MountGuard {
    fn drop(&mut self) {
        for (p, e) in unmount_under(self.0.path()) {
            eprintln!("cleanup: cannot unmount {}: {e}", p.display());
        }
    }
}

fn temp() -> MountGuard {
    MountGuard(tempfile::tempdir().expect("tempdir"))
}

/// The namespace inode a namespace file refers to (the file's own inode
/// when nothing is bound on it).
fn ns_inode(p: &Path) -> u64 {
    std::fs::metadata(p).expect("stat namespace file").ino()
}

#[test]
fn sandbox_begins_again_over_a_killed_attempt() {
    let g = temp();
    let dir = g.0.path().join("pods/u1/ns");
    // A first attempt that got as far as binding the namespaces, killed
    // before anything was recorded.
    let first = Sandbox::create(&dir).expect("first sandbox");
    let old_net = ns_inode(&first.net_path());
    // Something (a container of that attempt) still uses the old namespace.
    let _holder = std::fs::File::open(first.net_path()).expect("hold the old namespace");
    // An attempt killed before `finish`: its unshare stacks a second set of
    // bind mounts on the same files.
    let pending = Sandbox::begin(&dir, None).expect("second begin over a mounted sandbox");
    drop(pending);
    // Let that orphaned unshare finish binding, as a real one would.
    std::thread::sleep(Duration::from_millis(300));
    // The restarted agent starts the pod afresh on the same dir.
    let sb = Sandbox::begin(&dir, None)
        .expect("begin over a half-done sandbox")
        .finish()
        .expect("finish over a half-done sandbox");
    let net_mounts: Vec<_> = mounts_under(g.0.path())
        .into_iter()
        .filter(|m| m.ends_with("net"))
        .collect();
    assert_eq!(
        net_mounts.len(),
        1,
        "one net namespace bound: {net_mounts:?}"
    );
    assert_ne!(ns_inode(&sb.net_path()), old_net, "a fresh namespace");
    // Loopback is up in the new namespace.
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", sb.net_path().display()))
        .args(["ip", "-o", "addr"])
        .output()
        .expect("nsenter");
    assert!(String::from_utf8_lossy(&out.stdout).contains("::1"));
    sb.destroy().expect("destroy");
    assert_eq!(mounts_under(g.0.path()), Vec::<PathBuf>::new());
    // Destroying again is fine.
    sb.destroy().expect("destroy twice");
}

#[test]
fn sandbox_destroy_removes_stacked_mounts() {
    let g = temp();
    let dir = g.0.path().join("ns");
    Sandbox::create(&dir).expect("first");
    let sb = Sandbox::create(&dir).expect("second over the first");
    // Stack one more by hand, as an orphaned unshare of a killed attempt would.
    let out = std::process::Command::new("unshare")
        .arg(format!("--net={}", sb.net_path().display()))
        .arg("true")
        .output()
        .expect("unshare");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sb.destroy().expect("destroy");
    assert_eq!(mounts_under(g.0.path()), Vec::<PathBuf>::new());
    assert!(!sb.net_path().exists());
}

fn layer(root: &Path) -> PathBuf {
    let l = root.join("layer");
    std::fs::create_dir_all(&l).expect("layer dir");
    std::fs::write(l.join("file"), "from the layer").expect("layer file");
    l
}

#[test]
fn rootfs_mounts_again_over_a_killed_attempt() {
    let g = temp();
    let l = layer(g.0.path());
    let r = Rootfs::at(&g.0.path().join("c1"));
    r.mount(std::slice::from_ref(&l)).expect("first mount");
    std::fs::write(r.merged.join("written"), "by the first attempt").expect("write");
    // The restarted agent mounts again without knowing about the first.
    r.mount(std::slice::from_ref(&l)).expect("second mount");
    assert_eq!(
        mounts_under(&r.merged).len(),
        1,
        "one overlay at the merged dir"
    );
    assert_eq!(
        std::fs::read_to_string(r.merged.join("file")).expect("read"),
        "from the layer"
    );
    r.remove().expect("remove");
    assert_eq!(mounts_under(g.0.path()), Vec::<PathBuf>::new());
    assert!(!r.merged.exists() && !r.upper.exists() && !r.work.exists());
    r.remove().expect("remove twice");
}

/// Every cgroup hierarchy this host mounts (v1 controllers, named v1, v2).
fn hierarchies() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            matches!(fstype, "cgroup" | "cgroup2")
                .then(|| PathBuf::from(left.split(' ').nth(4).unwrap_or("")))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn is_v1(root: &Path) -> bool {
    root.join("cgroup.procs").exists() && !root.join("cgroup.controllers").exists()
}

/// Removes whatever is left under the test's own cgroup parent on drop
/// (after killing the test's own process in there, if any).
struct CgroupGuard(String, Option<std::process::Child>);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(c) = self.1.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for root in hierarchies() {
            let top = root.join(&self.0);
            if top.exists() {
                remove_tree(&top);
            }
        }
    }
}

fn remove_tree(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path());
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        eprintln!("cleanup: cannot remove {}: {e}", dir.display());
    }
}

fn leftovers(parent: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|r| r.join(parent))
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn pod_cgroup_removal_leaves_no_directory_in_any_hierarchy() {
    let parent = format!("selur-test-cg-{}", std::process::id());
    let mut g = CgroupGuard(parent.clone(), None);
    let cg = PodCgroup::new(&parent, "Burstable", "u-cg");
    let limits = PodLimits {
        memory: Some(64 << 20),
        cpu_shares: 256,
        cpu_quota: Some(50_000),
        pids: Some(100),
    };
    cg.create(&limits).expect("create");
    // Created again over itself (an interrupted attempt): fine.
    cg.create(&limits).expect("create twice");
    // A process that is still leaving when the pod is removed.
    let child = std::process::Command::new("sleep")
        .arg("0.7")
        .spawn()
        .expect("spawn sleep");
    let pid = child.id().to_string();
    g.1 = Some(child);
    let roots = hierarchies();
    assert!(!roots.is_empty(), "no cgroup hierarchy mounted");
    for root in &roots {
        // As runc does for each container: a directory in every hierarchy.
        for ctr in ["c1", "c2"] {
            let d = root.join(cg.relative()).join(ctr);
            std::fs::create_dir_all(&d).expect("container cgroup");
        }
        // (cpuset would need cpus and mems first; the others take it as is.)
        if is_v1(root) && !root.ends_with("cpuset") {
            std::fs::write(
                root.join(cg.relative()).join("c1").join("cgroup.procs"),
                &pid,
            )
            .expect("move the process into c1");
        }
    }
    let mut child = g.1.take().expect("the child");
    let reaper = std::thread::spawn(move || child.wait());
    let result = cg.remove();
    let _ = reaper.join();
    result.expect("remove");
    assert_eq!(leftovers(&parent), Vec::<PathBuf>::new());
    // Removing again is fine.
    cg.remove().expect("remove twice");
}

#[test]
fn discarding_an_interrupted_start_leaves_nothing() {
    let g = temp();
    let parent = format!("selur-test-discard-{}", std::process::id());
    let _cg = CgroupGuard(parent.clone(), None);
    let pod_dir = g.0.path().join("pods/u2");
    let l = layer(g.0.path());
    let cg = PodCgroup::new(&parent, "BestEffort", "u2");
    // Half a start: sandbox, a mounted root file system, the pod cgroup.
    let _sb = Sandbox::create(&pod_dir.join("ns")).expect("sandbox");
    Rootfs::at(&pod_dir.join("containers/app"))
        .mount(&[l])
        .expect("rootfs");
    cg.create(&PodLimits::default()).expect("cgroup");
    let rt = Runtime::new("runc", g.0.path().join("runc"));
    selur_runtime::restart::discard_interrupted_start(&pod_dir, &rt, &cg).expect("discard");
    assert_eq!(mounts_under(g.0.path()), Vec::<PathBuf>::new());
    assert!(!pod_dir.exists());
    assert_eq!(leftovers(&parent), Vec::<PathBuf>::new());
    // Nothing there any more: still fine.
    selur_runtime::restart::discard_interrupted_start(&pod_dir, &rt, &cg).expect("discard twice");
}
