//! The DaemonSet controller's decisions as a pure function (Kubernetes'
//! `daemon_controller.go` manage and `update.go` rollingUpdate): from the
//! nodes (where a daemon pod should run, where an existing one may stay) and
//! the daemon pods per node, which nodes get a new pod and which pods go.

use std::collections::BTreeMap;

/// One node as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    /// A new daemon pod may be placed here (selector, affinity, taints).
    pub should_run: bool,
    /// An existing daemon pod may stay (selector, affinity, NoExecute taints).
    pub should_continue: bool,
}

/// One daemon pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub name: String,
    /// The node it is bound or pinned to.
    pub node: String,
    /// Carries the current template hash.
    pub updated: bool,
    pub ready: bool,
    pub available: bool,
    /// Phase Failed: replaced, as Kubernetes does.
    pub failed: bool,
    /// Being deleted (has a `deletionTimestamp`): never deleted again, and
    /// while it terminates its node gets no new pod (as Kubernetes).
    pub terminating: bool,
}

/// How pods of an old template are replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    OnDelete,
    /// Absolute numbers (percentages already resolved against the desired count).
    RollingUpdate {
        max_unavailable: usize,
        max_surge: usize,
    },
}

/// What to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Nodes that get a pod of the current template.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<String>,
}

/// An int-or-percent of `total` (`"25%"` or `3`), rounded up or down.
pub fn scaled(
    v: Option<&serde_json::Value>,
    total: usize,
    round_up: bool,
    default: usize,
) -> usize {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0) as usize,
        Some(serde_json::Value::String(s)) => match s.strip_suffix('%').map(str::parse::<usize>) {
            Some(Ok(p)) if round_up => (p * total).div_ceil(100),
            Some(Ok(p)) => p * total / 100,
            _ => s.parse().unwrap_or(default),
        },
        _ => default,
    }
}

/// The best pod of `v` (available, ready, by name) and the rest.
fn best(mut v: Vec<&PodView>) -> (Option<&PodView>, Vec<&PodView>) {
    v.sort_by_key(|p| (!p.available, !p.ready, p.name.clone()));
    let rest = v.split_off(v.len().min(1));
    (v.pop(), rest)
}

/// Decide creates and deletes.
pub fn plan(nodes: &[NodeView], pods: &[PodView], strategy: Strategy) -> Plan {
    let mut plan = Plan::default();
    let mut by_node: BTreeMap<&str, Vec<&PodView>> = BTreeMap::new();
    for p in pods {
        by_node.entry(p.node.as_str()).or_default().push(p);
    }
    let known: BTreeMap<&str, &NodeView> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    // Pods pinned to nodes that are gone.
    for (node, ps) in &by_node {
        if !known.contains_key(node) {
            plan.delete
                .extend(ps.iter().filter(|p| !p.terminating).map(|p| p.name.clone()));
        }
    }
    let surge = matches!(strategy, Strategy::RollingUpdate { max_surge, .. } if max_surge > 0);
    // Per node: the pods that stay, (old, new).
    let mut kept: Vec<(&NodeView, Option<&PodView>, Option<&PodView>)> = Vec::new();
    for n in nodes {
        let mut ps: Vec<&PodView> = by_node.get(n.name.as_str()).cloned().unwrap_or_default();
        let terminating = ps.iter().any(|p| p.terminating);
        ps.retain(|p| !p.terminating);
        let (failed, live): (Vec<&PodView>, Vec<&PodView>) = ps.drain(..).partition(|p| p.failed);
        plan.delete.extend(failed.iter().map(|p| p.name.clone()));
        if !n.should_continue {
            plan.delete.extend(live.iter().map(|p| p.name.clone()));
            continue;
        }
        if live.is_empty() {
            if n.should_run && !terminating {
                plan.create.push(n.name.clone());
            }
            continue;
        }
        // At most one new and (while surging) one old pod per node; the best kept.
        let (new, old): (Vec<&PodView>, Vec<&PodView>) = live.into_iter().partition(|p| p.updated);
        let (new, extra_new) = best(new);
        let (old, extra_old) = best(old);
        plan.delete.extend(extra_new.iter().map(|p| p.name.clone()));
        plan.delete.extend(extra_old.iter().map(|p| p.name.clone()));
        let old = match (new, old) {
            // Without surge a node keeps one pod: the new one.
            (Some(_), Some(o)) if !surge => {
                plan.delete.push(o.name.clone());
                None
            }
            (_, o) => o,
        };
        if n.should_run {
            kept.push((n, old, new));
        }
    }
    let Strategy::RollingUpdate {
        max_unavailable,
        max_surge,
    } = strategy
    else {
        return plan;
    };
    let mut unavailable = kept
        .iter()
        .filter(|(_, o, n)| !o.is_some_and(|p| p.available) && !n.is_some_and(|p| p.available))
        .count()
        + plan.create.len();
    if max_surge == 0 {
        for (_, old, new) in &kept {
            let (Some(o), None) = (old, new) else {
                continue;
            };
            if !o.available {
                plan.delete.push(o.name.clone());
            } else if unavailable < max_unavailable {
                plan.delete.push(o.name.clone());
                unavailable += 1;
            }
        }
        return plan;
    }
    let mut surging = kept
        .iter()
        .filter(|(_, o, n)| o.is_some() && n.is_some())
        .count();
    for (node, old, new) in &kept {
        match (old, new) {
            (Some(o), Some(n)) if n.available => plan.delete.push(o.name.clone()),
            (Some(o), None) if !o.available => plan.create.push(node.name.clone()),
            (Some(_), None) if surging < max_surge => {
                plan.create.push(node.name.clone());
                surging += 1;
            }
            _ => {}
        }
    }
    plan
}

#[cfg(test)]
#[path = "daemonset_plan_tests.rs"]
mod tests;
