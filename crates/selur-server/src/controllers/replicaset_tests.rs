use super::*;

fn pod(name: &str, node: &str, phase: &str, ready: bool, created: &str) -> Value {
    json!({"metadata": {"name": name, "creationTimestamp": created},
        "spec": {"nodeName": node},
        "status": {"phase": phase, "conditions": [{"type": "Ready",
            "status": if ready { "True" } else { "False" }, "lastTransitionTime": created}]}})
}

#[test]
fn extra_pods_are_deleted_unscheduled_then_not_ready_then_newest() {
    let mut pods = [
        pod("old-ready", "n1", "Running", true, "2024-01-01T00:00:00Z"),
        pod("new-ready", "n1", "Running", true, "2024-01-01T00:01:00Z"),
        pod("not-ready", "n1", "Running", false, "2024-01-01T00:00:00Z"),
        pod("pending", "n1", "Pending", false, "2024-01-01T00:00:00Z"),
        pod("unscheduled", "", "Pending", false, "2024-01-01T00:00:00Z"),
    ];
    pods.sort_by_key(deletion_rank);
    let names: Vec<_> = pods
        .iter()
        .map(|p| meta_str(p, "name").unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "unscheduled",
            "pending",
            "not-ready",
            "new-ready",
            "old-ready"
        ]
    );
}

#[test]
fn status_counts_ready_available_and_labels() {
    let rs = json!({"metadata": {"generation": 3},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}}},
        "status": {"replicas": 0}});
    let mut a = pod("a", "n", "Running", true, "2024-01-01T00:00:00Z");
    a["metadata"]["labels"] = json!({"app": "web"});
    let b = pod("b", "n", "Running", false, "2024-01-01T00:00:00Z");
    let now = podstate::parse_time(Some(&json!("2024-01-01T00:00:30Z"))).unwrap_or_default();
    let s = status_of(&rs, &[a, b], 60, now, None);
    assert_eq!(s["replicas"], 2);
    assert_eq!(s["fullyLabeledReplicas"], 1);
    assert_eq!(s["readyReplicas"], 1);
    assert_eq!(s["availableReplicas"], 0);
    assert_eq!(s["observedGeneration"], 3);
    assert!(status_changed(&rs, &s));
    let mut same = rs.clone();
    same["status"] = s.clone();
    assert!(!status_changed(&same, &s));
    let failed = status_of(
        &rs,
        &[],
        0,
        now,
        Some(&("FailedCreate", ApiError::forbidden("quota"))),
    );
    assert_eq!(failed["conditions"][0]["type"], "ReplicaFailure");
}
