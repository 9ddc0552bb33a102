//! Test scaffolding: network namespaces made by the test itself (never the
//! caller's), removed by Drop guards even when a test fails, and fixtures.

#![allow(dead_code)]

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use selur_proxy::{HostPort, ProxyConfig};
use serde_json::json;

/// Whether this process may create namespaces and run nft; tests print a
/// note and pass otherwise.
pub fn privileged() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let tools = ["nft", "ip", "nsenter", "python3"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    });
    if !(root && tools) {
        eprintln!("skipping: needs root, nft, ip, nsenter and python3");
    }
    root && tools
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("selurpx-{}-{n}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// Runs a command inside the namespace; panics on failure.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Starts a background command inside the namespace.
    pub fn spawn(&self, args: &[&str]) -> Background {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Background(child)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A background process killed (by its own pid) on drop.
pub struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node namespace with bridge `br0` (`fd00:0:0:1::1/64`), forwarding on,
/// the Service range routed to a dead-end interface (as a default route would
/// take it), and pods attached to the bridge.
pub struct Node {
    pub ns: Netns,
    pub pods: Vec<Pod>,
}

pub struct Pod {
    pub ns: Netns,
    pub ip: Ipv6Addr,
    server: Option<Background>,
}

pub const NODE_IP: &str = "fd00:0:0:1::1";

impl Node {
    pub fn new() -> Self {
        let ns = Netns::new("node");
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        // Selur's pods are routed by the node, not bridged through
        // netfilter: where the host has br_netfilter loaded, turn it off
        // for this namespace only (a DNAT back to the sending port would
        // otherwise be bridged and need hairpin mode on the port).
        if std::path::Path::new("/proc/sys/net/bridge").exists() {
            ns.exec(&["sysctl", "-qw", "net.bridge.bridge-nf-call-ip6tables=0"]);
        }
        ns.exec(&["ip", "link", "add", "br0", "type", "bridge"]);
        ns.exec(&["ip", "link", "set", "br0", "up"]);
        ns.exec(&[
            "ip",
            "-6",
            "addr",
            "add",
            "fd00:0:0:1::1/64",
            "dev",
            "br0",
            "nodad",
        ]);
        // No dummy module here: a veth pair with both ends in the node.
        ns.exec(&[
            "ip", "link", "add", "svc0", "type", "veth", "peer", "name", "svc1",
        ]);
        ns.exec(&["ip", "link", "set", "svc1", "up"]);
        ns.exec(&["ip", "link", "set", "svc0", "up"]);
        ns.exec(&["ip", "-6", "route", "add", "fd01::/112", "dev", "svc0"]);
        Self {
            ns,
            pods: Vec::new(),
        }
    }

    /// A pod namespace at `fd00:0:0:1::<host>` on the bridge.
    pub fn add_pod(&mut self, host: u16) -> usize {
        let index = self.pods.len();
        let ns = Netns::new(&format!("pod{host}"));
        // Created inside the node namespace, so the name is local to it.
        let outer = format!("vpod{host}");
        self.ns.exec(&[
            "ip", "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        self.ns
            .exec(&["ip", "link", "set", &outer, "master", "br0"]);
        self.ns.exec(&["ip", "link", "set", &outer, "up"]);
        let ip = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, host);
        ns.exec(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{ip}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        ns.exec(&["ip", "link", "set", "eth0", "up"]);
        ns.exec(&["ip", "-6", "route", "add", "default", "via", NODE_IP]);
        self.pods.push(Pod {
            ns,
            ip,
            server: None,
        });
        index
    }
}

impl Pod {
    /// Serves `reply` on TCP `port` (every connection gets it, then EOF).
    pub fn serve(&mut self, port: u16, reply: &str) {
        let script = format!(
            "import socket\n\
             s=socket.socket(socket.AF_INET6)\n\
             s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('::',{port}))\n\
             s.listen(16)\n\
             while True:\n    c,_=s.accept()\n    c.sendall(b'{reply}\\n')\n    c.close()\n"
        );
        self.server = Some(self.ns.spawn(&["python3", "-c", &script]));
        // Wait until it listens.
        for _ in 0..100 {
            let out = self.ns.exec(&["ss", "-Hltn", &format!("sport = :{port}")]);
            if !out.trim().is_empty() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("server on port {port} did not start");
    }
}

/// Connects from `ns` to `[ip]:port` with a 3 s timeout; returns the line
/// read, or `ERR <errno name>`, and how long it took.
pub fn connect(ns: &Netns, ip: &str, port: u16) -> (String, std::time::Duration) {
    let script = format!(
        "import socket,errno,sys\n\
         s=socket.socket(socket.AF_INET6)\n\
         s.settimeout(3)\n\
         try:\n    s.connect(('{ip}',{port}))\n    sys.stdout.write(s.makefile().readline().strip())\n\
         except socket.timeout:\n    sys.stdout.write('ERR timeout')\n\
         except OSError as e:\n    sys.stdout.write('ERR '+errno.errorcode.get(e.errno,str(e.errno)))\n"
    );
    let start = std::time::Instant::now();
    let out = ns.exec(&["python3", "-c", &script]);
    (out.trim().to_string(), start.elapsed())
}

pub fn config(table: &str) -> ProxyConfig {
    ProxyConfig {
        table: table.into(),
        bridge: "br0".into(),
        cluster_cidr: "fd00::/48".parse().unwrap(),
        node_pod_cidr: "fd00:0:0:1::/64".parse().unwrap(),
        service_cidr: "fd01::/112".parse().unwrap(),
        node_ips: vec![NODE_IP.parse().unwrap()],
        dns_ip: "fd01::a".parse().unwrap(),
        masquerade_egress: true,
        host_ports: Vec::<HostPort>::new(),
    }
}

pub fn service(name: &str, cluster_ip: &str, port: u16, node_port: Option<u16>) -> Service {
    let mut port_obj = json!({"name": "http", "port": port, "protocol": "TCP"});
    if let Some(np) = node_port {
        port_obj["nodePort"] = json!(np);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "type": if node_port.is_some() { "NodePort" } else { "ClusterIP" },
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ports": [port_obj],
        }
    }))
    .unwrap()
}

pub fn slice(service: &str, suffix: &str, port: u16, ips: &[Ipv6Addr]) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("{service}-{suffix}"),
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv6",
        "endpoints": ips.iter().map(|ip| json!({
            "addresses": [ip.to_string()],
            "conditions": {"ready": true},
        })).collect::<Vec<_>>(),
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }))
    .unwrap()
}
