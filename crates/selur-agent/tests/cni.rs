//! The CNI driver with Debian's real plugins (`bridge`, `host-local`): a pod
//! namespace ADDed to Selur's default conflist and DELeted again.
//!
//! Nothing touches the machine's own network namespace: the "node" side
//! (bridge, sysctls) is a namespace the test creates, which the plugins run
//! in through `CniNetwork::with_host_netns`; host-local keeps its leases in
//! the test's temp dir. Namespaces are unmounted on drop, also on failure.
//! Needs root and /usr/lib/cni; skipped with a note otherwise.

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use selur_agent::network::cni::{self, CniError, CniNetwork};

const PLUGINS: &str = "/usr/lib/cni";

/// A network namespace bound on a file the test owns; unmounted on drop.
struct Netns {
    path: PathBuf,
}

impl Netns {
    fn create(path: &Path) -> Netns {
        std::fs::write(path, b"").expect("netns file");
        // The guard exists before the mount, so a half-made one is cleaned too.
        let ns = Netns {
            path: path.to_path_buf(),
        };
        let out = Command::new("unshare")
            .arg(format!("--net={}", path.display()))
            .args(["ip", "link", "set", "lo", "up"])
            .output()
            .expect("unshare");
        assert!(
            out.status.success(),
            "unshare: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ns
    }

    /// `sh -c script` inside; (success, stdout + stderr).
    fn sh(&self, script: &str) -> (bool, String) {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .args(["sh", "-c", script])
            .output()
            .expect("nsenter");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn unmount(&self) {
        let _ = Command::new("umount").arg(&self.path).output();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn can_run() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("note: skipping the CNI test: it needs root");
        return false;
    }
    if !Path::new(PLUGINS).join("bridge").is_file()
        || !Path::new(PLUGINS).join("host-local").is_file()
    {
        eprintln!("note: skipping the CNI test: no bridge/host-local plugins in {PLUGINS} (containernetworking-plugins)");
        return false;
    }
    true
}

/// Selur's default conflist in `dir`, with host-local's leases in `leases`.
fn default_network(dir: &Path, bridge: &str, leases: &Path, host: &Netns) -> CniNetwork {
    let gw: Ipv6Addr = "fd00:c0c1:0:1::1".parse().unwrap();
    let path = cni::write_default_conflist(dir, bridge, "fd00:c0c1:0:1::/64", gw).unwrap();
    let mut conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    conf["plugins"][0]["ipam"]["dataDir"] = leases.display().to_string().into();
    std::fs::write(&path, conf.to_string()).unwrap();
    CniNetwork::load(dir, &[PathBuf::from(PLUGINS)])
        .unwrap()
        .with_host_netns(&host.path)
}

/// A bridge name unique to this test run.
fn bridge_name(tag: &str) -> String {
    format!("sc{tag}{:x}", std::process::id() & 0x00ff_ffff)
}

#[test]
fn add_gives_the_pod_an_address_on_the_bridge_and_del_releases_it() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let host = Netns::create(&tmp.path().join("host.ns"));
    let pod = Netns::create(&tmp.path().join("pod.ns"));
    let leases = tmp.path().join("leases");
    let bridge = bridge_name("a");
    let net = default_network(&tmp.path().join("conf"), &bridge, &leases, &host);
    let cache = tmp.path().join("cache/pod-a-eth0.json");

    let result = net.add("pod-a", &pod.path, "eth0", &cache).unwrap();
    let ip = result.ipv6().expect("an IPv6 address in the result");
    assert_eq!(ip.segments()[..4], [0xfd00, 0xc0c1, 0, 1], "{ip}");
    assert!(cache.is_file());

    let (ok, addrs) = pod.sh("ip -6 addr show dev eth0");
    assert!(ok, "{addrs}");
    assert!(addrs.contains(&format!("{ip}/64")), "{addrs}");
    let (ok, routes) = pod.sh("ip -6 route show default");
    assert!(ok && routes.contains("via fd00:c0c1:0:1::1"), "{routes}");
    let (ok, link) = host.sh(&format!("ip -6 addr show dev {bridge}"));
    assert!(ok && link.contains("fd00:c0c1:0:1::1/64"), "{link}");
    // The machine's own namespace has no such bridge.
    let own = Command::new("ip")
        .args(["link", "show", &bridge])
        .output()
        .unwrap();
    assert!(
        !own.status.success(),
        "the bridge leaked into the machine's namespace"
    );
    let lease = leases.join("selur").join(ip.to_string());
    assert!(lease.is_file(), "no lease {}", lease.display());

    // A fresh load, as after an agent restart: DEL from the cache.
    let net = default_network(&tmp.path().join("conf"), &bridge, &leases, &host);
    net.del("pod-a", &pod.path, "eth0", &cache).unwrap();
    assert!(!lease.exists(), "lease {} kept", lease.display());
    assert!(!cache.exists());
    let (ok, _) = pod.sh("ip link show eth0");
    assert!(!ok, "eth0 still in the pod");

    // DEL is idempotent: again, and with the namespace gone.
    net.del("pod-a", &pod.path, "eth0", &cache).unwrap();
    pod.unmount();
    net.del("pod-a", &pod.path, "eth0", &cache).unwrap();
}

#[test]
fn a_failed_add_returns_the_plugins_error_and_undoes_the_earlier_plugins() {
    if !can_run() || !Path::new(PLUGINS).join("tuning").is_file() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let host = Netns::create(&tmp.path().join("host.ns"));
    let pod = Netns::create(&tmp.path().join("pod.ns"));
    let leases = tmp.path().join("leases");
    let conf = tmp.path().join("conf");
    let net = default_network(&conf, &bridge_name("b"), &leases, &host);
    // bridge and host-local succeed, then tuning fails on a sysctl that
    // does not exist: the address and the interface must go again.
    let mut plugins = net.plugins.clone();
    plugins.push(serde_json::json!({
        "type": "tuning",
        "sysctl": { "net.ipv6.conf.eth0.no_such_knob": "1" },
    }));
    let net = CniNetwork { plugins, ..net };
    let cache = tmp.path().join("cache/pod-b-eth0.json");

    let err = net.add("pod-b", &pod.path, "eth0", &cache).unwrap_err();
    match &err {
        CniError::Plugin {
            plugin,
            command,
            msg,
            ..
        } => {
            assert_eq!((plugin.as_str(), *command), ("tuning", "ADD"), "{err}");
            assert!(msg.contains("no_such_knob"), "{msg}");
        }
        other => panic!("expected the plugin's error, got {other:?}"),
    }
    assert!(!cache.exists());
    let held: Vec<_> = std::fs::read_dir(leases.join("selur"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let held: Vec<_> = held
        .iter()
        .filter(|n| n.to_string_lossy().contains(':'))
        .collect();
    assert!(
        held.is_empty(),
        "leases kept after the failed ADD: {held:?}"
    );
    let (ok, _) = pod.sh("ip link show eth0");
    assert!(!ok, "eth0 kept after the failed ADD");
}

#[test]
fn a_taken_interface_name_is_the_bridge_plugins_error() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let host = Netns::create(&tmp.path().join("host.ns"));
    let pod = Netns::create(&tmp.path().join("pod.ns"));
    let leases = tmp.path().join("leases");
    let net = default_network(&tmp.path().join("conf"), &bridge_name("c"), &leases, &host);
    let (ok, out) = pod.sh("ip link add eth0 type veth peer name taken0");
    assert!(ok, "{out}");
    let err = net
        .add("pod-c", &pod.path, "eth0", &tmp.path().join("cache/c.json"))
        .unwrap_err();
    match &err {
        CniError::Plugin {
            plugin, msg, code, ..
        } => {
            assert_eq!(plugin, "bridge");
            assert!(msg.contains("already exists"), "{msg}");
            assert!(*code > 0);
        }
        other => panic!("expected the plugin's error, got {other:?}"),
    }
}
