//! Running the pods bound to this node: a sandbox (shared net/ipc/uts
//! namespaces held without a pause container), a pod cgroup in its QoS
//! class, per container an overlay root from the unpacked image, an OCI spec
//! and a `selur shim` process that runs it under the OCI runtime and writes
//! its json-file log (linked from `/var/log/containers`), then a supervision
//! loop ([`supervise`]) that reads exit files, restarts per `restartPolicy`
//! with back-off, and reports pod status.
//!
//! Containers run under their own shim processes, so they outlive agent
//! restarts: a restarted agent finds each pod's remembered state on disk
//! ([`state`]) and re-adopts it (same container processes, exits that
//! happened meanwhile reported with their codes); pods deleted meanwhile are
//! torn down. Deleting a pod stops its containers (app containers first,
//! then sidecars; TERM, grace period, KILL) and removes mounts, runtime
//! state, cgroups, namespaces and log links.
//!
//! The OS work goes through two small traits passed in explicitly, so the
//! set-up, supervision and teardown are tested without root against
//! recording fakes: [`ops::ContainerOps`] for the containers (start, signal,
//! exits, removal) and [`host::PodHost`] for the rest (sandbox, cgroup,
//! overlay roots, volume mounts).

mod container;
mod handlers;
mod host;
mod ops;
mod plan;
pub mod probes;
mod state;
mod status;
mod supervise;
mod terminate;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use tokio::sync::watch;

use selur_runtime::cgroups::{CgroupError, PodCgroup};
use selur_runtime::sandbox::{Sandbox, SandboxError};

use host::PodHost;

use crate::events::{event, Regarding};
use crate::volumes::VolumeError;
use crate::Agent;

pub use crate::layout::id_for;
pub(crate) use crate::layout::{container_id, pod_dir, runtime, sandbox_of};
use state::PodState;
use terminate::{pre_stop_hooks, teardown};

/// Pods this agent runs, by uid, and those it is stopping or stopped.
#[derive(Default)]
pub struct Running {
    pods: Mutex<HashMap<String, RunningPod>>,
    /// Uids being torn down, and (bounded) those torn down: a pod is
    /// stopped once, and never started again after.
    ending: Mutex<(HashSet<String>, HashSet<String>)>,
}

/// Remember at most this many torn-down uids.
const MAX_ENDED: usize = 8192;

struct RunningPod {
    stop: watch::Sender<bool>,
    images: Vec<selur_image::Digest>,
    /// Held by the supervision loop during each step and by the teardown.
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Running {
    /// Manifest digests of every running pod's images (never collected).
    pub fn images_in_use(&self) -> HashSet<selur_image::Digest> {
        self.pods
            .lock()
            .map(|m| m.values().flat_map(|p| p.images.iter().cloned()).collect())
            .unwrap_or_default()
    }

    /// Take on the pod with `uid`: its stop signal, or `None` when it is
    /// already taken on, or being (or was) torn down.
    pub fn claim(&self, uid: &str) -> Option<watch::Receiver<bool>> {
        let ending = self.ending.lock().ok()?;
        if ending.0.contains(uid) || ending.1.contains(uid) {
            return None;
        }
        let mut m = self.pods.lock().ok()?;
        if m.contains_key(uid) {
            return None;
        }
        let (tx, rx) = watch::channel(false);
        m.insert(
            uid.to_string(),
            RunningPod {
                stop: tx,
                images: Vec::new(),
                lock: Arc::default(),
            },
        );
        Some(rx)
    }

    /// Mark the pod with `uid` as being torn down; false when it already is
    /// (or was).
    pub fn begin_termination(&self, uid: &str) -> bool {
        let Ok(mut ending) = self.ending.lock() else {
            return false;
        };
        if ending.1.contains(uid) {
            return false;
        }
        ending.0.insert(uid.to_string())
    }

    /// The pod with `uid` is gone from this node.
    pub fn end_termination(&self, uid: &str) {
        if let Ok(mut ending) = self.ending.lock() {
            ending.0.remove(uid);
            if ending.1.len() >= MAX_ENDED {
                ending.1.clear();
            }
            ending.1.insert(uid.to_string());
        }
    }

    /// Uids of the pods running here.
    pub fn uids(&self) -> Vec<String> {
        self.pods
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// Whether the pod with `uid` was started on this node before (its state is on disk).
pub(crate) fn runs_here(agent: &Agent, uid: &str) -> bool {
    !uid.is_empty() && pod_dir(agent, uid).join("state.json").exists()
}

/// Why a pod's sandbox, /etc files, cgroup or volumes could not be set up
/// (shown to users as `Failed to create pod sandbox: ...`).
#[derive(Debug, thiserror::Error)]
pub enum SetUpError {
    #[error("the pod spec does not decode: {source}")]
    Decode {
        uid: String,
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
    #[error("encoding the pod: {source}")]
    Encode {
        uid: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("pod sandbox: {source}")]
    Sandbox {
        uid: String,
        #[source]
        source: SandboxError,
    },
    #[error("pod cgroup: {source}")]
    Cgroup {
        uid: String,
        #[source]
        source: CgroupError,
    },
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("pod network: {0}")]
    Network(#[from] crate::network::NetworkError),
    #[error("the set-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A failure, and removing the sandbox made for it failed too.
    #[error("{error} (removing the sandbox failed too: {cleanup})")]
    Cleanup {
        #[source]
        error: Box<SetUpError>,
        cleanup: SandboxError,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SetUpError {
    let path = path.to_path_buf();
    move |source| SetUpError::Io { what, path, source }
}

/// The pod as the runtime works with it, decoded once from the API's JSON.
pub(crate) fn decode(pod: &Value) -> Result<Arc<Pod>, SetUpError> {
    serde_json::from_value(pod.clone())
        .map(Arc::new)
        .map_err(|source| SetUpError::Decode {
            uid: pod["metadata"]["uid"].as_str().unwrap_or("").to_string(),
            source,
        })
}

/// The pod's uid (empty when it has none).
pub(crate) fn uid_of(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// The pod's QoS class as Kubernetes names it (`Guaranteed`, ...).
pub(crate) fn qos_of(pod: &Pod) -> String {
    format!("{:?}", selur_runtime::qos_class(pod))
}

/// The cgroup parent of the pods of node `node`.
pub fn cgroup_parent(node: &str) -> String {
    format!("selur-{node}")
}

/// The pod's cgroup (in its QoS class, under this agent's parent).
fn cgroup_of(agent: &Agent, pod: &Pod) -> PodCgroup {
    PodCgroup::new(
        &cgroup_parent(&agent.config.node_name),
        &qos_of(pod),
        uid_of(pod),
    )
}

/// Report `status` as the pod's status (a failure is logged).
pub(crate) async fn patch_status(agent: &Agent, pod: &(impl Regarding + ?Sized), status: Value) {
    let r = pod.object_ref("");
    let ns = if r.namespace.is_empty() {
        "default"
    } else {
        r.namespace.as_str()
    };
    let path = format!("/api/v1/namespaces/{ns}/pods/{}/status", r.name);
    if let Err(e) = agent
        .call(
            reqwest::Method::PATCH,
            &path,
            "application/merge-patch+json",
            &json!({"status": status}),
        )
        .await
    {
        tracing::warn!(pod = %r.name, error = %e, "cannot report pod status");
    }
}

/// Sandbox, /etc files, the pod cgroup and volumes of a new pod, made on
/// `host` (blocking). On a failure after the sandbox was begun, the sandbox
/// is destroyed again; the first error is returned (with the destroy's, if
/// that failed too). The cgroup and volumes of a failed set-up stay until
/// the pod's teardown.
fn set_up(
    agent: &Agent,
    host: &dyn PodHost,
    pod: &Pod,
    fetched: &crate::volumes::files::Fetched,
) -> Result<(Sandbox, crate::volumes::Sources), SetUpError> {
    let uid = uid_of(pod);
    let hostname = selur_runtime::pod_hostname(pod);
    let name = hostname.as_str();
    let dir = pod_dir(agent, uid);
    std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
    let pod_json = dir.join("pod.json");
    let bytes = serde_json::to_vec(pod).map_err(|source| SetUpError::Encode {
        uid: uid.to_string(),
        source,
    })?;
    std::fs::write(&pod_json, bytes).map_err(io_err("writing", &pod_json))?;
    let sandbox_err = |source| SetUpError::Sandbox {
        uid: uid.to_string(),
        source,
    };
    let net = agent.net.get();
    let iface = net.map(|n| n.interface(uid, &dir)).transpose()?.flatten();
    // unshare runs while the rest is prepared.
    let pending = host
        .begin_sandbox(&dir.join("ns"), iface.as_ref())
        .map_err(sandbox_err)?;
    let rest = (|| -> Result<crate::volumes::Sources, SetUpError> {
        let etc = dir.join("etc");
        std::fs::create_dir_all(&etc).map_err(io_err("creating", &etc))?;
        let write = |file: &str, text: String| {
            let path = etc.join(file);
            std::fs::write(&path, text).map_err(io_err("writing", &path))
        };
        write(
            "hosts",
            format!("::1\tlocalhost ip6-localhost ip6-loopback\n::1\t{name}\n"),
        )?;
        write(
            "resolv.conf",
            crate::network::resolv::resolv_conf(pod, net.map(|n| n.as_ref())),
        )?;
        write("hostname", format!("{name}\n"))?;
        host.create_cgroup(
            &cgroup_of(agent, pod),
            &selur_runtime::pod_limits(pod, 1024 * 8),
        )
        .map_err(|source| SetUpError::Cgroup {
            uid: uid.to_string(),
            source,
        })?;
        Ok(host.prepare_volumes(pod, &dir, fetched)?)
    })();
    let sb = pending.finish().map_err(sandbox_err)?;
    // CNI mode: the plugins give the namespace its interface now.
    let rest = match (rest, net) {
        (Ok(sources), Some(n)) => n
            .cni_add(uid, &dir, &sb.net_path())
            .map(|()| sources)
            .map_err(SetUpError::from),
        (r, _) => r,
    };
    match rest {
        Ok(sources) => Ok((sb, sources)),
        Err(error) => match host.destroy_sandbox(&sb) {
            Ok(()) => Err(error),
            Err(cleanup) => Err(SetUpError::Cleanup {
                error: Box::new(error),
                cleanup,
            }),
        },
    }
}

/// The pod's ConfigMap and Secret volume contents; while one is missing
/// (and not optional) the pod waits, with a FailedMount event, and retries
/// until it appears or the pod is stopped (`None`).
async fn fetch_volumes(
    agent: &Agent,
    pod: &Pod,
    mut stop: watch::Receiver<bool>,
) -> Option<crate::volumes::files::Fetched> {
    let mut last = String::new();
    loop {
        match crate::volumes::files::fetch(agent, pod).await {
            Ok(f) => return Some(f),
            Err(e) => {
                let msg = e.to_string();
                if msg != last {
                    event(agent, pod, "", "Warning", "FailedMount", &msg).await;
                    last = msg;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => return None,
        }
    }
}

/// Start `pod` (claimed with [`Running::claim`], whose stop signal is
/// `rx`), or re-adopt it when it ran here before this agent started, and
/// supervise it until it is stopped. The pod is decoded once, here; one
/// that does not decode gets a FailedCreatePodSandBox event instead.
pub async fn start(agent: Arc<Agent>, pod: Value, rx: watch::Receiver<bool>) {
    let pod = match decode(&pod) {
        Ok(p) => p,
        Err(e) => {
            sandbox_failed(&agent, &pod, &e).await;
            return;
        }
    };
    let uid = uid_of(&pod).to_string();
    let lock = {
        let Ok(mut m) = agent.running.pods.lock() else {
            return;
        };
        let Some(entry) = m.get_mut(&uid) else {
            return;
        };
        entry.images = container::all(&agent, &pod)
            .iter()
            .filter_map(|c| selur_image::Digest::parse(&c.image_id).ok())
            .collect();
        entry.lock.clone()
    };
    let dir = pod_dir(&agent, &uid);
    let Some(fetched) = fetch_volumes(&agent, &pod, rx.clone()).await else {
        return;
    };
    let guard = lock.clone().lock_owned().await;
    // Stopped while waiting: the teardown ran (or runs next) without us.
    if *rx.borrow() {
        return;
    }
    // A bounded number of pods start at once: many runtimes starting
    // together on a few cores are slower than a few at a time.
    let permit = agent.start_permits.clone().acquire_owned().await.ok();
    let t0 = std::time::Instant::now();
    let remembered = PodState::load(&dir);
    let host: Arc<dyn PodHost> =
        Arc::new(host::Os::new(runtime(&agent)).with_network(agent.net.get().cloned()));
    let (a, p, h) = (agent.clone(), pod.clone(), host.clone());
    let adopt = remembered.is_some();
    let setup = tokio::task::spawn_blocking(move || {
        let dir = pod_dir(&a, uid_of(&p));
        if adopt {
            mark_vanished(&a, &p, &dir);
            let sources = h.prepare_volumes(&p, &dir, &fetched)?;
            Ok((Sandbox::at(&dir.join("ns")), sources))
        } else {
            // A start killed half-way (no state.json yet) left containers,
            // mounts or a cgroup: discard them and start afresh.
            if dir.exists() {
                if let Err(e) = h.discard_interrupted_start(&dir, &cgroup_of(&a, &p)) {
                    tracing::warn!(uid = uid_of(&p), error = %e, "cleaning up an interrupted pod start");
                }
            }
            set_up(&a, h.as_ref(), &p, &fetched)
        }
    })
    .await
    .unwrap_or_else(|e| Err(e.into()));
    let (sb, sources) = match setup {
        Ok(r) => r,
        Err(e) => {
            sandbox_failed(&agent, &pod, &e).await;
            return;
        }
    };
    let mut state = remembered.unwrap_or_else(|| PodState {
        start_time: crate::node::now_secs(),
        ..Default::default()
    });
    // The pod's address: in its status, and for the downward API.
    let pod_ip = crate::network::ipam::recorded(&pod_dir(&agent, &uid));
    state.pod_ip = pod_ip.map(|ip| ip.to_string());
    state.host_ip = agent.config.network.node_ip.map(|ip| ip.to_string());
    let pod = match pod_ip {
        Some(ip) => {
            let mut p = (*pod).clone();
            let st = p.status.get_or_insert_with(Default::default);
            st.pod_ip = Some(ip.to_string());
            st.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
                ip: ip.to_string(),
            }]);
            st.host_ip = state.host_ip.clone();
            Arc::new(p)
        }
        None => pod,
    };
    if adopt {
        tracing::info!(
            pod = pod.metadata.name.as_deref().unwrap_or(""),
            uid,
            "re-adopted a running pod"
        );
    }
    let cx = ops::PodCx {
        cgroup: cgroup_of(&agent, &pod),
        agent: agent.clone(),
        pod,
        host,
        sandbox: sb,
        sources,
    };
    let mut run = supervise::PodRun::new(cx, state, rx.clone());
    // The first step starts the first containers; then the permit goes.
    let t_setup = t0.elapsed();
    if !*rx.borrow() {
        run.step().await;
    }
    tracing::debug!(uid, setup = ?t_setup, first_step = ?t0.elapsed(), "pod start timings (cumulative)");
    drop(permit);
    drop(guard);
    run.run(rx, lock).await;
}

/// Tell the user why the pod does not start.
async fn sandbox_failed(agent: &Agent, pod: &(impl Regarding + ?Sized), e: &SetUpError) {
    tracing::warn!(uid = %pod.object_ref("").uid, error = %e, "pod set-up failed");
    event(
        agent,
        pod,
        "",
        "Warning",
        "FailedCreatePodSandBox",
        &format!("Failed to create pod sandbox: {e}"),
    )
    .await;
}

/// Containers that were started but neither recorded an exit nor are known
/// to the runtime any more (their shim died with the machine) get an exit
/// file saying so, as Kubernetes reports `ContainerStatusUnknown`.
fn mark_vanished(agent: &Agent, pod: &Pod, dir: &std::path::Path) {
    let Some(st) = PodState::load(dir) else {
        return;
    };
    let rt = runtime(agent);
    for c in container::all(agent, pod) {
        let started = st.containers.get(&c.name).is_some_and(|s| s.started);
        if !started || c.read_exit().is_some() || !c.has_bundle() {
            continue;
        }
        let gone = || rt.state(&c.id).is_none() && c.read_exit().is_none();
        if gone() && {
            std::thread::sleep(Duration::from_millis(300));
            gone()
        } {
            let v = json!({"exitCode": 137, "finishedAt": crate::node::now_secs(),
                "reason": "ContainerStatusUnknown"});
            if let Err(e) = std::fs::write(c.exit_file(), v.to_string()) {
                tracing::warn!(container = %c.id, error = %e, "cannot record a vanished container's exit");
            }
        }
    }
}

/// Stop and remove everything of `pod`: its start or supervision stops at
/// once, then preStop hooks, TERM, at most `grace`, KILL, cleanup.
pub async fn stop(agent: Arc<Agent>, pod: Value, grace: Duration) {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
    // A pod that never decoded never started: what it may have left (its
    // dir, a cgroup) still goes.
    let pod = decode(&pod).unwrap_or_else(|e| {
        tracing::warn!(uid, error = %e, "tearing down a pod whose spec does not decode");
        let mut bare = Pod::default();
        bare.metadata.uid = Some(uid.clone());
        bare.metadata.name = pod["metadata"]["name"].as_str().map(String::from);
        bare.metadata.namespace = pod["metadata"]["namespace"].as_str().map(String::from);
        Arc::new(bare)
    });
    let entry = agent
        .running
        .pods
        .lock()
        .ok()
        .and_then(|mut m| m.remove(&uid));
    let _guard = match entry {
        Some(p) => {
            // Receivers may be gone already (the pod never started).
            p.stop.send_replace(true);
            Some(p.lock.lock_owned().await)
        }
        None => None,
    };
    let grace = grace.min(Duration::from_secs(3600));
    let began = std::time::Instant::now();
    pre_stop_hooks(&agent, &pod, grace).await;
    let grace = grace.saturating_sub(began.elapsed());
    let a = agent.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || teardown(&a, &pod, grace)).await {
        tracing::error!(uid, error = %e, "pod teardown task failed");
    }
}

#[cfg(test)]
mod tests {
    use super::host::fake::{Call, Fake, Held, Step};
    use super::*;

    /// An agent keeping its pods under `dir` (its API server refuses
    /// connections; set-up never calls it).
    fn agent(dir: &Path) -> Agent {
        let config = crate::AgentConfig::new("http://[::1]:9".into(), "n1".into(), dir.into());
        let images = selur_image::ImageStore::open(&dir.join("images")).unwrap();
        Agent::new(config, Arc::new(images)).unwrap()
    }

    fn pod() -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .unwrap()
    }

    #[test]
    fn a_set_up_makes_the_sandbox_etc_files_cgroup_and_volumes() {
        let tmp = tempfile::tempdir().unwrap();
        let (agent, pod, host) = (agent(tmp.path()), pod(), Fake::default());
        let (sb, _) = set_up(&agent, &host, &pod, &Default::default()).unwrap();
        let dir = pod_dir(&agent, "u1");
        let ns = dir.join("ns");
        let cgroup = cgroup_of(&agent, &pod).relative().to_path_buf();
        assert_eq!(sb.net_path(), ns.join("net"));
        assert_eq!(
            host.calls(),
            [
                Call::BeginSandbox(ns.clone()),
                Call::CreateCgroup(cgroup.clone()),
                Call::PrepareVolumes(dir.clone()),
                Call::FinishSandbox(ns.clone()),
            ]
        );
        let mut held = host.held();
        held.sort();
        assert_eq!(
            held,
            [
                Held::Sandbox(ns),
                Held::Cgroup(cgroup),
                Held::Volumes(dir.clone())
            ]
        );
        let hosts = std::fs::read_to_string(dir.join("etc/hosts")).unwrap();
        assert!(hosts.contains("::1\tp\n"), "{hosts}");
        assert!(dir.join("pod.json").exists());
    }

    #[test]
    fn a_set_up_whose_cgroup_fails_destroys_the_sandbox_it_began() {
        let tmp = tempfile::tempdir().unwrap();
        let (agent, pod, host) = (agent(tmp.path()), pod(), Fake::default());
        host.fail(Step::CreateCgroup);
        let e = set_up(&agent, &host, &pod, &Default::default()).unwrap_err();
        assert!(
            matches!(&e, SetUpError::Cgroup { uid, .. } if uid == "u1"),
            "{e}"
        );
        assert!(e.to_string().starts_with("pod cgroup: "), "{e}");
        let ns = pod_dir(&agent, "u1").join("ns");
        assert_eq!(
            host.calls(),
            [
                Call::BeginSandbox(ns.clone()),
                Call::CreateCgroup(cgroup_of(&agent, &pod).relative().into()),
                Call::FinishSandbox(ns.clone()),
                Call::DestroySandbox(ns),
            ]
        );
        assert!(host.held().is_empty(), "{:?}", host.held());
    }

    #[test]
    fn a_set_up_whose_sandbox_removal_fails_too_keeps_both_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let (agent, pod, host) = (agent(tmp.path()), pod(), Fake::default());
        host.fail(Step::CreateCgroup);
        host.fail(Step::DestroySandbox);
        let e = set_up(&agent, &host, &pod, &Default::default()).unwrap_err();
        let SetUpError::Cleanup { error, cleanup } = &e else {
            panic!("not a cleanup failure: {e}");
        };
        assert!(matches!(**error, SetUpError::Cgroup { .. }), "{error}");
        assert!(cleanup.to_string().contains("DestroySandbox"), "{cleanup}");
        assert!(
            e.to_string().contains("removing the sandbox failed too"),
            "{e}"
        );
    }

    #[test]
    fn a_set_up_whose_sandbox_does_not_begin_makes_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let (agent, pod, host) = (agent(tmp.path()), pod(), Fake::default());
        host.fail(Step::BeginSandbox);
        let e = set_up(&agent, &host, &pod, &Default::default()).unwrap_err();
        assert!(matches!(&e, SetUpError::Sandbox { .. }), "{e}");
        assert_eq!(
            host.calls(),
            [Call::BeginSandbox(pod_dir(&agent, "u1").join("ns"))]
        );
    }

    #[test]
    fn a_pod_that_does_not_decode_says_so() {
        let bad = json!({"metadata": {"name": "p", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "ports": "80"}]}});
        let e = decode(&bad).unwrap_err();
        assert!(matches!(&e, SetUpError::Decode { uid, .. } if uid == "u1"));
        assert!(
            format!("Failed to create pod sandbox: {e}")
                .starts_with("Failed to create pod sandbox: the pod spec does not decode: "),
            "{e}"
        );
    }

    #[test]
    fn a_pod_remembered_without_its_pod_json_still_decodes_for_teardown() {
        let bare = json!({"metadata": {"uid": "u1"}, "spec": {}});
        let pod = decode(&bare).unwrap();
        assert_eq!(uid_of(&pod), "u1");
    }
}
