//! Running a whole benchmark inside a network namespace of its own, so a
//! bridge-mode agent (bridge, routes, forwarding sysctl, nftables table,
//! DNS address) never touches the machine's namespace.
//!
//! [`enter`] replaces the bench process with `unshare --net -- SELF ARGS`
//! (same pid, so signals and the exit status stay the bench's): the server,
//! its agent, runc, the floor and the clients all inherit the namespace,
//! and it disappears when the last of them exits. Only the network
//! namespace is new (not the mount namespace), so cleanup still sees and
//! removes the agent's mounts. Before exiting, `Host::cleanup` runs
//! `selur node reset` on the server's data dir inside the namespace.

use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{Context, Result};

use super::host::sh;

/// Set in the environment of the re-executed bench.
pub const ENV: &str = "SELUR_BENCH_NETNS";

/// Return inside a fresh network namespace with loopback up: either this
/// process already is the re-executed one, or it becomes it (exec, no
/// return). Call first thing in `main`, before any thread starts.
pub fn enter(label: &str) -> Result<()> {
    if std::env::var_os(ENV).is_some() {
        sh("ip", &["link", "set", "lo", "up"])?;
        return Ok(());
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let err = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(ENV, "1")
        .exec();
    Err(err).with_context(|| format!("{label}: exec unshare --net (util-linux)"))
}

/// The inode of this process's network namespace, for the header.
pub fn current() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "?".into())
}
