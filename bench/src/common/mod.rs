//! Parts shared by the benchmark binaries (each binary uses its own subset).
#![allow(dead_code)]

pub mod args;
pub mod floor;
pub mod host;
pub mod netns;
pub mod server;
pub mod stats;
pub mod workload;

/// The node name of the all-in-one server (its cgroups are `selur-bench`).
pub const NODE: &str = "bench";
