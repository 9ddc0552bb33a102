//! One container of a pod on this node: its names and paths, and starting it
//! (overlay root from the unpacked image, OCI spec, `selur shim` process).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;

use selur_runtime::cgroups::PodCgroup;
use selur_runtime::rootfs::{Rootfs, RootfsError};
use selur_runtime::sandbox::Sandbox;
use selur_runtime::SpecError;

use crate::volumes::VolumeError;

use super::host::PodHost;
use super::{container_id, pod_dir, runtime};
use crate::Agent;

/// Why a container could not be started (shown to users as the
/// container's `CreateContainerError` message and a Failed event).
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("container {name} is not in the pod spec")]
    NotInSpec { id: String, name: String },
    #[error("image {image}: {source}")]
    Image {
        image: String,
        #[source]
        source: selur_image::StoreError,
    },
    #[error("unpacking image {image}: {source}")]
    Unpack {
        image: String,
        #[source]
        source: selur_image::unpack::UnpackError,
    },
    #[error("root file system of {id}: {source}")]
    Rootfs {
        id: String,
        #[source]
        source: RootfsError,
    },
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("{source}")]
    Spec {
        id: String,
        #[source]
        source: SpecError,
    },
    #[error("encoding the OCI spec of {id}: {source}")]
    Encode {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the shim {shim}: {source}")]
    Shim {
        id: String,
        shim: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the runtime did not start the container within 30s")]
    NotStarted { id: String },
    /// A failure, and removing the half-made root file system failed too.
    #[error("{error} (removing its root file system failed too: {cleanup})")]
    Cleanup {
        #[source]
        error: Box<ContainerError>,
        cleanup: RootfsError,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ContainerError {
    let path = path.to_path_buf();
    move |source| ContainerError::Io { what, path, source }
}

/// Remove a file left by an earlier run; only a failure other than its
/// absence is worth a warning.
fn remove_stale(path: &Path, container: &str) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(container, path = %path.display(), error = %e, "cannot remove a stale file")
        }
    }
}

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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exit {
    pub code: i64,
    pub finished_at: String,
    pub oom: bool,
    /// `StartError` and why, when the shim could not run the container.
    pub start_error: Option<String>,
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
            start_error: (v["reason"] == "StartError")
                .then(|| v["message"].as_str().unwrap_or("").to_string()),
        })
    }

    /// Whether a run was prepared (its bundle exists).
    pub fn has_bundle(&self) -> bool {
        self.dir.join("config.json").exists()
    }
}

/// The pod's containers: init containers (regular and sidecar) in order,
/// then the app containers.
pub fn specs(pod: &Pod) -> impl Iterator<Item = (Kind, &Container)> {
    let spec = pod.spec.as_ref();
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let kind = if c.restart_policy.as_deref() == Some("Always") {
                Kind::Sidecar
            } else {
                Kind::Init
            };
            (kind, c)
        });
    let apps = spec
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| (Kind::App, c));
    init.chain(apps)
}

/// Every container of the pod: init containers (regular and sidecar) in
/// order, then the app containers.
pub fn all(agent: &Agent, pod: &Pod) -> Vec<Ctr> {
    let meta = &pod.metadata;
    let uid = meta.uid.as_deref().unwrap_or("");
    let name = meta.name.as_deref().unwrap_or("");
    let ns = meta.namespace.as_deref().unwrap_or("default");
    let dir = pod_dir(agent, uid);
    specs(pod)
        .map(|(kind, c)| {
            let cname = c.name.clone();
            let sub = if kind == Kind::App { "c" } else { "i" };
            let id = container_id(agent, uid, &cname);
            let image = c.image.clone().unwrap_or_default();
            let image_id = agent
                .images
                .resolve(&image)
                .map(|d| d.to_string())
                .unwrap_or_default();
            Ctr {
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
                // Encoded from the decoded pod (probes, hooks and mounts
                // read it); k8s types always encode.
                spec: serde_json::to_value(c).unwrap_or_default(),
            }
        })
        .collect()
}

/// What a container start needs from its pod.
pub struct StartCtx<'a> {
    pub agent: &'a Agent,
    pub pod: &'a Pod,
    /// Where the root file system is mounted.
    pub host: &'a dyn PodHost,
    pub sandbox: &'a Sandbox,
    pub cgroup: &'a PodCgroup,
    pub sources: &'a crate::volumes::Sources,
    pub env: Vec<(String, String)>,
    /// Which run of the container this is (its restart count).
    pub run: u32,
}

/// Prepare and start one container's shim (blocking: unpack, mount, spawn).
pub fn start(cx: &StartCtx<'_>, c: &Ctr) -> Result<(), ContainerError> {
    let agent = cx.agent;
    let t0 = std::time::Instant::now();
    let container = specs(cx.pod)
        .map(|(_, k)| k)
        .find(|k| k.name == c.name)
        .ok_or_else(|| ContainerError::NotInSpec {
            id: c.id.clone(),
            name: c.name.clone(),
        })?;
    let image_err = |source| ContainerError::Image {
        image: c.image.clone(),
        source,
    };
    let digest = agent.images.resolve(&c.image).map_err(image_err)?;
    let layers = selur_image::unpack::unpack_image(&agent.images, &digest, &Default::default())
        .map_err(|source| ContainerError::Unpack {
            image: c.image.clone(),
            source,
        })?;
    let manifest = agent.images.manifest(&digest).map_err(image_err)?;
    let (_, config) = agent.images.config(&manifest).map_err(image_err)?;
    let t_image = t0.elapsed();
    let rootfs = Rootfs::at(&c.dir);
    // A root file system of an earlier run still mounted: mount afresh.
    if let Err(e) = cx.host.remove_rootfs(&rootfs) {
        tracing::warn!(container = %c.id, error = %e, "cannot remove the previous root file system");
    }
    cx.host
        .mount_rootfs(&rootfs, &layers)
        .map_err(|source| ContainerError::Rootfs {
            id: c.id.clone(),
            source,
        })?;
    let t_mount = t0.elapsed();
    let pod_dir = pod_dir(agent, super::uid_of(cx.pod));
    let etc = pod_dir.join("etc");
    let mut mounts = crate::volumes::mounts_for(&c.spec, cx.sources)?;
    mounts.extend(crate::volumes::shm_mount(&c.spec, &pod_dir));
    let input = selur_runtime::SpecInput {
        pod: cx.pod,
        container,
        image: &config,
        rootfs: rootfs.merged.clone(),
        hostname: cx.pod.metadata.name.clone().unwrap_or_default(),
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
        Err(source) => {
            let error = ContainerError::Spec {
                id: c.id.clone(),
                source,
            };
            return Err(match cx.host.remove_rootfs(&rootfs) {
                Ok(()) => error,
                Err(cleanup) => ContainerError::Cleanup {
                    error: Box::new(error),
                    cleanup,
                },
            });
        }
    };
    let config_json = c.dir.join("config.json");
    let bytes = serde_json::to_vec(&spec).map_err(|source| ContainerError::Encode {
        id: c.id.clone(),
        source,
    })?;
    std::fs::write(&config_json, bytes).map_err(io_err("writing", &config_json))?;
    remove_stale(&c.exit_file(), &c.id);
    remove_stale(&c.dir.join("pid"), &c.id);
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
fn wait_started(c: &Ctr) -> Result<(), ContainerError> {
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
    Err(ContainerError::NotStarted { id: c.id.clone() })
}

/// This run's log file, linked from the shared log dir; runs before the
/// previous one are removed.
fn link_log(c: &Ctr, run: u32) -> Result<PathBuf, ContainerError> {
    std::fs::create_dir_all(&c.log_dir).map_err(io_err("creating", &c.log_dir))?;
    for old in crate::logs::runs(&c.log_dir) {
        if old + 1 < run {
            remove_stale(&crate::logs::run_log(&c.log_dir, old), &c.id);
        }
    }
    let log = crate::logs::run_log(&c.log_dir, run);
    // The shared link is a convenience for log shippers: failures are only logged.
    if let Some(parent) = c.link.parent() {
        if let Err(e) = std::fs::create_dir_all(parent) {
            tracing::warn!(container = %c.id, dir = %parent.display(), error = %e, "cannot create the log link dir");
        }
    }
    remove_stale(&c.link, &c.id);
    if let Err(e) = std::os::unix::fs::symlink(&log, &c.link) {
        tracing::warn!(container = %c.id, link = %c.link.display(), error = %e, "cannot link the container log");
    }
    Ok(log)
}

fn spawn_shim(
    agent: &Agent,
    c: &Ctr,
    cgroup: &PodCgroup,
    log: &std::path::Path,
) -> Result<(), ContainerError> {
    let rt = runtime(agent);
    if rt.knows(&c.id) {
        if let Err(e) = rt.delete(&c.id) {
            tracing::warn!(container = %c.id, error = %e, "cannot delete the previous run from the runtime");
        }
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
        .arg("--tty")
        .arg(c.spec["tty"].as_bool().unwrap_or(false).to_string())
        .arg("--stdin")
        .arg(c.spec["stdin"].as_bool().unwrap_or(false).to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // Its own process group: the agent's signals and exit do not reach it.
        .process_group(0)
        .spawn()
        .map(|_| ())
        .map_err(|source| ContainerError::Shim {
            id: c.id.clone(),
            shim: agent.config.shim.clone(),
            source,
        })
}
