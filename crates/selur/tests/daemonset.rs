//! The seed's DaemonSet as written (the local vordr stand-in, hostPath
//! `/var/lib/obli-pkg/traces` read-only): one pod on every node, also on a
//! node that joins later, and the container's mount of the host directory is
//! read-only (runc's config and the container's own mount table).
//!
//! `vordr:latest` means `imagePullPolicy: Always`, so every node pulls it: the
//! stand-in (selur-demo as `/usr/bin/vordr`, made with umoci) is pushed to a
//! local Debian `docker-registry` that the registry settings mirror ghcr.io
//! to, as the seed's manifests are meant to run offline.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{demo_binary, examples, sh, ExtraAgent, LocalRegistry, Server};
use serde_json::Value;

const TRACES: &str = "/var/lib/obli-pkg/traces";

/// Removes what the test created under /var/lib/obli-pkg, and only that.
struct HostDirGuard(Vec<PathBuf>);

impl Drop for HostDirGuard {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_dir(p);
        }
    }
}

/// A local registry holding the vordr stand-in as `mirror/vordr:latest`;
/// returns it and the registry settings file that mirrors ghcr.io to it.
fn vordr_mirror(work: &Path) -> (LocalRegistry, PathBuf) {
    let registry = LocalRegistry::start(work);
    let port = registry.port;
    let l = work.join("layout").display().to_string();
    let b = work.join("bundle").display().to_string();
    let img = format!("{l}:latest");
    sh("umoci", &["init", "--layout", &l]);
    sh("umoci", &["new", "--image", &img]);
    sh("umoci", &["unpack", "--image", &img, &b]);
    std::fs::create_dir_all(format!("{b}/rootfs/usr/bin")).expect("rootfs");
    std::fs::copy(demo_binary(), format!("{b}/rootfs/usr/bin/vordr")).expect("demo binary");
    sh("umoci", &["repack", "--image", &img, &b]);
    sh(
        "umoci",
        &[
            "config",
            "--image",
            &img,
            "--config.entrypoint",
            "/usr/bin/vordr",
        ],
    );
    sh(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{img}"),
            &format!("docker://127.0.0.1:{port}/mirror/vordr:latest"),
        ],
    );
    let settings = work.join("registries.yaml");
    std::fs::write(
        &settings,
        format!(
            "mirrors:\n  ghcr.io:\n    endpoint: [\"http://127.0.0.1:{port}\"]\n    rewrite:\n      \"^hyperpolymath/(.*)\": \"mirror/$1\"\n    upstream: false\nconfigs:\n  \"127.0.0.1:{port}\":\n    insecure: true\n"
        ),
    )
    .expect("registry settings");
    (registry, settings)
}

/// Running vordr pods by node.
fn running_by_node(s: &Server) -> BTreeMap<String, Value> {
    let pods: Value =
        serde_json::from_str(&s.ok(&["get", "pods", "-l", "app=vordr", "-o", "json"]))
            .unwrap_or_default();
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"]["phase"] == "Running")
        .filter_map(|p| Some((p["spec"]["nodeName"].as_str()?.to_string(), p.clone())))
        .collect()
}

fn wait_nodes(s: &Server, nodes: &[&str]) -> BTreeMap<String, Value> {
    let start = Instant::now();
    loop {
        let by_node = running_by_node(s);
        let ds = s.get_json(&["daemonset", "vordr-monitor"]);
        if by_node.keys().map(String::as_str).eq(nodes.iter().copied())
            && ds["status"]["numberReady"] == nodes.len()
        {
            assert_eq!(ds["status"]["desiredNumberScheduled"], nodes.len());
            assert_eq!(ds["status"]["currentNumberScheduled"], nodes.len());
            assert_eq!(ds["status"]["updatedNumberScheduled"], nodes.len());
            assert_eq!(ds["status"]["numberMisscheduled"], 0);
            return by_node;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never one running pod on each of {nodes:?}: {:?}, status {}\npods: {}\nevents: {}",
            by_node.keys().collect::<Vec<_>>(),
            ds["status"],
            s.ok(&["get", "pods", "-o", "wide"]),
            s.ok(&["get", "events"]),
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn assert_read_only(agent_dir: &Path, pod: &Value) {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let cdir = agent_dir.join("pods").join(uid).join("c").join("vordr");
    let config: Value =
        serde_json::from_slice(&std::fs::read(cdir.join("config.json")).expect("config.json"))
            .expect("config json");
    let mount = config["mounts"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["destination"] == TRACES))
        .expect("the traces mount in the runtime config");
    assert!(
        mount["options"]
            .as_array()
            .is_some_and(|o| o.iter().any(|x| x == "ro")),
        "not mounted read-only: {mount}"
    );
    // And in the running container's own mount table.
    let pid = std::fs::read_to_string(cdir.join("pid")).expect("pid file");
    let info = std::fs::read_to_string(format!("/proc/{}/mountinfo", pid.trim()))
        .expect("container mountinfo");
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(TRACES))
        .expect("traces in the container's mountinfo");
    let opts = line.split(' ').nth(5).unwrap_or("");
    assert!(
        opts.split(',').any(|o| o == "ro"),
        "mount is writable: {line}"
    );
}

#[test]
fn seed_daemonset_runs_on_every_node_including_one_that_joins_later() {
    let mut created = Vec::new();
    for p in ["/var/lib/obli-pkg", TRACES] {
        if !Path::new(p).exists() {
            created.push(PathBuf::from(p));
        }
    }
    created.reverse();
    let _guard = HostDirGuard(created);

    let work = tempfile::tempdir().expect("tempdir");
    let (_registry, settings) = vordr_mirror(work.path());
    let reg = ["--registry-config", settings.to_str().unwrap_or_default()];
    let s = Server::start(&["--node-name", "ds-main", reg[0], reg[1]]);
    let _a = ExtraAgent::start(&s, "ds-a", &reg);
    let manifest = examples().join("seed/daemonset-vordr.yaml");
    s.ok(&["apply", "-f", manifest.to_str().unwrap_or_default()]);
    let by_node = wait_nodes(&s, &["ds-a", "ds-main"]);
    assert_read_only(&s.data_dir().join("agent"), &by_node["ds-main"]);
    let pod = &by_node["ds-a"];
    let pinned = &pod["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchFields"]
        [0];
    assert_eq!(pinned["key"], "metadata.name");
    assert_eq!(pinned["values"][0], "ds-a");
    let tolerations = pod["spec"]["tolerations"].to_string();
    for t in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/unschedulable",
        "node.kubernetes.io/disk-pressure",
    ] {
        assert!(tolerations.contains(t), "no {t} toleration: {tolerations}");
    }

    // A node that joins later gets its pod.
    let b = ExtraAgent::start(&s, "ds-b", &reg);
    let by_node = wait_nodes(&s, &["ds-a", "ds-b", "ds-main"]);
    assert_read_only(&s.data_dir().join("agent-ds-b"), &by_node["ds-b"]);

    s.ok(&["delete", "-f", manifest.to_str().unwrap_or_default()]);
    let start = Instant::now();
    while !s
        .ok(&["get", "pods", "-l", "app=vordr", "-o", "name"])
        .trim()
        .is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "pods not removed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(b);
}
