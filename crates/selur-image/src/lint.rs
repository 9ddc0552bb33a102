//! Checks that an image fits the Lago Grey model: static binaries only (read
//! from ELF headers in the layer blobs — `ldd` is never run), a non-root
//! user, the Lago Grey labels, and a compressed-size budget.
//!
//! Layers are read straight from the store's blobs (gzip, zstd or plain tar)
//! and merged the way they would be unpacked: files of upper layers shadow
//! lower ones and whiteouts (`.wh.*`) remove them, so only what a container
//! would actually see is checked.

mod elf;

use std::fmt;

use serde::Serialize;

use crate::build::tree::{Kind, Tree, TreeError};
use crate::digest::Digest;
use crate::store::{ImageStore, StoreError};
use elf::Exe;

/// Labels every Lago Grey image carries.
pub const LAGO_GREY_LABELS: [&str; 6] = [
    "io.hyperpolymath.size-mb",
    "io.hyperpolymath.pq-crypto",
    "io.hyperpolymath.formally-verified",
    "io.hyperpolymath.classification",
    "org.opencontainers.image.title",
    "org.opencontainers.image.version",
];

/// How bad a finding is; `Error`s make [`LintReport::has_errors`] true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The image will not work as a Lago Grey image (or breaks policy).
    Error,
    /// Likely a mistake, or missing metadata.
    Warning,
    /// For information only.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// One thing the lint found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// Stable identifier: `dynamic-binary`, `root-user`, `missing-label`, ...
    pub code: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
    /// The file in the image it is about, if any (absolute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}] {}", self.severity, self.code, self.message)
    }
}

/// Everything the lint found about one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LintReport {
    /// Manifest digest of the linted image.
    pub digest: Digest,
    /// Manifest + config + compressed layers, bytes.
    pub size: u64,
    /// Errors first, then warnings, then information.
    pub findings: Vec<Finding>,
}

impl LintReport {
    /// Is any finding an [`Severity::Error`]?
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// The findings with code `code`.
    pub fn with_code<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings.iter().filter(move |f| f.code == code)
    }
}

/// Why an image could not be linted at all.
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    /// The image or one of its blobs is not in the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A layer blob does not decompress or is not a tar.
    #[error("layer {digest} cannot be read: {reason}; the blob may be corrupt: remove the image and import it again")]
    Layer {
        /// The layer's digest.
        digest: Digest,
        /// What went wrong.
        reason: String,
    },
}

impl From<TreeError> for LintError {
    fn from(e: TreeError) -> Self {
        match e {
            TreeError::Store(s) => LintError::Store(s),
            TreeError::Layer { digest, source } => LintError::Layer {
                digest,
                reason: source.to_string(),
            },
        }
    }
}

fn finding(
    severity: Severity,
    code: &'static str,
    message: String,
    path: Option<String>,
) -> Finding {
    Finding {
        severity,
        code,
        message,
        path,
    }
}

/// Lint the stored image `name` (a name or digest); `budget_bytes` is the
/// largest acceptable compressed size.
pub fn lint(
    store: &ImageStore,
    name: &str,
    budget_bytes: Option<u64>,
) -> Result<LintReport, LintError> {
    let info = store.inspect(name)?;
    let mut out = Vec::new();
    let layers: Vec<Digest> = info.layers.iter().map(|l| l.digest.clone()).collect();
    // Only executables are parsed; everything else is metadata only.
    let tree: Tree<Exe> = Tree::read(store, &layers, &mut |_, mode, r, size| {
        if mode & 0o111 == 0 {
            return Ok(None);
        }
        elf::inspect(r, size).map(Some)
    })?;

    let want_machine = elf::machine_for(&info.architecture);
    let (mut elves, mut dynamic) = (0, 0);
    for (path, node) in &tree.nodes {
        let (Kind::File { .. }, Some(exe)) = (&node.kind, &node.data) else {
            continue;
        };
        if node.mode & 0o111 == 0 {
            continue;
        }
        let abs = format!("/{path}");
        match exe {
            Exe::NotElf => {}
            Exe::TooLarge(size) => out.push(finding(
                Severity::Info,
                "elf-skipped",
                format!("{abs} is {size} bytes, too large to check its linking; make sure it is static"),
                Some(abs.clone()),
            )),
            Exe::Unreadable(e) => out.push(finding(
                Severity::Warning,
                "unreadable-elf",
                format!("{abs} looks like ELF but its headers do not parse ({e}); it will probably not run"),
                Some(abs.clone()),
            )),
            Exe::Elf {
                interpreter,
                needed,
                machine,
            } => {
                elves += 1;
                if exe.is_dynamic() {
                    dynamic += 1;
                    let mut what = Vec::new();
                    if let Some(i) = interpreter {
                        what.push(format!("interpreter {i}"));
                    }
                    if !needed.is_empty() {
                        what.push(format!("needs {}", needed.join(", ")));
                    }
                    out.push(finding(
                        Severity::Error,
                        "dynamic-binary",
                        format!(
                            "{abs} is dynamically linked ({}), but Lago Grey images have no dynamic loader or shared libraries; build it statically: Rust with -C target-feature=+crt-static or --target x86_64-unknown-linux-musl, Go with CGO_ENABLED=0, C with -static against musl",
                            what.join("; ")
                        ),
                        Some(abs.clone()),
                    ));
                }
                if let Some(want) = want_machine.filter(|w| w != machine) {
                    out.push(finding(
                        Severity::Error,
                        "wrong-architecture",
                        format!(
                            "{abs} is built for {}, but the image is {} ({}); build it for the image's architecture",
                            elf::machine_name(*machine),
                            info.architecture,
                            elf::machine_name(want)
                        ),
                        Some(abs.clone()),
                    ));
                }
            }
        }
    }
    out.push(finding(
        Severity::Info,
        "elf-summary",
        format!("{elves} ELF executable(s) checked, {dynamic} dynamically linked"),
        None,
    ));

    check_entrypoint(
        &tree,
        info.entrypoint.as_ref().or(info.cmd.as_ref()),
        &mut out,
    );

    let user = info.user.clone().unwrap_or_default();
    let uid = user.split(':').next().unwrap_or("");
    if matches!(uid, "" | "0" | "root") {
        let shown = if user.is_empty() {
            "no USER, so root".to_string()
        } else {
            format!("USER {user}")
        };
        out.push(finding(
            Severity::Error,
            "root-user",
            format!("the image runs as root ({shown}); add USER 65532 (or another non-root numeric UID) to the Containerfile"),
            None,
        ));
    }

    for l in LAGO_GREY_LABELS {
        if !info.labels.contains_key(l) {
            out.push(finding(
                Severity::Warning,
                "missing-label",
                format!("label {l} is missing; add LABEL {l}=\"...\" (Selur uses the Lago Grey labels for scheduling and policy)"),
                None,
            ));
        }
    }

    let mb = info.size as f64 / 1e6;
    if let Some(budget) = budget_bytes.filter(|b| info.size > *b) {
        out.push(finding(
            Severity::Error,
            "size-budget",
            format!(
                "the image is {} bytes compressed ({mb:.1} MB), {} bytes over the budget of {budget}; drop unneeded files, strip binaries (-s -w, strip = true), or raise the budget",
                info.size,
                info.size - budget
            ),
            None,
        ));
    }
    if let Some(label) = info.labels.get("io.hyperpolymath.size-mb") {
        match label.trim().parse::<f64>() {
            Ok(claimed) if mb > 0.0 && ((claimed - mb).abs() / mb) > 0.5 => out.push(finding(
                Severity::Warning,
                "size-label-mismatch",
                format!("label io.hyperpolymath.size-mb says {claimed} MB but the image is {mb:.1} MB compressed; update the label"),
                None,
            )),
            Ok(_) => {}
            Err(_) => out.push(finding(
                Severity::Warning,
                "size-label-invalid",
                format!("label io.hyperpolymath.size-mb={label:?} is not a number of megabytes such as \"14.6\""),
                None,
            )),
        }
    }

    out.sort_by_key(|f| f.severity);
    Ok(LintReport {
        digest: info.digest,
        size: info.size,
        findings: out,
    })
}

/// The program the image starts must exist and be executable.
fn check_entrypoint(tree: &Tree<Exe>, argv: Option<&Vec<String>>, out: &mut Vec<Finding>) {
    let Some(prog) = argv.and_then(|a| a.first()) else {
        out.push(finding(
            Severity::Warning,
            "no-entrypoint",
            "the image has neither ENTRYPOINT nor CMD; add ENTRYPOINT [\"/usr/bin/<binary>\"]"
                .into(),
            None,
        ));
        return;
    };
    if !prog.starts_with('/') {
        out.push(finding(
            Severity::Warning,
            "relative-entrypoint",
            format!("the entrypoint {prog:?} is looked up in PATH; give its absolute path, e.g. /usr/bin/{prog}"),
            None,
        ));
        return;
    }
    let resolved = tree.resolve(prog, true);
    match tree.nodes.get(&resolved) {
        Some(n) if matches!(n.kind, Kind::File { .. }) && n.mode & 0o111 != 0 => {}
        Some(n) if matches!(n.kind, Kind::File { .. }) => out.push(finding(
            Severity::Error,
            "entrypoint-not-executable",
            format!("the entrypoint {prog} is not executable (mode {:o}); COPY --chmod=0755 it", n.mode),
            Some(prog.clone()),
        )),
        _ => out.push(finding(
            Severity::Error,
            "entrypoint-missing",
            format!("the entrypoint {prog} is not a file in the image; COPY the binary there or fix ENTRYPOINT"),
            Some(prog.clone()),
        )),
    }
}
