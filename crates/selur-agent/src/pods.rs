//! Image pulls for the pods bound to this node: the agent lists and watches
//! pods with `spec.nodeName` = its node, and makes each container's image
//! present according to `imagePullPolicy` (Always, IfNotPresent, Never),
//! recording Pulling / Pulled / Failed / ErrImageNeverPull events on the pod
//! as the kubelet does, then hands the pod to the runtime. Pods that already
//! ran here (the agent restarted) are re-adopted without new pulls.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use crate::node::now_secs;
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

/// Record an event about `pod`. A repeat of the same event (same pod,
/// field path, type, reason and message) bumps the existing Event's
/// `count` and `lastTimestamp`, as client-go's event correlator does.
pub async fn event(
    agent: &Agent,
    pod: &Value,
    field_path: &str,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
    let now = now_secs();
    let key = format!("{uid}\u{0}{field_path}\u{0}{type_}\u{0}{reason}\u{0}{message}");
    let known = agent.events.lock().ok().and_then(|m| m.get(&key).cloned());
    if let Some((ev_name, count)) = known {
        let path = format!("/api/v1/namespaces/{ns}/events/{ev_name}");
        let patch = json!({"count": count + 1, "lastTimestamp": now});
        if let Ok((200, _)) = agent
            .call(
                reqwest::Method::PATCH,
                &path,
                "application/merge-patch+json",
                &patch,
            )
            .await
        {
            if let Ok(mut m) = agent.events.lock() {
                m.insert(key, (ev_name, count + 1));
            }
            return;
        }
    }
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": format!("{name}."), "namespace": ns},
        "involvedObject": {"kind": "Pod", "apiVersion": "v1", "name": name, "namespace": ns,
            "uid": uid, "fieldPath": field_path},
        "reason": reason, "message": message, "type": type_,
        "source": {"component": "selur-agent", "host": agent.config.node_name},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let path = format!("/api/v1/namespaces/{ns}/events");
    match agent
        .call(reqwest::Method::POST, &path, "application/json", &ev)
        .await
    {
        Ok((201, v)) => {
            if let (Some(ev_name), Ok(mut m)) =
                (v["metadata"]["name"].as_str(), agent.events.lock())
            {
                if m.len() >= 4096 {
                    m.clear();
                }
                m.insert(key, (ev_name.to_string(), 1));
            }
        }
        Ok((code, v)) => tracing::warn!(code, message = ?v["message"], "event not recorded"),
        Err(e) => tracing::warn!(error = %e, "event not recorded"),
    }
}

/// Record an event without waiting for the API (off the pod start path).
pub fn event_later(
    agent: &Arc<Agent>,
    pod: &Value,
    field_path: &str,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let (a, p) = (agent.clone(), pod.clone());
    let (f, t, r, m) = (
        field_path.to_string(),
        type_.to_string(),
        reason.to_string(),
        message.to_string(),
    );
    tokio::spawn(async move { event(&a, &p, &f, &t, &r, &m).await });
}

/// Make every image of `pod` present per its containers' pull policies.
/// Returns whether every image is present afterwards.
async fn ensure_images(agent: &Arc<Agent>, pod: &Value) -> bool {
    let (agent, pod) = (agent.clone(), pod.clone());
    let mut ok = true;
    let spec = &pod["spec"];
    let groups = [
        ("initContainers", "spec.initContainers"),
        ("containers", "spec.containers"),
    ];
    for (field, path) in groups {
        for c in spec[field].as_array().into_iter().flatten() {
            let image = c["image"].as_str().unwrap_or("");
            let cname = c["name"].as_str().unwrap_or("");
            let fp = format!("{path}{{{cname}}}");
            let policy = c["imagePullPolicy"].as_str().unwrap_or("IfNotPresent");
            let present = agent.images.resolve(image).is_ok();
            match decide(policy, present) {
                PullDecision::AlreadyPresent => {
                    event_later(
                        &agent,
                        &pod,
                        &fp,
                        "Normal",
                        "Pulled",
                        &format!("Container image \"{image}\" already present on machine"),
                    );
                }
                PullDecision::NeverPullMissing => {
                    event(
                        &agent,
                        &pod,
                        &fp,
                        "Warning",
                        "ErrImageNeverPull",
                        &format!(
                            "Container image \"{image}\" is not present with pull policy of Never"
                        ),
                    )
                    .await;
                    ok = false;
                }
                PullDecision::Pull => {
                    event(
                        &agent,
                        &pod,
                        &fp,
                        "Normal",
                        "Pulling",
                        &format!("Pulling image \"{image}\""),
                    )
                    .await;
                    let start = Instant::now();
                    let res = selur_image::pull::pull(
                        &agent.images,
                        &agent.config.registries,
                        image,
                        &|_| {},
                    )
                    .await;
                    match res {
                        Ok(r) => {
                            agent.changed.notify_one();
                            event(&agent, &pod, &fp, "Normal", "Pulled", &format!(
                                "Successfully pulled image \"{image}\" in {:.3}s. Image size: {} bytes.",
                                start.elapsed().as_secs_f64(), r.size)).await;
                        }
                        Err(e) => {
                            event(
                                &agent,
                                &pod,
                                &fp,
                                "Warning",
                                "Failed",
                                &format!("Failed to pull image \"{image}\": {e}"),
                            )
                            .await;
                            ok = false;
                        }
                    }
                }
            }
        }
    }
    ok
}

/// Watch this node's pods and pull what they need, once per pod.
pub async fn run(agent: Arc<Agent>) {
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let running = agent.running.clone();
    let selector = format!("spec.nodeName={}", agent.config.node_name);
    // Pods deleted while this agent was away are torn down first.
    loop {
        match list_uids(&agent, &selector).await {
            Ok(live) => {
                crate::runtime::remove_orphans(agent.clone(), live).await;
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list this node's pods; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    loop {
        if let Err(e) = watch_once(&agent, &selector, &seen, &running).await {
            tracing::warn!(error = %e, "pod watch ended; restarting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Uids of the pods bound to this node.
async fn list_uids(agent: &Agent, selector: &str) -> Result<HashSet<String>, String> {
    let url = format!("{}/api/v1/pods", agent.config.server.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .get(&url)
        .query(&[("fieldSelector", selector)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let list: Value = resp.json().await.map_err(|e| e.to_string())?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["metadata"]["uid"].as_str().map(String::from))
        .collect())
}

fn first_sight(seen: &Mutex<HashSet<String>>, pod: &Value) -> bool {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
    seen.lock().map(|mut s| s.insert(uid)).unwrap_or(false)
}

async fn watch_once(
    agent: &Arc<Agent>,
    selector: &str,
    seen: &Arc<Mutex<HashSet<String>>>,
    running: &Arc<crate::runtime::Running>,
) -> Result<(), String> {
    // watch without resourceVersion: the current pods arrive as ADDED first.
    let url = format!("{}/api/v1/pods", agent.config.server.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .get(&url)
        .query(&[
            ("watch", "true"),
            ("fieldSelector", selector),
            ("allowWatchBookmarks", "true"),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            match ev["type"].as_str() {
                Some("ADDED") | Some("MODIFIED") => {
                    let pod = ev["object"].clone();
                    if pod.pointer("/metadata/deletionTimestamp").is_none()
                        && first_sight(seen, &pod)
                    {
                        let (a, r) = (agent.clone(), running.clone());
                        tokio::spawn(async move {
                            let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
                            let known = crate::runtime::runs_here(&a, uid);
                            if known || ensure_images(&a, &pod).await {
                                crate::runtime::start(a, r, pod).await;
                            }
                        });
                    }
                }
                Some("DELETED") => {
                    tokio::spawn(crate::runtime::stop(
                        agent.clone(),
                        running.clone(),
                        ev["object"].clone(),
                    ));
                    if let (Ok(mut s), Some(uid)) =
                        (seen.lock(), ev["object"]["metadata"]["uid"].as_str())
                    {
                        s.remove(uid);
                    }
                }
                Some("ERROR") => {
                    return Err(ev["object"]["message"]
                        .as_str()
                        .unwrap_or("watch error")
                        .to_string())
                }
                _ => {}
            }
        }
    }
    Ok(())
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
}
