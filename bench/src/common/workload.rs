//! What runs in the pods and in the floor's bundles.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Result};
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ImageChoice {
    Auto,
    Demo,
    Busybox,
}

/// What runs in the pods and in the floor's bundles.
pub struct Workload {
    /// Name of the image and what to say in the header.
    pub label: String,
    /// (source file, path inside the image).
    pub binary: (PathBuf, &'static str),
    /// The process the container runs.
    pub argv: Vec<String>,
    /// The pod's `command` (None: the image's CMD).
    pub pod_command: Option<Vec<String>>,
    pub containerfile: String,
}

/// The demo web server if `demo` names a file (or `choice` is Demo), else busybox.
pub fn workload(choice: ImageChoice, demo: Option<&Path>) -> Result<Workload> {
    let demo = match (choice, demo) {
        (ImageChoice::Busybox, _) => None,
        (_, Some(d)) if d.is_file() => Some(d.to_path_buf()),
        (ImageChoice::Demo, _) => {
            bail!("--image demo: no selur-demo binary (build it with scripts/build-demo.sh or pass --demo PATH)")
        }
        _ => None,
    };
    Ok(match demo {
        Some(d) => Workload {
            label: format!("static selur-demo web-server ({})", d.display()),
            binary: (d, "usr/bin/web-server"),
            argv: vec!["/usr/bin/web-server".into()],
            pod_command: None,
            containerfile: "FROM scratch\nCOPY web-server /usr/bin/web-server\nUSER 65532\nCMD [\"/usr/bin/web-server\"]\n".into(),
        },
        None => {
            ensure!(
                Path::new("/bin/busybox").is_file(),
                "no selur-demo binary and no /bin/busybox (apt-get install busybox-static)"
            );
            let argv: Vec<String> = ["/bin/busybox", "sleep", "3600"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            Workload {
                label: "static busybox, `sleep 3600`".into(),
                binary: (PathBuf::from("/bin/busybox"), "bin/busybox"),
                pod_command: Some(argv.clone()),
                argv,
                containerfile: "FROM scratch\nCOPY busybox /bin/busybox\nUSER 65532\n".into(),
            }
        }
    })
}

/// Where `scripts/build-demo.sh` puts the demo binary, seen from the bench
/// executable (target/release/X) or the current directory.
pub fn default_demo() -> Option<PathBuf> {
    let exe_dir = std::env::current_exe().ok()?.parent()?.to_path_buf();
    let rel = Path::new("x86_64-unknown-linux-gnu/release/selur-demo");
    let candidates = [
        exe_dir.parent().map(|t| t.join(rel)),
        Some(Path::new("target").join(rel)),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}
