//! `selur node ...`: commands on this host's node state (no API server
//! needed).

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// Remove what a node left on this host once its agent is gone: stop
    /// its containers and shims, unmount, remove its pods' cgroups, runtime
    /// state, pod and log dirs and its links in /var/log/containers (its
    /// images stay). Safe to repeat; refused while the node's agent runs.
    #[command(
        after_help = "Examples:\n  selur node reset --data-dir /var/lib/selur        # the all-in-one server's node\n  selur node reset --data-dir /var/lib/selur-n2     # a `selur agent --data-dir` node"
    )]
    Reset {
        /// The node's data dir: `selur agent --data-dir`, or `selur server --data-dir` for its own node.
        #[arg(long)]
        data_dir: PathBuf,
        /// Reset even while the node's agent holds its data dir (it will start its pods again).
        #[arg(long)]
        force: bool,
    },
}

pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    match args.command {
        NodeCommand::Reset { data_dir, force } => {
            let r = selur_agent::reset::reset(&data_dir, force)?;
            if r.nothing_done() && r.failures.is_empty() {
                println!("node {}: nothing to reset", r.node);
            } else {
                println!(
                    "node {}: removed {} container(s), killed {} process(es), unmounted {} mount(s), removed {} cgroup(s), {} log link(s), {} dir(s), {} network object(s) (bridge, routes, nftables table)",
                    r.node, r.containers, r.processes, r.mounts, r.cgroups, r.log_links, r.dirs, r.network
                );
            }
            if !r.failures.is_empty() {
                for f in &r.failures {
                    eprintln!("error: {f}");
                }
                anyhow::bail!(
                    "node {}: {} thing(s) could not be removed; run `selur node reset` again once fixed",
                    r.node,
                    r.failures.len()
                );
            }
            Ok(())
        }
    }
}
