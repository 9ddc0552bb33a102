//! The runc floor: `runc run -d` of a bundle holding the same binary, bare,
//! after a network namespace, after the whole sandbox the agent makes, or
//! after a network namespace wired by the CNI `bridge` plugin (host-local
//! IPAM, IPv6 /64 with the bridge as gateway: the plan Selur's bridge mode
//! uses, on another /64 and bridge so both live in one namespace).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::{json, Value};

use super::host::sh;
use super::workload::Workload;
use super::NODE;
// ---------------------------------------------------------------- floor

#[derive(Clone, Copy, PartialEq)]
pub enum Variant {
    Bare,
    Netns,
    Sandbox,
    /// `unshare --net=FILE ip link set lo up`, then the CNI `bridge`
    /// plugin's ADD (eth0, host-local IPv6 address, default route via the
    /// bridge), then `runc run -d` joining the namespace.
    Cni,
}

/// Where Debian's containernetworking-plugins live.
pub const CNI_PATH: &str = "/usr/lib/cni";
/// The floor's CNI bridge and /64 (Selur's first pod /64 is fd00::/64 on
/// `selur0`; the floor takes another /64 of the same /48).
pub const CNI_BRIDGE: &str = "cnibench0";
pub const CNI_SUBNET: &str = "fd00:0:0:ff::/64";

pub struct Floor {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub template: Value,
    pub binary: (PathBuf, &'static str),
    /// CNI ADDs done (container id, netns path), for `cni_del_all`.
    pub cni_added: Mutex<Vec<(String, PathBuf)>>,
}

impl Floor {
    /// The same floor, but running Selur's own OCI spec for the pod's
    /// container (from `config`), made standalone: own root file system,
    /// fresh namespaces instead of the pod's, no bind mounts from the pod dir.
    pub fn with_selur_spec(&self, config: &Value, data_dir: &Path) -> Floor {
        let mut spec = config.clone();
        let readonly = spec["root"]["readonly"].as_bool().unwrap_or(false);
        spec["root"] = json!({"path": "rootfs", "readonly": readonly});
        if let Some(list) = spec["linux"]["namespaces"].as_array_mut() {
            for n in list.iter_mut() {
                if let Some(o) = n.as_object_mut() {
                    o.remove("path");
                }
            }
        }
        if let Some(list) = spec["mounts"].as_array_mut() {
            list.retain(|m| {
                !m["source"]
                    .as_str()
                    .is_some_and(|s| Path::new(s).starts_with(data_dir))
            });
        }
        Floor {
            dir: self.dir.clone(),
            root: self.root.clone(),
            template: spec,
            binary: self.binary.clone(),
            cni_added: Mutex::new(Vec::new()),
        }
    }

    pub fn new(dir: &Path, w: &Workload) -> Result<Floor> {
        let tdir = dir.join("template");
        std::fs::create_dir_all(&tdir)?;
        sh("runc", &["spec", "--bundle", &tdir.display().to_string()])?;
        let mut spec: Value = serde_json::from_slice(&std::fs::read(tdir.join("config.json"))?)?;
        spec["process"]["args"] = json!(w.argv);
        spec["process"]["terminal"] = json!(false);
        spec["process"]["user"] = json!({"uid": 65532, "gid": 65532});
        spec["root"] = json!({"path": "rootfs", "readonly": false});
        Ok(Floor {
            dir: dir.to_path_buf(),
            root: dir.join("runc"),
            template: spec,
            binary: w.binary.clone(),
            cni_added: Mutex::new(Vec::new()),
        })
    }

    /// A bundle for container `id` (not timed): rootfs with the binary, config.
    pub fn bundle(&self, id: &str, v: Variant) -> Result<PathBuf> {
        let b = self.dir.join(id);
        let target = b.join("rootfs").join(self.binary.1);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::copy(&self.binary.0, &target)?;
        let ns = b.join("ns");
        std::fs::create_dir_all(&ns)?;
        let mut spec = self.template.clone();
        spec["linux"]["cgroupsPath"] = json!(format!("/selur-{NODE}/floor/{id}"));
        let paths: &[&str] = match v {
            Variant::Bare => &[],
            Variant::Netns | Variant::Cni => &["network"],
            Variant::Sandbox => &["network", "ipc", "uts"],
        };
        if let Some(list) = spec["linux"]["namespaces"].as_array_mut() {
            for n in list.iter_mut() {
                let kind = n["type"].as_str().unwrap_or("").to_string();
                if paths.contains(&kind.as_str()) {
                    n["path"] = json!(ns.join(&kind).display().to_string());
                }
            }
        }
        if v == Variant::Sandbox {
            // The hostname is set when the UTS namespace is made.
            if let Some(o) = spec.as_object_mut() {
                o.remove("hostname");
            }
        }
        std::fs::write(b.join("config.json"), serde_json::to_vec_pretty(&spec)?)?;
        for k in paths {
            std::fs::write(ns.join(k), b"")?;
        }
        Ok(b)
    }

    /// The timed part: namespaces (per variant) and `runc run -d`.
    pub fn run(&self, id: &str, bundle: &Path, v: Variant) -> Result<Duration> {
        let ns = bundle.join("ns");
        let nsarg = |flag: &str, kind: &str| format!("--{flag}={}", ns.join(kind).display());
        let t = Instant::now();
        match v {
            Variant::Bare => {}
            Variant::Netns => {
                sh("unshare", &[&nsarg("net", "network"), "true"])?;
            }
            Variant::Cni => {
                sh(
                    "unshare",
                    &[&nsarg("net", "network"), "ip", "link", "set", "lo", "up"],
                )?;
                self.cni("ADD", id, &ns.join("network"))?;
                if let Ok(mut v) = self.cni_added.lock() {
                    v.push((id.to_string(), ns.join("network")));
                }
            }
            Variant::Sandbox => {
                sh(
                    "unshare",
                    &[
                        &nsarg("net", "network"),
                        &nsarg("ipc", "ipc"),
                        &nsarg("uts", "uts"),
                        "hostname",
                        id,
                    ],
                )?;
                sh(
                    "nsenter",
                    &[&nsarg("net", "network"), "ip", "link", "set", "lo", "up"],
                )?;
            }
        }
        let st = Command::new("runc")
            .arg("--root")
            .arg(&self.root)
            .args(["run", "-d", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        let took = t.elapsed();
        ensure!(st.success(), "runc run -d {id}: {st}");
        Ok(took)
    }
}

impl Floor {
    /// The network config handed to the `bridge` plugin on stdin.
    pub fn cni_config(&self) -> serde_json::Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "selur-bench",
            "type": "bridge",
            "bridge": CNI_BRIDGE,
            "isGateway": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": CNI_SUBNET}]],
                "routes": [{"dst": "::/0"}],
                "dataDir": self.dir.join("cni-ipam").display().to_string(),
            },
        })
    }

    /// Run the CNI `bridge` plugin binary with `command` (ADD, DEL) for
    /// container `id` in the namespace at `netns`.
    pub fn cni(&self, command: &str, id: &str, netns: &Path) -> Result<String> {
        let conf = serde_json::to_vec(&self.cni_config())?;
        let mut child = Command::new(Path::new(CNI_PATH).join("bridge"))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!("running {CNI_PATH}/bridge (apt-get install containernetworking-plugins)")
            })?;
        child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("no stdin"))?
            .write_all(&conf)?;
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "CNI bridge {command} {id}: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// CNI DEL of every ADD done (before the namespaces are unmounted);
    /// returns the failures.
    pub fn cni_del_all(&self) -> Vec<String> {
        let added: Vec<(String, PathBuf)> = self
            .cni_added
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        added
            .iter()
            .filter_map(|(id, ns)| self.cni("DEL", id, ns).err().map(|e| format!("{e:#}")))
            .collect()
    }
}

/// One timed floor start in a blocking thread (the bundle is made untimed).
pub async fn floor_once(floor: Arc<Floor>, id: String, v: Variant) -> Result<Duration> {
    tokio::task::spawn_blocking(move || -> Result<Duration> {
        let b = floor.bundle(&id, v)?;
        floor.run(&id, &b, v)
    })
    .await?
}
