//! The node agent's core against real processes: its pod watcher never
//! misses a delete (not while its watch is broken, not across a server
//! restart), graceful deletion end to end (Terminating visible, KILL at
//! the grace period's end, force), and image pulls retried with back-off
//! (`ErrImagePull`, then `ImagePullBackOff`, then running once the
//! registry appears).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{
    build_busybox_image, sh, stderr, umoci_busybox, wait_pod, write_file, ExtraAgent, Server,
};

/// (id, pid, status) of the containers under a runc root.
fn runc_list(root: &Path) -> Vec<(String, u64, String)> {
    let out = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["list", "-f", "json"])
        .output()
        .expect("runc");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or("").to_string(),
                c["pid"].as_u64().unwrap_or(0),
                c["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn running_pids(root: &Path) -> Vec<u64> {
    runc_list(root)
        .into_iter()
        .filter(|(_, pid, st)| st == "running" && *pid > 0)
        .map(|(_, pid, _)| pid)
        .collect()
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(secs), "never: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A pod on `node` with `count` containers running `sleep` (as PID 1 it
/// ignores TERM: only the KILL at the grace period's end stops it).
fn sleepers(name: &str, node: &str, grace: u64, count: usize) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: {grace}\n  containers:\n"
    );
    for i in 0..count {
        yaml.push_str(&format!(
            "  - name: c{i}\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    args: [\"sleep\", \"3600\"]\n"
        ));
    }
    yaml
}

fn sleeper(name: &str, node: &str, grace: u64) -> String {
    sleepers(name, node, grace, 1)
}

/// Restart the server process on the same data dir and port (the agents
/// keep their URL).
fn restart_on_same_port(s: &mut Server) {
    s.kill();
    let port = s.url.rsplit(':').next().unwrap().to_string();
    let log = std::fs::File::create(s.data_dir().join("server2.log")).unwrap();
    let child = common::selur_cmd()
        .arg("server")
        .arg("--data-dir")
        .arg(s.data_dir())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--node-name", "main"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    s.child = Some(child);
    wait_until("the restarted server answers", 30, || {
        s.selur(&["get", "nodes"]).status.success()
    });
}

#[test]
fn a_pod_deleted_while_the_agents_watch_is_broken_stops_without_an_agent_restart() {
    let mut s = Server::start(&["--node-name", "main"]);
    let mut agent = ExtraAgent::start(&s, "n2", &[]);
    build_busybox_image(&s, Some("n2"));
    let root: PathBuf = s.data_dir().join("agent-n2/runc");
    let f = write_file(&s, "p.yaml", &sleeper("gap", "n2", 30));
    s.ok(&["apply", "-f", &f]);
    wait_pod(&s, "gap", "running", |p| p["status"]["phase"] == "Running");
    let pids = running_pids(&root);
    assert_eq!(pids.len(), 1, "{:?}", runc_list(&root));
    let agent_pid = agent.0.id().to_string();

    // The agent freezes; the server goes away and comes back; the pod is
    // force-deleted meanwhile: the agent's watch never saw the delete.
    sh("kill", &["-STOP", &agent_pid]);
    restart_on_same_port(&mut s);
    let out = s.selur(&["delete", "pod", "gap", "--grace-period=0", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!s.selur(&["get", "pod", "gap"]).status.success());
    assert!(alive(pids[0]), "nobody stopped the container yet");
    sh("kill", &["-CONT", &agent_pid]);

    wait_until("the container is stopped", 60, || !alive(pids[0]));
    wait_until("the runtime state is gone", 30, || {
        runc_list(&root).is_empty()
    });
    wait_until("the pod's files are gone", 30, || {
        !s.data_dir()
            .join("agent-n2/pods")
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    });
    assert!(
        agent.0.try_wait().unwrap().is_none(),
        "the agent kept running (no restart)"
    );
}

#[test]
fn graceful_deletion_shows_terminating_kills_at_the_grace_end_and_force_is_immediate() {
    let s = common::node_with_busybox_image();
    let root = s.data_dir().join("agent/runc");
    // `sleep` as PID 1 ignores TERM: only the KILL at the grace end stops it.
    let f = write_file(&s, "p.yaml", &sleeper("stubborn", "main", 4));
    s.ok(&["apply", "-f", &f]);
    let f2 = write_file(&s, "q.yaml", &sleeper("forced", "main", 30));
    s.ok(&["apply", "-f", &f2]);
    for p in ["stubborn", "forced"] {
        wait_pod(&s, p, "running", |p| p["status"]["phase"] == "Running");
    }
    let before: Vec<(String, u64, String)> = runc_list(&root);
    assert_eq!(before.len(), 2, "{before:?}");

    let began = Instant::now();
    s.ok(&["delete", "pod", "stubborn", "--wait=false"]);
    let p = s.get_json(&["pod", "stubborn"]);
    assert!(p["metadata"]["deletionTimestamp"].is_string(), "{p}");
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 4);
    let table = s.ok(&["get", "pod", "stubborn"]);
    assert!(table.contains("Terminating"), "{table}");
    wait_until("the pod object is gone", 60, || {
        !s.selur(&["get", "pod", "stubborn"]).status.success()
    });
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "the container ignoring TERM was given its grace period ({took:?})"
    );
    let events = s.ok(&["get", "events"]);
    assert!(
        events.contains("Killing") || events.contains("stubborn"),
        "{events}"
    );

    // Force: the object goes at once, the containers still go.
    let forced_pid = runc_list(&root)
        .into_iter()
        .find(|(id, _, _)| !before.iter().all(|(b, _, _)| b != id))
        .map(|(_, pid, _)| pid)
        .unwrap();
    let out = s.selur(&["delete", "pod", "forced", "--grace-period=0", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!s.selur(&["get", "pod", "forced"]).status.success());
    wait_until("the forced pod's container is stopped", 30, || {
        !alive(forced_pid)
    });
    wait_until("no container is left", 30, || runc_list(&root).is_empty());
}

#[test]
fn a_pull_from_an_unreachable_registry_backs_off_and_succeeds_once_it_appears() {
    let work = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let settings = common::insecure_registry_settings(work.path(), port);
    let s = Server::start(&[
        "--node-name",
        "main",
        "--registry-config",
        settings.to_str().unwrap(),
        "--container-backoff",
        "1s",
        "--container-backoff-max",
        "2s",
    ]);
    let image = format!("127.0.0.1:{port}/later/busybox:1");
    let f = write_file(
        &s,
        "p.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: later\nspec:\n  nodeName: main\n  containers:\n  - name: c\n    image: {image}\n    command: [\"/bin/busybox\", \"sleep\", \"3600\"]\n"
        ),
    );
    s.ok(&["apply", "-f", &f]);
    let waiting = |reason: &'static str| {
        move |p: &Value| {
            p.pointer("/status/containerStatuses/0/state/waiting/reason")
                .and_then(Value::as_str)
                == Some(reason)
        }
    };
    let p = wait_pod(&s, "later", "ErrImagePull", waiting("ErrImagePull"));
    let msg = p
        .pointer("/status/containerStatuses/0/state/waiting/message")
        .and_then(Value::as_str)
        .unwrap_or("");
    assert!(msg.contains(&image), "the registry's error is shown: {msg}");
    let p = wait_pod(&s, "later", "ImagePullBackOff", waiting("ImagePullBackOff"));
    assert_eq!(p["status"]["phase"], "Pending");
    let events = s.ok(&["get", "events"]);
    assert!(events.contains("Back-off pulling image"), "{events}");

    // The registry appears with the image: the next retry pulls and runs it.
    let _registry = common::LocalRegistry::start_on(work.path(), port);
    let img = umoci_busybox(work.path(), &[]);
    sh(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{img}"),
            &format!("docker://{image}"),
        ],
    );
    wait_pod(&s, "later", "running", |p| {
        p["status"]["phase"] == "Running"
    });
}

#[test]
fn a_pod_with_a_100_character_name_runs_with_its_hostname_cut_as_kubernetes_cuts_it() {
    let s = common::node_with_busybox_image();
    let name = format!("{}-{}", "a".repeat(62), "b".repeat(37));
    assert_eq!(name.len(), 100);
    let f = write_file(&s, "long.yaml", &sleeper(&name, "main", 1));
    s.ok(&["apply", "-f", &f]);
    wait_pod(&s, &name, "running", |p| p["status"]["phase"] == "Running");
    let host = s.ok(&["exec", &name, "--", "/bin/busybox", "hostname"]);
    // 63 characters, then the trailing '-' trimmed.
    assert_eq!(host.trim(), "a".repeat(62));
    let out = s.selur(&["delete", "pod", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_1000_container_pod_deleted_while_starting_stops_at_once_and_frees_its_memory() {
    let s = Server::start(&["--node-name", "main"]);
    let agent = ExtraAgent::start(&s, "n2", &[]);
    build_busybox_image(&s, Some("n2"));
    let root = s.data_dir().join("agent-n2/runc");
    let pid = agent.0.id();
    // Warm up: one small pod started and removed, so the baseline includes
    // what any pod start allocates once.
    let f = write_file(&s, "warm.yaml", &sleeper("warm", "n2", 1));
    s.ok(&["apply", "-f", &f]);
    wait_pod(&s, "warm", "running", |p| p["status"]["phase"] == "Running");
    s.ok(&["delete", "pod", "warm"]);
    wait_until("the warm-up pod is gone", 30, || {
        runc_list(&root).is_empty()
    });
    let before = rss_kb(pid);

    let f = write_file(&s, "huge.yaml", &sleepers("huge", "n2", 1, 1000));
    s.ok(&["apply", "-f", &f]);
    let mut peak = before;
    wait_until("some containers of the huge pod run", 120, || {
        peak = peak.max(rss_kb(pid));
        runc_list(&root).len() >= 10
    });
    s.ok(&["delete", "pod", "huge", "--wait=false"]);
    let deleted = Instant::now();
    wait_until("every container of the huge pod is gone", 120, || {
        peak = peak.max(rss_kb(pid));
        runc_list(&root).is_empty()
    });
    let stopped_in = deleted.elapsed();
    // Nothing starts again afterwards.
    std::thread::sleep(Duration::from_secs(2));
    assert!(runc_list(&root).is_empty(), "{:?}", runc_list(&root));
    wait_until("the pod object is gone", 60, || {
        !s.selur(&["get", "pod", "huge"]).status.success()
    });
    wait_until("the pod's files are gone", 30, || {
        !s.data_dir()
            .join("agent-n2/pods")
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    });
    // What the pod took goes back to the system (jemalloc's background
    // purging): at least half of the growth, where glibc kept all of it
    // and the old agent kept growing with every container it went on
    // starting.
    let back = Instant::now();
    let grew = peak.saturating_sub(before);
    wait_until("the agent's memory goes back down", 120, || {
        rss_kb(pid) < before + grew / 2 + 4 * 1024
    });
    eprintln!(
        "huge pod stopped {stopped_in:?} after its delete; agent RSS {before} kB before, {peak} kB at most, {} kB {:?} later",
        rss_kb(pid),
        back.elapsed()
    );
}

#[test]
fn a_server_killed_while_40_replicas_start_converges_to_40_ready_after_restart() {
    let mut s = common::node_with_busybox_image();
    let root = s.data_dir().join("agent/runc");
    let f = write_file(
        &s,
        "d.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: forty\nspec:\n  replicas: 40\n  selector:\n    matchLabels: {app: forty}\n  template:\n    metadata:\n      labels: {app: forty}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: localhost/rt:1\n        imagePullPolicy: Never\n        args: [\"sleep\", \"3600\"]\n        resources:\n          requests: {cpu: 1m, memory: 1Mi}\n",
    );
    s.ok(&["apply", "-f", &f]);
    wait_until("a few replicas run", 120, || runc_list(&root).len() >= 6);
    s.kill();
    s.spawn();
    let start = Instant::now();
    loop {
        let d = s.get_json(&["deploy", "forty"]);
        if d["status"]["availableReplicas"] == 40 && d["status"]["replicas"] == 40 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "never 40/40 after the restart: {}",
            d["status"]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Exactly one running container per replica: nothing from the killed
    // attempts is left over, and no pod waits on a broken sandbox.
    wait_until("40 containers run", 60, || {
        running_pids(&root).len() == 40 && runc_list(&root).len() == 40
    });
    let events = s.ok(&["get", "events"]);
    let pods = s.get_json(&["pods"]);
    let pending: Vec<&Value> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"]["phase"] != "Running")
        .collect();
    assert!(pending.is_empty(), "{pending:?}\n{events}");
    s.ok(&["delete", "deploy", "forty"]);
    wait_until("the replicas are gone", 120, || runc_list(&root).is_empty());
}

#[test]
fn a_big_pod_torn_down_after_the_agent_was_away_never_holds_up_a_new_pod() {
    let s = Server::start(&["--node-name", "main"]);
    let mut agent = ExtraAgent::start(&s, "n2", &[]);
    build_busybox_image(&s, Some("n2"));
    let root = s.data_dir().join("agent-n2/runc");
    // Containers ignoring TERM: the teardown takes the whole grace.
    let f = write_file(&s, "slow.yaml", &sleepers("slow", "n2", 20, 20));
    s.ok(&["apply", "-f", &f]);
    wait_until("the big pod runs", 120, || running_pids(&root).len() == 20);

    // The agent dies; the pod is deleted while it is away (it stays
    // Terminating: nobody confirms); the agent comes back.
    let _ = agent.0.kill();
    let _ = agent.0.wait();
    s.ok(&["delete", "pod", "slow", "--wait=false"]);
    drop(agent);
    // The disk counts as full for the restarted agent: its image GC must
    // still leave the images of this node's pods alone while it takes
    // them on again (it collected them all at start before).
    let _agent = ExtraAgent::start(
        &s,
        "n2",
        &["--image-gc-high-threshold", "1", "--image-gc-period", "1s"],
    );
    let f = write_file(&s, "quick.yaml", &sleeper("quick", "n2", 1));
    s.ok(&["apply", "-f", &f]);
    wait_pod(&s, "quick", "running", |p| {
        p["status"]["phase"] == "Running"
    });
    assert!(
        s.selur(&["get", "pod", "slow"]).status.success(),
        "the new pod ran while the big one was still being torn down"
    );
    wait_until("the big pod is gone", 90, || {
        !s.selur(&["get", "pod", "slow"]).status.success()
    });
    assert_eq!(running_pids(&root).len(), 1, "{:?}", runc_list(&root));
}
