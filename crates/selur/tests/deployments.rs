//! Deployments and ReplicaSets end to end: a real server without a node agent
//! (`--disable-agent`); the test plays the kubelet, marking pods Ready, and
//! watches every pod change.

mod common;
#[path = "deployments/support.rs"]
mod support;

use serde_json::Value;

use common::{stderr, stdout, write_file, Server};
use support::{eventually, Kubelet, Watcher, PODS};

fn manifest(replicas: u32, image: &str, env: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n{extra_spec}  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - name: c\n        image: \"{image}\"\n        env: [{{name: A, value: \"{env}\"}}]\n"
    )
}

fn apply(s: &Server, file: &str, text: &str) {
    let path = write_file(s, file, text);
    s.ok(&["apply", "-f", &path]);
}

fn pods(s: &Server) -> Vec<Value> {
    s.get_json(&["pods"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn replica_sets(s: &Server) -> Vec<Value> {
    s.get_json(&["rs"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn image_of(p: &Value) -> &str {
    p.pointer("/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn rollout_ok(s: &Server) {
    let out = s.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );
}

fn progressing_reason(s: &Server) -> String {
    let d = s.get_json(&["deploy", "web"]);
    d.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"))
        .and_then(|c| c["reason"].as_str())
        .unwrap_or("")
        .to_string()
}

const ROLLING_25: &str =
    "  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 25%, maxUnavailable: 25%}}\n";

#[test]
fn rolling_update_of_ten_replicas_never_drops_below_eight_ready_and_undo_restores_the_template() {
    let s = Server::start(&["--disable-agent"]);
    let _kubelet = Kubelet::start(&s.url);
    apply(
        &s,
        "v1.yaml",
        &manifest(10, "example/web:1", "one", ROLLING_25),
    );
    rollout_ok(&s);
    assert_eq!(pods(&s).len(), 10);

    let watcher = Watcher::start(&s.url, 10);
    eventually(10, "the watcher to see 10 ready pods", || {
        watcher.get().ready >= 10
    });
    apply(
        &s,
        "v2.yaml",
        &manifest(10, "example/web:2", "two", ROLLING_25),
    );
    rollout_ok(&s);
    eventually(20, "old pods to go", || pods(&s).len() == 10);
    let seen = watcher.stop();
    assert!(seen.events > 20, "the watcher saw the rollout: {seen:?}");
    assert!(
        seen.min_ready.is_some_and(|m| m >= 8),
        "dropped below replicas - maxUnavailable: {seen:?}"
    );
    assert!(
        seen.max_pods <= 13,
        "more than replicas + maxSurge pods: {seen:?}"
    );
    assert!(pods(&s).iter().all(|p| image_of(p) == "example/web:2"));

    let history = s.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("REVISION") && history.contains("CHANGE-CAUSE"),
        "{history}"
    );
    let revs: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revs, ["1", "2"], "{history}");
    let rev1 = s.ok(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(rev1.contains("example/web:1"), "{rev1}");

    let out = s.ok(&["rollout", "undo", "deployment/web"]);
    assert!(out.contains("rolled back"), "{out}");
    let d = s.get_json(&["deploy", "web"]);
    assert_eq!(
        d.pointer("/spec/template/spec/containers/0/image")
            .and_then(Value::as_str),
        Some("example/web:1")
    );
    assert_eq!(
        d.pointer("/spec/template/spec/containers/0/env/0/value")
            .and_then(Value::as_str),
        Some("one")
    );
    rollout_ok(&s);
    eventually(20, "the old template's pods to return", || {
        let p = pods(&s);
        p.len() == 10 && p.iter().all(|p| image_of(p) == "example/web:1")
    });
    // Revision 1 came back as revision 3; the Deployment says so.
    let history = s.ok(&["rollout", "history", "deployment/web"]);
    let revs: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revs, ["2", "3"], "{history}");
    let d = s.get_json(&["deploy", "web"]);
    assert_eq!(
        d.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
            .and_then(Value::as_str),
        Some("3")
    );
    let events = s.ok(&["get", "events"]);
    for reason in ["ScalingReplicaSet", "SuccessfulCreate", "SuccessfulDelete"] {
        assert!(events.contains(reason), "no {reason} event: {events}");
    }
}

#[test]
fn pods_that_never_become_ready_stop_the_rollout_at_its_bounds_and_exceed_the_deadline() {
    let s = Server::start(&["--disable-agent"]);
    let _kubelet = Kubelet::start(&s.url);
    let spec = "  progressDeadlineSeconds: 2\n  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}\n";
    apply(&s, "v1.yaml", &manifest(4, "example/web:1", "one", spec));
    rollout_ok(&s);
    apply(&s, "v2.yaml", &manifest(4, "example/web:bad", "two", spec));
    eventually(30, "ProgressDeadlineExceeded", || {
        progressing_reason(&s) == "ProgressDeadlineExceeded"
    });
    let d = s.get_json(&["deploy", "web"]);
    let cond = d["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing").cloned());
    assert_eq!(
        cond.map(|c| c["status"].clone()),
        Some(Value::from("False"))
    );
    // Old scaled down by maxUnavailable, new up to replicas + maxSurge in all, no further.
    let mut sizes: Vec<(String, i64)> = replica_sets(&s)
        .iter()
        .map(|r| {
            (
                r.pointer("/spec/template/spec/containers/0/image")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                r.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(-1),
            )
        })
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [
            ("example/web:1".to_string(), 3),
            ("example/web:bad".to_string(), 2)
        ]
    );
    let p = pods(&s);
    assert_eq!(p.len(), 5);
    assert_eq!(
        p.iter().filter(|p| image_of(p) == "example/web:1").count(),
        3
    );
    let out = s.selur(&["rollout", "status", "deployment/web", "--timeout=10s"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("exceeded its progress deadline"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn recreate_removes_every_old_pod_before_creating_new_ones() {
    let s = Server::start(&["--disable-agent"]);
    let _kubelet = Kubelet::start(&s.url);
    let spec = "  strategy: {type: Recreate}\n";
    apply(&s, "v1.yaml", &manifest(3, "example/web:1", "one", spec));
    rollout_ok(&s);
    let watcher = Watcher::start(&s.url, 3);
    apply(&s, "v2.yaml", &manifest(3, "example/web:2", "two", spec));
    rollout_ok(&s);
    let seen = watcher.stop();
    assert!(!seen.mixed, "old and new pods existed at once: {seen:?}");
    assert_eq!(seen.min_ready, Some(0));
    let p = pods(&s);
    assert_eq!(p.len(), 3);
    assert!(p.iter().all(|p| image_of(p) == "example/web:2"));
}

#[test]
fn paused_deployments_scale_through_the_scale_subresource_but_roll_out_only_when_resumed() {
    let s = Server::start(&["--disable-agent"]);
    let _kubelet = Kubelet::start(&s.url);
    apply(&s, "v1.yaml", &manifest(2, "example/web:1", "one", ""));
    rollout_ok(&s);
    assert!(s
        .ok(&["rollout", "pause", "deployment/web"])
        .contains("paused"));
    eventually(10, "Progressing DeploymentPaused", || {
        progressing_reason(&s) == "DeploymentPaused"
    });
    apply(&s, "v2.yaml", &manifest(2, "example/web:2", "two", ""));
    assert!(s
        .ok(&["scale", "deployment/web", "--replicas=4"])
        .contains("scaled"));
    eventually(10, "four old pods", || {
        let p = pods(&s);
        p.len() == 4 && p.iter().all(|p| image_of(p) == "example/web:1")
    });
    assert_eq!(replica_sets(&s).len(), 1, "no rollout while paused");
    let scale = s.get_json(&["deploy", "web"]);
    assert_eq!(
        scale.pointer("/spec/replicas").and_then(Value::as_i64),
        Some(4)
    );
    assert!(s
        .ok(&["rollout", "resume", "deployment/web"])
        .contains("resumed"));
    rollout_ok(&s);
    eventually(20, "four new pods", || {
        let p = pods(&s);
        p.len() == 4 && p.iter().all(|p| image_of(p) == "example/web:2")
    });
}

#[test]
fn restart_replaces_pods_and_old_history_is_pruned() {
    let s = Server::start(&["--disable-agent"]);
    let _kubelet = Kubelet::start(&s.url);
    apply(
        &s,
        "v1.yaml",
        &manifest(2, "example/web:1", "one", "  revisionHistoryLimit: 1\n"),
    );
    rollout_ok(&s);
    let before: Vec<String> = pods(&s)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    for round in 0..2 {
        assert!(s
            .ok(&["rollout", "restart", "deployment/web"])
            .contains("restarted"));
        // Time stamps have second precision: a second restart needs a new one.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        rollout_ok(&s);
        eventually(20, &format!("restart {round} to settle"), || {
            pods(&s).len() == 2
        });
    }
    let after = pods(&s);
    assert!(after
        .iter()
        .all(|p| !before.iter().any(|b| p["metadata"]["name"] == b.as_str())));
    assert!(after.iter().all(|p| p
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1restartedAt")
        .is_some()));
    // The current ReplicaSet plus one old one.
    eventually(10, "history pruned to one old replica set", || {
        replica_sets(&s).len() == 2
    });
}

#[test]
fn deleting_a_deployment_removes_its_replica_sets_and_pods() {
    let s = Server::start(&["--disable-agent"]);
    apply(&s, "v1.yaml", &manifest(3, "example/web:1", "one", ""));
    eventually(10, "three pods", || pods(&s).len() == 3);
    let rs = &replica_sets(&s)[0];
    assert_eq!(
        rs.pointer("/status/replicas").and_then(Value::as_i64),
        Some(3)
    );
    let owner = &rs["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Deployment");
    assert_eq!(owner["controller"], true);
    // Deleting a pod gets it replaced.
    let victim = pods(&s)[0]["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    s.ok(&["delete", "pod", &victim]);
    eventually(10, "a replacement pod", || {
        let p = pods(&s);
        p.len() == 3 && p.iter().all(|p| p["metadata"]["name"] != victim.as_str())
    });
    let out = s.selur(&["delete", "deployment", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(15, "replica sets and pods to be collected", || {
        replica_sets(&s).is_empty() && pods(&s).is_empty()
    });
    let _ = (stdout, PODS);
}
