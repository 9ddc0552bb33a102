//! Pods and what runs them: Deployments, ReplicaSets, DaemonSets and
//! HorizontalPodAutoscalers.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{created_age, n, or_none, s, Column, KindColumns};

pub(super) const POD: KindColumns = KindColumns {
    columns: &[
        Column::name(),
        Column::string("READY", "Ready containers of all containers."),
        Column::string(
            "STATUS",
            "Why a container waits or ended, else the pod's phase.",
        ),
        Column::integer("RESTARTS", "Container restarts, summed."),
        Column::age(),
        Column::string("IP", "The pod's IP address.").wide(),
        Column::string("NODE", "The node the pod is bound to.").wide(),
    ],
    row: pod_row,
};

fn pod_row(p: &Value, now: DateTime<Utc>) -> Vec<String> {
    let total = p
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or(0);
    let statuses = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    let ready = statuses
        .map(|a| {
            a.iter()
                .filter(|c| c.get("ready") == Some(&Value::Bool(true)))
                .count()
        })
        .unwrap_or(0);
    let restarts: i64 = statuses
        .map(|a| {
            a.iter()
                .map(|c| c.get("restartCount").and_then(Value::as_i64).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    vec![
        s(p, "/metadata/name").into(),
        format!("{ready}/{total}"),
        pod_status(p),
        restarts.to_string(),
        created_age(p, now),
        or_none(s(p, "/status/podIP").into()),
        or_none(s(p, "/spec/nodeName").into()),
    ]
}

/// `Terminating`, a container's waiting or terminated reason, else the phase.
fn pod_status(p: &Value) -> String {
    if p.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    for cs in p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = cs.pointer("/state/waiting/reason").and_then(Value::as_str) {
            return r.to_string();
        }
        if let Some(r) = cs
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
        {
            return r.to_string();
        }
    }
    let phase = s(p, "/status/phase");
    if phase.is_empty() {
        "Pending".into()
    } else {
        phase.to_string()
    }
}

pub(super) const DEPLOYMENT: KindColumns = KindColumns {
    columns: &[
        Column::name(),
        Column::string("READY", "Ready replicas of the desired replicas."),
        Column::integer("UP-TO-DATE", "Replicas running the current pod template."),
        Column::integer("AVAILABLE", "Replicas available to users."),
        Column::age(),
    ],
    row: |d, now| {
        vec![
            s(d, "/metadata/name").into(),
            format!(
                "{}/{}",
                n(d, "/status/readyReplicas"),
                n(d, "/spec/replicas")
            ),
            n(d, "/status/updatedReplicas").to_string(),
            n(d, "/status/availableReplicas").to_string(),
            created_age(d, now),
        ]
    },
};

pub(super) const REPLICA_SET: KindColumns = KindColumns {
    columns: &[
        Column::name(),
        Column::integer("DESIRED", "Replicas asked for."),
        Column::integer("CURRENT", "Replicas there are."),
        Column::integer("READY", "Replicas that are ready."),
        Column::age(),
    ],
    row: |d, now| {
        vec![
            s(d, "/metadata/name").into(),
            n(d, "/spec/replicas").to_string(),
            n(d, "/status/replicas").to_string(),
            n(d, "/status/readyReplicas").to_string(),
            created_age(d, now),
        ]
    },
};

pub(super) const DAEMON_SET: KindColumns = KindColumns {
    columns: &[
        Column::name(),
        Column::integer("DESIRED", "Nodes that should run the daemon pod."),
        Column::integer("CURRENT", "Nodes running the daemon pod."),
        Column::integer("READY", "Nodes whose daemon pod is ready."),
        Column::integer("UP-TO-DATE", "Nodes running the current pod template."),
        Column::integer("AVAILABLE", "Nodes whose daemon pod is available."),
        Column::age(),
    ],
    row: |d, now| {
        vec![
            s(d, "/metadata/name").into(),
            n(d, "/status/desiredNumberScheduled").to_string(),
            n(d, "/status/currentNumberScheduled").to_string(),
            n(d, "/status/numberReady").to_string(),
            n(d, "/status/updatedNumberScheduled").to_string(),
            n(d, "/status/numberAvailable").to_string(),
            created_age(d, now),
        ]
    },
};

pub(super) const HORIZONTAL_POD_AUTOSCALER: KindColumns = KindColumns {
    columns: &[
        Column::name(),
        Column::string("REFERENCE", "The scaled object, KIND/NAME."),
        Column::string("TARGETS", "Current and target value of each metric."),
        Column::integer("MINPODS", "Lower limit of replicas."),
        Column::integer("MAXPODS", "Upper limit of replicas."),
        Column::integer("REPLICAS", "Current replicas."),
        Column::age(),
    ],
    row: hpa_row,
};

fn hpa_row(h: &Value, now: DateTime<Utc>) -> Vec<String> {
    let targets = h
        .pointer("/spec/metrics")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    let target = m
                        .pointer("/resource/target/averageUtilization")
                        .and_then(Value::as_i64)
                        .map(|t| format!("{t}%"))
                        .unwrap_or_else(|| "?".into());
                    format!("<unknown>/{target}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    vec![
        s(h, "/metadata/name").into(),
        format!(
            "{}/{}",
            s(h, "/spec/scaleTargetRef/kind"),
            s(h, "/spec/scaleTargetRef/name")
        ),
        or_none(targets),
        n(h, "/spec/minReplicas").to_string(),
        n(h, "/spec/maxReplicas").to_string(),
        n(h, "/status/currentReplicas").to_string(),
        created_age(h, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{at, for_kind};

    #[test]
    fn pod_rows_narrow_and_wide() {
        let now = at("2026-01-01T01:00:00Z");
        let def = for_kind("Pod");
        let p = json!({"metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:58:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"ready": true, "restartCount": 1},
                {"ready": false, "restartCount": 2,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(
            def.headers(false),
            ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        );
        assert_eq!(
            def.cells(&p, now, false),
            ["web", "1/2", "CrashLoopBackOff", "3", "2m0s"]
        );
        assert_eq!(def.headers(true)[5..], ["IP", "NODE"]);
        assert_eq!(def.cells(&p, now, true)[5..], ["<none>", "<none>"]);
        let mut gone = p.clone();
        gone["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:59:00Z");
        assert_eq!(def.cells(&gone, now, false)[2], "Terminating");
        assert_eq!(def.cells(&json!({}), now, false)[2], "Pending");
    }

    #[test]
    fn deployment_row() {
        let now = at("2026-01-01T01:00:00Z");
        let d = json!({"metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:59:00Z"},
            "spec": {"replicas": 3},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            for_kind("Deployment").cells(&d, now, false),
            ["web", "2/3", "3", "2", "60s"]
        );
    }

    #[test]
    fn hpa_row() {
        let now = at("2026-01-01T01:00:00Z");
        let h = json!({"metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [{"resource": {"target": {"averageUtilization": 80}}}]}});
        assert_eq!(
            for_kind("HorizontalPodAutoscaler").cells(&h, now, false)[..4],
            ["web", "Deployment/web", "<unknown>/80%", "1"]
        );
    }
}
