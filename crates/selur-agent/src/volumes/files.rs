//! ConfigMap and Secret volumes: the objects are read from the API before
//! the pod starts (a missing one that is not `optional` holds the pod back
//! with a FailedMount event, as the kubelet does, and is retried), then
//! written as files, one per key or per `items` entry, with `defaultMode` or
//! the item's `mode`. Secret volumes live on a tmpfs so their contents never
//! reach the disk. Both are mounted read-only into containers.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, KeyToPath, Pod, SecretVolumeSource};
use serde_json::Value;

use crate::env::ObjectError;
use crate::Agent;

/// Why a ConfigMap or Secret volume cannot be set up yet (shown to users as
/// a FailedMount event, worded as the kubelet words it).
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {kind} \"{name}\" not found")]
    NotFound {
        volume: String,
        kind: &'static str,
        name: String,
    },
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {kind} \"{name}\" has no key \"{key}\" (items[].key must name one of its keys)")]
    NoKey {
        volume: String,
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {source}")]
    Object {
        volume: String,
        #[source]
        source: ObjectError,
    },
}

/// Writing a volume's files failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot mount tmpfs for secret volume at {path}: {source}")]
    Tmpfs {
        path: PathBuf,
        #[source]
        source: rustix::io::Errno,
    },
    #[error("items path {path:?} must be relative without ..")]
    BadPath { path: String },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WriteError {
    let path = path.to_path_buf();
    move |source| WriteError::Io { what, path, source }
}

/// A ConfigMap or Secret volume source.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    ConfigMap(&'a ConfigMapVolumeSource),
    Secret(&'a SecretVolumeSource),
}

impl Source<'_> {
    fn secret(&self) -> bool {
        matches!(self, Source::Secret(_))
    }

    /// The name of the object it reads.
    fn object(&self) -> &str {
        match self {
            Source::ConfigMap(s) => &s.name,
            Source::Secret(s) => s.secret_name.as_deref().unwrap_or(""),
        }
    }

    fn optional(&self) -> bool {
        match self {
            Source::ConfigMap(s) => s.optional,
            Source::Secret(s) => s.optional,
        }
        .unwrap_or(false)
    }

    fn default_mode(&self) -> Option<i32> {
        match self {
            Source::ConfigMap(s) => s.default_mode,
            Source::Secret(s) => s.default_mode,
        }
    }

    fn items(&self) -> Option<&[KeyToPath]> {
        match self {
            Source::ConfigMap(s) => s.items.as_deref(),
            Source::Secret(s) => s.items.as_deref(),
        }
    }
}

/// One file of a volume: path relative to the volume, contents, mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// The files of one ConfigMap or Secret volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub secret: bool,
    pub files: Vec<File>,
}

/// Files of every ConfigMap/Secret volume of a pod, by volume name.
pub type Fetched = HashMap<String, Files>;

/// Keys and bytes of a ConfigMap (`data`, `binaryData`) or Secret (`data`, base64).
fn entries(obj: &Value, secret: bool) -> HashMap<String, Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = HashMap::new();
    for (k, v) in obj["data"].as_object().into_iter().flatten() {
        let s = v.as_str().unwrap_or("");
        let bytes = if secret {
            b64.decode(s).unwrap_or_default()
        } else {
            s.as_bytes().to_vec()
        };
        out.insert(k.clone(), bytes);
    }
    if !secret {
        for (k, v) in obj["binaryData"].as_object().into_iter().flatten() {
            out.insert(
                k.clone(),
                b64.decode(v.as_str().unwrap_or("")).unwrap_or_default(),
            );
        }
    }
    out
}

fn mode_of(mode: Option<i32>, default: u32) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok()).unwrap_or(default) & 0o777
}

/// The files a volume source yields from its object (`None` when the object
/// is missing). Errors name the volume and say what is missing.
pub fn files_of(
    vol: &str,
    src: Source<'_>,
    obj: Option<&Value>,
) -> Result<Option<Files>, MountError> {
    let secret = src.secret();
    let kind = if secret { "secret" } else { "configmap" };
    let name = src.object();
    let optional = src.optional();
    let Some(obj) = obj else {
        if optional {
            return Ok(Some(Files {
                secret,
                files: Vec::new(),
            }));
        }
        return Err(MountError::NotFound {
            volume: vol.to_string(),
            kind,
            name: name.to_string(),
        });
    };
    let data = entries(obj, secret);
    let default = mode_of(src.default_mode(), 0o644);
    let mut files = Vec::new();
    match src.items() {
        Some(items) => {
            for item in items {
                let Some(bytes) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(MountError::NoKey {
                        volume: vol.to_string(),
                        kind,
                        name: name.to_string(),
                        key: item.key.clone(),
                    });
                };
                files.push(File {
                    path: if item.path.is_empty() {
                        item.key.clone()
                    } else {
                        item.path.clone()
                    },
                    data: bytes.clone(),
                    mode: mode_of(item.mode, default),
                });
            }
        }
        None => {
            let mut keys: Vec<&String> = data.keys().collect();
            keys.sort();
            for k in keys {
                files.push(File {
                    path: k.clone(),
                    data: data[k].clone(),
                    mode: default,
                });
            }
        }
    }
    Ok(Some(Files { secret, files }))
}

/// The ConfigMap or Secret source of a volume, if it is one.
pub fn source_of(v: &k8s_openapi::api::core::v1::Volume) -> Option<Source<'_>> {
    match (&v.config_map, &v.secret) {
        (Some(s), _) => Some(Source::ConfigMap(s)),
        (_, Some(s)) => Some(Source::Secret(s)),
        _ => None,
    }
}

/// Read every ConfigMap and Secret the pod's volumes name.
pub async fn fetch(agent: &Agent, pod: &Pod) -> Result<Fetched, MountError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = Fetched::new();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref());
    for v in volumes.into_iter().flatten() {
        let Some(src) = source_of(v) else {
            continue;
        };
        let plural = if src.secret() {
            "secrets"
        } else {
            "configmaps"
        };
        let obj = crate::env::get_object(agent, ns, plural, src.object())
            .await
            .map_err(|source| MountError::Object {
                volume: v.name.clone(),
                source,
            })?;
        if let Some(files) = files_of(&v.name, src, obj.as_ref())? {
            out.insert(v.name.clone(), files);
        }
    }
    Ok(out)
}

/// Write a volume's files under `dir` (a tmpfs first for Secrets). The
/// directory is made read-only for others only through the read-only mount.
pub fn write(dir: &Path, files: &Files, fs_group: Option<u32>) -> Result<PathBuf, WriteError> {
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    if files.secret && !selur_runtime::rootfs::is_mounted(dir) {
        rustix::mount::mount(
            "tmpfs",
            dir,
            "tmpfs",
            rustix::mount::MountFlags::NOSUID
                | rustix::mount::MountFlags::NODEV
                | rustix::mount::MountFlags::NOEXEC,
            Some(c"mode=0755"),
        )
        .map_err(|source| WriteError::Tmpfs {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    for f in &files.files {
        if f.path.starts_with('/') || f.path.split('/').any(|c| c == "..") {
            return Err(WriteError::BadPath {
                path: f.path.clone(),
            });
        }
        let p = dir.join(&f.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        let tmp = p.with_extension("selur-tmp");
        std::fs::write(&tmp, &f.data).map_err(io_err("writing", &p))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(f.mode))
            .map_err(io_err("setting the mode of", &p))?;
        if let Some(g) = fs_group {
            if let Err(e) = rustix::fs::chown(&tmp, None, Some(rustix::fs::Gid::from_raw(g))) {
                tracing::warn!(path = %p.display(), gid = g, error = %e, "cannot give a volume file to the pod's fsGroup");
            }
        }
        std::fs::rename(&tmp, &p).map_err(io_err("renaming into place", &p))?;
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(v: Value) -> ConfigMapVolumeSource {
        serde_json::from_value(v).unwrap()
    }

    fn secret(v: Value) -> SecretVolumeSource {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn keys_items_modes_and_optional() {
        let obj = json!({"data": {"b": "2", "a": "1"}, "binaryData": {"bin": "AAE="}});
        let src = cm(json!({"name": "cm"}));
        let all = files_of("v", Source::ConfigMap(&src), Some(&obj))
            .unwrap()
            .unwrap();
        let names: Vec<&str> = all.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["a", "b", "bin"]);
        assert_eq!(all.files[2].data, vec![0, 1]);
        assert_eq!(all.files[0].mode, 0o644);
        let src = cm(
            json!({"name": "cm", "defaultMode": 0o400, "items": [{"key": "a", "path": "sub/x"}, {"key": "b", "path": "y", "mode": 0o600}]}),
        );
        let items = files_of("v", Source::ConfigMap(&src), Some(&obj))
            .unwrap()
            .unwrap();
        assert_eq!(items.files[0].path, "sub/x");
        assert_eq!(items.files[0].mode, 0o400);
        assert_eq!(items.files[1].mode, 0o600);
        let src = cm(json!({"name": "cm", "items": [{"key": "zz", "path": "p"}]}));
        let err = files_of("v", Source::ConfigMap(&src), Some(&obj))
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no key \"zz\""), "{err}");
        let src = secret(json!({"secretName": "s"}));
        let missing = files_of("v", Source::Secret(&src), None).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "MountVolume.SetUp failed for volume \"v\" : secret \"s\" not found"
        );
        let src = secret(json!({"secretName": "s", "optional": true}));
        let optional = files_of("v", Source::Secret(&src), None).unwrap().unwrap();
        assert!(optional.files.is_empty());
        let src = secret(json!({"secretName": "s"}));
        let data = json!({"data": {"k": "c2VjcmV0"}});
        let secret = files_of("v", Source::Secret(&src), Some(&data))
            .unwrap()
            .unwrap();
        assert_eq!(secret.files[0].data, b"secret");
    }
}
