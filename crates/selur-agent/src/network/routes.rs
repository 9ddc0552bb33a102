//! Routes to the other nodes' pod ranges: each node's /64 (`spec.podCIDR`)
//! via its `InternalIP`, kept in line with the Nodes the API lists. The
//! routes carry their own protocol number ([`ROUTE_PROTO`]), so the sync
//! (and `selur node reset`) finds exactly Selur's routes and nothing else.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use serde_json::Value;

use selur_api::network::Ipv6Cidr;
use selur_client::watcher::Event;
use selur_client::{Api, ListParams};
use selur_runtime::sandbox::{ip, ip_output};

use super::{NetworkError, NodeNetwork};
use crate::Agent;

/// The routing protocol number of Selur's routes (`ip route ... proto 83`).
pub const ROUTE_PROTO: &str = "83";

/// The `InternalIP` (IPv6) of a Node object.
pub fn internal_ip(node: &Value) -> Option<Ipv6Addr> {
    node.pointer("/status/addresses")?
        .as_array()?
        .iter()
        .filter(|a| a["type"] == "InternalIP")
        .find_map(|a| a["address"].as_str()?.parse().ok())
}

/// The routes this node wants: every other node's pod range via its address.
pub fn desired<'a>(
    nodes: impl Iterator<Item = &'a Value>,
    me: &str,
    mine: Ipv6Cidr,
) -> BTreeMap<String, Ipv6Addr> {
    nodes
        .filter(|n| n["metadata"]["name"].as_str() != Some(me))
        .filter_map(|n| {
            let cidr: Ipv6Cidr = n.pointer("/spec/podCIDR")?.as_str()?.parse().ok()?;
            (cidr != mine).then_some(())?;
            Some((cidr.to_string(), internal_ip(n)?))
        })
        .collect()
}

/// Selur's routes present now: destination to next hop.
pub fn current() -> Result<BTreeMap<String, Ipv6Addr>, NetworkError> {
    let out = ip_output(&["-6", "-j", "route", "show", "proto", ROUTE_PROTO])?;
    let routes: Vec<Value> = serde_json::from_slice(&out).unwrap_or_default();
    Ok(routes
        .iter()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?;
            let via = r["gateway"].as_str()?.parse().ok()?;
            // `ip` prints a /64 as given; normalise through the parser.
            let cidr: Ipv6Cidr = dst.parse().ok()?;
            Some((cidr.to_string(), via))
        })
        .collect())
}

/// Make Selur's routes `want`: replace what differs, delete what is gone.
pub fn sync(want: &BTreeMap<String, Ipv6Addr>) -> Result<(), NetworkError> {
    let have = current()?;
    for (dst, via) in want {
        if have.get(dst) != Some(via) {
            ip(&[
                "-6",
                "route",
                "replace",
                dst,
                "via",
                &via.to_string(),
                "proto",
                ROUTE_PROTO,
            ])?;
        }
    }
    for dst in have.keys().filter(|d| !want.contains_key(*d)) {
        ip(&["-6", "route", "del", dst, "proto", ROUTE_PROTO])?;
    }
    Ok(())
}

/// Remove every Selur route (`selur node reset`). Safe to repeat.
pub fn remove_all() -> Result<(), NetworkError> {
    sync(&BTreeMap::new())
}

/// Follow the Nodes and keep the routes in line, forever.
pub async fn run(agent: Arc<Agent>, net: Arc<NodeNetwork>) {
    let mut watcher = Api::<Node>::all(agent.client.clone()).watcher(ListParams::default());
    let me = agent.config.node_name.clone();
    let mut applied: Option<BTreeMap<String, Ipv6Addr>> = None;
    loop {
        // Drain what arrived together, then sync once.
        let _: Event = watcher.next().await;
        while let Ok(ev) =
            tokio::time::timeout(std::time::Duration::from_millis(20), watcher.next()).await
        {
            drop(ev);
        }
        let want = desired(watcher.known(), &me, net.pod_cidr);
        if applied.as_ref() == Some(&want) {
            continue;
        }
        let w = want.clone();
        match tokio::task::spawn_blocking(move || sync(&w)).await {
            Ok(Ok(())) => {
                tracing::info!(routes = want.len(), "routes to other nodes' pods updated");
                applied = Some(want);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot update the routes to other nodes' pods");
                applied = None;
            }
            Err(e) => tracing::warn!(error = %e, "route sync task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Value {
        let mut n = json!({"metadata": {"name": name}, "spec": {}, "status": {"addresses": []}});
        if let Some(c) = cidr {
            n["spec"]["podCIDR"] = json!(c);
        }
        if let Some(i) = ip {
            n["status"]["addresses"] = json!([{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": i}]);
        }
        n
    }

    #[test]
    fn other_nodes_with_a_range_and_an_address_are_routed() {
        let mine: Ipv6Cidr = "fd00:0:0:1::/64".parse().unwrap();
        let nodes = [
            node("a", Some("fd00:0:0:1::/64"), Some("fdfa::1")),
            node("b", Some("fd00:0:0:2::/64"), Some("fdfa::2")),
            node("c", Some("fd00:0:0:3::/64"), None),
            node("d", None, Some("fdfa::4")),
            node("e", Some("fd00:0:0:5::/64"), Some("10.0.0.5")),
        ];
        let want = desired(nodes.iter(), "a", mine);
        assert_eq!(
            want,
            BTreeMap::from([("fd00:0:0:2::/64".to_string(), "fdfa::2".parse().unwrap())])
        );
    }
}
