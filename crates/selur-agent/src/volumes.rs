//! Pod volumes on the node: `emptyDir` (a directory under the pod's dir, or
//! a tmpfs for `medium: Memory` honouring `sizeLimit`, shared by the pod's
//! containers) and `hostPath` (with Kubernetes' `type` checks; a missing path
//! with no type is created as a directory, as Kubernetes runtimes do).
//! ConfigMap and Secret volumes ([`files`]) are written from the API's
//! objects and mounted read-only. Other volume types are refused with a
//! clear message rather than silently skipped.

pub mod files;

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use selur_runtime::{MountKind, VolumeMount};

/// Where a volume comes from on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    /// Always mounted read-only (ConfigMap and Secret volumes).
    pub read_only: bool,
}

/// Host sources of a pod's volumes, by volume name.
pub type Sources = HashMap<String, Source>;

fn volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes")
}

fn check_host_path(path: &Path, ty: &str, field: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path);
    let bad = |what: &str| {
        Err(format!(
            "{field}: hostPath {} is not {what} (type {ty})",
            path.display()
        ))
    };
    match ty {
        "" | "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(path)
                    .map_err(|e| format!("{field}: cannot create {}: {e}", path.display()))?;
                if ty == "DirectoryOrCreate" {
                    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
                }
            }
            Ok(())
        }
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("{field}: {e}"))?;
                }
                std::fs::write(path, b"")
                    .map_err(|e| format!("{field}: cannot create {}: {e}", path.display()))?;
            }
            Ok(())
        }
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => bad("an existing directory"),
        },
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => bad("an existing file"),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => bad("a socket"),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => bad("a character device"),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => bad("a block device"),
        },
        other => Err(format!("{field}: hostPath type {other:?} is not supported")),
    }
}

/// Create every volume of `pod` on the host; returns their sources.
pub fn prepare(pod: &Value, pod_dir: &Path, fetched: &files::Fetched) -> Result<Sources, String> {
    let fs_group = pod["spec"]["securityContext"]["fsGroup"]
        .as_u64()
        .and_then(|g| u32::try_from(g).ok());
    let mut out = Sources::new();
    for (i, v) in pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = v["name"].as_str().unwrap_or("").to_string();
        let field = format!("spec.volumes[{i}]");
        if let Some(ed) = v.get("emptyDir") {
            let dir = volumes_dir(pod_dir).join(&name);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{field}: {e}"))?;
            if ed["medium"] == "Memory" && !selur_runtime::rootfs::is_mounted(&dir) {
                let size = ed["sizeLimit"]
                    .as_str()
                    .and_then(|q| selur_api::quantity::parse(q).ok())
                    .map(|q| format!(",size={}", q.value()))
                    .unwrap_or_default();
                let data = std::ffi::CString::new(format!("mode=1777{size}"))
                    .map_err(|e| e.to_string())?;
                rustix::mount::mount(
                    "tmpfs",
                    &dir,
                    "tmpfs",
                    rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
                    Some(data.as_c_str()),
                )
                .map_err(|e| format!("{field}: cannot mount tmpfs for emptyDir: {e}"))?;
            }
            // Like Kubernetes, emptyDir is world-writable: containers run as any user.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))
                .map_err(|e| format!("{field}: {e}"))?;
            out.insert(
                name,
                Source {
                    path: dir,
                    read_only: false,
                },
            );
        } else if let Some(hp) = v.get("hostPath") {
            let path = PathBuf::from(hp["path"].as_str().unwrap_or(""));
            check_host_path(&path, hp["type"].as_str().unwrap_or(""), &field)?;
            out.insert(
                name,
                Source {
                    path,
                    read_only: false,
                },
            );
        } else if let Some(f) = fetched.get(&name) {
            let path = files::write(&volumes_dir(pod_dir).join(&name), f, fs_group)
                .map_err(|e| format!("{field} ({name}): {e}"))?;
            out.insert(
                name,
                Source {
                    path,
                    read_only: true,
                },
            );
        } else {
            let kind = v
                .as_object()
                .and_then(|m| m.keys().find(|k| *k != "name").cloned())
                .unwrap_or_default();
            return Err(format!("{field} ({name}): {kind} volumes are not supported by this agent yet; use emptyDir, hostPath, configMap or secret"));
        }
    }
    Ok(out)
}

/// The mounts of one container, from its `volumeMounts`.
pub fn mounts_for(container: &Value, sources: &Sources) -> Result<Vec<VolumeMount>, String> {
    let mut out = Vec::new();
    for vm in container["volumeMounts"].as_array().into_iter().flatten() {
        let name = vm["name"].as_str().unwrap_or("");
        let source = sources
            .get(name)
            .ok_or_else(|| format!("volumeMount {name:?} names no volume of the pod"))?;
        let read_only = source.read_only || vm["readOnly"].as_bool().unwrap_or(false);
        let mut source = source.path.clone();
        if let Some(sub) = vm["subPath"].as_str().filter(|s| !s.is_empty()) {
            if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
                return Err(format!(
                    "volumeMount {name:?}: subPath {sub:?} must be relative without .."
                ));
            }
            source = source.join(sub);
            if !source.exists() {
                std::fs::create_dir_all(&source).map_err(|e| e.to_string())?;
            }
        }
        out.push(VolumeMount {
            destination: PathBuf::from(vm["mountPath"].as_str().unwrap_or("")),
            source,
            read_only,
            kind: MountKind::Bind,
        });
    }
    Ok(out)
}

/// The pod's shared `/dev/shm`: one tmpfs per pod (64 MiB, as Docker's
/// default), bind-mounted into each container, so the containers of a pod
/// share POSIX shared memory as they share the IPC namespace.
pub fn pod_shm(pod_dir: &Path) -> Result<PathBuf, String> {
    let dir = pod_dir.join("shm");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !selur_runtime::rootfs::is_mounted(&dir) {
        use rustix::mount::MountFlags;
        rustix::mount::mount(
            "shm",
            &dir,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            Some(c"mode=1777,size=64m"),
        )
        .map_err(|e| format!("cannot mount the pod's /dev/shm: {e}"))?;
    }
    Ok(dir)
}

/// The `/dev/shm` mount of a container, unless it mounts a volume there.
pub fn shm_mount(container: &Value, pod_dir: &Path) -> Option<VolumeMount> {
    let own = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|m| m["mountPath"].as_str().map(|p| p.trim_end_matches('/')) == Some("/dev/shm"));
    let dir = pod_dir.join("shm");
    (!own && selur_runtime::rootfs::is_mounted(&dir)).then(|| VolumeMount {
        destination: PathBuf::from("/dev/shm"),
        source: dir,
        read_only: false,
        kind: MountKind::Bind,
    })
}

/// Unmount memory-backed emptyDirs, Secret volumes and the pod's `/dev/shm`
/// (the directories go with the pod dir).
pub fn cleanup(pod_dir: &Path) {
    let shm = pod_dir.join("shm");
    if selur_runtime::rootfs::is_mounted(&shm) {
        let _ = rustix::mount::unmount(&shm, rustix::mount::UnmountFlags::DETACH);
    }
    if let Ok(rd) = std::fs::read_dir(volumes_dir(pod_dir)) {
        for e in rd.flatten() {
            if selur_runtime::rootfs::is_mounted(&e.path()) {
                let _ = rustix::mount::unmount(e.path(), rustix::mount::UnmountFlags::DETACH);
            }
        }
    }
}
