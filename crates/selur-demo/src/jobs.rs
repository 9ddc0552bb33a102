//! The batch personalities (`process-data`, `backup-script`): log a little
//! work and exit, so Jobs and CronJobs have something real to run.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::log::{log, Val};
use crate::signals;

/// Settings of a batch run, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Items to process (`ITEMS`, default 10).
    pub items: u64,
    /// Total time the work takes (`WORK_MS`, default 200).
    pub work: Duration,
    /// Exit status at the end (`EXIT_CODE`, default 0).
    pub exit_code: i32,
}

impl Settings {
    /// Read the settings through `env`.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        fn num<T: std::str::FromStr>(
            env: &impl Fn(&str) -> Option<String>,
            k: &str,
            d: T,
        ) -> Result<T, String> {
            match env(k) {
                None => Ok(d),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{k}={v:?} is not a valid number")),
            }
        }
        Ok(Settings {
            items: num(&env, "ITEMS", 10)?,
            work: Duration::from_millis(num(&env, "WORK_MS", 200)?),
            exit_code: num(&env, "EXIT_CODE", 0)?,
        })
    }
}

/// Which items get a progress line: about ten over the run, and the last.
pub fn reports(item: u64, items: u64) -> bool {
    let step = items.div_ceil(10).max(1);
    item % step == 0 || item == items
}

/// Run the batch personality `name`; returns the exit status.
pub fn run(name: &str, sigs: &Receiver<i32>, s: &Settings) -> i32 {
    let (noun, verb) = if name == "backup-script" {
        ("files", "backup")
    } else {
        ("items", "processing")
    };
    let started = Instant::now();
    log(
        "info",
        &format!("{verb} started"),
        &[("job", Val::Str(name)), (noun, Val::Int(s.items as i64))],
    );
    let per_item = s.work.checked_div(s.items.max(1) as u32).unwrap_or(s.work);
    for item in 1..=s.items {
        match sigs.recv_timeout(per_item) {
            Ok(sig) => {
                log(
                    "warn",
                    &format!("{verb} interrupted"),
                    &[
                        ("signal", Val::Str(signals::name(sig))),
                        ("done", Val::Int(item as i64 - 1)),
                    ],
                );
                return signals::exit_status(sig);
            }
            Err(RecvTimeoutError::Timeout) => {}
            // No signal thread: just sleep.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(per_item),
        }
        if reports(item, s.items) {
            log(
                "info",
                &format!("{verb} progress"),
                &[
                    ("job", Val::Str(name)),
                    ("done", Val::Int(item as i64)),
                    (noun, Val::Int(s.items as i64)),
                ],
            );
        }
    }
    let level = if s.exit_code == 0 { "info" } else { "error" };
    log(
        level,
        &format!("{verb} finished"),
        &[
            ("job", Val::Str(name)),
            (noun, Val::Int(s.items as i64)),
            (
                "duration_ms",
                Val::Num(started.elapsed().as_secs_f64() * 1000.0),
            ),
            ("exit_code", Val::Int(i64::from(s.exit_code))),
        ],
    );
    s.exit_code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_and_parse() {
        let s = Settings::from_env(|_| None).unwrap();
        assert_eq!(
            (s.items, s.work, s.exit_code),
            (10, Duration::from_millis(200), 0)
        );
        let env = |k: &str| match k {
            "ITEMS" => Some("3".to_string()),
            "WORK_MS" => Some("0".to_string()),
            "EXIT_CODE" => Some("7".to_string()),
            _ => None,
        };
        let s = Settings::from_env(env).unwrap();
        assert_eq!((s.items, s.exit_code), (3, 7));
        assert!(Settings::from_env(|k| (k == "ITEMS").then(|| "many".to_string())).is_err());
    }

    #[test]
    fn progress_lines_are_bounded() {
        assert_eq!((1..=10).filter(|&i| reports(i, 10)).count(), 10);
        assert_eq!((1..=1000).filter(|&i| reports(i, 1000)).count(), 10);
        assert_eq!((1..=7).filter(|&i| reports(i, 7)).count(), 7);
    }

    #[test]
    fn exits_with_the_configured_status() {
        let (_tx, rx) = std::sync::mpsc::channel();
        let s = Settings {
            items: 2,
            work: Duration::ZERO,
            exit_code: 3,
        };
        assert_eq!(run("process-data", &rx, &s), 3);
    }

    #[test]
    fn a_signal_interrupts_the_work() {
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(libc::SIGTERM).unwrap();
        let s = Settings {
            items: 5,
            work: Duration::from_secs(50),
            exit_code: 0,
        };
        assert_eq!(run("backup-script", &rx, &s), 143);
    }
}
