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

fn web_pod(name: &str, node: &str, ready: bool) -> String {
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
    ports: [{{name: http, containerPort: 8080}}]
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
        "i=0; while [ $i -lt {n} ]; do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 2 {host} {port} | tail -n 1; echo; i=$((i+1)); done"
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
    all += &web_pod("web-a", "n1", true);
    all += &web_pod("web-b", "n2", true);
    all += &web_pod("web-unready", "n1", false);
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
            let out = host.ns.sh(&format!(
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {to_ip} {np}"
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

    // An agent restart rebuilds the same table; the Service answers
    // throughout.
    let table = |c: &NetCluster| c.agent("n1").host.ns.ok("nft -j list table ip6 selur");
    let before = normalized(&table(&c));
    c.agents[0].kill();
    // The node itself (its exec path went with the agent) still reaches
    // the Service through the table left in place.
    let during = c.agent("n1").host.ns.sh(&format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {cluster_ip} 80"
    ));
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
