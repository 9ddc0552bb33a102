//! The quickstart's workload for real: the local stand-in images built from
//! the demo program, and the seed's Example 1 pod spec
//! (`examples/demo/web-pod.yaml`) on an all-in-one node: Ready through its
//! httpGet readiness probe, reachable with port-forward, healthy by the
//! implicit `obli-pkg status` check, logging JSON, and stopping gracefully.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{examples, standin_images, wait_pod, Server};
use serde_json::Value;

fn ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn http_get(port: u16, path: &str) -> String {
    let mut conn = std::net::TcpStream::connect(("::1", port)).expect("connect to the forward");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = conn.read_to_string(&mut out);
    out
}

#[test]
fn seed_example_1_runs_on_the_standins() {
    let s = Server::start(&["--node-name", "local", "--obli-health-period", "1s"]);
    standin_images(&s);
    let images = s.ok(&["image", "ls"]);
    for name in ["lago-grey:minimal", "svalinn:latest", "vordr:latest"] {
        assert!(images.contains(name), "{images}");
    }
    let pod = examples().join("demo/web-pod.yaml");
    s.ok(&["apply", "-f", pod.to_str().unwrap()]);
    let p = wait_pod(&s, "web", "Ready", ready);
    assert_eq!(p["status"]["qosClass"], "Burstable");

    // Port-forward to the demo web server in the pod.
    let mut pf = common::selur_cmd()
        .args(["port-forward", "web", "0:8080"])
        .env("SELUR_CONFIG", s.kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    // Keep the pipe open while forwarding: the CLI reports each connection.
    let mut out = BufReader::new(pf.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    let port: u16 = line
        .split("]:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let health = http_get(port, "/health");
    let api = http_get(port, "/api/hello");
    let _ = pf.kill();
    let _ = pf.wait();
    drop(out);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains(r#"{"status":"ok"}"#), "{health}");
    assert!(
        api.contains("web-server") && api.contains("/api/hello"),
        "{api}"
    );

    // Example 1 declares its own readiness probe, so no implicit obli-pkg
    // check; a pod of the same image without one gets it.
    assert!(s
        .ok(&["health", "web"])
        .contains("no obli-pkg status reported"));
    let plain = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: plain\nspec:\n  nodeName: local\n  containers:\n  - name: app\n    image: ghcr.io/hyperpolymath/lago-grey:minimal\n    command: [/usr/bin/process-data]\n    env: [{name: ITEMS, value: \"100000\"}, {name: WORK_MS, value: \"600000\"}]\n";
    let f = common::write_file(&s, "plain.yaml", plain);
    s.ok(&["apply", "-f", &f]);
    let start = Instant::now();
    loop {
        let h = s.ok(&["health", "plain"]);
        if h.contains("healthy") {
            assert!(h.contains("yes") && h.contains(" ok "), "{h}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{h}");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_pod(&s, "plain", "Ready by the obli-pkg check", ready);
    s.ok(&["delete", "-f", &f]);
    let status = s.ok(&["exec", "web", "--", "/usr/bin/obli-pkg", "status"]);
    let v: Value = serde_json::from_str(status.trim()).unwrap();
    assert_eq!(v["status"], "healthy");

    // JSON log lines, and a graceful stop on delete.
    let logs = s.ok(&["logs", "web"]);
    let first: Value = serde_json::from_str(logs.lines().next().unwrap()).unwrap();
    assert!(first["msg"].is_string(), "{logs}");
    // This node's link (other tests may run pods named web too). The file
    // is opened before the delete: the agent removes it with the pod.
    let link = std::fs::read_dir("/var/log/containers")
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("web_default_web-local-")
        })
        .map(|e| std::fs::read_link(e.path()).unwrap())
        .expect("log link");
    let mut log = std::fs::File::open(&link).unwrap();
    s.ok(&["delete", "-f", pod.to_str().unwrap()]);
    let start = Instant::now();
    let mut text = String::new();
    loop {
        let _ = log.read_to_string(&mut text);
        if text.contains("shutting down") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no graceful stop in the log: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
