//! `selur-demo`: one small static multi-call binary that plays every program
//! the seed's manifests run from the Lago Grey images, so those manifests
//! can run on a machine without the real images (see
//! `examples/images/README.md`). It is a demo and test workload, not part of
//! Selur itself.
//!
//! The personality is the program name (`argv[0]`'s base name, as with
//! busybox), or the first argument when called as `selur-demo`:
//!
//! - `web-server`, `frontend-service`, `backend-service`, `my-service`: HTTP
//!   on `[::]:8080` (`/health`, `/api/...`, `/metrics`);
//! - `process-data`, `backup-script`: a short batch run;
//! - `obli-pkg`: the health check interface (`status`, `set-state`);
//! - `svalinn`, `vordr`: long-running sidecar / node monitor.

mod daemons;
mod http;
mod jobs;
mod log;
mod obli;
mod server;
mod signals;
mod web;

use std::net::{Ipv6Addr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;

use log::{log, Val};

/// HTTP servers.
const WEB: [&str; 4] = [
    "web-server",
    "frontend-service",
    "backend-service",
    "my-service",
];
/// Short batch runs.
const JOBS: [&str; 2] = ["process-data", "backup-script"];
/// Long-running loggers.
const DAEMONS: [&str; 2] = ["svalinn", "vordr"];
/// The health check tool.
const OBLI: &str = "obli-pkg";

fn known(name: &str) -> bool {
    WEB.contains(&name) || JOBS.contains(&name) || DAEMONS.contains(&name) || name == OBLI
}

fn usage() -> String {
    let names: Vec<&str> = WEB
        .iter()
        .chain(&JOBS)
        .chain(&DAEMONS)
        .copied()
        .chain([OBLI])
        .collect();
    format!(
        "usage: selur-demo NAME [ARGS...], or run it under one of these names (a link or copy):\n  {}\n\
         web servers: PORT (default 8080; backend-service 8081), READY_AFTER_SECONDS, FAIL_HEALTH_FILE\n\
         batch jobs:  ITEMS (10), WORK_MS (200), EXIT_CODE (0)\n\
         svalinn/vordr: INTERVAL_SECONDS (10), CRYPTO_DIR (/crypto) / TRACES_DIR (/var/lib/obli-pkg/traces)\n\
         obli-pkg:    status | set-state '<json>'; state file OBLI_PKG_STATE (/var/lib/obli-pkg/state.json)",
        names.join(", ")
    )
}

/// The personality and its arguments: `argv[0]`'s base name if it is one,
/// else `argv[1]`.
fn personality(args: &[String]) -> Option<(&str, &[String])> {
    let argv0 = args.first()?;
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    if known(base) {
        return Some((base, &args[1..]));
    }
    let name = args.get(1)?;
    known(name).then(|| (name.as_str(), &args[2..]))
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let code = match personality(&args) {
        Some((OBLI, rest)) => obli::run(rest),
        Some((name, _)) => run_long(name),
        None if args.get(1).is_some_and(|a| a == "--help" || a == "-h") => {
            println!("{}", usage());
            0
        }
        None => {
            eprintln!("{}", usage());
            2
        }
    };
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
}

/// Personalities that take signals: web servers, jobs and daemons.
fn run_long(name: &str) -> i32 {
    // Before any thread exists, so every thread inherits the blocked mask.
    let sigs = match signals::install() {
        Ok(s) => s,
        Err(e) => {
            log(
                "error",
                "cannot set up signal handling",
                &[("error", Val::Str(&e.to_string()))],
            );
            return 1;
        }
    };
    let fail = |e: String| {
        log(
            "error",
            "bad settings",
            &[("service", Val::Str(name)), ("error", Val::Str(&e))],
        );
        2
    };
    if JOBS.contains(&name) {
        return match jobs::Settings::from_env(env) {
            Ok(s) => jobs::run(name, &sigs, &s),
            Err(e) => fail(e),
        };
    }
    if DAEMONS.contains(&name) {
        return match daemons::Settings::from_env(name, env) {
            Ok(s) => daemons::run(name, &sigs, &s),
            Err(e) => fail(e),
        };
    }
    let config = match web::Config::from_env(name, env) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    run_web(config, sigs)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| env("HOSTNAME"))
        .unwrap_or_else(|| "unknown".into())
}

fn run_web(config: web::Config, sigs: std::sync::mpsc::Receiver<i32>) -> i32 {
    let name = config.service.clone();
    let listener = match TcpListener::bind((Ipv6Addr::UNSPECIFIED, config.port)) {
        Ok(l) => l,
        Err(e) => {
            log(
                "error",
                "cannot listen",
                &[
                    ("service", Val::Str(&name)),
                    ("port", Val::Int(i64::from(config.port))),
                    ("error", Val::Str(&e.to_string())),
                ],
            );
            return 1;
        }
    };
    let stop = match server::Stop::new(&listener) {
        Ok(s) => s,
        Err(e) => {
            log(
                "error",
                "cannot listen",
                &[("error", Val::Str(&e.to_string()))],
            );
            return 1;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let ready_after = config.ready_after.as_secs_f64();
    let app = Arc::new(web::App::new(config, hostname()));
    log(
        "info",
        "listening",
        &[
            ("service", Val::Str(&name)),
            ("addr", Val::Str(&addr)),
            ("hostname", Val::Str(&app.hostname)),
            ("pid", Val::Int(i64::from(std::process::id()))),
            ("ready_after_seconds", Val::Num(ready_after)),
        ],
    );
    let s = Arc::clone(&stop);
    let watcher = std::thread::Builder::new()
        .name("shutdown".into())
        .spawn(move || {
            if let Ok(sig) = sigs.recv() {
                log(
                    "info",
                    "shutting down",
                    &[
                        ("service", Val::Str(&name)),
                        ("signal", Val::Str(signals::name(sig))),
                    ],
                );
                s.trigger();
            }
        });
    if let Err(e) = watcher {
        log(
            "error",
            "cannot start the signal watcher",
            &[("error", Val::Str(&e.to_string()))],
        );
        return 1;
    }
    server::serve(listener, app, stop);
    log("info", "stopped", &[]);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn personality_from_program_name_or_first_argument() {
        let a = args(&["/usr/bin/web-server", "x"]);
        assert_eq!(personality(&a), Some(("web-server", &a[1..])));
        let a = args(&["obli-pkg", "status"]);
        assert_eq!(personality(&a), Some(("obli-pkg", &a[1..])));
        let a = args(&["./target/release/selur-demo", "obli-pkg", "status"]);
        assert_eq!(personality(&a), Some(("obli-pkg", &a[2..])));
        assert_eq!(personality(&args(&["selur-demo"])), None);
        assert_eq!(personality(&args(&["selur-demo", "bash"])), None);
        assert_eq!(personality(&args(&[])), None);
    }

    #[test]
    fn usage_lists_every_name() {
        let u = usage();
        for n in WEB.iter().chain(&JOBS).chain(&DAEMONS).chain([&OBLI]) {
            assert!(u.contains(n), "{n}");
        }
    }
}
