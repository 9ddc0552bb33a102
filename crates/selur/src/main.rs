//! `selur`: the one binary. `selur server` runs the control plane; the other
//! verbs are kubectl-style client commands against it.

#![forbid(unsafe_code)]

mod apply;
mod client;
mod commands;
mod manifest;
mod print;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use selur_server::{CompactionPolicy, ServerConfig};

use crate::client::Client;

/// Selur: a minimal, secure container orchestrator for small static images.
#[derive(Parser, Debug)]
#[command(name = "selur", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every client command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Client config (kubeconfig format) to read the API address from.
    #[arg(long, global = true, env = "SELUR_CONFIG")]
    config: Option<PathBuf>,
    /// API server URL; overrides the config file.
    #[arg(long, global = true, env = "SELUR_SERVER")]
    server: Option<String>,
    /// Namespace for namespaced objects.
    #[arg(short = 'n', long, global = true, default_value = "default")]
    namespace: String,
}

impl Global {
    fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(self.server.as_deref(), self.config.as_deref())?)
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the control plane (API server, store, controllers).
    #[command(
        after_help = "Examples:\n  selur server --data-dir /var/lib/selur --listen 127.0.0.1:6443\n  selur server --data-dir /tmp/s --listen 127.0.0.1:0 --history-retain-revisions 1000"
    )]
    Server(ServerArgs),
    /// Create or update objects from files, keeping the last-applied configuration.
    #[command(
        after_help = "Examples:\n  selur apply -f examples/seed.yaml\n  selur apply -f manifests/\n  cat pod.yaml | selur apply -f -"
    )]
    Apply {
        /// File, directory or - for stdin (repeatable).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        /// Only check with the server (`All`); nothing is written.
        #[arg(long, value_name = "All")]
        dry_run: Option<String>,
    },
    /// List objects or show one.
    #[command(
        after_help = "Examples:\n  selur get pods -A\n  selur get deploy web-service -o yaml\n  selur get po -l app=web -o wide\n  selur get deployments -w"
    )]
    Get(commands::GetArgs),
    /// Show an object in detail, with its events.
    #[command(
        after_help = "Examples:\n  selur describe deployment web-service\n  selur describe po/mypod -n prod"
    )]
    Describe {
        /// KIND NAME or KIND/NAME.
        #[arg(required = true)]
        args: Vec<String>,
    },
    /// Delete objects by name or from files.
    #[command(
        after_help = "Examples:\n  selur delete deployment web-service\n  selur delete -f examples/seed.yaml\n  selur delete rs/web-abc --cascade=orphan"
    )]
    Delete(commands::DeleteArgs),
    /// Set the replicas of a Deployment or ReplicaSet (through the scale subresource).
    #[command(
        after_help = "Examples:\n  selur scale deployment web-service --replicas=5\n  selur scale deploy/web-service --replicas 0"
    )]
    Scale {
        /// KIND NAME or KIND/NAME.
        #[arg(required = true)]
        args: Vec<String>,
        #[arg(long)]
        replicas: i64,
    },
    /// Wait for a condition on an object, or for its deletion.
    #[command(
        after_help = "Examples:\n  selur wait --for=condition=Available deployment/web-service --timeout=60s\n  selur wait --for=delete pod/mypod --timeout=30s"
    )]
    Wait {
        /// KIND/NAME or KIND NAME.
        #[arg(required = true)]
        args: Vec<String>,
        /// `condition=NAME[=VALUE]` or `delete`.
        #[arg(long = "for")]
        for_: String,
        /// How long to wait (`30s`, `5m`).
        #[arg(long, default_value = "30s")]
        timeout: String,
    },
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
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

async fn run_server(a: ServerArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SELUR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if a.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    let mut config = ServerConfig::new(a.data_dir, a.listen);
    config.compaction = match (a.history_retain_revisions, a.history_retain_seconds) {
        (Some(n), _) => CompactionPolicy::Revisions(n),
        (None, Some(s)) => CompactionPolicy::Age(Duration::from_secs(s)),
        (None, None) => CompactionPolicy::default(),
    };
    config.compaction_interval = Duration::from_secs(a.compaction_interval.max(1));
    config.bookmark_interval = Duration::from_secs(a.bookmark_interval.max(1));
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    selur_server::serve(config, shutdown).await?;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    match cli.command {
        Command::Server(a) => run_server(a).await,
        Command::Apply { files, dry_run } => {
            let dry = match dry_run.as_deref() {
                None => false,
                Some("All") | Some("server") => true,
                Some(other) => {
                    anyhow::bail!("--dry-run={other} is not supported: use --dry-run=All")
                }
            };
            let docs = manifest::read_all(&files)
                .map_err(|e| anyhow::anyhow!("error: {e}\nnothing was applied"))?;
            let client = g.client()?;
            apply::apply(&client, &docs, &g.namespace, dry).await?;
            Ok(())
        }
        Command::Get(a) => commands::get(&g.client()?, &g.namespace, a).await,
        Command::Describe { args } => commands::describe(&g.client()?, &g.namespace, &args).await,
        Command::Delete(a) => commands::delete(&g.client()?, &g.namespace, a).await,
        Command::Scale { args, replicas } => {
            commands::scale(&g.client()?, &g.namespace, &args, replicas).await
        }
        Command::Wait {
            args,
            for_,
            timeout,
        } => commands::wait(&g.client()?, &g.namespace, &args, &for_, &timeout).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
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
