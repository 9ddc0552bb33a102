use serde_json::json;

use super::*;

fn svc(extra: Value) -> Value {
    let mut v = json!({"metadata": {"name": "web", "namespace": "default", "uid": "svc-uid"},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                           {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}]}});
    if let (Some(o), Some(e)) = (v["spec"].as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

fn pod(name: &str, ip: Option<&str>, ready: bool, deleting: bool, http_port: i64) -> Value {
    let mut p = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"),
            "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
            "ports": [{"name": "http", "containerPort": http_port}]}]},
        "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    if let Some(ip) = ip {
        p["status"]["podIP"] = json!(ip);
        p["status"]["podIPs"] = json!([{"ip": ip}]);
    }
    if deleting {
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    p
}

#[test]
fn conditions_follow_readiness_and_termination_as_kubernetes_computes_them() {
    let pods = [
        pod("a", Some("fd00::a"), true, false, 8080),
        pod("b", Some("fd00::b"), false, false, 8080),
        pod("c", Some("fd00::c"), true, true, 8080),
        pod("d", None, true, false, 8080),
    ];
    let slices = desired_slices(&svc(json!({})), &pods);
    assert_eq!(slices.len(), 1);
    let eps = &slices[0].endpoints;
    assert_eq!(eps.len(), 3, "the pod without an IP is left out");
    let cond = |i: usize| eps[i]["conditions"].clone();
    assert_eq!(
        cond(0),
        json!({"ready": true, "serving": true, "terminating": false})
    );
    assert_eq!(
        cond(1),
        json!({"ready": false, "serving": false, "terminating": false})
    );
    assert_eq!(
        cond(2),
        json!({"ready": false, "serving": true, "terminating": true})
    );
    assert_eq!(eps[0]["addresses"], json!(["fd00::a"]));
    assert_eq!(eps[0]["nodeName"], "n1");
    assert_eq!(eps[0]["targetRef"]["name"], "a");
    assert_eq!(
        slices[0].ports,
        [
            json!({"name": "http", "port": 8080, "protocol": "TCP"}),
            json!({"name": "metrics", "port": 9090, "protocol": "TCP"})
        ]
    );

    let subsets = desired_subsets(&svc(json!({})), &pods);
    assert_eq!(subsets.len(), 1);
    assert_eq!(subsets[0]["addresses"][0]["ip"], "fd00::a");
    assert_eq!(subsets[0]["notReadyAddresses"][0]["ip"], "fd00::b");
    assert_eq!(
        subsets[0]["notReadyAddresses"].as_array().map(Vec::len),
        Some(1),
        "terminating pods leave the Endpoints"
    );
}

#[test]
fn publish_not_ready_addresses_makes_every_endpoint_ready() {
    let pods = [
        pod("b", Some("fd00::b"), false, false, 8080),
        pod("c", Some("fd00::c"), true, true, 8080),
    ];
    let s = svc(json!({"publishNotReadyAddresses": true}));
    let slices = desired_slices(&s, &pods);
    assert!(slices[0]
        .endpoints
        .iter()
        .all(|e| e["conditions"]["ready"] == true));
    let subsets = desired_subsets(&s, &pods);
    assert_eq!(subsets[0]["addresses"].as_array().map(Vec::len), Some(2));
    assert!(subsets[0].get("notReadyAddresses").is_none());
}

#[test]
fn named_target_ports_resolve_per_pod_into_separate_slices() {
    let pods = [
        pod("a", Some("fd00::a"), true, false, 8080),
        pod("b", Some("fd00::b"), true, false, 8081),
    ];
    let slices = desired_slices(&svc(json!({})), &pods);
    assert_eq!(slices.len(), 2);
    let mut got: Vec<i64> = slices
        .iter()
        .map(|s| s.ports[0]["port"].as_i64().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, [8080, 8081]);
    assert_eq!(desired_subsets(&svc(json!({})), &pods).len(), 2);
}

#[test]
fn unmatched_finished_and_ipv4_pods_are_left_out_and_empty_services_get_one_empty_slice() {
    let mut other = pod("x", Some("fd00::1"), true, false, 8080);
    other["metadata"]["labels"] = json!({"app": "db"});
    let mut done = pod("y", Some("fd00::2"), true, false, 8080);
    done["status"]["phase"] = json!("Succeeded");
    let v4 = pod("z", Some("10.0.0.1"), true, false, 8080);
    let slices = desired_slices(&svc(json!({})), &[other, done, v4]);
    assert_eq!(slices.len(), 1);
    assert!(slices[0].endpoints.is_empty());
    assert!(desired_subsets(&svc(json!({})), &[]).is_empty());
}

#[test]
fn services_without_a_selector_get_nothing() {
    let mut s = svc(json!({}));
    s["spec"].as_object_mut().unwrap().remove("selector");
    assert!(desired_slices(&s, &[pod("a", Some("fd00::a"), true, false, 80)]).is_empty());
}

#[test]
fn the_watched_prefixes_are_the_kinds_store_prefixes() {
    for (i, plural) in ["services", "pods", "endpoints", "endpointslices"]
        .iter()
        .enumerate()
    {
        assert_eq!(WATCHED[i], prefix(kind(plural).unwrap(), None));
    }
}
