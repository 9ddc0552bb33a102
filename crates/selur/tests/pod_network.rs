//! The pod network across two nodes, each agent in a network namespace of
//! its own (see `common::netns`): pods get one IPv6 address from their
//! node's /64 and no IPv4 at all, and reach pods on the other node through
//! the node routes.

mod common;

use std::time::{Duration, Instant};

use common::netns::NetCluster;
use serde_json::Value;

fn web_pod(name: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: web}}}}
spec:
  nodeName: {node}
  containers:
  - name: web
    image: localhost/rt:1
    args: ["sh", "-c", "echo hello-from-$(hostname) > /www/index.html; exec /bin/busybox httpd -f -p 8080 -h /www"]
    env:
    - name: MY_IP
      valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
    volumeMounts: [{{name: www, mountPath: /www}}]
  volumes: [{{name: www, emptyDir: {{}}}}]
"#
    )
}

fn running(c: &NetCluster, name: &str) -> Value {
    common::wait_pod(&c.server, name, "running with an IP", |p| {
        p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string()
    })
}

/// An HTTP GET of `/` on `host` (an address, or a name) port 8080 from
/// inside `pod` with `busybox nc` (static busybox's wget needs NSS files the
/// image lacks), retried for a few seconds (the server may still be
/// starting); the body or the last error.
fn fetch(c: &NetCluster, pod: &str, host: &str) -> Result<String, String> {
    let start = Instant::now();
    let script = common::netns::http_get("/bin/busybox", host, 8080);
    loop {
        let out = c
            .server
            .selur(&["exec", pod, "--", "/bin/busybox", "sh", "-c", &script]);
        let text = common::stdout(&out);
        if out.status.success() && text.contains("200 OK") {
            return Ok(text.rsplit("\r\n\r\n").next().unwrap_or("").to_string());
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(common::stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn pods_get_ipv6_only_and_reach_each_other_across_nodes() {
    if !common::netns::available() {
        eprintln!("skipped: cannot create network namespaces");
        return;
    }
    let c = NetCluster::start(&["n1", "n2"]);
    for n in ["n1", "n2"] {
        common::build_busybox_image(&c.server, Some(n));
    }
    let nodes: Vec<Value> = ["n1", "n2"]
        .iter()
        .map(|n| c.server.get_json(&["node", n]))
        .collect();
    let cidr = |i: usize| nodes[i]["spec"]["podCIDR"].as_str().unwrap().to_string();
    assert_ne!(cidr(0), cidr(1));
    assert_eq!(
        nodes[0]["status"]["addresses"][0],
        serde_json::json!({"type": "InternalIP", "address": c.agent("n1").host.ip.to_string()})
    );

    let a_yaml = common::write_file(&c.server, "a.yaml", &web_pod("web-a", "n1"));
    let b_yaml = common::write_file(&c.server, "b.yaml", &web_pod("web-b", "n2"));
    c.server.ok(&["apply", "-f", &a_yaml]);
    c.server.ok(&["apply", "-f", &b_yaml]);
    let a = running(&c, "web-a");
    let b = running(&c, "web-b");
    let ip = |p: &Value| -> std::net::Ipv6Addr {
        p["status"]["podIP"].as_str().unwrap().parse().unwrap()
    };
    let (ip_a, ip_b) = (ip(&a), ip(&b));
    // Each address from its node's range, reported in podIPs and hostIP too.
    let in_range = |ip: std::net::Ipv6Addr, cidr: &str| {
        let (net, len) = cidr.split_once('/').unwrap();
        assert_eq!(len, "64");
        let net: std::net::Ipv6Addr = net.parse().unwrap();
        u128::from(ip) >> 64 == u128::from(net) >> 64
    };
    assert!(in_range(ip_a, &cidr(0)), "{ip_a} not in {}", cidr(0));
    assert!(in_range(ip_b, &cidr(1)), "{ip_b} not in {}", cidr(1));
    assert_eq!(
        a["status"]["podIPs"],
        serde_json::json!([{"ip": ip_a.to_string()}])
    );
    assert_eq!(a["status"]["hostIP"], c.agent("n1").host.ip.to_string());

    // The downward API sees the address.
    let env = c.server.ok(&[
        "exec",
        "web-a",
        "--",
        "/bin/busybox",
        "sh",
        "-c",
        "echo $MY_IP $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT",
    ]);
    assert_eq!(env.trim(), format!("{ip_a} fd01::1 443"));

    // No IPv4 inside: no address, no route, a connect fails at once.
    let v4 = c
        .server
        .ok(&["exec", "web-a", "--", "/bin/busybox", "ip", "-4", "addr"]);
    assert_eq!(v4.trim(), "", "IPv4 addresses in the pod: {v4}");
    let v4r = c
        .server
        .ok(&["exec", "web-a", "--", "/bin/busybox", "ip", "-4", "route"]);
    assert_eq!(v4r.trim(), "", "IPv4 routes in the pod: {v4r}");
    let links = c
        .server
        .ok(&["exec", "web-a", "--", "/bin/busybox", "ip", "-o", "link"]);
    assert_eq!(links.lines().count(), 2, "lo and eth0 only: {links}");
    let out = c.server.selur(&[
        "exec",
        "web-a",
        "--",
        "/bin/busybox",
        "sh",
        "-c",
        "echo | /bin/busybox nc -w 2 127.0.0.1 8080",
    ]);
    assert!(!out.status.success(), "an IPv4 connect worked");
    assert!(
        common::stderr(&out).contains("unreachable"),
        "{}",
        common::stderr(&out)
    );

    // Across nodes, both ways, and to itself by its own address.
    assert_eq!(
        fetch(&c, "web-a", &ip_b.to_string())
            .unwrap_or_else(|e| panic!("{e}\n{}", c.diagnose()))
            .trim(),
        "hello-from-web-b"
    );
    assert_eq!(
        fetch(&c, "web-b", &ip_a.to_string()).unwrap().trim(),
        "hello-from-web-a"
    );
    assert_eq!(
        fetch(&c, "web-a", &ip_a.to_string()).unwrap().trim(),
        "hello-from-web-a"
    );

    // Cutting n2's link cuts the path; restoring it brings it back.
    c.agent("n2").host.cut();
    let out = c.server.selur(&[
        "exec",
        "web-a",
        "--",
        "/bin/busybox",
        "sh",
        "-c",
        &common::netns::http_get("/bin/busybox", &ip_b.to_string(), 8080),
    ]);
    assert!(
        !common::stdout(&out).contains("hello-from-web-b"),
        "reached web-b over a cut link"
    );
    c.agent("n2").host.restore();
    assert_eq!(
        fetch(&c, "web-a", &ip_b.to_string()).unwrap().trim(),
        "hello-from-web-b"
    );

    // Egress to an address outside the cluster leaves with the node's
    // address (NAT66): an "outside" host on the fabric tells the client
    // the address it saw.
    let outside = c.fabric.host("outside");
    let mut listener = outside
        .ns
        .cmd("python3")
        .args([
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('::',9000))\ns.listen()\nwhile True:\n c,a=s.accept()\n c.sendall((a[0]+'\\n').encode())\n c.close()\n",
        ])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("outside listener");
    let seen = {
        let start = Instant::now();
        loop {
            let out = c.server.selur(&[
                "exec",
                "web-a",
                "--",
                "/bin/busybox",
                "sh",
                "-c",
                &format!("/bin/busybox nc -w 2 {} 9000 </dev/null", outside.ip),
            ]);
            let text = common::stdout(&out);
            if out.status.success() && !text.trim().is_empty() {
                break text.trim().to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "egress: {}\n{}",
                common::stderr(&out),
                c.diagnose()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let _ = listener.kill();
    let _ = listener.wait();
    assert_eq!(
        seen,
        c.agent("n1").host.ip.to_string(),
        "the outside host saw the pod's own address"
    );

    // Deleting a pod removes its interface from the node.
    let link = |name: &str| {
        let uid = c.server.get_json(&["pod", name])["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string();
        format!("sel{:012x}", fnv1a(uid.as_bytes()) & 0xffff_ffff_ffff)
    };
    let link_a = link("web-a");
    let host1 = &c.agent("n1").host;
    assert!(host1.ns.ok("ip -o link").contains(&link_a));
    c.server
        .ok(&["delete", "pod", "web-a", "--wait", "--timeout", "60s"]);
    let start = Instant::now();
    while host1.ns.ok("ip -o link").contains(&link_a) {
        assert!(start.elapsed() < Duration::from_secs(10), "{link_a} stayed");
        std::thread::sleep(Duration::from_millis(100));
    }

    // `selur node reset` leaves the host without Selur links, addresses,
    // routes, nftables table or namespace files.
    let mut c = c;
    c.agents[1].kill();
    let out = c.agents[1].reset();
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        common::stdout(&out).contains("network object(s)"),
        "{}",
        common::stdout(&out)
    );
    let host2 = &c.agent("n2").host;
    let start = Instant::now();
    loop {
        let links = host2.ns.ok("ip -o link");
        if !links.contains("selur0") && !links.contains(" sel") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "links left: {links}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let addrs = host2.ns.ok("ip -o addr");
    assert!(
        !addrs.contains("fd00:") && !addrs.contains("fd01:"),
        "{addrs}"
    );
    assert_eq!(host2.ns.ok("ip -6 route show proto 83").trim(), "");
    let tables = host2.ns.ok("nft list tables");
    assert!(!tables.contains("selur"), "{tables}");
    let ns_files = std::process::Command::new("find")
        .arg(&c.agent("n2").data_dir)
        .args(["-name", "net", "-o", "-name", "ipc", "-o", "-name", "uts"])
        .output()
        .unwrap();
    assert_eq!(common::stdout(&ns_files).trim(), "", "namespace files left");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&c.agent("n2").data_dir.display().to_string()),
        "mounts left under the node's data dir"
    );
}

/// The agent's naming of a pod's host link (FNV-1a of the uid).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
