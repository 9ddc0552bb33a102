//! The OS work behind pod supervision, as a small trait: start a container,
//! signal it, read how it ended, ask whether it is still alive, remove it
//! from the runtime. [`Runc`] is the real implementation (the OCI runtime
//! CLI and the shims' exit files); tests pass a recording fake instead,
//! explicitly. The rest of a pod's OS work is [`super::host::PodHost`].

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use selur_runtime::cgroups::PodCgroup;
use selur_runtime::runc::{Runtime, RuntimeError};
use selur_runtime::sandbox::Sandbox;

use super::container::{self, ContainerError, Ctr, Exit};
use super::host::PodHost;
use crate::Agent;

/// A signal the supervisor sends to a container's init process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

impl Signal {
    /// The name the OCI runtime's `kill` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        }
    }
}

/// Errors of the container operations.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("signalling container {id}: {source}")]
    Kill {
        id: String,
        #[source]
        source: RuntimeError,
    },
    #[error("deleting container {id} from the runtime: {source}")]
    Delete {
        id: String,
        #[source]
        source: RuntimeError,
    },
    /// Shown to users as the container's waiting message.
    #[error("{source}")]
    Start {
        id: String,
        #[source]
        source: Box<ContainerError>,
    },
    #[error("container {id} cannot be started here: no pod context")]
    NoPodContext { id: String },
}

/// What supervision needs from the OCI runtime and the shims.
pub trait ContainerOps: Send + Sync {
    /// Prepare and start one run of `ctr` (blocking).
    fn start(&self, ctr: &Ctr, env: Vec<(String, String)>, run: u32) -> Result<(), OpsError>;
    /// Send `signal` to the container's init process.
    fn kill(&self, ctr: &Ctr, signal: Signal) -> Result<(), OpsError>;
    /// Remove the container from the runtime (killing what still runs);
    /// one the runtime does not know is fine.
    fn delete(&self, ctr: &Ctr) -> Result<(), OpsError>;
    /// The current run's exit, once its shim recorded it.
    fn exit(&self, ctr: &Ctr) -> Option<Exit>;
    /// Whether the container still runs (no exit recorded, the runtime knows it).
    fn alive(&self, ctr: &Ctr) -> bool;
    /// The pod cgroup's OOM kill count.
    fn oom_kills(&self) -> u64;
}

/// What starting a container needs from its pod.
pub struct PodCx {
    pub agent: Arc<Agent>,
    pub pod: Arc<Pod>,
    /// Where the pod's root file systems are mounted and its OOM kills counted.
    pub host: Arc<dyn PodHost>,
    pub sandbox: Sandbox,
    pub cgroup: PodCgroup,
    pub sources: crate::volumes::Sources,
}

/// The real operations: the agent's OCI runtime and the shims' exit files.
pub struct Runc {
    rt: Runtime,
    /// Set for a supervised pod; a teardown only signals.
    pod: Option<PodCx>,
}

impl Runc {
    /// Operations that can also start the pod's containers.
    pub fn for_pod(cx: PodCx) -> Self {
        Self {
            rt: super::runtime(&cx.agent),
            pod: Some(cx),
        }
    }

    /// Operations that only signal and observe (teardown).
    pub fn signal_only(agent: &Agent) -> Self {
        Self {
            rt: super::runtime(agent),
            pod: None,
        }
    }
}

impl ContainerOps for Runc {
    fn start(&self, ctr: &Ctr, env: Vec<(String, String)>, run: u32) -> Result<(), OpsError> {
        let Some(p) = &self.pod else {
            return Err(OpsError::NoPodContext { id: ctr.id.clone() });
        };
        let cx = container::StartCtx {
            agent: &p.agent,
            pod: &p.pod,
            host: p.host.as_ref(),
            sandbox: &p.sandbox,
            cgroup: &p.cgroup,
            sources: &p.sources,
            env,
            run,
        };
        container::start(&cx, ctr).map_err(|source| OpsError::Start {
            id: ctr.id.clone(),
            source: Box::new(source),
        })
    }

    fn kill(&self, ctr: &Ctr, signal: Signal) -> Result<(), OpsError> {
        self.rt
            .kill(&ctr.id, signal.as_str())
            .map_err(|source| OpsError::Kill {
                id: ctr.id.clone(),
                source,
            })
    }

    fn delete(&self, ctr: &Ctr) -> Result<(), OpsError> {
        if !self.rt.knows(&ctr.id) {
            return Ok(());
        }
        self.rt.delete(&ctr.id).map_err(|source| OpsError::Delete {
            id: ctr.id.clone(),
            source,
        })
    }

    fn exit(&self, ctr: &Ctr) -> Option<Exit> {
        ctr.read_exit()
    }

    fn alive(&self, ctr: &Ctr) -> bool {
        ctr.read_exit().is_none() && self.rt.state(&ctr.id).is_some()
    }

    fn oom_kills(&self) -> u64 {
        self.pod.as_ref().map_or(0, |p| p.host.oom_kills(&p.cgroup))
    }
}

#[cfg(test)]
pub mod fake {
    //! A recording fake: containers "run" from `start` until a test ends
    //! them with [`Fake::exit_with`]; `TERM`/`KILL` are recorded and, when
    //! asked, end the container.

    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    use super::*;

    /// One recorded call.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        Start(String),
        Kill(String, Signal),
        Delete(String),
    }

    #[derive(Default)]
    pub struct Fake {
        pub calls: Mutex<Vec<Call>>,
        exits: Mutex<HashMap<String, Exit>>,
        alive: Mutex<HashSet<String>>,
        /// Containers whose start fails.
        pub fail_start: Mutex<HashSet<String>>,
        /// Containers that die (code 143/137) when signalled.
        pub die_on: Mutex<HashMap<String, Signal>>,
        /// Called after each start (e.g. to deliver a stop signal).
        #[allow(clippy::type_complexity)]
        pub on_start: Mutex<Option<Box<dyn Fn(usize) + Send>>>,
    }

    impl Fake {
        pub fn calls(&self) -> Vec<Call> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }

        /// Let a container be found alive (as a re-adopted one would be).
        pub fn set_alive(&self, id: &str) {
            self.alive.lock().unwrap().insert(id.to_string());
        }

        /// End the container's run with `code`.
        pub fn exit_with(&self, id: &str, code: i64) {
            self.alive.lock().unwrap().remove(id);
            self.exits.lock().unwrap().insert(
                id.to_string(),
                Exit {
                    code,
                    ..Default::default()
                },
            );
        }
    }

    impl ContainerOps for Fake {
        fn start(&self, ctr: &Ctr, _env: Vec<(String, String)>, _run: u32) -> Result<(), OpsError> {
            let n = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(Call::Start(ctr.id.clone()));
                calls.iter().filter(|c| matches!(c, Call::Start(_))).count()
            };
            if let Some(f) = self.on_start.lock().unwrap().as_ref() {
                f(n);
            }
            if self.fail_start.lock().unwrap().contains(&ctr.id) {
                return Err(OpsError::Start {
                    id: ctr.id.clone(),
                    source: Box::new(ContainerError::NotStarted { id: ctr.id.clone() }),
                });
            }
            self.exits.lock().unwrap().remove(&ctr.id);
            self.alive.lock().unwrap().insert(ctr.id.clone());
            Ok(())
        }

        fn kill(&self, ctr: &Ctr, signal: Signal) -> Result<(), OpsError> {
            self.calls
                .lock()
                .unwrap()
                .push(Call::Kill(ctr.id.clone(), signal));
            let dies =
                self.die_on.lock().unwrap().get(&ctr.id) == Some(&signal) || signal == Signal::Kill;
            if dies && self.alive.lock().unwrap().contains(&ctr.id) {
                let code = if signal == Signal::Kill { 137 } else { 143 };
                self.exit_with(&ctr.id, code);
            }
            Ok(())
        }

        fn delete(&self, ctr: &Ctr) -> Result<(), OpsError> {
            self.calls
                .lock()
                .unwrap()
                .push(Call::Delete(ctr.id.clone()));
            self.alive.lock().unwrap().remove(&ctr.id);
            Ok(())
        }

        fn exit(&self, ctr: &Ctr) -> Option<Exit> {
            self.exits.lock().unwrap().get(&ctr.id).cloned()
        }

        fn alive(&self, ctr: &Ctr) -> bool {
            self.alive.lock().unwrap().contains(&ctr.id)
        }

        fn oom_kills(&self) -> u64 {
            0
        }
    }
}
