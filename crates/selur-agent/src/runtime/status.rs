//! Pod status as Kubernetes reports it, computed from the pod's containers:
//! phase, conditions (with stable transition times), `initContainerStatuses`
//! and `containerStatuses` with state, last state, reason, exit code,
//! restart count, image ID and start time.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::container::{Ctr, Exit, Kind};
use super::state::{CtrState, PodState};
use crate::node::now_secs;

/// A container as the pod loop tracks it.
pub struct Slot {
    pub ctr: Ctr,
    pub st: CtrState,
    /// The current run's exit, once it ended and was judged.
    pub exited: Option<Exit>,
    /// An exit just observed (with how long the run lasted), not judged yet.
    pub pending_exit: Option<(Exit, std::time::Duration)>,
    /// When a restart is due, if one is.
    pub next_start: Option<tokio::time::Instant>,
    /// The current run's probes (rebuilt at each start).
    pub probes: Vec<super::probes::Probe>,
    /// When the current run started (probe delays count from here).
    pub run_started: tokio::time::Instant,
    /// A probe failure asked the container to stop: KILL after this.
    pub kill_at: Option<tokio::time::Instant>,
    /// The last parsed `obli-pkg status` output.
    pub obli: Option<Value>,
}

impl Slot {
    pub fn new(ctr: Ctr, st: CtrState) -> Self {
        Self {
            ctr,
            st,
            exited: None,
            pending_exit: None,
            next_start: None,
            probes: Vec::new(),
            run_started: tokio::time::Instant::now(),
            kill_at: None,
            obli: None,
        }
    }

    pub fn running(&self) -> bool {
        self.st.started
            && self.exited.is_none()
            && self.pending_exit.is_none()
            && self.st.start_error.is_none()
    }

    /// The startup probe passed (or there is none).
    pub fn started_ok(&self) -> bool {
        self.probes
            .iter()
            .filter(|p| p.kind == super::probes::Kind::Startup)
            .all(|p| p.verdict == Some(true))
    }

    /// Running, started, and its readiness probe (if any) says ready.
    pub fn ready(&self) -> bool {
        self.running()
            && self.started_ok()
            && self
                .probes
                .iter()
                .filter(|p| p.kind == super::probes::Kind::Readiness)
                .all(|p| p.verdict == Some(true))
    }

    /// Terminated and not coming back.
    pub fn finished(&self) -> bool {
        self.st.started && self.exited.is_some() && self.next_start.is_none()
    }
}

/// `terminated` state of an exit, as Kubernetes words it.
pub fn terminated(c: &Ctr, started_at: &str, e: &Exit) -> Value {
    let reason = if e.oom {
        "OOMKilled"
    } else if e.start_error.is_some() {
        "StartError"
    } else if e.code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let mut t = json!({"exitCode": e.code, "reason": reason, "startedAt": started_at,
        "finishedAt": e.finished_at, "containerID": format!("runc://{}", c.id)});
    if let Some(m) = &e.start_error {
        t["message"] = json!(m);
    }
    json!({ "terminated": t })
}

fn container_status(s: &Slot, initializing: bool) -> Value {
    let c = &s.ctr;
    let state = if let Some((reason, message)) = &s.st.start_error {
        json!({"waiting": {"reason": reason, "message": message}})
    } else if !s.st.started {
        json!({"waiting": {"reason": if initializing { "PodInitializing" } else { "ContainerCreating" }}})
    } else if let Some(e) = &s.exited {
        match (s.next_start, s.st.backoff_ms) {
            (Some(_), Some(ms)) if ms > 0 => json!({"waiting": {"reason": "CrashLoopBackOff",
                "message": format!("back-off {} restarting failed container={}", fmt_secs(ms), c.name)}}),
            _ => terminated(c, &s.st.started_at, e),
        }
    } else {
        json!({"running": {"startedAt": s.st.started_at}})
    };
    let running = s.running();
    let ready = match c.kind {
        Kind::Init => s.st.done,
        _ => s.ready(),
    };
    let mut v = json!({"name": c.name, "image": c.image, "imageID": c.image_id,
        "ready": ready, "started": running && s.started_ok(), "restartCount": s.st.restarts, "state": state});
    if s.st.started {
        v["containerID"] = json!(format!("runc://{}", c.id));
    }
    if let Some(last) = &s.st.last_terminated {
        v["lastState"] = last.clone();
    }
    v
}

fn fmt_secs(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The phase from the containers (before the pod is marked finished).
pub fn phase(pod: &PodState, slots: &[Slot], init_failed: bool) -> &'static str {
    let apps: Vec<&Slot> = slots.iter().filter(|s| s.ctr.kind == Kind::App).collect();
    if init_failed || (pod.finished && !pod.initialized) {
        return "Failed";
    }
    if !pod.initialized {
        return "Pending";
    }
    if !apps.is_empty() && apps.iter().all(|s| s.finished()) {
        if apps
            .iter()
            .all(|s| s.exited.as_ref().is_some_and(|e| e.code == 0))
        {
            return "Succeeded";
        }
        return "Failed";
    }
    "Running"
}

/// Conditions keep their transition time until their status changes.
#[derive(Default)]
pub struct Conditions {
    since: HashMap<String, (bool, String)>,
}

impl Conditions {
    fn get(&mut self, t: &str, ok: bool) -> Value {
        let entry = self
            .since
            .entry(t.to_string())
            .or_insert_with(|| (ok, now_secs()));
        if entry.0 != ok {
            *entry = (ok, now_secs());
        }
        let mut v = json!({"type": t, "status": if ok { "True" } else { "False" },
            "lastTransitionTime": entry.1});
        if !ok && (t == "Ready" || t == "ContainersReady") {
            v["reason"] = json!("ContainersNotReady");
        }
        v
    }
}

/// The condition type carrying a container's last `obli-pkg status`.
pub fn obli_condition_type(container: &str) -> String {
    format!("selur.io/obli-pkg-{container}")
}

/// The pod's whole status.
pub fn pod_status(
    pod: &k8s_openapi::api::core::v1::Pod,
    state: &PodState,
    slots: &[Slot],
    phase: &str,
    conds: &mut Conditions,
) -> Value {
    let initializing = !state.initialized;
    let inits: Vec<Value> = slots
        .iter()
        .filter(|s| s.ctr.kind != Kind::App)
        .map(|s| container_status(s, initializing))
        .collect();
    let apps: Vec<Value> = slots
        .iter()
        .filter(|s| s.ctr.kind == Kind::App)
        .map(|s| container_status(s, initializing))
        .collect();
    let ready = state.initialized
        && slots
            .iter()
            .filter(|s| s.ctr.kind == Kind::App)
            .all(Slot::ready)
        && phase == "Running";
    let qos = super::qos_of(pod);
    let mut v = json!({"phase": phase, "startTime": state.start_time, "qosClass": qos,
        "containerStatuses": apps,
        "conditions": [conds.get("PodScheduled", true), conds.get("Initialized", state.initialized),
            conds.get("ContainersReady", ready), conds.get("Ready", ready)]});
    if !inits.is_empty() {
        v["initContainerStatuses"] = Value::Array(inits);
    }
    if let Some(ip) = &state.pod_ip {
        v["podIP"] = json!(ip);
        v["podIPs"] = json!([{ "ip": ip }]);
    }
    if let Some(ip) = &state.host_ip {
        v["hostIP"] = json!(ip);
        v["hostIPs"] = json!([{ "ip": ip }]);
    }
    // The Lago Grey health of each container that reported one.
    for (s, o) in slots.iter().filter_map(|s| s.obli.as_ref().map(|o| (s, o))) {
        let healthy = super::probes::obli_healthy(o);
        let mut c = conds.get(&obli_condition_type(&s.ctr.name), healthy);
        c["reason"] = json!(if healthy { "Healthy" } else { "Unhealthy" });
        c["message"] = json!(o.to_string());
        if let Some(list) = v["conditions"].as_array_mut() {
            list.push(c);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_start_error_is_reported_with_its_message() {
        let s = slot("a", Kind::App, true, None);
        let e = Exit {
            code: 128,
            finished_at: "t1".into(),
            start_error: Some("reading init.pid: no such file".into()),
            ..Default::default()
        };
        let t = terminated(&s.ctr, "t0", &e);
        assert_eq!(t["terminated"]["reason"], "StartError");
        assert_eq!(t["terminated"]["exitCode"], 128);
        assert_eq!(t["terminated"]["message"], "reading init.pid: no such file");
        let t = terminated(
            &s.ctr,
            "t0",
            &Exit {
                code: 1,
                ..Default::default()
            },
        );
        assert_eq!(t["terminated"]["reason"], "Error");
        assert!(t["terminated"].get("message").is_none());
    }

    fn slot(name: &str, kind: Kind, started: bool, exit: Option<i64>) -> Slot {
        let mut s = Slot::new(
            Ctr {
                name: name.into(),
                kind,
                id: format!("n-u-{name}"),
                dir: PathBuf::new(),
                log_dir: PathBuf::new(),
                link: PathBuf::new(),
                image: "busybox".into(),
                image_id: "sha256:x".into(),
                spec: Value::Null,
            },
            CtrState {
                started,
                started_at: "t0".into(),
                ..Default::default()
            },
        );
        s.exited = exit.map(|code| Exit {
            code,
            finished_at: "t1".into(),
            oom: code == 137,
            start_error: None,
        });
        s
    }

    fn ps(initialized: bool) -> PodState {
        PodState {
            initialized,
            ..Default::default()
        }
    }

    #[test]
    fn phases_follow_the_app_containers() {
        let run = [slot("a", Kind::App, true, None)];
        assert_eq!(phase(&ps(true), &run, false), "Running");
        assert_eq!(phase(&ps(false), &run, false), "Pending");
        let ok = [
            slot("a", Kind::App, true, Some(0)),
            slot("s", Kind::Sidecar, true, None),
        ];
        assert_eq!(phase(&ps(true), &ok, false), "Succeeded");
        let bad = [
            slot("a", Kind::App, true, Some(0)),
            slot("b", Kind::App, true, Some(2)),
        ];
        assert_eq!(phase(&ps(true), &bad, false), "Failed");
        assert_eq!(phase(&ps(false), &run, true), "Failed");
    }

    #[test]
    fn statuses_report_oom_and_split_init_from_app() {
        let slots = [
            slot("i", Kind::Init, true, Some(0)),
            slot("a", Kind::App, true, Some(137)),
        ];
        let mut conds = Conditions::default();
        let v = pod_status(&Default::default(), &ps(true), &slots, "Failed", &mut conds);
        assert_eq!(
            v["containerStatuses"][0]["state"]["terminated"]["reason"],
            "OOMKilled"
        );
        assert_eq!(v["initContainerStatuses"][0]["name"], "i");
        assert_eq!(v["conditions"][3]["status"], "False");
        // Transition times are stable while nothing changes.
        let again = pod_status(&Default::default(), &ps(true), &slots, "Failed", &mut conds);
        assert_eq!(v["conditions"], again["conditions"]);
    }
}
