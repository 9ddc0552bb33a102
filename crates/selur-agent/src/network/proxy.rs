//! The node's Service proxy and cluster DNS, fed from one watch cache of
//! Services, EndpointSlices and Pods: every change (several arriving
//! together are taken as one) renders the nftables table again (applied as
//! one transaction, only what changed, by `selur-proxy`) and rebuilds the
//! DNS records (`selur-dns`), served on the cluster DNS address bound on the
//! node bridge. After an agent restart the first apply replaces the whole
//! table, so nothing stale stays.

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde_json::Value;

use selur_client::watcher::{object_key, Event, Watcher};
use selur_client::{Api, ListParams};
use selur_proxy::{HostPort, Ipv6Net, Protocol, Proxy, ProxyConfig};

use super::{NetworkError, NodeNetwork};
use crate::Agent;

/// The nftables table of the agent's Service proxy.
pub const TABLE: &str = "selur";

/// How long changes are gathered before one update.
const SETTLE: Duration = Duration::from_millis(20);
/// The same when only pods changed.
const PODS_SETTLE: Duration = Duration::from_millis(200);

/// Delete the proxy's table `name` if there; whether it was. Safe to repeat.
pub fn remove_table(name: &str) -> Result<bool, NetworkError> {
    let nft = selur_proxy::Nft::new();
    if nft.list(name).is_err() {
        return Ok(false);
    }
    nft.remove(name)
        .map(|()| true)
        .map_err(|e| NetworkError::Settings(e.to_string()))
}

fn net(c: &selur_api::network::Ipv6Cidr) -> Result<Ipv6Net, NetworkError> {
    Ipv6Net::new(c.addr(), c.prefix()).map_err(|e| NetworkError::Settings(e.to_string()))
}

/// The proxy's settings for this node (host ports from `pods`).
fn config(node: &NodeNetwork, pods: &[Pod], me: &str) -> Result<ProxyConfig, NetworkError> {
    let dns_ip = node
        .dns_ip()
        .ok_or_else(|| NetworkError::Settings("the service range has no DNS address".into()))?;
    Ok(ProxyConfig {
        table: TABLE.to_string(),
        bridge: node.bridge.clone(),
        cluster_cidr: net(&node.cluster.cluster_cidr)?,
        node_pod_cidr: net(&node.pod_cidr)?,
        service_cidr: net(&node.cluster.service_cidr)?,
        node_ips: node.node_ip.into_iter().collect(),
        dns_ip,
        masquerade_egress: true,
        host_ports: host_ports(pods, me),
    })
}

/// The `hostPort`s of this node's running pods.
fn host_ports(pods: &[Pod], me: &str) -> Vec<HostPort> {
    let mut out = Vec::new();
    for p in pods {
        let Some(spec) = &p.spec else { continue };
        if spec.node_name.as_deref() != Some(me) || p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(ip) = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|s| s.parse::<Ipv6Addr>().ok())
        else {
            continue;
        };
        for c in &spec.containers {
            for port in c.ports.iter().flatten() {
                let (Some(hp), Ok(cp)) = (port.host_port, u16::try_from(port.container_port))
                else {
                    continue;
                };
                let (Ok(hp), Some(proto)) = (
                    u16::try_from(hp),
                    Protocol::from_k8s(port.protocol.as_deref()),
                ) else {
                    continue;
                };
                out.push(HostPort {
                    protocol: proto,
                    host_port: hp,
                    pod_ip: ip,
                    container_port: cp,
                });
            }
        }
    }
    out.sort_by_key(|h| (h.host_port, h.pod_ip));
    out
}

fn typed<T: DeserializeOwned>(objects: impl Iterator<Item = Value>) -> Vec<T> {
    objects
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect()
}

/// Start the cluster DNS server on the DNS address (bound on the bridge).
async fn start_dns(node: &NodeNetwork) -> Option<selur_dns::DnsHandle> {
    let ip = node.dns_ip()?;
    let addr = SocketAddr::from((ip, 53));
    let udp = match tokio::net::UdpSocket::bind(addr).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot bind the cluster DNS (UDP); pods get no cluster DNS");
            return None;
        }
    };
    let tcp = match tokio::net::TcpListener::bind(addr).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot bind the cluster DNS (TCP); pods get no cluster DNS");
            return None;
        }
    };
    let text = std::fs::read_to_string(&node.resolv_conf).unwrap_or_default();
    let mut cfg = selur_dns::DnsConfig::new(
        node.cluster.cluster_domain.clone(),
        selur_dns::upstreams_from_resolv_conf(&text),
    );
    cfg.dns64_prefix = node.dns64_prefix;
    match selur_dns::serve(cfg, udp, tcp).await {
        Ok((handle, server)) => {
            // Runs as long as the agent; its task is detached.
            drop(server);
            tracing::info!(%addr, "cluster DNS listening");
            Some(handle)
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot start the cluster DNS");
            None
        }
    }
}

/// Which collection an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Services,
    Slices,
    Pods,
}

/// Run `watcher` in a task of its own, sending its events on `tx` (so the
/// loop below waits on a channel, which is cancel-safe, never on a
/// watcher's list or watch request).
fn forward<S>(
    mut watcher: Watcher<S>,
    source: Source,
    tx: tokio::sync::mpsc::Sender<(Source, Event)>,
) where
    S: selur_client::watcher::Source + 'static,
{
    tokio::spawn(async move {
        loop {
            let ev = watcher.next().await;
            if tx.send((source, ev)).await.is_err() {
                return;
            }
        }
    });
}

/// The objects of one collection, kept from its watcher's events.
#[derive(Default)]
struct Cache(std::collections::BTreeMap<String, Value>);

impl Cache {
    fn apply(&mut self, ev: Event) {
        match ev {
            Event::Applied(o) => {
                self.0.insert(object_key(&o), o);
            }
            Event::Deleted(o) => {
                self.0.remove(&object_key(&o));
            }
        }
    }

    fn values(&self) -> impl Iterator<Item = Value> + '_ {
        self.0.values().cloned()
    }
}

/// Keep the proxy table and the DNS records in line with the API, forever.
pub async fn run(agent: Arc<Agent>, node: Arc<NodeNetwork>) {
    let dns = start_dns(&node).await;
    let client = agent.client.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    forward(
        Api::<Service>::all(client.clone()).watcher(ListParams::default()),
        Source::Services,
        tx.clone(),
    );
    forward(
        Api::<EndpointSlice>::all(client.clone()).watcher(ListParams::default()),
        Source::Slices,
        tx.clone(),
    );
    forward(
        Api::<Pod>::all(client).watcher(ListParams::default()),
        Source::Pods,
        tx,
    );
    let (mut services, mut slices, mut pods) =
        (Cache::default(), Cache::default(), Cache::default());
    let mut proxy = Proxy::new(selur_proxy::Nft::new());
    let me = agent.config.node_name.clone();
    let mut failing = false;
    let mut last_host_ports: Option<Vec<HostPort>> = None;
    loop {
        // Wait for a change, then gather what follows closely. Pods matter
        // only for DNS pod names and hostPorts: a burst of pod changes alone
        // (a rollout's status writes) is gathered for longer.
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut services_changed = first.0 != Source::Pods;
        let mut take = |(source, ev): (Source, Event)| match source {
            Source::Services => services.apply(ev),
            Source::Slices => slices.apply(ev),
            Source::Pods => pods.apply(ev),
        };
        take(first);
        loop {
            let settle = if services_changed {
                SETTLE
            } else {
                PODS_SETTLE
            };
            match tokio::time::timeout(settle, rx.recv()).await {
                Ok(Some(ev)) => {
                    services_changed |= ev.0 != Source::Pods;
                    take(ev);
                }
                Ok(None) => return,
                Err(_) => break,
            }
        }
        let svc_values: Vec<Value> = services.values().collect();
        agent.set_services_cache(svc_values.clone());
        let svc: Vec<Service> = typed(svc_values.into_iter());
        let sl: Vec<EndpointSlice> = typed(slices.values());
        let pd: Vec<Pod> = typed(pods.values());
        if let Some(h) = &dns {
            h.update(selur_dns::Records::build(
                &node.cluster.cluster_domain,
                &svc,
                &sl,
                &pd,
            ));
        }
        let cfg = match config(&node, &pd, &me) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "service proxy settings");
                continue;
            }
        };
        // Pods alone change the rules only through hostPorts: skip the
        // render (the costly part with many Services) when those stayed.
        if !services_changed && !failing && last_host_ports.as_ref() == Some(&cfg.host_ports) {
            continue;
        }
        last_host_ports = Some(cfg.host_ports.clone());
        let ruleset = selur_proxy::render(&cfg, &svc, &sl);
        let (result, p) = match tokio::task::spawn_blocking(move || {
            let r = proxy.apply(ruleset);
            (r, proxy)
        })
        .await
        {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "service proxy task failed");
                return;
            }
        };
        proxy = p;
        match result {
            Ok(_) if failing => {
                tracing::info!("service proxy rules applied again");
                failing = false;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot apply the service proxy rules; retrying on the next change");
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, ip: Option<&str>, deleting: bool) -> Pod {
        let mut v = json!({"metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                {"containerPort": 8080, "hostPort": 18080},
                {"containerPort": 53, "hostPort": 5353, "protocol": "UDP"},
                {"containerPort": 9090}]}]},
            "status": {}});
        if let Some(ip) = ip {
            v["status"]["podIP"] = json!(ip);
        }
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn host_ports_of_this_nodes_running_pods_only() {
        let pods = [
            pod("a", "n1", Some("fd00::5"), false),
            pod("b", "n2", Some("fd00:0:0:1::5"), false),
            pod("c", "n1", None, false),
            pod("d", "n1", Some("fd00::6"), true),
        ];
        let hp = host_ports(&pods, "n1");
        assert_eq!(hp.len(), 2, "{hp:?}");
        assert_eq!(hp[0].host_port, 5353);
        assert_eq!(hp[0].protocol, Protocol::Udp);
        assert_eq!(hp[1].host_port, 18080);
        assert_eq!(hp[1].container_port, 8080);
        assert_eq!(hp[1].pod_ip, "fd00::5".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn the_cache_follows_applied_and_deleted_events() {
        let mut c = Cache::default();
        let o = json!({"metadata": {"name": "x", "namespace": "default", "uid": "1", "resourceVersion": "1"}});
        c.apply(Event::Applied(o.clone()));
        let mut o2 = o.clone();
        o2["metadata"]["resourceVersion"] = json!("2");
        c.apply(Event::Applied(o2.clone()));
        assert_eq!(c.values().collect::<Vec<_>>(), vec![o2.clone()]);
        c.apply(Event::Deleted(o2));
        assert_eq!(c.values().count(), 0);
    }
}
