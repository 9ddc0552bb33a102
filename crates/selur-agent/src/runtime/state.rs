//! What the agent remembers about a pod on disk (`<pod dir>/state.json`),
//! so a restarted agent re-adopts its pods instead of starting them again:
//! when the pod started, which init containers finished, and per container
//! its restart count, start time, back-off and last termination. Whether a
//! container is still running is never stored: the shim's exit file and the
//! runtime's state say that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One container's remembered state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CtrState {
    /// Started at least once (its exit file or runtime state is meaningful).
    pub started: bool,
    pub restarts: u32,
    pub started_at: String,
    /// An init container that completed successfully.
    pub done: bool,
    /// The pod cgroup's OOM kill count when this run started.
    pub oom_base: u64,
    /// The current back-off delay in ms; `None` until the first restart.
    pub backoff_ms: Option<u64>,
    /// `lastState.terminated` of the previous run.
    pub last_terminated: Option<Value>,
    /// Why the last start failed (shown as the waiting reason's message).
    pub start_error: Option<(String, String)>,
    /// Told to stop for good (sidecars once the app containers finished).
    pub stopping: bool,
}

/// A pod's remembered state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodState {
    pub start_time: String,
    /// Every regular init container completed.
    pub initialized: bool,
    /// The pod reached a final phase (Succeeded or Failed).
    pub finished: bool,
    pub containers: BTreeMap<String, CtrState>,
    /// The pod's IPv6 address (none without a pod network).
    #[serde(default)]
    pub pod_ip: Option<String>,
    /// The node's address.
    #[serde(default)]
    pub host_ip: Option<String>,
}

fn path(pod_dir: &Path) -> PathBuf {
    pod_dir.join("state.json")
}

impl PodState {
    /// The remembered state, if the pod was started here before.
    pub fn load(pod_dir: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(path(pod_dir)).ok()?).ok()
    }

    /// Remember the state (atomically: a crash leaves the old or the new file).
    pub fn save(&self, pod_dir: &Path) -> std::io::Result<()> {
        let tmp = pod_dir.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).unwrap_or_default())?;
        std::fs::rename(&tmp, path(pod_dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        assert!(PodState::load(dir.path()).is_none());
        let mut s = PodState {
            start_time: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        s.containers.insert(
            "app".into(),
            CtrState {
                started: true,
                restarts: 3,
                backoff_ms: Some(20_000),
                ..Default::default()
            },
        );
        s.save(dir.path()).unwrap();
        assert_eq!(PodState::load(dir.path()), Some(s));
    }
}
