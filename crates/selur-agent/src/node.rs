//! The Node object an agent keeps current: labels, taints, capacity and
//! allocatable, addresses, node info, images; and its Lease heartbeat in
//! `kube-node-lease` (as the kubelet does), which the server's node
//! lifecycle controller watches.

use std::collections::BTreeMap;

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use selur_api::quantity::{self, Quantity};

use crate::AgentError;

/// A taint as given on the command line: `key=value:Effect` or `key:Effect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: String,
}

impl std::str::FromStr for Taint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kv, effect) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("taint {s:?} needs an effect: key=value:NoSchedule"))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(format!(
                "taint {s:?}: effect {effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"
            ));
        }
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (kv.to_string(), None),
        };
        if key.is_empty() {
            return Err(format!("taint {s:?} has no key"));
        }
        Ok(Taint {
            key,
            value,
            effect: effect.to_string(),
        })
    }
}

impl Taint {
    pub fn to_json(&self) -> Value {
        let mut t = json!({"key": self.key, "effect": self.effect});
        if let Some(v) = &self.value {
            t["value"] = json!(v);
        }
        t
    }
}

/// Parse `cpu=2,memory=4Gi,pods=50`.
pub fn parse_resources(s: &str) -> Result<BTreeMap<String, Quantity>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            format!("{part:?}: expected name=quantity, e.g. cpu=2,memory=4Gi,pods=50")
        })?;
        let q = quantity::parse(v).map_err(|e| format!("{k}: {e}"))?;
        out.insert(k.to_string(), q);
    }
    Ok(out)
}

/// What this machine offers: cpu (cores), memory (from /proc/meminfo), pods (110).
pub fn detect_capacity() -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::new();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    out.insert(
        "cpu".to_string(),
        Quantity::from_millis(cpus as i128 * 1000),
    );
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<i128>().ok())
        })
        .unwrap_or(0);
    if let Ok(q) = quantity::parse(&format!("{mem_kib}Ki")) {
        out.insert("memory".to_string(), q);
    }
    out.insert("pods".to_string(), Quantity::from_millis(110_000));
    out
}

/// Resource name to amount.
pub type Resources = BTreeMap<String, Quantity>;

/// Capacity with overrides applied, and allocatable = capacity - reserved.
pub fn capacity_and_allocatable(
    overrides: &BTreeMap<String, Quantity>,
    reserved: &BTreeMap<String, Quantity>,
) -> Result<(Resources, Resources), AgentError> {
    let mut cap = detect_capacity();
    for (k, v) in overrides {
        cap.insert(k.clone(), *v);
    }
    let mut alloc = cap.clone();
    for (k, r) in reserved {
        let c = alloc.get(k).copied().unwrap_or_default();
        let left = c
            .checked_sub(r)
            .filter(|q| !q.is_negative())
            .ok_or_else(|| {
                AgentError::Config(format!(
                    "--reserved {k}={r} is more than the node's capacity {c}"
                ))
            })?;
        alloc.insert(k.clone(), left);
    }
    Ok((cap, alloc))
}

pub fn quantities_json(m: &BTreeMap<String, Quantity>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), json!(v.to_string())))
            .collect(),
    )
}

pub fn now_micro() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn now_secs() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".to_string())
}

/// The Ready condition as the agent reports it.
pub fn ready_condition() -> Value {
    json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "selur agent is posting ready status", "lastHeartbeatTime": now_secs(),
        "lastTransitionTime": now_secs()})
}

/// The node's status block.
pub fn status(
    cap: &BTreeMap<String, Quantity>,
    alloc: &BTreeMap<String, Quantity>,
    images: Value,
) -> Value {
    json!({
        "capacity": quantities_json(cap),
        "allocatable": quantities_json(alloc),
        "conditions": [ready_condition()],
        "addresses": [{"type": "Hostname", "address": hostname()}, {"type": "InternalIP", "address": "::1"}],
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": kernel_version(), "osImage": os_image(),
            "containerRuntimeVersion": "runc", "kubeletVersion": format!("selur-{}", env!("CARGO_PKG_VERSION")),
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
        },
        "images": images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_and_resources_parse() {
        let t: Taint = "dedicated=gpu:NoSchedule".parse().unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("gpu"), "NoSchedule")
        );
        assert!("x=y".parse::<Taint>().is_err());
        assert!("x=y:Sometimes".parse::<Taint>().is_err());
        let r = parse_resources("cpu=2,memory=4Gi,pods=50").unwrap();
        assert_eq!(r["memory"].value(), 4 << 30);
        let (cap, alloc) =
            capacity_and_allocatable(&r, &parse_resources("cpu=500m").unwrap()).unwrap();
        assert_eq!(cap["cpu"].millis(), 2000);
        assert_eq!(alloc["cpu"].millis(), 1500);
        assert!(capacity_and_allocatable(&r, &parse_resources("cpu=3").unwrap()).is_err());
    }
}
