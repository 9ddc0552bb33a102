//! The scheduler: places pods that have no `spec.nodeName` on nodes.
//!
//! The pure core is the `selur-scheduler` crate, re-exported here under its
//! old paths: [`schedule`] is a pure function from a [`Snapshot`] and a pod to a
//! [`Placement`] or an [`Unschedulable`] verdict: filters first (each node's
//! rejection reasons are kept, and become the FailedScheduling message with
//! counts, worded as kube-scheduler words them), then scores over the
//! feasible nodes (each node's parts kept). [`run`] is the loop around it:
//! it keeps the snapshot current from a store watch, takes pending pods in
//! [`queue`] order, binds through the `binding` write with optimistic
//! concurrency, and retries unschedulable pods when nodes or pods change.
//!
//! Not here yet: preemption, preferred (soft) affinities, pod affinity,
//! anti-affinity over topology keys other than `kubernetes.io/hostname`,
//! topology spread constraints, volume topology.

mod run;
mod writes;

pub use selur_scheduler::{
    feasible_nodes_to_find, schedule, Placement, PodInfo, Snapshot, Unschedulable, SCHEDULER_NAME,
};
pub use selur_scheduler::{filter, pod, queue, score, snapshot};

pub use run::{run, BindRecord, SchedulerConfig};
