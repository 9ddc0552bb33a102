//! Selur's per-node Service proxy, in the style of kube-proxy's nftables
//! mode, IPv6 only.
//!
//! [`render`] is a pure function from the node's [`ProxyConfig`] and a
//! snapshot of Services and EndpointSlices to a [`Ruleset`]: one nft table
//! (family `ip6`) with verdict maps from ClusterIP/NodePort to per-service
//! chains, `numgen` load balancing over ready endpoints, ClientIP affinity,
//! rejects for Services without endpoints, masquerading and hostPorts.
//! [`apply`] and [`Proxy`] install it with one `nft -j -f -` process and one
//! atomic transaction per update; [`Nft`] runs nft, optionally inside
//! another network namespace.
//!
//! Not here: watching the API (the agent hands in snapshots), the DNS
//! server behind [`ProxyConfig::dns_ip`], externalIPs, LoadBalancer ingress
//! IPs, `externalTrafficPolicy`/`internalTrafficPolicy: Local`, topology
//! hints, and routes (the node must route the Service range somewhere, as
//! with kube-proxy).

#![forbid(unsafe_code)]

pub mod config;
pub mod model;
pub mod nft;
pub mod render;
pub mod ruleset;

pub use config::{HostPort, Ipv6Net, Protocol, ProxyConfig};
pub use nft::{apply, normalize_listing, Nft, Proxy};
pub use render::render;
pub use ruleset::Ruleset;

/// What can go wrong configuring or running the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid IPv6 prefix {value:?}")]
    InvalidPrefix { value: String },
    #[error("invalid nft or interface name {name:?}")]
    InvalidName { name: String },
    #[error("running {command}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed (exit {status:?}): {stderr}")]
    Nft {
        command: String,
        status: Option<i32>,
        stderr: String,
    },
    #[error("encoding the nft transaction")]
    Encode(#[source] serde_json::Error),
    #[error("decoding nft's JSON output")]
    Decode(#[source] serde_json::Error),
}

#[cfg(test)]
mod tests;
