//! The loop that keeps one pod's containers as its spec says (observe, diff,
//! act): it reads the shims' exit files, runs init containers in order
//! (sidecars start in the sequence and keep running), starts the app
//! containers once initialized, restarts per `restartPolicy` with
//! Kubernetes' back-off (first restart at once, then the initial delay
//! doubling to the maximum, reset after a long enough run), stops sidecars
//! when the app containers finished, reports status when it changed and
//! remembers its state on disk for a restarted agent.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use selur_runtime::cgroups::PodCgroup;
use selur_runtime::sandbox::Sandbox;

use super::container::{self, Kind};
use super::probes;
use super::state::PodState;
use super::status::{self, Conditions, Slot};
use super::{patch_status, runtime};
use crate::node::now_secs;
use crate::pods::event;
use crate::Agent;

/// Everything the loop needs about one pod.
pub struct PodRun {
    pub agent: Arc<Agent>,
    pub pod: Value,
    pub dir: std::path::PathBuf,
    pub sandbox: Sandbox,
    pub cgroup: PodCgroup,
    pub sources: crate::volumes::Sources,
    pub state: PodState,
    pub slots: Vec<Slot>,
    conds: Conditions,
    last_status: Value,
    saved: PodState,
    init_failed: bool,
    /// When sidecars were told to stop (KILL after the grace period).
    stopping_since: Option<Instant>,
}

impl PodRun {
    pub fn new(
        agent: Arc<Agent>,
        pod: Value,
        sandbox: Sandbox,
        cgroup: PodCgroup,
        sources: crate::volumes::Sources,
        state: PodState,
    ) -> Self {
        let dir = super::pod_dir(&agent, pod["metadata"]["uid"].as_str().unwrap_or(""));
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
            sandbox,
            cgroup,
            sources,
            saved: PodState::default(),
            state,
            slots,
            conds: Conditions::default(),
            last_status: Value::Null,
            init_failed: false,
            stopping_since: None,
        }
    }

    fn policy(&self) -> &str {
        self.pod["spec"]["restartPolicy"]
            .as_str()
            .unwrap_or("Always")
    }

    fn grace(&self) -> Duration {
        Duration::from_secs(
            self.pod["spec"]["terminationGracePeriodSeconds"]
                .as_u64()
                .unwrap_or(30),
        )
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
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One observe-diff-act pass.
    pub async fn step(&mut self) {
        self.observe_exits().await;
        self.probe_step().await;
        if !self.state.finished {
            if !self.state.initialized && !self.init_failed {
                self.advance_init().await;
            }
            let now = Instant::now();
            for i in 0..self.slots.len() {
                let s = &self.slots[i];
                let eligible = match s.ctr.kind {
                    Kind::App => self.state.initialized,
                    Kind::Sidecar => s.st.started || s.st.start_error.is_some(),
                    Kind::Init => false,
                };
                let due = s.next_start.is_some_and(|t| t <= now)
                    || (!s.st.started && s.st.start_error.is_none() && s.ctr.kind == Kind::App);
                if eligible && due && !s.st.stopping {
                    self.start_slot(i).await;
                }
            }
            self.finish_if_done();
        }
        self.kill_stragglers();
        self.report().await;
    }

    async fn observe_exits(&mut self) {
        let policy = self.policy().to_string();
        let backoff = self.agent.config.backoff.clone();
        for i in 0..self.slots.len() {
            if !self.slots[i].running() {
                continue;
            }
            let Some(mut e) = self.slots[i].ctr.read_exit() else {
                continue;
            };
            // cgroup v1: the shim saw the kill; v2: the pod's counter rose.
            e.oom |= e.code == 137 && self.cgroup.oom_kills() > self.slots[i].st.oom_base;
            let s = &mut self.slots[i];
            let restart = match s.ctr.kind {
                Kind::Init if e.code == 0 => {
                    s.st.done = true;
                    false
                }
                Kind::Init => policy != "Never",
                Kind::Sidecar => !s.st.stopping,
                Kind::App => policy == "Always" || (policy == "OnFailure" && e.code != 0),
            };
            if s.ctr.kind == Kind::Init && e.code != 0 && !restart {
                self.init_failed = true;
            }
            if restart {
                let ran = chrono::DateTime::parse_from_rfc3339(&s.st.started_at)
                    .map(|t| {
                        (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                            .to_std()
                            .unwrap_or_default()
                    })
                    .unwrap_or_default();
                if ran >= backoff.reset {
                    s.st.backoff_ms = None;
                }
                let delay = Duration::from_millis(s.st.backoff_ms.unwrap_or(0));
                s.st.backoff_ms = Some(match s.st.backoff_ms {
                    None => ms(backoff.initial),
                    Some(d) => (d.saturating_mul(2)).min(ms(backoff.max)),
                });
                s.next_start = Some(Instant::now() + delay);
                if !delay.is_zero() {
                    let (fp, name) = (s.ctr.field_path(), s.ctr.name.clone());
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
            if e.oom {
                let fp = self.slots[i].ctr.field_path();
                event(
                    &self.agent,
                    &self.pod,
                    &fp,
                    "Warning",
                    "OOMKilled",
                    &format!(
                        "Container {} was killed: out of memory (limit reached)",
                        self.slots[i].ctr.name
                    ),
                )
                .await;
            }
            self.slots[i].exited = Some(e);
        }
    }

    /// Start the next init container when the one before finished; sidecars
    /// on the way start and stay.
    async fn advance_init(&mut self) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            match s.ctr.kind {
                Kind::App => continue,
                Kind::Sidecar => {
                    if !s.st.started && s.st.start_error.is_none() {
                        self.start_slot(i).await;
                    }
                    if !self.slots[i].running() {
                        return;
                    }
                }
                Kind::Init => {
                    if s.st.done {
                        continue;
                    }
                    let due = (!s.st.started && s.next_start.is_none_or(|t| t <= now))
                        || s.next_start.is_some_and(|t| t <= now);
                    if due {
                        self.start_slot(i).await;
                    }
                    return;
                }
            }
        }
        self.state.initialized = true;
    }

    async fn start_slot(&mut self, i: usize) {
        let backoff = self.agent.config.backoff.clone();
        let ctr = self.slots[i].ctr.clone();
        let fp = ctr.field_path();
        let env = match crate::env::resolve(&self.agent, &self.pod, &ctr.spec).await {
            Ok(env) => env,
            Err(msg) => {
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
                return;
            }
        };
        let run = if self.slots[i].st.started {
            self.slots[i].st.restarts + 1
        } else {
            0
        };
        let (agent, pod, sb, cg, src, c2) = (
            self.agent.clone(),
            self.pod.clone(),
            self.sandbox.clone(),
            self.cgroup.clone(),
            self.sources.clone(),
            ctr.clone(),
        );
        let res = tokio::task::spawn_blocking(move || {
            let cx = container::StartCtx {
                agent: &agent,
                pod: &pod,
                sandbox: &sb,
                cgroup: &cg,
                sources: &src,
                env,
                run,
            };
            container::start(&cx, &c2)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let oom_base = self.cgroup.oom_kills();
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
                s.next_start = None;
                crate::pods::event_later(
                    &self.agent,
                    &self.pod,
                    &fp,
                    "Normal",
                    "Created",
                    &format!("Created container {}", ctr.name),
                );
                crate::pods::event_later(
                    &self.agent,
                    &self.pod,
                    &fp,
                    "Normal",
                    "Started",
                    &format!("Started container {}", ctr.name),
                );
                self.post_start(i).await;
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
                let delay = Duration::from_millis(s.st.backoff_ms.unwrap_or(ms(backoff.initial)));
                s.st.backoff_ms = Some(ms(delay).saturating_mul(2).min(ms(backoff.max)));
                s.st.start_error = Some(("CreateContainerError".into(), msg));
                s.next_start = Some(Instant::now() + delay);
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
        if let Err(msg) =
            super::handlers::run_hook(&self.agent, &self.pod, &ctr, "postStart", timeout).await
        {
            let fp = ctr.field_path();
            event(
                &self.agent,
                &self.pod,
                &fp,
                "Warning",
                "FailedPostStartHook",
                &format!("PostStartHook failed: {msg}"),
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
            let rt = runtime(&self.agent);
            let id = ctr.id.clone();
            let _ = tokio::task::spawn_blocking(move || rt.kill(&id, "KILL")).await;
        }
    }

    /// When every app container finished for good (or an init container
    /// failed for good), the pod is done: sidecars are told to stop.
    fn finish_if_done(&mut self) {
        let apps_done = self.state.initialized
            && self
                .slots
                .iter()
                .filter(|s| s.ctr.kind == Kind::App)
                .all(|s| s.finished());
        if !(apps_done || self.init_failed) {
            return;
        }
        self.state.finished = true;
        let rt = runtime(&self.agent);
        for s in self
            .slots
            .iter_mut()
            .rev()
            .filter(|s| s.ctr.kind == Kind::Sidecar)
        {
            s.st.stopping = true;
            s.next_start = None;
            if s.running() {
                let _ = rt.kill(&s.ctr.id, "TERM");
            }
        }
        self.stopping_since = Some(Instant::now());
    }

    /// Run the probes that are due, all at once; count their results;
    /// a failed liveness or startup probe stops the container (TERM, then
    /// KILL after the grace period) so it restarts per policy.
    async fn probe_step(&mut self) {
        let now = Instant::now();
        let mut jobs: Vec<(usize, usize)> = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            if !s.running() || s.kill_at.is_some() || s.st.stopping {
                continue;
            }
            let startup_pending = !s.started_ok();
            for (j, p) in s.probes.iter().enumerate() {
                if startup_pending && p.kind != probes::Kind::Startup {
                    continue;
                }
                if p.due(now, s.run_started) {
                    jobs.push((i, j));
                }
            }
        }
        if jobs.is_empty() {
            return;
        }
        let runs = jobs.iter().map(|&(i, j)| {
            super::handlers::run_probe(
                &self.agent,
                &self.pod,
                &self.slots[i].ctr,
                &self.slots[i].probes[j],
            )
        });
        let results = futures::future::join_all(runs).await;
        let grace = self.grace();
        for (&(i, j), out) in jobs.iter().zip(results) {
            let now = Instant::now();
            let s = &mut self.slots[i];
            if out.obli.is_some() {
                s.obli = out.obli.clone();
            }
            let changed = s.probes[j].record(out.ok, now);
            let kind = s.probes[j].kind;
            let (fp, name, id) = (s.ctr.field_path(), s.ctr.name.clone(), s.ctr.id.clone());
            if !out.ok {
                crate::pods::event_later(
                    &self.agent,
                    &self.pod,
                    &fp,
                    "Warning",
                    "Unhealthy",
                    &format!("{} probe failed: {}", kind.label(), out.message),
                );
            }
            let fatal = matches!(kind, probes::Kind::Liveness | probes::Kind::Startup);
            if changed && fatal && s.probes[j].verdict == Some(false) {
                s.kill_at = Some(now + grace);
                crate::pods::event_later(
                    &self.agent,
                    &self.pod,
                    &fp,
                    "Normal",
                    "Killing",
                    &format!(
                        "Container {name} failed {} probe, will be restarted",
                        kind.label().to_lowercase()
                    ),
                );
                let rt = runtime(&self.agent);
                let _ = tokio::task::spawn_blocking(move || rt.kill(&id, "TERM")).await;
            }
        }
    }

    fn kill_stragglers(&mut self) {
        let now = Instant::now();
        let rt = runtime(&self.agent);
        for s in self
            .slots
            .iter()
            .filter(|s| s.running() && s.kill_at.is_some_and(|t| now >= t))
        {
            let _ = rt.kill(&s.ctr.id, "KILL");
        }
        let Some(since) = self.stopping_since else {
            return;
        };
        if since.elapsed() < self.grace() {
            return;
        }
        let rt = runtime(&self.agent);
        for s in self.slots.iter().filter(|s| s.st.stopping && s.running()) {
            let _ = rt.kill(&s.ctr.id, "KILL");
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
fn probes_for(agent: &Agent, pod: &Value, s: &Slot) -> Vec<probes::Probe> {
    if s.ctr.kind == Kind::Init {
        return Vec::new();
    }
    let opted_out = pod["metadata"]["annotations"]["selur.io/obli-pkg-health"] == "false";
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
