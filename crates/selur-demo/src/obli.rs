//! `obli-pkg`: the seed's health check interface. `obli-pkg status` prints
//! `{"status":"healthy","packages":N,"last_operation":"...","integrity":"ok"}`
//! from a state file; `obli-pkg set-state '<json>'` replaces that file so a
//! test can flip a container's health through exec.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde_json::Value;

use crate::log::{object, rfc3339, Val};

/// Where the state lives unless `OBLI_PKG_STATE` says otherwise.
pub const DEFAULT_STATE: &str = "/var/lib/obli-pkg/state.json";
/// Whose entries count as packages when there is no state file.
const BIN_DIR: &str = "/usr/bin";
/// Package count when `/usr/bin` cannot be read (the seed's example).
const FALLBACK_PACKAGES: u64 = 10;

const USAGE: &str = "usage: obli-pkg status\n       obli-pkg set-state '<json object>'   (status, packages, last_operation, integrity)\nstate file: $OBLI_PKG_STATE or /var/lib/obli-pkg/state.json";

/// What `obli-pkg status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `healthy` or anything else.
    pub status: String,
    /// Installed package count.
    pub packages: u64,
    /// RFC 3339 time of the last package operation.
    pub last_operation: String,
    /// `ok` or anything else.
    pub integrity: String,
}

impl Status {
    /// The healthy state of an untouched image with `packages` packages.
    pub fn default_healthy(packages: u64, last_operation: String) -> Self {
        Status {
            status: "healthy".into(),
            packages,
            last_operation,
            integrity: "ok".into(),
        }
    }

    /// Healthy only when status is `healthy` and integrity `ok`.
    pub fn healthy(&self) -> bool {
        self.status == "healthy" && self.integrity == "ok"
    }

    /// The one-line JSON the seed shows, keys in the seed's order.
    pub fn to_json(&self) -> String {
        object(&[
            ("status", Val::Str(&self.status)),
            (
                "packages",
                Val::Int(i64::try_from(self.packages).unwrap_or(i64::MAX)),
            ),
            ("last_operation", Val::Str(&self.last_operation)),
            ("integrity", Val::Str(&self.integrity)),
        ])
    }
}

/// Read a state file's text; fields it lacks come from `defaults`.
pub fn parse_state(text: &str, defaults: &Status) -> Result<Status, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("state is not JSON: {e}"))?;
    let o = v.as_object().ok_or("state must be a JSON object")?;
    let string = |k: &str, d: &str| -> Result<String, String> {
        match o.get(k) {
            None => Ok(d.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("{k} must be a string, not {other}")),
        }
    };
    let packages = match o.get("packages") {
        None => defaults.packages,
        Some(p) => p
            .as_u64()
            .ok_or_else(|| format!("packages must be a non-negative integer, not {p}"))?,
    };
    Ok(Status {
        status: string("status", &defaults.status)?,
        packages,
        last_operation: string("last_operation", &defaults.last_operation)?,
        integrity: string("integrity", &defaults.integrity)?,
    })
}

/// The state of an image without a state file: healthy, one package per
/// entry of `bin_dir`, last operation when `bin_dir` last changed.
fn defaults(bin_dir: &Path) -> Status {
    let packages = fs::read_dir(bin_dir)
        .map(|d| d.count() as u64)
        .unwrap_or(FALLBACK_PACKAGES);
    let changed = fs::metadata(bin_dir)
        .and_then(|m| m.modified())
        .unwrap_or(UNIX_EPOCH);
    Status::default_healthy(packages, rfc3339(changed, false))
}

/// `obli-pkg status`: the JSON line to print and the exit status.
pub fn status(state: &Path, bin_dir: &Path) -> (String, i32) {
    let d = defaults(bin_dir);
    let parsed = match fs::read_to_string(state) {
        Ok(text) => parse_state(&text, &d),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(d),
        Err(e) => Err(format!("cannot read {}: {e}", state.display())),
    };
    match parsed {
        Ok(s) => (s.to_json(), if s.healthy() { 0 } else { 1 }),
        Err(error) => {
            let line = object(&[
                ("status", Val::Str("unknown")),
                ("packages", Val::Int(0)),
                ("last_operation", Val::Str("")),
                ("integrity", Val::Str("unknown")),
                ("error", Val::Str(&error)),
            ]);
            (line, 1)
        }
    }
}

/// `obli-pkg set-state JSON`: validate and write `json` to `state`
/// atomically (temporary file in the same directory, then rename).
pub fn set_state(state: &Path, json: &str, bin_dir: &Path) -> Result<Status, String> {
    let s = parse_state(json, &defaults(bin_dir))?;
    let dir = state
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = state
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("state.json");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(json.trim().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, state)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write {}: {e}", state.display())
    })?;
    Ok(s)
}

/// `obli-pkg ARGS...`; returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let state = std::env::var_os("OBLI_PKG_STATE")
        .filter(|s| !s.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_STATE), PathBuf::from);
    let bin = Path::new(BIN_DIR);
    match args {
        [cmd] if cmd == "status" => {
            let (line, code) = status(&state, bin);
            println!("{line}");
            code
        }
        [cmd, json] if cmd == "set-state" => match set_state(&state, json, bin) {
            Ok(s) => {
                println!("{}", s.to_json());
                0
            }
            Err(e) => {
                eprintln!("obli-pkg set-state: {e}");
                1
            }
        },
        [h] if h == "--help" || h == "-h" || h == "help" => {
            println!("{USAGE}");
            0
        }
        _ => {
            eprintln!("{USAGE}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("selur-demo-obli-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn missing_state_is_healthy_with_one_package_per_binary() {
        let d = tmp("missing");
        let bin = d.join("bin");
        fs::create_dir_all(&bin).unwrap();
        for n in ["a", "b", "c"] {
            fs::write(bin.join(n), "").unwrap();
        }
        let (line, code) = status(&d.join("nope/state.json"), &bin);
        assert_eq!(code, 0);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["status"], "healthy");
        assert_eq!(v["packages"], 3);
        assert_eq!(v["integrity"], "ok");
        // Keys in the seed's order.
        assert!(line.starts_with(r#"{"status":"healthy","packages":3,"last_operation":""#));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn set_state_round_trips_and_unhealthy_exits_1() {
        let d = tmp("set");
        let state = d.join("lib/state.json");
        let s = set_state(
            &state,
            r#"{"status":"healthy","packages":10,"last_operation":"2026-02-05T10:30:15Z","integrity":"ok"}"#,
            &d,
        )
        .unwrap();
        assert!(s.healthy());
        assert_eq!(
            status(&state, &d),
            (
                r#"{"status":"healthy","packages":10,"last_operation":"2026-02-05T10:30:15Z","integrity":"ok"}"#.to_string(),
                0
            )
        );
        set_state(&state, r#"{"status":"degraded"}"#, &d).unwrap();
        let (line, code) = status(&state, &d);
        assert_eq!(code, 1);
        assert!(line.starts_with(r#"{"status":"degraded","#), "{line}");
        set_state(&state, r#"{"integrity":"corrupt"}"#, &d).unwrap();
        assert_eq!(status(&state, &d).1, 1);
        // No temporary files left behind.
        assert_eq!(fs::read_dir(d.join("lib")).unwrap().count(), 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_state_is_refused_or_reported() {
        let d = tmp("bad");
        let state = d.join("state.json");
        assert!(set_state(&state, "[1]", &d).is_err());
        assert!(set_state(&state, r#"{"packages":-1}"#, &d).is_err());
        assert!(set_state(&state, r#"{"status":1}"#, &d).is_err());
        assert!(!state.exists());
        fs::write(&state, "not json").unwrap();
        let (line, code) = status(&state, &d);
        assert_eq!(code, 1);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["status"], "unknown");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn unknown_subcommands_are_usage_errors() {
        assert_eq!(run(&["frobnicate".to_string()]), 2);
        assert_eq!(run(&[]), 2);
    }
}
