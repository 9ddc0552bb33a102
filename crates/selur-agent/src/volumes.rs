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

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use selur_runtime::{MountKind, VolumeMount};

/// Why a pod's volumes cannot be set up or mounted into a container.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{field}: {what} {path}: {source}")]
    Io {
        field: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{field}: hostPath {path} is not {expected} (type {ty})")]
    HostPathType {
        field: String,
        path: PathBuf,
        expected: &'static str,
        ty: String,
    },
    #[error("{field}: hostPath type {ty:?} is not supported")]
    UnsupportedHostPathType { field: String, ty: String },
    #[error("{field}: cannot mount tmpfs for emptyDir at {path}: {source}")]
    Tmpfs {
        field: String,
        path: PathBuf,
        #[source]
        source: rustix::io::Errno,
    },
    #[error("{field} ({name}): {kind} volumes are not supported by this agent yet; use emptyDir, hostPath, configMap or secret")]
    Unsupported {
        field: String,
        name: String,
        kind: String,
    },
    #[error("{field} ({name}): {source}")]
    Files {
        field: String,
        name: String,
        #[source]
        source: files::WriteError,
    },
    #[error("volumeMount {name:?} names no volume of the pod")]
    NoSuchVolume { name: String },
    #[error("volumeMount {name:?}: subPath {sub_path:?} must be relative without ..")]
    BadSubPath { name: String, sub_path: String },
    #[error("cannot mount the pod's /dev/shm at {path}: {source}")]
    Shm {
        path: PathBuf,
        #[source]
        source: rustix::io::Errno,
    },
}

fn io_err<'a>(
    field: &'a str,
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        field: field.to_string(),
        what,
        path: path.to_path_buf(),
        source,
    }
}

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

fn check_host_path(path: &Path, ty: &str, field: &str) -> Result<(), VolumeError> {
    let meta = std::fs::metadata(path);
    let bad = |expected: &'static str| {
        Err(VolumeError::HostPathType {
            field: field.to_string(),
            path: path.to_path_buf(),
            expected,
            ty: ty.to_string(),
        })
    };
    match ty {
        "" | "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(path).map_err(io_err(field, "cannot create", path))?;
                if ty == "DirectoryOrCreate" {
                    if let Err(e) =
                        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                    {
                        tracing::warn!(path = %path.display(), error = %e, "cannot set the mode of a created hostPath directory");
                    }
                }
            }
            Ok(())
        }
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io_err(
                        field,
                        "cannot create",
                        parent,
                    ))?;
                }
                std::fs::write(path, b"").map_err(io_err(field, "cannot create", path))?;
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
        other => Err(VolumeError::UnsupportedHostPathType {
            field: field.to_string(),
            ty: other.to_string(),
        }),
    }
}

/// Create every volume of `pod` on the host; returns their sources.
pub fn prepare(
    pod: &Pod,
    pod_dir: &Path,
    fetched: &files::Fetched,
) -> Result<Sources, VolumeError> {
    let spec = pod.spec.as_ref();
    let fs_group = spec
        .and_then(|s| s.security_context.as_ref())
        .and_then(|c| c.fs_group)
        .and_then(|g| u32::try_from(g).ok());
    let mut out = Sources::new();
    let volumes = spec.and_then(|s| s.volumes.as_deref()).unwrap_or_default();
    for (i, v) in volumes.iter().enumerate() {
        let name = v.name.clone();
        let field = format!("spec.volumes[{i}]");
        if let Some(ed) = &v.empty_dir {
            let dir = volumes_dir(pod_dir).join(&name);
            std::fs::create_dir_all(&dir).map_err(io_err(&field, "creating", &dir))?;
            if ed.medium.as_deref() == Some("Memory") && !selur_runtime::rootfs::is_mounted(&dir) {
                let size = ed
                    .size_limit
                    .as_ref()
                    .and_then(|q| selur_api::quantity::parse(&q.0).ok())
                    .map(|q| format!(",size={}", q.value()))
                    .unwrap_or_default();
                // Digits only: no NUL can be in it.
                let data = std::ffi::CString::new(format!("mode=1777{size}")).unwrap_or_default();
                rustix::mount::mount(
                    "tmpfs",
                    &dir,
                    "tmpfs",
                    rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
                    Some(data.as_c_str()),
                )
                .map_err(|source| VolumeError::Tmpfs {
                    field: field.clone(),
                    path: dir.clone(),
                    source,
                })?;
            }
            // Like Kubernetes, emptyDir is world-writable: containers run as any user.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))
                .map_err(io_err(&field, "setting the mode of", &dir))?;
            out.insert(
                name,
                Source {
                    path: dir,
                    read_only: false,
                },
            );
        } else if let Some(hp) = &v.host_path {
            let path = PathBuf::from(&hp.path);
            check_host_path(&path, hp.type_.as_deref().unwrap_or(""), &field)?;
            out.insert(
                name,
                Source {
                    path,
                    read_only: false,
                },
            );
        } else if let Some(f) = fetched.get(&name) {
            let path =
                files::write(&volumes_dir(pod_dir).join(&name), f, fs_group).map_err(|source| {
                    VolumeError::Files {
                        field: field.clone(),
                        name: name.clone(),
                        source,
                    }
                })?;
            out.insert(
                name,
                Source {
                    path,
                    read_only: true,
                },
            );
        } else {
            // The kind as the pod names it (`nfs`, `persistentVolumeClaim`, ...).
            let kind = serde_json::to_value(v)
                .ok()
                .and_then(|j| {
                    j.as_object()
                        .and_then(|m| m.keys().find(|k| *k != "name").cloned())
                })
                .unwrap_or_default();
            return Err(VolumeError::Unsupported { field, name, kind });
        }
    }
    Ok(out)
}

/// The mounts of one container, from its `volumeMounts`.
pub fn mounts_for(container: &Value, sources: &Sources) -> Result<Vec<VolumeMount>, VolumeError> {
    let mut out = Vec::new();
    for vm in container["volumeMounts"].as_array().into_iter().flatten() {
        let name = vm["name"].as_str().unwrap_or("");
        let source = sources.get(name).ok_or_else(|| VolumeError::NoSuchVolume {
            name: name.to_string(),
        })?;
        let read_only = source.read_only || vm["readOnly"].as_bool().unwrap_or(false);
        let mut source = source.path.clone();
        if let Some(sub) = vm["subPath"].as_str().filter(|s| !s.is_empty()) {
            if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
                return Err(VolumeError::BadSubPath {
                    name: name.to_string(),
                    sub_path: sub.to_string(),
                });
            }
            source = source.join(sub);
            if !source.exists() {
                let field = format!("volumeMount {name:?}");
                std::fs::create_dir_all(&source).map_err(io_err(&field, "creating", &source))?;
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
pub fn pod_shm(pod_dir: &Path) -> Result<PathBuf, VolumeError> {
    let dir = pod_dir.join("shm");
    std::fs::create_dir_all(&dir).map_err(io_err("/dev/shm", "creating", &dir))?;
    if !selur_runtime::rootfs::is_mounted(&dir) {
        use rustix::mount::MountFlags;
        rustix::mount::mount(
            "shm",
            &dir,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            Some(c"mode=1777,size=64m"),
        )
        .map_err(|source| VolumeError::Shm {
            path: dir.clone(),
            source,
        })?;
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
    let unmount = |path: &Path| {
        if selur_runtime::rootfs::is_mounted(path) {
            if let Err(e) = rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
                tracing::warn!(path = %path.display(), error = %e, "cannot unmount a pod volume");
            }
        }
    };
    unmount(&shm);
    if let Ok(rd) = std::fs::read_dir(volumes_dir(pod_dir)) {
        for e in rd.flatten() {
            unmount(&e.path());
        }
    }
}
