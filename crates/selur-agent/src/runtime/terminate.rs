//! Deleting a pod gracefully, driven by [`plan::plan_termination`]: preStop
//! hooks ([`pre_stop_hooks`]), then TERM to the app containers, then to
//! sidecars and init containers in reverse order, KILL to what still runs at
//! the grace deadline, and removal of everything the pod had on this node
//! ([`teardown`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use selur_runtime::cgroups::{CgroupError, PodCgroup};
use selur_runtime::rootfs::{Rootfs, RootfsError};
use selur_runtime::sandbox::{Sandbox, SandboxError};

use super::container::{self, Ctr};
use super::host::{self, PodHost};
use super::ops::{ContainerOps, OpsError, Runc, Signal};
use super::plan::{self, TermAction, TermCtr};
use super::{cgroup_of, handlers, pod_dir, runtime};
use crate::events::event;
use crate::Agent;

/// How long to wait for containers to end after KILL before removing them.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How often to look whether containers ended.
const POLL: Duration = Duration::from_millis(50);

/// Run the preStop hooks of the pod's running containers, all at once,
/// within the grace period (as the kubelet does before TERM).
pub(crate) async fn pre_stop_hooks(agent: &Arc<Agent>, pod: &Pod, grace: Duration) {
    let ctrs = container::all(agent, pod);
    let view: Vec<TermCtr> = ctrs
        .iter()
        .map(|c| {
            let pre_stop = !c.spec["lifecycle"]["preStop"].is_null();
            TermCtr::new(c.kind, c.read_exit().is_none(), pre_stop)
        })
        .collect();
    let now = Instant::now();
    let hooks = plan::plan_termination(&view, now, now + grace, KILL_WAIT)
        .into_iter()
        .find_map(|a| match a {
            TermAction::PreStop(list) => Some(list),
            _ => None,
        })
        .unwrap_or_default();
    let runs = hooks
        .into_iter()
        .filter_map(|i| ctrs.get(i))
        .map(|c| async move {
            let uid = super::uid_of(pod);
            if let Err(e) = handlers::run_hook(agent, uid, c, "preStop", grace).await {
                event(
                    agent,
                    pod,
                    &c.field_path(),
                    "Warning",
                    "FailedPreStopHook",
                    &format!("PreStopHook failed: {e}"),
                )
                .await;
            }
        });
    futures::future::join_all(runs).await;
}

/// Time as the termination loop reads and spends it (a fake in tests).
pub(crate) trait Clock {
    fn now(&self) -> Instant;
    fn sleep(&mut self, d: Duration);
}

/// The machine's clock.
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Stop `ctrs` (their preStop hooks already ran) as the termination plan
/// says, until they all ended or KILL went unheard for [`KILL_WAIT`]
/// (blocking).
pub(crate) fn stop_containers(
    ops: &dyn ContainerOps,
    ctrs: &[Ctr],
    grace: Duration,
    clock: &mut dyn Clock,
) {
    let deadline = clock.now() + grace;
    let mut view: Vec<TermCtr> = ctrs
        .iter()
        .map(|c| TermCtr::new(c.kind, true, false))
        .collect();
    loop {
        // A container seen ended stays ended: it is not asked again.
        for (v, c) in view.iter_mut().zip(ctrs) {
            if v.alive {
                v.alive = ops.alive(c);
            }
        }
        let now = clock.now();
        for action in plan::plan_termination(&view, now, deadline, KILL_WAIT) {
            match action {
                // Run before, by `pre_stop_hooks`.
                TermAction::PreStop(_) => {}
                TermAction::Signal { ctr, signal } => {
                    let c = &ctrs[ctr];
                    if let Err(e) = ops.kill(c, signal) {
                        tracing::warn!(container = %c.id, signal = signal.as_str(), error = %e,
                            "cannot signal container");
                    }
                    match signal {
                        Signal::Term => view[ctr].term_sent = true,
                        Signal::Kill => view[ctr].killed_at = Some(now),
                    }
                }
                TermAction::WaitUntil(t) => clock.sleep(t.saturating_duration_since(now).min(POLL)),
                TermAction::Cleanup => return,
            }
        }
    }
}

/// One step of a pod's teardown that failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TeardownError {
    #[error(transparent)]
    Container(#[from] OpsError),
    #[error("root file system of {id}: {source}")]
    Rootfs {
        id: String,
        #[source]
        source: RootfsError,
    },
    #[error("pod sandbox of {uid}: {source}")]
    Sandbox {
        uid: String,
        #[source]
        source: SandboxError,
    },
    #[error("pod cgroup of {uid}: {source}")]
    Cgroup {
        uid: String,
        #[source]
        source: CgroupError,
    },
    #[error("removing the {what} {path}: {source}")]
    Remove {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a pod has on this node, to remove.
pub(crate) struct PodRemains {
    pub uid: String,
    pub dir: PathBuf,
    pub ctrs: Vec<Ctr>,
    pub cgroup: PodCgroup,
}

impl PodRemains {
    pub(crate) fn of(agent: &Agent, pod: &Pod) -> Self {
        let uid = super::uid_of(pod).to_string();
        Self {
            dir: pod_dir(agent, &uid),
            ctrs: container::all(agent, pod),
            cgroup: cgroup_of(agent, pod),
            uid,
        }
    }
}

/// Stop the pod's containers (apps, then sidecars and init containers) and
/// remove all it had on this node (blocking).
pub(crate) fn teardown(agent: &Agent, pod: &Pod, grace: Duration) {
    let ops = Runc::signal_only(agent);
    let host = host::Os::new(runtime(agent)).with_network(agent.net.get().cloned());
    let remains = PodRemains::of(agent, pod);
    let addr = crate::network::ipam::recorded(&remains.dir);
    // Each failure was logged by `remove_pod`, with what it concerns.
    let failures = remove_pod(&ops, &host, &remains, grace, &mut SystemClock);
    // The address is free once the pod's directory (its record) is gone.
    if let (Some(ip), Some(net)) = (addr, agent.net.get()) {
        if failures.is_empty() || !remains.dir.exists() {
            net.ipam.release(ip);
        }
    }
}

/// Stop the containers of `pod` through `ops` (as [`stop_containers`]),
/// then remove, on `host`: each container's runtime state, root file system
/// and log link, the pod's log dir, its volume mounts, its sandbox, its
/// cgroup and last its directory. Every step is tried even when an earlier
/// one failed; each failure is logged with the pod's uid and returned. Safe
/// to repeat: what is gone already is no failure (blocking).
pub(crate) fn remove_pod(
    ops: &dyn ContainerOps,
    host: &dyn PodHost,
    pod: &PodRemains,
    grace: Duration,
    clock: &mut dyn Clock,
) -> Vec<TeardownError> {
    let uid = pod.uid.as_str();
    let mut failures = Vec::new();
    let mut failed = |e: TeardownError| {
        tracing::warn!(pod = uid, error = %e, "pod teardown step failed");
        failures.push(e);
    };
    stop_containers(ops, &pod.ctrs, grace, clock);
    // Containers go from the runtime before their root is unmounted: runc
    // may still hold it.
    for c in &pod.ctrs {
        if let Err(e) = ops.delete(c) {
            failed(e.into());
        }
        if let Err(source) = host.remove_rootfs(&Rootfs::at(&c.dir)) {
            failed(TeardownError::Rootfs {
                id: c.id.clone(),
                source,
            });
        }
        if let Err(e) = removed(std::fs::remove_file(&c.link), &c.link, "container log link") {
            failed(e);
        }
    }
    if let Some(logs) = pod.ctrs.first().and_then(|c| c.log_dir.parent()) {
        if let Err(e) = removed(std::fs::remove_dir_all(logs), logs, "pod log dir") {
            failed(e);
        }
    }
    host.unmount_volumes(&pod.dir);
    if let Err(source) = host.destroy_sandbox(&Sandbox::at(&pod.dir.join("ns"))) {
        failed(TeardownError::Sandbox {
            uid: uid.to_string(),
            source,
        });
    }
    // The cgroup after everything that may still hold tasks in it.
    if let Err(source) = host.remove_cgroup(&pod.cgroup) {
        failed(TeardownError::Cgroup {
            uid: uid.to_string(),
            source,
        });
    }
    if let Err(e) = removed(std::fs::remove_dir_all(&pod.dir), &pod.dir, "pod dir") {
        failed(e);
    }
    failures
}

/// The outcome of removing `path`; one already gone is fine.
fn removed(r: std::io::Result<()>, path: &Path, what: &'static str) -> Result<(), TeardownError> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(TeardownError::Remove {
            what,
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::container::Kind;
    use crate::runtime::ops::fake::{Call, Fake};

    struct FakeClock(Instant);

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            self.0
        }
        fn sleep(&mut self, d: Duration) {
            self.0 += d;
        }
    }

    fn ctr(name: &str, kind: Kind) -> Ctr {
        Ctr {
            name: name.into(),
            kind,
            id: name.into(),
            dir: PathBuf::new(),
            log_dir: PathBuf::new(),
            link: PathBuf::new(),
            image: String::new(),
            image_id: String::new(),
            spec: serde_json::Value::Null,
        }
    }

    #[test]
    fn apps_stop_first_then_sidecars_in_reverse_and_kill_at_the_deadline() {
        let ctrs = [
            ctr("init", Kind::Init),
            ctr("side1", Kind::Sidecar),
            ctr("side2", Kind::Sidecar),
            ctr("app", Kind::App),
        ];
        let ops = Fake::default();
        // The init container ended long ago; the app and side2 obey TERM;
        // side1 ignores it.
        for id in ["side1", "side2", "app"] {
            ops.set_alive(id);
        }
        for id in ["side2", "app"] {
            ops.die_on.lock().unwrap().insert(id.into(), Signal::Term);
        }
        let t0 = Instant::now();
        let mut clock = FakeClock(t0);
        stop_containers(&ops, &ctrs, Duration::from_secs(30), &mut clock);
        assert_eq!(
            ops.calls(),
            [
                Call::Kill("app".into(), Signal::Term),
                Call::Kill("side2".into(), Signal::Term),
                Call::Kill("side1".into(), Signal::Term),
                Call::Kill("side1".into(), Signal::Kill),
            ]
        );
        assert!(
            clock.0 >= t0 + Duration::from_secs(30),
            "KILL waited for the deadline"
        );
        assert!(clock.0 < t0 + Duration::from_secs(31));
    }

    /// A pod with a sidecar and an app container, both running and obeying
    /// TERM, on a fake node that holds its sandbox, cgroup, roots and
    /// volumes; its dirs (pod dir, log dir, log links) are real, in `tmp`.
    fn running_pod(tmp: &Path) -> (PodRemains, host::fake::Fake) {
        use host::fake::{Fake, Held};
        let dir = tmp.join("pods/u1");
        let ctrs: Vec<Ctr> = [("side", Kind::Sidecar), ("app", Kind::App)]
            .into_iter()
            .map(|(name, kind)| Ctr {
                dir: dir.join("c").join(name),
                log_dir: tmp.join("logs/default_p_u1").join(name),
                link: tmp.join(format!("links/{name}.log")),
                ..ctr(name, kind)
            })
            .collect();
        let pod = PodRemains {
            uid: "u1".into(),
            ctrs,
            cgroup: PodCgroup::new("selur-n1", "BestEffort", "u1"),
            dir,
        };
        let host = Fake::default();
        host.hold(Held::Sandbox(pod.dir.join("ns")));
        host.hold(Held::Cgroup(pod.cgroup.relative().into()));
        host.hold(Held::Volumes(pod.dir.clone()));
        for c in &pod.ctrs {
            std::fs::create_dir_all(&c.dir).unwrap();
            std::fs::create_dir_all(&c.log_dir).unwrap();
            std::fs::create_dir_all(c.link.parent().unwrap()).unwrap();
            std::fs::write(&c.link, "").unwrap();
            host.hold(Held::Rootfs(Rootfs::at(&c.dir).merged));
            host.ctrs.set_alive(&c.id);
            host.ctrs
                .die_on
                .lock()
                .unwrap()
                .insert(c.id.clone(), Signal::Term);
        }
        (pod, host)
    }

    fn tear_down(pod: &PodRemains, host: &host::fake::Fake) -> Vec<TeardownError> {
        let mut clock = FakeClock(Instant::now());
        remove_pod(host, host, pod, Duration::from_secs(30), &mut clock)
    }

    #[test]
    fn a_teardown_stops_containers_before_unmounting_their_roots_and_removes_the_cgroup_last() {
        use host::fake::Call;
        let tmp = tempfile::tempdir().unwrap();
        let (pod, host) = running_pod(tmp.path());
        let failures = tear_down(&pod, &host);
        assert!(failures.is_empty(), "{failures:?}");
        let root = |name: &str| Rootfs::at(&pod.dir.join("c").join(name)).merged;
        assert_eq!(
            host.calls(),
            [
                Call::Kill("app".into(), Signal::Term),
                Call::Kill("side".into(), Signal::Term),
                Call::DeleteContainer("side".into()),
                Call::RemoveRootfs(root("side")),
                Call::DeleteContainer("app".into()),
                Call::RemoveRootfs(root("app")),
                Call::UnmountVolumes(pod.dir.clone()),
                Call::DestroySandbox(pod.dir.join("ns")),
                Call::RemoveCgroup(pod.cgroup.relative().into()),
            ]
        );
        assert!(host.held().is_empty(), "{:?}", host.held());
        assert!(!pod.dir.exists());
        assert!(!tmp.path().join("logs/default_p_u1").exists());
        assert!(!pod.ctrs[0].link.exists() && !pod.ctrs[1].link.exists());
    }

    #[test]
    fn a_teardown_whose_sandbox_destroy_fails_still_removes_the_cgroup_and_pod_dir() {
        use host::fake::{Call, Held, Step};
        let tmp = tempfile::tempdir().unwrap();
        let (pod, host) = running_pod(tmp.path());
        host.fail(Step::DestroySandbox);
        let failures = tear_down(&pod, &host);
        assert!(
            matches!(failures.as_slice(), [TeardownError::Sandbox { uid, .. }] if uid == "u1"),
            "{failures:?}"
        );
        assert!(
            failures[0].to_string().starts_with("pod sandbox of u1: "),
            "{}",
            failures[0]
        );
        let calls = host.calls();
        let at = |call: &Call| calls.iter().position(|c| c == call);
        let destroy = at(&Call::DestroySandbox(pod.dir.join("ns")));
        let cgroup = at(&Call::RemoveCgroup(pod.cgroup.relative().into()));
        assert!(destroy.is_some() && cgroup > destroy, "{calls:?}");
        assert_eq!(host.held(), [Held::Sandbox(pod.dir.join("ns"))]);
        assert!(!pod.dir.exists());
        // Repeated once the sandbox can go, the teardown finishes the job.
        host.heal(Step::DestroySandbox);
        assert!(tear_down(&pod, &host).is_empty());
        assert!(host.held().is_empty());
    }

    #[test]
    fn a_teardown_whose_steps_all_fail_still_tries_each() {
        use host::fake::{Call, Step};
        let tmp = tempfile::tempdir().unwrap();
        let (pod, host) = running_pod(tmp.path());
        for step in [Step::RemoveRootfs, Step::DestroySandbox, Step::RemoveCgroup] {
            host.fail(step);
        }
        let failures = tear_down(&pod, &host);
        let shown: Vec<String> = failures.iter().map(|e| e.to_string()).collect();
        assert_eq!(failures.len(), 4, "{shown:?}");
        assert!(
            shown[0].starts_with("root file system of side: "),
            "{shown:?}"
        );
        assert!(
            shown[1].starts_with("root file system of app: "),
            "{shown:?}"
        );
        assert!(shown[3].starts_with("pod cgroup of u1: "), "{shown:?}");
        assert!(host
            .calls()
            .contains(&Call::UnmountVolumes(pod.dir.clone())));
        assert!(!pod.dir.exists());
    }

    #[test]
    fn a_second_teardown_finds_nothing_to_do_and_fails_nothing() {
        use host::fake::Call;
        let tmp = tempfile::tempdir().unwrap();
        let (pod, host) = running_pod(tmp.path());
        assert!(tear_down(&pod, &host).is_empty());
        host.clear_calls();
        let failures = tear_down(&pod, &host);
        assert!(failures.is_empty(), "{failures:?}");
        let calls = host.calls();
        assert!(
            !calls.iter().any(|c| matches!(c, Call::Kill(..))),
            "no container is signalled again: {calls:?}"
        );
        assert!(host.held().is_empty());
        assert!(!pod.dir.exists());
    }

    #[test]
    fn containers_that_already_ended_are_not_signalled() {
        let ctrs = [ctr("side", Kind::Sidecar), ctr("app", Kind::App)];
        let ops = Fake::default();
        let mut clock = FakeClock(Instant::now());
        stop_containers(&ops, &ctrs, Duration::from_secs(30), &mut clock);
        assert!(ops.calls().is_empty());
    }
}
