//! What the scheduler needs to know about one pod, read once from the
//! `k8s-openapi` Pod: effective resource requests, host ports, node
//! selection, tolerations, anti-affinity terms, owner and images.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use k8s_openapi::api::core::v1::{
    Container, NodeSelector, Pod, PodAffinityTerm, ResourceRequirements, Toleration,
};
use selur_api::quantity;
use selur_api::selector::LabelSelector;

/// The label Kubernetes puts every node's name under (the only anti-affinity topology supported).
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// A string (layer digest, owner uid) reduced to 64 bits once, so scoring a
/// node compares integers instead of hashing long strings (a collision could
/// only nudge a score).
pub fn short_id(s: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Hasher for keys that already are hashes.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A set of [`short_id`]s.
pub type IdSet = HashSet<u64, BuildHasherDefault<IdHasher>>;
/// A map keyed by [`short_id`]s.
pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Amounts of resources: cpu in milli-cores, memory in bytes, anything else in milli-units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_milli: i64,
    pub memory: i64,
    pub other: BTreeMap<String, i64>,
}

impl Resources {
    /// From a Kubernetes resource map (`{cpu: 100m, memory: 64Mi}`); `pods` is left out.
    pub fn from_map(
        map: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    ) -> Self {
        let mut r = Resources::default();
        for (k, v) in map {
            let Ok(q) = quantity::parse(&v.0) else {
                continue;
            };
            match k.as_str() {
                "cpu" => r.cpu_milli = clamp(q.millis()),
                "memory" => r.memory = clamp(q.value()),
                "pods" => {}
                other => {
                    r.other.insert(other.to_string(), clamp(q.millis()));
                }
            }
        }
        r
    }

    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.cpu_milli,
            "memory" => self.memory,
            other => self.other.get(other).copied().unwrap_or(0),
        }
    }

    pub fn add(&mut self, o: &Resources) {
        self.cpu_milli = self.cpu_milli.saturating_add(o.cpu_milli);
        self.memory = self.memory.saturating_add(o.memory);
        for (k, v) in &o.other {
            let e = self.other.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.cpu_milli = self.cpu_milli.saturating_sub(o.cpu_milli);
        self.memory = self.memory.saturating_sub(o.memory);
        for (k, v) in &o.other {
            let e = self.other.entry(k.clone()).or_insert(0);
            *e = e.saturating_sub(*v);
        }
    }

    /// Each resource the larger of the two.
    pub fn max_with(&mut self, o: &Resources) {
        self.cpu_milli = self.cpu_milli.max(o.cpu_milli);
        self.memory = self.memory.max(o.memory);
        for (k, v) in &o.other {
            let e = self.other.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }
}

fn clamp(v: i128) -> i64 {
    v.clamp(0, i64::MAX as i128) as i64
}

/// One requested host port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    /// Empty, `0.0.0.0` or `::` mean every address.
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    fn wildcard(&self) -> bool {
        matches!(self.ip.as_str(), "" | "0.0.0.0" | "::")
    }
    /// Two ports collide when protocol and port match and either binds every address or both the same one.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        self.port == o.port
            && self.protocol == o.protocol
            && (self.wildcard() || o.wildcard() || self.ip == o.ip)
    }
}

/// A required anti-affinity term, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct AntiAffinityTerm {
    pub selector: LabelSelector,
    /// `None`: every namespace (an empty namespaceSelector).
    pub namespaces: Option<HashSet<String>>,
    pub topology_key: String,
}

impl AntiAffinityTerm {
    /// Does `other` (an existing pod) match this term?
    pub fn matches(&self, other: &PodInfo) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|ns| ns.contains(&other.namespace))
            && self.selector.matches(&other.labels)
    }
}

/// The scheduling-relevant view of a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// [`short_id`] of the controlling owner's uid (pods of one ReplicaSet, Job, ...), for spreading.
    pub owner: Option<u64>,
    /// Effective requests (containers summed, init containers by max, plus overhead).
    pub requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub node_selector: BTreeMap<String, String>,
    pub required_node_affinity: Option<NodeSelector>,
    pub tolerations: Vec<Toleration>,
    pub anti_affinity: Vec<AntiAffinityTerm>,
    /// Images of init and app containers, as written.
    pub images: Vec<String>,
    pub priority: Option<i32>,
    pub priority_class: Option<String>,
    pub scheduler_name: String,
    pub node_name: Option<String>,
    /// Succeeded or Failed: holds no resources any more.
    pub terminal: bool,
    pub deleting: bool,
    /// Creation time, Unix seconds (queue order among equals).
    pub created: i64,
}

fn requests_of(r: Option<&ResourceRequirements>) -> Resources {
    let Some(r) = r else {
        return Resources::default();
    };
    // Limits without requests: requests default to the limits (as API defaulting does).
    let mut map = r.limits.clone().unwrap_or_default();
    map.extend(r.requests.clone().unwrap_or_default());
    Resources::from_map(&map)
}

/// Kubernetes' effective pod requests: app containers and sidecars summed; each
/// regular init container runs alone beside the sidecars started before it, so
/// the pod needs the largest of those sums; plus the pod overhead.
pub fn effective_requests(
    containers: &[Container],
    init: &[Container],
    overhead: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Resources {
    let mut sum = Resources::default();
    for c in containers {
        sum.add(&requests_of(c.resources.as_ref()));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in init {
        let r = requests_of(c.resources.as_ref());
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            init_max.max_with(&sidecars);
        } else {
            let mut during = sidecars.clone();
            during.add(&r);
            init_max.max_with(&during);
        }
    }
    sum.add(&sidecars);
    sum.max_with(&init_max);
    if let Some(o) = overhead {
        sum.add(&Resources::from_map(o));
    }
    sum
}

fn anti_affinity_terms(pod: &Pod, namespace: &str) -> Vec<AntiAffinityTerm> {
    let terms: Vec<&PodAffinityTerm> = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    terms
        .into_iter()
        .map(|t| {
            // A term whose selector cannot be read matches nothing (validation refuses those).
            let selector = t
                .label_selector
                .as_ref()
                .and_then(|s| LabelSelector::from_k8s(s).ok())
                .unwrap_or(LabelSelector {
                    requirements: vec![selur_api::selector::Requirement::In(
                        String::new(),
                        Vec::new(),
                    )],
                });
            let all = t
                .namespace_selector
                .as_ref()
                .is_some_and(|s| s.match_labels.is_none() && s.match_expressions.is_none());
            let namespaces = if all {
                None
            } else {
                let listed: HashSet<String> = t.namespaces.iter().flatten().cloned().collect();
                Some(if listed.is_empty() {
                    HashSet::from([namespace.to_string()])
                } else {
                    listed
                })
            };
            AntiAffinityTerm {
                selector,
                namespaces,
                topology_key: t.topology_key.clone(),
            }
        })
        .collect()
}

impl PodInfo {
    /// Read the scheduling view of a pod.
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let spec = pod.spec.clone().unwrap_or_default();
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| short_id(&o.uid));
        let host_ports = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|h| h > 0))
            .map(|p| HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ip: p.host_ip.clone().unwrap_or_default(),
                port: p.host_port.unwrap_or(0),
            })
            .collect();
        let images = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .filter_map(|c| c.image.clone())
            .collect();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        PodInfo {
            anti_affinity: anti_affinity_terms(pod, &namespace),
            requests: effective_requests(
                &spec.containers,
                spec.init_containers.as_deref().unwrap_or(&[]),
                spec.overhead.as_ref(),
            ),
            namespace,
            name: meta.name.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            owner,
            host_ports,
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_node_affinity: spec
                .affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .clone()
                }),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            images,
            priority: spec.priority,
            priority_class: spec.priority_class_name.clone().filter(|s| !s.is_empty()),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .unwrap_or_else(|| super::SCHEDULER_NAME.into()),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            terminal: matches!(phase, Some("Succeeded") | Some("Failed")),
            deleting: meta.deletion_timestamp.is_some(),
            created: meta
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or_default(),
        }
    }
}
