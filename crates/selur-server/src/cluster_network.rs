//! Publishes the cluster's network settings where agents read them: the
//! ConfigMap [`selur_api::network::CLUSTER_NETWORK_CONFIGMAP`], written at
//! every start so a changed setting reaches agents that start afterwards.

use serde_json::json;

use selur_api::network::{ClusterNetwork, CLUSTER_NETWORK_CONFIGMAP};

use crate::registry::Registry;
use crate::status::ApiResult;

/// Create or update the settings ConfigMap.
pub async fn publish(registry: &Registry, network: &ClusterNetwork) -> ApiResult<()> {
    let Some(kind) = selur_api::kinds::by_api_version_kind("v1", "ConfigMap") else {
        return Ok(());
    };
    let (ns, name) = CLUSTER_NETWORK_CONFIGMAP;
    let data = network.to_config_data();
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "selur"}},
        "data": data});
    match registry.create(kind, Some(ns), body, false).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => registry
            .merge(
                kind,
                Some(ns),
                name,
                &json!({"data": data}),
                crate::registry::Subresource::Main,
            )
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    }
}
