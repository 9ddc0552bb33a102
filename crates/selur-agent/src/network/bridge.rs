//! The node bridge: created once, idempotently (an agent restarted after a
//! SIGKILL finds it as it left it), with the pods' gateway address and the
//! cluster DNS address, both without duplicate address detection so they
//! answer at once. IPv6 forwarding is turned on; interfaces that accepted
//! router advertisements keep doing so (`accept_ra=2`), as forwarding
//! would otherwise stop them.

use std::net::Ipv6Addr;
use std::path::Path;

use serde_json::Value;

use selur_api::network::Ipv6Cidr;
use selur_runtime::sandbox::{ip, ip_output, link_exists};

use super::NetworkError;

/// Refuse `ranges` (each with what it is) when a route of the node's own
/// network (not the bridge's, not Selur's routes to other nodes) overlaps
/// one: a bridge holding `fd00::1/64` on a machine whose own subnet is
/// `fd00::/64` would take over its gateway's address.
pub fn check_free(bridge: &str, ranges: &[(&str, Ipv6Cidr)]) -> Result<(), NetworkError> {
    let out = ip_output(&["-6", "-j", "route", "show"])?;
    let routes: Vec<Value> = serde_json::from_slice(&out).unwrap_or_default();
    overlap(&routes, bridge, ranges)
}

fn overlap(
    routes: &[Value],
    bridge: &str,
    ranges: &[(&str, Ipv6Cidr)],
) -> Result<(), NetworkError> {
    for r in routes {
        let dev = r["dev"].as_str().unwrap_or("");
        if dev.is_empty()
            || dev == bridge
            || dev == "lo"
            || r["protocol"] == super::routes::ROUTE_PROTO
        {
            continue;
        }
        let Some(dst) = r["dst"].as_str().filter(|d| *d != "default") else {
            continue;
        };
        let parsed = if dst.contains('/') {
            dst.parse::<Ipv6Cidr>()
        } else {
            format!("{dst}/128").parse::<Ipv6Cidr>()
        };
        let Ok(route) = parsed else { continue };
        for (what, range) in ranges {
            if route.overlaps(range) {
                return Err(NetworkError::Settings(format!(
                    "{what} {range} overlaps the route {dst} on {dev}, this machine's own network: the node bridge would take over its addresses. Give the server a --cluster-cidr (and --service-cidr) this network does not use, e.g. fd10::/48 and fd11::/112"
                )));
            }
        }
    }
    Ok(())
}

/// The bridge's link-local address.
pub const BRIDGE_LINK_LOCAL: &str = "fe80::1/64";

/// Create (or complete) the bridge `name` with `gateway` in `range`, and
/// `dns` as a /128, and bring it up.
pub fn ensure(
    name: &str,
    range: Ipv6Cidr,
    gateway: Ipv6Addr,
    dns: Option<Ipv6Addr>,
) -> Result<(), NetworkError> {
    if !link_exists(name) {
        match ip(&["link", "add", name, "type", "bridge"]) {
            // Made by a concurrent attempt meanwhile: fine.
            Err(_) if link_exists(name) => {}
            r => r?,
        }
    }
    // No generated link-local to wait for (duplicate address detection
    // takes a second or two), but a fixed one at once: the kernel sends
    // neighbour solicitations for forwarded packets only from a usable
    // link-local address, so without it pods are unreachable from other
    // nodes.
    ip(&["link", "set", name, "addrgenmode", "none"]).ok();
    ip(&["addr", "replace", BRIDGE_LINK_LOCAL, "dev", name, "nodad"])?;
    let gw = format!("{gateway}/{}", range.prefix());
    ip(&["addr", "replace", &gw, "dev", name, "nodad"])?;
    if let Some(d) = dns {
        ip(&["addr", "replace", &format!("{d}/128"), "dev", name, "nodad"])?;
    }
    ip(&["link", "set", name, "up"])?;
    Ok(())
}

/// Route the Service range to the bridge, so the node's own connections to
/// a ClusterIP find a route (the proxy's output chain DNATs them after the
/// route lookup) also on a node without a default route. Goes with the
/// bridge.
pub fn route_services(name: &str, services: Ipv6Cidr) -> Result<(), NetworkError> {
    Ok(ip(&[
        "-6",
        "route",
        "replace",
        &services.to_string(),
        "dev",
        name,
    ])?)
}

/// Add `addr`/128 to `dev` without duplicate address detection (the
/// cluster DNS address on loopback in CNI mode). Safe to repeat.
pub fn add_local_address(dev: &str, addr: Ipv6Addr) -> Result<(), NetworkError> {
    Ok(ip(&[
        "addr",
        "replace",
        &format!("{addr}/128"),
        "dev",
        dev,
        "nodad",
    ])?)
}

/// Remove `addr`/128 from `dev` if it is there (`selur node reset`).
pub fn remove_local_address(dev: &str, addr: &str) -> Result<bool, NetworkError> {
    let out = ip_output(&["-6", "-o", "addr", "show", "dev", dev])?;
    let want = format!(" {addr}/128 ");
    if !String::from_utf8_lossy(&out).contains(&want) {
        return Ok(false);
    }
    ip(&["addr", "del", &format!("{addr}/128"), "dev", dev])?;
    Ok(true)
}

/// Remove the bridge (`selur node reset`). Safe to repeat.
pub fn remove(name: &str) -> Result<(), NetworkError> {
    Ok(selur_runtime::sandbox::remove_link(name)?)
}

fn write_sysctl(path: &Path, value: &str) -> Result<(), NetworkError> {
    std::fs::write(path, value).map_err(|source| NetworkError::Io {
        what: "writing",
        path: path.to_path_buf(),
        source,
    })
}

/// Turn IPv6 forwarding on in this network namespace; interfaces taking
/// router advertisements (`accept_ra=1`) are moved to `accept_ra=2` first,
/// so the node keeps its default route.
pub fn enable_forwarding() -> Result<(), NetworkError> {
    let conf = Path::new("/proc/sys/net/ipv6/conf");
    let fwd = conf.join("all/forwarding");
    if std::fs::read_to_string(&fwd).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    if let Ok(entries) = std::fs::read_dir(conf) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name == "all" || name == "lo" {
                continue;
            }
            let ra = e.path().join("accept_ra");
            if std::fs::read_to_string(&ra).is_ok_and(|v| v.trim() == "1") {
                write_sysctl(&ra, "2")?;
            }
        }
    }
    write_sysctl(&fwd, "1")
}

/// The first global IPv6 address of an up interface other than `bridge`,
/// loopback and pods' veth ends: the node's own address.
pub fn detect_node_ip(bridge: &str) -> Option<Ipv6Addr> {
    let out = ip_output(&["-6", "-j", "addr", "show", "scope", "global"]).ok()?;
    let links: Vec<Value> = serde_json::from_slice(&out).ok()?;
    pick_node_ip(&links, bridge)
}

fn pick_node_ip(links: &[Value], bridge: &str) -> Option<Ipv6Addr> {
    links
        .iter()
        .filter(|l| {
            let name = l["ifname"].as_str().unwrap_or("");
            name != bridge && name != "lo" && !name.starts_with("sel")
        })
        .filter(|l| {
            l["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP"))
        })
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["family"] == "inet6" && a["scope"] == "global")
        .filter(|a| a.get("tentative").is_none() && a.get("deprecated").is_none())
        .find_map(|a| a["local"].as_str().and_then(|s| s.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ranges_the_machines_own_network_uses_are_refused() {
        let routes = vec![
            json!({"dst": "fd00::/64", "dev": "eth0", "protocol": "kernel"}),
            json!({"dst": "default", "gateway": "fd00::1", "dev": "eth0"}),
            json!({"dst": "fd00:0:0:2::/64", "gateway": "fdfa::2", "dev": "eth0", "protocol": "83"}),
            json!({"dst": "fd00:0:0:1::/64", "dev": "selur0", "protocol": "kernel"}),
            json!({"dst": "fe80::/64", "dev": "eth0", "protocol": "kernel"}),
        ];
        let mine: Ipv6Cidr = "fd00:0:0:1::/64".parse().unwrap();
        let svc: Ipv6Cidr = "fd01::/112".parse().unwrap();
        assert!(overlap(&routes, "selur0", &[("pods", mine), ("services", svc)]).is_ok());
        let taken: Ipv6Cidr = "fd00::/64".parse().unwrap();
        let e = overlap(&routes, "selur0", &[("this node's pod range", taken)]).unwrap_err();
        assert!(
            e.to_string().contains("on eth0") && e.to_string().contains("--cluster-cidr"),
            "{e}"
        );
    }

    #[test]
    fn the_node_address_skips_the_bridge_pods_and_tentative_ones() {
        let links = vec![
            json!({"ifname": "selur0", "flags": ["UP"], "addr_info": [{"family": "inet6", "local": "fd00:0:0:1::1", "scope": "global"}]}),
            json!({"ifname": "eth1", "flags": ["BROADCAST"], "addr_info": [{"family": "inet6", "local": "2001:db8::9", "scope": "global"}]}),
            json!({"ifname": "eth0", "flags": ["UP"], "addr_info": [
                {"family": "inet6", "local": "2001:db8::1", "scope": "global", "tentative": true},
                {"family": "inet6", "local": "2001:db8::2", "scope": "global"}]}),
        ];
        assert_eq!(
            pick_node_ip(&links, "selur0"),
            Some("2001:db8::2".parse().unwrap())
        );
        assert_eq!(pick_node_ip(&links[..2], "selur0"), None);
    }
}
