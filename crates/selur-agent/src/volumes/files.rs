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
use serde_json::Value;

use crate::Agent;

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

fn mode_of(v: &Value, default: u32) -> u32 {
    v.as_u64()
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(default)
        & 0o777
}

/// The files a volume source yields from its object (`None` when the object
/// is missing). Errors name the volume and say what is missing.
pub fn files_of(
    vol: &str,
    src: &Value,
    obj: Option<&Value>,
    secret: bool,
) -> Result<Option<Files>, String> {
    let kind = if secret { "secret" } else { "configmap" };
    let name = src[if secret { "secretName" } else { "name" }]
        .as_str()
        .unwrap_or("");
    let optional = src["optional"].as_bool().unwrap_or(false);
    let Some(obj) = obj else {
        if optional {
            return Ok(Some(Files {
                secret,
                files: Vec::new(),
            }));
        }
        return Err(format!(
            "MountVolume.SetUp failed for volume \"{vol}\" : {kind} \"{name}\" not found"
        ));
    };
    let data = entries(obj, secret);
    let default = mode_of(&src["defaultMode"], 0o644);
    let mut files = Vec::new();
    match src["items"].as_array() {
        Some(items) => {
            for item in items {
                let key = item["key"].as_str().unwrap_or("");
                let Some(bytes) = data.get(key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!("MountVolume.SetUp failed for volume \"{vol}\" : {kind} \"{name}\" has no key \"{key}\" (items[].key must name one of its keys)"));
                };
                files.push(File {
                    path: item["path"].as_str().unwrap_or(key).to_string(),
                    data: bytes.clone(),
                    mode: mode_of(&item["mode"], default),
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

/// Read every ConfigMap and Secret the pod's volumes name.
pub async fn fetch(agent: &Agent, pod: &Value) -> Result<Fetched, String> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let mut out = Fetched::new();
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let vol = v["name"].as_str().unwrap_or("");
        let (src, secret) = match (v.get("configMap"), v.get("secret")) {
            (Some(s), _) => (s, false),
            (_, Some(s)) => (s, true),
            _ => continue,
        };
        let (plural, name) = if secret {
            ("secrets", src["secretName"].as_str().unwrap_or(""))
        } else {
            ("configmaps", src["name"].as_str().unwrap_or(""))
        };
        let obj = crate::env::get_object(agent, ns, plural, name).await?;
        if let Some(files) = files_of(vol, src, obj.as_ref(), secret)? {
            out.insert(vol.to_string(), files);
        }
    }
    Ok(out)
}

/// Write a volume's files under `dir` (a tmpfs first for Secrets). The
/// directory is made read-only for others only through the read-only mount.
pub fn write(dir: &Path, files: &Files, fs_group: Option<u32>) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
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
        .map_err(|e| format!("cannot mount tmpfs for secret volume: {e}"))?;
    }
    for f in &files.files {
        if f.path.starts_with('/') || f.path.split('/').any(|c| c == "..") {
            return Err(format!(
                "items path {:?} must be relative without ..",
                f.path
            ));
        }
        let p = dir.join(&f.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let tmp = p.with_extension("selur-tmp");
        std::fs::write(&tmp, &f.data).map_err(|e| format!("{}: {e}", p.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(f.mode))
            .map_err(|e| e.to_string())?;
        if let Some(g) = fs_group {
            let _ = rustix::fs::chown(&tmp, None, Some(rustix::fs::Gid::from_raw(g)));
        }
        std::fs::rename(&tmp, &p).map_err(|e| e.to_string())?;
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_items_modes_and_optional() {
        let cm = json!({"data": {"b": "2", "a": "1"}, "binaryData": {"bin": "AAE="}});
        let all = files_of("v", &json!({"name": "cm"}), Some(&cm), false)
            .unwrap()
            .unwrap();
        let names: Vec<&str> = all.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["a", "b", "bin"]);
        assert_eq!(all.files[2].data, vec![0, 1]);
        assert_eq!(all.files[0].mode, 0o644);
        let items = files_of(
            "v",
            &json!({"name": "cm", "defaultMode": 0o400, "items": [{"key": "a", "path": "sub/x"}, {"key": "b", "path": "y", "mode": 0o600}]}),
            Some(&cm),
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(items.files[0].path, "sub/x");
        assert_eq!(items.files[0].mode, 0o400);
        assert_eq!(items.files[1].mode, 0o600);
        let err = files_of(
            "v",
            &json!({"name": "cm", "items": [{"key": "zz", "path": "p"}]}),
            Some(&cm),
            false,
        )
        .unwrap_err();
        assert!(err.contains("has no key \"zz\""), "{err}");
        let missing = files_of("v", &json!({"secretName": "s"}), None, true).unwrap_err();
        assert_eq!(
            missing,
            "MountVolume.SetUp failed for volume \"v\" : secret \"s\" not found"
        );
        let optional = files_of(
            "v",
            &json!({"secretName": "s", "optional": true}),
            None,
            true,
        )
        .unwrap()
        .unwrap();
        assert!(optional.files.is_empty());
        let secret = files_of(
            "v",
            &json!({"secretName": "s"}),
            Some(&json!({"data": {"k": "c2VjcmV0"}})),
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!(secret.files[0].data, b"secret");
    }
}
