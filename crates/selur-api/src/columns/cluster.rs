//! Cluster and namespace housekeeping: Namespaces, Nodes, Events,
//! ResourceQuotas and PodSecurityPolicies.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{age, condition, created_age, or_none, s, Column, KindColumns};

pub(super) const NAMESPACE: KindColumns = KindColumns {
    columns: &[
        Column::name(),
        Column::string("STATUS", "The namespace's phase."),
        Column::age(),
    ],
    row: |v, now| {
        vec![
            s(v, "/metadata/name").into(),
            s(v, "/status/phase").into(),
            created_age(v, now),
        ]
    },
};

pub(super) const RESOURCE_QUOTA: KindColumns = KindColumns {
    columns: &[
        Column::name(),
        Column::age(),
        Column::string("REQUEST", "Used of hard limits, other than limits.*."),
        Column::string("LIMIT", "Used of hard limits on limits.*."),
    ],
    row: resource_quota_row,
};

fn resource_quota_row(q: &Value, now: DateTime<Utc>) -> Vec<String> {
    let mut req = Vec::new();
    let mut lim = Vec::new();
    if let Some(hard) = q.pointer("/spec/hard").and_then(Value::as_object) {
        for (k, v) in hard {
            let used = q
                .pointer(&format!("/status/used/{}", k.replace('/', "~1")))
                .and_then(Value::as_str)
                .unwrap_or("0");
            let e = format!("{k}: {used}/{}", v.as_str().unwrap_or(""));
            if k.starts_with("limits.") {
                lim.push(e)
            } else {
                req.push(e)
            }
        }
    }
    vec![
        s(q, "/metadata/name").into(),
        created_age(q, now),
        req.join(", "),
        lim.join(", "),
    ]
}

pub(super) const NODE: KindColumns = KindColumns {
    columns: &[
        Column::name(),
        Column::string("STATUS", "Ready or NotReady, and SchedulingDisabled."),
        Column::string("ROLES", "node-role.kubernetes.io/ labels."),
        Column::age(),
        Column::string("VERSION", "The node agent's version."),
        Column::string("INTERNAL-IP", "The node's internal IP.").wide(),
        Column::string("OS-IMAGE", "The node's operating system.").wide(),
        Column::string("KERNEL-VERSION", "The node's kernel version.").wide(),
        Column::string("CAPACITY", "Allocatable cpu, memory and pods.").wide(),
        Column::string("TAINTS", "The node's taints.").wide(),
    ],
    row: node_row,
};

fn node_row(v: &Value, now: DateTime<Utc>) -> Vec<String> {
    let mut status = match condition(v, "Ready").as_deref() {
        Some("True") => "Ready".to_string(),
        Some("Unknown") => "NotReady".to_string(),
        _ => "NotReady".to_string(),
    };
    if v.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        status.push_str(",SchedulingDisabled");
    }
    let roles: Vec<String> = v
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/").map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let ip = v
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
        .and_then(|x| x["address"].as_str())
        .unwrap_or("<none>");
    let cap = format!(
        "cpu={},memory={},pods={}",
        s(v, "/status/allocatable/cpu"),
        s(v, "/status/allocatable/memory"),
        s(v, "/status/allocatable/pods")
    );
    let taints: Vec<String> = v
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .map(|t| match t["value"].as_str() {
                    Some(val) => format!("{}={}:{}", s(t, "/key"), val, s(t, "/effect")),
                    None => format!("{}:{}", s(t, "/key"), s(t, "/effect")),
                })
                .collect()
        })
        .unwrap_or_default();
    vec![
        s(v, "/metadata/name").into(),
        status,
        or_none(roles.join(",")),
        created_age(v, now),
        s(v, "/status/nodeInfo/kubeletVersion").into(),
        ip.to_string(),
        s(v, "/status/nodeInfo/osImage").into(),
        s(v, "/status/nodeInfo/kernelVersion").into(),
        cap,
        or_none(taints.join(",")),
    ]
}

pub(super) const EVENT: KindColumns = KindColumns {
    columns: &[
        Column::string("LAST SEEN", "Time since the event was last seen."),
        Column::string("TYPE", "Normal or Warning."),
        Column::string("REASON", "Why the event was recorded."),
        Column::string("OBJECT", "The object the event is about, kind/name."),
        Column::string("MESSAGE", "What happened."),
    ],
    row: event_row,
};

fn event_row(e: &Value, now: DateTime<Utc>) -> Vec<String> {
    let last = [
        s(e, "/lastTimestamp"),
        s(e, "/eventTime"),
        s(e, "/metadata/creationTimestamp"),
    ]
    .into_iter()
    .find(|x| !x.is_empty())
    .unwrap_or("");
    vec![
        age(last, now),
        s(e, "/type").into(),
        s(e, "/reason").into(),
        format!(
            "{}/{}",
            s(e, "/involvedObject/kind").to_ascii_lowercase(),
            s(e, "/involvedObject/name")
        ),
        s(e, "/message").into(),
    ]
}

pub(super) const POD_SECURITY_POLICY: KindColumns = KindColumns {
    columns: &[
        Column::name(),
        Column::boolean("PRIV", "Whether privileged pods are allowed."),
        Column::boolean(
            "READONLYROOTFS",
            "Whether root file systems must be read-only.",
        ),
        Column::string("RUNASUSER", "The rule for the user pods run as."),
        Column::age(),
    ],
    row: |p, now| {
        vec![
            s(p, "/metadata/name").into(),
            p.pointer("/spec/privileged")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string(),
            p.pointer("/spec/readOnlyRootFilesystem")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string(),
            s(p, "/spec/runAsUser/rule").into(),
            created_age(p, now),
        ]
    },
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{at, for_kind};

    #[test]
    fn node_rows_narrow_and_wide() {
        let now = at("2026-01-03T00:00:00Z");
        let def = for_kind("Node");
        let v = json!({"metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true,
                "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                           {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "nodeInfo": {"kubeletVersion": "v1.30.0", "osImage": "Linux", "kernelVersion": "6.1"}}});
        assert_eq!(
            def.cells(&v, now, false),
            [
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane",
                "2d",
                "v1.30.0"
            ]
        );
        assert_eq!(
            def.cells(&v, now, true)[5..],
            [
                "10.0.0.1",
                "Linux",
                "6.1",
                "cpu=2,memory=4Gi,pods=110",
                "dedicated=gpu:NoSchedule,node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        assert_eq!(
            def.cells(&json!({}), now, false)[1..3],
            ["NotReady", "<none>"]
        );
    }

    #[test]
    fn event_and_quota_rows() {
        let now = at("2026-01-01T01:00:00Z");
        let e = json!({"type": "Warning", "reason": "BackOff", "message": "restarting",
            "eventTime": "2026-01-01T00:59:55Z",
            "involvedObject": {"kind": "Pod", "name": "web"}});
        assert_eq!(
            for_kind("Event").cells(&e, now, false),
            ["5s", "Warning", "BackOff", "pod/web", "restarting"]
        );
        let q = json!({"metadata": {"name": "q"},
            "spec": {"hard": {"limits.cpu": "2", "pods": "10", "requests.cpu": "1"}},
            "status": {"used": {"pods": "3"}}});
        assert_eq!(
            for_kind("ResourceQuota").cells(&q, now, false)[2..],
            ["pods: 3/10, requests.cpu: 0/1", "limits.cpu: 0/2"]
        );
    }
}
