//! The OS work of a pod on this node besides running its containers, as
//! small traits, one per external system: the pod's namespaces
//! ([`SandboxOps`]), its cgroup ([`CgroupOps`]), its containers' overlay
//! roots ([`RootfsOps`]) and its volume mounts ([`VolumeOps`]), together
//! [`PodHost`]. [`Os`] is the real implementation (selur-runtime and this
//! agent's volumes); tests pass the recording `fake::Fake` instead,
//! explicitly, as supervision's [`super::ops::ContainerOps`] does.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use selur_runtime::cgroups::{CgroupError, PodCgroup, PodLimits};
use selur_runtime::restart::DiscardError;
use selur_runtime::rootfs::{Rootfs, RootfsError};
use selur_runtime::runc::Runtime;
use selur_runtime::sandbox::{PodInterface, Sandbox, SandboxError};

use crate::volumes::files::Fetched;
use crate::volumes::{Sources, VolumeError};

/// The pod's network, IPC and UTS namespaces.
pub trait SandboxOps: Send + Sync {
    /// Start creating the sandbox under `dir` and return at once (the
    /// caller prepares other things meanwhile); the result's
    /// [`PendingSandbox::finish`] waits for it.
    fn begin_sandbox(
        &self,
        dir: &Path,
        iface: Option<&PodInterface>,
    ) -> Result<Box<dyn PendingSandbox>, SandboxError>;
    /// Remove the sandbox's namespaces. Safe to repeat.
    fn destroy_sandbox(&self, sandbox: &Sandbox) -> Result<(), SandboxError>;
}

/// A sandbox being created.
pub trait PendingSandbox: Send {
    /// Wait for the namespaces; on failure they are removed again.
    fn finish(self: Box<Self>) -> Result<Sandbox, SandboxError>;
}

/// The pod's cgroup.
pub trait CgroupOps: Send + Sync {
    /// Create the cgroup with `limits`.
    fn create_cgroup(&self, cgroup: &PodCgroup, limits: &PodLimits) -> Result<(), CgroupError>;
    /// OOM kills counted in the cgroup so far (0 when unknown).
    fn oom_kills(&self, cgroup: &PodCgroup) -> u64;
    /// Remove the cgroup (its containers gone first). Safe to repeat.
    fn remove_cgroup(&self, cgroup: &PodCgroup) -> Result<(), CgroupError>;
}

/// Containers' overlay root file systems.
pub trait RootfsOps: Send + Sync {
    /// Mount an overlay of `layers` (bottom to top), replacing whatever an
    /// earlier attempt left mounted there.
    fn mount_rootfs(&self, rootfs: &Rootfs, layers: &[PathBuf]) -> Result<(), RootfsError>;
    /// Unmount and remove the root file system. Safe to repeat.
    fn remove_rootfs(&self, rootfs: &Rootfs) -> Result<(), RootfsError>;
}

/// The pod's volumes and its shared `/dev/shm`.
pub trait VolumeOps: Send + Sync {
    /// Mount the pod's `/dev/shm` and create its volumes under `pod_dir`
    /// (what is there already stays); returns the volumes' sources.
    fn prepare_volumes(
        &self,
        pod: &Pod,
        pod_dir: &Path,
        fetched: &Fetched,
    ) -> Result<Sources, VolumeError>;
    /// Unmount the pod's memory-backed volumes and `/dev/shm` (each failure
    /// is logged with its path; the directories go with the pod dir).
    fn unmount_volumes(&self, pod_dir: &Path);
}

/// Everything a pod needs from this node besides running its containers.
pub trait PodHost: SandboxOps + CgroupOps + RootfsOps + VolumeOps {
    /// Remove what a start of the pod that was interrupted before it was
    /// recorded left under `pod_dir` (containers, mounts, the cgroup, the
    /// directory). Every step is tried; each failure is logged.
    fn discard_interrupted_start(
        &self,
        pod_dir: &Path,
        cgroup: &PodCgroup,
    ) -> Result<(), DiscardError>;
}

/// The real host: selur-runtime's sandboxes, cgroups and overlays, this
/// agent's volumes, and the OCI runtime for leftovers of interrupted starts.
pub struct Os {
    rt: Runtime,
    /// The pod network, whose CNI plugins (in CNI mode) are told before a
    /// sandbox goes.
    net: Option<std::sync::Arc<crate::network::NodeNetwork>>,
}

impl Os {
    /// The host, with `rt` the OCI runtime this agent drives.
    pub fn new(rt: Runtime) -> Self {
        Self { rt, net: None }
    }

    /// The same host with the node's pod network.
    pub fn with_network(
        mut self,
        net: Option<std::sync::Arc<crate::network::NodeNetwork>>,
    ) -> Self {
        self.net = net;
        self
    }
}

impl PendingSandbox for selur_runtime::sandbox::Pending {
    fn finish(self: Box<Self>) -> Result<Sandbox, SandboxError> {
        selur_runtime::sandbox::Pending::finish(*self)
    }
}

impl SandboxOps for Os {
    fn begin_sandbox(
        &self,
        dir: &Path,
        iface: Option<&PodInterface>,
    ) -> Result<Box<dyn PendingSandbox>, SandboxError> {
        Ok(Box::new(Sandbox::begin(dir, iface)?))
    }

    fn destroy_sandbox(&self, sandbox: &Sandbox) -> Result<(), SandboxError> {
        // CNI DEL while the namespace still exists (the kubelet's order:
        // containers stopped, network torn down, sandbox removed). A
        // failure is logged: the namespace goes anyway, and the plugins'
        // host-side leftovers (a lease) are released by a later DEL.
        if let Some(net) = self.net.as_ref().filter(|n| n.cni.is_some()) {
            let pod_dir = sandbox.dir().parent().map(Path::to_path_buf);
            let uid = pod_dir
                .as_ref()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned());
            if let (Some(dir), Some(uid)) = (pod_dir, uid) {
                if let Err(e) = net.cni_del(&uid, &dir, &sandbox.net_path()) {
                    tracing::warn!(uid, error = %e, "CNI DEL failed");
                }
            }
        }
        sandbox.destroy()
    }
}

impl CgroupOps for Os {
    fn create_cgroup(&self, cgroup: &PodCgroup, limits: &PodLimits) -> Result<(), CgroupError> {
        cgroup.create(limits)
    }

    fn oom_kills(&self, cgroup: &PodCgroup) -> u64 {
        cgroup.oom_kills()
    }

    fn remove_cgroup(&self, cgroup: &PodCgroup) -> Result<(), CgroupError> {
        cgroup.remove()
    }
}

impl RootfsOps for Os {
    fn mount_rootfs(&self, rootfs: &Rootfs, layers: &[PathBuf]) -> Result<(), RootfsError> {
        rootfs.mount(layers)
    }

    fn remove_rootfs(&self, rootfs: &Rootfs) -> Result<(), RootfsError> {
        rootfs.remove()
    }
}

impl VolumeOps for Os {
    fn prepare_volumes(
        &self,
        pod: &Pod,
        pod_dir: &Path,
        fetched: &Fetched,
    ) -> Result<Sources, VolumeError> {
        crate::volumes::pod_shm(pod_dir)?;
        crate::volumes::prepare(pod, pod_dir, fetched)
    }

    fn unmount_volumes(&self, pod_dir: &Path) {
        crate::volumes::cleanup(pod_dir);
    }
}

impl PodHost for Os {
    fn discard_interrupted_start(
        &self,
        pod_dir: &Path,
        cgroup: &PodCgroup,
    ) -> Result<(), DiscardError> {
        selur_runtime::restart::discard_interrupted_start(pod_dir, &self.rt, cgroup)
    }
}

#[cfg(test)]
pub mod fake {
    //! A recording fake of the whole node: the host ([`PodHost`]) and,
    //! through the wrapped [`ops::fake::Fake`](super::super::ops::fake::Fake),
    //! the containers ([`ContainerOps`]), so one log holds every call in
    //! order. It remembers what is set up (sandboxes, cgroups, mounted
    //! roots, volumes), so removing what is not there is a harmless no-op
    //! as on a real node, and can be told to fail a given [`Step`].

    use std::collections::{BTreeSet, HashSet};
    use std::sync::{Arc, Mutex, MutexGuard};

    use super::*;
    use crate::runtime::container::{Ctr, Exit};
    use crate::runtime::ops::{self, ContainerOps, OpsError, Signal};

    /// One recorded call, with the path (or container id) it concerns.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        BeginSandbox(PathBuf),
        FinishSandbox(PathBuf),
        DestroySandbox(PathBuf),
        /// The cgroup's path relative to the hierarchy roots.
        CreateCgroup(PathBuf),
        RemoveCgroup(PathBuf),
        /// The root file system's `merged` dir.
        MountRootfs(PathBuf),
        RemoveRootfs(PathBuf),
        /// The pod dir.
        PrepareVolumes(PathBuf),
        UnmountVolumes(PathBuf),
        DiscardInterruptedStart(PathBuf),
        StartContainer(String),
        Kill(String, Signal),
        DeleteContainer(String),
    }

    /// A step a test can make fail.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Step {
        BeginSandbox,
        FinishSandbox,
        DestroySandbox,
        CreateCgroup,
        RemoveCgroup,
        MountRootfs,
        RemoveRootfs,
        PrepareVolumes,
        DiscardInterruptedStart,
    }

    /// Something set up on the fake node.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Held {
        Sandbox(PathBuf),
        Cgroup(PathBuf),
        Rootfs(PathBuf),
        Volumes(PathBuf),
    }

    #[derive(Default)]
    struct State {
        calls: Vec<Call>,
        failing: HashSet<Step>,
        held: BTreeSet<Held>,
    }

    #[derive(Default)]
    pub struct Fake {
        /// The containers' behaviour (alive, dying on signals, exits).
        pub ctrs: ops::fake::Fake,
        state: Arc<Mutex<State>>,
    }

    fn injected(step: Step) -> std::io::Error {
        std::io::Error::other(format!("{step:?} fails (injected)"))
    }

    impl Fake {
        /// Every call so far, in order.
        pub fn calls(&self) -> Vec<Call> {
            self.state().calls.clone()
        }

        /// What is set up now.
        pub fn held(&self) -> Vec<Held> {
            self.state().held.iter().cloned().collect()
        }

        /// Make `step` fail from now on.
        pub fn fail(&self, step: Step) {
            self.state().failing.insert(step);
        }

        /// Let `step` succeed again.
        pub fn heal(&self, step: Step) {
            self.state().failing.remove(&step);
        }

        /// Mark `held` as set up (as an earlier start would have left it).
        pub fn hold(&self, held: Held) {
            self.state().held.insert(held);
        }

        /// Forget the calls so far.
        pub fn clear_calls(&self) {
            self.state().calls.clear();
        }

        fn state(&self) -> MutexGuard<'_, State> {
            lock(&self.state)
        }

        /// Record `call`; `Err` when `step` is told to fail.
        fn record(&self, call: Call, step: Step) -> Result<(), std::io::Error> {
            record(&self.state, call, step)
        }

        /// Record `call`, which cannot be made to fail.
        fn note(&self, call: Call) {
            self.state().calls.push(call);
        }
    }

    fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
        state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(state: &Mutex<State>, call: Call, step: Step) -> Result<(), std::io::Error> {
        let mut s = lock(state);
        s.calls.push(call);
        if s.failing.contains(&step) {
            return Err(injected(step));
        }
        Ok(())
    }

    fn sandbox_err(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError {
        let path = path.to_path_buf();
        move |source| SandboxError::Io {
            what: "fake",
            path,
            source,
        }
    }

    fn cgroup_err(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
        let path = path.to_path_buf();
        move |source| CgroupError::Io {
            what: "fake",
            path,
            source,
        }
    }

    fn rootfs_err(path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError {
        let path = path.to_path_buf();
        move |source| RootfsError::Io {
            what: "fake",
            path,
            source,
        }
    }

    /// The dir a [`Sandbox`] lives in (its namespace files' parent).
    fn sandbox_dir(sandbox: &Sandbox) -> PathBuf {
        sandbox
            .net_path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    struct Pending {
        dir: PathBuf,
        state: Arc<Mutex<State>>,
    }

    impl PendingSandbox for Pending {
        fn finish(self: Box<Self>) -> Result<Sandbox, SandboxError> {
            let r = record(
                &self.state,
                Call::FinishSandbox(self.dir.clone()),
                Step::FinishSandbox,
            );
            if r.is_err() {
                // As the real one: a sandbox that fails is removed again.
                lock(&self.state)
                    .held
                    .remove(&Held::Sandbox(self.dir.clone()));
            }
            r.map_err(sandbox_err(&self.dir))?;
            Ok(Sandbox::at(&self.dir))
        }
    }

    impl SandboxOps for Fake {
        fn begin_sandbox(
            &self,
            dir: &Path,
            _iface: Option<&PodInterface>,
        ) -> Result<Box<dyn PendingSandbox>, SandboxError> {
            self.record(Call::BeginSandbox(dir.into()), Step::BeginSandbox)
                .map_err(sandbox_err(dir))?;
            self.state().held.insert(Held::Sandbox(dir.into()));
            Ok(Box::new(Pending {
                dir: dir.into(),
                state: self.state.clone(),
            }))
        }

        fn destroy_sandbox(&self, sandbox: &Sandbox) -> Result<(), SandboxError> {
            let dir = sandbox_dir(sandbox);
            self.record(Call::DestroySandbox(dir.clone()), Step::DestroySandbox)
                .map_err(sandbox_err(&dir))?;
            self.state().held.remove(&Held::Sandbox(dir));
            Ok(())
        }
    }

    impl CgroupOps for Fake {
        fn create_cgroup(&self, cgroup: &PodCgroup, _: &PodLimits) -> Result<(), CgroupError> {
            let rel = cgroup.relative().to_path_buf();
            self.record(Call::CreateCgroup(rel.clone()), Step::CreateCgroup)
                .map_err(cgroup_err(&rel))?;
            self.state().held.insert(Held::Cgroup(rel));
            Ok(())
        }

        fn oom_kills(&self, _: &PodCgroup) -> u64 {
            0
        }

        fn remove_cgroup(&self, cgroup: &PodCgroup) -> Result<(), CgroupError> {
            let rel = cgroup.relative().to_path_buf();
            self.record(Call::RemoveCgroup(rel.clone()), Step::RemoveCgroup)
                .map_err(cgroup_err(&rel))?;
            self.state().held.remove(&Held::Cgroup(rel));
            Ok(())
        }
    }

    impl RootfsOps for Fake {
        fn mount_rootfs(&self, rootfs: &Rootfs, _: &[PathBuf]) -> Result<(), RootfsError> {
            let path = rootfs.merged.clone();
            self.record(Call::MountRootfs(path.clone()), Step::MountRootfs)
                .map_err(rootfs_err(&path))?;
            self.state().held.insert(Held::Rootfs(path));
            Ok(())
        }

        fn remove_rootfs(&self, rootfs: &Rootfs) -> Result<(), RootfsError> {
            let path = rootfs.merged.clone();
            self.record(Call::RemoveRootfs(path.clone()), Step::RemoveRootfs)
                .map_err(rootfs_err(&path))?;
            self.state().held.remove(&Held::Rootfs(path));
            Ok(())
        }
    }

    impl VolumeOps for Fake {
        fn prepare_volumes(
            &self,
            _: &Pod,
            pod_dir: &Path,
            _: &Fetched,
        ) -> Result<Sources, VolumeError> {
            self.record(Call::PrepareVolumes(pod_dir.into()), Step::PrepareVolumes)
                .map_err(|source| VolumeError::Io {
                    field: "fake".into(),
                    what: "preparing",
                    path: pod_dir.into(),
                    source,
                })?;
            self.state().held.insert(Held::Volumes(pod_dir.into()));
            Ok(Sources::default())
        }

        fn unmount_volumes(&self, pod_dir: &Path) {
            // Failures are only logged by the real one: nothing to fail.
            self.note(Call::UnmountVolumes(pod_dir.into()));
            self.state().held.remove(&Held::Volumes(pod_dir.into()));
        }
    }

    impl PodHost for Fake {
        fn discard_interrupted_start(
            &self,
            pod_dir: &Path,
            _: &PodCgroup,
        ) -> Result<(), DiscardError> {
            self.record(
                Call::DiscardInterruptedStart(pod_dir.into()),
                Step::DiscardInterruptedStart,
            )
            .map_err(|source| DiscardError::Remove {
                path: pod_dir.into(),
                source,
            })?;
            self.state().held.retain(|h| match h {
                Held::Sandbox(p) | Held::Rootfs(p) | Held::Volumes(p) => !p.starts_with(pod_dir),
                Held::Cgroup(_) => false,
            });
            Ok(())
        }
    }

    /// The containers, recorded in the same log.
    impl ContainerOps for Fake {
        fn start(&self, ctr: &Ctr, env: Vec<(String, String)>, run: u32) -> Result<(), OpsError> {
            self.note(Call::StartContainer(ctr.id.clone()));
            self.ctrs.start(ctr, env, run)
        }

        fn kill(&self, ctr: &Ctr, signal: Signal) -> Result<(), OpsError> {
            self.note(Call::Kill(ctr.id.clone(), signal));
            self.ctrs.kill(ctr, signal)
        }

        fn delete(&self, ctr: &Ctr) -> Result<(), OpsError> {
            self.note(Call::DeleteContainer(ctr.id.clone()));
            self.ctrs.delete(ctr)
        }

        fn exit(&self, ctr: &Ctr) -> Option<Exit> {
            self.ctrs.exit(ctr)
        }

        fn alive(&self, ctr: &Ctr) -> bool {
            self.ctrs.alive(ctr)
        }

        fn oom_kills(&self) -> u64 {
            self.ctrs.oom_kills()
        }
    }
}
