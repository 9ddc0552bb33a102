//! The node's Service proxy table (nftables).

use std::process::Command;

use super::NetworkError;

/// The nftables table of the agent's Service proxy.
pub const TABLE: &str = "selur";

fn nft(args: &[&str]) -> Result<String, NetworkError> {
    let shown = || format!("nft {}", args.join(" "));
    match Command::new("nft").args(args).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(NetworkError::Settings(format!(
            "`{}` failed: {}",
            shown(),
            String::from_utf8_lossy(&o.stderr).trim()
        ))),
        Err(e) => Err(NetworkError::Settings(format!(
            "`{}`: {e} (is Debian's nftables installed?)",
            shown()
        ))),
    }
}

/// Delete every table named `name` (of any family) in the caller's network
/// namespace; whether one was there. Safe to repeat.
pub fn remove_table(name: &str) -> Result<bool, NetworkError> {
    let list = nft(&["list", "tables"])?;
    let mut removed = false;
    for line in list.lines() {
        let mut w = line.split_whitespace();
        if let (Some("table"), Some(family), Some(n)) = (w.next(), w.next(), w.next()) {
            if n == name {
                nft(&["delete", "table", family, name])?;
                removed = true;
            }
        }
    }
    Ok(removed)
}
