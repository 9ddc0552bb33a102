//! The scheduler's picture of the cluster: nodes with what their bound (or
//! assumed) pods use, and the image catalog. Built from the store, then kept
//! current from watch events and from the scheduler's own assumptions, so a
//! batch of placements never re-reads the store per pod.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};
use selur_api::types::Image;

use super::pod::{short_id, HostPort, IdMap, IdSet, PodInfo, Resources, HOSTNAME_LABEL};

/// Requests assumed for scoring when a pod gives none (kube-scheduler's non-zero defaults).
pub const DEFAULT_CPU_MILLI: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// One node and what is placed on it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: Arc<str>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Each taint's key and value, shared into rejection reasons without copying.
    pub taint_text: Vec<(Arc<str>, Arc<str>)>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub max_pods: i64,
    /// Sum of the requests of pods on the node.
    pub requested: Resources,
    /// cpu (milli) and memory with the non-zero defaults, for scoring.
    pub nonzero_requested: (i64, i64),
    pub pods: HashMap<String, Arc<PodInfo>>,
    pub host_ports: Vec<HostPort>,
    /// Pods per controlling owner ([`short_id`] of its uid).
    pub owners: IdMap<u32>,
    /// Pods on the node that carry required anti-affinity terms.
    pub anti_affinity_pods: usize,
    /// Image names and digests the node holds (its own report and the catalog).
    pub images: HashSet<String>,
    /// Layers the node holds (from the catalog), as [`short_id`]s.
    pub layers: IdSet,
    reported_images: Vec<String>,
}

impl NodeInfo {
    /// Read a Node object.
    pub fn from_node(node: &Node) -> Self {
        let mut n = NodeInfo::default();
        n.set_node(node);
        n
    }

    fn set_node(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        self.name = Arc::from(name.as_str());
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        self.labels.entry(HOSTNAME_LABEL.into()).or_insert(name);
        let spec = node.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.taint_text = self
            .taints
            .iter()
            .map(|t| {
                (
                    Arc::from(t.key.as_str()),
                    Arc::from(t.value.as_deref().unwrap_or("")),
                )
            })
            .collect();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let status = node.status.as_ref();
        let alloc = status
            .and_then(|s| s.allocatable.clone().or_else(|| s.capacity.clone()))
            .unwrap_or_default();
        self.allocatable = Resources::from_map(&alloc);
        self.max_pods = alloc
            .get("pods")
            .and_then(|q| selur_api::quantity::parse(&q.0).ok())
            .map(|q| q.value().clamp(0, i64::MAX as i128) as i64)
            .unwrap_or(110);
        self.reported_images = status
            .and_then(|s| s.images.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|i| i.names.iter().flatten().cloned())
            .collect();
    }

    fn add_pod(&mut self, key: &str, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.nonzero_requested.0 += nonzero(pod.requests.cpu_milli, DEFAULT_CPU_MILLI);
        self.nonzero_requested.1 += nonzero(pod.requests.memory, DEFAULT_MEMORY);
        self.host_ports.extend(pod.host_ports.iter().cloned());
        if let Some(o) = &pod.owner {
            *self.owners.entry(*o).or_insert(0) += 1;
        }
        if !pod.anti_affinity.is_empty() {
            self.anti_affinity_pods += 1;
        }
        self.pods.insert(key.to_string(), pod);
    }

    fn remove_pod(&mut self, key: &str) {
        let Some(pod) = self.pods.remove(key) else {
            return;
        };
        self.requested.sub(&pod.requests);
        self.nonzero_requested.0 -= nonzero(pod.requests.cpu_milli, DEFAULT_CPU_MILLI);
        self.nonzero_requested.1 -= nonzero(pod.requests.memory, DEFAULT_MEMORY);
        for p in &pod.host_ports {
            if let Some(i) = self.host_ports.iter().position(|x| x == p) {
                self.host_ports.swap_remove(i);
            }
        }
        if let Some(o) = &pod.owner {
            if let Some(c) = self.owners.get_mut(o) {
                *c = c.saturating_sub(1);
                if *c == 0 {
                    self.owners.remove(o);
                }
            }
        }
        if !pod.anti_affinity.is_empty() {
            self.anti_affinity_pods = self.anti_affinity_pods.saturating_sub(1);
        }
    }
}

fn nonzero(v: i64, default: i64) -> i64 {
    if v == 0 {
        default
    } else {
        v
    }
}

/// One catalog image, as the scheduler uses it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogImage {
    pub digest: String,
    pub names: Vec<String>,
    /// Layers as ([`short_id`], size in bytes).
    pub layers: Vec<(u64, u64)>,
    pub size: u64,
    /// `io.hyperpolymath.size-mb`, when the image carries it.
    pub size_mb_label: Option<f64>,
    pub nodes: Vec<String>,
}

impl CatalogImage {
    pub fn from_image(img: &Image) -> Self {
        CatalogImage {
            digest: img.spec.digest.clone(),
            names: img.spec.names.clone(),
            layers: img
                .spec
                .layers
                .iter()
                .map(|l| (short_id(&l.digest), l.size))
                .collect(),
            size: img.spec.size_bytes,
            size_mb_label: img
                .spec
                .labels
                .get("io.hyperpolymath.size-mb")
                .and_then(|s| s.trim().parse().ok()),
            nodes: img
                .status
                .as_ref()
                .map(|s| s.nodes.clone())
                .unwrap_or_default(),
        }
    }

    /// Size in bytes: the catalog's, else the size label (MB of 10^6 bytes).
    pub fn size_bytes(&self) -> Option<u64> {
        if self.size > 0 {
            return Some(self.size);
        }
        self.size_mb_label
            .filter(|m| *m >= 0.0)
            .map(|m| (m * 1e6) as u64)
    }
}

/// The image catalog by digest and by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub images: HashMap<String, CatalogImage>,
    by_name: HashMap<String, String>,
}

impl Catalog {
    pub fn upsert(&mut self, img: CatalogImage) {
        self.remove(&img.digest.clone());
        for n in &img.names {
            self.by_name.insert(n.clone(), img.digest.clone());
        }
        self.images.insert(img.digest.clone(), img);
    }

    pub fn remove(&mut self, digest: &str) {
        if let Some(old) = self.images.remove(digest) {
            for n in &old.names {
                if self.by_name.get(n).is_some_and(|d| d == digest) {
                    self.by_name.remove(n);
                }
            }
        }
    }

    /// The catalog entry for an image as a pod writes it (`name:tag` or `name@sha256:...`).
    pub fn resolve(&self, reference: &str) -> Option<&CatalogImage> {
        if let Some((_, digest)) = reference.split_once('@') {
            return self.images.get(digest);
        }
        let name = selur_registry::reference::normalize(reference).ok()?;
        self.by_name
            .get(&name)
            .or_else(|| self.by_name.get(reference))
            .and_then(|d| self.images.get(d))
    }
}

/// Nodes, placed pods and the catalog at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Sorted by name (deterministic order; the search start rotates instead).
    pub nodes: Vec<NodeInfo>,
    index: HashMap<Arc<str>, usize>,
    /// Pod key -> (node name, pod, assumed by the scheduler and not yet seen bound).
    bound: HashMap<String, (String, Arc<PodInfo>, bool)>,
    pub catalog: Catalog,
    /// Where the next search over nodes starts (rotated as kube-scheduler does).
    pub next_start: usize,
}

impl Snapshot {
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    fn reindex(&mut self) {
        self.index = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
    }

    /// Add or update a node, keeping what is placed on it.
    pub fn upsert_node(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(&i) = self.index.get(name.as_str()) {
            self.nodes[i].set_node(node);
            self.refresh_images(i);
            return;
        }
        let mut info = NodeInfo::from_node(node);
        for (key, (n, pod, _)) in &self.bound {
            if *n == name {
                info.add_pod(key, pod.clone());
            }
        }
        let pos = self
            .nodes
            .partition_point(|n| n.name.as_ref() < name.as_str());
        self.nodes.insert(pos, info);
        self.reindex();
        self.refresh_images(pos);
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(i) = self.index.get(name).copied() {
            self.nodes.remove(i);
            self.reindex();
        }
    }

    /// Record a pod as placed on `node` (bound, or `assumed` by the scheduler).
    pub fn place(&mut self, key: &str, node: &str, pod: Arc<PodInfo>, assumed: bool) {
        self.unplace(key);
        if let Some(&i) = self.index.get(node) {
            self.nodes[i].add_pod(key, pod.clone());
        }
        self.bound
            .insert(key.to_string(), (node.to_string(), pod, assumed));
    }

    /// Forget a placed pod (deleted, finished); returns whether it was placed.
    pub fn unplace(&mut self, key: &str) -> bool {
        let Some((node, _, _)) = self.bound.remove(key) else {
            return false;
        };
        if let Some(&i) = self.index.get(node.as_str()) {
            self.nodes[i].remove_pod(key);
        }
        true
    }

    /// Forget an assumption whose binding failed (not a placement seen in the store).
    pub fn forget_assumed(&mut self, key: &str) {
        if self.bound.get(key).is_some_and(|(_, _, assumed)| *assumed) {
            self.unplace(key);
        }
    }

    pub fn is_placed(&self, key: &str) -> bool {
        self.bound.contains_key(key)
    }

    /// The store now shows the pod bound where the scheduler assumed it:
    /// keep the placement, no longer as an assumption. False if it was not assumed there.
    pub fn confirm(&mut self, key: &str, node: &str) -> bool {
        match self.bound.get_mut(key) {
            Some((n, _, assumed)) if *assumed && n == node => {
                *assumed = false;
                true
            }
            _ => false,
        }
    }

    pub fn upsert_image(&mut self, img: CatalogImage) {
        self.catalog.upsert(img);
        self.refresh_all_images();
    }

    pub fn remove_image(&mut self, digest: &str) {
        self.catalog.remove(digest);
        self.refresh_all_images();
    }

    fn refresh_all_images(&mut self) {
        for i in 0..self.nodes.len() {
            self.refresh_images(i);
        }
    }

    /// Rebuild what node `i` holds from its own report and the catalog.
    fn refresh_images(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.images = node.reported_images.iter().cloned().collect();
        node.layers.clear();
        let name = node.name.clone();
        for img in self.catalog.images.values() {
            let held = img.nodes.iter().any(|n| n.as_str() == name.as_ref())
                || node.images.contains(&img.digest);
            if held {
                node.images.insert(img.digest.clone());
                node.images.extend(img.names.iter().cloned());
                node.layers.extend(img.layers.iter().map(|(d, _)| *d));
            }
        }
    }
}
