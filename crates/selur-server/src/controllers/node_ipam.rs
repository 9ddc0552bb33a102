//! Node IPAM: every Node gets its own slice of the cluster's pod range
//! (`--cluster-cidr`, a `/--node-cidr-mask` each, `fd00::/64`,
//! `fd00:0:0:1::/64`, ... with the defaults) as `spec.podCIDR` and
//! `spec.podCIDRs`, the lowest free one first, as kube-controller-manager's
//! node IPAM does. A range is free again once its Node is deleted. Passes
//! never overlap (one task), so two nodes never get the same range. A node
//! that already has a `podCIDR` keeps it; one outside the cluster range, or
//! taken by another node, is left alone and logged.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use selur_api::kinds;
use selur_api::network::{ClusterNetwork, Ipv6Cidr};
use selur_store::Event;

use crate::registry::{decode_kv, prefix, Registry, Subresource};
use crate::status::{ApiError, ApiResult};

/// A node without a range is what this controller acts on; heartbeats of
/// nodes that have one (most node writes) do not start a pass.
pub fn relevant(ev: &Event) -> bool {
    ev.kv.key.starts_with("/registry/core/nodes/") && !super::contains(&ev.kv.value, b"\"podCIDR\"")
}

/// The annotation an agent puts its node address in at registration, so a
/// range is chosen knowing it (the Node's status comes a moment later).
pub const NODE_IP_ANNOTATION: &str = "selur.io/node-ip";

/// The ranges to hand out: for each node without one (in name order), the
/// lowest range no node holds and that holds none of the nodes' own
/// addresses `avoid` (a machine whose network is `fd00::/64` must not get
/// that range for its pods: its bridge would take over the machine's own
/// subnet). Nodes that cannot get one (the range is used up) are left out.
pub fn plan(
    net: &ClusterNetwork,
    nodes: &[(String, Option<String>)],
    avoid: &[std::net::Ipv6Addr],
) -> Vec<(String, Ipv6Cidr)> {
    let mask = net.node_cidr_mask;
    let mut used: BTreeSet<u128> = BTreeSet::new();
    for (name, cidr) in nodes {
        let Some(text) = cidr else { continue };
        match text
            .parse::<Ipv6Cidr>()
            .ok()
            .and_then(|c| net.cluster_cidr.subnet_index(mask, &c))
        {
            Some(i) => {
                if !used.insert(i) {
                    tracing::warn!(node = %name, pod_cidr = %text, "node's podCIDR is also another node's");
                }
            }
            None => {
                tracing::warn!(node = %name, pod_cidr = %text, cluster_cidr = %net.cluster_cidr,
                    node_mask = mask, "node's podCIDR is not one of the cluster's node ranges; left as it is")
            }
        }
    }
    let mut want: Vec<&String> = nodes
        .iter()
        .filter(|(_, c)| c.is_none())
        .map(|(n, _)| n)
        .collect();
    want.sort();
    let mut out = Vec::new();
    let mut next: u128 = 0;
    for name in want {
        while used.contains(&next)
            || net
                .cluster_cidr
                .subnet(mask, next)
                .is_some_and(|c| avoid.iter().any(|ip| c.contains(*ip)))
        {
            next += 1;
        }
        let Some(c) = net.cluster_cidr.subnet(mask, next) else {
            tracing::warn!(node = %name, cluster_cidr = %net.cluster_cidr, node_mask = mask,
                "no free node range left for this node's pods");
            break;
        };
        used.insert(next);
        out.push((name.clone(), c));
    }
    out
}

/// A Node's own IPv6 addresses: its annotation and status addresses.
fn node_addresses(n: &Value) -> Vec<std::net::Ipv6Addr> {
    let mut out: Vec<std::net::Ipv6Addr> = n
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a["address"].as_str()?.parse().ok())
        .collect();
    if let Some(ip) = n
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(NODE_IP_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
    {
        out.push(ip);
    }
    out
}

/// One pass over all nodes.
pub async fn pass(reg: Registry, net: ClusterNetwork) -> ApiResult<()> {
    let node_kind = kinds::by_cli_name("nodes")
        .ok_or_else(|| ApiError::internal("kind nodes missing".to_string()))?;
    let (items, _) = reg.list_all(&prefix(node_kind, None)).await?;
    let mut nodes = Vec::new();
    let mut avoid = Vec::new();
    for kv in &items {
        let n = decode_kv(kv)?;
        let Some(name) = n.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        if n.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let cidr = n
            .pointer("/spec/podCIDR")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from);
        nodes.push((name.to_string(), cidr));
        avoid.extend(node_addresses(&n));
    }
    for (name, cidr) in plan(&net, &nodes, &avoid) {
        let c = cidr.to_string();
        let patch = json!({"spec": {"podCIDR": c, "podCIDRs": [c]}});
        match reg
            .merge(node_kind, None, &name, &patch, Subresource::Main)
            .await
        {
            Ok(_) => tracing::info!(node = %name, pod_cidr = %c, "node range assigned"),
            // Deleted meanwhile: nothing to do.
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str, cidr: Option<&str>) -> (String, Option<String>) {
        (name.to_string(), cidr.map(String::from))
    }

    #[test]
    fn the_lowest_free_ranges_go_to_nodes_without_one() {
        let net = ClusterNetwork::default();
        let got = plan(
            &net,
            &[
                n("b", None),
                n("a", Some("fd00::/64")),
                n("c", None),
                n("d", Some("fd00:0:0:2::/64")),
                // Not one of the cluster's ranges: kept, nothing reserved.
                n("e", Some("fd09::/64")),
            ],
            &[],
        );
        let got: Vec<(String, String)> = got.into_iter().map(|(a, c)| (a, c.to_string())).collect();
        assert_eq!(
            got,
            [
                ("b".to_string(), "fd00:0:0:1::/64".to_string()),
                ("c".to_string(), "fd00:0:0:3::/64".to_string())
            ]
        );
    }

    #[test]
    fn a_full_cluster_range_leaves_the_rest_without_one() {
        let net = selur_api::network::NetworkInput {
            cluster_cidr: Some(("--cluster-cidr".into(), "fd00::/63".into())),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let got = plan(&net, &[n("a", None), n("b", None), n("c", None)], &[]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1.to_string(), "fd00:0:0:1::/64");
    }

    #[test]
    fn ranges_holding_a_nodes_own_address_are_skipped() {
        // The machine's network is fd00::/64 (eth0 fd00::2): its pods must
        // not get that range, or the node bridge takes over its subnet.
        let net = ClusterNetwork::default();
        let avoid = ["fd00::2".parse().unwrap()];
        let got = plan(&net, &[n("a", None), n("b", None)], &avoid);
        let got: Vec<String> = got.into_iter().map(|(_, c)| c.to_string()).collect();
        assert_eq!(got, ["fd00:0:0:1::/64", "fd00:0:0:2::/64"]);
    }
}
