//! Ranking of feasible nodes. Each score is 0-100; the total is their
//! weighted sum, and every node's parts are kept so a placement can be
//! explained.
//!
//! * image locality: share of the pod's image bytes (catalog layer sizes) the
//!   node already holds, so it has the least left to pull;
//! * least allocated: free share of cpu and memory after placing the pod
//!   (pods without requests count kube-scheduler's 100m / 200Mi);
//! * balanced: cpu and memory used in similar proportions;
//! * owner spreading: fewer pods of the same owner on the node is better
//!   (normalised against the busiest feasible node).

use std::collections::HashSet;
use std::sync::Arc;

use super::pod::PodInfo;
use super::snapshot::{Catalog, NodeInfo, DEFAULT_CPU_MILLI, DEFAULT_MEMORY};

pub const WEIGHT_IMAGE: i64 = 1;
pub const WEIGHT_LEAST_ALLOCATED: i64 = 1;
pub const WEIGHT_BALANCED: i64 = 1;
pub const WEIGHT_SPREAD: i64 = 2;

/// How one node scored for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeScore {
    pub node: Arc<str>,
    pub image_locality: i64,
    pub least_allocated: i64,
    pub balanced: i64,
    pub spread: i64,
    pub total: i64,
}

/// One image a pod needs, resolved against the catalog once per pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageNeed {
    /// Names a node may report it under (as written, normalised, digest).
    pub names: Vec<String>,
    /// Layers ([`super::pod::short_id`], size); empty when the catalog does not know the image.
    pub layers: Vec<(u64, u64)>,
}

/// The images of a pod, resolved.
pub fn image_needs(pod: &PodInfo, catalog: &Catalog) -> Vec<ImageNeed> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for reference in &pod.images {
        if !seen.insert(reference.as_str()) {
            continue;
        }
        let mut need = ImageNeed {
            names: vec![reference.clone()],
            layers: Vec::new(),
        };
        if let Ok(n) = selur_registry::reference::normalize(reference) {
            need.names.push(n);
        }
        if let Some(img) = catalog.resolve(reference) {
            need.names.push(img.digest.clone());
            need.layers = img.layers.clone();
        }
        out.push(need);
    }
    out
}

/// 0-100: the share of the pod's image bytes already on the node. Images the
/// catalog does not know count as one unit each, present when the node reports them.
pub fn image_locality(needs: &[ImageNeed], node: &NodeInfo) -> i64 {
    let (mut total, mut present) = (0u128, 0u128);
    for need in needs {
        if need.layers.is_empty() {
            total += 1;
            if need.names.iter().any(|n| node.images.contains(n)) {
                present += 1;
            }
            continue;
        }
        for (digest, size) in &need.layers {
            let size = (*size).max(1) as u128;
            total += size;
            if node.layers.contains(digest) {
                present += size;
            }
        }
    }
    if total == 0 {
        return 0;
    }
    (present * 100 / total) as i64
}

fn after_placing(pod: &PodInfo, node: &NodeInfo) -> (i64, i64) {
    let cpu = if pod.requests.cpu_milli == 0 {
        DEFAULT_CPU_MILLI
    } else {
        pod.requests.cpu_milli
    };
    let mem = if pod.requests.memory == 0 {
        DEFAULT_MEMORY
    } else {
        pod.requests.memory
    };
    (
        node.nonzero_requested.0.saturating_add(cpu),
        node.nonzero_requested.1.saturating_add(mem),
    )
}

fn free_share(alloc: i64, used: i64) -> i64 {
    if alloc <= 0 || used > alloc {
        return 0;
    }
    match (alloc - used).checked_mul(100) {
        Some(v) => v / alloc,
        None => ((alloc - used) as i128 * 100 / alloc as i128) as i64,
    }
}

/// 0-100: mean free share of cpu and memory after placing the pod.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let (cpu, mem) = after_placing(pod, node);
    (free_share(node.allocatable.cpu_milli, cpu) + free_share(node.allocatable.memory, mem)) / 2
}

fn fraction(used: i64, alloc: i64) -> f64 {
    if alloc <= 0 {
        1.0
    } else {
        (used as f64 / alloc as f64).min(1.0)
    }
}

/// 0-100: 100 when cpu and memory would be used in the same proportion.
pub fn balanced(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let (cpu, mem) = after_placing(pod, node);
    let diff =
        (fraction(cpu, node.allocatable.cpu_milli) - fraction(mem, node.allocatable.memory)).abs();
    ((1.0 - diff / 2.0) * 100.0).round() as i64
}

/// Pods of the pod's owner already on the node.
pub fn owner_count(pod: &PodInfo, node: &NodeInfo) -> u32 {
    pod.owner
        .as_ref()
        .and_then(|o| node.owners.get(o).copied())
        .unwrap_or(0)
}

/// 0-100 from a node's owner count and the largest count among feasible nodes.
pub fn spread(count: u32, max: u32) -> i64 {
    if max == 0 {
        100
    } else {
        (max.saturating_sub(count) as i64) * 100 / max as i64
    }
}

/// Score every feasible node (indexes into `nodes`).
pub fn score_nodes(
    pod: &PodInfo,
    needs: &[ImageNeed],
    nodes: &[NodeInfo],
    feasible: &[usize],
) -> Vec<NodeScore> {
    let counts: Vec<u32> = feasible
        .iter()
        .map(|&i| owner_count(pod, &nodes[i]))
        .collect();
    let max = counts.iter().copied().max().unwrap_or(0);
    feasible
        .iter()
        .zip(counts)
        .map(|(&i, count)| {
            let n = &nodes[i];
            let image_locality = image_locality(needs, n);
            let least_allocated = least_allocated(pod, n);
            let balanced = balanced(pod, n);
            let spread = spread(count, max);
            NodeScore {
                node: n.name.clone(),
                total: image_locality * WEIGHT_IMAGE
                    + least_allocated * WEIGHT_LEAST_ALLOCATED
                    + balanced * WEIGHT_BALANCED
                    + spread * WEIGHT_SPREAD,
                image_locality,
                least_allocated,
                balanced,
                spread,
            }
        })
        .collect()
}
