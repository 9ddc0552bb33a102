//! `--pod-network cni`: an operator's own CNI config (Debian's `bridge` and
//! `host-local` plugins with an IPv6 range of the test's choosing) gives
//! pods their interface and address; Selur still serves Services and DNS,
//! tells the plugins when a pod goes (its lease is released) and removes
//! what it added itself on `selur node reset`.

mod common;

use std::time::{Duration, Instant};

use common::netns::NetCluster;

#[test]
fn pods_get_their_network_from_the_operators_cni_config() {
    if !common::netns::available() || !std::path::Path::new("/usr/lib/cni/bridge").exists() {
        eprintln!("skipped: needs network namespaces and Debian's CNI plugins");
        return;
    }
    let mut c = NetCluster::empty();
    let conf_dir = c.server.data_dir().join("net.d");
    let leases = c.server.data_dir().join("cni-leases");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(
        conf_dir.join("10-test.conflist"),
        serde_json::json!({
            "cniVersion": "1.0.0", "name": "testnet",
            "plugins": [{"type": "bridge", "bridge": "cni0", "isGateway": true,
                "ipMasq": false, "hairpinMode": true,
                "ipam": {"type": "host-local",
                    "ranges": [[{"subnet": "fd00:0:0:77::/64", "gateway": "fd00:0:0:77::1"}]],
                    "routes": [{"dst": "::/0"}],
                    "dataDir": leases.display().to_string()}}]
        })
        .to_string(),
    )
    .unwrap();
    let conf = conf_dir.display().to_string();
    c.add_agent(
        "n1",
        &[
            "--pod-network",
            "cni",
            "--cni-conf-dir",
            &conf,
            "--cni-bin-dir",
            "/usr/lib/cni",
        ],
    );
    common::build_busybox_image(&c.server, Some("n1"));
    let pod = r#"apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: n1
  containers:
  - name: web
    image: localhost/rt:1
    args: ["sh", "-c", "echo hello-cni > /www/index.html; exec /bin/busybox httpd -f -p 8080 -h /www"]
    volumeMounts: [{name: www, mountPath: /www}]
  volumes: [{name: www, emptyDir: {}}]
"#;
    let f = common::write_file(&c.server, "web.yaml", pod);
    c.server.ok(&["apply", "-f", &f]);
    let p = common::wait_pod(&c.server, "web", "running with an IP", |p| {
        p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string()
    });
    let ip: std::net::Ipv6Addr = p["status"]["podIP"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        u128::from(ip) >> 64,
        0xfd00_0000_0000_0077,
        "{ip} from the CNI range"
    );
    let host = &c.agent("n1").host;
    // The plugin's lease, and the pod reachable from its node.
    let lease_dir = leases.join("testnet");
    assert!(lease_dir.join(ip.to_string()).exists(), "no lease for {ip}");
    let start = Instant::now();
    loop {
        let out = host
            .ns
            .sh(&common::netns::http_get("busybox", &ip.to_string(), 8080));
        if common::stdout(&out).contains("hello-cni") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}\n{}",
            common::stderr(&out),
            c.diagnose()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The cluster DNS answers the pod through its CNI gateway.
    let out = c.server.selur(&[
        "exec",
        "web",
        "--",
        "/bin/busybox",
        "nslookup",
        "-type=AAAA",
        "kubernetes.default.svc.cluster.local",
    ]);
    assert!(
        common::stdout(&out).contains("fd01::1"),
        "{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );

    // Deleting the pod runs CNI DEL: the lease goes.
    c.server
        .ok(&["delete", "pod", "web", "--wait", "--timeout", "60s"]);
    let start = Instant::now();
    while lease_dir.join(ip.to_string()).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "lease for {ip} kept"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Reset removes what Selur added (the DNS address on lo, its table),
    // not the operator's bridge.
    c.agents[0].kill();
    let out = c.agents[0].reset();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let lo = c.agent("n1").host.ns.ok("ip -6 -o addr show dev lo");
    assert!(!lo.contains("fd01::a"), "{lo}");
    let tables = c.agent("n1").host.ns.ok("nft list tables");
    assert!(!tables.contains("selur"), "{tables}");
}
