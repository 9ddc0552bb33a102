//! The long-running stand-ins for the seed's system services: `vordr`
//! (the DaemonSet monitor reading `/var/lib/obli-pkg/traces`) and `svalinn`
//! (the sidecar sharing a `/crypto` volume). They log a line every interval
//! and stop cleanly on SIGTERM/SIGINT. They do no real monitoring or crypto.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, SystemTime};

use crate::log::{log, object, rfc3339, Val};
use crate::signals;

/// Settings of a daemon personality, from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Between two periodic lines (`INTERVAL_SECONDS`, default 10).
    pub interval: Duration,
    /// vordr: the traces directory (`TRACES_DIR`); svalinn: the shared
    /// volume (`CRYPTO_DIR`).
    pub dir: PathBuf,
}

impl Settings {
    /// Settings of personality `name` through `env`.
    pub fn from_env(name: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let interval = match env("INTERVAL_SECONDS") {
            None => Duration::from_secs(10),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| format!("INTERVAL_SECONDS={v:?} is not a positive number"))?,
        };
        let (var, default) = if name == "vordr" {
            ("TRACES_DIR", "/var/lib/obli-pkg/traces")
        } else {
            ("CRYPTO_DIR", "/crypto")
        };
        let dir = PathBuf::from(env(var).filter(|s| !s.is_empty()).unwrap_or(default.into()));
        Ok(Settings { interval, dir })
    }
}

/// Entries of the traces directory, or why it cannot be read.
pub fn count_traces(dir: &Path) -> Result<u64, String> {
    fs::read_dir(dir)
        .map(|d| d.count() as u64)
        .map_err(|e| e.to_string())
}

/// Write `svalinn.json` into the shared volume (atomically), so the other
/// containers of the pod can see the sidecar is up.
pub fn announce(dir: &Path) -> Result<PathBuf, String> {
    let file = dir.join("svalinn.json");
    let tmp = dir.join(format!(".svalinn.json.{}.tmp", std::process::id()));
    let now = rfc3339(SystemTime::now(), false);
    let body = object(&[
        ("status", Val::Str("ready")),
        ("since", Val::Str(&now)),
        ("pid", Val::Int(i64::from(std::process::id()))),
    ]) + "\n";
    fs::write(&tmp, body)
        .and_then(|()| fs::rename(&tmp, &file))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            e.to_string()
        })?;
    Ok(file)
}

/// One periodic line.
fn tick(name: &str, s: &Settings, n: u64) {
    if name == "vordr" {
        let dir = s.dir.display().to_string();
        match count_traces(&s.dir) {
            Ok(t) => log(
                "info",
                "scan",
                &[
                    ("dir", Val::Str(&dir)),
                    ("traces", Val::Int(t as i64)),
                    ("scan", Val::Int(n as i64)),
                ],
            ),
            Err(e) => log(
                "warn",
                "traces directory unavailable",
                &[("dir", Val::Str(&dir)), ("error", Val::Str(&e))],
            ),
        }
    } else {
        log("info", "heartbeat", &[("beat", Val::Int(n as i64))]);
    }
}

/// Run daemon personality `name` until a signal arrives; returns the exit
/// status (0 after a signal).
pub fn run(name: &str, sigs: &Receiver<i32>, s: &Settings) -> i32 {
    let dir = s.dir.display().to_string();
    log(
        "info",
        "started",
        &[
            ("service", Val::Str(name)),
            ("dir", Val::Str(&dir)),
            ("interval_seconds", Val::Num(s.interval.as_secs_f64())),
            ("note", Val::Str("local stand-in built from selur-demo")),
        ],
    );
    if name == "svalinn" {
        match announce(&s.dir) {
            Ok(f) => log(
                "info",
                "crypto volume ready",
                &[("file", Val::Str(&f.display().to_string()))],
            ),
            Err(e) => log(
                "warn",
                "crypto volume not writable",
                &[("dir", Val::Str(&dir)), ("error", Val::Str(&e))],
            ),
        }
    }
    let mut n = 0u64;
    loop {
        n += 1;
        tick(name, s, n);
        match sigs.recv_timeout(s.interval) {
            Ok(sig) => {
                log(
                    "info",
                    "shutting down",
                    &[("signal", Val::Str(signals::name(sig)))],
                );
                return 0;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_per_personality() {
        let v = Settings::from_env("vordr", |_| None).unwrap();
        assert_eq!(v.dir, PathBuf::from("/var/lib/obli-pkg/traces"));
        assert_eq!(v.interval, Duration::from_secs(10));
        let s = Settings::from_env("svalinn", |k| {
            (k == "INTERVAL_SECONDS").then(|| "0.5".into())
        })
        .unwrap();
        assert_eq!(s.dir, PathBuf::from("/crypto"));
        assert_eq!(s.interval, Duration::from_millis(500));
        assert!(
            Settings::from_env("vordr", |k| (k == "INTERVAL_SECONDS").then(|| "0".into())).is_err()
        );
    }

    #[test]
    fn stops_on_a_signal_and_announces_itself() {
        let d = std::env::temp_dir().join(format!("selur-demo-svalinn-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(libc::SIGTERM).unwrap();
        let s = Settings {
            interval: Duration::from_secs(60),
            dir: d.clone(),
        };
        assert_eq!(run("svalinn", &rx, &s), 0);
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(d.join("svalinn.json")).unwrap()).unwrap();
        assert_eq!(v["status"], "ready");
        assert_eq!(count_traces(&d), Ok(1));
        fs::remove_dir_all(&d).unwrap();
        assert!(count_traces(&d).is_err());
    }
}
