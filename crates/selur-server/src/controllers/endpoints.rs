//! The endpoints controller: for every Service with a selector, the
//! `discovery.k8s.io/v1` EndpointSlices (addressType IPv6, labelled
//! `kubernetes.io/service-name` and managed-by [`MANAGED_BY`], owned by the
//! Service) and the legacy v1 Endpoints (same name as the Service) listing
//! the matching pods' IPv6 addresses, as Kubernetes' endpointslice and
//! endpoints controllers compute them:
//!
//! - pods without an IPv6 podIP and finished pods are left out;
//! - slice conditions: `serving` = pod Ready, `terminating` = being
//!   deleted, `ready` = serving and not terminating (always true with
//!   `publishNotReadyAddresses`); terminating pods stay in slices but leave
//!   the Endpoints (unless `publishNotReadyAddresses`);
//! - ports are resolved per pod (a named targetPort is looked up in the
//!   pod's container ports; a pod without it lacks that port), and pods
//!   resolving to different port sets go to different slices (at most
//!   [`MAX_PER_SLICE`] endpoints a slice).
//!
//! One pass (`run_loop`) observes all Services, pods, slices and Endpoints,
//! computes what should be, and writes only what differs. Services without
//! a selector are left alone (user-managed slices), except that slices this
//! controller wrote for them earlier are removed. A deleted Service's slices
//! and Endpoints go with it through their ownerReference (garbage
//! collector). The Endpoints carry that ownerReference too, which
//! Kubernetes does not set; here it saves a second deletion path.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use serde_json::{json, Map, Value};

use selur_store::Event;

use super::kind;
use crate::registry::{decode_kv, prefix, DeleteOptions, Registry};
use crate::services::{normalized, update_if_changed};
use crate::status::ApiResult;

/// The `endpointslice.kubernetes.io/managed-by` value of the slices written here.
pub const MANAGED_BY: &str = "endpointslice-controller.selur.io";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Kubernetes' default `--max-endpoints-per-slice`.
pub const MAX_PER_SLICE: usize = 100;

const WATCHED: [&str; 4] = [
    "/registry/core/services/",
    "/registry/core/pods/",
    "/registry/core/endpoints/",
    "/registry/discovery.k8s.io/endpointslices/",
];

/// Changes to Services, pods, slices and Endpoints start a pass.
pub fn relevant(ev: &Event) -> bool {
    WATCHED.iter().any(|p| ev.kv.key.starts_with(p))
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The Service's selector, when it has a non-empty one.
pub fn selector(svc: &Value) -> Option<&Map<String, Value>> {
    if s(svc, "/spec/type") == "ExternalName" {
        return None;
    }
    svc.pointer("/spec/selector")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
}

fn matches(sel: &Map<String, Value>, pod: &Value) -> bool {
    let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
    sel.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The pod's IPv6 address (the first of `status.podIPs`, else `status.podIP`).
pub fn pod_ipv6(pod: &Value) -> Option<Ipv6Addr> {
    let listed = pod
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("ip").and_then(Value::as_str));
    listed
        .chain(std::iter::once(s(pod, "/status/podIP")))
        .find_map(|ip| ip.parse::<Ipv6Addr>().ok())
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True")
        })
}

fn terminating(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_some()
}

fn finished(pod: &Value) -> bool {
    matches!(s(pod, "/status/phase"), "Succeeded" | "Failed")
}

/// The Service's ports as this pod serves them: `{name, port, protocol}`
/// (plus `appProtocol`), a named targetPort looked up in the pod's
/// container ports (a pod without it lacks that port).
pub fn resolve_ports(svc: &Value, pod: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        let number = match p.get("targetPort") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(name)) => match name.parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => container_port(pod, name, protocol),
            },
            _ => p.get("port").and_then(Value::as_i64),
        };
        let Some(number) = number else { continue };
        let mut port = json!({
            "name": p.get("name").and_then(Value::as_str).unwrap_or(""),
            "port": number,
            "protocol": protocol,
        });
        if let Some(ap) = p.get("appProtocol") {
            port["appProtocol"] = ap.clone();
        }
        out.push(port);
    }
    out
}

fn container_port(pod: &Value, name: &str, protocol: &str) -> Option<i64> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)?
        .iter()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|p| {
            p.get("name").and_then(Value::as_str) == Some(name)
                && p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == protocol
        })
        .and_then(|p| p.get("containerPort").and_then(Value::as_i64))
}

fn target_ref(pod: &Value) -> Value {
    json!({"kind": "Pod", "namespace": s(pod, "/metadata/namespace"),
           "name": s(pod, "/metadata/name"), "uid": s(pod, "/metadata/uid")})
}

fn pod_hostname<'a>(svc: &Value, pod: &'a Value) -> Option<&'a str> {
    let h = s(pod, "/spec/hostname");
    (!h.is_empty() && s(pod, "/spec/subdomain") == s(svc, "/metadata/name")).then_some(h)
}

/// One desired EndpointSlice: its ports and endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceContent {
    pub ports: Vec<Value>,
    pub endpoints: Vec<Value>,
}

/// The slices a Service should have, given the pods of its namespace
/// (pods sorted by name, so the result is stable). A Service with no
/// endpoints has one empty slice, as in Kubernetes.
pub fn desired_slices(svc: &Value, pods: &[Value]) -> Vec<SliceContent> {
    let Some(sel) = selector(svc) else {
        return Vec::new();
    };
    let publish = svc
        .pointer("/spec/publishNotReadyAddresses")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut groups: BTreeMap<String, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for pod in pods.iter().filter(|p| matches(sel, p) && !finished(p)) {
        let Some(ip) = pod_ipv6(pod) else { continue };
        let serving = pod_ready(pod);
        let term = terminating(pod);
        let mut ep = json!({
            "addresses": [ip.to_string()],
            "conditions": {"ready": publish || (serving && !term), "serving": serving, "terminating": term},
            "targetRef": target_ref(pod),
        });
        if let Some(h) = pod_hostname(svc, pod) {
            ep["hostname"] = json!(h);
        }
        let node = s(pod, "/spec/nodeName");
        if !node.is_empty() {
            ep["nodeName"] = json!(node);
        }
        let ports = resolve_ports(svc, pod);
        let key = Value::Array(ports.clone()).to_string();
        groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(ep);
    }
    let mut out = Vec::new();
    for (_, (ports, eps)) in groups {
        for chunk in eps.chunks(MAX_PER_SLICE) {
            out.push(SliceContent {
                ports: ports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
    }
    if out.is_empty() {
        out.push(SliceContent {
            ports: Vec::new(),
            endpoints: Vec::new(),
        });
    }
    out
}

/// The legacy Endpoints `subsets`: per port set, ready `addresses` and
/// `notReadyAddresses`, sorted by IP. Terminating pods are left out unless
/// the Service publishes not-ready addresses.
pub fn desired_subsets(svc: &Value, pods: &[Value]) -> Vec<Value> {
    let Some(sel) = selector(svc) else {
        return Vec::new();
    };
    let publish = svc
        .pointer("/spec/publishNotReadyAddresses")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    type Group = (Vec<Value>, Vec<(String, Value)>, Vec<(String, Value)>);
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods.iter().filter(|p| matches(sel, p) && !finished(p)) {
        let Some(ip) = pod_ipv6(pod) else { continue };
        if terminating(pod) && !publish {
            continue;
        }
        let mut addr = json!({"ip": ip.to_string(), "targetRef": target_ref(pod)});
        if let Some(h) = pod_hostname(svc, pod) {
            addr["hostname"] = json!(h);
        }
        let node = s(pod, "/spec/nodeName");
        if !node.is_empty() {
            addr["nodeName"] = json!(node);
        }
        let ports: Vec<Value> = resolve_ports(svc, pod)
            .into_iter()
            .map(|mut p| {
                if p.get("name").and_then(Value::as_str) == Some("") {
                    if let Some(o) = p.as_object_mut() {
                        o.remove("name");
                    }
                }
                p
            })
            .collect();
        let key = Value::Array(ports.clone()).to_string();
        let g = groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if publish || pod_ready(pod) {
            g.1.push((ip.to_string(), addr));
        } else {
            g.2.push((ip.to_string(), addr));
        }
    }
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(|a, b| a.0.cmp(&b.0));
            not_ready.sort_by(|a, b| a.0.cmp(&b.0));
            let mut subset = json!({});
            if !ready.is_empty() {
                subset["addresses"] = Value::Array(ready.into_iter().map(|a| a.1).collect());
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] =
                    Value::Array(not_ready.into_iter().map(|a| a.1).collect());
            }
            if !ports.is_empty() {
                subset["ports"] = Value::Array(ports);
            }
            subset
        })
        .collect()
}

fn owner(svc: &Value) -> Value {
    json!([{"apiVersion": "v1", "kind": "Service", "name": s(svc, "/metadata/name"),
            "uid": s(svc, "/metadata/uid"), "controller": true, "blockOwnerDeletion": true}])
}

fn slice_object(svc: &Value, c: &SliceContent) -> Value {
    let mut labels = svc
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), json!(s(svc, "/metadata/name")));
    labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY));
    let mut obj = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": s(svc, "/metadata/namespace"),
                     "generateName": format!("{}-", s(svc, "/metadata/name")),
                     "labels": labels, "ownerReferences": owner(svc)},
        "addressType": "IPv6",
        "endpoints": c.endpoints,
    });
    if !c.ports.is_empty() {
        obj["ports"] = json!(c.ports);
    }
    obj
}

fn endpoints_object(svc: &Value, subsets: Vec<Value>) -> Value {
    let mut obj = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"namespace": s(svc, "/metadata/namespace"), "name": s(svc, "/metadata/name"),
                     "ownerReferences": owner(svc)},
    });
    if let Some(l) = svc.pointer("/metadata/labels") {
        obj["metadata"]["labels"] = l.clone();
    }
    if !subsets.is_empty() {
        obj["subsets"] = Value::Array(subsets);
    }
    obj
}

fn owned_by(obj: &Value, uid: &str) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|rs| rs.iter().any(|r| s(r, "/uid") == uid))
}

const SLICE_FIELDS: [&str; 3] = ["addressType", "endpoints", "ports"];

/// One pass over every Service.
pub async fn pass(reg: Registry) -> ApiResult<()> {
    let svc_kind = kind("services")?;
    let pod_kind = kind("pods")?;
    let slice_kind = kind("endpointslices")?;
    let ep_kind = kind("endpoints")?;
    // Services first: a slice written for a Service created after this
    // read is still seen below and left alone.
    let (services, _) = reg.list_all(&prefix(svc_kind, None)).await?;
    // Pods are most of what a pass would read: skip them while no Service
    // selects any (a cluster without Services pays nothing per pod write).
    let pod_kvs = if services
        .iter()
        .any(|kv| super::contains(&kv.value, b"\"selector\""))
    {
        reg.list_all(&prefix(pod_kind, None)).await?.0
    } else {
        Vec::new()
    };
    let (slice_kvs, _) = reg.list_all(&prefix(slice_kind, None)).await?;
    let (ep_kvs, _) = reg.list_all(&prefix(ep_kind, None)).await?;
    let mut pods: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for kv in &pod_kvs {
        let p = decode_kv(kv)?;
        pods.entry(s(&p, "/metadata/namespace").to_string())
            .or_default()
            .push(p);
    }
    let mut slices: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for kv in &slice_kvs {
        let sl = decode_kv(kv)?;
        if s(
            &sl,
            &format!("/metadata/labels/{}", MANAGED_BY_LABEL.replace('/', "~1")),
        ) != MANAGED_BY
        {
            continue;
        }
        let svc_name = s(
            &sl,
            &format!("/metadata/labels/{}", SERVICE_NAME_LABEL.replace('/', "~1")),
        );
        slices
            .entry((
                s(&sl, "/metadata/namespace").to_string(),
                svc_name.to_string(),
            ))
            .or_default()
            .push(sl);
    }
    let mut eps: BTreeMap<(String, String), Value> = BTreeMap::new();
    for kv in &ep_kvs {
        let e = decode_kv(kv)?;
        eps.insert(
            (
                s(&e, "/metadata/namespace").to_string(),
                s(&e, "/metadata/name").to_string(),
            ),
            e,
        );
    }
    for kv in &services {
        let svc = decode_kv(kv)?;
        if svc.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let ns = s(&svc, "/metadata/namespace").to_string();
        let name = s(&svc, "/metadata/name").to_string();
        let key = (ns.clone(), name.clone());
        let ns_pods = pods.get(&ns).map(Vec::as_slice).unwrap_or_default();
        let existing = slices.remove(&key).unwrap_or_default();
        let current_eps = eps.get(&key);
        if let Err(e) = reconcile(&reg, &svc, ns_pods, existing, current_eps).await {
            tracing::warn!(namespace = %ns, service = %name, error = %e, "endpoints not updated");
        }
    }
    Ok(())
}

async fn reconcile(
    reg: &Registry,
    svc: &Value,
    pods: &[Value],
    mut existing: Vec<Value>,
    current_eps: Option<&Value>,
) -> ApiResult<()> {
    let slice_kind = kind("endpointslices")?;
    let ep_kind = kind("endpoints")?;
    let ns = s(svc, "/metadata/namespace");
    let uid = s(svc, "/metadata/uid");
    // Slices of an earlier Service of the same name belong to the GC.
    existing.retain(|sl| owned_by(sl, uid));
    existing.sort_by(|a, b| s(a, "/metadata/name").cmp(s(b, "/metadata/name")));
    let with_selector = selector(svc).is_some();

    for content in desired_slices(svc, pods) {
        let want = slice_object(svc, &content);
        // Prefer a slice that has these ports already (fewer changes).
        let wanted_ports = normalized(&want).and_then(|w| w.get("ports").cloned());
        let pick = existing
            .iter()
            .position(|sl| normalized(sl).and_then(|v| v.get("ports").cloned()) == wanted_ports)
            .or((!existing.is_empty()).then_some(0));
        match pick {
            Some(i) => {
                let stored = existing.remove(i);
                update_if_changed(reg, slice_kind, &stored, &want, &SLICE_FIELDS).await?;
            }
            None => {
                reg.create(slice_kind, Some(ns), want, false).await?;
            }
        }
    }
    for extra in existing {
        let name = s(&extra, "/metadata/name");
        match reg
            .delete(slice_kind, Some(ns), name, &DeleteOptions::default())
            .await
        {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }

    match (with_selector, current_eps) {
        (true, Some(stored)) => {
            let want = endpoints_object(svc, desired_subsets(svc, pods));
            update_if_changed(reg, ep_kind, stored, &want, &["subsets"]).await?;
        }
        (true, None) => {
            let want = endpoints_object(svc, desired_subsets(svc, pods));
            match reg.create(ep_kind, Some(ns), want, false).await {
                Ok(_) => {}
                // Written meanwhile: the next pass compares.
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        // The selector went away: Endpoints this controller wrote go.
        (false, Some(stored)) if owned_by(stored, uid) => {
            let name = s(stored, "/metadata/name");
            match reg
                .delete(ep_kind, Some(ns), name, &DeleteOptions::default())
                .await
            {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        (false, _) => {}
    }
    Ok(())
}

#[cfg(test)]
#[path = "endpoints_tests.rs"]
mod tests;
