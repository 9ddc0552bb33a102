//! Services across two nodes (agents in network namespaces of their own,
//! see `common::netns`): a ClusterIP spreads connections over the ready
//! endpoints on both nodes and never to an unready one, answers by name
//! through the cluster DNS, a pod reaches its own Service, a NodePort
//! answers on the node's address, and the proxy table survives an agent
//! restart unchanged.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::netns::NetCluster;
use serde_json::Value;

fn web_pod(name: &str, node: &str, ready: bool, host_port: Option<u16>) -> String {
    let host_port = host_port
        .map(|p| format!(", hostPort: {p}"))
        .unwrap_or_default();
    let probe = if ready {
        "[\"/bin/busybox\", \"true\"]"
    } else {
        "[\"/bin/busybox\", \"false\"]"
    };
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
    ports: [{{name: http, containerPort: 8080{host_port}}}]
    readinessProbe: {{exec: {{command: {probe}}}, periodSeconds: 1}}
    volumeMounts: [{{name: www, mountPath: /www}}]
  volumes: [{{name: www, emptyDir: {{}}}}]
---
"#
    )
}

const CLIENT: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: n1
  containers:
  - {name: c, image: localhost/rt:1, args: ["sleep", "3600"]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ipFamilies: [IPv6]
  ipFamilyPolicy: SingleStack
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
"#;

/// Run `script` with busybox sh in `pod`.
fn sh(c: &NetCluster, pod: &str, script: &str) -> std::process::Output {
    c.server
        .selur(&["exec", pod, "--", "/bin/busybox", "sh", "-c", script])
}

/// `n` HTTP GETs of `host:port` from `pod`; the bodies counted.
fn spread(c: &NetCluster, pod: &str, host: &str, port: u16, n: usize) -> BTreeMap<String, usize> {
    let script = format!(
        "i=0; while [ $i -lt {n} ]; do {} | tail -n 1; echo; i=$((i+1)); done",
        common::netns::http_get("/bin/busybox", host, port)
    );
    let out = sh(c, pod, &script);
    let mut m = BTreeMap::new();
    for l in common::stdout(&out)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        *m.entry(l.trim().to_string()).or_insert(0) += 1;
    }
    m
}

fn wait_until(what: &str, c: &NetCluster, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "never {what}\n{}",
            c.diagnose()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn nslookup(c: &NetCluster, pod: &str, args: &str) -> (bool, String) {
    let out = sh(c, pod, &format!("/bin/busybox nslookup {args} 2>&1"));
    (
        out.status.success(),
        common::stdout(&out) + &common::stderr(&out),
    )
}

#[test]
fn services_spread_over_nodes_answer_by_name_and_survive_an_agent_restart() {
    if !common::netns::available() {
        eprintln!("skipped: cannot create network namespaces");
        return;
    }
    let mut c = NetCluster::start(&["n1", "n2"]);
    for n in ["n1", "n2"] {
        common::build_busybox_image(&c.server, Some(n));
    }
    let mut all = String::new();
    all += &web_pod("web-a", "n1", true, None);
    all += &web_pod("web-b", "n2", true, Some(18080));
    all += &web_pod("web-unready", "n1", false, None);
    all += CLIENT;
    let f = common::write_file(&c.server, "all.yaml", &all);
    c.server.ok(&["apply", "-f", &f]);
    for p in ["web-a", "web-b", "client"] {
        common::wait_pod(&c.server, p, "ready", |p| {
            p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        });
    }
    common::wait_pod(&c.server, "web-unready", "running", |p| {
        p["status"]["phase"] == "Running"
    });
    let svc = c.server.get_json(&["svc", "web"]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(cluster_ip.starts_with("fd01::"), "{cluster_ip}");
    assert_eq!(svc["spec"]["ipFamilies"], serde_json::json!(["IPv6"]));

    // The EndpointSlice lists the two ready pods as ready, the other not.
    wait_until("two ready endpoints", &c, || {
        let slices = c
            .server
            .get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
        let ready = slices["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                    .filter(|e| e["conditions"]["ready"] == true)
                    .count()
            })
            .unwrap_or(0);
        ready == 2
    });

    // 200 connections to the ClusterIP land on both nodes' pods, none on
    // the unready one.
    let mut seen = BTreeMap::new();
    wait_until("answers from both endpoints", &c, || {
        seen = spread(&c, "client", &cluster_ip, 80, 200);
        seen.contains_key("hello-from-web-a") && seen.contains_key("hello-from-web-b")
    });
    assert!(!seen.contains_key("hello-from-web-unready"), "{seen:?}");
    let answered: usize = seen
        .iter()
        .filter(|(k, _)| k.starts_with("hello-from-"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(answered, 200, "{seen:?}");

    // A pod reaches its own Service (hairpin), including itself.
    wait_until("web-a reaching itself through its Service", &c, || {
        spread(&c, "web-a", &cluster_ip, 80, 20).contains_key("hello-from-web-a")
    });

    // By name through the cluster DNS.
    let name = "web.default.svc.cluster.local";
    let (ok, text) = nslookup(&c, "client", &format!("-type=AAAA {name}"));
    assert!(ok && text.contains(&cluster_ip), "{text}");
    let by_name = spread(&c, "client", name, 80, 10);
    assert!(
        by_name.keys().any(|k| k.starts_with("hello-from-web-")),
        "{by_name:?}"
    );
    // The short name through the search path.
    let short = spread(&c, "client", "web", 80, 3);
    assert!(
        short.keys().any(|k| k.starts_with("hello-from-web-")),
        "{short:?}"
    );
    // A for an IPv6-only Service: empty, not an error; unknown: NXDOMAIN.
    let (_, text) = nslookup(&c, "client", &format!("-type=A {name}"));
    assert!(
        !text.contains("NXDOMAIN") && !text.contains("SERVFAIL"),
        "{text}"
    );
    let (ok, text) = nslookup(&c, "client", "-type=AAAA nothere.default.svc.cluster.local");
    assert!(!ok && text.contains("NXDOMAIN"), "{text}");
    // SRV for the named port, PTR for the ClusterIP, headless answers.
    let (ok, text) = nslookup(&c, "client", &format!("-type=SRV _http._tcp.{name}"));
    assert!(ok && text.contains("80"), "{text}");
    let (ok, text) = nslookup(&c, "client", &cluster_ip);
    assert!(ok && text.contains(name), "{text}");
    let ip_of = |p: &str| {
        c.server.get_json(&["pod", p])["status"]["podIP"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (ok, text) = nslookup(
        &c,
        "client",
        "-type=AAAA web-headless.default.svc.cluster.local",
    );
    assert!(
        ok && text.contains(&ip_of("web-a")) && text.contains(&ip_of("web-b")),
        "{text}"
    );
    assert!(!text.contains(&ip_of("web-unready")), "{text}");

    // NodePort: from each node's own address and from the other node.
    let np = c.server.get_json(&["svc", "web-np"])["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .unwrap();
    assert!((30000..=32767).contains(&np), "{np}");
    for (from, to) in [("n1", "n1"), ("n2", "n1"), ("n1", "n2")] {
        let to_ip = c.agent(to).host.ip;
        let host = &c.agent(from).host;
        let start = Instant::now();
        loop {
            let out = host.ns.sh(&common::netns::http_get(
                "busybox",
                &to_ip.to_string(),
                np as u16,
            ));
            if common::stdout(&out).contains("hello-from-web-") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "NodePort {to_ip}:{np} from {from}: {}\n{}",
                common::stderr(&out),
                c.diagnose()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    // web-b's hostPort answers on its node's address.
    let n2_ip = c.agent("n2").host.ip;
    let out = c.agent("n1").host.ns.sh(&common::netns::http_get(
        "busybox",
        &n2_ip.to_string(),
        18080,
    ));
    assert!(
        common::stdout(&out).contains("hello-from-web-b"),
        "hostPort: {}\n{}",
        common::stderr(&out),
        c.diagnose()
    );

    // `selur get svc,endpointslices -o wide` shows both.
    let table = c.server.ok(&["get", "svc,endpointslices", "-o", "wide"]);
    assert!(
        table.contains(&cluster_ip) && table.contains("web-np") && table.contains("IPv6"),
        "{table}"
    );

    // An agent restart rebuilds the same table; the Service answers
    // throughout.
    let table = |c: &NetCluster| c.agent("n1").host.ns.ok("nft -j list table ip6 selur");
    let before = normalized(&table(&c));
    c.agents[0].kill();
    // The node itself (its exec path went with the agent) still reaches
    // the Service through the table left in place.
    let during = c
        .agent("n1")
        .host
        .ns
        .sh(&common::netns::http_get("busybox", &cluster_ip, 80));
    assert!(
        common::stdout(&during).contains("hello-from-web-"),
        "{}",
        common::stderr(&during)
    );
    c.agents[0].spawn();
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if c.agent("n1").log().matches("cluster DNS listening").count() >= 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            c.agent("n1").log()
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(normalized(&table(&c)), before);
    let after = spread(&c, "client", &cluster_ip, 80, 20);
    assert!(
        after.keys().any(|k| k.starts_with("hello-from-web-")),
        "{after:?}"
    );
}

/// An `nft -j list` without rule handles (which change on a rewrite), so
/// two listings of the same rules compare equal.
fn normalized(listing: &str) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("handle");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(listing).unwrap();
    strip(&mut v);
    if let Some(items) = v["nftables"].as_array_mut() {
        items.retain(|i| i.get("metainfo").is_none());
        items.sort_by_key(|i| i.to_string());
    }
    v
}

/// A DNS server answering every AAAA question with 2001:db8::99 (and
/// nothing for other types), on `[ip]:53`, in python3 (raw packets).
const FAKE_UPSTREAM: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
while True:
    d, a = s.recvfrom(4096)
    i = 12
    while d[i] != 0:
        i += d[i] + 1
    qtype = int.from_bytes(d[i + 1:i + 3], "big")
    q = d[12:i + 5]
    ans, n = b"", 0
    if qtype == 28:
        ans = b"\xc0\x0c\x00\x1c\x00\x01\x00\x00\x00\x3c\x00\x10" + socket.inet_pton(socket.AF_INET6, "2001:db8::99")
        n = 1
    s.sendto(d[:2] + b"\x81\x80\x00\x01" + n.to_bytes(2, "big") + b"\x00\x00\x00\x00" + q + ans, a)
"#;

#[test]
fn cluster_dns_forwards_outside_names_and_fails_fast_without_upstream() {
    if !common::netns::available() {
        eprintln!("skipped: cannot create network namespaces");
        return;
    }
    let mut c = NetCluster::empty();
    let outside = c.fabric.host("outside");
    let resolv = c.server.data_dir().join("node-resolv.conf");
    std::fs::write(
        &resolv,
        format!("nameserver {}\noptions ndots:1\n", outside.ip),
    )
    .unwrap();
    let mut upstream = outside
        .ns
        .cmd("python3")
        .args(["-c", FAKE_UPSTREAM, &outside.ip.to_string()])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("fake upstream");
    let resolv_arg = resolv.display().to_string();
    c.add_agent("n1", &["--resolv-conf", &resolv_arg]);
    common::build_busybox_image(&c.server, Some("n1"));
    let f = common::write_file(
        &c.server,
        "client.yaml",
        CLIENT.split("---").next().unwrap(),
    );
    c.server.ok(&["apply", "-f", &f]);
    common::wait_pod(&c.server, "client", "running", |p| {
        p["status"]["phase"] == "Running"
    });

    // The pod's resolv.conf points at the cluster DNS only.
    let rc = c.server.ok(&[
        "exec",
        "client",
        "--",
        "/bin/busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert_eq!(
        rc,
        "nameserver fd01::a\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    );
    let mut text = String::new();
    wait_until("an outside name answered through the upstream", &c, || {
        let (ok, t) = nslookup(&c, "client", "-type=AAAA outside.example.");
        text = t;
        ok && text.contains("2001:db8::99")
    });

    // The upstream goes away: SERVFAIL after the 2 s upstream deadline,
    // not a hang.
    let _ = upstream.kill();
    let _ = upstream.wait();
    let start = Instant::now();
    let (ok, text) = nslookup(&c, "client", "-type=AAAA gone.example.");
    let took = start.elapsed();
    assert!(!ok && text.contains("SERVFAIL"), "{text}");
    assert!(took < Duration::from_secs(10), "SERVFAIL took {took:?}");
    // Cluster names still answer meanwhile.
    let (ok, text) = nslookup(
        &c,
        "client",
        "-type=AAAA kubernetes.default.svc.cluster.local",
    );
    assert!(ok && text.contains("fd01::1"), "{text}");
}

const SEED_SERVICES: &str = r#"apiVersion: v1
kind: Service
metadata: {name: web-service}
spec:
  ipFamilies: [IPv6]
  ipFamilyPolicy: SingleStack
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-service-np}
spec:
  type: NodePort
  ipFamilies: [IPv6]
  ipFamilyPolicy: SingleStack
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

#[test]
fn the_seed_deployment_answers_through_its_service_and_a_node_port() {
    if !common::netns::available() {
        eprintln!("skipped: cannot create network namespaces");
        return;
    }
    let c = NetCluster::start(&["n1", "n2"]);
    for n in ["n1", "n2"] {
        common::standin_images_on(&c.server, Some(n));
    }
    let seed = common::examples().join("seed/deployment-web-service.yaml");
    c.server.ok(&["apply", "-f", &seed.display().to_string()]);
    let f = common::write_file(&c.server, "svc.yaml", SEED_SERVICES);
    c.server.ok(&["apply", "-f", &f]);
    wait_until("three ready endpoints", &c, || {
        let s = c.server.get_json(&[
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web-service",
        ]);
        s["items"]
            .as_array()
            .map(|i| {
                i.iter()
                    .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                    .filter(|e| e["conditions"]["ready"] == true)
                    .count()
            })
            .unwrap_or(0)
            == 3
    });
    let np = c.server.get_json(&["svc", "web-service-np"])["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .unwrap();
    let cluster_ip = c.server.get_json(&["svc", "web-service"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    // curl -6 from each node to its own address's NodePort, and to the
    // ClusterIP from the node itself.
    for a in &c.agents {
        for url in [
            format!("http://[{}]:{np}/api", a.host.ip),
            format!("http://[{cluster_ip}]/api"),
        ] {
            let mut body = String::new();
            wait_until(&format!("{url} from {}", a.name), &c, || {
                let out = a.host.ns.sh(&format!("curl -6 -sS --max-time 3 {url}"));
                body = common::stdout(&out);
                body.contains("\"hostname\":\"web-service-")
            });
        }
    }
    let table = c.server.ok(&["get", "svc,endpointslices", "-o", "wide"]);
    for want in [
        "web-service",
        "web-service-np",
        "NodePort",
        &cluster_ip,
        "IPv6",
    ] {
        assert!(table.contains(want), "{want} missing from:\n{table}");
    }
}
