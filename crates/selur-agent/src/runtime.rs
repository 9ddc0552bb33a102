//! Running the pods bound to this node: a sandbox (shared net/ipc/uts
//! namespaces held without a pause container), per container an overlay root
//! from the unpacked image, an OCI spec and a `selur shim` process that runs
//! it under runc and writes its json-file log (linked from
//! `/var/log/containers`), then a monitor that reads exit files, restarts
//! per `restartPolicy` with back-off, and reports pod status. Deleting the
//! pod stops its containers (TERM, grace period, KILL) and removes mounts,
//! runtime state, namespaces and links.
//!
//! Containers run under their own shim processes, so they outlive agent
//! restarts. Not yet: init containers, probes, volumes, ConfigMap/Secret env.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use selur_runtime::rootfs::Rootfs;
use selur_runtime::runc::Runtime;
use selur_runtime::sandbox::Sandbox;

use crate::node::now_secs;
use crate::pods::event;
use crate::Agent;

/// Pods this agent runs, by uid: a stop signal for each monitor and the
/// image digests its containers use (never garbage collected while running).
#[derive(Default)]
pub struct Running {
    pods: Mutex<HashMap<String, RunningPod>>,
}

/// A running pod's monitor stop signal and image digests.
type RunningPod = (watch::Sender<bool>, Vec<selur_image::Digest>);

impl Running {
    /// Manifest digests of every running pod's images.
    pub fn images_in_use(&self) -> std::collections::HashSet<selur_image::Digest> {
        self.pods
            .lock()
            .map(|m| m.values().flat_map(|(_, d)| d.iter().cloned()).collect())
            .unwrap_or_default()
    }
}

/// Resolved environment per container name.
type Envs = HashMap<String, Vec<(String, String)>>;

/// Resolve every container's environment (ConfigMaps and Secrets come from the API).
async fn resolve_envs(agent: &Agent, pod: &Value) -> Result<Envs, String> {
    let mut out = Envs::new();
    let all = ["initContainers", "containers"]
        .map(|f| pod["spec"][f].as_array().cloned().unwrap_or_default());
    for c in all.iter().flatten() {
        let name = c["name"].as_str().unwrap_or("").to_string();
        let env = crate::env::resolve(agent, pod, c)
            .await
            .map_err(|e| format!("container {name}: {e}"))?;
        out.insert(name, env);
    }
    Ok(out)
}

struct Ctr {
    name: String,
    id: String,
    dir: PathBuf,
    log: PathBuf,
    link: PathBuf,
    image: String,
    image_id: String,
}

impl Ctr {
    fn exit_file(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
}

/// The OCI runtime this agent drives.
pub(crate) fn runtime(agent: &Agent) -> Runtime {
    Runtime::new(&agent.config.runtime, agent.config.data_dir.join("runc"))
}

/// The pod's directory on this node (sandbox under `ns/`, etc files, volumes, containers).
pub(crate) fn pod_dir(agent: &Agent, uid: &str) -> PathBuf {
    agent.config.data_dir.join("pods").join(uid)
}

/// The runtime id of container `cname` of the pod with `uid` on this node.
pub(crate) fn container_id(agent: &Agent, uid: &str, cname: &str) -> String {
    format!("{}-{}-{cname}", agent.config.node_name, short(uid))
}

/// The pod's sandbox (its namespaces), if the pod runs here.
pub(crate) fn sandbox_of(agent: &Agent, uid: &str) -> Sandbox {
    Sandbox::at(&pod_dir(agent, uid).join("ns"))
}

fn short(uid: &str) -> String {
    uid.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect()
}

/// The pod's app containers.
fn containers(agent: &Agent, pod: &Value) -> Vec<Ctr> {
    ctrs_of(agent, pod, "containers", "c")
}

/// The pod's init containers, in order.
fn init_containers(agent: &Agent, pod: &Value) -> Vec<Ctr> {
    ctrs_of(agent, pod, "initContainers", "i")
}

fn ctrs_of(agent: &Agent, pod: &Value, field: &str, sub: &str) -> Vec<Ctr> {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let dir = pod_dir(agent, uid);
    pod["spec"][field]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let cname = c["name"].as_str().unwrap_or("").to_string();
            let id = container_id(agent, uid, &cname);
            let log = crate::logs::log_path(agent, ns, name, uid, &cname);
            let link = agent
                .config
                .log_link_dir
                .join(format!("{name}_{ns}_{cname}-{id}.log"));
            let image = c["image"].as_str().unwrap_or("").to_string();
            let image_id = agent
                .images
                .resolve(&image)
                .map(|d| d.to_string())
                .unwrap_or_default();
            Ctr {
                dir: dir.join(sub).join(&cname),
                name: cname,
                id,
                log,
                link,
                image,
                image_id,
            }
        })
        .collect()
}

/// Prepare and start one container's shim.
fn start_container(
    agent: &Agent,
    pod: &Value,
    c: &Ctr,
    sb: &Sandbox,
    etc: &Path,
    sources: &crate::volumes::Sources,
    envs: &Envs,
) -> Result<(), String> {
    let container_json = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod["spec"][*f].as_array())
        .flatten()
        .find(|x| x["name"] == c.name.as_str())
        .cloned()
        .ok_or("container vanished from the pod")?;
    let container_json_for_mounts = container_json.clone();
    let k8s_pod: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(pod.clone()).map_err(|e| e.to_string())?;
    let container: k8s_openapi::api::core::v1::Container =
        serde_json::from_value(container_json).map_err(|e| e.to_string())?;
    let digest = agent.images.resolve(&c.image).map_err(|e| e.to_string())?;
    let layers = selur_image::unpack::unpack_image(&agent.images, &digest, &Default::default())
        .map_err(|e| e.to_string())?;
    let manifest = agent.images.manifest(&digest).map_err(|e| e.to_string())?;
    let (_, config) = agent.images.config(&manifest).map_err(|e| e.to_string())?;
    let rootfs = Rootfs::at(&c.dir);
    let _ = rootfs.remove();
    rootfs.mount(&layers).map_err(|e| e.to_string())?;
    let env = envs.get(&c.name).cloned().unwrap_or_default();
    let input = selur_runtime::SpecInput {
        pod: &k8s_pod,
        container: &container,
        image: &config,
        rootfs: rootfs.merged.clone(),
        hostname: pod["metadata"]["name"].as_str().unwrap_or("").to_string(),
        netns: Some(sb.net_path()),
        ipcns: Some(sb.ipc_path()),
        utsns: Some(sb.uts_path()),
        cgroups_path: format!("/selur-{}", c.id),
        mounts: crate::volumes::mounts_for(&container_json_for_mounts, sources)?,
        etc_files: selur_runtime::EtcFiles {
            hosts: Some(etc.join("hosts")),
            resolv_conf: Some(etc.join("resolv.conf")),
            hostname: Some(etc.join("hostname")),
        },
        env_resolved: env,
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
    if let Some(parent) = c.log.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    if let Some(parent) = c.link.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::remove_file(&c.link);
    let _ = std::os::unix::fs::symlink(&c.log, &c.link);
    let rt = runtime(agent);
    let _ = rt.delete(&c.id);
    use std::os::unix::process::CommandExt;
    std::process::Command::new(&agent.config.shim)
        .args(["shim", "--id", &c.id, "--runtime"])
        .arg(&rt.binary)
        .arg("--runtime-root")
        .arg(&rt.root)
        .arg("--bundle")
        .arg(&c.dir)
        .arg("--log")
        .arg(&c.log)
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

fn read_exit(c: &Ctr) -> Option<(i64, String)> {
    let v: Value = serde_json::from_slice(&std::fs::read(c.exit_file()).ok()?).ok()?;
    Some((
        v["exitCode"].as_i64().unwrap_or(255),
        v["finishedAt"].as_str().unwrap_or("").to_string(),
    ))
}

async fn patch_status(agent: &Agent, pod: &Value, status: Value) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let path = format!("/api/v1/namespaces/{ns}/pods/{name}/status");
    if let Err(e) = agent
        .call(
            reqwest::Method::PATCH,
            &path,
            "application/merge-patch+json",
            &json!({"status": status}),
        )
        .await
    {
        tracing::warn!(pod = name, error = %e, "cannot report pod status");
    }
}

struct State {
    restarts: u32,
    started_at: String,
    exited: Option<(i64, String)>,
    next_start: Option<tokio::time::Instant>,
    backoff: Duration,
}

fn condition(t: &str, ok: bool) -> Value {
    json!({"type": t, "status": if ok { "True" } else { "False" }, "lastTransitionTime": now_secs()})
}

fn status_of(
    pod: &Value,
    ctrs: &[Ctr],
    states: &[State],
    start_time: &str,
    will_restart: bool,
) -> Value {
    let mut statuses = Vec::new();
    let mut all_running = true;
    let mut all_done = true;
    let mut all_ok = true;
    for (c, s) in ctrs.iter().zip(states) {
        let state = match &s.exited {
            None => json!({"running": {"startedAt": s.started_at}}),
            Some((code, fin)) if s.next_start.is_some() => {
                let _ = (code, fin);
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off {}s restarting failed container={}", s.backoff.as_secs(), c.name)}})
            }
            Some((code, fin)) => {
                json!({"terminated": {"exitCode": code, "reason": if *code == 0 { "Completed" } else { "Error" },
                "startedAt": s.started_at, "finishedAt": fin, "containerID": format!("runc://{}", c.id)}})
            }
        };
        let running = s.exited.is_none();
        all_running &= running;
        all_done &= !running && s.next_start.is_none();
        all_ok &= matches!(s.exited, Some((0, _)));
        statuses.push(
            json!({"name": c.name, "image": c.image, "imageID": c.image_id,
            "containerID": format!("runc://{}", c.id), "ready": running, "started": running,
            "restartCount": s.restarts, "state": state}),
        );
    }
    let phase = if all_done && !will_restart {
        if all_ok {
            "Succeeded"
        } else {
            "Failed"
        }
    } else {
        "Running"
    };
    let qos = serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(pod.clone())
        .map(|p| format!("{:?}", selur_runtime::qos_class(&p)))
        .unwrap_or_default();
    json!({"phase": phase, "startTime": start_time, "qosClass": qos, "containerStatuses": statuses,
        "conditions": [condition("PodScheduled", true), condition("Initialized", true),
            condition("ContainersReady", all_running), condition("Ready", all_running)]})
}

/// Start `pod` (once) and monitor it until it is stopped.
pub async fn start(agent: Arc<Agent>, running: Arc<Running>, pod: Value) {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let (tx, mut rx) = watch::channel(false);
    {
        let Ok(mut m) = running.pods.lock() else {
            return;
        };
        if m.contains_key(&uid) {
            return;
        }
        let digests = containers(&agent, &pod)
            .iter()
            .filter_map(|c| selur_image::Digest::parse(&c.image_id).ok())
            .collect();
        m.insert(uid.clone(), (tx, digests));
    }
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let dir = pod_dir(&agent, &uid);
    let p = pod.clone();
    let envs = match resolve_envs(&agent, &pod).await {
        Ok(e) => e,
        Err(msg) => {
            event(
                &agent,
                &pod,
                "",
                "Warning",
                "Failed",
                &format!("Error: CreateContainerConfigError: {msg}"),
            )
            .await;
            if let Ok(mut m) = running.pods.lock() {
                m.remove(&uid);
            }
            return;
        }
    };
    let setup = tokio::task::spawn_blocking(
        move || -> Result<(Sandbox, crate::volumes::Sources), String> {
            let sb = Sandbox::create(&dir.join("ns"), &name).map_err(|e| e.to_string())?;
            let etc = dir.join("etc");
            std::fs::create_dir_all(&etc).map_err(|e| e.to_string())?;
            std::fs::write(
                etc.join("hosts"),
                format!("::1\tlocalhost ip6-localhost ip6-loopback\n::1\t{name}\n"),
            )
            .map_err(|e| e.to_string())?;
            std::fs::write(etc.join("resolv.conf"), "options ndots:5\n")
                .map_err(|e| e.to_string())?;
            std::fs::write(etc.join("hostname"), format!("{name}\n")).map_err(|e| e.to_string())?;
            let sources = crate::volumes::prepare(&p, &dir)?;
            Ok((sb, sources))
        },
    )
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let (sb, sources) = match setup {
        Ok(r) => r,
        Err(msg) => {
            event(
                &agent,
                &pod,
                "",
                "Warning",
                "FailedCreatePodSandBox",
                &format!("Failed to create pod sandbox: {msg}"),
            )
            .await;
            return;
        }
    };
    let start_time = now_secs();
    let etc = pod_dir(&agent, &uid).join("etc");
    if !run_init_containers(
        &agent,
        &pod,
        &sb,
        &etc,
        &sources,
        &envs,
        &start_time,
        &mut rx,
    )
    .await
    {
        return;
    }
    let (a, p, envs2) = (agent.clone(), pod.clone(), envs.clone());
    let results = tokio::task::spawn_blocking(move || {
        containers(&a, &p)
            .iter()
            .map(|c| start_container(&a, &p, c, &sb, &etc, &sources, &envs2))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let ctrs = containers(&agent, &pod);
    let now = now_secs();
    let mut states: Vec<State> = Vec::new();
    for (c, r) in ctrs.iter().zip(&results) {
        let fp = format!("spec.containers{{{}}}", c.name);
        match r {
            Ok(()) => {
                event(
                    &agent,
                    &pod,
                    &fp,
                    "Normal",
                    "Started",
                    &format!("Started container {}", c.name),
                )
                .await;
                states.push(State {
                    restarts: 0,
                    started_at: now.clone(),
                    exited: None,
                    next_start: None,
                    backoff: Duration::from_secs(10),
                });
            }
            Err(e) => {
                event(
                    &agent,
                    &pod,
                    &fp,
                    "Warning",
                    "Failed",
                    &format!("Error: {e}"),
                )
                .await;
                states.push(State {
                    restarts: 0,
                    started_at: now.clone(),
                    exited: Some((128, now.clone())),
                    next_start: None,
                    backoff: Duration::from_secs(10),
                });
            }
        }
    }
    monitor(agent, pod, ctrs, states, start_time, rx).await;
}

/// Run the init containers one after another to completion. Returns false
/// when the pod must not go on (an init container failed under
/// `restartPolicy: Never`, a sidecar init container was asked for, or the pod
/// was stopped). Failed init containers are retried with back-off otherwise.
#[allow(clippy::too_many_arguments)]
async fn run_init_containers(
    agent: &Arc<Agent>,
    pod: &Value,
    sb: &Sandbox,
    etc: &Path,
    sources: &crate::volumes::Sources,
    envs: &Envs,
    start_time: &str,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let inits = init_containers(agent, pod);
    let specs = pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(side) = specs.iter().find(|c| c["restartPolicy"] == "Always") {
        let name = side["name"].as_str().unwrap_or("");
        event(agent, pod, &format!("spec.initContainers{{{name}}}"), "Warning", "Failed",
            "Error: sidecar init containers (restartPolicy: Always) are not supported by this agent yet").await;
        patch_status(agent, pod, json!({"phase": "Failed", "reason": "Unsupported",
            "message": format!("sidecar init container {name} is not supported yet"), "startTime": start_time})).await;
        return false;
    }
    let policy = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always");
    let mut done: Vec<Value> = Vec::new();
    for c in &inits {
        let mut backoff = Duration::from_secs(10);
        let mut restarts = 0;
        loop {
            let pending = |state: Value| {
                let mut statuses = done.clone();
                statuses.push(
                    json!({"name": c.name, "image": c.image, "imageID": c.image_id, "ready": false,
                    "restartCount": restarts, "state": state}),
                );
                json!({"phase": "Pending", "startTime": start_time, "initContainerStatuses": statuses,
                    "conditions": [condition("PodScheduled", true), condition("Initialized", false),
                        condition("ContainersReady", false), condition("Ready", false)]})
            };
            let (a, p, cc, s2, e2, src, en) = (
                agent.clone(),
                pod.clone(),
                c.dir.clone(),
                sb.clone(),
                etc.to_path_buf(),
                sources.clone(),
                envs.clone(),
            );
            let name = c.name.clone();
            let started = tokio::task::spawn_blocking(move || {
                let ctr = init_containers(&a, &p)
                    .into_iter()
                    .find(|x| x.name == name && x.dir == cc)
                    .ok_or("init container vanished")?;
                start_container(&a, &p, &ctr, &s2, &e2, &src, &en)
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            let fp = format!("spec.initContainers{{{}}}", c.name);
            let exit = match started {
                Ok(()) => {
                    event(
                        agent,
                        pod,
                        &fp,
                        "Normal",
                        "Started",
                        &format!("Started container {}", c.name),
                    )
                    .await;
                    patch_status(
                        agent,
                        pod,
                        pending(json!({"running": {"startedAt": now_secs()}})),
                    )
                    .await;
                    loop {
                        if let Some(e) = read_exit(c) {
                            break e;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                            _ = stop.changed() => return false,
                        }
                    }
                }
                Err(e) => {
                    event(agent, pod, &fp, "Warning", "Failed", &format!("Error: {e}")).await;
                    (128, now_secs())
                }
            };
            let terminated = json!({"terminated": {"exitCode": exit.0, "finishedAt": exit.1,
                "reason": if exit.0 == 0 { "Completed" } else { "Error" }}});
            if exit.0 == 0 {
                done.push(
                    json!({"name": c.name, "image": c.image, "imageID": c.image_id, "ready": true,
                    "restartCount": restarts, "state": terminated}),
                );
                break;
            }
            if policy == "Never" {
                let mut st = pending(terminated);
                st["phase"] = json!("Failed");
                patch_status(agent, pod, st).await;
                return false;
            }
            patch_status(agent, pod, pending(json!({"waiting": {"reason": "CrashLoopBackOff",
                "message": format!("back-off {}s restarting failed container={}", backoff.as_secs(), c.name)}}))).await;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return false,
            }
            restarts += 1;
            backoff = (backoff * 2).min(Duration::from_secs(300));
        }
    }
    if !done.is_empty() {
        patch_status(agent, pod, json!({"initContainerStatuses": done})).await;
    }
    true
}

/// Watch exit files; restart per policy; report status; stop when told.
async fn monitor(
    agent: Arc<Agent>,
    pod: Value,
    ctrs: Vec<Ctr>,
    mut states: Vec<State>,
    start_time: String,
    mut stop: watch::Receiver<bool>,
) {
    let policy = pod["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or("Always")
        .to_string();
    let mut last = Value::Null;
    loop {
        let mut will_restart = false;
        for (c, s) in ctrs.iter().zip(states.iter_mut()) {
            if s.exited.is_none() {
                if let Some(e) = read_exit(c) {
                    let restart = policy == "Always" || (policy == "OnFailure" && e.0 != 0);
                    s.exited = Some(e);
                    if restart {
                        s.next_start = Some(tokio::time::Instant::now() + s.backoff);
                        event(
                            &agent,
                            &pod,
                            &format!("spec.containers{{{}}}", c.name),
                            "Warning",
                            "BackOff",
                            &format!("Back-off restarting failed container {}", c.name),
                        )
                        .await;
                    }
                }
            }
            if let Some(at) = s.next_start {
                will_restart = true;
                if tokio::time::Instant::now() >= at {
                    let a = agent.clone();
                    let p = pod.clone();
                    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
                    let dir = pod_dir(&agent, &uid);
                    let cname = c.name.clone();
                    let envs = resolve_envs(&agent, &pod).await.unwrap_or_default();
                    let res = tokio::task::spawn_blocking(move || {
                        let sb = Sandbox::at(&dir.join("ns"));
                        let c = containers(&a, &p)
                            .into_iter()
                            .find(|x| x.name == cname)
                            .ok_or("container vanished")?;
                        let sources = crate::volumes::prepare(&p, &dir)?;
                        start_container(&a, &p, &c, &sb, &dir.join("etc"), &sources, &envs)
                    })
                    .await;
                    s.restarts += 1;
                    s.backoff = (s.backoff * 2).min(Duration::from_secs(300));
                    s.next_start = None;
                    match res {
                        Ok(Ok(())) => {
                            s.exited = None;
                            s.started_at = now_secs();
                        }
                        _ => s.next_start = Some(tokio::time::Instant::now() + s.backoff),
                    }
                }
            }
        }
        let status = status_of(&pod, &ctrs, &states, &start_time, will_restart);
        if status != last {
            patch_status(&agent, &pod, status.clone()).await;
            last = status;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = stop.changed() => break,
        }
    }
}

/// Stop and remove everything of the pod with `uid` (TERM, grace, KILL).
pub async fn stop(agent: Arc<Agent>, running: Arc<Running>, pod: Value) {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
    if let Ok(mut m) = running.pods.lock() {
        if let Some((tx, _)) = m.remove(&uid) {
            let _ = tx.send(true);
        }
    }
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30)
        .min(30);
    let a = agent.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let rt = runtime(&a);
        let mut ctrs = init_containers(&a, &pod);
        ctrs.extend(containers(&a, &pod));
        for c in &ctrs {
            let _ = rt.kill(&c.id, "TERM");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(grace);
        while std::time::Instant::now() < deadline
            && ctrs
                .iter()
                .any(|c| read_exit(c).is_none() && c.dir.join("config.json").exists())
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        for c in &ctrs {
            let _ = rt.kill(&c.id, "KILL");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline
            && ctrs
                .iter()
                .any(|c| read_exit(c).is_none() && c.dir.join("config.json").exists())
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for c in &ctrs {
            let _ = rt.delete(&c.id);
            let _ = Rootfs::at(&c.dir).remove();
            let _ = std::fs::remove_file(&c.link);
        }
        let dir = pod_dir(&a, &uid);
        crate::volumes::cleanup(&dir);
        let _ = Sandbox::at(&dir.join("ns")).destroy();
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}
