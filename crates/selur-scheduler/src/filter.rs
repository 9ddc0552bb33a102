//! Feasibility checks: each says whether a pod may go on a node and, if not,
//! why, in kube-scheduler's words (those strings are what users search for).
//! They run in [`FILTERS`] order, cheapest and most common rejections first,
//! and a node's check stops at the first filter that rejects it, as
//! kube-scheduler does; one filter may give several reasons (resources).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, Taint, Toleration};

use super::pod::{PodInfo, HOSTNAME_LABEL};
use super::snapshot::NodeInfo;

/// Taint added to cordoned nodes (TaintNodesByCondition).
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Why a node was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    Unschedulable,
    UntoleratedTaint { key: Arc<str>, value: Arc<str> },
    NodeAffinity,
    HostPorts,
    TooManyPods,
    Insufficient(Cow<'static, str>),
    AntiAffinity,
    ExistingAntiAffinity,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::HostPorts => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::Insufficient(r) => write!(f, "Insufficient {r}"),
            Reason::AntiAffinity => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Reason::ExistingAntiAffinity => {
                f.write_str("node(s) didn't satisfy existing pods anti-affinity rules")
            }
        }
    }
}

/// A filter's verdict: fits, or the reasons it does not.
pub type Verdict = Result<(), Vec<Reason>>;

/// A named feasibility check.
pub type Filter = (&'static str, fn(&PodInfo, &NodeInfo) -> Verdict);

/// The filters in the order they run.
pub const FILTERS: &[Filter] = &[
    ("NodeUnschedulable", node_unschedulable),
    ("TaintToleration", taint_toleration),
    ("NodeAffinity", node_affinity),
    ("NodePorts", node_ports),
    ("NodeResourcesFit", resources_fit),
    ("InterPodAffinity", pod_anti_affinity),
];

/// Run every filter; the first rejection wins.
pub fn run(pod: &PodInfo, node: &NodeInfo) -> Verdict {
    FILTERS.iter().try_for_each(|(_, f)| f(pod, node))
}

fn reject(r: Reason) -> Verdict {
    Err(vec![r])
}

/// Does `t` tolerate a taint with this key, value and effect?
pub fn tolerates(t: &Toleration, key: &str, value: &str, effect: &str) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != effect)
    {
        return false;
    }
    let tkey = t.key.as_deref().unwrap_or("");
    match t.operator.as_deref().unwrap_or("Equal") {
        // An empty key with Exists tolerates everything.
        "Exists" => tkey.is_empty() || tkey == key,
        "Equal" => tkey == key && t.value.as_deref().unwrap_or("") == value,
        _ => false,
    }
}

fn tolerated(pod: &PodInfo, taint: &Taint) -> bool {
    let value = taint.value.as_deref().unwrap_or("");
    pod.tolerations
        .iter()
        .any(|t| tolerates(t, &taint.key, value, &taint.effect))
}

/// A cordoned node takes only pods tolerating the unschedulable taint.
pub fn node_unschedulable(pod: &PodInfo, node: &NodeInfo) -> Verdict {
    let ok = !node.unschedulable
        || pod
            .tolerations
            .iter()
            .any(|t| tolerates(t, UNSCHEDULABLE_TAINT, "", "NoSchedule"));
    if ok {
        Ok(())
    } else {
        reject(Reason::Unschedulable)
    }
}

/// Every NoSchedule/NoExecute taint must be tolerated (PreferNoSchedule only scores in Kubernetes).
pub fn taint_toleration(pod: &PodInfo, node: &NodeInfo) -> Verdict {
    match node
        .taints
        .iter()
        .position(|t| (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(pod, t))
    {
        None => Ok(()),
        Some(i) => {
            let (key, value) = node.taint_text[i].clone();
            reject(Reason::UntoleratedTaint { key, value })
        }
    }
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Terms are ORed, a term's requirements ANDed; an empty term matches nothing.
pub fn node_selector_matches(sel: &NodeSelector, node: &NodeInfo) -> bool {
    sel.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
        let fields = term.match_fields.as_deref().unwrap_or(&[]);
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        exprs
            .iter()
            .all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
            && fields.iter().all(|r| {
                r.key == "metadata.name" && requirement_matches(r, Some(node.name.as_ref()))
            })
    })
}

/// `nodeSelector` labels and required node affinity.
pub fn node_affinity(pod: &PodInfo, node: &NodeInfo) -> Verdict {
    let selector_ok = pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let affinity_ok = pod
        .required_node_affinity
        .as_ref()
        .is_none_or(|s| node_selector_matches(s, node));
    if selector_ok && affinity_ok {
        Ok(())
    } else {
        reject(Reason::NodeAffinity)
    }
}

/// Host ports the pod asks for must be free on the node.
pub fn node_ports(pod: &PodInfo, node: &NodeInfo) -> Verdict {
    let clash = pod
        .host_ports
        .iter()
        .any(|p| node.host_ports.iter().any(|q| p.conflicts(q)));
    if clash {
        reject(Reason::HostPorts)
    } else {
        Ok(())
    }
}

/// Requests must fit into allocatable minus what placed pods request; pod count under capacity.
pub fn resources_fit(pod: &PodInfo, node: &NodeInfo) -> Verdict {
    let mut reasons = Vec::new();
    if node.pods.len() as i64 + 1 > node.max_pods {
        reasons.push(Reason::TooManyPods);
    }
    let r = &pod.requests;
    let a = &node.allocatable;
    let u = &node.requested;
    if r.cpu_milli > 0 && r.cpu_milli > a.cpu_milli - u.cpu_milli {
        reasons.push(Reason::Insufficient(Cow::Borrowed("cpu")));
    }
    if r.memory > 0 && r.memory > a.memory - u.memory {
        reasons.push(Reason::Insufficient(Cow::Borrowed("memory")));
    }
    for (name, want) in &r.other {
        if *want > 0 && *want > a.get(name) - u.get(name) {
            reasons.push(Reason::Insufficient(Cow::Owned(name.clone())));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// Required pod anti-affinity over `kubernetes.io/hostname`, both ways: the
/// pod's own terms against pods on the node, and terms of pods on the node
/// against the pod. (Other topology keys are not evaluated yet.)
pub fn pod_anti_affinity(pod: &PodInfo, node: &NodeInfo) -> Verdict {
    let own = pod
        .anti_affinity
        .iter()
        .filter(|t| t.topology_key == HOSTNAME_LABEL)
        .any(|t| node.pods.values().any(|other| t.matches(other)));
    if own {
        return reject(Reason::AntiAffinity);
    }
    if node.anti_affinity_pods > 0 {
        let theirs = node.pods.values().any(|other| {
            other
                .anti_affinity
                .iter()
                .any(|t| t.topology_key == HOSTNAME_LABEL && t.matches(pod))
        });
        if theirs {
            return reject(Reason::ExistingAntiAffinity);
        }
    }
    Ok(())
}
