//! Service allocations: a clusterIP from the Service range and nodePorts
//! from 30000-32767, each held by one store key (`/selur/allocations/...`)
//! that is created with a "must not exist" compare in the Service's own
//! create (or update) transaction and deleted in the transaction that
//! removes the Service. Two Services can therefore never commit the same
//! address or port, across concurrent creates and server restarts (the keys
//! are as durable as the Services). What a removal path did not free (a
//! Service finalized by a controller's write, older data) is put right by
//! [`repair`], which frees keys whose Service is gone and claims keys for
//! Services that hold a value without one.
//!
//! A free value is picked at random and checked with one read (a few tries),
//! so a create costs O(1) reads whatever the number of Services; only a
//! nearly full range falls back to one scan of the keys for the lowest free
//! value.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::sync::Arc;

use rand::Rng;
use serde_json::{json, Value};

use selur_api::error::FieldError;
use selur_api::kinds::ResourceKind;
use selur_api::network::Ipv6Cidr;
use selur_api::TypedObject;
use selur_store::{Compare, Op, Store};

use crate::admission::{AdmissionRequest, Allocator, Charge, Mutator};
use crate::registry::{prefix, Registry};
use crate::status::{ApiError, ApiResult};

/// Where allocated Service IPs are kept, one key per address.
pub const IP_PREFIX: &str = "/selur/allocations/serviceips/";
/// Where allocated nodePorts are kept, one key per port.
pub const PORT_PREFIX: &str = "/selur/allocations/nodeports/";
/// Kubernetes' default `--service-node-port-range`.
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// Offsets from the Service range's base never handed out at random: the
/// network address, the `kubernetes` Service (base+1) and cluster DNS
/// (base+10). The last two may still be asked for explicitly.
const RESERVED: [u128; 3] = [0, 1, 10];
/// The `default/kubernetes` Service's offset.
pub const KUBERNETES_OFFSET: u128 = 1;
/// The cluster DNS Service's offset (`kube-system/kube-dns`).
pub const DNS_OFFSET: u128 = 10;
/// Random picks tried before scanning for the lowest free value.
const RANDOM_TRIES: usize = 8;

pub fn ip_key(ip: Ipv6Addr) -> String {
    format!("{IP_PREFIX}{ip}")
}

pub fn port_key(port: u16) -> String {
    format!("{PORT_PREFIX}{port}")
}

fn is_service(kind: &ResourceKind) -> bool {
    kind.group.is_empty() && kind.kind == "Service"
}

fn service_type(svc: &Value) -> &str {
    svc.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

/// Whether the Service gets a virtual IP (not ExternalName, not headless).
pub fn needs_cluster_ip(svc: &Value) -> bool {
    service_type(svc) != "ExternalName"
        && svc.pointer("/spec/clusterIP").and_then(Value::as_str) != Some("None")
}

/// Whether the Service's ports get nodePorts.
pub fn needs_node_ports(svc: &Value) -> bool {
    match service_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => {
            svc.pointer("/spec/allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                != Some(false)
        }
        _ => false,
    }
}

/// What a stored Service holds: its clusterIP (when inside the range) and
/// its nodePorts (when its type has them).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Held {
    pub ip: Option<Ipv6Addr>,
    pub ports: BTreeSet<u16>,
}

pub fn held(range: &Ipv6Cidr, svc: &Value) -> Held {
    let ip = needs_cluster_ip(svc)
        .then(|| svc.pointer("/spec/clusterIP").and_then(Value::as_str))
        .flatten()
        .and_then(|s| s.parse::<Ipv6Addr>().ok())
        .filter(|ip| range.contains(*ip) && *ip != range.addr());
    let ports = if needs_node_ports(svc) {
        node_ports(svc)
            .into_iter()
            .flatten()
            .filter(|p| NODE_PORTS.contains(p))
            .collect()
    } else {
        BTreeSet::new()
    };
    Held { ip, ports }
}

/// Each port's nodePort (`None` when unset or 0).
fn node_ports(svc: &Value) -> Vec<Option<u16>> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    p.get("nodePort")
                        .and_then(Value::as_u64)
                        .and_then(|n| u16::try_from(n).ok())
                        .filter(|n| *n != 0)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The allocator of Service IPs and nodePorts (an admission [`Allocator`]).
pub struct ServiceAllocator {
    store: Arc<dyn Store>,
    range: Ipv6Cidr,
}

impl ServiceAllocator {
    pub fn new(store: Arc<dyn Store>, range: Ipv6Cidr) -> Self {
        Self { store, range }
    }

    fn size(&self) -> u128 {
        1u128
            .checked_shl(128 - u32::from(self.range.prefix()))
            .unwrap_or(u128::MAX)
    }

    async fn free(&self, key: &str) -> ApiResult<bool> {
        Ok(self.store.get(key).await?.is_none())
    }

    /// A free address: random ones first, then the lowest free one.
    async fn pick_ip(&self) -> ApiResult<Ipv6Addr> {
        let size = self.size();
        for _ in 0..RANDOM_TRIES {
            let off = rand::rng().random_range(0..size);
            if RESERVED.contains(&off) {
                continue;
            }
            if let Some(ip) = self.range.nth(off) {
                if self.free(&ip_key(ip)).await? {
                    return Ok(ip);
                }
            }
        }
        let used: BTreeSet<u128> = self
            .store
            .list(IP_PREFIX, None, 0)
            .await?
            .items
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(IP_PREFIX)?.parse::<Ipv6Addr>().ok())
            .map(u128::from)
            .collect();
        let base = u128::from(self.range.addr());
        (0..size)
            .filter(|off| !RESERVED.contains(off) && !used.contains(&(base + off)))
            .find_map(|off| self.range.nth(off))
            .ok_or_else(|| ApiError::internal("failed to allocate a serviceIP: range is full"))
    }

    /// A free nodePort not in `exclude`: random ones first, then the lowest free one.
    async fn pick_port(&self, exclude: &BTreeSet<u16>) -> ApiResult<u16> {
        for _ in 0..RANDOM_TRIES {
            let p = rand::rng().random_range(NODE_PORTS);
            if !exclude.contains(&p) && self.free(&port_key(p)).await? {
                return Ok(p);
            }
        }
        let used: BTreeSet<u16> = self
            .store
            .list(PORT_PREFIX, None, 0)
            .await?
            .items
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(PORT_PREFIX)?.parse().ok())
            .collect();
        NODE_PORTS
            .into_iter()
            .find(|p| !used.contains(p) && !exclude.contains(p))
            .ok_or_else(|| {
                ApiError::internal("failed to allocate a nodePort: range is full".to_string())
            })
    }
}

fn holder(svc: &Value) -> Vec<u8> {
    json!({
        "kind": "Service",
        "namespace": str_at(svc, "/metadata/namespace"),
        "name": str_at(svc, "/metadata/name"),
        "uid": str_at(svc, "/metadata/uid"),
    })
    .to_string()
    .into_bytes()
}

fn claim(charge: &mut Charge, key: String, value: Vec<u8>) {
    charge.compares.push(Compare::absent(key.clone()));
    charge.ops.push(Op::Put { key, value });
}

#[async_trait::async_trait]
impl Allocator for ServiceAllocator {
    async fn allocate(&self, req: &AdmissionRequest<'_>, svc: &mut Value) -> ApiResult<Charge> {
        let mut charge = Charge::default();
        if !is_service(req.kind) {
            return Ok(charge);
        }
        let old = match req.old {
            Some(o) => Some(
                o.to_value()
                    .map_err(|e| ApiError::internal(e.to_string()))?,
            ),
            None => None,
        };
        let old_held = old
            .as_ref()
            .map(|o| held(&self.range, o))
            .unwrap_or_default();
        let value = holder(svc);
        let mut errs = Vec::new();

        // The clusterIP.
        let mut new_ip = None;
        if needs_cluster_ip(svc) {
            let mut asked = str_at(svc, "/spec/clusterIP").to_string();
            if asked.is_empty() {
                asked = str_at(svc, "/spec/clusterIPs/0").to_string();
            }
            let ip = if asked.is_empty() {
                let ip = self.pick_ip().await?;
                claim(&mut charge, ip_key(ip), value.clone());
                Some(ip)
            } else {
                match asked.parse::<Ipv6Addr>() {
                    // Validation refused anything else already.
                    Err(_) => None,
                    Ok(ip) if old_held.ip == Some(ip) => Some(ip),
                    Ok(ip) if !self.range.contains(ip) || ip == self.range.addr() => {
                        errs.push(FieldError::invalid(
                            "spec.clusterIP",
                            format!("{asked:?}"),
                            format!(
                                "provided IP is not in the valid range. The range of valid IPs is {}",
                                self.range
                            ),
                        ));
                        None
                    }
                    Ok(ip) if !self.free(&ip_key(ip)).await? => {
                        errs.push(FieldError::invalid(
                            "spec.clusterIP",
                            format!("{asked:?}"),
                            "provided IP is already allocated",
                        ));
                        None
                    }
                    Ok(ip) => {
                        claim(&mut charge, ip_key(ip), value.clone());
                        Some(ip)
                    }
                }
            };
            if let Some(ip) = ip {
                svc["spec"]["clusterIP"] = json!(ip.to_string());
                svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
                new_ip = Some(ip);
            }
        } else if str_at(svc, "/spec/clusterIP") == "None" {
            svc["spec"]["clusterIPs"] = json!(["None"]);
        }
        if let Some(old_ip) = old_held.ip.filter(|o| Some(*o) != new_ip) {
            charge.ops.push(Op::Delete {
                key: ip_key(old_ip),
            });
        }

        // The nodePorts.
        let mut kept = BTreeSet::new();
        if needs_node_ports(svc) {
            for (i, np) in node_ports(svc).into_iter().enumerate() {
                let path = format!("spec.ports[{i}].nodePort");
                let port = match np {
                    Some(p) if old_held.ports.contains(&p) || kept.contains(&p) => p,
                    Some(p) if !NODE_PORTS.contains(&p) => {
                        errs.push(FieldError::invalid(
                            path,
                            p,
                            format!(
                                "provided port is not in the valid range. The range of valid ports is {}-{}",
                                NODE_PORTS.start(),
                                NODE_PORTS.end()
                            ),
                        ));
                        continue;
                    }
                    Some(p) if !self.free(&port_key(p)).await? => {
                        errs.push(FieldError::invalid(
                            path,
                            p,
                            "provided port is already allocated",
                        ));
                        continue;
                    }
                    Some(p) => {
                        claim(&mut charge, port_key(p), value.clone());
                        p
                    }
                    None => {
                        let exclude: BTreeSet<u16> = kept.union(&old_held.ports).copied().collect();
                        let p = self.pick_port(&exclude).await?;
                        claim(&mut charge, port_key(p), value.clone());
                        svc["spec"]["ports"][i]["nodePort"] = json!(p);
                        p
                    }
                };
                kept.insert(port);
            }
        } else if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            // ClusterIP (and ExternalName) Services have no nodePorts: a
            // NodePort Service changed to ClusterIP gives its ports back.
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.remove("nodePort");
            }
        }
        for p in old_held.ports.difference(&kept) {
            charge.ops.push(Op::Delete { key: port_key(*p) });
        }

        if !errs.is_empty() {
            return Err(ApiError::invalid(
                req.kind,
                str_at(svc, "/metadata/name"),
                &errs,
            ));
        }
        Ok(charge)
    }

    fn release(&self, kind: &ResourceKind, svc: &Value) -> Vec<Op> {
        if !is_service(kind) {
            return Vec::new();
        }
        let h = held(&self.range, svc);
        h.ip.map(ip_key)
            .into_iter()
            .chain(h.ports.iter().map(|p| port_key(*p)))
            .map(|key| Op::Delete { key })
            .collect()
    }
}

/// On an update, a Service keeps its clusterIP and nodePorts when the new
/// body leaves them out (a `PUT` of the manifest as written), as
/// Kubernetes does; the allocator then sees them as already held.
pub struct KeepAllocated;

impl Mutator for KeepAllocated {
    fn mutate(&self, req: &AdmissionRequest<'_>, obj: &mut TypedObject) -> ApiResult<()> {
        let (Some(TypedObject::Service(old)), TypedObject::Service(new)) = (req.old, obj) else {
            return Ok(());
        };
        let (Some(os), Some(ns)) = (old.spec.as_ref(), new.spec.as_mut()) else {
            return Ok(());
        };
        if ns.type_.as_deref() != Some("ExternalName")
            && ns.cluster_ip.as_deref().unwrap_or("").is_empty()
        {
            ns.cluster_ip = os.cluster_ip.clone();
            if ns.cluster_ips.as_ref().is_none_or(Vec::is_empty) {
                ns.cluster_ips = os.cluster_ips.clone();
            }
        }
        let old_ports = os.ports.as_deref().unwrap_or_default();
        for p in ns.ports.iter_mut().flatten() {
            if p.node_port.unwrap_or(0) != 0 {
                continue;
            }
            let same = old_ports.iter().find(|o| {
                (o.port == p.port && o.protocol == p.protocol)
                    || (o.name.is_some() && o.name == p.name)
            });
            if let Some(np) = same.and_then(|o| o.node_port).filter(|n| *n != 0) {
                p.node_port = Some(np);
            }
        }
        Ok(())
    }
}

/// Make the allocation keys agree with the Services: free keys whose
/// Service is gone (or no longer holds the value), and claim keys for
/// Services that hold a value without one (data written before keys
/// existed). The keys are listed before the Services, so a Service created
/// in between (key and Service in one transaction) is seen with its key;
/// every free compares on the key's revision, so a key taken again
/// meanwhile is left alone.
pub async fn repair(reg: Registry, range: Ipv6Cidr) -> ApiResult<()> {
    let mut keys = reg.store.list(IP_PREFIX, None, 0).await?.items;
    keys.extend(reg.store.list(PORT_PREFIX, None, 0).await?.items);
    let svc_kind = crate::controllers::kind("services")?;
    let (services, _) = reg.list_all(&prefix(svc_kind, None)).await?;
    let mut want: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    for kv in &services {
        let svc = crate::registry::decode_kv(kv)?;
        let h = held(&range, &svc);
        let uid = str_at(&svc, "/metadata/uid").to_string();
        for key in
            h.ip.map(ip_key)
                .into_iter()
                .chain(h.ports.iter().map(|p| port_key(*p)))
        {
            if let Some((other, _)) = want.get(&key) {
                tracing::warn!(key = %key, service = %str_at(&svc, "/metadata/name"), holder = %other,
                    "two Services hold the same allocation; left as it is");
                continue;
            }
            want.insert(key, (uid.clone(), holder(&svc)));
        }
    }
    let mut present = BTreeSet::new();
    for kv in &keys {
        let uid = serde_json::from_slice::<Value>(&kv.value)
            .ok()
            .and_then(|v| v.get("uid").and_then(Value::as_str).map(String::from))
            .unwrap_or_default();
        match want.get(&kv.key) {
            Some((u, _)) if *u == uid => {
                present.insert(kv.key.clone());
            }
            _ => {
                if reg.remove_at(&kv.key, kv.mod_revision).await? {
                    tracing::info!(key = %kv.key, "freed a Service allocation whose Service is gone");
                }
            }
        }
    }
    for (key, (_, value)) in want {
        if present.contains(&key) {
            continue;
        }
        let txn = selur_store::Txn::new()
            .when(Compare::absent(key.clone()))
            .put(key.clone(), value);
        if reg.store.txn(txn).await?.succeeded {
            tracing::info!(key = %key, "recorded a Service allocation that had no key");
        }
    }
    Ok(())
}

/// Service writes start a repair pass (deletes whose allocations a
/// controller's write left behind).
pub fn relevant(ev: &selur_store::Event) -> bool {
    ev.kv.key.starts_with("/registry/core/services/")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use selur_store::{SqliteOptions, SqliteStore, Txn};

    use super::*;
    use crate::admission::Admission;
    use crate::clock::SystemClock;

    async fn registry(dir: &std::path::Path, range: Ipv6Cidr) -> Registry {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir, SqliteOptions::default()).expect("store"));
        let admission = Admission {
            allocators: vec![Arc::new(ServiceAllocator::new(store.clone(), range))],
            ..Admission::default()
        };
        let reg = Registry::new(store, admission, Arc::new(SystemClock));
        reg.ensure_namespace("default").await.expect("namespace");
        reg
    }

    #[test]
    fn held_values_are_those_inside_the_ranges_for_the_type() {
        let range: Ipv6Cidr = "fd01::/112".parse().unwrap();
        let svc = json!({"spec": {"type": "NodePort", "clusterIP": "fd01::5",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 81}]}});
        let h = held(&range, &svc);
        assert_eq!(h.ip, Some("fd01::5".parse().unwrap()));
        assert_eq!(h.ports, BTreeSet::from([30080]));
        let outside =
            json!({"spec": {"clusterIP": "fd02::5", "ports": [{"port": 80, "nodePort": 30080}]}});
        assert_eq!(held(&range, &outside), Held::default());
        let headless = json!({"spec": {"clusterIP": "None"}});
        assert_eq!(held(&range, &headless), Held::default());
    }

    #[tokio::test]
    async fn repair_frees_keys_of_gone_services_and_records_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let range: Ipv6Cidr = "fd01::/112".parse().unwrap();
        let reg = registry(dir.path(), range).await;
        let svc_kind = crate::controllers::kind("services").unwrap();
        let created = reg
            .create(
                svc_kind,
                Some("default"),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
                       "spec": {"ports": [{"port": 80}]}}),
                false,
            )
            .await
            .unwrap();
        let ip: Ipv6Addr = created["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(reg.store.get(&ip_key(ip)).await.unwrap().is_some());
        // A stray key (its Service gone without freeing it) and a lost one.
        let stray = ip_key("fd01::99".parse().unwrap());
        reg.store
            .txn(Txn::new().put(stray.clone(), br#"{"uid":"gone"}"#.to_vec()))
            .await
            .unwrap();
        reg.store.txn(Txn::new().delete(ip_key(ip))).await.unwrap();
        repair(reg.clone(), range).await.unwrap();
        assert!(
            reg.store.get(&stray).await.unwrap().is_none(),
            "stray key freed"
        );
        let kv = reg
            .store
            .get(&ip_key(ip))
            .await
            .unwrap()
            .expect("key recorded again");
        let v: Value = serde_json::from_slice(&kv.value).unwrap();
        assert_eq!(v["uid"], created["metadata"]["uid"]);
        assert_eq!(v["name"], "a");
    }
}
