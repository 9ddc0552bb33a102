//! The node's part of the pod network: its bridge (the pods' gateway, also
//! carrying the cluster DNS address), IPv6 forwarding, each pod's address
//! ([`ipam`]) and interface (made with the pod's sandbox, see
//! `selur_runtime::sandbox::PodInterface`), and routes to the other nodes'
//! pod ranges ([`routes`]).
//!
//! The cluster's ranges come from the server (the ConfigMap
//! `kube-system/selur-cluster-network`), this node's /64 from its Node's
//! `spec.podCIDR`, which the server's node IPAM assigns.

pub mod bridge;
pub mod cni;
pub mod ipam;
pub mod proxy;
pub mod resolv;
pub mod routes;

use std::net::Ipv6Addr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use selur_api::network::{ClusterNetwork, Ipv6Cidr, CLUSTER_NETWORK_CONFIGMAP};
use selur_runtime::sandbox::PodInterface;

use crate::Agent;

/// How pods get their network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodNetworkMode {
    /// Pods have only loopback (tests that run agents in the machine's own
    /// namespace, where a bridge and routes would touch the host).
    None,
    /// Selur's built-in datapath: a veth pair per pod on a node bridge.
    Bridge,
    /// The operator's CNI network: the first config in `cni_conf_dir`, its
    /// plugins from `cni_bin_dirs` (as the kubelet and containerd do).
    Cni,
}

impl FromStr for PodNetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "bridge" => Ok(Self::Bridge),
            "cni" => Ok(Self::Cni),
            _ => Err(format!(
                "{s:?} is not a pod network: use \"bridge\" (the built-in datapath), \"cni\" (the CNI config in --cni-conf-dir) or \"none\" (loopback only)"
            )),
        }
    }
}

/// The agent's network settings.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub mode: PodNetworkMode,
    /// The node bridge's name.
    pub bridge: String,
    /// The node's address other nodes route this node's pods through and
    /// NodePorts answer on (default: the first global IPv6 address of an
    /// interface other than the bridge).
    pub node_ip: Option<Ipv6Addr>,
    /// The node's resolvers: the cluster DNS forwards other names to them,
    /// and `dnsPolicy: Default` pods get them (the kubelet's `--resolv-conf`).
    pub resolv_conf: std::path::PathBuf,
    /// The operator's NAT64 /96 prefix: the cluster DNS synthesizes AAAA
    /// records for IPv4-only names under it (DNS64).
    pub dns64_prefix: Option<Ipv6Addr>,
    /// Where the CNI network config is (`--pod-network cni`).
    pub cni_conf_dir: std::path::PathBuf,
    /// Where CNI plugins are looked up, in order.
    pub cni_bin_dirs: Vec<std::path::PathBuf>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        // Off unless asked for: a library user (a bench, a test) must not
        // change the machine's network by accident. `selur agent` and
        // `selur server` default to the bridge.
        Self {
            mode: PodNetworkMode::None,
            bridge: "selur0".into(),
            node_ip: None,
            resolv_conf: "/etc/resolv.conf".into(),
            dns64_prefix: None,
            cni_conf_dir: "/etc/cni/net.d".into(),
            cni_bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
        }
    }
}

/// Errors setting up the node's network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("the cluster's network settings: {0}")]
    Settings(String),
    #[error("{0}")]
    Command(#[from] selur_runtime::sandbox::SandboxError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ipam(#[from] ipam::IpamError),
    #[error("CNI: {0}")]
    Cni(#[from] cni::CniError),
}

/// This node's pod network, once set up.
#[derive(Debug)]
pub struct NodeNetwork {
    pub cluster: ClusterNetwork,
    /// The node's resolver configuration file.
    pub resolv_conf: std::path::PathBuf,
    pub dns64_prefix: Option<Ipv6Addr>,
    /// This node's pod range.
    pub pod_cidr: Ipv6Cidr,
    /// The bridge's address: the pods' default route.
    pub gateway: Ipv6Addr,
    pub bridge: String,
    pub node_ip: Option<Ipv6Addr>,
    pub ipam: ipam::Ipam,
    /// The operator's CNI network, in `--pod-network cni` mode (then pods'
    /// interfaces and addresses come from its plugins, not from `ipam`).
    pub cni: Option<cni::CniNetwork>,
}

impl NodeNetwork {
    /// The interface of the pod `uid` made by the sandbox (none in CNI
    /// mode: the plugins make it afterwards), its address recorded in
    /// `pod_dir`.
    pub fn interface(
        &self,
        uid: &str,
        pod_dir: &std::path::Path,
    ) -> Result<Option<PodInterface>, NetworkError> {
        if self.cni.is_some() {
            return Ok(None);
        }
        let addr = self.ipam.assign(uid, pod_dir)?;
        Ok(Some(PodInterface {
            host_name: host_link_name(uid),
            bridge: self.bridge.clone(),
            addr,
            prefix: self.pod_cidr.prefix(),
            gateway: self.gateway,
            host_pid: std::process::id(),
        }))
    }

    /// In CNI mode: ADD the pod's namespace `netns` (the plugins' result
    /// cached in `pod_dir`) and record the pod's IPv6 address there.
    pub fn cni_add(
        &self,
        uid: &str,
        pod_dir: &std::path::Path,
        netns: &std::path::Path,
    ) -> Result<(), NetworkError> {
        let Some(c) = &self.cni else {
            return Ok(());
        };
        let cache = pod_dir.join(CNI_RESULT_FILE);
        let result = c.add(uid, netns, "eth0", &cache)?;
        let Some(ip) = result.ipv6() else {
            if let Err(e) = c.del(uid, netns, "eth0", &cache) {
                tracing::warn!(uid, error = %e, "CNI DEL after an ADD without IPv6");
            }
            return Err(NetworkError::Settings(format!(
                "the CNI network {:?} ({}) gave the pod no IPv6 address (got {:?}); Selur pods are IPv6-only: give its IPAM an IPv6 range",
                c.name,
                c.source.display(),
                result.ips
            )));
        };
        ipam::record(pod_dir, ip)?;
        Ok(())
    }

    /// In CNI mode: DEL the pod's namespace. Safe to repeat.
    pub fn cni_del(
        &self,
        uid: &str,
        pod_dir: &std::path::Path,
        netns: &std::path::Path,
    ) -> Result<(), NetworkError> {
        match &self.cni {
            Some(c) => Ok(c.del(uid, netns, "eth0", &pod_dir.join(CNI_RESULT_FILE))?),
            None => Ok(()),
        }
    }

    /// The cluster DNS address pods are given.
    pub fn dns_ip(&self) -> Option<Ipv6Addr> {
        self.cluster.dns_service_ip()
    }
}

/// The CNI result of a pod, in its directory (prevResult for DEL).
pub const CNI_RESULT_FILE: &str = "cni-result.json";

/// The host end of pod `uid`'s veth pair: `sel` and 12 hex digits of a
/// hash of the uid (interface names hold 15 bytes).
pub fn host_link_name(uid: &str) -> String {
    format!("sel{:012x}", ipam::fnv1a(uid.as_bytes()) & 0xffff_ffff_ffff)
}

/// Read the cluster's published network settings (retrying while the
/// server has not published them).
async fn cluster_settings(agent: &Agent) -> ClusterNetwork {
    let (ns, name) = CLUSTER_NETWORK_CONFIGMAP;
    let path = format!("/api/v1/namespaces/{ns}/configmaps/{name}");
    let mut warned = false;
    loop {
        let answer = agent
            .call(
                reqwest::Method::GET,
                &path,
                "application/json",
                &Value::Null,
            )
            .await;
        let problem = match answer {
            Ok((200, cm)) => {
                let data = serde_json::from_value(cm["data"].clone()).unwrap_or_default();
                match ClusterNetwork::from_config_data(&data) {
                    Ok(n) => return n,
                    Err(e) => e.to_string(),
                }
            }
            Ok((code, v)) => format!("{code}: {}", v["message"].as_str().unwrap_or("")),
            Err(e) => e.to_string(),
        };
        if !warned {
            tracing::warn!(configmap = %format!("{ns}/{name}"), problem, "waiting for the cluster's network settings");
            warned = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until the server has given this node its pod range.
async fn node_pod_cidr(agent: &Agent) -> Ipv6Cidr {
    let mut waited = Duration::ZERO;
    let step = Duration::from_millis(100);
    loop {
        if let Ok((200, node)) = agent
            .call(
                reqwest::Method::GET,
                &agent.node_path(),
                "application/json",
                &Value::Null,
            )
            .await
        {
            if let Some(c) = node
                .pointer("/spec/podCIDR")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
            {
                return c;
            }
        }
        if waited.as_secs() > 0 && waited.as_millis().is_multiple_of(5000) {
            tracing::warn!(
                waited = ?waited,
                "the node has no spec.podCIDR yet (the server's node IPAM assigns one; is the cluster range full?)"
            );
        }
        tokio::time::sleep(step).await;
        waited += step;
    }
}

/// Set up this node's pod network: settings from the server, the bridge,
/// forwarding, the addresses of pods already here. `None` when pods get
/// no network.
pub async fn set_up(agent: &Agent) -> Result<Option<Arc<NodeNetwork>>, NetworkError> {
    let cfg = agent.config.network.clone();
    if cfg.mode == PodNetworkMode::None {
        return Ok(None);
    }
    let cni = match cfg.mode {
        PodNetworkMode::Cni => Some(cni::CniNetwork::load(&cfg.cni_conf_dir, &cfg.cni_bin_dirs)?),
        _ => None,
    };
    let cluster = cluster_settings(agent).await;
    let pod_cidr = node_pod_cidr(agent).await;
    let gateway = pod_cidr
        .nth(1)
        .ok_or_else(|| NetworkError::Settings(format!("the node range {pod_cidr} is too small")))?;
    let dns = cluster.dns_service_ip();
    let service_cidr = cluster.service_cidr;
    // With CNI the operator's bridge (if its first plugin is one) is the
    // one the proxy's masquerade rules name; Selur makes none.
    let bridge_name = match &cni {
        Some(c) => cni_bridge(c).unwrap_or_else(|| "cni0".into()),
        None => cfg.bridge.clone(),
    };
    // Detected (when not given) once, by `run`, before registration.
    let node_ip = cfg.node_ip;
    let pods_dir = agent.config.data_dir.join("pods");
    let data_dir = agent.config.data_dir.clone();
    let resolv_conf = cfg.resolv_conf.clone();
    let dns64_prefix = cfg.dns64_prefix;
    let net = tokio::task::spawn_blocking(move || -> Result<NodeNetwork, NetworkError> {
        if cni.is_none() {
            bridge::check_free(
                &bridge_name,
                &[
                    ("this node's pod range (spec.podCIDR)", pod_cidr),
                    ("the Service range", service_cidr),
                ],
            )?;
            bridge::ensure(&bridge_name, pod_cidr, gateway, dns)?;
            bridge::route_services(&bridge_name, service_cidr)?;
        } else if let Some(d) = dns {
            // The cluster DNS address on loopback: pods reach it through
            // their CNI gateway, the node answers it locally. Recorded
            // first, so `selur node reset` finds it after any crash.
            let file = data_dir.join(crate::reset::DNS_ADDRESS_FILE);
            std::fs::write(&file, d.to_string()).map_err(|source| NetworkError::Io {
                what: "writing",
                path: file.clone(),
                source,
            })?;
            bridge::add_local_address("lo", d)?;
        }
        bridge::enable_forwarding()?;
        let ipam = ipam::Ipam::new(pod_cidr, [gateway]);
        ipam.load(&pods_dir);
        Ok(NodeNetwork {
            cluster,
            resolv_conf,
            dns64_prefix,
            pod_cidr,
            gateway,
            bridge: bridge_name,
            node_ip,
            ipam,
            cni,
        })
    })
    .await
    .map_err(|e| NetworkError::Settings(format!("the setup task failed: {e}")))??;
    tracing::info!(pod_cidr = %net.pod_cidr, bridge = %net.bridge, node_ip = ?net.node_ip, "pod network ready");
    Ok(Some(Arc::new(net)))
}

/// The bridge a CNI network's first plugin makes (`type: bridge`).
fn cni_bridge(c: &cni::CniNetwork) -> Option<String> {
    let first = c.plugins.first()?;
    (first["type"] == "bridge").then(|| first["bridge"].as_str().unwrap_or("cni0").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_link_names_fit_and_differ() {
        let a = host_link_name("0b5c7f2e-1111-2222-3333-444455556666");
        let b = host_link_name("0b5c7f2e-1111-2222-3333-444455556667");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("sel"));
        assert_ne!(a, b);
        assert_eq!(a, host_link_name("0b5c7f2e-1111-2222-3333-444455556666"));
    }

    #[test]
    fn modes_parse_with_a_helpful_error() {
        assert_eq!(
            "bridge".parse::<PodNetworkMode>(),
            Ok(PodNetworkMode::Bridge)
        );
        assert_eq!("none".parse::<PodNetworkMode>(), Ok(PodNetworkMode::None));
        assert_eq!("cni".parse::<PodNetworkMode>(), Ok(PodNetworkMode::Cni));
        assert!("flannel"
            .parse::<PodNetworkMode>()
            .unwrap_err()
            .contains("bridge"));
    }
}
