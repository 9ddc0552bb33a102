//! Supervision of running containers: restart policies with (shortened)
//! back-off and CrashLoopBackOff, OOMKilled under a memory limit, sidecar
//! init containers, pod cgroups per QoS class, re-adoption after the agent
//! is killed (same container processes, no lost log lines, exits reported),
//! and two agents on one machine without collisions.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{build_busybox_image, wait_pod, write_file, ExtraAgent, Server};
use serde_json::Value;

/// A server (node `node`) with back-off shortened, holding `localhost/rt:1`.
fn server(node: &str) -> Server {
    let s = Server::start(&[
        "--node-name",
        node,
        "--container-backoff",
        "1s",
        "--container-backoff-max",
        "2s",
    ]);
    build_busybox_image(&s, None);
    s
}

fn pod(name: &str, node: &str, policy: &str, extra: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    args: [\"sh\", \"-c\", \"{script}\"]\n{extra}"
    )
}

fn ctr_status(p: &Value) -> &Value {
    &p["status"]["containerStatuses"][0]
}

/// The runc state directory of an agent data dir.
fn runc_root(agent_dir: &Path) -> PathBuf {
    agent_dir.join("runc")
}

fn container_pid(root: &Path, id_suffix: &str) -> Option<u32> {
    let out = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["list", "-f", "json"])
        .output()
        .ok()?;
    let list: Value = serde_json::from_slice(&out.stdout).ok()?;
    list.as_array()?
        .iter()
        .find(|c| {
            c["id"].as_str().is_some_and(|id| id.ends_with(id_suffix)) && c["status"] == "running"
        })
        .and_then(|c| c["pid"].as_u64())
        .map(|p| p as u32)
}

#[test]
fn restart_policies_back_off_and_oom() {
    let s = server("sup");
    let manifests = [
        pod("crash", "sup", "Always", "", "echo boom; exit 3"),
        pod("onfail-ok", "sup", "OnFailure", "", "exit 0"),
        pod(
            "oom",
            "sup",
            "Never",
            "    resources: {limits: {memory: 24Mi}}\n",
            "dd if=/dev/zero of=/dev/null bs=64M count=1",
        ),
    ]
    .join("---\n");
    let f = write_file(&s, "sup.yaml", &manifests);
    s.ok(&["apply", "-f", &f]);

    let crash = wait_pod(&s, "crash", "CrashLoopBackOff", |p| {
        ctr_status(p)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && ctr_status(p)["restartCount"].as_u64().unwrap_or(0) >= 2
    });
    assert_eq!(crash["status"]["phase"], "Running");
    assert_eq!(ctr_status(&crash)["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(crash["status"]["qosClass"], "BestEffort");

    let ok = wait_pod(&s, "onfail-ok", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(ctr_status(&ok)["restartCount"], 0);

    let oom = wait_pod(&s, "oom", "Failed", |p| p["status"]["phase"] == "Failed");
    let t = &ctr_status(&oom)["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{}", oom["status"]);
    assert_eq!(t["exitCode"], 137);
    assert_eq!(oom["status"]["qosClass"], "Burstable");
    // The pod cgroup sits in its QoS class with the pod's memory limit.
    let uid = oom["metadata"]["uid"].as_str().unwrap();
    let pod_cg = format!("/sys/fs/cgroup/memory/selur-sup/burstable/pod{uid}");
    if Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        let limit = std::fs::read_to_string(format!("{pod_cg}/memory.limit_in_bytes")).unwrap();
        assert_eq!(limit.trim(), (24u64 << 20).to_string());
    }
    s.ok(&["delete", "-f", &f]);
    wait_gone(Path::new(&pod_cg));
}

/// Wait (up to 20 s) until `path` no longer exists.
fn wait_gone(path: &Path) {
    let start = Instant::now();
    while path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} not removed",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sidecar_init_containers_run_beside_the_app_and_stop_after_it() {
    let s = server("side");
    let y = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: job\nspec:\n  nodeName: side\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  volumes: [{name: shared, emptyDir: {}}]\n  initContainers:\n  - name: side\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    restartPolicy: Always\n    args: [\"sh\", \"-c\", \"while true; do date >> /shared/beat; sleep 0.2; done\"]\n    volumeMounts: [{name: shared, mountPath: /shared}]\n  - name: wait-beat\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    args: [\"sh\", \"-c\", \"until test -s /shared/beat; do sleep 0.1; done\"]\n    volumeMounts: [{name: shared, mountPath: /shared}]\n  containers:\n  - name: app\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    args: [\"sh\", \"-c\", \"sleep 1; wc -l < /shared/beat\"]\n    volumeMounts: [{name: shared, mountPath: /shared}]\n";
    let f = write_file(&s, "side.yaml", y);
    s.ok(&["apply", "-f", &f]);
    let running = wait_pod(&s, "job", "Running", |p| p["status"]["phase"] == "Running");
    let side = &running["status"]["initContainerStatuses"][0];
    assert_eq!(side["name"], "side");
    assert!(
        side["state"]["running"].is_object(),
        "{}",
        running["status"]
    );
    let done = wait_pod(&s, "job", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    let beats: u32 = s.ok(&["logs", "job", "-c", "app"]).trim().parse().unwrap();
    assert!(
        beats >= 2,
        "the sidecar kept writing while the app ran: {beats}"
    );
    // The sidecar is stopped once the app finished.
    wait_pod(&s, "job", "sidecar stopped", |p| {
        p["status"]["initContainerStatuses"][0]["state"]["terminated"].is_object()
    });
    assert_eq!(
        done["status"]["initContainerStatuses"][1]["state"]["terminated"]["exitCode"],
        0
    );
    s.ok(&["delete", "-f", &f]);
}

fn log_numbers(log: &Path) -> Vec<u64> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            v["log"]
                .as_str()
                .and_then(|t| t.trim().strip_prefix("n=").map(String::from))
        })
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[test]
fn killed_agent_readopts_running_containers() {
    let mut s = server("adopt");
    let manifests = [
        pod(
            "ticker",
            "adopt",
            "Always",
            "",
            "i=0; while true; do echo n=$i; i=$((i+1)); sleep 0.02; done",
        ),
        pod("quitter", "adopt", "Never", "", "sleep 3; exit 7"),
    ]
    .join("---\n");
    let f = write_file(&s, "adopt.yaml", &manifests);
    s.ok(&["apply", "-f", &f]);
    let ticker = wait_pod(&s, "ticker", "Running", |p| {
        ctr_status(p)["state"]["running"].is_object()
    });
    wait_pod(&s, "quitter", "Running", |p| {
        ctr_status(p)["state"]["running"].is_object()
    });
    let root = runc_root(&s.data_dir().join("agent"));
    let uid = ticker["metadata"]["uid"].as_str().unwrap();
    let short: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    let id_suffix = format!("{short}-c");
    let pid = container_pid(&root, &id_suffix).expect("ticker's container runs");

    s.kill();
    std::thread::sleep(Duration::from_secs(4));
    s.spawn();

    let quitter = wait_pod(&s, "quitter", "exit reported", |p| {
        ctr_status(p)["state"]["terminated"]["exitCode"] == 7
    });
    assert_eq!(quitter["status"]["phase"], "Failed");
    assert_eq!(
        container_pid(&root, &id_suffix),
        Some(pid),
        "same process after the restart"
    );
    let after = s.get_json(&["pod", "ticker"]);
    assert_eq!(ctr_status(&after)["restartCount"], 0);
    // Every line, in order, across the agent's absence.
    let link = std::fs::read_dir("/var/log/containers")
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("ticker_default_c-")
        })
        .expect("log link")
        .path();
    let n = log_numbers(&link);
    assert!(
        n.len() > 150,
        "the container kept logging: {} lines",
        n.len()
    );
    assert!(
        n.iter().enumerate().all(|(i, v)| *v == i as u64),
        "no line lost or reordered"
    );
    s.ok(&["delete", "-f", &f]);
}

#[test]
fn two_agents_run_pods_side_by_side() {
    let s = server("left");
    let dir = s.data_dir().join("agent-right");
    let _right = ExtraAgent::start(&s, "right", &[]);
    build_busybox_image(&s, Some("right"));
    let node = s.get_json(&["node", "right"]);
    let rt = node["status"]["nodeInfo"]["containerRuntimeVersion"]
        .as_str()
        .unwrap();
    assert!(
        rt.starts_with("runc://1."),
        "the detected runtime is reported: {rt}"
    );
    let y = [
        pod("l", "left", "Always", "", "echo on-left; sleep 1000"),
        pod("r", "right", "Always", "", "echo on-right; sleep 1000"),
    ]
    .join("---\n");
    let f = write_file(&s, "two.yaml", &y);
    s.ok(&["apply", "-f", &f]);
    for name in ["l", "r"] {
        wait_pod(&s, name, "Running", |p| {
            p["status"]["phase"] == "Running" && ctr_status(p)["state"]["running"].is_object()
        });
    }
    for (name, want) in [("l", "on-left\n"), ("r", "on-right\n")] {
        let start = Instant::now();
        while s.ok(&["logs", name]) != want {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{name} never logged {want:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Each agent has its own runtime state and cgroup parent.
    assert!(container_pid(&runc_root(&s.data_dir().join("agent")), "-c").is_some());
    assert!(container_pid(&runc_root(&dir), "-c").is_some());
    assert!(Path::new("/sys/fs/cgroup/pids/selur-left").exists());
    assert!(Path::new("/sys/fs/cgroup/pids/selur-right").exists());
    s.ok(&["delete", "-f", &f]);
    wait_gone(Path::new("/sys/fs/cgroup/pids/selur-right"));
}

#[test]
fn logs_rotate_and_previous_shows_the_run_before_a_restart() {
    let s = Server::start(&[
        "--node-name",
        "logs",
        "--container-log-max-size",
        "4096",
        "--container-log-max-files",
        "2",
    ]);
    build_busybox_image(&s, None);
    let script = "if test -e /state/ran; then echo second-run; sleep 1000; fi; touch /state/ran; i=0; while [ $i -lt 200 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; echo first-run-done; exit 1";
    let y = pod(
        "chatty",
        "logs",
        "OnFailure",
        "    volumeMounts: [{name: state, mountPath: /state}]\n  volumes: [{name: state, emptyDir: {}}]\n",
        script,
    );
    let f = write_file(&s, "chatty.yaml", &y);
    s.ok(&["apply", "-f", &f]);
    let p = wait_pod(&s, "chatty", "restarted", |p| {
        ctr_status(p)["restartCount"] == 1 && ctr_status(p)["state"]["running"].is_object()
    });
    assert_eq!(ctr_status(&p)["lastState"]["terminated"]["exitCode"], 1);
    let start = Instant::now();
    while s.ok(&["logs", "chatty"]) != "second-run\n" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "current run's log"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let prev = s.ok(&["logs", "chatty", "--previous", "--tail", "2"]);
    assert_eq!(
        prev,
        "line-199-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nfirst-run-done\n"
    );
    // The first run's log rotated at 4 KiB, keeping two rotated files.
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let dir = s
        .data_dir()
        .join("agent/logs")
        .join(format!("default_chatty_{uid}"))
        .join("c");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["0.log", "0.log.1", "0.log.2", "1.log"]);
    for n in &names {
        let len = std::fs::metadata(dir.join(n)).unwrap().len();
        assert!(len <= 4096 + 200, "{n} is {len} bytes");
    }
    // The shared link follows the current run, in Docker's json-file format.
    let link = std::fs::read_dir("/var/log/containers")
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("chatty_default_c-")
        })
        .expect("log link")
        .path();
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(&link)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["log"], "second-run\n");
    assert_eq!(line["stream"], "stdout");
    assert!(line["time"].as_str().unwrap().contains('T'));
    assert!(s.selur(&["logs", "chatty", "-c", "nope"]).status.code() != Some(0));
    s.ok(&["delete", "-f", &f]);
}

#[test]
fn lifecycle_hooks_post_start_and_pre_stop_before_term() {
    let s = server("hooks");
    let shared = s.data_dir().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let y = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hooked\nspec:\n  nodeName: hooks\n  terminationGracePeriodSeconds: 5\n  volumes: [{{name: shared, hostPath: {{path: {dir}}}}}]\n  containers:\n  - name: c\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    args: [\"sh\", \"-c\", \"trap 'echo got-term >> /shared/log; exit 0' TERM; echo started >> /shared/log; while true; do sleep 0.1; done\"]\n    volumeMounts: [{{name: shared, mountPath: /shared}}]\n    lifecycle:\n      postStart:\n        exec: {{command: [/bin/busybox, sh, -c, 'echo post-start > /shared/post']}}\n      preStop:\n        exec: {{command: [/bin/busybox, sh, -c, 'echo pre-stop >> /shared/log']}}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: badhook\nspec:\n  nodeName: hooks\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    args: [\"sleep\", \"1000\"]\n    lifecycle:\n      postStart:\n        httpGet: {{path: /ready, port: 9}}\n",
        dir = shared.display()
    );
    let f = write_file(&s, "hooks.yaml", &y);
    s.ok(&["apply", "-f", &f]);
    wait_pod(&s, "hooked", "Running", |p| {
        ctr_status(p)["state"]["running"].is_object()
    });
    assert_eq!(
        std::fs::read_to_string(shared.join("post")).unwrap_or_default(),
        "post-start\n",
        "postStart ran before the container was reported running: {}",
        s.ok(&["get", "events"])
    );
    // A failing postStart hook kills the container, with an event.
    let bad = wait_pod(&s, "badhook", "killed", |p| {
        p["status"]["phase"] == "Failed"
    });
    assert_eq!(ctr_status(&bad)["state"]["terminated"]["exitCode"], 137);
    let events = s.ok(&["get", "events", "-o", "json"]);
    assert!(events.contains("FailedPostStartHook"), "{events}");
    assert!(
        events.contains("[::1]:9"),
        "the hook dialled the pod's IPv6 loopback: {events}"
    );
    // preStop runs before TERM on delete.
    s.ok(&["delete", "pod", "hooked"]);
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(shared.join("log")).unwrap_or_default();
        if log.contains("got-term") {
            assert_eq!(log, "started\npre-stop\ngot-term\n");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no TERM seen: {log:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s.ok(&["delete", "-f", &f, "--ignore-not-found"]);
}
