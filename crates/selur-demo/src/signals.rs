//! SIGTERM/SIGINT delivered to a thread as plain values.
//!
//! The demo usually runs as PID 1 of its container, where the kernel drops
//! signals whose disposition is the default, so a plain `SIGTERM` would be
//! ignored and the pod would wait for its grace period to end in SIGKILL.
//! The signals are therefore blocked in every thread (the mask is inherited,
//! hence [`install`] must run before any thread is spawned), given a no-op
//! handler, and taken with `sigwait` by one dedicated thread.

use std::io;
use std::sync::mpsc;

/// Signals the demo reacts to.
const SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

extern "C" fn ignore(_: libc::c_int) {}

/// Block SIGTERM and SIGINT in the calling thread (and so in every thread it
/// spawns later) and start a thread that sends each one that arrives, as
/// its number, on the returned channel.
pub fn install() -> io::Result<mpsc::Receiver<i32>> {
    // SAFETY: `sigset_t` is plain data that sigemptyset initialises;
    // sigaction/pthread_sigmask get valid pointers to locals and the handler
    // is an async-signal-safe function that does nothing.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = ignore as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut act.sa_mask);
            if libc::sigaction(s, &act, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        set
    };
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is an initialised signal set and `sig` a valid
            // out-pointer.
            let rc = unsafe { libc::sigwait(&set, &mut sig) };
            if rc == 0 && tx.send(sig).is_err() {
                return;
            }
        })?;
    Ok(rx)
}

/// The conventional exit status of a process killed by `sig`.
pub fn exit_status(sig: i32) -> i32 {
    128 + sig
}

/// The signal's name, for log lines.
pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}
