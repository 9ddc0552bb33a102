//! The cluster's network settings: the pod range (`--cluster-cidr`, default
//! `fd00::/48`), the per-node slice of it (`--node-cidr-mask`, default /64),
//! the Service range (`--service-cidr`, default `fd01::/112`) and the DNS
//! domain (`--cluster-domain`, default `cluster.local`). Selur is IPv6-only:
//! IPv4 ranges, overlapping ranges and ranges too small to use are refused,
//! each error naming the setting it came from.
//!
//! The settings also come from a file (`selur server --config FILE`) in
//! either form the seed shows: Selur's own
//!
//! ```yaml
//! networking:
//!   ipFamily: IPv6
//!   podCIDR: "fd00::/48"
//!   serviceCIDR: "fd01::/112"
//!   clusterDomain: cluster.local   # optional
//!   nodeCIDRMaskSize: 64           # optional
//! ```
//!
//! or kubeadm's `ClusterConfiguration` (`networking: {podSubnet,
//! serviceSubnet, dnsDomain}`), alone or among other kubeadm documents in a
//! multi-document file (the other kinds are not Selur's business and are
//! skipped). Flags given on the command line win over the file.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use serde::Deserialize;

/// An IPv6 network: an address with its host bits zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Cidr {
    addr: Ipv6Addr,
    prefix: u8,
}

impl Ipv6Cidr {
    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(prefix: u8) -> u128 {
        if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(prefix))
        }
    }

    fn first(&self) -> u128 {
        u128::from(self.addr)
    }

    fn last(&self) -> u128 {
        self.first() | !Self::mask(self.prefix)
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Ipv6Cidr) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        let v = u128::from(ip);
        self.first() <= v && v <= self.last()
    }

    /// The `index`-th sub-network of length `prefix` (`None` when `prefix` is
    /// not longer than this network's or `index` is past its end).
    pub fn subnet(&self, prefix: u8, index: u128) -> Option<Ipv6Cidr> {
        if prefix <= self.prefix || prefix > 128 {
            return None;
        }
        let bits = u32::from(prefix - self.prefix);
        if bits < 128 && index >> bits != 0 {
            return None;
        }
        let step = 1u128.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        let addr = self.first().checked_add(index.checked_mul(step)?)?;
        Some(Ipv6Cidr {
            addr: Ipv6Addr::from(addr),
            prefix,
        })
    }

    /// Which sub-network of length `prefix` `inner` is (`None` when it is
    /// not one of them).
    pub fn subnet_index(&self, prefix: u8, inner: &Ipv6Cidr) -> Option<u128> {
        if inner.prefix != prefix || prefix <= self.prefix || !self.contains(inner.addr) {
            return None;
        }
        Some((inner.first() - self.first()) >> (128 - u32::from(prefix)))
    }

    /// The address `n` places after the network address (`None` past its end).
    pub fn nth(&self, n: u128) -> Option<Ipv6Addr> {
        let v = self.first().checked_add(n)?;
        (v <= self.last()).then(|| Ipv6Addr::from(v))
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a CIDR string is not an IPv6 network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// Not `address/prefix` at all.
    Syntax,
    /// A valid IPv4 network: Selur is IPv6-only.
    Ipv4,
    /// Bits set after the prefix (`fd00::1/48`).
    HostBits { network: String },
}

impl FromStr for Ipv6Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (a, p) = s.trim().split_once('/').ok_or(CidrError::Syntax)?;
        let prefix: u8 = p.parse().map_err(|_| CidrError::Syntax)?;
        if a.parse::<std::net::Ipv4Addr>().is_ok() && prefix <= 32 {
            return Err(CidrError::Ipv4);
        }
        let addr: Ipv6Addr = a.parse().map_err(|_| CidrError::Syntax)?;
        if prefix > 128 {
            return Err(CidrError::Syntax);
        }
        let masked = u128::from(addr) & Self::mask(prefix);
        if masked != u128::from(addr) {
            return Err(CidrError::HostBits {
                network: format!("{}/{prefix}", Ipv6Addr::from(masked)),
            });
        }
        Ok(Self { addr, prefix })
    }
}

/// A setting that cannot be used; `setting` names it as the user wrote it
/// (`--cluster-cidr`, or `networking.podSubnet in FILE`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct NetworkSettingError {
    pub setting: String,
    pub message: String,
}

fn bad(setting: &str, message: impl Into<String>) -> NetworkSettingError {
    NetworkSettingError {
        setting: setting.to_string(),
        message: message.into(),
    }
}

/// The smallest Service range: it must hold the `kubernetes` Service (base
/// + 1) and the cluster DNS (base + 10), and room for others.
pub const SERVICE_PREFIX_MAX: u8 = 124;
/// The largest Service range Kubernetes allows for IPv6 (2^20 addresses).
pub const SERVICE_PREFIX_MIN: u8 = 108;
/// The smallest per-node pod range (256 addresses).
pub const NODE_MASK_MAX: u8 = 120;

/// The cluster's network settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNetwork {
    pub cluster_cidr: Ipv6Cidr,
    pub service_cidr: Ipv6Cidr,
    pub cluster_domain: String,
    pub node_cidr_mask: u8,
}

impl Default for ClusterNetwork {
    fn default() -> Self {
        Self {
            cluster_cidr: Ipv6Cidr {
                addr: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0),
                prefix: 48,
            },
            service_cidr: Ipv6Cidr {
                addr: Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 0),
                prefix: 112,
            },
            cluster_domain: "cluster.local".into(),
            node_cidr_mask: 64,
        }
    }
}

/// Where the server publishes the cluster's network settings for agents
/// (as kubeadm keeps its ClusterConfiguration in `kube-system/kubeadm-config`).
pub const CLUSTER_NETWORK_CONFIGMAP: (&str, &str) = ("kube-system", "selur-cluster-network");

impl ClusterNetwork {
    /// The `default/kubernetes` Service's address: the service range's first.
    pub fn kubernetes_service_ip(&self) -> Option<Ipv6Addr> {
        self.service_cidr.nth(1)
    }

    /// The cluster DNS Service's address: base + 10, as kube-dns' 10.96.0.10.
    pub fn dns_service_ip(&self) -> Option<Ipv6Addr> {
        self.service_cidr.nth(10)
    }

    /// The settings as the published ConfigMap's `data`.
    pub fn to_config_data(&self) -> std::collections::BTreeMap<String, String> {
        let mut m = std::collections::BTreeMap::from([
            ("clusterCIDR".to_string(), self.cluster_cidr.to_string()),
            ("serviceCIDR".to_string(), self.service_cidr.to_string()),
            ("clusterDomain".to_string(), self.cluster_domain.clone()),
            ("nodeCIDRMask".to_string(), self.node_cidr_mask.to_string()),
        ]);
        if let Some(ip) = self.dns_service_ip() {
            m.insert("dnsServiceIP".into(), ip.to_string());
        }
        if let Some(ip) = self.kubernetes_service_ip() {
            m.insert("kubernetesServiceIP".into(), ip.to_string());
        }
        m
    }

    /// The settings back from the published ConfigMap's `data`.
    pub fn from_config_data(
        data: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self, NetworkSettingError> {
        let get = |k: &str| {
            data.get(k).cloned().ok_or_else(|| {
                bad(
                    &format!(
                        "ConfigMap {}/{} data.{k}",
                        CLUSTER_NETWORK_CONFIGMAP.0, CLUSTER_NETWORK_CONFIGMAP.1
                    ),
                    "missing; restart the server so it publishes its settings again",
                )
            })
        };
        let mask_text = get("nodeCIDRMask")?;
        let mask = mask_text.parse::<u8>().map_err(|_| {
            bad(
                "nodeCIDRMask",
                format!("{mask_text:?} is not a prefix length"),
            )
        })?;
        NetworkInput {
            cluster_cidr: Some(("clusterCIDR".into(), get("clusterCIDR")?)),
            service_cidr: Some(("serviceCIDR".into(), get("serviceCIDR")?)),
            cluster_domain: Some(("clusterDomain".into(), get("clusterDomain")?)),
            node_cidr_mask: Some(("nodeCIDRMask".into(), mask)),
        }
        .resolve()
    }
}

/// Settings as given, each with the name it was given under; unset ones
/// take the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkInput {
    pub cluster_cidr: Option<(String, String)>,
    pub service_cidr: Option<(String, String)>,
    pub cluster_domain: Option<(String, String)>,
    pub node_cidr_mask: Option<(String, u8)>,
}

impl NetworkInput {
    /// `self` with every setting `over` gives replaced (flags over a file).
    pub fn overridden_by(self, over: NetworkInput) -> NetworkInput {
        NetworkInput {
            cluster_cidr: over.cluster_cidr.or(self.cluster_cidr),
            service_cidr: over.service_cidr.or(self.service_cidr),
            cluster_domain: over.cluster_domain.or(self.cluster_domain),
            node_cidr_mask: over.node_cidr_mask.or(self.node_cidr_mask),
        }
    }

    /// Check the settings together.
    pub fn resolve(&self) -> Result<ClusterNetwork, NetworkSettingError> {
        let d = ClusterNetwork::default();
        let cidr = |v: &Option<(String, String)>, default: Ipv6Cidr, flag: &str, example: &str| {
            let Some((setting, text)) = v else {
                return Ok((flag.to_string(), default));
            };
            // kubeadm writes dual-stack as "v6,v4" (or "v4,v6").
            let parts: Vec<&str> = text.split(',').map(str::trim).collect();
            if parts.len() > 1 {
                return Err(bad(
                    setting,
                    format!("{text:?} lists several ranges (dual-stack); Selur is IPv6-only: give one IPv6 range such as {example}"),
                ));
            }
            match text.parse::<Ipv6Cidr>() {
                Ok(c) => Ok((setting.clone(), c)),
                Err(CidrError::Ipv4) => Err(bad(
                    setting,
                    format!("{text} is an IPv4 range; Selur is IPv6-only: use an IPv6 range such as {example}"),
                )),
                Err(CidrError::HostBits { network }) => Err(bad(
                    setting,
                    format!("{text} has bits set after its /prefix; did you mean {network}?"),
                )),
                Err(CidrError::Syntax) => Err(bad(
                    setting,
                    format!("{text:?} is not an IPv6 range (address/prefix, e.g. {example})"),
                )),
            }
        };
        let (pod_setting, cluster_cidr) = cidr(
            &self.cluster_cidr,
            d.cluster_cidr,
            "--cluster-cidr",
            "fd00::/48",
        )?;
        let (svc_setting, service_cidr) = cidr(
            &self.service_cidr,
            d.service_cidr,
            "--service-cidr",
            "fd01::/112",
        )?;
        let (mask_setting, node_cidr_mask) = match &self.node_cidr_mask {
            Some((s, m)) => (s.clone(), *m),
            None => ("--node-cidr-mask".to_string(), d.node_cidr_mask),
        };
        if node_cidr_mask > NODE_MASK_MAX {
            return Err(bad(
                &mask_setting,
                format!("/{node_cidr_mask} leaves a node fewer than 256 pod addresses; use /{NODE_MASK_MAX} or shorter (default /64)"),
            ));
        }
        if node_cidr_mask <= cluster_cidr.prefix() {
            return Err(bad(
                &pod_setting,
                format!(
                    "{cluster_cidr} is too small to hand out /{node_cidr_mask} node ranges ({mask_setting}); use a range shorter than /{node_cidr_mask}, such as fd00::/48"
                ),
            ));
        }
        if service_cidr.prefix() > SERVICE_PREFIX_MAX {
            return Err(bad(
                &svc_setting,
                format!("{service_cidr} is too small (the kubernetes Service takes the first address and cluster DNS the tenth); use /{SERVICE_PREFIX_MAX} or shorter, such as fd01::/112"),
            ));
        }
        if service_cidr.prefix() < SERVICE_PREFIX_MIN {
            return Err(bad(
                &svc_setting,
                format!("{service_cidr} is too large: a Service range may hold at most 2^20 addresses (/{SERVICE_PREFIX_MIN} or longer), as in Kubernetes; such as fd01::/112"),
            ));
        }
        if cluster_cidr.overlaps(&service_cidr) {
            return Err(bad(
                &svc_setting,
                format!("{service_cidr} overlaps the pod range {cluster_cidr} ({pod_setting}); Services and pods need separate ranges"),
            ));
        }
        let cluster_domain = match &self.cluster_domain {
            Some((setting, v)) => {
                let v = v.trim_end_matches('.').to_ascii_lowercase();
                if !is_dns_subdomain(&v) {
                    return Err(bad(
                        setting,
                        format!("{v:?} is not a DNS domain (lower-case labels of letters, digits and '-', separated by '.'), e.g. cluster.local"),
                    ));
                }
                v
            }
            None => d.cluster_domain,
        };
        Ok(ClusterNetwork {
            cluster_cidr,
            service_cidr,
            cluster_domain,
            node_cidr_mask,
        })
    }
}

/// RFC 1123 DNS subdomain.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SelurNetworking {
    ip_family: Option<String>,
    #[serde(rename = "podCIDR")]
    pod_cidr: Option<String>,
    #[serde(rename = "serviceCIDR")]
    service_cidr: Option<String>,
    cluster_domain: Option<String>,
    #[serde(rename = "nodeCIDRMaskSize")]
    node_cidr_mask_size: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KubeadmNetworking {
    pod_subnet: Option<String>,
    service_subnet: Option<String>,
    dns_domain: Option<String>,
}

/// A config file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigFileError {
    pub file: String,
    pub message: String,
}

/// The network settings in a config file's text (`file` names it in errors),
/// and the kinds of the documents skipped.
pub fn parse_config(
    file: &str,
    text: &str,
) -> Result<(NetworkInput, Vec<String>), ConfigFileError> {
    use serde::de::IntoDeserializer;
    let err = |message: String| ConfigFileError {
        file: file.to_string(),
        message,
    };
    let mut input = NetworkInput::default();
    let mut skipped = Vec::new();
    let mut found = false;
    for (i, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let v = serde_json::Value::deserialize(doc)
            .map_err(|e| err(format!("document {n} is not valid YAML: {e}")))?;
        if v.is_null() {
            continue;
        }
        let Some(obj) = v.as_object() else {
            return Err(err(format!("document {n} is not a mapping")));
        };
        let kind = obj.get("kind").and_then(|k| k.as_str());
        let at = |field: &str| format!("{field} in {file}");
        match kind {
            None => {
                if let Some(k) = obj.keys().find(|k| *k != "networking") {
                    return Err(err(format!(
                        "document {n}: unknown field {k:?}; a Selur config has `networking: {{ipFamily, podCIDR, serviceCIDR, clusterDomain, nodeCIDRMaskSize}}`, or use kubeadm's ClusterConfiguration"
                    )));
                }
                let Some(net) = obj.get("networking") else {
                    continue;
                };
                let s: SelurNetworking =
                    SelurNetworking::deserialize(net.clone().into_deserializer())
                        .map_err(|e| err(format!("document {n}: networking: {e}")))?;
                if let Some(f) = &s.ip_family {
                    if f != "IPv6" {
                        return Err(err(format!(
                            "document {n}: networking.ipFamily: {f:?} is not supported; Selur is IPv6-only (ipFamily: IPv6)"
                        )));
                    }
                }
                input.cluster_cidr = s.pod_cidr.map(|v| (at("networking.podCIDR"), v));
                input.service_cidr = s.service_cidr.map(|v| (at("networking.serviceCIDR"), v));
                input.cluster_domain = s
                    .cluster_domain
                    .map(|v| (at("networking.clusterDomain"), v));
                input.node_cidr_mask = s
                    .node_cidr_mask_size
                    .map(|v| (at("networking.nodeCIDRMaskSize"), v));
                found = true;
            }
            Some("ClusterConfiguration") => {
                let api = obj.get("apiVersion").and_then(|a| a.as_str()).unwrap_or("");
                if !api.starts_with("kubeadm.k8s.io/") {
                    return Err(err(format!(
                        "document {n}: kind ClusterConfiguration needs apiVersion kubeadm.k8s.io/v1beta3 or v1beta4, not {api:?}"
                    )));
                }
                if let Some(net) = obj.get("networking") {
                    let k: KubeadmNetworking =
                        KubeadmNetworking::deserialize(net.clone().into_deserializer())
                            .map_err(|e| err(format!("document {n}: networking: {e}")))?;
                    input.cluster_cidr = k.pod_subnet.map(|v| (at("networking.podSubnet"), v));
                    input.service_cidr = k
                        .service_subnet
                        .map(|v| (at("networking.serviceSubnet"), v));
                    input.cluster_domain = k.dns_domain.map(|v| (at("networking.dnsDomain"), v));
                }
                found = true;
            }
            Some(other) => skipped.push(other.to_string()),
        }
    }
    if !found {
        return Err(err(format!(
            "no network settings: expected `networking:` (Selur) or a kubeadm ClusterConfiguration{}",
            if skipped.is_empty() {
                String::new()
            } else {
                format!(" (found only {})", skipped.join(", "))
            }
        )));
    }
    Ok((input, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(name: &str, v: &str) -> Option<(String, String)> {
        Some((name.to_string(), v.to_string()))
    }

    #[test]
    fn published_settings_read_back_the_same() {
        let n = ClusterNetwork::default();
        let data = n.to_config_data();
        assert_eq!(data["dnsServiceIP"], "fd01::a");
        assert_eq!(data["kubernetesServiceIP"], "fd01::1");
        assert_eq!(ClusterNetwork::from_config_data(&data).unwrap(), n);
        let mut broken = data.clone();
        broken.remove("serviceCIDR");
        let e = ClusterNetwork::from_config_data(&broken).unwrap_err();
        assert!(e.to_string().contains("serviceCIDR"), "{e}");
    }

    #[test]
    fn subnets_are_numbered_from_the_start_of_the_range() {
        let c: Ipv6Cidr = "fd00::/48".parse().unwrap();
        assert_eq!(c.subnet(64, 0).unwrap().to_string(), "fd00::/64");
        assert_eq!(c.subnet(64, 1).unwrap().to_string(), "fd00:0:0:1::/64");
        assert_eq!(
            c.subnet(64, 65535).unwrap().to_string(),
            "fd00:0:0:ffff::/64"
        );
        assert_eq!(c.subnet(64, 65536), None);
        assert_eq!(c.subnet(48, 0), None);
        let s: Ipv6Cidr = "fd00:0:0:2a::/64".parse().unwrap();
        assert_eq!(c.subnet_index(64, &s), Some(42));
        let outside: Ipv6Cidr = "fd05::/64".parse().unwrap();
        assert_eq!(c.subnet_index(64, &outside), None);
    }

    #[test]
    fn defaults_are_the_seeds_ranges() {
        let n = NetworkInput::default().resolve().unwrap();
        assert_eq!(n.cluster_cidr.to_string(), "fd00::/48");
        assert_eq!(n.service_cidr.to_string(), "fd01::/112");
        assert_eq!(n.cluster_domain, "cluster.local");
        assert_eq!(n.node_cidr_mask, 64);
        assert_eq!(n.service_cidr.nth(10).unwrap().to_string(), "fd01::a");
        assert!(n.cluster_cidr.contains("fd00:0:0:5::1".parse().unwrap()));
    }

    #[test]
    fn ipv4_dual_stack_host_bits_and_syntax_are_refused_naming_the_setting() {
        let cases = [
            ("10.42.0.0/16", "--cluster-cidr: 10.42.0.0/16 is an IPv4 range; Selur is IPv6-only"),
            ("fd00::/48,10.42.0.0/16", "--cluster-cidr: \"fd00::/48,10.42.0.0/16\" lists several ranges"),
            ("fd00::1/48", "--cluster-cidr: fd00::1/48 has bits set after its /prefix; did you mean fd00::/48?"),
            ("fd00::", "--cluster-cidr: \"fd00::\" is not an IPv6 range"),
        ];
        for (v, want) in cases {
            let e = NetworkInput {
                cluster_cidr: flag("--cluster-cidr", v),
                ..Default::default()
            }
            .resolve()
            .unwrap_err();
            assert!(e.to_string().starts_with(want), "{v}: {e}");
        }
    }

    #[test]
    fn overlapping_too_small_and_too_large_ranges_are_refused() {
        let e = NetworkInput {
            service_cidr: flag("--service-cidr", "fd00:0:0:1::/112"),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(e.setting, "--service-cidr");
        assert!(
            e.message.contains("overlaps the pod range fd00::/48"),
            "{e}"
        );

        let e = NetworkInput {
            service_cidr: flag("--service-cidr", "fd01::/126"),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.message.contains("too small"), "{e}");
        let e = NetworkInput {
            service_cidr: flag("--service-cidr", "fd01::/64"),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.message.contains("too large"), "{e}");

        let e = NetworkInput {
            cluster_cidr: flag("--cluster-cidr", "fd00::/64"),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(e.setting, "--cluster-cidr");
        assert!(
            e.message.contains("too small to hand out /64 node ranges"),
            "{e}"
        );
        let e = NetworkInput {
            node_cidr_mask: Some(("--node-cidr-mask".into(), 124)),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(e.setting, "--node-cidr-mask");

        let e = NetworkInput {
            cluster_domain: flag("--cluster-domain", "Bad_Domain"),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(e.setting, "--cluster-domain");
        let ok = NetworkInput {
            cluster_domain: flag("--cluster-domain", "Corp.Example."),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(ok.cluster_domain, "corp.example");
    }

    #[test]
    fn both_config_forms_of_the_seed_parse_and_flags_win() {
        let selur = "# Kubernetes CNI config\nnetworking:\n  ipFamily: IPv6\n  podCIDR: \"fd00::/48\"\n  serviceCIDR: \"fd01::/112\"\n";
        let (i, skipped) = parse_config("selur.yaml", selur).unwrap();
        assert!(skipped.is_empty());
        let n = i.resolve().unwrap();
        assert_eq!(n, ClusterNetwork::default());

        let kubeadm = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\n---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nkubernetesVersion: v1.33.0\nnetworking:\n  serviceSubnet: \"fd01::/112\"\n  podSubnet: \"fd02::/56\"\n  dnsDomain: corp.local\n";
        let (i, skipped) = parse_config("kubeadm.yaml", kubeadm).unwrap();
        assert_eq!(skipped, ["InitConfiguration"]);
        let n = i.clone().resolve().unwrap();
        assert_eq!(n.cluster_cidr.to_string(), "fd02::/56");
        assert_eq!(n.cluster_domain, "corp.local");

        // A flag wins over the file.
        let n = i
            .overridden_by(NetworkInput {
                cluster_cidr: flag("--cluster-cidr", "fd03::/48"),
                ..Default::default()
            })
            .resolve()
            .unwrap();
        assert_eq!(n.cluster_cidr.to_string(), "fd03::/48");
        assert_eq!(n.cluster_domain, "corp.local");

        // Errors name the file's field.
        let (i, _) = parse_config(
            "k.yaml",
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: 10.244.0.0/16\n",
        )
        .unwrap();
        let e = i.resolve().unwrap_err();
        assert_eq!(e.setting, "networking.podSubnet in k.yaml");
    }

    #[test]
    fn bad_config_files_say_what_and_where() {
        let e = parse_config("c.yaml", "networking:\n  ipFamily: IPv4\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("networking.ipFamily: \"IPv4\" is not supported"),
            "{e}"
        );
        let e = parse_config("c.yaml", "networking:\n  podCIRD: fd00::/48\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("c.yaml: document 1: networking: unknown field `podCIRD`"),
            "{e}"
        );
        let e = parse_config("c.yaml", "network:\n  podCIDR: fd00::/48\n").unwrap_err();
        assert!(e.to_string().contains("unknown field \"network\""), "{e}");
        let e = parse_config("c.yaml", "kind: KubeletConfiguration\n").unwrap_err();
        assert!(
            e.to_string().contains("found only KubeletConfiguration"),
            "{e}"
        );
        let e = parse_config("c.yaml", "networking: [\n").unwrap_err();
        assert!(e.to_string().contains("not valid YAML"), "{e}");
    }
}
