//! One container of a pod on this node: its names and paths, and starting it
//! (overlay root from the unpacked image, OCI spec, `selur shim` process).

use std::path::PathBuf;

use serde_json::Value;

use selur_runtime::cgroups::PodCgroup;
use selur_runtime::rootfs::Rootfs;
use selur_runtime::sandbox::Sandbox;

use super::{container_id, pod_dir, runtime};
use crate::Agent;

/// What part a container plays in its pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular init container: runs to completion, in order.
    Init,
    /// An init container with `restartPolicy: Always`: starts in the init
    /// sequence and keeps running beside the app containers.
    Sidecar,
    App,
}

/// Names and paths of one container.
#[derive(Debug, Clone)]
pub struct Ctr {
    pub name: String,
    pub kind: Kind,
    pub id: String,
    pub dir: PathBuf,
    /// The directory of the container's logs, one file per run.
    pub log_dir: PathBuf,
    pub link: PathBuf,
    pub image: String,
    pub image_id: String,
    /// The container's spec.
    pub spec: Value,
}

/// How a run ended, from the shim's exit file.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    pub code: i64,
    pub finished_at: String,
    pub oom: bool,
}

impl Ctr {
    pub fn exit_file(&self) -> PathBuf {
        self.dir.join("exit.json")
    }

    /// The field path events use (`spec.containers{web}`).
    pub fn field_path(&self) -> String {
        match self.kind {
            Kind::App => format!("spec.containers{{{}}}", self.name),
            _ => format!("spec.initContainers{{{}}}", self.name),
        }
    }

    /// The current run's exit, once the shim recorded it.
    pub fn read_exit(&self) -> Option<Exit> {
        let v: Value = serde_json::from_slice(&std::fs::read(self.exit_file()).ok()?).ok()?;
        Some(Exit {
            code: v["exitCode"].as_i64().unwrap_or(255),
            finished_at: v["finishedAt"].as_str().unwrap_or("").to_string(),
            oom: v["oomKilled"].as_bool().unwrap_or(false),
        })
    }

    /// Whether a run was prepared (its bundle exists).
    pub fn has_bundle(&self) -> bool {
        self.dir.join("config.json").exists()
    }
}

/// Every container of the pod: init containers (regular and sidecar) in
/// order, then the app containers.
pub fn all(agent: &Agent, pod: &Value) -> Vec<Ctr> {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let dir = pod_dir(agent, uid);
    let mut out = Vec::new();
    for (field, sub) in [("initContainers", "i"), ("containers", "c")] {
        for c in pod["spec"][field].as_array().into_iter().flatten() {
            let cname = c["name"].as_str().unwrap_or("").to_string();
            let kind = match (field, c["restartPolicy"].as_str()) {
                ("containers", _) => Kind::App,
                (_, Some("Always")) => Kind::Sidecar,
                _ => Kind::Init,
            };
            let id = container_id(agent, uid, &cname);
            let image = c["image"].as_str().unwrap_or("").to_string();
            let image_id = agent
                .images
                .resolve(&image)
                .map(|d| d.to_string())
                .unwrap_or_default();
            out.push(Ctr {
                dir: dir.join(sub).join(&cname),
                log_dir: crate::logs::log_dir(agent, ns, name, uid, &cname),
                link: agent
                    .config
                    .log_link_dir
                    .join(format!("{name}_{ns}_{cname}-{id}.log")),
                name: cname,
                kind,
                id,
                image,
                image_id,
                spec: c.clone(),
            });
        }
    }
    out
}

/// What a container start needs from its pod.
pub struct StartCtx<'a> {
    pub agent: &'a Agent,
    pub pod: &'a Value,
    pub sandbox: &'a Sandbox,
    pub cgroup: &'a PodCgroup,
    pub sources: &'a crate::volumes::Sources,
    pub env: Vec<(String, String)>,
    /// Which run of the container this is (its restart count).
    pub run: u32,
}

/// Prepare and start one container's shim (blocking: unpack, mount, spawn).
pub fn start(cx: &StartCtx<'_>, c: &Ctr) -> Result<(), String> {
    let agent = cx.agent;
    let t0 = std::time::Instant::now();
    let k8s_pod: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(cx.pod.clone()).map_err(|e| e.to_string())?;
    let container: k8s_openapi::api::core::v1::Container =
        serde_json::from_value(c.spec.clone()).map_err(|e| e.to_string())?;
    let digest = agent.images.resolve(&c.image).map_err(|e| e.to_string())?;
    let layers = selur_image::unpack::unpack_image(&agent.images, &digest, &Default::default())
        .map_err(|e| e.to_string())?;
    let manifest = agent.images.manifest(&digest).map_err(|e| e.to_string())?;
    let (_, config) = agent.images.config(&manifest).map_err(|e| e.to_string())?;
    let t_image = t0.elapsed();
    let rootfs = Rootfs::at(&c.dir);
    let _ = rootfs.remove();
    rootfs.mount(&layers).map_err(|e| e.to_string())?;
    let t_mount = t0.elapsed();
    let pod_dir = pod_dir(agent, cx.pod["metadata"]["uid"].as_str().unwrap_or(""));
    let etc = pod_dir.join("etc");
    let mut mounts = crate::volumes::mounts_for(&c.spec, cx.sources)?;
    mounts.extend(crate::volumes::shm_mount(&c.spec, &pod_dir));
    let input = selur_runtime::SpecInput {
        pod: &k8s_pod,
        container: &container,
        image: &config,
        rootfs: rootfs.merged.clone(),
        hostname: cx.pod["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        netns: Some(cx.sandbox.net_path()),
        ipcns: Some(cx.sandbox.ipc_path()),
        utsns: Some(cx.sandbox.uts_path()),
        cgroups_path: cx.cgroup.container_path(&c.id),
        mounts,
        etc_files: selur_runtime::EtcFiles {
            hosts: Some(etc.join("hosts")),
            resolv_conf: Some(etc.join("resolv.conf")),
            hostname: Some(etc.join("hostname")),
        },
        env_resolved: cx.env.clone(),
        seccomp: true,
        pids_limit: Some(1024),
    };
    let spec = match selur_runtime::build_spec(&input) {
        Ok(s) => s,
        Err(e) => {
            let _ = rootfs.remove();
            return Err(e.to_string());
        }
    };
    std::fs::write(
        c.dir.join("config.json"),
        serde_json::to_vec(&spec).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(c.exit_file());
    let _ = std::fs::remove_file(c.dir.join("pid"));
    let log = link_log(c, cx.run)?;
    let t_spec = t0.elapsed();
    spawn_shim(agent, c, cx.cgroup, &log)?;
    let t_spawn = t0.elapsed();
    let r = wait_started(c);
    tracing::debug!(container = %c.id, image = ?t_image, mount = ?t_mount, spec = ?t_spec,
        spawn = ?t_spawn, started = ?t0.elapsed(), "container start timings (cumulative)");
    r
}

/// Wait until the runtime says the container's process runs (its pid file
/// appears) or it already ended (exit file), so status never runs ahead of
/// the container.
fn wait_started(c: &Ctr) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let pid = c.dir.join("pid");
    let mut pause = std::time::Duration::from_micros(500);
    while std::time::Instant::now() < deadline {
        if pid.exists() || c.exit_file().exists() {
            return Ok(());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(1));
    }
    Err("the runtime did not start the container within 30s".into())
}

/// This run's log file, linked from the shared log dir; runs before the
/// previous one are removed.
fn link_log(c: &Ctr, run: u32) -> Result<PathBuf, String> {
    std::fs::create_dir_all(&c.log_dir).map_err(|e| e.to_string())?;
    for old in crate::logs::runs(&c.log_dir) {
        if old + 1 < run {
            let _ = std::fs::remove_file(crate::logs::run_log(&c.log_dir, old));
        }
    }
    let log = crate::logs::run_log(&c.log_dir, run);
    if let Some(parent) = c.link.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::remove_file(&c.link);
    let _ = std::os::unix::fs::symlink(&log, &c.link);
    Ok(log)
}

fn spawn_shim(
    agent: &Agent,
    c: &Ctr,
    cgroup: &PodCgroup,
    log: &std::path::Path,
) -> Result<(), String> {
    let rt = runtime(agent);
    if rt.knows(&c.id) {
        let _ = rt.delete(&c.id);
    }
    // tokio's Command: a shim that exits while the agent runs is reaped
    // (tokio reaps dropped children), so no zombies pile up.
    let mut cmd = tokio::process::Command::new(&agent.config.shim);
    cmd.args(["shim", "--id", &c.id]);
    if let Some(dir) = selur_runtime::cgroups::v1_memory_dir(&cgroup.container_path(&c.id)) {
        cmd.arg("--memory-cgroup").arg(dir);
    }
    cmd.arg("--runtime")
        .arg(&rt.binary)
        .arg("--runtime-root")
        .arg(&rt.root)
        .arg("--bundle")
        .arg(&c.dir)
        .arg("--log")
        .arg(log)
        .arg("--log-max-size")
        .arg(agent.config.log_max_size.to_string())
        .arg("--log-max-files")
        .arg(agent.config.log_max_files.to_string())
        .arg("--exit-file")
        .arg(c.exit_file())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // Its own process group: the agent's signals and exit do not reach it.
        .process_group(0)
        .spawn()
        .map(|_| ())
        .map_err(|e| format!("cannot start the shim: {e}"))
}

/// Remove a container's runtime state, root file system and log link.
pub fn remove(agent: &Agent, c: &Ctr) {
    let _ = runtime(agent).delete(&c.id);
    let _ = Rootfs::at(&c.dir).remove();
    let _ = std::fs::remove_file(&c.link);
}
