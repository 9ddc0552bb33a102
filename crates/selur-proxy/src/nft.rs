//! Running `nft`: one process per transaction, JSON on stdin, optionally
//! inside another network namespace (`nsenter --net=PATH`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::config::valid_identifier;
use crate::ruleset::{remove_table, Ruleset, FAMILY};
use crate::ProxyError;

/// How to run `nft`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nft {
    /// The `nft` program (default `nft`, found on `PATH`).
    pub program: PathBuf,
    /// Run inside this network namespace (a `/run/netns/NAME` or bind-mounted
    /// namespace file) through util-linux `nsenter --net=PATH`; `None` runs
    /// in the caller's namespace.
    pub netns: Option<PathBuf>,
}

impl Default for Nft {
    fn default() -> Self {
        Self {
            program: PathBuf::from("nft"),
            netns: None,
        }
    }
}

impl Nft {
    /// `nft` from `PATH`, in the caller's network namespace.
    pub fn new() -> Self {
        Self::default()
    }

    /// `nft` from `PATH`, inside the network namespace at `path`.
    pub fn in_netns(path: impl Into<PathBuf>) -> Self {
        Self {
            program: PathBuf::from("nft"),
            netns: Some(path.into()),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = match &self.netns {
            Some(path) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net={}", path.display()))
                    .arg("--")
                    .arg(&self.program);
                cmd
            }
            None => Command::new(&self.program),
        };
        cmd.args(args);
        cmd
    }

    /// Runs one JSON transaction (`nft -j -f -`): all of it or nothing.
    pub fn run_json(&self, transaction: &Value) -> Result<(), ProxyError> {
        let input = serde_json::to_vec(transaction).map_err(ProxyError::Encode)?;
        self.run(&["-j", "-f", "-"], Some(&input)).map(|_| ())
    }

    /// `nft -j list table ip6 TABLE`: the table as nft prints it (handles
    /// included).
    pub fn list(&self, table: &str) -> Result<String, ProxyError> {
        check_table(table)?;
        self.run(&["-j", "list", "table", FAMILY, table], None)
    }

    /// Removes the table; an absent table is fine.
    pub fn remove(&self, table: &str) -> Result<(), ProxyError> {
        check_table(table)?;
        self.run_json(&remove_table(table))
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, ProxyError> {
        let mut cmd = self.command(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let command = format!("{cmd:?}");
        let describe = || command.clone();
        let mut child = cmd.spawn().map_err(|source| ProxyError::Spawn {
            command: describe(),
            source,
        })?;
        let mut write_error = None;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // nft reads all of stdin before it answers, so writing first
            // and then collecting the output cannot deadlock. Dropping the
            // pipe closes it.
            write_error = pipe.write_all(input).err();
        }
        let output = child
            .wait_with_output()
            .map_err(|source| ProxyError::Spawn {
                command: describe(),
                source,
            })?;
        // nft's own complaint explains a broken pipe better than the pipe.
        if let (Some(source), true) = (write_error, output.status.success()) {
            return Err(ProxyError::Spawn {
                command: describe(),
                source,
            });
        }
        if !output.status.success() {
            return Err(ProxyError::Nft {
                command: describe(),
                status: output.status.code(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

fn check_table(table: &str) -> Result<(), ProxyError> {
    if valid_identifier(table) {
        Ok(())
    } else {
        Err(ProxyError::InvalidName {
            name: table.to_string(),
        })
    }
}

/// Installs `ruleset` in one atomic nft transaction: an update from
/// `previous` (what this caller applied last, see [`Ruleset::update_from`])
/// or, without one, a replacement of the whole table.
pub fn apply(nft: &Nft, ruleset: &Ruleset, previous: Option<&Ruleset>) -> Result<(), ProxyError> {
    check_table(&ruleset.table)?;
    let transaction = match previous {
        Some(prev) if prev.table == ruleset.table => ruleset.update_from(prev),
        _ => ruleset.replace_all(),
    };
    nft.run_json(&transaction)
}

/// The proxy of one agent: remembers what it applied last, so an update
/// keeps affinity entries, a repeated snapshot costs no nft run, and a
/// failed update falls back to replacing the whole table.
#[derive(Debug)]
pub struct Proxy {
    nft: Nft,
    applied: Option<Ruleset>,
}

impl Proxy {
    /// A proxy that has applied nothing yet: its first apply replaces the
    /// table whatever a previous run left there.
    pub fn new(nft: Nft) -> Self {
        Self { nft, applied: None }
    }

    /// The runner.
    pub fn nft(&self) -> &Nft {
        &self.nft
    }

    /// What was applied last (`None` after a failure: the table's state is
    /// then unknown and the next apply replaces it).
    pub fn applied(&self) -> Option<&Ruleset> {
        self.applied.as_ref()
    }

    /// Brings the table to `ruleset`. Returns whether nft ran (false when
    /// the ruleset equals the last one applied).
    pub fn apply(&mut self, ruleset: Ruleset) -> Result<bool, ProxyError> {
        if self.applied.as_ref() == Some(&ruleset) {
            tracing::trace!(table = %ruleset.table, "proxy rules unchanged");
            return Ok(false);
        }
        let previous = self.applied.take();
        if let Some(prev) = &previous {
            match apply(&self.nft, &ruleset, Some(prev)) {
                Ok(()) => {
                    self.applied = Some(ruleset);
                    return Ok(true);
                }
                // Somebody changed the table behind our back (or it is
                // gone): replace it whole.
                Err(err) => tracing::warn!(
                    table = %ruleset.table,
                    error = %err,
                    "incremental proxy update failed; replacing the table"
                ),
            }
        }
        apply(&self.nft, &ruleset, None)?;
        self.applied = Some(ruleset);
        Ok(true)
    }

    /// Replaces the whole table even if nothing changed (e.g. periodically,
    /// to repair edits made by others).
    pub fn resync(&mut self, ruleset: Ruleset) -> Result<(), ProxyError> {
        self.applied = None;
        apply(&self.nft, &ruleset, None)?;
        self.applied = Some(ruleset);
        Ok(())
    }

    /// Removes the table (absent is fine) and forgets it.
    pub fn remove(&mut self, table: &str) -> Result<(), ProxyError> {
        self.applied = None;
        self.nft.remove(table)
    }
}

/// A listing made comparable: handles dropped, the metainfo entry dropped,
/// objects ordered by kind and name (the kernel lists chains in creation
/// order, which an update changes; rules keep their order within a chain),
/// set elements sorted (hash sets list in hash order) and affinity entries'
/// `expires` dropped.
pub fn normalize_listing(listing: &str) -> Result<Value, ProxyError> {
    let mut value: Value = serde_json::from_str(listing).map_err(ProxyError::Decode)?;
    if let Some(items) = value.get_mut("nftables").and_then(Value::as_array_mut) {
        items.retain(|item| item.get("metainfo").is_none());
        // Stable: rules of one chain keep their order.
        items.sort_by_key(|item| {
            let (kind, body) = match item.as_object().and_then(|o| o.iter().next()) {
                Some((kind, body)) => (kind.as_str(), body),
                None => ("", &Value::Null),
            };
            let rank = match kind {
                "table" => 0,
                "set" | "map" => 1,
                "chain" => 2,
                _ => 3,
            };
            let key = if kind == "rule" { "chain" } else { "name" };
            let name = body
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            (rank, name)
        });
        for item in items.iter_mut() {
            if let Some(obj) = item.as_object_mut().and_then(|o| o.values_mut().next()) {
                strip(obj);
            }
        }
    }
    Ok(value)
}

fn strip(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("handle");
            map.remove("expires");
            for (key, inner) in map.iter_mut() {
                strip(inner);
                if key == "elem" || key == "set" {
                    if let Value::Array(items) = inner {
                        items.sort_by_key(|v| v.to_string());
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_program(program: &str) -> Nft {
        Nft {
            program: PathBuf::from(program),
            netns: None,
        }
    }

    #[test]
    fn nft_failures_carry_the_command_and_its_stderr() {
        let err = with_program("false")
            .run_json(&serde_json::json!({"nftables": []}))
            .unwrap_err();
        assert!(
            matches!(&err, ProxyError::Nft { status: Some(1), command, .. } if command.contains("false")),
            "{err:?}"
        );
        let err = with_program("/nonexistent/nft").list("selur").unwrap_err();
        assert!(matches!(err, ProxyError::Spawn { .. }), "{err:?}");
        // A program that reads the whole transaction and exits 0 succeeds.
        // (Not `true`: it may exit before the write, and a transaction nft
        // did not read is rightly an error.)
        let dir = tempfile::tempdir().unwrap();
        let reader = dir.path().join("reads-stdin");
        std::fs::write(&reader, "#!/bin/sh\ncat >/dev/null\n").unwrap();
        std::fs::set_permissions(&reader, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        with_program(reader.to_str().unwrap())
            .run_json(&serde_json::json!({"nftables": []}))
            .unwrap();
    }

    #[test]
    fn table_names_are_checked_before_nft_runs() {
        let err = with_program("true").remove("bad name").unwrap_err();
        assert!(matches!(err, ProxyError::InvalidName { .. }), "{err:?}");
    }

    #[test]
    fn netns_runs_go_through_nsenter() {
        let cmd = Nft::in_netns("/run/netns/x").command(&["-j", "list", "tables"]);
        let line = format!("{cmd:?}");
        assert!(
            line.starts_with("\"nsenter\" \"--net=/run/netns/x\" \"--\" \"nft\" \"-j\""),
            "{line}"
        );
    }

    #[test]
    fn listings_compare_without_handles_or_order() {
        let a = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},
            {"table":{"family":"ip6","name":"t","handle":4}},
            {"chain":{"family":"ip6","table":"t","name":"b","handle":2}},
            {"chain":{"family":"ip6","table":"t","name":"a","handle":1}},
            {"rule":{"family":"ip6","table":"t","chain":"b","handle":9,"expr":[{"accept":null}]}},
            {"set":{"family":"ip6","table":"t","name":"s","handle":3,"elem":["fd01::2","fd01::1"]}}]}"#;
        let b = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},
            {"table":{"family":"ip6","name":"t","handle":7}},
            {"set":{"family":"ip6","table":"t","name":"s","handle":8,"elem":["fd01::1","fd01::2"]}},
            {"chain":{"family":"ip6","table":"t","name":"a","handle":5}},
            {"chain":{"family":"ip6","table":"t","name":"b","handle":6}},
            {"rule":{"family":"ip6","table":"t","chain":"b","handle":12,"expr":[{"accept":null}]}}]}"#;
        assert_eq!(normalize_listing(a).unwrap(), normalize_listing(b).unwrap());
        let c = b.replace("accept", "drop");
        assert_ne!(
            normalize_listing(a).unwrap(),
            normalize_listing(&c).unwrap()
        );
    }
}
