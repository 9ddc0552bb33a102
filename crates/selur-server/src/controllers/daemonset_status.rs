//! A DaemonSet's `status`, counted per node as Kubernetes does.

use serde_json::{json, Value};

use super::daemonset_plan::{NodeView, PodView};

/// The status for `ds` given the nodes and its active pods; `failure` is a
/// refused pod create (kept as the ReplicaFailure condition).
pub fn status(
    ds: &Value,
    nodes: &[NodeView],
    pods: &[PodView],
    failure: Option<&str>,
    now: &str,
) -> Value {
    fn on_node<'a>(pods: &'a [PodView], n: &'a NodeView) -> impl Iterator<Item = &'a PodView> + 'a {
        pods.iter()
            .filter(move |p| p.node == n.name && !p.failed && !p.terminating)
    }
    let on = |n| on_node(pods, n);
    let (mut desired, mut current, mut mis, mut ready, mut avail, mut updated) = (0, 0, 0, 0, 0, 0);
    for n in nodes {
        let has = on(n).next().is_some();
        if n.should_run {
            desired += 1;
            if has {
                current += 1;
            }
            if on(n).any(|p| p.ready) {
                ready += 1;
            }
            if on(n).any(|p| p.available) {
                avail += 1;
            }
            if on(n).any(|p| p.updated) {
                updated += 1;
            }
        } else if has {
            mis += 1;
        }
    }
    let mut conditions: Vec<Value> = ds
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let previous = conditions
        .iter()
        .position(|c| c["type"] == "ReplicaFailure")
        .map(|i| conditions.remove(i));
    if let Some(msg) = failure {
        let since = previous
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now));
        conditions.push(json!({"type": "ReplicaFailure", "status": "True",
            "reason": "FailedCreate", "message": msg, "lastTransitionTime": since}));
    }
    let mut s = json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberMisscheduled": mis,
        "numberReady": ready,
        "numberAvailable": avail,
        "numberUnavailable": desired - avail,
        "updatedNumberScheduled": updated,
        "observedGeneration": ds.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0),
    });
    if let Some(c) = ds.pointer("/status/collisionCount") {
        s["collisionCount"] = c.clone();
    }
    if !conditions.is_empty() {
        s["conditions"] = json!(conditions);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_node() {
        let n = |name: &str, run: bool| NodeView {
            name: name.into(),
            should_run: run,
            should_continue: run,
        };
        let p = |name: &str, node: &str, updated: bool, ready: bool| PodView {
            name: name.into(),
            node: node.into(),
            updated,
            ready,
            available: ready,
            failed: false,
            terminating: false,
        };
        let ds = json!({"metadata": {"generation": 3}});
        let s = status(
            &ds,
            &[n("a", true), n("b", true), n("c", false), n("d", true)],
            &[
                p("1", "a", true, true),
                p("2", "b", false, false),
                p("3", "c", true, true),
            ],
            Some("quota"),
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(s["desiredNumberScheduled"], 3);
        assert_eq!(s["currentNumberScheduled"], 2);
        assert_eq!(s["numberMisscheduled"], 1);
        assert_eq!(s["numberReady"], 1);
        assert_eq!(s["numberAvailable"], 1);
        assert_eq!(s["numberUnavailable"], 2);
        assert_eq!(s["updatedNumberScheduled"], 1);
        assert_eq!(s["observedGeneration"], 3);
        assert_eq!(s["conditions"][0]["type"], "ReplicaFailure");
    }
}
