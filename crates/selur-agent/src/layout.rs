//! Where this agent keeps things: pod directories, container ids, the OCI
//! runtime's state and pod sandboxes. Shared by the runtime and by the
//! node-local API handlers (exec, port-forward), so neither reaches into the
//! other for them.

use std::path::PathBuf;

use selur_runtime::runc::Runtime;
use selur_runtime::sandbox::Sandbox;

use crate::Agent;

/// The OCI runtime this agent drives.
pub(crate) fn runtime(agent: &Agent) -> Runtime {
    Runtime::new(&agent.config.runtime, agent.config.data_dir.join("runc"))
}

/// The pod's directory on this node (sandbox under `ns/`, etc files,
/// volumes, containers, `state.json`, `pod.json`).
pub(crate) fn pod_dir(agent: &Agent, uid: &str) -> PathBuf {
    agent.config.data_dir.join("pods").join(uid)
}

/// The runtime id of container `cname` of the pod with `uid` on this node.
pub(crate) fn container_id(agent: &Agent, uid: &str, cname: &str) -> String {
    id_for(&agent.config.node_name, uid, cname)
}

/// The pod's sandbox (its namespaces), if the pod runs here.
pub(crate) fn sandbox_of(agent: &Agent, uid: &str) -> Sandbox {
    Sandbox::at(&pod_dir(agent, uid).join("ns"))
}

fn short(uid: &str) -> String {
    uid.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect()
}

/// The runtime id of container `cname` of pod `uid` on node `node`.
pub fn id_for(node: &str, uid: &str, cname: &str) -> String {
    format!("{node}-{}-{cname}", short(uid))
}
