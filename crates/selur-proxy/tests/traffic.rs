//! Root-only: the rules installed by nft inside namespaces made by each test
//! (never the caller's), with real TCP traffic between pod namespaces.

mod common;

use std::time::{Duration, Instant};

use common::{config, connect, privileged, service, slice, Netns, Node, NODE_IP};
use selur_proxy::{normalize_listing, render, HostPort, Nft, Protocol, Proxy};

#[test]
fn clusterip_reaches_the_pod_and_follows_endpoint_changes() {
    if !privileged() {
        return;
    }
    let mut node = Node::new();
    let a = node.add_pod(2);
    let client = node.add_pod(3);
    let c = node.add_pod(4);
    node.pods[a].serve(8080, "pod-a");
    node.pods[c].serve(8080, "pod-c");
    let (ip_a, ip_c) = (node.pods[a].ip, node.pods[c].ip);
    let cfg = config("selur");
    let services = [
        service("web", "fd01::10", 80, None),
        service("empty", "fd01::11", 80, None),
    ];
    let mut proxy = Proxy::new(Nft::in_netns(node.ns.path()));

    proxy
        .apply(render(&cfg, &services, &[slice("web", "1", 8080, &[ip_a])]))
        .unwrap();
    let (reply, _) = connect(&node.pods[client].ns, "fd01::10", 80);
    assert_eq!(reply, "pod-a");
    // From the node itself (nat output).
    let (reply, _) = connect(&node.ns, "fd01::10", 80);
    assert_eq!(reply, "pod-a");

    // No endpoints: refused at once, not a timeout.
    let (reply, took) = connect(&node.pods[client].ns, "fd01::11", 80);
    assert_eq!(reply, "ERR ECONNREFUSED");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let (reply, _) = connect(&node.ns, "fd01::11", 80);
    assert_eq!(reply, "ERR ECONNREFUSED");

    // The endpoint moves to pod c.
    proxy
        .apply(render(&cfg, &services, &[slice("web", "1", 8080, &[ip_c])]))
        .unwrap();
    let (reply, _) = connect(&node.pods[client].ns, "fd01::10", 80);
    assert_eq!(reply, "pod-c");
    // The pod reaching itself through its Service (hairpin).
    let (reply, _) = connect(&node.pods[c].ns, "fd01::10", 80);
    assert_eq!(reply, "pod-c");

    // The empty Service gets endpoints.
    proxy
        .apply(render(
            &cfg,
            &services,
            &[
                slice("web", "1", 8080, &[ip_c]),
                slice("empty", "1", 8080, &[ip_a]),
            ],
        ))
        .unwrap();
    let (reply, _) = connect(&node.pods[client].ns, "fd01::11", 80);
    assert_eq!(reply, "pod-a");

    proxy.remove("selur").unwrap();
    proxy.remove("selur").unwrap();
}

#[test]
fn nodeport_and_hostport_reach_the_pod() {
    if !privileged() {
        return;
    }
    let mut node = Node::new();
    let a = node.add_pod(2);
    let client = node.add_pod(3);
    node.pods[a].serve(8080, "pod-a");
    let ip_a = node.pods[a].ip;
    let mut cfg = config("selur-np");
    cfg.host_ports = vec![HostPort {
        protocol: Protocol::Tcp,
        host_port: 9090,
        pod_ip: ip_a,
        container_port: 8080,
    }];
    let services = [
        service("web", "fd01::10", 80, Some(30080)),
        service("empty", "fd01::11", 80, Some(30081)),
    ];
    let nft = Nft::in_netns(node.ns.path());
    selur_proxy::apply(
        &nft,
        &render(&cfg, &services, &[slice("web", "1", 8080, &[ip_a])]),
        None,
    )
    .unwrap();
    assert_eq!(connect(&node.pods[client].ns, NODE_IP, 30080).0, "pod-a");
    assert_eq!(connect(&node.pods[client].ns, NODE_IP, 9090).0, "pod-a");
    assert_eq!(connect(&node.ns, NODE_IP, 30080).0, "pod-a");
    let (reply, took) = connect(&node.pods[client].ns, NODE_IP, 30081);
    assert_eq!(reply, "ERR ECONNREFUSED");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    nft.remove("selur-np").unwrap();
}

#[test]
fn applying_the_same_snapshot_twice_lists_the_same_table() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("same");
    let nft = Nft::in_netns(ns.path());
    let cfg = config("selur-same");
    let ips: Vec<_> = (2..6)
        .map(|h| std::net::Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, h))
        .collect();
    let mut affinity = service("sticky", "fd01::12", 443, Some(30443));
    if let Some(spec) = affinity.spec.as_mut() {
        spec.session_affinity = Some("ClientIP".into());
    }
    let services = [
        service("web", "fd01::10", 80, Some(30080)),
        service("empty", "fd01::11", 80, None),
        affinity,
    ];
    let slices = [
        slice("web", "1", 8080, &ips),
        slice("sticky", "1", 8443, &ips[..2]),
    ];
    let mut proxy = Proxy::new(nft.clone());
    assert!(proxy.apply(render(&cfg, &services, &slices)).unwrap());
    let first = nft.list("selur-same").unwrap();
    // Same Proxy: nothing to do, nft does not even run.
    assert!(!proxy.apply(render(&cfg, &services, &slices)).unwrap());
    assert_eq!(nft.list("selur-same").unwrap(), first);
    // A new Proxy (an agent restart) replaces the table: same content.
    let mut fresh = Proxy::new(nft.clone());
    assert!(fresh.apply(render(&cfg, &services, &slices)).unwrap());
    let second = nft.list("selur-same").unwrap();
    assert_eq!(
        normalize_listing(&first).unwrap(),
        normalize_listing(&second).unwrap()
    );
    // An incremental update to another snapshot and back: same content.
    assert!(fresh
        .apply(render(
            &cfg,
            &services,
            &[slice("web", "1", 8080, &ips[..1])]
        ))
        .unwrap());
    assert!(fresh.apply(render(&cfg, &services, &slices)).unwrap());
    let third = nft.list("selur-same").unwrap();
    assert_eq!(
        normalize_listing(&first).unwrap(),
        normalize_listing(&third).unwrap()
    );
    nft.remove("selur-same").unwrap();
    assert!(nft.list("selur-same").is_err());
}

#[test]
fn remove_of_an_absent_table_is_fine() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("absent");
    let nft = Nft::in_netns(ns.path());
    nft.remove("selur-none").unwrap();
    nft.remove("selur-none").unwrap();
}

/// Not a pass/fail check on time: prints how long rendering and applying
/// 1000 Services with 10 endpoints each takes.
#[test]
fn render_and_apply_1000_services_with_10_endpoints() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("bench");
    let nft = Nft::in_netns(ns.path());
    let cfg = config("selur-bench");
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for i in 0..1000u16 {
        let name = format!("svc{i}");
        services.push(service(&name, &format!("fd01::1:{i:x}"), 80, None));
        let ips: Vec<_> = (0..10u16)
            .map(|e| std::net::Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, i, e + 1))
            .collect();
        slices.push(slice(&name, "1", 8080, &ips));
    }
    let start = Instant::now();
    let ruleset = render(&cfg, &services, &slices);
    let rendered = start.elapsed();
    let mut proxy = Proxy::new(nft.clone());
    let start = Instant::now();
    proxy.apply(ruleset.clone()).unwrap();
    let applied = start.elapsed();
    // One endpoint fewer in one Service: an incremental update.
    slices[0] = slice(
        "svc0",
        "1",
        8080,
        &[std::net::Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 1)],
    );
    let start = Instant::now();
    let changed = render(&cfg, &services, &slices);
    let rerendered = start.elapsed();
    let start = Instant::now();
    proxy.apply(changed).unwrap();
    let updated = start.elapsed();
    println!(
        "1000 services x 10 endpoints: {} chains; render {rendered:?}, first apply {applied:?}; \
         after one endpoint change: render {rerendered:?}, incremental apply {updated:?}",
        ruleset.chains.len()
    );
    nft.remove("selur-bench").unwrap();
}

#[test]
fn client_ip_affinity_keeps_a_client_on_one_endpoint() {
    if !privileged() {
        return;
    }
    let mut node = Node::new();
    let a = node.add_pod(2);
    let client = node.add_pod(3);
    let c = node.add_pod(4);
    node.pods[a].serve(8080, "pod-a");
    node.pods[c].serve(8080, "pod-c");
    let ips = [node.pods[a].ip, node.pods[c].ip];
    let cfg = config("selur-aff");
    let mut sticky = service("sticky", "fd01::12", 80, None);
    if let Some(spec) = sticky.spec.as_mut() {
        spec.session_affinity = Some("ClientIP".into());
    }
    let plain = service("plain", "fd01::13", 80, None);
    let slices = [
        slice("sticky", "1", 8080, &ips),
        slice("plain", "1", 8080, &ips),
    ];
    let nft = Nft::in_netns(node.ns.path());
    selur_proxy::apply(&nft, &render(&cfg, &[sticky, plain], &slices), None).unwrap();
    let replies = |ip: &str| {
        (0..20)
            .map(|_| connect(&node.pods[client].ns, ip, 80).0)
            .collect::<std::collections::BTreeSet<_>>()
    };
    // Without affinity both endpoints answer (all 20 on one: 2^-19).
    let plain_replies = replies("fd01::13");
    assert_eq!(plain_replies.len(), 2, "{plain_replies:?}");
    // With it, one endpoint answers every time.
    let sticky_replies = replies("fd01::12");
    assert_eq!(sticky_replies.len(), 1, "{sticky_replies:?}");
    assert!(nft.list("selur-aff").unwrap().contains("fd00:0:0:1::3"));
    nft.remove("selur-aff").unwrap();
}

#[test]
fn dns_address_is_left_to_the_agent() {
    if !privileged() {
        return;
    }
    let mut node = Node::new();
    let client = node.add_pod(3);
    // The agent answers on the DNS address itself (here a TCP listener on
    // the node).
    node.ns
        .exec(&["ip", "-6", "addr", "add", "fd01::a/128", "dev", "lo"]);
    let _dns = node.ns.spawn(&[
        "python3",
        "-c",
        "import socket\n\
         s=socket.socket(socket.AF_INET6)\n\
         s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('fd01::a',53))\n\
         s.listen(4)\n\
         while True:\n    c,_=s.accept()\n    c.sendall(b'agent-dns\\n')\n    c.close()\n",
    ]);
    for _ in 0..100 {
        if !node
            .ns
            .exec(&["ss", "-Hltn", "sport = :53"])
            .trim()
            .is_empty()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // A kube-dns Service on that address without endpoints, and another
    // Service without endpoints for comparison.
    let services = [
        service("kube-dns", "fd01::a", 53, None),
        service("empty", "fd01::11", 53, None),
    ];
    let nft = Nft::in_netns(node.ns.path());
    selur_proxy::apply(&nft, &render(&config("selur-dns"), &services, &[]), None).unwrap();
    assert_eq!(connect(&node.pods[client].ns, "fd01::a", 53).0, "agent-dns");
    assert_eq!(connect(&node.ns, "fd01::a", 53).0, "agent-dns");
    assert_eq!(
        connect(&node.pods[client].ns, "fd01::11", 53).0,
        "ERR ECONNREFUSED"
    );
    // An unallocated address of the Service range is dropped (kube-proxy).
    let (reply, _) = connect(&node.pods[client].ns, "fd01::99", 53);
    assert_eq!(reply, "ERR timeout");
    nft.remove("selur-dns").unwrap();
}

#[test]
fn a_table_changed_behind_the_proxy_is_replaced_whole() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("behind");
    let nft = Nft::in_netns(ns.path());
    let cfg = config("selur-behind");
    let ip = |h| std::net::Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, h);
    let services = [service("web", "fd01::10", 80, None)];
    let mut proxy = Proxy::new(nft.clone());
    proxy
        .apply(render(
            &cfg,
            &services,
            &[slice("web", "1", 8080, &[ip(2)])],
        ))
        .unwrap();
    // Somebody removes the table: the incremental update fails, the
    // fallback replaces the table.
    nft.remove("selur-behind").unwrap();
    let wanted = render(&cfg, &services, &[slice("web", "1", 8080, &[ip(3)])]);
    assert!(proxy.apply(wanted.clone()).unwrap());
    let listing = nft.list("selur-behind").unwrap();
    assert!(listing.contains("fd00:0:0:1::3"));
    assert!(!listing.contains("fd00:0:0:1::2"));
    // resync rewrites it even when nothing changed.
    proxy.resync(wanted).unwrap();
    assert_eq!(
        normalize_listing(&listing).unwrap(),
        normalize_listing(&nft.list("selur-behind").unwrap()).unwrap()
    );
    proxy.remove("selur-behind").unwrap();
}
