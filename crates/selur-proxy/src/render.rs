//! The pure part: a snapshot of Services and EndpointSlices, plus the node's
//! settings, rendered into one [`Ruleset`].
//!
//! The layout follows kube-proxy's nftables mode (names shortened):
//!
//! ```text
//! nat-prerouting / nat-output (dstnat) -> services, hostports
//! services:  ip6 daddr . meta l4proto . th dport vmap @service-ips
//!            <node address> meta l4proto . th dport vmap @service-nodeports
//! svc-H-ns/name/proto/port:  mark off-cluster sources for masquerade;
//!            ip6 saddr @affinity-H goto ep-...   (ClientIP affinity)
//!            numgen random mod N vmap { 0 : goto ep-..., ... }
//! ext-H-...: jump mark-for-masquerade; goto svc-...   (NodePorts)
//! ep-H-...:  hairpin mark; update @affinity-H { ip6 saddr }; dnat to [ip]:port
//! filter-input/forward/output (priority -110, before DNAT):
//!            ClusterIP/NodePort without endpoints -> reject-chain
//! filter-forward / filter-output-post-dnat: cluster-ips-check
//!            (known ClusterIP, unknown port: reject; rest of the range: drop)
//! nat-postrouting (srcnat) -> masquerading (the mark), local pod to local
//!            pod after DNAT over the bridge, NAT66 egress
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

use crate::config::{Protocol, ProxyConfig};
use crate::model::{service_ports, Endpoint, ServicePort};
use crate::ruleset::expr::{
    ct_state_new, daddr_is, daddr_proto_port, dnat, drop, fib_daddr_local, goto, jump, l4proto,
    masquerade, matches, meta, payload, prefix, proto_port, ret, saddr_is, set_ref, th_dport, vmap,
};
use crate::ruleset::{Chain, Hook, Ruleset, Set};

/// The packet mark meaning "masquerade this in postrouting" (kube-proxy's).
pub const MASQUERADE_MARK: u32 = 0x4000;

// Fixed chain and set names.
pub const SERVICES: &str = "services";
pub const HOSTPORTS: &str = "hostports";
pub const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
pub const MASQUERADING: &str = "masquerading";
pub const REJECT_CHAIN: &str = "reject-chain";
pub const SERVICE_ENDPOINTS_CHECK: &str = "service-endpoints-check";
pub const NODEPORT_ENDPOINTS_CHECK: &str = "nodeport-endpoints-check";
pub const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
pub const CLUSTER_IPS: &str = "cluster-ips";

/// Renders the whole table for a snapshot. Deterministic: the same inputs
/// give the same ruleset whatever the order of `services` and `slices`.
pub fn render(cfg: &ProxyConfig, services: &[Service], slices: &[EndpointSlice]) -> Ruleset {
    let ports = service_ports(services, slices);
    let mut maps = Maps::default();
    let mut affinity_sets = Vec::new();
    let mut per_service = Vec::new();

    for sp in &ports {
        let ips: Vec<Ipv6Addr> = sp
            .cluster_ips
            .iter()
            .copied()
            .filter(|ip| *ip != cfg.dns_ip)
            .collect();
        maps.cluster_ips.extend(ips.iter().copied());
        let proto = sp.protocol;
        if sp.endpoints.is_empty() {
            for ip in &ips {
                maps.no_endpoint_services
                    .entry((*ip, proto, sp.port))
                    .or_insert(REJECT_CHAIN.to_string());
            }
            if let Some(node_port) = sp.node_port {
                maps.no_endpoint_nodeports
                    .entry((proto, node_port))
                    .or_insert(REJECT_CHAIN.to_string());
            }
            continue;
        }
        if ips.is_empty() && sp.node_port.is_none() {
            continue;
        }
        let svc_chain = names::service_chain(sp);
        let endpoints: Vec<(Endpoint, String)> = sp
            .endpoints
            .iter()
            .map(|ep| (*ep, names::endpoint_chain(sp, ep)))
            .collect();

        let mut rules = Vec::new();
        for ip in &ips {
            rules.push(vec![
                daddr_is(*ip),
                l4proto(proto.nft()),
                th_dport(sp.port),
                matches("!=", payload("ip6", "saddr"), prefix(&cfg.cluster_cidr)),
                jump(MARK_FOR_MASQUERADE),
            ]);
        }
        if let Some(timeout) = sp.affinity_timeout {
            for (_, chain) in &endpoints {
                let set = names::affinity_set(chain, timeout);
                rules.push(vec![
                    matches("==", payload("ip6", "saddr"), set_ref(&set)),
                    goto(chain),
                ]);
            }
        }
        rules.push(vec![numgen_vmap(
            endpoints.iter().map(|(_, c)| c.as_str()).collect(),
        )]);
        per_service.push(Chain {
            name: svc_chain.clone(),
            hook: None,
            rules,
        });

        for (ep, chain) in &endpoints {
            let mut rules = vec![vec![saddr_is(ep.ip), jump(MARK_FOR_MASQUERADE)]];
            if let Some(timeout) = sp.affinity_timeout {
                let set = names::affinity_set(chain, timeout);
                rules.push(vec![json!({"set": {
                    "op": "update",
                    "elem": payload("ip6", "saddr"),
                    "set": set_ref(&set),
                }})]);
                affinity_sets.push(Set {
                    name: set,
                    key_type: json!("ipv6_addr"),
                    map: None,
                    timeout: Some(timeout),
                    elements: Vec::new(),
                });
            }
            rules.push(vec![l4proto(proto.nft()), dnat(ep.ip, ep.port)]);
            per_service.push(Chain {
                name: chain.clone(),
                hook: None,
                rules,
            });
        }

        for ip in &ips {
            maps.service_ips
                .entry((*ip, proto, sp.port))
                .or_insert(svc_chain.clone());
        }
        if let Some(node_port) = sp.node_port {
            let ext = names::external_chain(sp);
            per_service.push(Chain {
                name: ext.clone(),
                hook: None,
                rules: vec![vec![jump(MARK_FOR_MASQUERADE)], vec![goto(&svc_chain)]],
            });
            maps.service_nodeports
                .entry((proto, node_port))
                .or_insert(ext);
        }
    }

    per_service.sort_by(|a, b| a.name.cmp(&b.name));
    per_service.dedup_by(|a, b| a.name == b.name);
    affinity_sets.sort_by(|a, b| a.name.cmp(&b.name));
    affinity_sets.dedup_by(|a, b| a.name == b.name);

    let mut chains = fixed_chains(cfg);
    chains.extend(per_service);
    let mut sets = maps.into_sets();
    sets.extend(affinity_sets);
    Ruleset {
        table: cfg.table.clone(),
        sets,
        chains,
    }
}

/// The verdict maps and the set, keyed in sorted order; the first writer of
/// a key wins (two Services cannot really share one).
#[derive(Default)]
struct Maps {
    service_ips: BTreeMap<(Ipv6Addr, Protocol, u16), String>,
    service_nodeports: BTreeMap<(Protocol, u16), String>,
    no_endpoint_services: BTreeMap<(Ipv6Addr, Protocol, u16), String>,
    no_endpoint_nodeports: BTreeMap<(Protocol, u16), String>,
    cluster_ips: BTreeSet<Ipv6Addr>,
}

impl Maps {
    fn into_sets(self) -> Vec<Set> {
        let addr_proto_port = json!(["ipv6_addr", "inet_proto", "inet_service"]);
        let proto_port = json!(["inet_proto", "inet_service"]);
        let ip_elems = |map: BTreeMap<(Ipv6Addr, Protocol, u16), String>| {
            map.into_iter()
                .map(|((ip, proto, port), chain)| {
                    json!([{"concat": [ip.to_string(), proto.nft(), port]}, goto(&chain)])
                })
                .collect::<Vec<_>>()
        };
        let port_elems = |map: BTreeMap<(Protocol, u16), String>| {
            map.into_iter()
                .map(
                    |((proto, port), chain)| json!([{"concat": [proto.nft(), port]}, goto(&chain)]),
                )
                .collect::<Vec<_>>()
        };
        vec![
            Set {
                name: SERVICE_IPS.into(),
                key_type: addr_proto_port.clone(),
                map: Some("verdict"),
                timeout: None,
                elements: ip_elems(self.service_ips),
            },
            Set {
                name: SERVICE_NODEPORTS.into(),
                key_type: proto_port.clone(),
                map: Some("verdict"),
                timeout: None,
                elements: port_elems(self.service_nodeports),
            },
            Set {
                name: NO_ENDPOINT_SERVICES.into(),
                key_type: addr_proto_port,
                map: Some("verdict"),
                timeout: None,
                elements: ip_elems(self.no_endpoint_services),
            },
            Set {
                name: NO_ENDPOINT_NODEPORTS.into(),
                key_type: proto_port,
                map: Some("verdict"),
                timeout: None,
                elements: port_elems(self.no_endpoint_nodeports),
            },
            Set {
                name: CLUSTER_IPS.into(),
                key_type: json!("ipv6_addr"),
                map: None,
                timeout: None,
                elements: self
                    .cluster_ips
                    .into_iter()
                    .map(|ip| json!(ip.to_string()))
                    .collect(),
            },
        ]
    }
}

/// `numgen random mod N vmap { 0 : goto c0, 1 : goto c1, ... }`
fn numgen_vmap(chains: Vec<&str>) -> Value {
    let elems: Vec<Value> = chains
        .iter()
        .enumerate()
        .map(|(i, c)| json!([i, goto(c)]))
        .collect();
    vmap(
        json!({"numgen": {"mode": "random", "mod": chains.len(), "offset": 0}}),
        json!({ "set": elems }),
    )
}

/// The match for "addressed to this node": its listed addresses, or any
/// local address but loopback when none is listed.
fn to_node(cfg: &ProxyConfig) -> Vec<Value> {
    let mut ips = cfg.node_ips.clone();
    ips.sort();
    ips.dedup();
    match ips.as_slice() {
        [] => vec![
            fib_daddr_local(),
            matches("!=", payload("ip6", "daddr"), json!("::1")),
        ],
        [one] => vec![daddr_is(*one)],
        many => vec![matches(
            "==",
            payload("ip6", "daddr"),
            json!({"set": many.iter().map(|ip| ip.to_string()).collect::<Vec<_>>()}),
        )],
    }
}

fn with(mut head: Vec<Value>, tail: impl IntoIterator<Item = Value>) -> Vec<Value> {
    head.extend(tail);
    head
}

fn base(name: &str, kind: &'static str, hook: &'static str, priority: i32) -> Chain {
    Chain {
        name: name.into(),
        hook: Some(Hook {
            kind,
            hook,
            priority,
        }),
        rules: Vec::new(),
    }
}

fn regular(name: &str, rules: Vec<Vec<Value>>) -> Chain {
    Chain {
        name: name.into(),
        hook: None,
        rules,
    }
}

fn fixed_chains(cfg: &ProxyConfig) -> Vec<Chain> {
    let mark = json!(MASQUERADE_MARK);
    let mut input = base("filter-input", "filter", "input", -110);
    input.rules = vec![
        vec![ct_state_new(), jump(NODEPORT_ENDPOINTS_CHECK)],
        vec![ct_state_new(), jump(SERVICE_ENDPOINTS_CHECK)],
    ];
    let mut forward = base("filter-forward", "filter", "forward", -110);
    forward.rules = vec![
        vec![ct_state_new(), jump(SERVICE_ENDPOINTS_CHECK)],
        vec![ct_state_new(), jump(CLUSTER_IPS_CHECK)],
    ];
    let mut output = base("filter-output", "filter", "output", -110);
    output.rules = vec![vec![ct_state_new(), jump(SERVICE_ENDPOINTS_CHECK)]];
    let mut output_post_dnat = base("filter-output-post-dnat", "filter", "output", -90);
    output_post_dnat.rules = vec![vec![ct_state_new(), jump(CLUSTER_IPS_CHECK)]];

    let mut prerouting = base("nat-prerouting", "nat", "prerouting", -100);
    prerouting.rules = vec![vec![jump(SERVICES)], vec![jump(HOSTPORTS)]];
    let mut nat_output = base("nat-output", "nat", "output", -100);
    nat_output.rules = vec![vec![jump(SERVICES)], vec![jump(HOSTPORTS)]];
    let mut postrouting = base("nat-postrouting", "nat", "postrouting", 100);
    postrouting.rules = vec![
        vec![jump(MASQUERADING)],
        // A local pod reached through a ClusterIP (or hostPort) by another
        // local pod: without br_netfilter the reply would cross the bridge
        // straight back, skipping conntrack; masquerading makes it come
        // back through the node.
        vec![
            matches("in", json!({"ct": {"key": "status"}}), json!("dnat")),
            matches("==", payload("ip6", "saddr"), prefix(&cfg.node_pod_cidr)),
            matches("==", meta("oifname"), json!(cfg.bridge)),
            masquerade(),
        ],
    ];
    if cfg.masquerade_egress {
        postrouting.rules.push(vec![
            matches("==", payload("ip6", "saddr"), prefix(&cfg.cluster_cidr)),
            matches("!=", payload("ip6", "daddr"), prefix(&cfg.cluster_cidr)),
            matches("!=", meta("oifname"), json!(cfg.bridge)),
            masquerade(),
        ]);
    }

    let services = regular(
        SERVICES,
        vec![
            vec![vmap(daddr_proto_port(), set_ref(SERVICE_IPS))],
            with(
                to_node(cfg),
                [vmap(proto_port(), set_ref(SERVICE_NODEPORTS))],
            ),
        ],
    );
    let mut host_ports = cfg.host_ports.clone();
    host_ports.sort();
    host_ports.dedup_by(|a, b| (a.protocol, a.host_port) == (b.protocol, b.host_port));
    let hostports = regular(
        HOSTPORTS,
        host_ports
            .iter()
            .map(|hp| {
                with(
                    to_node(cfg),
                    [
                        l4proto(hp.protocol.nft()),
                        th_dport(hp.host_port),
                        dnat(hp.pod_ip, hp.container_port),
                    ],
                )
            })
            .collect(),
    );
    let mark_for_masquerade = regular(
        MARK_FOR_MASQUERADE,
        vec![vec![json!({"mangle": {
            "key": meta("mark"),
            "value": {"|": [meta("mark"), mark]},
        }})]],
    );
    let masquerading = regular(
        MASQUERADING,
        vec![
            vec![
                matches("==", json!({"&": [meta("mark"), mark]}), json!(0)),
                ret(),
            ],
            vec![json!({"mangle": {
                "key": meta("mark"),
                "value": {"^": [meta("mark"), mark]},
            }})],
            vec![json!({"masquerade": {"flags": "fully-random"}})],
        ],
    );
    let reject_chain = regular(
        REJECT_CHAIN,
        vec![
            vec![l4proto("tcp"), json!({"reject": {"type": "tcp reset"}})],
            vec![json!({"reject": {"type": "icmpv6", "expr": "admin-prohibited"}})],
        ],
    );
    let service_endpoints_check = regular(
        SERVICE_ENDPOINTS_CHECK,
        vec![vec![vmap(
            daddr_proto_port(),
            set_ref(NO_ENDPOINT_SERVICES),
        )]],
    );
    let nodeport_endpoints_check = regular(
        NODEPORT_ENDPOINTS_CHECK,
        vec![with(
            to_node(cfg),
            [vmap(proto_port(), set_ref(NO_ENDPOINT_NODEPORTS))],
        )],
    );
    let cluster_ips_check = regular(
        CLUSTER_IPS_CHECK,
        vec![
            // The agent answers DNS on this address itself.
            vec![daddr_is(cfg.dns_ip), ret()],
            vec![
                matches("==", payload("ip6", "daddr"), set_ref(CLUSTER_IPS)),
                goto(REJECT_CHAIN),
            ],
            vec![
                matches("==", payload("ip6", "daddr"), prefix(&cfg.service_cidr)),
                drop(),
            ],
        ],
    );
    vec![
        input,
        forward,
        output,
        output_post_dnat,
        prerouting,
        nat_output,
        postrouting,
        services,
        hostports,
        mark_for_masquerade,
        masquerading,
        reject_chain,
        service_endpoints_check,
        nodeport_endpoints_check,
        cluster_ips_check,
    ]
}

/// Names of the per-service objects: a readable part (`ns/name/proto/port`,
/// cut and with characters nft identifiers refuse replaced) after a hash of
/// the full name, so names stay unique and valid.
pub mod names {
    use super::{Endpoint, ServicePort};

    const READABLE_MAX: usize = 150;

    pub fn service_chain(sp: &ServicePort) -> String {
        named("svc", &sp.id())
    }

    pub fn external_chain(sp: &ServicePort) -> String {
        named("ext", &sp.id())
    }

    pub fn endpoint_chain(sp: &ServicePort, ep: &Endpoint) -> String {
        named("ep", &format!("{}__{}/{}", sp.id(), ep.ip, ep.port))
    }

    /// Affinity sets are named after their endpoint chain and the timeout,
    /// so a changed timeout makes a new set (a set's timeout cannot change).
    pub fn affinity_set(endpoint_chain: &str, timeout: u32) -> String {
        format!("affinity-{}", hash(&format!("{endpoint_chain}@{timeout}")))
    }

    fn named(prefix: &str, full: &str) -> String {
        let readable: String = full
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/') {
                    c
                } else {
                    '-'
                }
            })
            .take(READABLE_MAX)
            .collect();
        format!("{prefix}-{}-{readable}", hash(full))
    }

    /// FNV-1a 64 in base32 (8 characters): stable across runs and Rust
    /// versions, unlike std's hasher.
    pub fn hash(value: &str) -> String {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in value.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (0..8)
            .map(|i| char::from(ALPHABET[((h >> (i * 5)) & 31) as usize]))
            .collect()
    }
}
