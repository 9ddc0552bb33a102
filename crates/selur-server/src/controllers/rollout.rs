//! The Deployment controller's decisions as pure functions of a snapshot:
//! which ReplicaSet to create, scale or delete, following the Kubernetes
//! deployment controller (`rolling.go`, `recreate.go`, `sync.go`).
//!
//! Availability here is counted from pods (ready for `minReadySeconds`) and
//! capped at each ReplicaSet's `spec.replicas`: pods above it are about to be
//! deleted (the least available first), so counting them would let a
//! rolling update scale down more than `maxUnavailable` allows.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// How pods are replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Recreate,
    RollingUpdate {
        max_surge: i32,
        max_unavailable: i32,
    },
}

/// What the Deployment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub replicas: i32,
    pub strategy: Strategy,
    pub paused: bool,
    pub revision_history_limit: i32,
}

/// One ReplicaSet of the Deployment as the planner sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rs {
    pub name: String,
    pub revision: i64,
    /// Creation time (RFC 3339, sorts as time), then name: the age order.
    pub created: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// Its pods that are available now.
    pub available: i32,
    /// Its pods that still exist and have not finished (being deleted included).
    pub pods: i32,
    /// `status.replicas`.
    pub status_replicas: i32,
    /// `deployment.kubernetes.io/desired-replicas`.
    pub desired: Option<i32>,
    /// `deployment.kubernetes.io/max-replicas`.
    pub max: Option<i32>,
    /// `status.observedGeneration` has caught up with `metadata.generation`.
    pub settled: bool,
}

impl Rs {
    fn avail(&self) -> i32 {
        self.available.min(self.replicas)
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the ReplicaSet for the current template with this many replicas.
    Create {
        replicas: i32,
    },
    Scale {
        name: String,
        from: i32,
        to: i32,
    },
    /// Delete an old ReplicaSet beyond `revisionHistoryLimit`.
    Delete {
        name: String,
    },
}

/// `value` of `IntOrString` (a percentage of `total`), rounded up or down.
pub fn scaled_value(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').trim().parse().unwrap_or(0);
            let n = pct * i64::from(total);
            let r = if round_up {
                (n + 99).div_euclid(100)
            } else {
                n.div_euclid(100)
            };
            r.clamp(0, i64::from(i32::MAX)) as i32
        }
    }
}

/// maxSurge (rounded up) and maxUnavailable (rounded down) for `replicas`;
/// both 0 would block a rollout, so maxUnavailable becomes 1 (Kubernetes'
/// ResolveFenceposts); maxUnavailable never exceeds `replicas`.
pub fn resolve(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    replicas: i32,
) -> (i32, i32) {
    let s = scaled_value(surge, replicas, true).max(0);
    let mut u = scaled_value(unavailable, replicas, false).max(0);
    if s == 0 && u == 0 {
        u = 1;
    }
    (s, u.min(replicas.max(0)))
}

fn surge_of(spec: &Spec) -> i32 {
    match spec.strategy {
        Strategy::RollingUpdate { max_surge, .. } => max_surge,
        Strategy::Recreate => 0,
    }
}

/// What to do now. `new` is the ReplicaSet whose template is the Deployment's
/// (if it exists yet), `old` the others. One step per pass, as Kubernetes: the
/// changes it makes trigger the next pass.
pub fn plan(spec: &Spec, new: Option<&Rs>, old: &[Rs]) -> Vec<Action> {
    if spec.paused || is_scaling_event(spec, new, old) {
        let actions = scale(spec, new, old);
        if actions.is_empty() && spec.paused {
            return cleanup(spec, old);
        }
        return actions;
    }
    let actions = match spec.strategy {
        Strategy::Recreate => recreate(spec, new, old),
        Strategy::RollingUpdate {
            max_surge,
            max_unavailable,
        } => rolling(spec, max_surge, max_unavailable, new, old),
    };
    if actions.is_empty() && new.is_some() {
        return cleanup(spec, old);
    }
    actions
}

fn scale_to(rs: &Rs, to: i32) -> Option<Action> {
    (rs.replicas != to).then(|| Action::Scale {
        name: rs.name.clone(),
        from: rs.replicas,
        to,
    })
}

/// The replicas of the Deployment changed while its ReplicaSets say otherwise.
fn is_scaling_event(spec: &Spec, new: Option<&Rs>, old: &[Rs]) -> bool {
    new.into_iter()
        .chain(old)
        .filter(|r| r.replicas > 0)
        .any(|r| r.desired.is_some_and(|d| d != spec.replicas))
}

/// Kubernetes `NewRSNewReplicas` for a rolling update.
fn new_rs_replicas(spec: &Spec, surge: i32, all: i32, new: i32) -> i32 {
    let max_total = spec.replicas + surge;
    if all >= max_total {
        return new;
    }
    new + (max_total - all).min(spec.replicas - new).max(0)
}

fn rolling(spec: &Spec, surge: i32, unavailable: i32, new: Option<&Rs>, old: &[Rs]) -> Vec<Action> {
    let old_total: i32 = old.iter().map(|r| r.replicas).sum();
    let Some(new) = new else {
        return vec![Action::Create {
            replicas: new_rs_replicas(spec, surge, old_total, 0),
        }];
    };
    let all = old_total + new.replicas;
    // Scale the new ReplicaSet up (within maxSurge) or down to replicas.
    let target = if new.replicas >= spec.replicas {
        spec.replicas
    } else {
        new_rs_replicas(spec, surge, all, new.replicas)
    };
    if let Some(a) = scale_to(new, target) {
        return vec![a];
    }
    if old_total == 0 {
        return Vec::new();
    }
    // Scale old ones down, never below replicas - maxUnavailable available.
    let min_available = spec.replicas - unavailable;
    let new_unavailable = new.replicas - new.avail();
    let max_scaled_down = all - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut olds: Vec<Rs> = old.to_vec();
    olds.sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
    // First the unavailable pods of old ReplicaSets: removing them costs nothing.
    let mut cleaned = 0;
    for rs in olds.iter_mut().filter(|r| r.replicas > 0) {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = rs.replicas - rs.avail();
        let n = unhealthy.min(max_scaled_down - cleaned);
        rs.replicas -= n;
        cleaned += n;
    }
    // Then available ones, as far as the minimum allows.
    let available: i32 = olds.iter().map(Rs::avail).sum::<i32>() + new.avail();
    let mut budget = (available - min_available).max(0);
    for rs in olds.iter_mut() {
        let n = rs.replicas.min(budget);
        rs.replicas -= n;
        budget -= n;
    }
    old.iter()
        .filter_map(|o| {
            let to = olds
                .iter()
                .find(|r| r.name == o.name)
                .map_or(o.replicas, |r| r.replicas);
            scale_to(o, to)
        })
        .collect()
}

fn recreate(spec: &Spec, new: Option<&Rs>, old: &[Rs]) -> Vec<Action> {
    let down: Vec<Action> = old.iter().filter_map(|r| scale_to(r, 0)).collect();
    if !down.is_empty() {
        return down;
    }
    // Only once every old pod is gone.
    if old.iter().any(|r| r.pods > 0) {
        return Vec::new();
    }
    match new {
        None => vec![Action::Create {
            replicas: spec.replicas,
        }],
        Some(n) => scale_to(n, spec.replicas).into_iter().collect(),
    }
}

/// Scaling without a rollout (paused, or replicas changed): one active
/// ReplicaSet takes the new size; several share it in proportion.
fn scale(spec: &Spec, new: Option<&Rs>, old: &[Rs]) -> Vec<Action> {
    let all: Vec<&Rs> = new.into_iter().chain(old).collect();
    let active: Vec<&Rs> = all.iter().copied().filter(|r| r.replicas > 0).collect();
    let only = match active.len() {
        0 => new.or_else(|| {
            old.iter()
                .max_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)))
        }),
        1 => Some(active[0]),
        _ => None,
    };
    if let Some(rs) = only {
        return scale_to(rs, spec.replicas).into_iter().collect();
    }
    // The new ReplicaSet is complete: the old ones can go.
    if new.is_some_and(|n| {
        n.replicas == spec.replicas
            && n.desired == Some(spec.replicas)
            && n.avail() >= spec.replicas
    }) {
        return old.iter().filter_map(|r| scale_to(r, 0)).collect();
    }
    if spec.strategy == Strategy::Recreate {
        return Vec::new();
    }
    let allowed = spec.replicas + surge_of(spec);
    let total: i32 = active.iter().map(|r| r.replicas).sum();
    let to_add = allowed - total;
    if to_add == 0 {
        return Vec::new();
    }
    let mut sorted = active.clone();
    // Largest first; ties: newest first when growing, oldest first when shrinking.
    sorted.sort_by(|a, b| {
        let age = (&a.created, &a.name).cmp(&(&b.created, &b.name));
        b.replicas
            .cmp(&a.replicas)
            .then(if to_add > 0 { age.reverse() } else { age })
    });
    let mut added = 0;
    let mut targets: Vec<(&Rs, i32)> = Vec::new();
    for rs in sorted {
        let fraction = if spec.replicas == 0 {
            -rs.replicas
        } else {
            let base = rs.max.filter(|m| *m > 0).unwrap_or(total.max(1));
            let size = f64::from(rs.replicas) * f64::from(allowed) / f64::from(base);
            size.round() as i32 - rs.replicas
        };
        let p = if to_add > 0 {
            fraction.min(to_add - added)
        } else {
            fraction.max(to_add - added)
        };
        added += p;
        targets.push((rs, rs.replicas + p));
    }
    if let Some(first) = targets.first_mut() {
        first.1 = (first.1 + to_add - added).max(0);
    }
    targets
        .into_iter()
        .filter_map(|(rs, to)| scale_to(rs, to.max(0)))
        .collect()
}

/// Delete the oldest unused ReplicaSets beyond `revisionHistoryLimit`.
fn cleanup(spec: &Spec, old: &[Rs]) -> Vec<Action> {
    let excess = old.len() as i64 - i64::from(spec.revision_history_limit.max(0));
    if excess <= 0 {
        return Vec::new();
    }
    let mut by_revision: Vec<&Rs> = old.iter().collect();
    by_revision.sort_by_key(|r| (r.revision, r.created.clone()));
    by_revision
        .into_iter()
        .take(excess as usize)
        .filter(|r| r.replicas == 0 && r.status_replicas == 0 && r.settled)
        .map(|r| Action::Delete {
            name: r.name.clone(),
        })
        .collect()
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
