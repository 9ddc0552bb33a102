//! The Selur control plane: a Kubernetes-shaped REST API over a revisioned
//! store, with the admission chain, watch, and the control-plane controllers
//! (garbage collector, namespace lifecycle, history compaction).
//!
//! Not here: TLS and authentication (a later security part plugs in at
//! [`serve`]), workload controllers, the node agent.

#![forbid(unsafe_code)]

pub mod admission;
pub mod api;
pub mod clock;
pub mod cluster_network;
pub mod compaction;
pub mod controllers;
pub mod events;
pub mod kubeconfig;
pub mod pod_stream;
pub mod quota;
pub mod registry;
pub mod scheduler;
pub mod services;
pub mod status;
pub mod tunnel;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use selur_store::{SqliteOptions, SqliteStore, Store};

use crate::admission::Admission;
use crate::clock::{Clock, SystemClock};
pub use crate::compaction::CompactionPolicy;
use crate::registry::Registry;

/// Settings of `selur server`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub compaction: CompactionPolicy,
    pub compaction_interval: Duration,
    pub bookmark_interval: Duration,
    pub gc_period: Duration,
    /// How long a node may miss heartbeats before it is marked unreachable.
    pub node_grace: Duration,
    /// Registry settings the server uses to resolve images it has not seen (manifest and config only).
    pub registries: selur_registry::registries::RegistrySettings,
    /// The in-process scheduler's settings; `None` runs without one (`--disable-scheduler`).
    pub scheduler: Option<scheduler::SchedulerConfig>,
    /// Back-off between re-creations of a Job's failed pods (first delay, doubling to the cap).
    pub job_backoff: controllers::job_logic::Backoff,
    /// After the shutdown signal, how long open connections (watches,
    /// agents' tunnels, requests in flight) may take to finish before the
    /// server stops waiting for them and drops them.
    pub shutdown_timeout: Duration,
    /// The time controllers go by: the system clock, or a test's
    /// [`clock::ManualClock`].
    pub clock: Arc<dyn Clock>,
    /// Pod and Service ranges and the DNS domain (checked at start).
    pub network: selur_api::network::ClusterNetwork,
    /// The IPv6 address pods reach the API server at (the `default/kubernetes`
    /// Service's endpoint); `None` uses the listen address when it is a
    /// specific IPv6 one, else the Service gets no endpoints.
    pub advertise_address: Option<std::net::Ipv6Addr>,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            data_dir,
            listen,
            compaction: CompactionPolicy::default(),
            compaction_interval: Duration::from_secs(60),
            bookmark_interval: Duration::from_secs(60),
            gc_period: Duration::from_secs(30),
            node_grace: Duration::from_secs(40),
            registries: Default::default(),
            scheduler: Some(scheduler::SchedulerConfig::default()),
            job_backoff: Default::default(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            clock: Arc::new(SystemClock),
            network: Default::default(),
            advertise_address: None,
        }
    }
}

/// How long a shutting-down server waits for open connections by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store in {dir}: {source}")]
    Store {
        dir: PathBuf,
        #[source]
        source: selur_store::StoreError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the admin kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("startup failed: {0}")]
    Startup(String),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Open the store, start the controllers and serve the API until `shutdown` resolves.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_with(config, shutdown, |_| {}).await
}

/// [`serve`], calling `on_listen` with the bound address once the API is reachable
/// (the in-process agent uses it to dial back).
pub async fn serve_with(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_listen: impl FnOnce(SocketAddr) + Send,
) -> Result<(), ServerError> {
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&config.data_dir, SqliteOptions::default()).map_err(|source| {
            ServerError::Store {
                dir: config.data_dir.clone(),
                source,
            }
        })?,
    );
    let clock = config.clock.clone();
    let admission = Admission {
        store_mutators: vec![Arc::new(quota::limitrange::LimitRanger::new(store.clone()))],
        mutators: vec![Arc::new(services::alloc::KeepAllocated)],
        quotas: vec![Arc::new(quota::ResourceQuotas::new(store.clone()))],
        allocators: vec![Arc::new(services::alloc::ServiceAllocator::new(
            store.clone(),
            config.network.service_cidr,
        ))],
        ..Admission::default()
    };
    let registry = Registry::new(store.clone(), admission, clock);
    for ns in ["default", "kube-system", "kube-node-lease"] {
        registry
            .ensure_namespace(ns)
            .await
            .map_err(|e| ServerError::Startup(format!("creating namespace {ns}: {e}")))?;
    }
    cluster_network::publish(&registry, &config.network)
        .await
        .map_err(|e| ServerError::Startup(format!("publishing the network settings: {e}")))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    let kc_path = config.data_dir.join("kubeconfig");
    kubeconfig::write(&kc_path, &format!("http://{addr}")).map_err(|source| {
        ServerError::Kubeconfig {
            path: kc_path.clone(),
            source,
        }
    })?;
    tracing::info!(%addr, store = %config.data_dir.display(), kubeconfig = %kc_path.display(), "selur API server listening");
    let api_endpoint = services::kubernetes::endpoint_address(addr, config.advertise_address);
    if let Err(why) = &api_endpoint {
        tracing::warn!(reason = %why, "the kubernetes Service gets no endpoints");
    }
    services::kubernetes::ensure(
        &registry,
        &config.network,
        addr.port(),
        api_endpoint.clone(),
    )
    .await
    .map_err(|e| ServerError::Startup(format!("writing the kubernetes Service: {e}")))?;

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(controllers::run_loop(
        "garbage-collector",
        registry.clone(),
        controllers::gc::relevant,
        config.gc_period,
        controllers::gc::pass,
    ));
    tasks.spawn(controllers::run_loop(
        "namespace",
        registry.clone(),
        controllers::namespace::relevant,
        config.gc_period,
        controllers::namespace::pass,
    ));
    tasks.spawn(controllers::run_loop(
        "resourcequota",
        registry.clone(),
        controllers::resourcequota::relevant,
        config.gc_period,
        controllers::resourcequota::pass,
    ));
    let tunnels = tunnel::Tunnels::default();
    let catalog_tunnels = tunnels.clone();
    tasks.spawn(controllers::run_loop(
        "image-catalog",
        registry.clone(),
        controllers::catalog::relevant,
        Duration::from_secs(30),
        move |reg| controllers::catalog::pass(reg, catalog_tunnels.clone()),
    ));
    let grace = config.node_grace;
    tasks.spawn(controllers::run_loop(
        "node-lifecycle",
        registry.clone(),
        controllers::node_lifecycle::relevant,
        (grace / 4).max(Duration::from_millis(250)),
        move |reg| controllers::node_lifecycle::pass(reg, grace),
    ));
    let network = config.network.clone();
    tasks.spawn(controllers::run_loop(
        "node-ipam",
        registry.clone(),
        controllers::node_ipam::relevant,
        config.gc_period,
        move |reg| controllers::node_ipam::pass(reg, network.clone()),
    ));
    let network = config.network.clone();
    tasks.spawn(controllers::run_loop(
        "kubernetes-service",
        registry.clone(),
        services::kubernetes::relevant,
        config.gc_period,
        move |reg| {
            let (network, endpoint) = (network.clone(), api_endpoint.clone());
            async move {
                services::kubernetes::ensure(&reg, &network, addr.port(), endpoint)
                    .await
                    .map(|_| ())
            }
        },
    ));
    let service_range = config.network.service_cidr;
    tasks.spawn(controllers::run_loop(
        "service-allocation-repair",
        registry.clone(),
        services::alloc::relevant,
        config.gc_period,
        move |reg| services::alloc::repair(reg, service_range),
    ));
    tasks.spawn(controllers::run_loop(
        "endpoints",
        registry.clone(),
        controllers::endpoints::relevant,
        config.gc_period,
        controllers::endpoints::pass,
    ));
    controllers::spawn_workloads(&mut tasks, &registry, config.gc_period, config.job_backoff);
    if let Some(sc) = config.scheduler.clone() {
        tasks.spawn(scheduler::run(registry.clone(), sc));
    }
    tasks.spawn(compaction::run(
        store.clone(),
        config.compaction.clone(),
        config.compaction_interval,
    ));

    let state = Arc::new(api::ApiState {
        registry,
        bookmark_interval: config.bookmark_interval,
        tunnels,
        registries: Arc::new(config.registries.clone()),
    });
    let app = api::router(state);
    on_listen(addr);
    let result = serve_bounded(listener, app, shutdown, config.shutdown_timeout).await;
    tasks.abort_all();
    result
}

/// Serve until `shutdown` resolves, then let open connections finish for at
/// most `timeout`: a client or agent that stopped reading (a watch whose
/// socket buffer is full, a stopped agent's tunnel) must not keep the
/// server alive. What is still open then is dropped with the server (the
/// connections' tasks end with the runtime).
async fn serve_bounded(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    timeout: Duration,
) -> Result<(), ServerError> {
    let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
    let graceful = async move {
        shutdown.await;
        let _ = fired_tx.send(());
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let server = std::future::IntoFuture::into_future(server);
    let overdue = async move {
        if fired_rx.await.is_err() {
            // The server ended on its own; nothing to bound.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(timeout).await;
    };
    tokio::select! {
        r = server => r.map_err(ServerError::Serve),
        () = overdue => {
            tracing::warn!(?timeout, "connections still open after the shutdown timeout; closing them");
            Ok(())
        }
    }
}
