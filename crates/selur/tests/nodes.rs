//! Agents join and report their node; the server marks a node whose
//! heartbeats stop Ready=Unknown and taints it unreachable, and clears both
//! when heartbeats return.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(s: &Server, name: &str, extra: &[&str]) -> Agent {
    let dir = s.data_dir().join(format!("agent-{name}"));
    let log = std::fs::File::create(s.data_dir().join(format!("agent-{name}.log"))).unwrap();
    Agent(
        common::selur_cmd()
            .args([
                "agent",
                "--server",
                &s.url,
                "--node-name",
                name,
                "--data-dir",
            ])
            .arg(&dir)
            .args(["--heartbeat-interval", "1"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn node(s: &Server, name: &str) -> Option<Value> {
    let out = s.selur(&["get", "node", name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn ready(n: &Value) -> String {
    n["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn agents_join_report_capacity_and_lose_readiness_when_stopped() {
    let s = Server::start(&[
        "--node-grace-period",
        "5",
        "--node-name",
        "main",
        "--heartbeat-interval",
        "1",
    ]);
    let mut gpu = start_agent(
        &s,
        "gpu-1",
        &[
            "--node-label",
            "accel=gpu",
            "--node-taint",
            "dedicated=gpu:NoSchedule",
            "--capacity",
            "cpu=8,memory=32Gi,pods=50",
            "--reserved",
            "cpu=1",
        ],
    );
    let _small = start_agent(&s, "small-1", &["--capacity", "cpu=1,memory=1Gi,pods=10"]);
    wait_for("three ready nodes", 30, || {
        ["main", "gpu-1", "small-1"]
            .iter()
            .all(|n| node(&s, n).is_some_and(|v| ready(&v) == "True"))
    });
    let g = node(&s, "gpu-1").unwrap();
    assert_eq!(g["metadata"]["labels"]["accel"], "gpu");
    assert_eq!(g["metadata"]["labels"]["kubernetes.io/hostname"], "gpu-1");
    assert_eq!(g["metadata"]["labels"]["kubernetes.io/os"], "linux");
    assert_eq!(g["spec"]["taints"][0]["key"], "dedicated");
    assert_eq!(g["status"]["capacity"]["cpu"], "8");
    assert_eq!(g["status"]["allocatable"]["cpu"], "7");
    assert_eq!(g["status"]["capacity"]["pods"], "50");
    assert_eq!(
        node(&s, "small-1").unwrap()["status"]["capacity"]["memory"],
        "1Gi"
    );
    let wide = s.ok(&["get", "nodes", "-o", "wide"]);
    for needle in [
        "gpu-1",
        "small-1",
        "main",
        "dedicated=gpu:NoSchedule",
        "cpu=7",
    ] {
        assert!(wide.contains(needle), "missing {needle}:\n{wide}");
    }

    // Stop one agent: Unknown + unreachable taint after the grace period.
    let _ = gpu.0.kill();
    let _ = gpu.0.wait();
    wait_for("gpu-1 Ready=Unknown", 30, || {
        node(&s, "gpu-1").is_some_and(|v| ready(&v) == "Unknown")
    });
    let g = node(&s, "gpu-1").unwrap();
    let keys: Vec<&str> = g["spec"]["taints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    assert!(
        keys.contains(&"node.kubernetes.io/unreachable") && keys.contains(&"dedicated"),
        "{keys:?}"
    );
    assert_eq!(
        ready(&node(&s, "small-1").unwrap()),
        "True",
        "the other agent stays ready"
    );

    // It comes back: both cleared.
    let _back = start_agent(
        &s,
        "gpu-1",
        &[
            "--node-label",
            "accel=gpu",
            "--node-taint",
            "dedicated=gpu:NoSchedule",
        ],
    );
    wait_for("gpu-1 ready again", 30, || {
        node(&s, "gpu-1").is_some_and(|v| {
            ready(&v) == "True"
                && !v["spec"]["taints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["key"] == "node.kubernetes.io/unreachable")
        })
    });
}
