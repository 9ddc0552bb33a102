//! What the proxy needs to know about its node, besides the Services.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::ProxyError;

/// An IPv6 prefix such as `fd00::/48` (host bits must be zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv6Net {
    addr: Ipv6Addr,
    len: u8,
}

impl Ipv6Net {
    /// A prefix from its address and length; refuses host bits and lengths
    /// over 128.
    pub fn new(addr: Ipv6Addr, len: u8) -> Result<Self, ProxyError> {
        let invalid = || ProxyError::InvalidPrefix {
            value: format!("{addr}/{len}"),
        };
        if len > 128 {
            return Err(invalid());
        }
        let bits = u128::from(addr);
        let host = if len == 0 {
            u128::MAX
        } else {
            u128::MAX >> len
        };
        if len < 128 && bits & host != 0 {
            return Err(invalid());
        }
        Ok(Self { addr, len })
    }

    /// The network address.
    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` lies inside the prefix.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        if self.len == 0 {
            return true;
        }
        let mask = u128::MAX << (128 - u32::from(self.len));
        u128::from(ip) & mask == u128::from(self.addr)
    }
}

impl FromStr for Ipv6Net {
    type Err = ProxyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ProxyError::InvalidPrefix {
            value: s.to_string(),
        };
        let (addr, len) = s.split_once('/').ok_or_else(invalid)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| invalid())?;
        let len: u8 = len.parse().map_err(|_| invalid())?;
        Self::new(addr, len).map_err(|_| invalid())
    }
}

impl fmt::Display for Ipv6Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A transport protocol a Service port or hostPort can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// From the Kubernetes spelling (`TCP`, `UDP`, `SCTP`); absent means TCP.
    pub fn from_k8s(value: Option<&str>) -> Option<Self> {
        match value.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// The nft spelling (`tcp`, `udp`, `sctp`).
    pub fn nft(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

/// A container's hostPort on this node: traffic to a node address on
/// `host_port` goes to `[pod_ip]:container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    pub protocol: Protocol,
    pub host_port: u16,
    pub pod_ip: Ipv6Addr,
    pub container_port: u16,
}

/// The node-level settings of one proxy instance; check them once with
/// [`ProxyConfig::validate`] (rendering takes them as they are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The nft table (family `ip6`) this instance owns, e.g. `selur`; one per
    /// agent so that several agents on one host do not meet.
    pub table: String,
    /// The node's pod bridge, e.g. `selur0`.
    pub bridge: String,
    /// All pods of the cluster, e.g. `fd00::/48`.
    pub cluster_cidr: Ipv6Net,
    /// This node's pod range, e.g. `fd00:0:0:1::/64`.
    pub node_pod_cidr: Ipv6Net,
    /// The Service range, e.g. `fd01::/112`.
    pub service_cidr: Ipv6Net,
    /// The node's own addresses: NodePort and hostPort destinations. Empty
    /// means "any local address" (`fib daddr type local`) for hostPorts.
    pub node_ips: Vec<Ipv6Addr>,
    /// The cluster DNS address, answered by the agent itself: never DNATed,
    /// never rejected.
    pub dns_ip: Ipv6Addr,
    /// NAT66 for pod traffic leaving the cluster range.
    pub masquerade_egress: bool,
    /// Container hostPorts on this node.
    pub host_ports: Vec<HostPort>,
}

/// Whether `name` is a valid nft identifier as the nft scanner reads one:
/// a letter first, then letters, digits, `_`, `-`, `.` and `/`; at most 200
/// characters here (the kernel allows 256).
pub fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    first_ok
        && name.len() <= 200
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
}

/// Whether `name` can be an interface name (`IFNAMSIZ` is 16 with the NUL).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl ProxyConfig {
    /// Checks the names the ruleset embeds.
    pub fn validate(&self) -> Result<(), ProxyError> {
        if !valid_identifier(&self.table) {
            return Err(ProxyError::InvalidName {
                name: self.table.clone(),
            });
        }
        if !valid_ifname(&self.bridge) {
            return Err(ProxyError::InvalidName {
                name: self.bridge.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_contain() {
        let net: Ipv6Net = "fd00::/48".parse().unwrap();
        assert!(net.contains("fd00:0:0:1::5".parse().unwrap()));
        assert!(!net.contains("fd01::5".parse().unwrap()));
        assert_eq!(net.to_string(), "fd00::/48");
        assert!("fd00::1/48".parse::<Ipv6Net>().is_err());
        assert!("fd00::/129".parse::<Ipv6Net>().is_err());
        assert!("10.0.0.0/8".parse::<Ipv6Net>().is_err());
        let all: Ipv6Net = "::/0".parse().unwrap();
        assert!(all.contains("fd01::1".parse().unwrap()));
    }

    #[test]
    fn identifiers_follow_the_nft_scanner() {
        assert!(valid_identifier("selur"));
        assert!(valid_identifier("svc-ABC-ns/name/tcp/80"));
        assert!(!valid_identifier("9abc"));
        assert!(!valid_identifier("a b"));
        assert!(!valid_identifier("a:b"));
        assert!(!valid_identifier(""));
    }
}
