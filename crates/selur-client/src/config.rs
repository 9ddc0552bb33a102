//! Where the API is: `--server`, else the kubeconfig's current context.

use serde_json::Value;

/// Default admin config written by `selur server` with the default data dir.
pub const DEFAULT_CONFIG: &str = "/var/lib/selur/kubeconfig";

/// The server URL of the kubeconfig's current context (or its only cluster).
pub fn server_from_kubeconfig(text: &str) -> Option<String> {
    let v: Value = yaml_serde::from_str(text).ok()?;
    let current = v.get("current-context").and_then(Value::as_str);
    let contexts = v.get("contexts").and_then(Value::as_array);
    let cluster_name = contexts
        .and_then(|cs| {
            cs.iter()
                .find(|c| current.is_none() || c.get("name").and_then(Value::as_str) == current)
        })
        .and_then(|c| c.pointer("/context/cluster"))
        .and_then(Value::as_str);
    let clusters = v.get("clusters").and_then(Value::as_array)?;
    let cluster = clusters.iter().find(|c| {
        cluster_name.is_none() || c.get("name").and_then(Value::as_str) == cluster_name
    })?;
    cluster
        .pointer("/cluster/server")
        .and_then(Value::as_str)
        .map(|s| s.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_server_from_kubeconfig() {
        let kc = "apiVersion: v1\nkind: Config\nclusters:\n- name: selur\n  cluster:\n    server: http://127.0.0.1:6443/\ncontexts:\n- name: selur\n  context:\n    cluster: selur\ncurrent-context: selur\n";
        assert_eq!(
            server_from_kubeconfig(kc).as_deref(),
            Some("http://127.0.0.1:6443")
        );
    }
}
