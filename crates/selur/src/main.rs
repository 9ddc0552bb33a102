//! `selur`: the one binary. `selur server` runs the control plane; the other
//! verbs are kubectl-style client commands against it.

#![forbid(unsafe_code)]

mod client;
mod cmd;
mod manifest;
mod print;
mod upgrade;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use selur_server::{CompactionPolicy, ServerConfig};

use crate::cmd::Verb;

/// jemalloc with background threads: memory freed after a burst (a huge
/// pod started and deleted, a big list) goes back to the system within
/// seconds (`dirty_decay_ms`), where glibc's arenas keep it for good.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Selur: a minimal, secure container orchestrator for small static images.
#[derive(Parser, Debug)]
#[command(
    name = "selur",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_help = "Client commands take --kubeconfig FILE (or SELUR_CONFIG),\n--server URL (or SELUR_SERVER) and -n NAMESPACE after the command name, e.g.\n  selur get pods -n prod --kubeconfig /var/lib/selur/kubeconfig"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Supervise one container (started by the agent; holds its stdio, writes its log, records its exit).
    /// (`selur-shim` does the same in a much smaller process; see that binary.)
    #[command(hide = true, disable_help_flag = true)]
    Shim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Image commands on a node's store (through the API server and the node's tunnel).
    Image(Verb<cmd::image::ImageArgs>),
    /// Commands on this host's node state (`selur node reset`).
    Node(cmd::node::NodeArgs),
    /// Run a node agent that joins a server.
    #[command(
        after_help = "Examples:\n  selur agent --server http://127.0.0.1:6443 --node-name n2 --data-dir /var/lib/selur-n2 \\\n      --node-label disk=ssd --node-taint dedicated=gpu:NoSchedule --capacity cpu=2,memory=4Gi,pods=50"
    )]
    Agent(AgentCmdArgs),
    /// Run the control plane (API server, store, controllers) with an in-process node agent.
    #[command(
        after_help = "Examples:\n  selur server --data-dir /var/lib/selur --listen 127.0.0.1:6443\n  selur server --data-dir /tmp/s --listen 127.0.0.1:0 --history-retain-revisions 1000"
    )]
    Server(ServerArgs),
    /// Create or update objects from files, keeping the last-applied configuration.
    #[command(
        after_help = "Examples:\n  selur apply -f examples/seed.yaml\n  selur apply -f manifests/\n  cat pod.yaml | selur apply -f -"
    )]
    Apply(Verb<cmd::apply::ApplyArgs>),
    /// List objects or show one.
    #[command(
        after_help = "Examples:\n  selur get pods -A\n  selur get deploy web-service -o yaml\n  selur get po -l app=web -o wide\n  selur get deployments -w"
    )]
    Get(Verb<cmd::get::GetArgs>),
    /// Show an object in detail, with its events.
    #[command(
        after_help = "Examples:\n  selur describe deployment web-service\n  selur describe po/mypod -n prod"
    )]
    Describe(Verb<cmd::describe::DescribeArgs>),
    /// Delete objects by name or from files.
    #[command(
        after_help = "Examples:\n  selur delete deployment web-service\n  selur delete -f examples/seed.yaml\n  selur delete rs/web-abc --cascade=orphan"
    )]
    Delete(Verb<cmd::delete::DeleteArgs>),
    /// Print a container's log (through the server and the node's tunnel).
    #[command(
        after_help = "Examples:\n  selur logs web\n  selur logs web -c side --tail 20 -f\n  selur logs web --since 5m --timestamps"
    )]
    Logs(Verb<cmd::logs::LogsArgs>),
    /// Each container's last Lago Grey health (`obli-pkg status`) as the node's probe parsed it.
    #[command(after_help = "Examples:\n  selur health web\n  selur health web -o json")]
    Health(Verb<cmd::health::HealthArgs>),
    /// Run a command in a container of a pod (through the server and the node's tunnel).
    #[command(
        after_help = "The command's exit code becomes selur's. With -t the command gets a terminal; with -i -t on a terminal\nthe local one goes into raw mode until the command ends.\n\nExamples:\n  selur exec web -- cat /etc/hostname\n  selur exec web -c side -- sh -c 'echo $HOSTNAME'\n  echo hello | selur exec -i web -- cat\n  selur exec -it web -- sh"
    )]
    Exec(Verb<cmd::exec::ExecArgs>),
    /// Forward local ports to a pod's ports (IPv6: listens on [::1], reaches the pod's [::1]).
    #[command(
        after_help = "Each accepted connection gets its own stream through the server; runs until Ctrl-C.\n\nExamples:\n  selur port-forward web 8080\n  selur port-forward pod/web 9000:80 9443:443\n  selur port-forward web :8080    # a free local port, printed"
    )]
    PortForward(Verb<cmd::port_forward::PortForwardArgs>),
    /// Set the replicas of a Deployment or ReplicaSet (through the scale subresource).
    #[command(
        after_help = "Examples:\n  selur scale deployment web-service --replicas=5\n  selur scale deploy/web-service --replicas 0"
    )]
    Scale(Verb<cmd::scale::ScaleArgs>),
    /// Manage the rollout of a Deployment: status, history, undo, restart, pause, resume.
    #[command(
        after_help = "Examples:\n  selur rollout status deployment/web\n  selur rollout history deploy/web\n  selur rollout undo deploy/web --to-revision=1\n  selur rollout restart deploy/web\n  selur rollout pause deploy/web"
    )]
    Rollout(Verb<cmd::rollout::RolloutArgs>),
    /// Wait for a condition on an object, or for its deletion.
    #[command(
        after_help = "Examples:\n  selur wait --for=condition=Available deployment/web-service --timeout=60s\n  selur wait --for=delete pod/mypod --timeout=30s"
    )]
    Wait(Verb<cmd::wait::WaitArgs>),
}

#[derive(Args, Debug)]
struct ServerArgs {
    /// Where the store and the admin kubeconfig live.
    #[arg(long, default_value = "/var/lib/selur")]
    data_dir: PathBuf,
    /// Address to serve the API on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Keep this many revisions of watch history (instead of a time window).
    #[arg(long, conflicts_with = "history_retain_seconds")]
    history_retain_revisions: Option<i64>,
    /// Keep this many seconds of watch history (default 3600).
    #[arg(long)]
    history_retain_seconds: Option<u64>,
    /// How often to compact watch history, in seconds.
    #[arg(long, default_value_t = 60)]
    compaction_interval: u64,
    /// How often watches that asked for bookmarks get one, in seconds.
    #[arg(long, default_value_t = 60)]
    bookmark_interval: u64,
    /// Seconds a node may miss heartbeats before it is marked Ready=Unknown and tainted unreachable.
    #[arg(long, default_value_t = 40)]
    node_grace_period: u64,
    /// First delay before a Job re-creates a failed pod (doubles per failure, capped at 6 minutes).
    #[arg(long, default_value = "10s", value_parser = parse_dur)]
    job_backoff: Duration,
    /// Cluster settings file: Selur's `networking: {ipFamily: IPv6, podCIDR,
    /// serviceCIDR, clusterDomain, nodeCIDRMaskSize}` or a kubeadm
    /// ClusterConfiguration (`networking: {podSubnet, serviceSubnet,
    /// dnsDomain}`). Flags given here win over the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The pod range, IPv6 only (default fd00::/48); each node gets a
    /// /--node-cidr-mask slice of it.
    #[arg(long, value_name = "CIDR")]
    cluster_cidr: Option<String>,
    /// The Service (ClusterIP) range, IPv6 only, /108 to /124 (default fd01::/112).
    #[arg(long, value_name = "CIDR")]
    service_cidr: Option<String>,
    /// The cluster's DNS domain (default cluster.local).
    #[arg(long, value_name = "DOMAIN")]
    cluster_domain: Option<String>,
    /// Prefix length of each node's pod range (default 64).
    #[arg(long, value_name = "BITS")]
    node_cidr_mask: Option<u8>,
    /// The IPv6 address pods reach the API server at: the endpoint of the
    /// `default/kubernetes` Service (default: the --listen address when it
    /// is a specific IPv6 one; otherwise the Service has no endpoints).
    #[arg(long, value_name = "IPV6")]
    advertise_address: Option<std::net::Ipv6Addr>,
    /// Do not run a node agent inside the server (control plane only).
    #[arg(long)]
    disable_agent: bool,
    /// Do not run the scheduler (pods stay pending until bound through pods/binding).
    #[arg(long)]
    disable_scheduler: bool,
    #[command(flatten)]
    agent: AgentArgs,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// After SIGTERM or Ctrl-C, how long open connections (watches, agents'
    /// tunnels) may take to finish; then they are dropped and the server
    /// exits. Containers keep running.
    #[arg(long, default_value = "5s", value_parser = parse_dur)]
    shutdown_timeout: Duration,
}

/// Node settings shared by `selur agent` and the server's in-process agent.
#[derive(Args, Debug, Clone)]
struct AgentArgs {
    /// Node name (default: this machine's host name).
    #[arg(long)]
    node_name: Option<String>,
    /// Override detected capacity, e.g. cpu=2,memory=4Gi,pods=50.
    #[arg(long, value_parser = parse_resources)]
    capacity: Option<std::collections::BTreeMap<String, selur_api::quantity::Quantity>>,
    /// Reserve part of the capacity for the system, e.g. cpu=500m,memory=512Mi.
    #[arg(long, value_parser = parse_resources)]
    reserved: Option<std::collections::BTreeMap<String, selur_api::quantity::Quantity>>,
    /// Node label key=value (repeatable).
    #[arg(long = "node-label", value_parser = parse_label)]
    node_labels: Vec<(String, String)>,
    /// Node taint key=value:Effect (repeatable).
    #[arg(long = "node-taint")]
    node_taints: Vec<selur_agent::Taint>,
    /// Seconds between node lease renewals.
    #[arg(long, default_value_t = 10)]
    heartbeat_interval: u64,
    /// Registry settings file (mirrors, rewrites, insecure registries, CA files, credentials).
    #[arg(long)]
    registry_config: Option<PathBuf>,
    /// Disk usage (percent) above which unused images are garbage collected.
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(1..=100))]
    image_gc_high_threshold: u8,
    /// Disk usage (percent) image garbage collection frees down to.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    image_gc_low_threshold: u8,
    /// How often the disk usage is checked for image garbage collection
    /// (the first check comes one period after the start), e.g. 5m.
    #[arg(long, default_value = "5m", value_parser = parse_dur)]
    image_gc_period: Duration,
    /// OCI runtime binary (default: the first that works of runc, crun).
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// First container restart back-off delay (doubles per crash), e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_dur)]
    container_backoff: Duration,
    /// Longest container restart back-off delay.
    #[arg(long, default_value = "5m", value_parser = parse_dur)]
    container_backoff_max: Duration,
    /// Rotate a container's log file past this many bytes.
    #[arg(long, default_value_t = 10 << 20)]
    container_log_max_size: u64,
    /// Rotated log files kept per container.
    #[arg(long, default_value_t = 5)]
    container_log_max_files: usize,
    /// A container that ran this long has its back-off reset.
    #[arg(long, default_value = "10m", value_parser = parse_dur)]
    container_backoff_reset: Duration,
    /// How many pods may be starting at once (sandbox and first containers).
    #[arg(long, default_value_t = 4)]
    pod_start_concurrency: usize,
    /// Period of the implicit `obli-pkg status` readiness check.
    #[arg(long, default_value = "10s", value_parser = parse_dur)]
    obli_health_period: Duration,
    /// Consecutive failures of the obli-pkg check before a container is unready.
    #[arg(long, default_value_t = 3)]
    obli_health_failure_threshold: u32,
    /// Time limit of one obli-pkg check.
    #[arg(long, default_value = "2s", value_parser = parse_dur)]
    obli_health_timeout: Duration,
    /// Pod network: "bridge" (a veth pair per pod on a node bridge, IPv6
    /// only), "cni" (the first network config in --cni-conf-dir, run with
    /// the plugins in --cni-bin-dir) or "none" (pods get only loopback).
    #[arg(long, env = "SELUR_POD_NETWORK", default_value = "bridge")]
    pod_network: selur_agent::network::PodNetworkMode,
    /// Name of the node bridge pods are attached to.
    #[arg(long, default_value = "selur0")]
    bridge_name: String,
    /// The node's IPv6 address for routes from other nodes and NodePorts
    /// (default: the first global IPv6 address of another interface).
    #[arg(long)]
    node_ip: Option<std::net::Ipv6Addr>,
    /// The node's resolver configuration: the cluster DNS forwards names
    /// outside the cluster to its nameservers, and `dnsPolicy: Default`
    /// pods get it.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// The NAT64 /96 prefix of the operator's NAT64 gateway, e.g.
    /// 64:ff9b::/96: the cluster DNS then answers AAAA for IPv4-only names
    /// outside the cluster (DNS64), so IPv6-only pods reach them.
    #[arg(long, value_parser = parse_dns64)]
    dns64_prefix: Option<std::net::Ipv6Addr>,
    /// Where the CNI network config is (with --pod-network cni).
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// Where CNI plugins are, comma-separated, searched in order (with
    /// --pod-network cni).
    #[arg(
        long,
        default_value = "/opt/cni/bin,/usr/lib/cni",
        value_delimiter = ','
    )]
    cni_bin_dir: Vec<PathBuf>,
}

fn parse_dns64(s: &str) -> Result<std::net::Ipv6Addr, String> {
    let c: selur_api::network::Ipv6Cidr = s.parse().map_err(|_| {
        format!("{s:?} is not an IPv6 prefix; give a NAT64 /96 such as 64:ff9b::/96")
    })?;
    if c.prefix() != 96 {
        return Err(format!(
            "{s}: only /96 NAT64 prefixes are supported (e.g. 64:ff9b::/96)"
        ));
    }
    Ok(c.addr())
}

fn parse_dur(s: &str) -> Result<Duration, String> {
    cmd::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_resources(
    s: &str,
) -> Result<std::collections::BTreeMap<String, selur_api::quantity::Quantity>, String> {
    selur_agent::node::parse_resources(s)
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: expected key=value"))
}

impl AgentArgs {
    fn config(
        &self,
        server: String,
        data_dir: PathBuf,
    ) -> anyhow::Result<selur_agent::AgentConfig> {
        let name = self
            .node_name
            .clone()
            .unwrap_or_else(selur_agent::node::hostname);
        let mut c = selur_agent::AgentConfig::new(server, name, data_dir);
        c.labels = self.node_labels.iter().cloned().collect();
        c.taints = self.node_taints.clone();
        c.capacity = self.capacity.clone().unwrap_or_default();
        c.reserved = self.reserved.clone().unwrap_or_default();
        c.heartbeat = Duration::from_secs(self.heartbeat_interval.max(1));
        c.image_gc = selur_image::gc::GcPolicy {
            high_percent: self.image_gc_high_threshold,
            low_percent: self
                .image_gc_low_threshold
                .min(self.image_gc_high_threshold),
        };
        c.image_gc_period = self.image_gc_period.max(Duration::from_secs(1));
        if let Some(p) = &self.registry_config {
            c.registries = selur_image::registries::RegistrySettings::load(p)?;
        }
        c.backoff = selur_agent::Backoff {
            initial: self.container_backoff,
            max: self.container_backoff_max.max(self.container_backoff),
            reset: self.container_backoff_reset,
        };
        c.obli_health = selur_agent::runtime::probes::ObliSettings {
            period: self.obli_health_period.max(Duration::from_secs(1)),
            timeout: self.obli_health_timeout.max(Duration::from_secs(1)),
            failure_threshold: self.obli_health_failure_threshold.max(1),
        };
        c.pod_start_concurrency = self.pod_start_concurrency.max(1);
        if self.bridge_name.is_empty() || self.bridge_name.len() > 15 {
            anyhow::bail!(
                "--bridge-name {:?}: an interface name has 1 to 15 characters",
                self.bridge_name
            );
        }
        c.network = selur_agent::network::NetworkConfig {
            mode: self.pod_network,
            bridge: self.bridge_name.clone(),
            node_ip: self.node_ip,
            resolv_conf: self.resolv_conf.clone(),
            dns64_prefix: self.dns64_prefix,
            cni_conf_dir: self.cni_conf_dir.clone(),
            cni_bin_dirs: self.cni_bin_dir.clone(),
        };
        c.log_max_size = self.container_log_max_size.max(1024);
        c.log_max_files = self.container_log_max_files;
        let candidates = match &self.runtime {
            Some(r) => vec![r.clone()],
            None => vec![PathBuf::from("runc"), PathBuf::from("crun")],
        };
        let (runtime, version) =
            selur_runtime::runc::Runtime::detect(&candidates).map_err(anyhow::Error::msg)?;
        tracing::info!(runtime = %runtime.display(), version, "OCI runtime");
        let name = runtime
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let number = version.split_whitespace().last().unwrap_or("").to_string();
        c.runtime_version = format!("{name}://{number}");
        c.runtime = runtime;
        Ok(c)
    }
}

fn run_shim(args: Vec<String>) -> anyhow::Result<i32> {
    let opts = selur_runtime::shim::ShimOptions::parse(args).map_err(anyhow::Error::msg)?;
    Ok(selur_runtime::shim::run(&opts)?)
}

#[derive(Args, Debug)]
struct AgentCmdArgs {
    /// API server URL.
    #[arg(long, env = "SELUR_SERVER_URL")]
    server: String,
    /// Where this node's images and state live.
    #[arg(long)]
    data_dir: PathBuf,
    #[command(flatten)]
    agent: AgentArgs,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// After SIGTERM or Ctrl-C, how long the agent may take to stop; then it
    /// exits regardless. Containers keep running (their shims supervise them).
    #[arg(long, default_value = "5s", value_parser = parse_dur)]
    shutdown_timeout: Duration,
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SELUR_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,hickory_server=warn,hickory_proto=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Wait for SIGTERM or Ctrl-C. Then a last-resort deadline is armed: a
/// process still running well after `timeout` (something that neither
/// finished nor could be dropped in time) exits anyway.
async fn shutdown_signal(timeout: Duration) {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!(?timeout, "shutting down");
    arm_exit_deadline(timeout * 2 + Duration::from_secs(1));
}

/// Exit the process `after` from now, from a plain thread (so a stuck async
/// runtime cannot hold it up).
fn arm_exit_deadline(after: Duration) {
    let armed = std::thread::Builder::new()
        .name("shutdown-deadline".into())
        .spawn(move || {
            std::thread::sleep(after);
            tracing::error!(
                ?after,
                "still running this long after the shutdown signal; exiting now"
            );
            std::process::exit(1);
        });
    if let Err(e) = armed {
        tracing::warn!(error = %e, "cannot arm the shutdown deadline");
    }
}

/// A flag set once the shutdown signal arrived.
fn on_shutdown_signal(timeout: Duration) -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal(timeout).await;
        let _ = tx.send(true);
    });
    rx
}

/// Resolves once the flag from [`on_shutdown_signal`] is set.
async fn signalled(mut rx: tokio::sync::watch::Receiver<bool>) {
    if rx.wait_for(|s| *s).await.is_err() {
        // The signal task is gone without a signal: never resolve.
        std::future::pending::<()>().await;
    }
}

async fn run_agent(a: AgentCmdArgs) -> anyhow::Result<()> {
    init_logging(&a.log_format);
    let config = a.agent.config(a.server, a.data_dir)?;
    let timeout = a.shutdown_timeout;
    let stop = on_shutdown_signal(timeout);
    let overdue = {
        let stop = stop.clone();
        async move {
            signalled(stop).await;
            tokio::time::sleep(timeout).await;
        }
    };
    tokio::select! {
        r = selur_agent::run(config, signalled(stop)) => r?,
        () = overdue => {
            tracing::warn!(?timeout, "the agent did not stop within the shutdown timeout; exiting (containers keep running)");
        }
    }
    Ok(())
}

/// The cluster's network settings: the `--config` file's, with the flags
/// given on top; refused (naming the setting) when unusable.
fn cluster_network(a: &ServerArgs) -> anyhow::Result<selur_api::network::ClusterNetwork> {
    use selur_api::network::{parse_config, NetworkInput};
    let mut input = NetworkInput::default();
    if let Some(path) = &a.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read --config {}: {e}", path.display()))?;
        let (from_file, skipped) = parse_config(&path.display().to_string(), &text)?;
        if !skipped.is_empty() {
            tracing::info!(file = %path.display(), kinds = %skipped.join(", "), "config documents that are not Selur's skipped");
        }
        input = from_file;
    }
    let flag = |name: &str, v: &Option<String>| v.clone().map(|v| (name.to_string(), v));
    let flags = NetworkInput {
        cluster_cidr: flag("--cluster-cidr", &a.cluster_cidr),
        service_cidr: flag("--service-cidr", &a.service_cidr),
        cluster_domain: flag("--cluster-domain", &a.cluster_domain),
        node_cidr_mask: a
            .node_cidr_mask
            .map(|m| ("--node-cidr-mask".to_string(), m)),
    };
    Ok(input.overridden_by(flags).resolve()?)
}

async fn run_server(a: ServerArgs) -> anyhow::Result<()> {
    init_logging(&a.log_format);
    let mut config = ServerConfig::new(a.data_dir.clone(), a.listen);
    config.network = cluster_network(&a)?;
    tracing::info!(pods = %config.network.cluster_cidr, node_mask = config.network.node_cidr_mask,
        services = %config.network.service_cidr, domain = %config.network.cluster_domain, "cluster network");
    config.advertise_address = a.advertise_address;
    config.node_grace = Duration::from_secs(a.node_grace_period.max(1));
    config.job_backoff.base = a.job_backoff;
    config.shutdown_timeout = a.shutdown_timeout;
    if let Some(p) = &a.agent.registry_config {
        config.registries = selur_image::registries::RegistrySettings::load(p)?;
    }
    config.compaction = match (a.history_retain_revisions, a.history_retain_seconds) {
        (Some(n), _) => CompactionPolicy::Revisions(n),
        (None, Some(s)) => CompactionPolicy::Age(Duration::from_secs(s)),
        (None, None) => CompactionPolicy::default(),
    };
    config.compaction_interval = Duration::from_secs(a.compaction_interval.max(1));
    config.bookmark_interval = Duration::from_secs(a.bookmark_interval.max(1));
    if a.disable_scheduler {
        config.scheduler = None;
    }
    let stop = on_shutdown_signal(a.shutdown_timeout);
    let agent_config = if a.disable_agent {
        None
    } else {
        // Placeholder URL: the real address is known once the listener is bound.
        Some(a.agent.config(String::new(), a.data_dir.join("agent"))?)
    };
    let agent_stop = stop.clone();
    let on_listen = move |addr: SocketAddr| {
        if let Some(mut config) = agent_config {
            config.server = format!("http://{addr}");
            tokio::spawn(async move {
                if let Err(e) = selur_agent::run(config, signalled(agent_stop)).await {
                    tracing::error!(error = %e, "in-process agent failed");
                }
            });
        }
    };
    // The server waits for its connections at most the shutdown timeout;
    // the in-process agent ends with the process.
    selur_server::serve_with(config, signalled(stop), on_listen).await?;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(a) => run_server(a).await,
        Command::Agent(a) => run_agent(a).await,
        Command::Shim { .. } => Ok(()),
        Command::Node(a) => cmd::node::run(a),
        Command::Image(v) => cmd::image::run(&v.client.client()?, v.args).await,
        // Reads its files before looking for the server.
        Command::Apply(v) => cmd::apply::run(&v.client, v.args).await,
        Command::Get(v) => cmd::get::run(&v.client.client()?, &v.client.namespace, v.args).await,
        Command::Logs(v) => cmd::logs::run(&v.client.client()?, &v.client.namespace, v.args).await,
        Command::Health(v) => {
            cmd::health::run(&v.client.client()?, &v.client.namespace, v.args).await
        }
        Command::Exec(v) => cmd::exec::run(&v.client.client()?, &v.client.namespace, v.args).await,
        Command::PortForward(v) => {
            cmd::port_forward::run(&v.client.client()?, &v.client.namespace, v.args).await
        }
        Command::Describe(v) => {
            cmd::describe::run(&v.client.client()?, &v.client.namespace, v.args).await
        }
        Command::Delete(v) => {
            cmd::delete::run(&v.client.client()?, &v.client.namespace, v.args).await
        }
        Command::Scale(v) => {
            cmd::scale::run(&v.client.client()?, &v.client.namespace, v.args).await
        }
        Command::Rollout(v) => {
            cmd::rollout::run(&v.client.client()?, &v.client.namespace, v.args).await
        }
        Command::Wait(v) => cmd::wait::run(&v.client.client()?, &v.client.namespace, v.args).await,
    }
}

/// A closed stdout (`selur get ... | head`) ends the CLI quietly, as with
/// other Unix tools, instead of a panic message.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_broken_pipe();
    let cli = Cli::parse();
    // The shim is synchronous and must not start an async runtime of its own.
    if let Command::Shim { args } = cli.command {
        return match run_shim(args) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Daemons stop within their shutdown timeout: blocking work still
    // running then is not waited for (containers live on in their shims).
    let daemon = matches!(cli.command, Command::Server(_) | Command::Agent(_));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(cli));
    if daemon {
        rt.shutdown_timeout(Duration::from_secs(1));
    } else {
        drop(rt);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(cmd::exec::RemoteExit(code)) = e.downcast_ref() {
                // As kubectl: say so, and pass the code on.
                eprintln!("{e}");
                return ExitCode::from((*code).clamp(1, 255) as u8);
            }
            let msg = e.to_string();
            if msg.starts_with("error") {
                eprintln!("{msg}");
            } else {
                eprintln!("error: {msg}");
            }
            ExitCode::FAILURE
        }
    }
}
