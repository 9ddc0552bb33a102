//! The `--flag VALUE` options that deploy-bench and pod-bench share.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::workload::default_demo;

/// The options both benches take.
pub struct CommonArgs {
    /// The `selur` binary (default: beside the bench executable).
    pub selur: PathBuf,
    /// The demo web server binary (default: [`default_demo`]).
    pub demo: Option<PathBuf>,
    /// Where the server's log goes (default: its data dir).
    pub server_log: Option<PathBuf>,
}

/// Parse the command line's `--flag VALUE` pairs: `--selur`, `--demo` and
/// `--server-log` here, any other flag through `own` (which answers whether
/// it knew the flag). `-h`/`--help` prints `usage` and exits.
pub fn parse_args(
    usage: &str,
    mut own: impl FnMut(&str, String) -> Result<bool>,
) -> Result<CommonArgs> {
    let exe_dir = std::env::current_exe()
        .context("current_exe")?
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("the executable has no directory"))?;
    let mut a = CommonArgs {
        selur: exe_dir.join("selur"),
        demo: None,
        server_log: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{usage}");
            std::process::exit(0);
        }
        let val = it
            .next()
            .ok_or_else(|| anyhow!("{flag} needs a value\n{usage}"))?;
        match flag.as_str() {
            "--selur" => a.selur = PathBuf::from(val),
            "--demo" => a.demo = Some(PathBuf::from(val)),
            "--server-log" => a.server_log = Some(PathBuf::from(val)),
            _ => {
                if !own(&flag, val)? {
                    bail!("unknown argument {flag}\n{usage}");
                }
            }
        }
    }
    if a.demo.is_none() {
        // target/release/X -> target/x86_64-unknown-linux-gnu/release/selur-demo
        a.demo = default_demo();
    }
    Ok(a)
}
