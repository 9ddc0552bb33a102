//! `selur-shim`: the per-container supervisor as its own small executable.
//! The agent starts one per container (it holds the container's stdio,
//! writes its json-file log and records its exit status; see
//! `selur_runtime::shim`). It does exactly what `selur shim` does, but a
//! process of this small binary costs far less memory than one of the full
//! `selur` binary, which matters with one supervisor per container.

use std::process::ExitCode;

fn main() -> ExitCode {
    let opts = match selur_runtime::shim::ShimOptions::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("selur-shim: {e}");
            return ExitCode::from(2);
        }
    };
    match selur_runtime::shim::run(&opts) {
        Ok(code) => ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(255)),
        Err(e) => {
            eprintln!("selur-shim: {e}");
            ExitCode::FAILURE
        }
    }
}
