//! Unit tests of the filters and the message format (here), scores and
//! queue order (`scoring.rs`), on snapshots built from JSON nodes and pods.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use crate::filter::{self, Reason};
use crate::pod::PodInfo;
use crate::schedule;
use crate::snapshot::Snapshot;

mod scoring;

fn node(name: &str, cpu: &str, mem: &str, extra: Value) -> Node {
    let mut n = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "10"}}});
    merge(&mut n, extra);
    serde_json::from_value(n).expect("node")
}

fn merge(a: &mut Value, b: Value) {
    json_patch::merge(a, &b);
}

fn pod_json(name: &str, extra: Value) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}});
    merge(&mut p, extra);
    p
}

fn pod(name: &str, extra: Value) -> PodInfo {
    let p: Pod = serde_json::from_value(pod_json(name, extra)).expect("pod");
    PodInfo::from_pod(&p)
}

fn requesting(name: &str, cpu: &str, mem: &str) -> PodInfo {
    pod(
        name,
        json!({"spec": {"containers": [{"name": "c", "image": "busybox:1",
            "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}),
    )
}

fn snap(nodes: &[Node]) -> Snapshot {
    let mut s = Snapshot::default();
    for n in nodes {
        s.upsert_node(n);
    }
    s
}

#[test]
fn resources_fit_counts_what_placed_pods_request() {
    let mut s = snap(&[node("a", "2", "4Gi", json!({}))]);
    s.place("p1", "a", Arc::new(requesting("p1", "1500m", "1Gi")), false);
    let n = s.node("a").expect("node");
    assert_eq!(
        filter::resources_fit(&requesting("x", "600m", "1Gi"), n),
        Err(vec![Reason::Insufficient("cpu".into())])
    );
    assert_eq!(
        filter::resources_fit(&requesting("x", "500m", "4Gi"), n),
        Err(vec![Reason::Insufficient("memory".into())])
    );
    assert_eq!(
        filter::resources_fit(&requesting("x", "500m", "3Gi"), n),
        Ok(())
    );
    // Removing the placed pod frees its requests again.
    s.unplace("p1");
    let n = s.node("a").expect("node");
    assert_eq!(
        filter::resources_fit(&requesting("x", "2", "4Gi"), n),
        Ok(())
    );
}

#[test]
fn too_many_pods_and_extended_resources() {
    let mut s = snap(&[node(
        "a",
        "8",
        "8Gi",
        json!({"status": {"allocatable": {"pods": "1", "example.com/gpu": "1"}}}),
    )]);
    s.place("p1", "a", Arc::new(pod("p1", json!({}))), false);
    let gpu = pod(
        "g",
        json!({"spec": {"containers": [{"name": "c", "image": "x",
        "resources": {"limits": {"example.com/gpu": "2"}}}]}}),
    );
    assert_eq!(
        filter::resources_fit(&gpu, s.node("a").expect("node")),
        Err(vec![
            Reason::TooManyPods,
            Reason::Insufficient("example.com/gpu".into())
        ])
    );
    assert_eq!(Reason::TooManyPods.to_string(), "Too many pods");
}

#[test]
fn effective_requests_take_init_containers_by_max_and_sidecars_summed() {
    let p = pod(
        "i",
        json!({"spec": {
        "initContainers": [
            {"name": "big", "image": "x", "resources": {"requests": {"cpu": "2", "memory": "64Mi"}}},
            {"name": "side", "image": "x", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}}],
        "containers": [
            {"name": "a", "image": "x", "resources": {"requests": {"cpu": "300m", "memory": "128Mi"}}},
            {"name": "b", "image": "x", "resources": {"requests": {"cpu": "200m", "memory": "128Mi"}}}],
        "overhead": {"cpu": "10m"}}}),
    );
    assert_eq!(p.requests.cpu_milli, 2010);
    assert_eq!(p.requests.memory, 256 << 20);
}

#[test]
fn cordoned_nodes_refuse_pods_unless_tolerated() {
    let s = snap(&[node(
        "a",
        "1",
        "1Gi",
        json!({"spec": {"unschedulable": true}}),
    )]);
    let n = s.node("a").expect("node");
    assert_eq!(
        filter::node_unschedulable(&pod("p", json!({})), n),
        Err(vec![Reason::Unschedulable])
    );
    let tol = pod(
        "t",
        json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable",
        "operator": "Exists", "effect": "NoSchedule"}]}}),
    );
    assert_eq!(filter::node_unschedulable(&tol, n), Ok(()));
    assert_eq!(
        Reason::Unschedulable.to_string(),
        "node(s) were unschedulable"
    );
}

#[test]
fn taints_need_tolerations_and_prefer_no_schedule_does_not_filter() {
    let s = snap(&[node(
        "gpu",
        "1",
        "1Gi",
        json!({"spec": {"taints": [
            {"key": "soft", "effect": "PreferNoSchedule"},
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
    )]);
    let n = s.node("gpu").expect("node");
    let err = filter::taint_toleration(&pod("p", json!({})), n).unwrap_err();
    assert_eq!(
        err[0].to_string(),
        "node(s) had untolerated taint {dedicated: gpu}"
    );
    for tol in [
        json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}),
        json!({"key": "dedicated", "operator": "Exists"}),
        json!({"operator": "Exists"}),
    ] {
        let p = pod("t", json!({"spec": {"tolerations": [tol.clone()]}}));
        assert_eq!(filter::taint_toleration(&p, n), Ok(()), "{tol}");
    }
    let wrong = pod(
        "w",
        json!({"spec": {"tolerations": [{"key": "dedicated", "value": "cpu"}]}}),
    );
    assert!(filter::taint_toleration(&wrong, n).is_err());
}

#[test]
fn node_selector_and_required_affinity() {
    let s = snap(&[node(
        "a",
        "1",
        "1Gi",
        json!({"metadata": {"labels": {"disk": "ssd", "gen": "5"}}}),
    )]);
    let n = s.node("a").expect("node");
    let sel = |v: Value| pod("p", json!({"spec": v}));
    assert_eq!(
        filter::node_affinity(&sel(json!({"nodeSelector": {"disk": "ssd"}})), n),
        Ok(())
    );
    let miss = filter::node_affinity(&sel(json!({"nodeSelector": {"disk": "hdd"}})), n);
    assert_eq!(
        miss.unwrap_err()[0].to_string(),
        "node(s) didn't match Pod's node affinity/selector"
    );
    let aff = |exprs: Value| {
        sel(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}}}),
        )
    };
    let ok = [
        json!([{"key": "disk", "operator": "In", "values": ["ssd", "nvme"]}]),
        json!([{"key": "gen", "operator": "Gt", "values": ["4"]}]),
        json!([{"key": "gpu", "operator": "DoesNotExist"}]),
    ];
    for e in ok {
        assert_eq!(filter::node_affinity(&aff(e.clone()), n), Ok(()), "{e}");
    }
    let bad = [
        json!([{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]),
        json!([{"key": "gen", "operator": "Lt", "values": ["5"]}]),
        json!([{"key": "gpu", "operator": "Exists"}]),
    ];
    for e in bad {
        assert!(filter::node_affinity(&aff(e.clone()), n).is_err(), "{e}");
    }
}

#[test]
fn host_ports_conflict_on_same_port_and_protocol() {
    let mut s = snap(&[node("a", "1", "1Gi", json!({}))]);
    let web = |name: &str, port: i64, proto: &str| {
        pod(
            name,
            json!({"spec": {"containers": [{"name": "c", "image": "x",
            "ports": [{"containerPort": 80, "hostPort": port, "protocol": proto}]}]}}),
        )
    };
    s.place("w1", "a", Arc::new(web("w1", 8080, "TCP")), false);
    let n = s.node("a").expect("node");
    assert_eq!(
        filter::node_ports(&web("w2", 8080, "TCP"), n).unwrap_err()[0].to_string(),
        "node(s) didn't have free ports for the requested pod ports"
    );
    assert_eq!(filter::node_ports(&web("w3", 8080, "UDP"), n), Ok(()));
    assert_eq!(filter::node_ports(&web("w4", 8081, "TCP"), n), Ok(()));
}

#[test]
fn required_anti_affinity_on_hostname_both_ways() {
    let mut s = snap(&[node("a", "1", "1Gi", json!({}))]);
    let anti = json!({"metadata": {"labels": {"app": "db"}}, "spec": {"affinity": {"podAntiAffinity":
        {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}}});
    s.place("db1", "a", Arc::new(pod("db1", anti.clone())), false);
    let n = s.node("a").expect("node");
    let err = filter::pod_anti_affinity(&pod("db2", anti), n).unwrap_err();
    assert_eq!(
        err[0].to_string(),
        "node(s) didn't match pod anti-affinity rules"
    );
    // The placed pod's own term keeps a matching newcomer out too.
    let plain_db = pod("db3", json!({"metadata": {"labels": {"app": "db"}}}));
    assert_eq!(
        filter::pod_anti_affinity(&plain_db, n),
        Err(vec![Reason::ExistingAntiAffinity])
    );
    assert_eq!(filter::pod_anti_affinity(&pod("web", json!({})), n), Ok(()));
}

#[test]
fn message_counts_reasons_sorted_like_kube_scheduler() {
    let s = snap(&[
        node("a", "1", "1Gi", json!({})),
        node("b", "1", "1Gi", json!({})),
        node(
            "gpu",
            "8",
            "64Gi",
            json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
        ),
    ]);
    let err = schedule(&s, &requesting("big", "100m", "2Gi")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient memory."
    );
    assert_eq!(err.counts()["Insufficient memory"], 2);
    let none = schedule(&Snapshot::default(), &pod("p", json!({}))).unwrap_err();
    assert_eq!(none.to_string(), "no nodes available to schedule pods");
}
