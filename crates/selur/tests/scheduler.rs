//! The scheduler with real agents: a pod that fits nowhere gets
//! PodScheduled=False and a FailedScheduling event counting the reasons, and
//! is placed once a fitting node joins; nodeSelector and taints steer pods;
//! with nodes otherwise equal, a pod goes where its image already is.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{wait_pod, write_file, Server};
use serde_json::Value;

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `selur agent` for node `name` (data under the server's temp dir) and wait until its Node exists.
fn agent(s: &Server, name: &str, extra: &[&str]) -> Agent {
    let dir = s.data_dir().join(format!("agent-{name}"));
    let log = std::fs::File::create(s.data_dir().join(format!("agent-{name}.log"))).unwrap();
    let a = Agent(
        common::selur_cmd()
            .args(["agent", "--server", &s.url, "--node-name", name])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--heartbeat-interval", "1"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_for(&format!("node {name}"), 30, || {
        s.selur(&["get", "node", name]).status.success()
    });
    a
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A pod manifest; `spec_extra` lines are indented under `spec:`.
fn pod(name: &str, spec_extra: &str, resources: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n{spec_extra}  containers:\n  - name: c\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    args: [\"sleep\", \"1000\"]\n{resources}"
    )
}

fn node_of(p: &Value) -> &str {
    p["spec"]["nodeName"].as_str().unwrap_or("")
}

fn condition<'a>(p: &'a Value, t: &str) -> Option<&'a Value> {
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

/// Events about pod `name` with `reason`.
fn events(s: &Server, name: &str, reason: &str) -> Vec<Value> {
    let list = s.get_json(&["events"]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason)
        .cloned()
        .collect()
}

#[test]
fn unschedulable_pod_reports_reason_counts_then_lands_on_a_node_that_joins() {
    let s = Server::start(&["--disable-agent"]);
    let _small = agent(&s, "small", &["--capacity", "cpu=2,memory=1Gi,pods=20"]);
    let _gpu = agent(
        &s,
        "gpu",
        &[
            "--capacity",
            "cpu=8,memory=64Gi,pods=20",
            "--node-taint",
            "dedicated=gpu:NoSchedule",
        ],
    );
    let y = pod(
        "big",
        "",
        "    resources: {requests: {cpu: 500m, memory: 8Gi}}\n",
    );
    let f = write_file(&s, "big.yaml", &y);
    s.ok(&["apply", "-f", &f]);
    let want = "0/2 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint {dedicated: gpu}.";
    let p = wait_pod(&s, "big", "PodScheduled=False", |p| {
        condition(p, "PodScheduled").is_some_and(|c| c["status"] == "False")
    });
    let c = condition(&p, "PodScheduled").unwrap();
    assert_eq!(c["reason"], "Unschedulable");
    assert_eq!(c["message"], want);
    assert_eq!(node_of(&p), "");
    wait_for("FailedScheduling event", 10, || {
        !events(&s, "big", "FailedScheduling").is_empty()
    });
    let ev = &events(&s, "big", "FailedScheduling")[0];
    assert_eq!(ev["message"], want);
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["source"]["component"], "default-scheduler");
    let described = s.ok(&["get", "events"]);
    assert!(described.contains("FailedScheduling"), "{described}");

    // A node with room joins: the waiting pod is bound to it.
    let _large = agent(&s, "large", &["--capacity", "cpu=4,memory=16Gi,pods=20"]);
    let p = wait_pod(&s, "big", "bound", |p| !node_of(p).is_empty());
    assert_eq!(node_of(&p), "large");
    assert_eq!(condition(&p, "PodScheduled").unwrap()["status"], "True");
    wait_for("Scheduled event", 10, || {
        events(&s, "big", "Scheduled")
            .iter()
            .any(|e| e["message"] == "Successfully assigned default/big to large")
    });
}

#[test]
fn node_selector_picks_the_labelled_node_and_taints_keep_pods_out() {
    let s = Server::start(&["--disable-agent"]);
    let cap = ["--capacity", "cpu=4,memory=8Gi,pods=20"];
    let _plain = agent(&s, "plain", &cap);
    let _ssd = agent(
        &s,
        "ssd",
        &[&cap[..], &["--node-label", "disk=ssd"]].concat(),
    );
    let _gpu = agent(
        &s,
        "gpu",
        &[
            &cap[..],
            &[
                "--node-label",
                "accel=gpu",
                "--node-taint",
                "dedicated=gpu:NoSchedule",
            ],
        ]
        .concat(),
    );
    let tol =
        "  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]\n";
    let mut docs = vec![
        pod("wants-ssd", "  nodeSelector: {disk: ssd}\n", ""),
        pod(
            "gpu-job",
            &format!("  nodeSelector: {{accel: gpu}}\n{tol}"),
            "",
        ),
        pod("gpu-untolerated", "  nodeSelector: {accel: gpu}\n", ""),
    ];
    for i in 0..6 {
        docs.push(pod(&format!("any-{i}"), "", ""));
    }
    let f = write_file(&s, "steer.yaml", &docs.join("---\n"));
    s.ok(&["apply", "-f", &f]);
    let bound = |name: &str| wait_pod(&s, name, "bound", |p| !node_of(p).is_empty());
    assert_eq!(node_of(&bound("wants-ssd")), "ssd");
    assert_eq!(node_of(&bound("gpu-job")), "gpu");
    let mut used = std::collections::BTreeSet::new();
    for i in 0..6 {
        let n = node_of(&bound(&format!("any-{i}"))).to_string();
        assert_ne!(n, "gpu", "any-{i} landed on the tainted node");
        used.insert(n);
    }
    assert_eq!(
        used.len(),
        2,
        "pods spread over both untainted nodes: {used:?}"
    );
    let p = wait_pod(&s, "gpu-untolerated", "PodScheduled=False", |p| {
        condition(p, "PodScheduled").is_some_and(|c| c["status"] == "False")
    });
    assert_eq!(
        condition(&p, "PodScheduled").unwrap()["message"],
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't match Pod's node affinity/selector."
    );
}

#[test]
fn with_nodes_otherwise_equal_the_pod_goes_where_its_image_is() {
    let s = Server::start(&["--disable-agent"]);
    let cap = ["--capacity", "cpu=2,memory=4Gi,pods=20"];
    // The node holding the image sorts last, so a name-order tie-break would miss it.
    let _a = agent(&s, "img-a", &cap);
    let _b = agent(&s, "img-b", &cap);
    let ctx = s.data_dir().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nUSER 65532\nENTRYPOINT [\"/bin/busybox\"]\n",
    )
    .unwrap();
    s.ok(&[
        "image",
        "build",
        "--node",
        "img-b",
        "-t",
        "localhost/rt:1",
        ctx.to_str().unwrap(),
    ]);
    // The catalog knows the image's layers and that img-b holds it.
    wait_for("catalog entry on img-b", 30, || {
        let list = s.get_json(&["images"]);
        list["items"].as_array().unwrap().iter().any(|i| {
            i["spec"]["layers"]
                .as_array()
                .is_some_and(|l| !l.is_empty())
                && i["status"]["nodes"]
                    .as_array()
                    .is_some_and(|n| n.iter().any(|n| n == "img-b"))
        })
    });
    let docs: Vec<String> = (0..3).map(|i| pod(&format!("local-{i}"), "", "")).collect();
    let f = write_file(&s, "local.yaml", &docs.join("---\n"));
    s.ok(&["apply", "-f", &f]);
    for i in 0..3 {
        let p = wait_pod(&s, &format!("local-{i}"), "Running", |p| {
            p["status"]["phase"] == "Running"
        });
        assert_eq!(node_of(&p), "img-b");
    }
    s.ok(&["delete", "-f", &f]);
}
