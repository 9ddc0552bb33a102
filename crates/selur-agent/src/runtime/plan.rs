//! What to do next with a pod's containers, as pure functions of the pod's
//! spec, what was observed and the time: [`plan`] for a running pod (judge
//! exits, run the init sequence, start and restart with Kubernetes'
//! back-off, kill on failed liveness/startup probes, stop sidecars once the
//! apps finished) and [`plan_termination`] for a graceful delete (preStop,
//! apps TERM, then sidecars and init containers in reverse order, KILL at
//! the grace deadline). No I/O and no clock of their own: callers pass `now`,
//! so tests drive a fake clock.
//!
//! A plan assumes each of its actions succeeds (a started container runs);
//! when one does not, the caller drops the rest and plans again from what
//! happened.

use std::time::{Duration, Instant};

use super::container::Kind;
use super::ops::Signal;
use super::probes::Kind as ProbeKind;

/// `spec.restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// The policy as the spec words it (Always when absent or unknown).
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("OnFailure") => Self::OnFailure,
            Some("Never") => Self::Never,
            _ => Self::Always,
        }
    }
}

/// What the planner needs from the pod's spec and the agent's settings.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub policy: RestartPolicy,
    /// `terminationGracePeriodSeconds`: TERM to KILL.
    pub grace: Duration,
    pub backoff: crate::Backoff,
}

/// Where a container's current run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// Never started.
    NotStarted,
    Running {
        since: Instant,
    },
    /// The run ended and the exit was not judged yet; `ran`: how long it ran.
    Ended {
        code: i64,
        ran: Duration,
    },
    /// Waiting to start again (after an exit or a failed start).
    Waiting {
        until: Instant,
    },
    /// Ended for good.
    Terminated {
        code: i64,
    },
}

/// One container as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ctr {
    pub kind: Kind,
    pub run: Run,
    /// The current back-off delay (`None` until the first restart).
    pub backoff: Option<Duration>,
    /// An init container that completed successfully.
    pub done: bool,
    /// Told to stop for good (sidecars once the apps finished).
    pub stopping: bool,
    /// TERM was sent after a failed probe: KILL at this time.
    pub kill_at: Option<Instant>,
    /// A liveness or startup probe's verdict is failure.
    pub probe_failed: Option<ProbeKind>,
}

impl Ctr {
    /// A container not started yet.
    #[cfg(test)]
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            run: Run::NotStarted,
            backoff: None,
            done: false,
            stopping: false,
            kill_at: None,
            probe_failed: None,
        }
    }

    pub fn running(&self) -> bool {
        matches!(self.run, Run::Running { .. })
    }

    fn due(&self, now: Instant) -> bool {
        matches!(self.run, Run::Waiting { until } if until <= now)
    }
}

/// The pod as the planner sees it: containers in spec order (init and
/// sidecar containers, then app containers).
#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    /// Every regular init container completed.
    pub initialized: bool,
    /// The pod reached a final phase.
    pub finished: bool,
    /// An init container failed and will not be retried.
    pub init_failed: bool,
    /// When the sidecars were told to stop (KILL after the grace period).
    pub stopping_since: Option<Instant>,
    pub ctrs: Vec<Ctr>,
}

/// What becomes of an ended run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitOutcome {
    /// An init container completed.
    Completed,
    /// Start again at `at` (`delay` after now: a BackOff when not zero);
    /// `backoff` is the delay after the next exit.
    Restart {
        at: Instant,
        delay: Duration,
        backoff: Duration,
    },
    /// Not restarted.
    Stays,
}

/// Why a container is signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// A liveness or startup probe failed.
    Probe(ProbeKind),
    /// The app containers finished: sidecars stop.
    PodFinished,
    /// The grace period after a TERM ran out.
    GraceOver,
}

/// One thing to do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Record how container `ctr`'s run ended and what follows.
    Exited { ctr: usize, outcome: ExitOutcome },
    /// An init container failed for good: the pod fails.
    InitFailed { ctr: usize },
    /// Send a signal; with TERM for a probe failure, KILL is due at `kill_at`.
    Kill {
        ctr: usize,
        signal: Signal,
        why: KillReason,
        kill_at: Option<Instant>,
    },
    /// Start (or restart) container `ctr` now.
    Start { ctr: usize },
    /// Every regular init container completed.
    Initialized,
    /// The app containers finished (or the init failed): the pod is done,
    /// its sidecars are told to stop.
    Finished,
}

/// Kubernetes' back-off for a restart after a run of `ran`: the first
/// restart at once, then `initial` doubling up to `max`; a run of at least
/// `reset` starts over. Returns (delay now, back-off after the next exit).
pub fn restart_delay(
    current: Option<Duration>,
    ran: Duration,
    b: &crate::Backoff,
) -> (Duration, Duration) {
    let current = if ran >= b.reset { None } else { current };
    match current {
        None => (Duration::ZERO, b.initial),
        Some(d) => (d, d.saturating_mul(2).min(b.max)),
    }
}

/// Back-off after a failed start: (delay, back-off after the next failure).
pub fn start_failure_delay(current: Option<Duration>, b: &crate::Backoff) -> (Duration, Duration) {
    let delay = current.unwrap_or(b.initial);
    (delay, delay.saturating_mul(2).min(b.max))
}

/// Whether an ended run of a `kind` container is restarted.
fn restarts(kind: Kind, code: i64, stopping: bool, policy: RestartPolicy) -> bool {
    match kind {
        Kind::Init => code != 0 && policy != RestartPolicy::Never,
        Kind::Sidecar => !stopping,
        Kind::App => match policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => code != 0,
            RestartPolicy::Never => false,
        },
    }
}

/// The actions that bring the pod closer to its spec at `now`.
pub fn plan(spec: &PodSpec, observed: &Pod, now: Instant) -> Vec<Action> {
    let mut p = observed.clone();
    let mut out = Vec::new();
    // Judge the runs that ended.
    for i in 0..p.ctrs.len() {
        let c = &mut p.ctrs[i];
        let Run::Ended { code, ran } = c.run else {
            continue;
        };
        c.kill_at = None;
        let outcome = if c.kind == Kind::Init && code == 0 {
            c.done = true;
            c.run = Run::Terminated { code };
            ExitOutcome::Completed
        } else if restarts(c.kind, code, c.stopping, spec.policy) {
            let (delay, backoff) = restart_delay(c.backoff, ran, &spec.backoff);
            c.backoff = Some(backoff);
            c.run = Run::Waiting { until: now + delay };
            ExitOutcome::Restart {
                at: now + delay,
                delay,
                backoff,
            }
        } else {
            c.run = Run::Terminated { code };
            ExitOutcome::Stays
        };
        out.push(Action::Exited { ctr: i, outcome });
        if c.kind == Kind::Init && outcome == ExitOutcome::Stays && !p.init_failed {
            p.init_failed = true;
            out.push(Action::InitFailed { ctr: i });
        }
    }
    // A failed liveness or startup probe stops the container (TERM now,
    // KILL after the grace period); it restarts per policy when it ended.
    for (i, c) in p.ctrs.iter_mut().enumerate() {
        if let (true, None, false, Some(kind)) =
            (c.running(), c.kill_at, c.stopping, c.probe_failed)
        {
            let kill_at = now + spec.grace;
            c.kill_at = Some(kill_at);
            out.push(Action::Kill {
                ctr: i,
                signal: Signal::Term,
                why: KillReason::Probe(kind),
                kill_at: Some(kill_at),
            });
        }
    }
    if !p.finished {
        if !p.initialized && !p.init_failed && advance_init(&mut p, now, &mut out) {
            p.initialized = true;
            out.push(Action::Initialized);
        }
        for (i, c) in p.ctrs.iter_mut().enumerate() {
            let eligible = match c.kind {
                Kind::App => p.initialized,
                Kind::Sidecar => c.run != Run::NotStarted,
                Kind::Init => false,
            };
            let due = c.due(now) || (c.kind == Kind::App && c.run == Run::NotStarted);
            if eligible && due && !c.stopping {
                c.run = Run::Running { since: now };
                out.push(Action::Start { ctr: i });
            }
        }
        let apps_done = p.initialized
            && p.ctrs
                .iter()
                .filter(|c| c.kind == Kind::App)
                .all(|c| matches!(c.run, Run::Terminated { .. }));
        if apps_done || p.init_failed {
            p.finished = true;
            p.stopping_since = Some(now);
            out.push(Action::Finished);
            for (i, c) in p.ctrs.iter_mut().enumerate().rev() {
                if c.kind != Kind::Sidecar {
                    continue;
                }
                c.stopping = true;
                if let Run::Waiting { .. } = c.run {
                    c.run = Run::Terminated { code: 0 };
                }
                if c.running() {
                    out.push(Action::Kill {
                        ctr: i,
                        signal: Signal::Term,
                        why: KillReason::PodFinished,
                        kill_at: None,
                    });
                }
            }
        }
    }
    // KILL what outlived its grace period.
    let sidecars_over = p.stopping_since.is_some_and(|t| now >= t + spec.grace);
    for (i, c) in p.ctrs.iter().enumerate() {
        let probe_over = c.kill_at.is_some_and(|t| now >= t);
        if c.running() && (probe_over || (c.stopping && sidecars_over)) {
            out.push(Action::Kill {
                ctr: i,
                signal: Signal::Kill,
                why: KillReason::GraceOver,
                kill_at: None,
            });
        }
    }
    out
}

/// The init sequence: the next init container starts when the one before
/// completed; sidecars on the way start and must keep running. Returns
/// whether every init container completed.
fn advance_init(p: &mut Pod, now: Instant, out: &mut Vec<Action>) -> bool {
    for (i, c) in p.ctrs.iter_mut().enumerate() {
        match c.kind {
            Kind::App => continue,
            Kind::Sidecar => {
                if c.run == Run::NotStarted {
                    c.run = Run::Running { since: now };
                    out.push(Action::Start { ctr: i });
                }
                if !c.running() {
                    return false;
                }
            }
            Kind::Init => {
                if c.done {
                    continue;
                }
                if c.run == Run::NotStarted || c.due(now) {
                    c.run = Run::Running { since: now };
                    out.push(Action::Start { ctr: i });
                }
                return false;
            }
        }
    }
    true
}

/// One container during a graceful delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermCtr {
    pub kind: Kind,
    pub alive: bool,
    /// It has a preStop hook that did not run yet.
    pub pre_stop: bool,
    pub term_sent: bool,
    /// When KILL was sent.
    pub killed_at: Option<Instant>,
}

impl TermCtr {
    pub fn new(kind: Kind, alive: bool, pre_stop: bool) -> Self {
        Self {
            kind,
            alive,
            pre_stop,
            term_sent: false,
            killed_at: None,
        }
    }
}

/// One step of a graceful delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermAction {
    /// Run these containers' preStop hooks (all at once, before any TERM).
    PreStop(Vec<usize>),
    Signal {
        ctr: usize,
        signal: Signal,
    },
    /// Look again at `until` at the latest (earlier when something exits).
    WaitUntil(Instant),
    /// Nothing runs any more (or KILL went unheard too long): remove all.
    Cleanup,
}

/// The next steps of deleting a pod whose grace period ends at `deadline`:
/// preStop hooks first, TERM to the app containers and wait for them, then
/// TERM to sidecars and init containers in reverse order, KILL to what still
/// runs at the deadline, and cleanup once all ended (or `kill_wait` after
/// the KILL). Containers that already ended are never signalled.
pub fn plan_termination(
    ctrs: &[TermCtr],
    now: Instant,
    deadline: Instant,
    kill_wait: Duration,
) -> Vec<TermAction> {
    let before_deadline = now < deadline;
    let hooks: Vec<usize> = (0..ctrs.len())
        .filter(|&i| ctrs[i].alive && ctrs[i].pre_stop)
        .collect();
    if before_deadline && !hooks.is_empty() {
        return vec![TermAction::PreStop(hooks)];
    }
    let mut out = Vec::new();
    let apps: Vec<usize> = (0..ctrs.len())
        .filter(|&i| ctrs[i].kind == Kind::App)
        .collect();
    let rest: Vec<usize> = (0..ctrs.len())
        .rev()
        .filter(|&i| ctrs[i].kind != Kind::App)
        .collect();
    for group in [apps, rest] {
        let alive: Vec<usize> = group.into_iter().filter(|&i| ctrs[i].alive).collect();
        for &i in &alive {
            if !ctrs[i].term_sent {
                out.push(TermAction::Signal {
                    ctr: i,
                    signal: Signal::Term,
                });
            }
        }
        if !alive.is_empty() && before_deadline {
            out.push(TermAction::WaitUntil(deadline));
            return out;
        }
    }
    if !ctrs.iter().any(|c| c.alive) {
        out.push(TermAction::Cleanup);
        return out;
    }
    let mut last_kill = None::<Instant>;
    for (i, c) in ctrs.iter().enumerate().filter(|(_, c)| c.alive) {
        match c.killed_at {
            None => {
                out.push(TermAction::Signal {
                    ctr: i,
                    signal: Signal::Kill,
                });
                last_kill = last_kill.max(Some(now));
            }
            Some(t) => last_kill = last_kill.max(Some(t)),
        }
    }
    match last_kill {
        Some(t) if now < t + kill_wait => out.push(TermAction::WaitUntil(t + kill_wait)),
        _ => out.push(TermAction::Cleanup),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn spec(policy: RestartPolicy) -> PodSpec {
        PodSpec {
            policy,
            grace: secs(30),
            backoff: crate::Backoff {
                initial: secs(10),
                max: secs(40),
                reset: secs(600),
            },
        }
    }

    fn pod(kinds: &[Kind]) -> Pod {
        Pod {
            initialized: false,
            finished: false,
            init_failed: false,
            stopping_since: None,
            ctrs: kinds.iter().map(|k| Ctr::new(*k)).collect(),
        }
    }

    /// Apply a plan as the executor would when every action succeeds.
    fn apply(p: &mut Pod, actions: &[Action], now: Instant) {
        for a in actions {
            match *a {
                Action::Exited { ctr, outcome } => {
                    let c = &mut p.ctrs[ctr];
                    let Run::Ended { code, .. } = c.run else {
                        panic!("judged a run that did not end")
                    };
                    c.kill_at = None;
                    c.run = match outcome {
                        ExitOutcome::Completed => {
                            c.done = true;
                            Run::Terminated { code }
                        }
                        ExitOutcome::Restart { at, backoff, .. } => {
                            c.backoff = Some(backoff);
                            Run::Waiting { until: at }
                        }
                        ExitOutcome::Stays => Run::Terminated { code },
                    };
                }
                Action::InitFailed { .. } => p.init_failed = true,
                Action::Kill { ctr, kill_at, .. } => {
                    if kill_at.is_some() {
                        p.ctrs[ctr].kill_at = kill_at;
                    }
                }
                Action::Start { ctr } => {
                    let c = &mut p.ctrs[ctr];
                    c.run = Run::Running { since: now };
                    c.kill_at = None;
                    c.probe_failed = None;
                }
                Action::Initialized => p.initialized = true,
                Action::Finished => {
                    p.finished = true;
                    p.stopping_since = Some(now);
                    for c in p.ctrs.iter_mut().filter(|c| c.kind == Kind::Sidecar) {
                        c.stopping = true;
                        if let Run::Waiting { .. } = c.run {
                            c.run = Run::Terminated { code: 0 };
                        }
                    }
                }
            }
        }
    }

    fn step(s: &PodSpec, p: &mut Pod, now: Instant) -> Vec<Action> {
        let a = plan(s, p, now);
        apply(p, &a, now);
        a
    }

    fn end(p: &mut Pod, i: usize, code: i64, ran: Duration) {
        p.ctrs[i].run = Run::Ended { code, ran };
    }

    fn starts(a: &[Action]) -> Vec<usize> {
        a.iter()
            .filter_map(|a| match a {
                Action::Start { ctr } => Some(*ctr),
                _ => None,
            })
            .collect()
    }

    fn kills(a: &[Action]) -> Vec<(usize, Signal)> {
        a.iter()
            .filter_map(|a| match a {
                Action::Kill { ctr, signal, .. } => Some((*ctr, *signal)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn app_restart_policies() {
        let t0 = Instant::now();
        for (policy, code, restarted) in [
            (RestartPolicy::Always, 0, true),
            (RestartPolicy::Always, 1, true),
            (RestartPolicy::OnFailure, 0, false),
            (RestartPolicy::OnFailure, 1, true),
            (RestartPolicy::Never, 1, false),
            (RestartPolicy::Never, 0, false),
        ] {
            let s = spec(policy);
            let mut p = pod(&[Kind::App]);
            assert_eq!(
                step(&s, &mut p, t0),
                [Action::Initialized, Action::Start { ctr: 0 }]
            );
            end(&mut p, 0, code, secs(1));
            let a = step(&s, &mut p, t0 + secs(1));
            assert_eq!(starts(&a), if restarted { vec![0] } else { vec![] });
            assert_eq!(a.contains(&Action::Finished), !restarted, "{policy:?}");
        }
    }

    #[test]
    fn back_off_grows_to_the_cap_and_resets_after_a_long_run() {
        let s = spec(RestartPolicy::Always);
        let mut p = pod(&[Kind::App]);
        let mut now = Instant::now();
        step(&s, &mut p, now);
        let mut delays = Vec::new();
        for _ in 0..5 {
            end(&mut p, 0, 1, secs(1));
            let a = step(&s, &mut p, now);
            let Some(Action::Exited {
                outcome: ExitOutcome::Restart { delay, at, .. },
                ..
            }) = a.first().copied()
            else {
                panic!("no restart: {a:?}")
            };
            delays.push(delay.as_secs());
            if delay.is_zero() {
                assert_eq!(starts(&a), [0], "first restart at once");
            } else {
                assert!(starts(&a).is_empty());
                assert!(starts(&step(&s, &mut p, at - Duration::from_millis(1))).is_empty());
                now = at;
                assert_eq!(starts(&step(&s, &mut p, now)), [0]);
            }
        }
        assert_eq!(delays, [0, 10, 20, 40, 40]);
        // A run of `reset` clears the back-off: the next restart is at once.
        end(&mut p, 0, 1, secs(600));
        let a = step(&s, &mut p, now);
        assert_eq!(starts(&a), [0]);
        assert_eq!(
            restart_delay(Some(secs(40)), secs(600), &s.backoff),
            (Duration::ZERO, secs(10))
        );
    }

    #[test]
    fn init_containers_run_in_order_then_the_apps() {
        let s = spec(RestartPolicy::Always);
        let mut p = pod(&[Kind::Init, Kind::Init, Kind::App, Kind::App]);
        let t = Instant::now();
        assert_eq!(starts(&step(&s, &mut p, t)), [0]);
        assert!(starts(&step(&s, &mut p, t)).is_empty(), "waits for init 0");
        end(&mut p, 0, 0, secs(1));
        assert_eq!(starts(&step(&s, &mut p, t)), [1]);
        end(&mut p, 1, 0, secs(1));
        let a = step(&s, &mut p, t);
        assert!(a.contains(&Action::Initialized));
        assert_eq!(starts(&a), [2, 3]);
    }

    #[test]
    fn a_failing_init_container_fails_the_pod_with_never_and_retries_otherwise() {
        let t = Instant::now();
        let s = spec(RestartPolicy::Never);
        let mut p = pod(&[Kind::Init, Kind::App]);
        step(&s, &mut p, t);
        end(&mut p, 0, 3, secs(1));
        let a = step(&s, &mut p, t);
        assert!(a.contains(&Action::InitFailed { ctr: 0 }));
        assert!(a.contains(&Action::Finished));
        assert!(starts(&a).is_empty());
        assert!(step(&s, &mut p, t + secs(100)).is_empty(), "never again");
        for policy in [RestartPolicy::OnFailure, RestartPolicy::Always] {
            let s = spec(policy);
            let mut p = pod(&[Kind::Init, Kind::App]);
            step(&s, &mut p, t);
            end(&mut p, 0, 3, secs(1));
            let a = step(&s, &mut p, t);
            assert_eq!(starts(&a), [0], "{policy:?}: first retry at once");
            assert!(!p.init_failed);
            end(&mut p, 0, 3, secs(1));
            assert!(starts(&step(&s, &mut p, t)).is_empty(), "backs off");
            assert_eq!(starts(&step(&s, &mut p, t + secs(10))), [0]);
            end(&mut p, 0, 0, secs(1));
            assert_eq!(starts(&step(&s, &mut p, t + secs(11))), [1]);
        }
    }

    #[test]
    fn sidecars_start_in_sequence_keep_running_restart_and_stop_after_the_apps() {
        let s = spec(RestartPolicy::Never);
        // sidecar 0, init 1, sidecar 2, app 3
        let mut p = pod(&[Kind::Sidecar, Kind::Init, Kind::Sidecar, Kind::App]);
        let t = Instant::now();
        assert_eq!(starts(&step(&s, &mut p, t)), [0, 1]);
        end(&mut p, 1, 0, secs(1));
        let a = step(&s, &mut p, t);
        assert_eq!(starts(&a), [2, 3]);
        assert!(a.contains(&Action::Initialized));
        // A sidecar that exits restarts, even under restartPolicy Never.
        end(&mut p, 0, 1, secs(1));
        assert_eq!(starts(&step(&s, &mut p, t + secs(1))), [0]);
        // The app finishes: sidecars get TERM, in reverse order...
        end(&mut p, 3, 0, secs(5));
        let t1 = t + secs(6);
        let a = step(&s, &mut p, t1);
        assert!(a.contains(&Action::Finished));
        assert_eq!(kills(&a), [(2, Signal::Term), (0, Signal::Term)]);
        // ...and KILL when they outlive the grace period.
        assert!(kills(&step(&s, &mut p, t1 + secs(29))).is_empty());
        assert_eq!(
            kills(&step(&s, &mut p, t1 + secs(30))),
            [(0, Signal::Kill), (2, Signal::Kill)]
        );
        // A stopping sidecar that ends is not restarted.
        end(&mut p, 0, 137, secs(40));
        let a = step(&s, &mut p, t1 + secs(31));
        assert!(starts(&a).is_empty());
        assert_eq!(
            a[0],
            Action::Exited {
                ctr: 0,
                outcome: ExitOutcome::Stays
            }
        );
    }

    #[test]
    fn a_failed_liveness_probe_kills_and_the_container_restarts_per_policy() {
        for (policy, restarted) in [
            (RestartPolicy::Always, true),
            (RestartPolicy::OnFailure, true),
            (RestartPolicy::Never, false),
        ] {
            let s = spec(policy);
            let mut p = pod(&[Kind::App]);
            let t = Instant::now();
            step(&s, &mut p, t);
            p.ctrs[0].probe_failed = Some(ProbeKind::Liveness);
            let a = step(&s, &mut p, t + secs(5));
            assert_eq!(
                a,
                [Action::Kill {
                    ctr: 0,
                    signal: Signal::Term,
                    why: KillReason::Probe(ProbeKind::Liveness),
                    kill_at: Some(t + secs(35)),
                }]
            );
            assert!(step(&s, &mut p, t + secs(34)).is_empty(), "TERM once");
            assert_eq!(kills(&step(&s, &mut p, t + secs(35))), [(0, Signal::Kill)]);
            end(&mut p, 0, 137, secs(35));
            let a = step(&s, &mut p, t + secs(36));
            assert_eq!(starts(&a), if restarted { vec![0] } else { vec![] });
        }
    }

    #[test]
    fn graceful_delete_runs_pre_stop_then_apps_then_sidecars_in_reverse_then_kill() {
        use TermAction::*;
        let t = Instant::now();
        let deadline = t + secs(30);
        let wait = secs(5);
        // init 0 (ended), sidecar 1, sidecar 2, app 3 (preStop), app 4
        let mut c = vec![
            TermCtr::new(Kind::Init, false, false),
            TermCtr::new(Kind::Sidecar, true, false),
            TermCtr::new(Kind::Sidecar, true, false),
            TermCtr::new(Kind::App, true, true),
            TermCtr::new(Kind::App, true, false),
        ];
        assert_eq!(plan_termination(&c, t, deadline, wait), [PreStop(vec![3])]);
        c[3].pre_stop = false;
        let sig = |ctr, signal| Signal { ctr, signal };
        assert_eq!(
            plan_termination(&c, t, deadline, wait),
            [
                sig(3, super::Signal::Term),
                sig(4, super::Signal::Term),
                WaitUntil(deadline)
            ]
        );
        c[3].term_sent = true;
        c[4].term_sent = true;
        c[3].alive = false;
        assert_eq!(
            plan_termination(&c, t + secs(1), deadline, wait),
            [WaitUntil(deadline)]
        );
        c[4].alive = false;
        // Apps gone: sidecars in reverse order; the ended init is left alone.
        assert_eq!(
            plan_termination(&c, t + secs(2), deadline, wait),
            [
                sig(2, super::Signal::Term),
                sig(1, super::Signal::Term),
                WaitUntil(deadline)
            ]
        );
        c[1].term_sent = true;
        c[2].term_sent = true;
        c[2].alive = false;
        // At the deadline what still runs gets KILL, then cleanup.
        assert_eq!(
            plan_termination(&c, deadline, deadline, wait),
            [sig(1, super::Signal::Kill), WaitUntil(deadline + wait)]
        );
        c[1].killed_at = Some(deadline);
        c[1].alive = false;
        assert_eq!(
            plan_termination(&c, deadline + secs(1), deadline, wait),
            [Cleanup]
        );
    }

    #[test]
    fn delete_of_an_ended_pod_signals_nothing() {
        let t = Instant::now();
        let c = vec![
            TermCtr::new(Kind::App, false, true),
            TermCtr::new(Kind::Sidecar, false, false),
        ];
        assert_eq!(
            plan_termination(&c, t, t + secs(30), secs(5)),
            [TermAction::Cleanup]
        );
    }

    #[test]
    fn kill_goes_out_at_the_deadline_even_with_pre_stop_pending() {
        let t = Instant::now();
        let c = vec![TermCtr::new(Kind::App, true, true)];
        assert_eq!(
            plan_termination(&c, t + secs(30), t + secs(30), secs(5)),
            [
                TermAction::Signal {
                    ctr: 0,
                    signal: Signal::Term
                },
                TermAction::Signal {
                    ctr: 0,
                    signal: Signal::Kill
                },
                TermAction::WaitUntil(t + secs(35))
            ]
        );
    }
}
