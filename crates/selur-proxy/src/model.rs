//! From the API objects to what the rules need: one [`ServicePort`] per
//! Service port, with the endpoints that should receive its traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{EndpointPort, EndpointSlice};

use crate::config::Protocol;

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// kube-proxy's default ClientIP affinity timeout (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// One port of one Service, as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The Service port's name (`""` when unnamed).
    pub port_name: String,
    pub protocol: Protocol,
    /// The IPv6 cluster IPs (none for a headless Service).
    pub cluster_ips: Vec<Ipv6Addr>,
    pub port: u16,
    /// Set for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
    /// ClientIP session affinity: the timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// The endpoints to balance over, sorted and without duplicates.
    pub endpoints: Vec<Endpoint>,
}

/// An endpoint address and the port its slice gives for the Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv6Addr,
    pub port: u16,
}

impl ServicePort {
    /// `namespace/name/proto/port`, the readable part of the names derived
    /// from this port.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.namespace,
            self.name,
            self.protocol.nft(),
            self.port
        )
    }
}

/// The Service ports of a snapshot, sorted by namespace, name, protocol and
/// port. Headless and ExternalName Services and IPv4-only values are
/// skipped; endpoints are the ready ones, or, when none is ready, the
/// serving and terminating ones (kube-proxy's fallback).
pub fn service_ports(services: &[Service], slices: &[EndpointSlice]) -> Vec<ServicePort> {
    let by_service = group_slices(slices);
    let mut out = Vec::new();
    for service in services {
        let (Some(namespace), Some(name)) = (
            service.metadata.namespace.as_deref(),
            service.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let Some(spec) = &service.spec else { continue };
        let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
        if kind == "ExternalName" {
            continue;
        }
        let cluster_ips = cluster_ips(service);
        let affinity_timeout = if spec.session_affinity.as_deref() == Some("ClientIP") {
            let configured = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0);
            Some(configured.unwrap_or(DEFAULT_AFFINITY_TIMEOUT))
        } else {
            None
        };
        let node_ports_allowed = matches!(kind, "NodePort" | "LoadBalancer");
        let own_slices = by_service
            .get(&(namespace, name))
            .map(Vec::as_slice)
            .unwrap_or_default();
        for port in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::from_k8s(port.protocol.as_deref()) else {
                continue;
            };
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            let port_name = port.name.clone().unwrap_or_default();
            let node_port = port
                .node_port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| node_ports_allowed && *p != 0);
            if cluster_ips.is_empty() && node_port.is_none() {
                continue;
            }
            out.push(ServicePort {
                namespace: namespace.to_string(),
                name: name.to_string(),
                endpoints: endpoints(own_slices, &port_name, protocol),
                port_name,
                protocol,
                cluster_ips: cluster_ips.clone(),
                port: number,
                node_port,
                affinity_timeout,
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.namespace, &a.name, a.protocol, a.port).cmp(&(
            &b.namespace,
            &b.name,
            b.protocol,
            b.port,
        ))
    });
    out.dedup_by(|a, b| {
        (&a.namespace, &a.name, a.protocol, a.port) == (&b.namespace, &b.name, b.protocol, b.port)
    });
    out
}

/// The IPv6 cluster IPs of a Service; empty when headless.
fn cluster_ips(service: &Service) -> Vec<Ipv6Addr> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let mut values: Vec<&str> = spec
        .cluster_ips
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if values.is_empty() {
        values.extend(spec.cluster_ip.as_deref());
    }
    let mut ips: Vec<Ipv6Addr> = values
        .into_iter()
        .filter(|v| *v != "None" && !v.is_empty())
        .filter_map(|v| v.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

fn group_slices(slices: &[EndpointSlice]) -> BTreeMap<(&str, &str), Vec<&EndpointSlice>> {
    let mut map: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv6" {
            continue;
        }
        let Some(namespace) = slice.metadata.namespace.as_deref() else {
            continue;
        };
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        map.entry((namespace, service.as_str()))
            .or_default()
            .push(slice);
    }
    map
}

/// The slice port serving the Service port named `port_name`: names match
/// (unnamed matches unnamed) and so do protocols.
fn slice_port(ports: &[EndpointPort], port_name: &str, protocol: Protocol) -> Option<u16> {
    ports
        .iter()
        .find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && Protocol::from_k8s(p.protocol.as_deref()) == Some(protocol)
        })
        .and_then(|p| p.port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
}

fn endpoints(slices: &[&EndpointSlice], port_name: &str, protocol: Protocol) -> Vec<Endpoint> {
    let mut ready = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    for slice in slices {
        let Some(port) = slice_port(
            slice.ports.as_deref().unwrap_or_default(),
            port_name,
            protocol,
        ) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            // kube-proxy uses the first address of an endpoint.
            let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv6Addr>().ok())
            else {
                continue;
            };
            let conditions = endpoint.conditions.as_ref();
            let is_ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(is_ready);
            let is_terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            let endpoint = Endpoint { ip, port };
            if is_ready {
                ready.insert(endpoint);
            } else if serving && is_terminating {
                terminating.insert(endpoint);
            }
        }
    }
    if ready.is_empty() {
        terminating.into_iter().collect()
    } else {
        ready.into_iter().collect()
    }
}
