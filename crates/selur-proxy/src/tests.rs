//! Unit tests on the rendered rules (no nft needed).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

use crate::config::valid_identifier;
use crate::render::*;
use crate::{render, HostPort, Protocol, ProxyConfig, Ruleset};

fn cfg() -> ProxyConfig {
    ProxyConfig {
        table: "selur".into(),
        bridge: "selur0".into(),
        cluster_cidr: "fd00::/48".parse().unwrap(),
        node_pod_cidr: "fd00:0:0:1::/64".parse().unwrap(),
        service_cidr: "fd01::/112".parse().unwrap(),
        node_ips: vec!["2001:db8::1".parse().unwrap()],
        dns_ip: "fd01::a".parse().unwrap(),
        masquerade_egress: true,
        host_ports: Vec::new(),
    }
}

fn svc(name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    }))
    .unwrap()
}

fn web(name: &str, ip: &str) -> Service {
    svc(
        name,
        json!({"clusterIP": ip, "ports": [{"name": "http", "port": 80}]}),
    )
}

/// A slice with `(ip, ready, serving, terminating)` endpoints.
fn slice(
    service: &str,
    suffix: &str,
    ports: Value,
    eps: &[(&str, bool, bool, bool)],
) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("{service}-{suffix}"),
            "namespace": "ns",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv6",
        "endpoints": eps.iter().map(|(ip, ready, serving, terminating)| json!({
            "addresses": [ip],
            "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        })).collect::<Vec<_>>(),
        "ports": ports,
    }))
    .unwrap()
}

fn ready(service: &str, ips: &[&str]) -> EndpointSlice {
    let eps: Vec<_> = ips.iter().map(|ip| (*ip, true, true, false)).collect();
    slice(service, "a", json!([{"name": "http", "port": 8080}]), &eps)
}

fn elements(rs: &Ruleset, set: &str) -> Vec<Value> {
    rs.set(set).unwrap().elements.clone()
}

fn rules(rs: &Ruleset, chain: &str) -> Vec<Vec<Value>> {
    rs.chain(chain).unwrap().rules.clone()
}

fn chains_starting(rs: &Ruleset, prefix: &str) -> Vec<String> {
    rs.chains
        .iter()
        .filter(|c| c.name.starts_with(prefix))
        .map(|c| c.name.clone())
        .collect()
}

/// The chain a verdict map element goes to.
fn goto_target(elem: &Value) -> String {
    elem[1]["goto"]["target"].as_str().unwrap().to_string()
}

fn dnat_targets(rs: &Ruleset) -> Vec<(String, u64)> {
    rs.chains
        .iter()
        .flat_map(|c| c.rules.iter().flatten())
        .filter_map(|e| e.get("dnat"))
        .map(|d| {
            (
                d["addr"].as_str().unwrap().to_string(),
                d["port"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn clusterip_goes_through_a_service_chain_to_dnat_per_endpoint() {
    let rs = render(
        &cfg(),
        &[web("web", "fd01::10")],
        &[ready("web", &["fd00:0:0:1::2", "fd00:0:0:2::3"])],
    );
    let elems = elements(&rs, SERVICE_IPS);
    assert_eq!(elems.len(), 1);
    assert_eq!(elems[0][0], json!({"concat": ["fd01::10", "tcp", 80]}));
    let svc_chain = goto_target(&elems[0]);
    assert!(svc_chain.starts_with("svc-") && svc_chain.ends_with("-ns/web/tcp/80"));
    let svc_rules = rules(&rs, &svc_chain);
    // Off-cluster sources are marked for masquerade, then numgen over two.
    assert_eq!(
        svc_rules[0].last().unwrap(),
        &json!({"jump": {"target": MARK_FOR_MASQUERADE}})
    );
    let vmap = &svc_rules.last().unwrap()[0]["vmap"];
    assert_eq!(vmap["key"]["numgen"]["mod"], json!(2));
    let targets: Vec<String> = vmap["data"]["set"]
        .as_array()
        .unwrap()
        .iter()
        .map(goto_target)
        .collect();
    assert_eq!(targets.len(), 2);
    // Each endpoint chain: hairpin mark, then DNAT.
    let ep = rules(&rs, &targets[0]);
    assert_eq!(ep[0][0]["match"]["right"], json!("fd00:0:0:1::2"));
    assert_eq!(ep[0][1], json!({"jump": {"target": MARK_FOR_MASQUERADE}}));
    assert_eq!(
        ep[1][1],
        json!({"dnat": {"addr": "fd00:0:0:1::2", "port": 8080}})
    );
    assert_eq!(elements(&rs, CLUSTER_IPS), vec![json!("fd01::10")]);
    assert!(elements(&rs, NO_ENDPOINT_SERVICES).is_empty());
}

#[test]
fn rendering_is_deterministic_whatever_the_input_order() {
    let services = vec![
        web("b", "fd01::20"),
        web("a", "fd01::10"),
        svc(
            "c",
            json!({"type": "NodePort", "clusterIP": "fd01::30",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
        ),
    ];
    let slices = vec![
        ready("a", &["fd00::3", "fd00::1", "fd00::2"]),
        ready("b", &["fd00::9"]),
        ready("c", &["fd00::5", "fd00::4"]),
    ];
    let first = render(&cfg(), &services, &slices);
    let mut services_rev = services.clone();
    services_rev.reverse();
    let mut slices_rev = slices.clone();
    slices_rev.reverse();
    let second = render(&cfg(), &services_rev, &slices_rev);
    assert_eq!(first, second);
    assert_eq!(
        serde_json::to_string(&first.replace_all()).unwrap(),
        serde_json::to_string(&second.replace_all()).unwrap()
    );
    // Endpoints in address order in the numgen map.
    let svc_chain = goto_target(&elements(&first, SERVICE_IPS)[0]);
    let svc_rules = rules(&first, &svc_chain);
    let vmap = &svc_rules.last().unwrap()[0]["vmap"];
    let eps: Vec<String> = vmap["data"]["set"]
        .as_array()
        .unwrap()
        .iter()
        .map(goto_target)
        .collect();
    assert!(eps[0].ends_with("__fd00--1/8080"), "{eps:?}");
    assert!(eps[2].ends_with("__fd00--3/8080"), "{eps:?}");
}

#[test]
fn service_without_endpoints_is_rejected_not_dnated() {
    let services = [svc(
        "empty",
        json!({"type": "NodePort", "clusterIP": "fd01::11",
            "ports": [{"name": "http", "port": 80, "nodePort": 30081}]}),
    )];
    // A slice whose only endpoint is not ready (and not terminating).
    let slices = [slice(
        "empty",
        "a",
        json!([{"name": "http", "port": 8080}]),
        &[("fd00::7", false, false, false)],
    )];
    let rs = render(&cfg(), &services, &slices);
    assert!(elements(&rs, SERVICE_IPS).is_empty());
    assert!(elements(&rs, SERVICE_NODEPORTS).is_empty());
    assert!(chains_starting(&rs, "svc-").is_empty());
    assert!(dnat_targets(&rs).is_empty());
    let rejected = elements(&rs, NO_ENDPOINT_SERVICES);
    assert_eq!(
        rejected,
        vec![json!([{"concat": ["fd01::11", "tcp", 80]}, {"goto": {"target": REJECT_CHAIN}}])]
    );
    assert_eq!(
        elements(&rs, NO_ENDPOINT_NODEPORTS),
        vec![json!([{"concat": ["tcp", 30081]}, {"goto": {"target": REJECT_CHAIN}}])]
    );
    // TCP gets a reset (connection refused), the rest admin-prohibited.
    let reject = rules(&rs, REJECT_CHAIN);
    assert_eq!(reject[0][1], json!({"reject": {"type": "tcp reset"}}));
    assert_eq!(
        reject[1][0],
        json!({"reject": {"type": "icmpv6", "expr": "admin-prohibited"}})
    );
    // The checks run before DNAT (priority -110) on new connections.
    let input = rs.chain("filter-input").unwrap();
    assert_eq!(input.hook.unwrap().priority, -110);
    assert!(rules(&rs, "filter-forward")
        .iter()
        .any(|r| r[1] == json!({"jump": {"target": SERVICE_ENDPOINTS_CHECK}})));
}

#[test]
fn dns_address_is_neither_dnated_nor_rejected() {
    let services = [
        svc(
            "kube-dns",
            json!({"clusterIP": "fd01::a",
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
        ),
        svc(
            "kube-dns-tcp",
            json!({"clusterIP": "fd01::a",
            "ports": [{"name": "dns-tcp", "port": 53}]}),
        ),
    ];
    let slices = [slice(
        "kube-dns",
        "a",
        json!([{"name": "dns", "port": 53, "protocol": "UDP"}]),
        &[("fd00::53", true, true, false)],
    )];
    let rs = render(&cfg(), &services, &slices);
    assert!(elements(&rs, SERVICE_IPS).is_empty());
    assert!(elements(&rs, NO_ENDPOINT_SERVICES).is_empty());
    assert!(elements(&rs, CLUSTER_IPS).is_empty());
    assert!(dnat_targets(&rs).is_empty());
    // The range check lets it through before rejecting or dropping.
    let check = rules(&rs, CLUSTER_IPS_CHECK);
    assert_eq!(check[0][0]["match"]["right"], json!("fd01::a"));
    assert_eq!(check[0][1], json!({"return": null}));
    assert_eq!(check[2][1], json!({"drop": null}));
}

#[test]
fn headless_and_external_name_services_get_no_rules() {
    let services = [
        svc(
            "headless",
            json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}),
        ),
        svc(
            "ext",
            json!({"type": "ExternalName", "externalName": "example.org"}),
        ),
    ];
    let rs = render(&cfg(), &services, &[ready("headless", &["fd00::1"])]);
    let empty = render(&cfg(), &[], &[]);
    assert_eq!(rs, empty);
}

#[test]
fn terminating_endpoints_serve_only_when_none_is_ready() {
    let ports = json!([{"name": "http", "port": 8080}]);
    let services = [web("web", "fd01::10")];
    let only_terminating = [slice(
        "web",
        "a",
        ports.clone(),
        &[
            ("fd00::1", false, true, true),  // serving, terminating: fallback
            ("fd00::2", false, false, true), // not serving: never
        ],
    )];
    let rs = render(&cfg(), &services, &only_terminating);
    assert_eq!(dnat_targets(&rs), vec![("fd00::1".to_string(), 8080)]);

    let mixed = [
        only_terminating[0].clone(),
        slice("web", "b", ports, &[("fd00::3", true, true, false)]),
    ];
    let rs = render(&cfg(), &services, &mixed);
    assert_eq!(dnat_targets(&rs), vec![("fd00::3".to_string(), 8080)]);
}

#[test]
fn endpoint_port_is_found_by_the_service_port_name() {
    let services = [svc(
        "multi",
        json!({"clusterIP": "fd01::10", "ports": [
            {"name": "http", "port": 80, "targetPort": "web"},
            {"name": "metrics", "port": 9100},
        ]}),
    )];
    let slices = [slice(
        "multi",
        "a",
        json!([{"name": "metrics", "port": 9101}, {"name": "http", "port": 8080}]),
        &[("fd00::1", true, true, false)],
    )];
    let rs = render(&cfg(), &services, &slices);
    let mut targets = dnat_targets(&rs);
    targets.sort();
    assert_eq!(
        targets,
        vec![("fd00::1".to_string(), 8080), ("fd00::1".to_string(), 9101)]
    );
    // IPv4 slices and slices of other namespaces are not used.
    let v4: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "v4", "namespace": "ns",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"]}],
        "ports": [{"name": "http", "port": 8080}],
    }))
    .unwrap();
    let rs = render(&cfg(), &[web("web", "fd01::10")], &[v4]);
    assert!(dnat_targets(&rs).is_empty());
}

#[test]
fn client_ip_affinity_keeps_a_client_on_its_endpoint() {
    let spec = |timeout: Option<i32>| {
        let mut spec = json!({"clusterIP": "fd01::10", "sessionAffinity": "ClientIP",
            "ports": [{"name": "http", "port": 80}]});
        if let Some(t) = timeout {
            spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": t}});
        }
        spec
    };
    let slices = [ready("sticky", &["fd00::1", "fd00::2"])];
    let rs = render(&cfg(), &[svc("sticky", spec(None))], &slices);
    let affinity: Vec<_> = rs
        .sets
        .iter()
        .filter(|s| s.name.starts_with("affinity-"))
        .collect();
    assert_eq!(affinity.len(), 2);
    assert!(affinity
        .iter()
        .all(|s| s.timeout == Some(10800) && s.elements.is_empty()));

    let svc_chain = goto_target(&elements(&rs, SERVICE_IPS)[0]);
    let svc_rules = rules(&rs, &svc_chain);
    // Masquerade mark, two affinity checks, then numgen.
    assert_eq!(svc_rules.len(), 4);
    let check = &svc_rules[1];
    let set = check[0]["match"]["right"]
        .as_str()
        .unwrap()
        .trim_start_matches('@');
    let ep_chain = check[1]["goto"]["target"].as_str().unwrap();
    assert!(rs.set(set).is_some());
    // The endpoint chain records the client in that same set.
    let ep = rules(&rs, ep_chain);
    assert_eq!(
        ep[1][0],
        json!({"set": {"op": "update",
            "elem": {"payload": {"protocol": "ip6", "field": "saddr"}},
            "set": format!("@{set}")}})
    );

    // A configured timeout makes other sets (a set's timeout is fixed).
    let rs2 = render(&cfg(), &[svc("sticky", spec(Some(60)))], &slices);
    let timeouts: Vec<_> = rs2.sets.iter().filter_map(|s| s.timeout).collect();
    assert_eq!(timeouts, vec![60, 60]);
    assert!(rs2.set(set).is_none());
    // The transaction declares the sets dynamic with their timeout.
    let tx = rs2.replace_all().to_string();
    assert!(tx.contains(r#""flags":["timeout"],"timeout":60"#), "{tx}");
}

#[test]
fn nodeport_goes_through_an_external_chain_that_masquerades() {
    let services = [svc(
        "np",
        json!({"type": "NodePort", "clusterIP": "fd01::10",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    )];
    let rs = render(&cfg(), &services, &[ready("np", &["fd00::1"])]);
    let elems = elements(&rs, SERVICE_NODEPORTS);
    assert_eq!(elems[0][0], json!({"concat": ["tcp", 30080]}));
    let ext = goto_target(&elems[0]);
    assert!(ext.starts_with("ext-"));
    let ext_rules = rules(&rs, &ext);
    assert_eq!(
        ext_rules[0][0],
        json!({"jump": {"target": MARK_FOR_MASQUERADE}})
    );
    assert_eq!(
        ext_rules[1][0]["goto"]["target"],
        json!(goto_target(&elements(&rs, SERVICE_IPS)[0]))
    );
    // Only to the node's listed addresses.
    let services_rules = rules(&rs, SERVICES);
    assert_eq!(services_rules[1][0]["match"]["right"], json!("2001:db8::1"));
    assert_eq!(
        services_rules[1][1]["vmap"]["data"],
        json!("@service-nodeports")
    );

    // A ClusterIP Service's nodePort field is ignored.
    let cip = [svc(
        "c",
        json!({"clusterIP": "fd01::10",
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    )];
    let rs = render(&cfg(), &cip, &[ready("c", &["fd00::1"])]);
    assert!(elements(&rs, SERVICE_NODEPORTS).is_empty());

    // Without listed node addresses: any local address but loopback.
    let mut any = cfg();
    any.node_ips.clear();
    let rs = render(&any, &services, &[ready("np", &["fd00::1"])]);
    let first = &rules(&rs, SERVICES)[1][0];
    assert_eq!(
        first["match"]["left"],
        json!({"fib": {"result": "type", "flags": ["daddr"]}})
    );
}

#[test]
fn postrouting_masquerades_marked_local_dnat_and_egress() {
    let rs = render(&cfg(), &[], &[]);
    let post = rules(&rs, "nat-postrouting");
    assert_eq!(post[0], vec![json!({"jump": {"target": MASQUERADING}})]);
    // Local pod to local pod after DNAT, over the bridge.
    assert_eq!(
        post[1][0]["match"]["left"],
        json!({"ct": {"key": "status"}})
    );
    assert_eq!(
        post[1][1]["match"]["right"],
        json!({"prefix": {"addr": "fd00:0:0:1::", "len": 64}})
    );
    assert_eq!(post[1][2]["match"]["right"], json!("selur0"));
    // NAT66 for traffic leaving the cluster range, not over the bridge.
    assert_eq!(post[2][1]["match"]["op"], json!("!="));
    assert_eq!(post[2][2]["match"]["op"], json!("!="));
    assert_eq!(post.len(), 3);
    let mut no_egress = cfg();
    no_egress.masquerade_egress = false;
    assert_eq!(
        rules(&render(&no_egress, &[], &[]), "nat-postrouting").len(),
        2
    );
    // The mark is cleared before masquerading (it must not leak on).
    let masq = rules(&rs, MASQUERADING);
    assert_eq!(
        masq[1][0]["mangle"]["value"],
        json!({"^": [{"meta": {"key": "mark"}}, MASQUERADE_MARK]})
    );
}

#[test]
fn host_ports_dnat_node_addresses_to_the_pod() {
    let mut cfg = cfg();
    cfg.host_ports = vec![
        HostPort {
            protocol: Protocol::Udp,
            host_port: 5353,
            pod_ip: "fd00:0:0:1::9".parse().unwrap(),
            container_port: 53,
        },
        HostPort {
            protocol: Protocol::Tcp,
            host_port: 8080,
            pod_ip: "fd00:0:0:1::8".parse().unwrap(),
            container_port: 80,
        },
    ];
    let rs = render(&cfg, &[], &[]);
    let hp = rules(&rs, HOSTPORTS);
    assert_eq!(hp.len(), 2);
    assert_eq!(hp[0][1]["match"]["right"], json!("tcp"));
    assert_eq!(
        hp[0][3],
        json!({"dnat": {"addr": "fd00:0:0:1::8", "port": 80}})
    );
    assert_eq!(hp[1][1]["match"]["right"], json!("udp"));
    assert!(rules(&rs, "nat-prerouting").contains(&vec![json!({"jump": {"target": HOSTPORTS}})]));
    assert!(rules(&rs, "nat-output").contains(&vec![json!({"jump": {"target": HOSTPORTS}})]));
}

#[test]
fn names_are_valid_nft_identifiers_even_for_long_names() {
    let long = "a".repeat(63);
    let services = [svc(
        &long,
        json!({"clusterIP": "fd01::10", "sessionAffinity": "ClientIP",
            "ports": [{"name": "http", "port": 80}]}),
    )];
    let ns_long: EndpointSlice = {
        let mut s = ready(&long, &["fd00:0:0:1:2:3:4:5"]);
        s.metadata.name = Some("x".into());
        s
    };
    let rs = render(&cfg(), &services, &[ns_long]);
    for chain in &rs.chains {
        assert!(valid_identifier(&chain.name), "{}", chain.name);
    }
    for set in &rs.sets {
        assert!(valid_identifier(&set.name), "{}", set.name);
    }
    assert_eq!(dnat_targets(&rs).len(), 1);
}

#[test]
fn updates_touch_only_what_changed() {
    let services = [web("a", "fd01::10"), web("b", "fd01::20")];
    let before = render(
        &cfg(),
        &services,
        &[ready("a", &["fd00::1"]), ready("b", &["fd00::2"])],
    );
    let after = render(
        &cfg(),
        &services,
        &[ready("a", &["fd00::1"]), ready("b", &["fd00::3"])],
    );
    let tx = after.update_from(&before);
    let commands = tx["nftables"].as_array().unwrap();
    let ops = |verb: &str, kind: &str| -> Vec<String> {
        commands
            .iter()
            .filter_map(|c| c.get(verb).and_then(|v| v.get(kind)))
            .map(|o| {
                o.get("name")
                    .or(o.get("chain"))
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    // b's service chain changed (new endpoint), its old endpoint chain went.
    let flushed = ops("flush", "chain");
    assert_eq!(flushed.len(), 2, "{flushed:?}");
    assert!(flushed.iter().all(|c| c.contains("/b/")));
    let deleted = ops("delete", "chain");
    assert_eq!(deleted.len(), 1);
    assert!(deleted[0].ends_with("__fd00--2/8080"));
    let added = ops("add", "chain");
    assert_eq!(added.len(), 1);
    assert!(added[0].ends_with("__fd00--3/8080"));
    // Nothing about a; the maps did not change (same service chains).
    assert!(ops("add", "rule").iter().all(|c| c.contains("/b/")));
    assert!(ops("flush", "map").is_empty());
    // The same ruleset: only the table add.
    assert_eq!(
        after.update_from(&after)["nftables"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
