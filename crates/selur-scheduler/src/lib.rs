//! The scheduler's core: places pods that have no `spec.nodeName` on nodes,
//! with no I/O and nothing of the registry.
//!
//! [`schedule`] is a pure function from a [`Snapshot`] and a pod to a
//! [`Placement`] or an [`Unschedulable`] verdict: filters first (each node's
//! rejection reasons are kept, and become the FailedScheduling message with
//! counts, worded as kube-scheduler words them), then scores over the
//! feasible nodes (each node's parts kept). The loop around it lives in the
//! server (`selur_server::scheduler::run`): it keeps the snapshot current from
//! a store watch, takes pending pods in [`queue`] order, binds through the
//! `binding` write with optimistic concurrency, and retries unschedulable pods
//! when nodes or pods change.
//!
//! Not here yet: preemption, preferred (soft) affinities, pod affinity,
//! anti-affinity over topology keys other than `kubernetes.io/hostname`,
//! topology spread constraints, volume topology.

#![forbid(unsafe_code)]

pub mod filter;
pub mod pod;
pub mod queue;
pub mod score;
pub mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use pod::PodInfo;
pub use snapshot::Snapshot;

use filter::Reason;
use score::NodeScore;

/// The name pods give (or get by default) in `spec.schedulerName` to be placed by this scheduler.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Where a pod goes, and how every feasible node scored.
#[derive(Debug, Clone)]
pub struct Placement {
    pub node: Arc<str>,
    pub scores: Vec<NodeScore>,
    /// Nodes looked at (the search may stop early on large clusters).
    pub evaluated: usize,
}

/// No node fits: each rejected node with its reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Unschedulable {
    pub total_nodes: usize,
    pub rejected: Vec<(Arc<str>, Vec<Reason>)>,
}

impl Unschedulable {
    /// Reason text -> number of nodes rejected for it.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (_, reasons) in &self.rejected {
            for r in reasons {
                *out.entry(r.to_string()).or_insert(0) += 1;
            }
        }
        out
    }
}

impl fmt::Display for Unschedulable {
    /// kube-scheduler's FitError text: `0/3 nodes are available: 1 node(s) had
    /// untolerated taint {dedicated: gpu}, 2 Insufficient memory.` ("count reason"
    /// strings sorted as strings).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total_nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        let mut parts: Vec<String> = self
            .counts()
            .into_iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        parts.sort();
        write!(
            f,
            "0/{} nodes are available: {}.",
            self.total_nodes,
            parts.join(", ")
        )
    }
}

impl std::error::Error for Unschedulable {}

/// How many feasible nodes to find before scoring (kube-scheduler's
/// percentageOfNodesToScore, adaptive): every node in clusters under 100
/// nodes, else `max(5, 50 - nodes/125)` percent, but at least 100.
pub fn feasible_nodes_to_find(nodes: usize) -> usize {
    if nodes < 100 {
        return nodes;
    }
    let pct = 50usize.saturating_sub(nodes / 125).max(5);
    (nodes * pct / 100).max(100)
}

/// Place `pod` on a node of `snap`, or say why none fits. Pure: the same
/// snapshot and pod give the same answer. The search over nodes starts at
/// `snap.next_start` and may stop once enough feasible nodes are found;
/// ties go to the node found first.
pub fn schedule(snap: &Snapshot, pod: &PodInfo) -> Result<Placement, Unschedulable> {
    let n = snap.nodes.len();
    let want = feasible_nodes_to_find(n);
    let mut feasible = Vec::with_capacity(want.min(n));
    let mut rejected = Vec::new();
    let mut evaluated = 0;
    for i in 0..n {
        let idx = (snap.next_start + i) % n;
        evaluated += 1;
        match filter::run(pod, &snap.nodes[idx]) {
            Ok(()) => {
                feasible.push(idx);
                if feasible.len() >= want {
                    break;
                }
            }
            Err(reasons) => rejected.push((snap.nodes[idx].name.clone(), reasons)),
        }
    }
    if feasible.is_empty() {
        return Err(Unschedulable {
            total_nodes: n,
            rejected,
        });
    }
    let needs = score::image_needs(pod, &snap.catalog);
    let scores = score::score_nodes(pod, &needs, &snap.nodes, &feasible);
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if s.total > scores[best].total {
            best = i;
        }
    }
    Ok(Placement {
        node: scores[best].node.clone(),
        scores,
        evaluated,
    })
}
