//! Several "hosts" on one machine for pod network tests: each node's agent
//! runs in a network namespace the test creates, linked to a test bridge
//! (the "fabric", itself in a namespace of its own) with its own IPv6
//! address, so pod-to-pod and Service traffic really crosses node routes.
//! Agents are started with `nsenter --net` only (not `ip netns exec`, which
//! also unshares the mount namespace and would hide the agent's mounts from
//! cleanup) and reach the API server, which stays on the machine's
//! loopback, through a relay listening on `[::1]` inside their namespace.
//!
//! Nothing here touches the machine's own namespace: no address, route,
//! link or nftables table. Everything is removed on drop, also when the
//! test fails: agents killed, `selur node reset` run inside each host,
//! namespaces unmounted.

use std::io::Write as _;
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{selur_cmd, Server};

/// A network namespace held by a bind mount on a file the test owns.
pub struct Netns {
    pub path: PathBuf,
}

impl Netns {
    /// A fresh namespace at `path`, loopback up.
    pub fn create(path: &Path) -> Netns {
        std::fs::write(path, b"").expect("netns file");
        let out = Command::new("unshare")
            .arg(format!("--net={}", path.display()))
            .args(["ip", "link", "set", "lo", "up"])
            .output()
            .expect("unshare");
        assert!(out.status.success(), "unshare: {}", super::stderr(&out));
        Netns {
            path: path.to_path_buf(),
        }
    }

    /// `program` to run inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path.display())).arg(program);
        c
    }

    /// Run `sh -c script` inside; its output.
    pub fn sh(&self, script: &str) -> Output {
        self.cmd("sh")
            .args(["-c", script])
            .output()
            .expect("nsenter")
    }

    /// Run `sh -c script` inside; must succeed; its stdout.
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in {}: {script}: {}",
            self.path.display(),
            super::stderr(&out)
        );
        super::stdout(&out)
    }

    /// Listen on `[::1]:0` inside the namespace and relay every connection
    /// to `target` in the test's own namespace; the port inside.
    pub fn relay_to(&self, target: SocketAddr) -> u16 {
        let file = std::fs::File::open(&self.path).expect("open netns");
        // Only this short-lived thread enters the namespace; the socket
        // stays there after it ends.
        let listener = std::thread::spawn(move || {
            rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns");
            TcpListener::bind("[::1]:0").expect("relay listener")
        })
        .join()
        .expect("relay thread");
        let port = listener.local_addr().expect("relay port").port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(inside) = conn else { return };
                let Ok(outside) = TcpStream::connect(target) else {
                    continue;
                };
                pipe(inside, outside);
            }
        });
        port
    }
}

/// Copy both ways between `a` and `b` until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let one = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    };
    one(a, b2);
    one(b, a2);
}

impl Drop for Netns {
    fn drop(&mut self) {
        for _ in 0..10 {
            if Command::new("umount")
                .arg(&self.path)
                .stderr(Stdio::null())
                .status()
                .map(|s| !s.success())
                .unwrap_or(true)
            {
                break;
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The test network: a bridge in its own namespace, with a unique /64
/// (`fdfa:<random>::/64`) for the hosts' addresses.
pub struct Fabric {
    pub ns: Netns,
    pub prefix: String,
    dir: PathBuf,
    next: std::cell::Cell<u16>,
}

impl Fabric {
    pub fn new(dir: &Path) -> Fabric {
        let ns = Netns::create(&dir.join("fabric.netns"));
        ns.ok("ip link add fab0 type bridge && ip link set fab0 addrgenmode none && ip link set fab0 up");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let r: u32 = std::process::id().wrapping_mul(2_654_435_761) ^ nanos;
        let prefix = format!("fdfa:{:x}:{:x}", r >> 16, r & 0xffff);
        Fabric {
            ns,
            prefix,
            dir: dir.to_path_buf(),
            next: std::cell::Cell::new(1),
        }
    }

    /// A new host on the fabric: its own namespace with `eth0` at
    /// `<prefix>::<n>/64`.
    pub fn host(&self, name: &str) -> Host {
        let n = self.next.get();
        self.next.set(n + 1);
        let ns = Netns::create(&self.dir.join(format!("{name}.netns")));
        let ip: Ipv6Addr = format!("{}::{n}", self.prefix).parse().expect("host ip");
        let port = format!("p{n}");
        // `ip` inside the host makes the pair and moves one end to the
        // namespace of the fabric's shell (`netns` takes a pid, not a path).
        self.ns.ok(&format!(
            "nsenter --net={host} ip link add eth0 type veth peer name {port} netns $$ && ip link set {port} master fab0 up",
            host = ns.path.display()
        ));
        ns.ok(&format!(
            "sysctl -qw net.ipv6.conf.eth0.accept_dad=0 && ip addr add {ip}/64 dev eth0 nodad && ip link set eth0 up"
        ));
        Host {
            ns,
            ip,
            port,
            fabric: self.ns.path.clone(),
        }
    }
}

/// One host: a network namespace on the fabric.
pub struct Host {
    pub ns: Netns,
    pub ip: Ipv6Addr,
    /// Its port on the fabric bridge.
    port: String,
    fabric: PathBuf,
}

impl Host {
    fn fabric_cmd(&self, script: &str) {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.fabric.display()))
            .args(["sh", "-c", script])
            .output()
            .expect("nsenter");
        assert!(out.status.success(), "{script}: {}", super::stderr(&out));
    }

    /// Cut the host's link to the fabric.
    pub fn cut(&self) {
        self.fabric_cmd(&format!("ip link set {} down", self.port));
    }

    /// Restore it.
    pub fn restore(&self) {
        self.fabric_cmd(&format!("ip link set {} up", self.port));
    }
}

/// A `selur agent` running inside a host.
pub struct NetAgent {
    pub name: String,
    pub host: Host,
    pub data_dir: PathBuf,
    child: Option<Child>,
    server_url: String,
    log: PathBuf,
    extra: Vec<String>,
}

impl NetAgent {
    /// Start the agent of node `name` in `host`, joined to `server`.
    pub fn start(server: &Server, host: Host, name: &str, extra: &[&str]) -> NetAgent {
        let target: SocketAddr = server
            .url
            .trim_start_matches("http://")
            .parse()
            .expect("server address");
        let port = host.ns.relay_to(target);
        let mut a = NetAgent {
            name: name.to_string(),
            data_dir: server.data_dir().join(format!("agent-{name}")),
            log: server.data_dir().join(format!("agent-{name}.log")),
            host,
            child: None,
            server_url: format!("http://[::1]:{port}"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        a.spawn();
        let start = Instant::now();
        loop {
            let node = server.selur(&["get", "node", name, "-o", "json"]);
            if node.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&node.stdout).unwrap_or_default();
                if v.pointer("/spec/podCIDR").is_some() {
                    break;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "agent {name} never joined: {}",
                a.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        a
    }

    /// (Re)start the agent process.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("agent log");
        let mut c = self.host.ns.cmd(super::SELUR);
        c.args([
            "agent",
            "--server",
            &self.server_url,
            "--node-name",
            &self.name,
        ])
        .arg("--data-dir")
        .arg(&self.data_dir)
        .args(["--heartbeat-interval", "1"])
        .args(if self.extra.iter().any(|a| a == "--pod-network") {
            &[][..]
        } else {
            &["--pod-network", "bridge"][..]
        })
        .args(["--node-ip", &self.host.ip.to_string()])
        .args(&self.extra)
        .env_remove("SELUR_POD_NETWORK")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        self.child = Some(c.spawn().expect("spawn agent"));
    }

    /// `kill -9` the agent (its pods keep running).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `selur node reset` of this agent's data dir, inside its host.
    pub fn reset(&self) -> Output {
        self.host
            .ns
            .cmd(super::SELUR)
            .args(["node", "reset", "--data-dir"])
            .arg(&self.data_dir)
            .output()
            .expect("node reset")
    }
}

impl Drop for NetAgent {
    fn drop(&mut self) {
        self.kill();
        let out = self.reset();
        if !out.status.success() {
            let _ = writeln!(
                std::io::stderr(),
                "node reset of {} failed: {}",
                self.name,
                super::stderr(&out)
            );
        }
    }
}

/// A server on the machine's loopback with agents in hosts of one fabric.
/// Dropped in order: agents (killed, reset), hosts, fabric, server.
pub struct NetCluster {
    pub agents: Vec<NetAgent>,
    pub fabric: Fabric,
    pub server: Server,
}

impl NetCluster {
    /// A server without its own agent, and one agent per name, each in a
    /// host of its own.
    pub fn start(names: &[&str]) -> NetCluster {
        let mut c = NetCluster::empty();
        for n in names {
            c.add_agent(n, &[]);
        }
        c
    }

    /// A server and a fabric, no agents yet.
    pub fn empty() -> NetCluster {
        let server = Server::start(&["--disable-agent"]);
        let fabric = Fabric::new(server.data_dir());
        NetCluster {
            agents: Vec::new(),
            fabric,
            server,
        }
    }

    /// Start node `name`'s agent with `extra` flags in a new host.
    pub fn add_agent(&mut self, name: &str, extra: &[&str]) {
        let host = self.fabric.host(name);
        let a = NetAgent::start(&self.server, host, name, extra);
        self.agents.push(a);
    }

    /// Each host's links, addresses, routes and forwarding, and the
    /// agents' logs' last lines: for failure messages.
    pub fn diagnose(&self) -> String {
        let mut out = String::new();
        for a in &self.agents {
            let o = a.host.ns.sh(
                "ip -br link; ip -br addr; ip -6 route; cat /proc/sys/net/ipv6/conf/all/forwarding",
            );
            let log = a.log();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            out.push_str(&format!(
                "--- host {} ({}):\n{}{}\n--- agent log tail:\n{}\n",
                a.name,
                a.host.ip,
                super::stdout(&o),
                super::stderr(&o),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        out
    }

    pub fn agent(&self, name: &str) -> &NetAgent {
        self.agents
            .iter()
            .find(|a| a.name == name)
            .expect("no such agent")
    }
}

impl Drop for NetCluster {
    fn drop(&mut self) {
        self.agents.clear();
    }
}

/// A shell command fetching `/` from `[host]:port` with busybox's nc
/// (`busybox` is the binary's path: `/bin/busybox` in the test images;
/// static busybox's wget needs NSS files the images lack).
pub fn http_get(busybox: &str, host: &str, port: u16) -> String {
    format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | {busybox} nc -w 2 {host} {port}")
}

/// Whether the test can create namespaces (root, util-linux, iproute2).
pub fn available() -> bool {
    let _ = selur_cmd;
    Command::new("unshare")
        .args(["--net", "true"])
        .status()
        .is_ok_and(|s| s.success())
}
