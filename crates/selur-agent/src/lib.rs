//! The Selur node agent: registers its Node with the API server and keeps it
//! current (capacity, labels, taints, images, Ready), renews its Lease as a
//! heartbeat, and dials a tunnel to the server over which it serves the
//! node-local API (images, logs, exec and port-forward).
//!
//! Several agents with distinct node names and data dirs can run on one
//! machine; everything an agent creates lives under its data dir.

#![forbid(unsafe_code)]

pub mod env;
pub mod events;
pub mod exec;
pub mod images;
pub mod layout;
pub mod logs;
pub mod network;
pub mod node;
pub mod node_api;
pub mod pods;
pub mod portforward;
pub mod reply;
pub mod reset;
pub mod runtime;
pub mod tunnel;
pub mod volumes;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Notify;

use selur_api::quantity::Quantity;
use selur_client::recorder::{ApiSink, Recorder};
use selur_image::ImageStore;

pub use node::Taint;

/// Errors of the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent configuration: {0}")]
    Config(String),
    #[error("API server {url}: {reason}")]
    Api { url: String, reason: String },
    #[error(transparent)]
    Client(#[from] selur_client::ClientError),
    #[error("image store: {0}")]
    Images(#[from] selur_image::StoreError),
    #[error(transparent)]
    Node(#[from] reset::ResetError),
    #[error("pod network: {0}")]
    Network(#[from] network::NetworkError),
}

/// Settings of one agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// API server URL, e.g. `http://127.0.0.1:6443`.
    pub server: String,
    pub node_name: String,
    pub data_dir: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub capacity: BTreeMap<String, Quantity>,
    pub reserved: BTreeMap<String, Quantity>,
    /// Lease renewal period.
    pub heartbeat: Duration,
    /// Full node status refresh period (also refreshed when images change).
    pub status_interval: Duration,
    /// Image garbage collection thresholds and how often to check them.
    pub image_gc: selur_image::gc::GcPolicy,
    pub image_gc_period: Duration,
    /// Registry settings (mirrors, rewrites, TLS, credentials) for pulls.
    pub registries: selur_image::registries::RegistrySettings,
    /// The OCI runtime binary (runc; crun fails on cgroup v1 hybrid hosts).
    pub runtime: PathBuf,
    /// How the node reports it, e.g. `runc://1.1.5`.
    pub runtime_version: String,
    /// The per-container supervisor: `selur-shim`, or `selur` (its `shim` subcommand).
    pub shim: PathBuf,
    /// Where json-file logs are linked for log shippers (`/var/log/containers`).
    pub log_link_dir: PathBuf,
    /// Container restart back-off.
    pub backoff: Backoff,
    /// Rotate a container's log file past this many bytes...
    pub log_max_size: u64,
    /// ...keeping this many rotated files.
    pub log_max_files: usize,
    /// The implicit `obli-pkg status` readiness check.
    pub obli_health: runtime::probes::ObliSettings,
    /// How many pods may be starting (sandbox + first containers) at once.
    pub pod_start_concurrency: usize,
    /// The pod network.
    pub network: network::NetworkConfig,
}

/// Kubernetes' container restart back-off: the first restart is immediate,
/// then `initial` doubling up to `max`; a run of `reset` clears it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset: Duration::from_secs(600),
        }
    }
}

/// `selur-shim` next to the running executable when it is there (a much
/// smaller process per container), else the running `selur` itself.
fn default_shim() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("selur"));
    let small = exe.with_file_name("selur-shim");
    if small.is_file() {
        small
    } else {
        exe
    }
}

impl AgentConfig {
    pub fn new(server: String, node_name: String, data_dir: PathBuf) -> Self {
        Self {
            server,
            node_name,
            data_dir,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            capacity: BTreeMap::new(),
            reserved: BTreeMap::new(),
            heartbeat: Duration::from_secs(10),
            status_interval: Duration::from_secs(60),
            image_gc: selur_image::gc::GcPolicy::default(),
            image_gc_period: Duration::from_secs(300),
            registries: Default::default(),
            runtime: PathBuf::from("runc"),
            runtime_version: "runc".into(),
            shim: default_shim(),
            log_link_dir: PathBuf::from("/var/log/containers"),
            backoff: Backoff::default(),
            log_max_size: 10 << 20,
            log_max_files: 5,
            obli_health: Default::default(),
            pod_start_concurrency: 4,
            network: Default::default(),
        }
    }
}

/// A running agent's shared state.
pub struct Agent {
    pub config: AgentConfig,
    pub images: Arc<ImageStore>,
    /// The API (every request of this agent goes through it).
    pub client: selur_client::Client,
    /// Events about this node's pods, deduplicated.
    pub recorder: Recorder<ApiSink>,
    /// Poked when the node's reported state (images) changed.
    pub changed: Notify,
    /// The pods this agent runs.
    pub running: Arc<runtime::Running>,
    /// Pod starts in progress at once (`AgentConfig::pod_start_concurrency`).
    pub(crate) start_permits: Arc<tokio::sync::Semaphore>,
    /// The node's pod network, once set up (never with `PodNetworkMode::None`).
    pub net: std::sync::OnceLock<Arc<network::NodeNetwork>>,
    /// Every Service, as the Service proxy's watch last saw them (`None`
    /// until its first list, and without a pod network).
    services: std::sync::RwLock<Option<Arc<Vec<Value>>>>,
}

/// How long one API request of the agent may take (a server that stopped
/// answering must not hold a pod up forever).
const API_TIMEOUT: Duration = Duration::from_secs(30);

impl Agent {
    /// An agent with `config`, keeping images in `images`.
    pub fn new(config: AgentConfig, images: Arc<ImageStore>) -> Result<Self, AgentError> {
        let client = selur_client::Client::from_url(&config.server)?;
        let recorder = Recorder::new(
            ApiSink {
                client: client.clone(),
            },
            "selur-agent",
            Some(&config.node_name),
        );
        let permits = config.pod_start_concurrency.max(1);
        Ok(Self {
            config,
            images,
            client,
            recorder,
            changed: Notify::new(),
            running: Arc::default(),
            start_permits: Arc::new(tokio::sync::Semaphore::new(permits)),
            net: std::sync::OnceLock::new(),
            services: std::sync::RwLock::new(None),
        })
    }

    /// The cached Services (see [`Agent::set_services_cache`]).
    pub fn services_cache(&self) -> Option<Arc<Vec<Value>>> {
        self.services.read().ok().and_then(|g| g.clone())
    }

    /// Replace the cached Services.
    pub fn set_services_cache(&self, services: Vec<Value>) {
        if let Ok(mut g) = self.services.write() {
            *g = Some(Arc::new(services));
        }
    }

    /// A request with a JSON body; the status code and the JSON answer
    /// (`Status` bodies included), or a transport error.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        ct: &str,
        body: &Value,
    ) -> Result<(u16, Value), AgentError> {
        let bytes = serde_json::to_vec(body).map_err(|e| AgentError::Api {
            url: self.config.server.clone(),
            reason: e.to_string(),
        })?;
        let req = if body.is_null() {
            self.client.builder(method, path)
        } else {
            self.client
                .builder(method, path)
                .header(reqwest::header::CONTENT_TYPE, ct)
                .body(bytes)
        };
        let resp = self.client.execute_raw(req.timeout(API_TIMEOUT)).await?;
        let code = resp.status().as_u16();
        // A Status body on errors: callers read its `message`.
        let v = resp.json().await.unwrap_or(Value::Null);
        Ok((code, v))
    }

    pub(crate) fn node_path(&self) -> String {
        format!("/api/v1/nodes/{}", self.config.node_name)
    }

    /// `status.images`: names and sizes of what the store holds.
    pub fn images_status(&self) -> Value {
        match self.images.list() {
            Ok(list) => Value::Array(
                list.iter()
                    .map(|i| {
                        let mut names = i.names.clone();
                        names.push(format!("{}", i.digest));
                        json!({"names": names, "sizeBytes": i.size})
                    })
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list images for node status");
                json!([])
            }
        }
    }

    /// Create the Node, or bring an existing one in line with this agent's settings.
    pub async fn register(&self) -> Result<(), AgentError> {
        let (cap, alloc) =
            node::capacity_and_allocatable(&self.config.capacity, &self.config.reserved)?;
        let mut labels: BTreeMap<String, String> = BTreeMap::from([
            (
                "kubernetes.io/hostname".to_string(),
                self.config.node_name.clone(),
            ),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ]);
        labels.extend(self.config.labels.clone());
        let user_taints: Vec<Value> = self.config.taints.iter().map(Taint::to_json).collect();
        // The node's address, known to the server's node IPAM before the
        // first status write (it never hands out a range holding it).
        let annotations: BTreeMap<String, String> = self
            .config
            .network
            .node_ip
            .map(|ip| ("selur.io/node-ip".to_string(), ip.to_string()))
            .into_iter()
            .collect();
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.config.node_name, "labels": labels, "annotations": annotations},
            "spec": {"taints": user_taints}});
        let (code, existing) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/nodes",
                "application/json",
                &node,
            )
            .await?;
        if code == 409 {
            let (_, current) = self
                .call(
                    reqwest::Method::GET,
                    &self.node_path(),
                    "application/json",
                    &Value::Null,
                )
                .await?;
            // Keep the taints the control plane owns (node.kubernetes.io/*); replace ours.
            let mut taints: Vec<Value> = current
                .pointer("/spec/taints")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|t| {
                            t["key"]
                                .as_str()
                                .is_some_and(|k| k.starts_with("node.kubernetes.io/"))
                        })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            taints.extend(user_taints);
            let patch = json!({"metadata": {"labels": labels, "annotations": annotations}, "spec": {"taints": taints}});
            let (c, v) = self
                .call(
                    reqwest::Method::PATCH,
                    &self.node_path(),
                    "application/merge-patch+json",
                    &patch,
                )
                .await?;
            if c != 200 {
                return Err(self.refused("updating the Node", &v));
            }
        } else if code != 201 {
            return Err(self.refused("registering the Node", &existing));
        }
        self.post_status(&cap, &alloc).await?;
        self.renew_lease().await
    }

    fn refused(&self, what: &str, status: &Value) -> AgentError {
        AgentError::Api {
            url: self.config.server.clone(),
            reason: format!(
                "{what} failed: {}",
                status["message"].as_str().unwrap_or("unexpected answer")
            ),
        }
    }

    async fn post_status(
        &self,
        cap: &BTreeMap<String, Quantity>,
        alloc: &BTreeMap<String, Quantity>,
    ) -> Result<(), AgentError> {
        let mut patch = json!({"status": node::status(cap, alloc, self.images_status())});
        let mut addresses = vec![json!({"type": "Hostname", "address": self.config.node_name})];
        if let Some(ip) = self.config.network.node_ip {
            addresses.insert(0, json!({"type": "InternalIP", "address": ip.to_string()}));
        }
        patch["status"]["addresses"] = Value::Array(addresses);
        patch["status"]["nodeInfo"]["containerRuntimeVersion"] = json!(self.config.runtime_version);
        let (c, v) = self
            .call(
                reqwest::Method::PATCH,
                &format!("{}/status", self.node_path()),
                "application/merge-patch+json",
                &patch,
            )
            .await?;
        if c != 200 {
            return Err(self.refused("posting node status", &v));
        }
        Ok(())
    }

    /// Renew (or create) `kube-node-lease/<node>`.
    pub async fn renew_lease(&self) -> Result<(), AgentError> {
        let path = format!(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{}",
            self.config.node_name
        );
        let lease_secs = (self.config.heartbeat.as_secs() * 4).max(1);
        let patch = json!({"spec": {"holderIdentity": self.config.node_name, "renewTime": node::now_micro(),
            "leaseDurationSeconds": lease_secs}});
        let (c, _) = self
            .call(
                reqwest::Method::PATCH,
                &path,
                "application/merge-patch+json",
                &patch,
            )
            .await?;
        if c == 404 {
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.config.node_name, "namespace": "kube-node-lease"},
                "spec": patch["spec"]});
            let (c, v) = self
                .call(
                    reqwest::Method::POST,
                    "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                    "application/json",
                    &lease,
                )
                .await?;
            if c != 201 && c != 409 {
                return Err(self.refused("creating the node lease", &v));
            }
        }
        Ok(())
    }
}

/// Run an agent until `shutdown` resolves.
pub async fn run(
    config: AgentConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    // One agent per data dir; `node.json` tells `selur node reset` where
    // this node's host state is.
    let _lock = reset::lock(
        &config.data_dir,
        &reset::NodeRecord {
            node_name: config.node_name.clone(),
            cgroup_parent: runtime::cgroup_parent(&config.node_name),
            runtime: config.runtime.clone(),
            log_link_dir: config.log_link_dir.clone(),
            network: match config.network.mode {
                network::PodNetworkMode::None => None,
                network::PodNetworkMode::Bridge => Some(reset::NetworkRecord {
                    bridge: config.network.bridge.clone(),
                    nft_table: Some(network::proxy::TABLE.to_string()),
                    cni: false,
                }),
                // The operator's bridge is theirs; Selur adds only the DNS
                // address on loopback (see network::set_up).
                network::PodNetworkMode::Cni => Some(reset::NetworkRecord {
                    bridge: String::new(),
                    nft_table: Some(network::proxy::TABLE.to_string()),
                    cni: true,
                }),
            },
        },
    )?;
    let mut config = config;
    if config.network.mode != network::PodNetworkMode::None && config.network.node_ip.is_none() {
        config.network.node_ip = network::bridge::detect_node_ip(&config.network.bridge);
    }
    let images = Arc::new(ImageStore::open(&config.data_dir.join("images"))?);
    let agent = Arc::new(Agent::new(config, images)?);
    // The server may still be starting (in-process agent): retry registration.
    let mut delay = Duration::from_millis(100);
    loop {
        match agent.register().await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "node registration failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::info!(node = %agent.config.node_name, "node registered");
    let mut net_tasks = Vec::new();
    if let Some(net) = network::set_up(&agent).await? {
        net_tasks.push(tokio::spawn(network::routes::run(
            agent.clone(),
            net.clone(),
        )));
        net_tasks.push(tokio::spawn(network::proxy::run(
            agent.clone(),
            net.clone(),
        )));
        let _ = agent.net.set(net);
    }
    let tunnel = tokio::spawn(tunnel::maintain(agent.clone()));
    let beat = tokio::spawn(heartbeat(agent.clone()));
    let gc = tokio::spawn(image_gc(agent.clone()));
    let pods = tokio::spawn(pods::run(agent.clone()));
    shutdown.await;
    pods.abort();
    tunnel.abort();
    beat.abort();
    gc.abort();
    for t in net_tasks {
        t.abort();
    }
    Ok(())
}

async fn heartbeat(agent: Arc<Agent>) {
    let mut lease = tokio::time::interval(agent.config.heartbeat);
    let mut status = tokio::time::interval(agent.config.status_interval);
    lease.tick().await;
    status.tick().await;
    loop {
        let refresh_status = tokio::select! {
            _ = lease.tick() => false,
            _ = status.tick() => true,
            _ = agent.changed.notified() => true,
        };
        let result = if refresh_status {
            match node::capacity_and_allocatable(&agent.config.capacity, &agent.config.reserved) {
                Ok((cap, alloc)) => agent.post_status(&cap, &alloc).await,
                Err(e) => Err(e),
            }
        } else {
            agent.renew_lease().await
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "heartbeat failed");
        }
    }
}

/// Collect unused images when the disk passes the high threshold.
async fn image_gc(agent: Arc<Agent>) {
    // The first collection comes one period after the start, not at once
    // (the disk is busy enough while the node's pods start again).
    let period = agent.config.image_gc_period;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tick.tick().await;
        let a = agent.clone();
        // Images of running pods are never collected, nor those of any pod
        // this node still holds on disk (pods being taken on again after a
        // restart, or torn down).
        let mut in_use = agent.running.images_in_use();
        in_use.extend(pods::images_on_disk(&agent));
        let res = tokio::task::spawn_blocking(move || {
            selur_image::gc::collect(
                &a.images,
                &selur_image::gc::StatVfs,
                a.config.image_gc,
                &in_use,
            )
        })
        .await;
        match res {
            Ok(Ok(r)) if !r.removed.is_empty() => {
                tracing::info!(removed = ?r.removed, freed = r.freed_bytes, "image garbage collection");
                agent.changed.notify_one();
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "image garbage collection failed"),
            Err(e) => tracing::warn!(error = %e, "image garbage collection task failed"),
        }
    }
}
