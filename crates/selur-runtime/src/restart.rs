//! Undoing a pod start that was interrupted (the agent SIGKILLed while it
//! set the pod up) before it was recorded, so that a fresh start finds a
//! clean slate instead of half a sandbox, mounted root file systems and
//! containers running in namespaces nobody tracks.

use std::path::{Path, PathBuf};

use crate::cgroups::PodCgroup;
use crate::rootfs::unmount_under;
use crate::runc::Runtime;

/// One thing [`discard_interrupted_start`] could not undo.
#[derive(Debug, thiserror::Error)]
pub enum DiscardError {
    #[error("removing the leftover container {id}: {source}")]
    Container {
        id: String,
        #[source]
        source: crate::runc::RuntimeError,
    },
    #[error("listing the runtime's containers: {0}")]
    List(#[source] crate::runc::RuntimeError),
    #[error("unmounting {path}: {source}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("removing the pod cgroup: {0}")]
    Cgroup(#[source] crate::cgroups::CgroupError),
    #[error("removing {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Remove everything an interrupted start of a pod left behind: containers
/// of `runtime` whose bundle lies under `pod_dir` (killed and deleted), every
/// mount under `pod_dir` (namespace files, root file systems, volumes; lazily,
/// deepest first), the pod's cgroup, and `pod_dir` itself. Safe to call when
/// nothing (or only part) is there. Every step is tried; each failure is
/// logged with what it concerns and the first is returned.
///
/// For the agent: call it (blocking) for a pod whose directory exists but
/// whose start was never recorded (no `state.json`), before setting the pod
/// up afresh.
pub fn discard_interrupted_start(
    pod_dir: &Path,
    runtime: &Runtime,
    cgroup: &PodCgroup,
) -> Result<(), DiscardError> {
    let mut errors = Vec::new();
    match runtime.containers_under(pod_dir) {
        Ok(ids) => {
            for id in ids {
                if let Err(source) = runtime.delete(&id) {
                    errors.push(DiscardError::Container { id, source });
                }
            }
        }
        Err(e) => errors.push(DiscardError::List(e)),
    }
    for (path, source) in unmount_under(pod_dir) {
        errors.push(DiscardError::Unmount { path, source });
    }
    if let Err(e) = cgroup.remove() {
        errors.push(DiscardError::Cgroup(e));
    }
    match std::fs::remove_dir_all(pod_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => errors.push(DiscardError::Remove {
            path: pod_dir.to_path_buf(),
            source,
        }),
    }
    for e in &errors {
        tracing::warn!(pod_dir = %pod_dir.display(), error = %e, "cannot undo part of an interrupted pod start");
    }
    errors.into_iter().next().map_or(Ok(()), Err)
}
