//! The seed's Example 1 Deployment as written (3 replicas, readiness probe
//! on `/health`, the local lago-grey stand-in), with no `nodeName`: the
//! scheduler spreads it over three nodes, the agents run it, the probes make
//! it Ready, and the Deployment reports 3/3 available.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{examples, standin_images_on, ExtraAgent, Server};
use serde_json::Value;

#[test]
fn seed_example_1_deployment_becomes_ready_spread_over_the_nodes() {
    let s = Server::start(&["--node-name", "e1-main"]);
    let _a = ExtraAgent::start(&s, "e1-a", &[]);
    let _b = ExtraAgent::start(&s, "e1-b", &[]);
    for node in ["e1-main", "e1-a", "e1-b"] {
        standin_images_on(&s, Some(node));
    }
    let manifest = examples().join("seed/deployment-web-service.yaml");
    s.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let start = Instant::now();
    let deploy = loop {
        let d = s.get_json(&["deploy", "web-service"]);
        if d["status"]["readyReplicas"] == 3 && d["status"]["availableReplicas"] == 3 {
            break d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "never 3/3 ready: {}",
            d["status"]
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(deploy["spec"]["template"]["spec"].get("nodeName"), None);
    let pods: Value =
        serde_json::from_str(&s.ok(&["get", "pods", "-l", "app=web", "-o", "json"])).unwrap();
    let nodes: BTreeSet<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(String::from))
        .collect();
    assert_eq!(nodes.len(), 3, "one replica per node: {nodes:?}");
    let ev = s.ok(&["get", "events", "-o", "json"]);
    for reason in [
        "Scheduled",
        "SuccessfulCreate",
        "ScalingReplicaSet",
        "Started",
    ] {
        assert!(ev.contains(reason), "no {reason} event");
    }
    s.ok(&[
        "rollout",
        "status",
        "deployment/web-service",
        "--timeout",
        "10s",
    ]);
    s.ok(&["delete", "-f", manifest.to_str().unwrap()]);
    let start = Instant::now();
    while s.ok(&["get", "pods", "-l", "app=web", "-o", "name"]).trim() != "" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "pods not removed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
