//! This node's pods as the API has them: a [`Watcher`] over the pods with
//! `spec.nodeName` = this node (seeded with the pods this agent still holds
//! on disk, so pods deleted while it was away or while its watch was down
//! come out as deletions), and what the agent does about each change:
//! - a new pod: its images are made present per `imagePullPolicy`
//!   (Pulling / Pulled events; a failed pull is retried with back-off and
//!   shown as the container's `ErrImagePull`, then `ImagePullBackOff`, as
//!   the kubelet does), then the runtime starts and supervises it;
//! - a pod marked for deletion (`deletionTimestamp`): the runtime stops it
//!   within its `deletionGracePeriodSeconds` (preStop, TERM, KILL), cleans
//!   up, and the agent confirms the delete (grace 0, uid precondition) so
//!   the object goes;
//! - a pod gone from the API (force-deleted): the runtime stops it too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use tokio::sync::watch;

use selur_client::watcher::Event;
use selur_client::{Api, DeleteParams, ListParams};

use crate::events::{event, event_later};
use crate::Agent;

/// What a container's image needs, by pull policy and presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullDecision {
    Pull,
    AlreadyPresent,
    NeverPullMissing,
}

/// Kubernetes' rule: Always pulls; IfNotPresent pulls when missing; Never never does.
pub fn decide(policy: &str, present: bool) -> PullDecision {
    match (policy, present) {
        ("Always", _) => PullDecision::Pull,
        ("Never", false) => PullDecision::NeverPullMissing,
        (_, true) => PullDecision::AlreadyPresent,
        (_, false) => PullDecision::Pull,
    }
}

/// The kubelet's minimum grace when it kills (a force-deleted pod's
/// containers still get TERM and this long before KILL).
pub const MIN_KILL_GRACE: Duration = Duration::from_secs(2);

/// The image pull back-off: `initial` doubling to `max` (the container
/// restart back-off settings, as the kubelet uses one back-off for both).
fn pull_delay(agent: &Agent, failures: u32) -> Duration {
    let b = &agent.config.backoff;
    let initial = b.initial.max(Duration::from_millis(100));
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    initial.saturating_mul(factor).min(b.max.max(initial))
}

/// Containers (init first) as (field, path prefix, spec).
fn containers(pod: &Value) -> impl Iterator<Item = (&'static str, &Value)> {
    let spec = &pod["spec"];
    let init = spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| ("spec.initContainers", c));
    let apps = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| ("spec.containers", c));
    init.chain(apps)
}

/// Report every container as waiting; those with image `failing` with
/// `reason`/`message` (ErrImagePull, ImagePullBackOff, ErrImageNeverPull).
async fn report_waiting(agent: &Agent, pod: &Value, failing: &str, reason: &str, message: &str) {
    let status_of = |c: &Value, init: bool| {
        let image = c["image"].as_str().unwrap_or("");
        let waiting = if image == failing {
            json!({"reason": reason, "message": message})
        } else if init {
            json!({"reason": "PodInitializing"})
        } else {
            json!({"reason": "ContainerCreating"})
        };
        json!({"name": c["name"], "image": image, "imageID": "", "ready": false,
            "restartCount": 0, "started": false, "state": {"waiting": waiting}})
    };
    let mut init = Vec::new();
    let mut apps = Vec::new();
    for (path, c) in containers(pod) {
        if path == "spec.initContainers" {
            init.push(status_of(c, true));
        } else {
            apps.push(status_of(c, false));
        }
    }
    let mut st = json!({"phase": "Pending", "containerStatuses": apps});
    if !init.is_empty() {
        st["initContainerStatuses"] = json!(init);
    }
    crate::runtime::patch_status(agent, pod, st).await;
}

/// Make every image of `pod` present per its containers' pull policies,
/// retrying failures with back-off until they succeed. Returns false when
/// the pod was stopped (deleted) first.
async fn ensure_images(agent: &Arc<Agent>, pod: &Value, stop: &mut watch::Receiver<bool>) -> bool {
    let mut failures: u32 = 0;
    'containers: for (path, c) in containers(pod) {
        let image = c["image"].as_str().unwrap_or("");
        let fp = format!("{path}{{{}}}", c["name"].as_str().unwrap_or(""));
        let policy = c["imagePullPolicy"].as_str().unwrap_or("IfNotPresent");
        loop {
            if *stop.borrow() {
                return false;
            }
            let present = agent.images.resolve(image).is_ok();
            let error = match decide(policy, present) {
                PullDecision::AlreadyPresent => {
                    event_later(
                        agent,
                        pod,
                        &fp,
                        "Normal",
                        "Pulled",
                        &format!("Container image \"{image}\" already present on machine"),
                    );
                    continue 'containers;
                }
                PullDecision::NeverPullMissing => {
                    let msg = format!(
                        "Container image \"{image}\" is not present with pull policy of Never"
                    );
                    event(agent, pod, &fp, "Warning", "ErrImageNeverPull", &msg).await;
                    report_waiting(agent, pod, image, "ErrImageNeverPull", &msg).await;
                    None
                }
                PullDecision::Pull => {
                    event(
                        agent,
                        pod,
                        &fp,
                        "Normal",
                        "Pulling",
                        &format!("Pulling image \"{image}\""),
                    )
                    .await;
                    let start = Instant::now();
                    let res = tokio::select! {
                        r = selur_image::pull::pull(&agent.images, &agent.config.registries, image, &|_| {}) => r,
                        _ = stop.changed() => return false,
                    };
                    match res {
                        Ok(r) => {
                            agent.changed.notify_one();
                            event(agent, pod, &fp, "Normal", "Pulled", &format!(
                                "Successfully pulled image \"{image}\" in {:.3}s. Image size: {} bytes.",
                                start.elapsed().as_secs_f64(), r.size)).await;
                            continue 'containers;
                        }
                        Err(e) => Some(e.to_string()),
                    }
                }
            };
            failures += 1;
            if let Some(err) = &error {
                let msg = format!("Failed to pull image \"{image}\": {err}");
                event(agent, pod, &fp, "Warning", "Failed", &msg).await;
                event(agent, pod, &fp, "Warning", "Failed", "Error: ErrImagePull").await;
                report_waiting(agent, pod, image, "ErrImagePull", &msg).await;
            }
            let delay = pull_delay(agent, failures);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return false,
            }
            if let Some(err) = &error {
                event(
                    agent,
                    pod,
                    &fp,
                    "Normal",
                    "BackOff",
                    &format!("Back-off pulling image \"{image}\""),
                )
                .await;
                event(
                    agent,
                    pod,
                    &fp,
                    "Warning",
                    "Failed",
                    "Error: ImagePullBackOff",
                )
                .await;
                let msg = format!("Back-off pulling image \"{image}\": ErrImagePull: {err}");
                report_waiting(agent, pod, image, "ImagePullBackOff", &msg).await;
            }
        }
    }
    true
}

/// The pods this agent still holds on disk (from before a restart).
fn pods_on_disk(agent: &Agent) -> Vec<Value> {
    let Ok(rd) = std::fs::read_dir(agent.config.data_dir.join("pods")) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| {
            let uid = e.file_name().to_string_lossy().to_string();
            std::fs::read(e.path().join("pod.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                // A pod dir without its pod.json (killed early in set-up)
                // still needs its teardown.
                .unwrap_or_else(|| json!({"metadata": {"uid": uid}, "spec": {}}))
        })
        .collect()
}

/// Manifest digests of the images of every pod this node holds on disk,
/// as they resolve in the local store now.
pub(crate) fn images_on_disk(agent: &Agent) -> std::collections::HashSet<selur_image::Digest> {
    pods_on_disk(agent)
        .iter()
        .flat_map(|pod| {
            ["initContainers", "containers", "ephemeralContainers"]
                .into_iter()
                .flat_map(move |k| pod["spec"][k].as_array().into_iter().flatten())
        })
        .filter_map(|c| c["image"].as_str())
        .filter_map(|image| agent.images.resolve(image).ok())
        .collect()
}

/// Watch this node's pods and act on each change, forever.
pub async fn run(agent: Arc<Agent>) {
    let selector = format!("spec.nodeName={}", agent.config.node_name);
    let mut watcher = Api::<Pod>::all(agent.client.clone())
        .watcher(ListParams::default().fields(&selector))
        .with_known(pods_on_disk(&agent));
    loop {
        match watcher.next().await {
            Event::Applied(pod) => applied(&agent, pod),
            Event::Deleted(pod) => terminate(&agent, pod, false),
        }
    }
}

fn applied(agent: &Arc<Agent>, pod: Value) {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
    if uid.is_empty() {
        return;
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        terminate(agent, pod, true);
        return;
    }
    let Some(stop) = agent.running.claim(&uid) else {
        return;
    };
    let a = agent.clone();
    tokio::spawn(async move {
        let mut stop = stop;
        let known = crate::runtime::runs_here(&a, &uid);
        if known || ensure_images(&a, &pod, &mut stop).await {
            crate::runtime::start(a, pod, stop).await;
        }
    });
}

/// Stop the pod (once) within its `deletionGracePeriodSeconds` (0 for a
/// pod gone without one; the kubelet's minimum applies), then, for a
/// graceful delete, confirm it to the API.
fn terminate(agent: &Arc<Agent>, pod: Value, confirm: bool) {
    let grace = Duration::from_secs(
        pod.pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    );
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
    if !agent.running.begin_termination(&uid) {
        return;
    }
    let a = agent.clone();
    tokio::spawn(async move {
        crate::runtime::stop(a.clone(), pod.clone(), grace.max(MIN_KILL_GRACE)).await;
        if confirm {
            confirm_deleted(&a, &pod).await;
        }
        a.running.end_termination(&uid);
    });
}

/// Tell the API the pod's containers are gone: delete with grace 0 and the
/// uid as precondition (a new pod of the same name is never touched).
/// Retried until the API answers.
async fn confirm_deleted(agent: &Agent, pod: &Value) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), ns);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        precondition_uid: Some(uid.to_string()),
        ..Default::default()
    };
    let mut delay = Duration::from_millis(200);
    loop {
        match api.delete(name, &params).await {
            Ok(_) => return,
            Err(e) if e.is_not_found() || e.is_conflict() => return,
            Err(e) => {
                tracing::warn!(pod = name, uid, error = %e, "cannot confirm the pod's deletion; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_rules() {
        assert_eq!(decide("Always", true), PullDecision::Pull);
        assert_eq!(decide("IfNotPresent", true), PullDecision::AlreadyPresent);
        assert_eq!(decide("IfNotPresent", false), PullDecision::Pull);
        assert_eq!(decide("Never", false), PullDecision::NeverPullMissing);
        assert_eq!(decide("Never", true), PullDecision::AlreadyPresent);
    }

    #[test]
    fn images_of_pods_on_disk_count_as_in_use_before_they_are_taken_on_again() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::AgentConfig::new(
            "http://[::1]:9".into(),
            "n1".into(),
            dir.path().join("agent"),
        );
        let images = selur_image::ImageStore::open(&dir.path().join("images")).unwrap();
        let agent = Agent::new(config, Arc::new(images)).unwrap();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("f"), "x").unwrap();
        std::fs::write(ctx.join("Containerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
        let built = |tag: &str| {
            selur_image::build::build(
                &agent.images,
                &ctx.join("Containerfile"),
                &ctx,
                &[tag.to_string()],
                &Default::default(),
            )
            .unwrap()
            .digest
        };
        let kept = built("localhost/kept:1");
        std::fs::write(ctx.join("f"), "y").unwrap();
        let other = built("localhost/other:1");
        assert!(images_on_disk(&agent).is_empty());
        let pod_dir = agent.config.data_dir.join("pods/u1");
        std::fs::create_dir_all(&pod_dir).unwrap();
        std::fs::write(
            pod_dir.join("pod.json"),
            json!({"metadata": {"uid": "u1"}, "spec": {
                "initContainers": [{"name": "i", "image": "localhost/gone:1"}],
                "containers": [{"name": "c", "image": "localhost/kept:1"}]}})
            .to_string(),
        )
        .unwrap();
        let in_use = images_on_disk(&agent);
        assert!(in_use.contains(&kept), "{in_use:?}");
        assert!(!in_use.contains(&other), "{in_use:?}");
        assert_eq!(in_use.len(), 1);
    }
}
