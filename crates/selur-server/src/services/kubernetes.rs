//! The `default/kubernetes` Service, created (or brought up to date) at
//! every server start as the API server's reconciler does: clusterIP =
//! the Service range's base+1, port 443 named `https` whose targetPort is
//! the API server's port, and an Endpoints and an EndpointSlice (both named
//! `kubernetes`) listing the API server's IPv6 address. The Service has no
//! selector, so the endpoints controller leaves these alone.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use serde_json::{json, Value};

use selur_api::network::ClusterNetwork;

use super::alloc::KUBERNETES_OFFSET;
use super::update_if_changed;
use crate::controllers::kind;
use crate::registry::Registry;
use crate::status::{ApiError, ApiResult};

pub const NAMESPACE: &str = "default";
pub const NAME: &str = "kubernetes";

/// The address pods reach the API server at: the advertise address, else the
/// listen address when it is a specific, non-loopback IPv6 address. `Err`
/// says why there is none.
pub fn endpoint_address(
    listen: SocketAddr,
    advertise: Option<Ipv6Addr>,
) -> Result<Ipv6Addr, String> {
    if let Some(a) = advertise {
        return Ok(a);
    }
    match listen.ip() {
        IpAddr::V4(v4) => Err(format!(
            "the API server listens on IPv4 {v4} only and no IPv6 --advertise-address was given"
        )),
        IpAddr::V6(v6) if v6.is_unspecified() => Err(format!(
            "the API server listens on every address ({v6}); give --advertise-address to name the one pods should use"
        )),
        IpAddr::V6(v6) if v6.is_loopback() => Err(format!(
            "the API server listens on loopback {v6}, which pods cannot reach; give --advertise-address"
        )),
        IpAddr::V6(v6) => Ok(v6),
    }
}

/// Create or update the Service, its Endpoints and its EndpointSlice.
pub async fn ensure(
    reg: &Registry,
    net: &ClusterNetwork,
    api_port: u16,
    endpoint: Result<Ipv6Addr, String>,
) -> ApiResult<Ipv6Addr> {
    let ip = net
        .service_cidr
        .nth(KUBERNETES_OFFSET)
        .ok_or_else(|| ApiError::internal("the Service range has no base+1 address"))?;
    let svc_kind = kind("services")?;
    let port = json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}]);
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
        "spec": {"type": "ClusterIP", "clusterIP": ip.to_string(), "ports": port,
                 "sessionAffinity": "None"},
    });
    let held = match reg.get(svc_kind, Some(NAMESPACE), NAME).await {
        Ok(stored) => {
            let mut want = stored.clone();
            want["spec"]["ports"] = port.clone();
            want["metadata"]["labels"] = labels.clone();
            update_if_changed(reg, svc_kind, &stored, &want, &["spec"]).await?;
            stored
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Ipv6Addr>().ok())
        }
        Err(e) if e.code == 404 => {
            let created = reg.create(svc_kind, Some(NAMESPACE), svc, false).await?;
            created
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Ipv6Addr>().ok())
        }
        Err(e) => return Err(e),
    };
    let held = held.unwrap_or(ip);
    if held != ip {
        tracing::warn!(cluster_ip = %held, expected = %ip,
            "the kubernetes Service keeps its clusterIP from before the Service range changed");
    }

    let ep_port = json!({"name": "https", "port": api_port, "protocol": "TCP"});
    let (subsets, endpoints) = match &endpoint {
        Ok(addr) => (
            Some(json!([{"addresses": [{"ip": addr.to_string()}], "ports": [ep_port]}])),
            json!([{"addresses": [addr.to_string()], "conditions": {"ready": true, "serving": true, "terminating": false}}]),
        ),
        // The caller logs why (once, at start).
        Err(_) => (None, json!([])),
    };
    let mut eps = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
    });
    if let Some(s) = subsets {
        eps["subsets"] = s;
    }
    upsert(reg, "endpoints", eps, &["subsets"]).await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": "IPv6",
        "endpoints": endpoints,
        "ports": [ep_port],
    });
    upsert(
        reg,
        "endpointslices",
        slice,
        &["addressType", "endpoints", "ports"],
    )
    .await?;
    Ok(held)
}

/// Writes to the kubernetes Service or its endpoints start a pass (a
/// deleted or edited one is put back, as the API server's reconciler does).
pub fn relevant(ev: &selur_store::Event) -> bool {
    [
        "/registry/core/services/default/kubernetes",
        "/registry/core/endpoints/default/kubernetes",
        "/registry/discovery.k8s.io/endpointslices/default/kubernetes",
    ]
    .contains(&ev.kv.key.as_str())
}

async fn upsert(reg: &Registry, plural: &str, desired: Value, fields: &[&str]) -> ApiResult<()> {
    let k = kind(plural)?;
    match reg.get(k, Some(NAMESPACE), NAME).await {
        Ok(stored) => {
            update_if_changed(reg, k, &stored, &desired, fields).await?;
        }
        Err(e) if e.code == 404 => {
            reg.create(k, Some(NAMESPACE), desired, false).await?;
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_the_advertised_or_a_specific_ipv6_listen_address() {
        let v4: SocketAddr = "127.0.0.1:6443".parse().unwrap();
        let any: SocketAddr = "[::]:6443".parse().unwrap();
        let lo: SocketAddr = "[::1]:6443".parse().unwrap();
        let real: SocketAddr = "[fd00:1::5]:6443".parse().unwrap();
        let adv: Ipv6Addr = "fd00:1::9".parse().unwrap();
        assert!(endpoint_address(v4, None).unwrap_err().contains("IPv4"));
        assert!(endpoint_address(any, None).is_err());
        assert!(endpoint_address(lo, None).is_err());
        assert_eq!(
            endpoint_address(real, None).unwrap().to_string(),
            "fd00:1::5"
        );
        assert_eq!(endpoint_address(v4, Some(adv)).unwrap(), adv);
    }
}
