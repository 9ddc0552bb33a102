//! The loop that keeps one pod's containers as its spec says, in three
//! parts: observe (the shims' exit files, probe results), plan (the pure
//! [`plan::plan`]: judge exits, init sequence, starts and restarts with
//! back-off, kills after failed probes, sidecars stopped once the apps
//! finished) and act (through [`ContainerOps`], events and status reports).
//! It remembers its state on disk for a restarted agent.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::container::{self, Kind};
use super::ops::{ContainerOps, PodCx, Runc, Signal};
use super::patch_status;
use super::plan::{self, Action, ExitOutcome, KillReason};
use super::probes;
use super::state::PodState;
use super::status::{self, Conditions, Slot};
use crate::events::event;
use crate::node::now_secs;
use crate::Agent;

/// Everything the loop needs about one pod.
pub struct PodRun {
    pub agent: Arc<Agent>,
    /// The pod as decoded when the runtime took it on.
    pub pod: Arc<Pod>,
    pub dir: std::path::PathBuf,
    pub state: PodState,
    pub slots: Vec<Slot>,
    ops: Arc<dyn ContainerOps>,
    /// Set when the pod is deleted: no container starts after that.
    stop: watch::Receiver<bool>,
    conds: Conditions,
    last_status: Value,
    saved: PodState,
    init_failed: bool,
    /// When sidecars were told to stop (KILL after the grace period).
    stopping_since: Option<Instant>,
}

/// What the executor does after an action.
enum Flow {
    Next,
    /// A start failed: plan again from what happened.
    Replan,
    /// The pod is being deleted.
    Stop,
}

impl PodRun {
    /// A loop acting through the real runtime, for the pod in `cx`.
    pub fn new(cx: PodCx, state: PodState, stop: watch::Receiver<bool>) -> Self {
        let (agent, pod) = (cx.agent.clone(), cx.pod.clone());
        Self::with_ops(agent, pod, state, Arc::new(Runc::for_pod(cx)), stop)
    }

    /// A loop acting through `ops` (the real runtime, or a fake in tests).
    pub fn with_ops(
        agent: Arc<Agent>,
        pod: Arc<Pod>,
        state: PodState,
        ops: Arc<dyn ContainerOps>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let dir = super::pod_dir(&agent, super::uid_of(&pod));
        let slots = container::all(&agent, &pod)
            .into_iter()
            .map(|ctr| {
                let st = state.containers.get(&ctr.name).cloned().unwrap_or_default();
                let mut slot = Slot::new(ctr, st);
                // A re-adopted running container gets its probes back.
                if slot.st.started {
                    slot.probes = probes_for(&agent, &pod, &slot);
                }
                slot
            })
            .collect();
        Self {
            agent,
            pod,
            dir,
            ops,
            stop,
            saved: PodState::default(),
            state,
            slots,
            conds: Conditions::default(),
            last_status: Value::Null,
            init_failed: false,
            stopping_since: None,
        }
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(30);
        Duration::from_secs(secs)
    }

    fn spec(&self) -> plan::PodSpec {
        plan::PodSpec {
            policy: plan::RestartPolicy::parse(
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.restart_policy.as_deref()),
            ),
            grace: self.grace(),
            backoff: self.agent.config.backoff.clone(),
        }
    }

    /// Run until told to stop. `lock` is held during each step so a
    /// teardown never races a container start.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>, lock: Arc<tokio::sync::Mutex<()>>) {
        loop {
            {
                let _g = lock.lock().await;
                if *stop.borrow() {
                    return;
                }
                self.step().await;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(self.next_wake()) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One pass: observe, plan, act (planning again after a failed start),
    /// then report.
    pub async fn step(&mut self) {
        self.observe_exits();
        self.probe_step().await;
        let spec = self.spec();
        // Each failed start re-plans; bounded, so a pass always ends.
        let mut replans = self.slots.len() + 1;
        'plan: loop {
            let now = Instant::now();
            let actions = plan::plan(&spec, &self.view(now), now.into_std());
            for a in actions {
                match self.act(a, now).await {
                    Flow::Next => {}
                    Flow::Replan if replans > 0 => {
                        replans -= 1;
                        continue 'plan;
                    }
                    Flow::Replan | Flow::Stop => break 'plan,
                }
            }
            break;
        }
        // Containers started by this pass get their first probes now
        // (initialDelaySeconds 0), not a pass later.
        self.probe_step().await;
        self.report().await;
    }

    /// When the next pass is needed: in 200 ms at the latest (exits,
    /// restarts and deadlines are looked at then), sooner when a probe of a
    /// running container is due.
    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let wake = self
            .armed_probes()
            .map(|(i, j)| self.slots[i].probes[j].due_at(self.slots[i].run_started))
            .fold(now + Duration::from_millis(200), Instant::min);
        // Never a busy loop, whatever a probe's state.
        wake.max(now + Duration::from_millis(5))
    }

    /// The probes that may run (slot, probe): those of running containers
    /// not being stopped; only the startup probe until it passed.
    fn armed_probes(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.running() && s.kill_at.is_none() && !s.st.stopping)
            .flat_map(|(i, s)| {
                let startup_pending = !s.started_ok();
                s.probes
                    .iter()
                    .enumerate()
                    .filter(move |(_, p)| !startup_pending || p.kind == probes::Kind::Startup)
                    .map(move |(j, _)| (i, j))
            })
    }

    /// The pod as the planner sees it.
    fn view(&self, now: Instant) -> plan::Pod {
        let ctrs = self
            .slots
            .iter()
            .map(|s| {
                let run = if s.st.start_error.is_some() {
                    plan::Run::Waiting {
                        until: s.next_start.unwrap_or(now).into_std(),
                    }
                } else if !s.st.started {
                    plan::Run::NotStarted
                } else if let Some((e, ran)) = &s.pending_exit {
                    plan::Run::Ended {
                        code: e.code,
                        ran: *ran,
                    }
                } else if let Some(e) = &s.exited {
                    match s.next_start {
                        Some(t) => plan::Run::Waiting {
                            until: t.into_std(),
                        },
                        None => plan::Run::Terminated { code: e.code },
                    }
                } else {
                    plan::Run::Running {
                        since: s.run_started.into_std(),
                    }
                };
                let probe_failed = s
                    .probes
                    .iter()
                    .find(|p| {
                        matches!(p.kind, probes::Kind::Liveness | probes::Kind::Startup)
                            && p.verdict == Some(false)
                    })
                    .map(|p| p.kind);
                plan::Ctr {
                    kind: s.ctr.kind,
                    run,
                    backoff: s.st.backoff_ms.map(Duration::from_millis),
                    done: s.st.done,
                    stopping: s.st.stopping,
                    kill_at: s.kill_at.map(Instant::into_std),
                    probe_failed,
                }
            })
            .collect();
        plan::Pod {
            initialized: self.state.initialized,
            finished: self.state.finished,
            init_failed: self.init_failed,
            stopping_since: self.stopping_since.map(Instant::into_std),
            ctrs,
        }
    }

    /// Read the exits of the running containers (judged by the planner).
    fn observe_exits(&mut self) {
        for s in self.slots.iter_mut().filter(|s| s.running()) {
            let Some(mut e) = self.ops.exit(&s.ctr) else {
                continue;
            };
            // cgroup v1: the shim saw the kill; v2: the pod's counter rose.
            e.oom |= e.code == 137 && self.ops.oom_kills() > s.st.oom_base;
            let ran = chrono::DateTime::parse_from_rfc3339(&s.st.started_at)
                .map(|t| {
                    (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                        .to_std()
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            s.pending_exit = Some((e, ran));
        }
    }

    async fn act(&mut self, action: Action, now: Instant) -> Flow {
        match action {
            Action::Exited { ctr, outcome } => self.record_exit(ctr, outcome).await,
            Action::InitFailed { .. } => self.init_failed = true,
            Action::Kill {
                ctr,
                signal,
                why,
                kill_at,
            } => {
                if let KillReason::Probe(kind) = why {
                    let s = &mut self.slots[ctr];
                    s.kill_at = kill_at.map(Instant::from_std);
                    crate::events::event_later(
                        &self.agent,
                        &self.pod,
                        &s.ctr.field_path(),
                        "Normal",
                        "Killing",
                        &format!(
                            "Container {} failed {} probe, will be restarted",
                            s.ctr.name,
                            kind.label().to_lowercase()
                        ),
                    );
                }
                self.signal(ctr, signal).await;
            }
            Action::Start { ctr } => {
                if *self.stop.borrow() {
                    return Flow::Stop;
                }
                if !self.start_slot(ctr).await {
                    return Flow::Replan;
                }
            }
            Action::Initialized => self.state.initialized = true,
            Action::Finished => {
                self.state.finished = true;
                self.stopping_since = Some(now);
                for s in self
                    .slots
                    .iter_mut()
                    .filter(|s| s.ctr.kind == Kind::Sidecar)
                {
                    s.st.stopping = true;
                    s.next_start = None;
                }
            }
        }
        Flow::Next
    }

    /// Record how a run ended (as the planner judged it).
    async fn record_exit(&mut self, i: usize, outcome: ExitOutcome) {
        let s = &mut self.slots[i];
        let Some((e, _)) = s.pending_exit.take() else {
            return;
        };
        s.kill_at = None;
        let (fp, name) = (s.ctr.field_path(), s.ctr.name.clone());
        let oom = e.oom;
        s.exited = Some(e);
        match outcome {
            ExitOutcome::Completed => s.st.done = true,
            ExitOutcome::Stays => {}
            ExitOutcome::Restart { at, delay, backoff } => {
                s.st.backoff_ms = Some(ms(backoff));
                s.next_start = Some(Instant::from_std(at));
                if !delay.is_zero() {
                    event(
                        &self.agent,
                        &self.pod,
                        &fp,
                        "Warning",
                        "BackOff",
                        &format!("Back-off restarting failed container {name}"),
                    )
                    .await;
                }
            }
        }
        if oom {
            event(
                &self.agent,
                &self.pod,
                &fp,
                "Warning",
                "OOMKilled",
                &format!("Container {name} was killed: out of memory (limit reached)"),
            )
            .await;
        }
    }

    /// Send `signal` to container `i`; a failure is logged (the container
    /// may have ended meanwhile).
    async fn signal(&self, i: usize, signal: Signal) {
        let (ops, ctr) = (self.ops.clone(), self.slots[i].ctr.clone());
        let id = ctr.id.clone();
        match tokio::task::spawn_blocking(move || ops.kill(&ctr, signal)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(container = %id, signal = signal.as_str(), error = %e, "cannot signal container")
            }
            Err(e) => {
                tracing::warn!(container = %id, signal = signal.as_str(), error = %e, "signalling container panicked")
            }
        }
    }

    /// Start container `i`; returns whether it runs.
    async fn start_slot(&mut self, i: usize) -> bool {
        let backoff = self.agent.config.backoff.clone();
        let ctr = self.slots[i].ctr.clone();
        let fp = ctr.field_path();
        let env = match crate::env::resolve(&self.agent, &self.pod, &ctr.spec).await {
            Ok(env) => env,
            Err(e) => {
                let msg = e.to_string();
                let s = &mut self.slots[i];
                if s.st.start_error.as_ref().map(|e| &e.1) != Some(&msg) {
                    event(
                        &self.agent,
                        &self.pod,
                        &fp,
                        "Warning",
                        "Failed",
                        &format!("Error: {msg}"),
                    )
                    .await;
                }
                s.st.start_error = Some(("CreateContainerConfigError".into(), msg));
                s.next_start = Some(Instant::now() + backoff.initial.min(Duration::from_secs(2)));
                return false;
            }
        };
        let run = if self.slots[i].st.started {
            self.slots[i].st.restarts + 1
        } else {
            0
        };
        let (ops, c2) = (self.ops.clone(), ctr.clone());
        let res = match tokio::task::spawn_blocking(move || ops.start(&c2, env, run)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("starting {} panicked: {e}", ctr.id)),
        };
        let oom_base = self.ops.oom_kills();
        let s = &mut self.slots[i];
        match res {
            Ok(()) => {
                if s.st.started {
                    s.st.restarts += 1;
                    if let Some(e) = &s.exited {
                        s.st.last_terminated =
                            Some(status::terminated(&s.ctr, &s.st.started_at, e));
                    }
                }
                s.st.started = true;
                s.st.started_at = now_secs();
                s.run_started = Instant::now();
                s.kill_at = None;
                s.obli = None;
                s.probes = probes_for(&self.agent, &self.pod, s);
                s.st.oom_base = oom_base;
                s.st.start_error = None;
                s.exited = None;
                s.pending_exit = None;
                s.next_start = None;
                crate::events::event_later(
                    &self.agent,
                    &self.pod,
                    &fp,
                    "Normal",
                    "Created",
                    &format!("Created container {}", ctr.name),
                );
                crate::events::event_later(
                    &self.agent,
                    &self.pod,
                    &fp,
                    "Normal",
                    "Started",
                    &format!("Started container {}", ctr.name),
                );
                self.post_start(i).await;
                true
            }
            Err(msg) => {
                event(
                    &self.agent,
                    &self.pod,
                    &fp,
                    "Warning",
                    "Failed",
                    &format!("Error: {msg}"),
                )
                .await;
                let (delay, next) =
                    plan::start_failure_delay(s.st.backoff_ms.map(Duration::from_millis), &backoff);
                s.st.backoff_ms = Some(ms(next));
                s.st.start_error = Some(("CreateContainerError".into(), msg));
                s.next_start = Some(Instant::now() + delay);
                false
            }
        }
    }

    /// Run the container's postStart hook; when it fails the container is
    /// killed (and restarted per policy), as the kubelet does.
    async fn post_start(&mut self, i: usize) {
        let ctr = self.slots[i].ctr.clone();
        if ctr.spec["lifecycle"]["postStart"].is_null() {
            return;
        }
        let timeout = self.grace().max(Duration::from_secs(30));
        if let Err(e) = super::handlers::run_hook(
            &self.agent,
            super::uid_of(&self.pod),
            &ctr,
            "postStart",
            timeout,
        )
        .await
        {
            let fp = ctr.field_path();
            event(
                &self.agent,
                &self.pod,
                &fp,
                "Warning",
                "FailedPostStartHook",
                &format!("PostStartHook failed: {e}"),
            )
            .await;
            event(
                &self.agent,
                &self.pod,
                &fp,
                "Normal",
                "Killing",
                &format!("FailedPostStartHook: stopping container {}", ctr.name),
            )
            .await;
            self.signal(i, Signal::Kill).await;
        }
    }

    /// Run the probes that are due, all at once, and count their results
    /// (the planner acts on the verdicts).
    async fn probe_step(&mut self) {
        let now = Instant::now();
        let jobs: Vec<(usize, usize)> = self
            .armed_probes()
            .filter(|&(i, j)| self.slots[i].probes[j].due(now, self.slots[i].run_started))
            .collect();
        if jobs.is_empty() {
            return;
        }
        let runs = jobs.iter().map(|&(i, j)| {
            super::handlers::run_probe(
                &self.agent,
                super::uid_of(&self.pod),
                &self.slots[i].ctr,
                &self.slots[i].probes[j],
            )
        });
        let results = futures::future::join_all(runs).await;
        for (&(i, j), out) in jobs.iter().zip(results) {
            let now = Instant::now();
            let s = &mut self.slots[i];
            if out.obli.is_some() {
                s.obli = out.obli.clone();
            }
            let recorded = s.probes[j].record(out.ok, now);
            if recorded.counted_failure {
                crate::events::event_later(
                    &self.agent,
                    &self.pod,
                    &s.ctr.field_path(),
                    "Warning",
                    "Unhealthy",
                    &format!("{} probe failed: {}", s.probes[j].kind.label(), out.message),
                );
            }
        }
    }

    async fn report(&mut self) {
        let phase = status::phase(&self.state, &self.slots, self.init_failed);
        let st = status::pod_status(&self.pod, &self.state, &self.slots, phase, &mut self.conds);
        if st != self.last_status {
            patch_status(&self.agent, &self.pod, st.clone()).await;
            self.last_status = st;
        }
        for s in &self.slots {
            self.state
                .containers
                .insert(s.ctr.name.clone(), s.st.clone());
        }
        if self.state != self.saved {
            if let Err(e) = self.state.save(&self.dir) {
                tracing::warn!(error = %e, dir = %self.dir.display(), "cannot save pod state");
            }
            self.saved = self.state.clone();
        }
    }
}

/// The probes of a container's new run: its declared ones, and the
/// obli-pkg readiness check for app containers whose image holds
/// `/usr/bin/obli-pkg` (unless the pod opts out).
fn probes_for(agent: &Agent, pod: &Pod, s: &Slot) -> Vec<probes::Probe> {
    if s.ctr.kind == Kind::Init {
        return Vec::new();
    }
    let opted_out = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("selur.io/obli-pkg-health"))
        .is_some_and(|v| v == "false");
    let has_obli = s.ctr.kind == Kind::App
        && !opted_out
        && selur_runtime::rootfs::Rootfs::at(&s.ctr.dir)
            .merged
            .join("usr/bin/obli-pkg")
            .symlink_metadata()
            .is_ok();
    probes::probes_of(&s.ctr.spec, has_obli, Some(&agent.config.obli_health))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ops::fake::{Call, Fake};
    use serde_json::json;

    /// An agent whose API server refuses connections (events and status
    /// reports fail fast and are only logged).
    fn agent(dir: &std::path::Path) -> Arc<Agent> {
        let mut config =
            crate::AgentConfig::new("http://[::1]:9".into(), "n1".into(), dir.to_path_buf());
        config.backoff = crate::Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(40),
            reset: Duration::from_secs(600),
        };
        config.pod_start_concurrency = 1;
        let images = selur_image::ImageStore::open(&dir.join("images")).unwrap();
        Arc::new(Agent::new(config, Arc::new(images)).unwrap())
    }

    fn pod(init: &[Value], apps: usize, policy: &str) -> Arc<Pod> {
        let apps: Vec<Value> = (0..apps)
            .map(|i| json!({"name": format!("c{i}"), "image": "busybox"}))
            .collect();
        let v = json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy, "initContainers": init, "containers": apps}});
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn starts(f: &Fake) -> Vec<String> {
        f.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Start(id) => Some(id),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_delete_stops_container_starts_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(false);
        let ops = Arc::new(Fake::default());
        // The delete arrives while the fifth container starts.
        *ops.on_start.lock().unwrap() = Some(Box::new(move |n| {
            if n == 5 {
                let _ = tx.send(true);
            }
        }));
        let mut run = PodRun::with_ops(
            agent(dir.path()),
            pod(&[], 1000, "Always"),
            PodState::default(),
            ops.clone(),
            rx,
        );
        run.step().await;
        assert_eq!(starts(&ops).len(), 5);
    }

    #[tokio::test]
    async fn probes_held_back_by_a_pending_startup_probe_do_not_wake_the_loop() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(false);
        let ops = Arc::new(Fake::default());
        let exec = json!({"command": ["true"]});
        let v = json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "c0", "image": "busybox",
                "startupProbe": {"exec": exec, "initialDelaySeconds": 30},
                "readinessProbe": {"exec": exec}}]}});
        let mut run = PodRun::with_ops(
            agent(dir.path()),
            Arc::new(serde_json::from_value(v).unwrap()),
            PodState::default(),
            ops.clone(),
            rx,
        );
        run.step().await;
        assert_eq!(starts(&ops).len(), 1);
        // Only the startup probe is armed, due in 30 s: the readiness probe
        // (due at once) must not make the loop spin until startup passes.
        let armed: Vec<_> = run.armed_probes().collect();
        assert_eq!(armed.len(), 1);
        assert_eq!(run.slots[0].probes[armed[0].1].kind, probes::Kind::Startup);
        let wake = run.next_wake();
        assert!(
            wake >= Instant::now() + Duration::from_millis(150),
            "the loop would wake in {:?}",
            wake - Instant::now()
        );
    }

    #[tokio::test]
    async fn exits_are_judged_and_restarted_through_the_ops() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(false);
        let ops = Arc::new(Fake::default());
        let side = json!({"name": "side", "image": "busybox", "restartPolicy": "Always"});
        let init = json!({"name": "init", "image": "busybox"});
        let mut run = PodRun::with_ops(
            agent(dir.path()),
            pod(&[side, init], 1, "OnFailure"),
            PodState::default(),
            ops.clone(),
            rx,
        );
        let id = |n: &str| crate::layout::id_for("n1", "u1", n);
        run.step().await;
        assert_eq!(starts(&ops), [id("side"), id("init")]);
        ops.exit_with(&id("init"), 0);
        run.step().await;
        assert_eq!(starts(&ops)[2..], [id("c0")]);
        assert!(run.state.initialized);
        // A failed app restarts at once, then backs off.
        ops.exit_with(&id("c0"), 1);
        run.step().await;
        assert_eq!(starts(&ops).len(), 4);
        assert_eq!(run.slots[2].st.restarts, 1);
        ops.exit_with(&id("c0"), 1);
        run.step().await;
        assert_eq!(starts(&ops).len(), 4, "back-off");
        assert_eq!(run.slots[2].st.backoff_ms, Some(20_000));
        // It succeeds: the pod is done and the sidecar is told to stop.
        run.slots[2].next_start = Some(Instant::now());
        run.step().await;
        ops.exit_with(&id("c0"), 0);
        run.step().await;
        assert!(run.state.finished);
        assert_eq!(
            ops.calls().last(),
            Some(&Call::Kill(id("side"), Signal::Term))
        );
        assert_eq!(
            status::phase(&run.state, &run.slots, run.init_failed),
            "Succeeded"
        );
    }
}
