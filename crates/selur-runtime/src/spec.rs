//! From a pod, one of its containers and its image config to an OCI runtime
//! spec, as a pure function.
//!
//! [`build_spec`] follows Kubernetes' semantics where Kubernetes has them
//! (kubelet and containerd's CRI plugin are the reference) and Selur's
//! security defaults everywhere else:
//!
//! * the process never gains privileges it was not given (`noNewPrivileges`
//!   unless `allowPrivilegeEscalation: true`), starts with
//!   [`default_capabilities`] adjusted by `capabilities.add`/`drop`, and runs
//!   under [`default_seccomp`] when asked;
//! * privileged containers, host namespaces, `procMount: Unmasked` and
//!   adding `ALL` capabilities are refused rather than silently weakened;
//! * `/proc` and `/sys` are masked and read-only as in runc and containerd.
//!
//! Everything that needs I/O (resolving Secrets, preparing volumes, writing
//! `/etc/hosts`, mounting the root filesystem) is the caller's and arrives
//! resolved in [`SpecInput`].

use std::collections::HashMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, PodSpec, SecurityContext};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{Linux, Process, Root, Spec};

mod mounts;
mod process;
mod resources;
mod security;

#[cfg(test)]
mod tests;

pub use resources::{pod_limits, qos_class, QosClass};
pub use security::{default_capabilities, default_seccomp};

/// `PATH` for processes whose image and pod do not set one (Docker's and
/// containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The pids cgroup limit used when [`SpecInput::pids_limit`] is `None`: high
/// enough for real workloads, low enough to stop a fork bomb.
pub const DEFAULT_PIDS_LIMIT: i64 = 1024;

/// Everything [`build_spec`] needs, already resolved by the caller.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    /// The pod the container belongs to (its metadata feeds annotations, its
    /// spec the pod-level security context, sysctls and QoS).
    pub pod: &'a Pod,
    /// The container to run; one of `pod.spec.containers` or
    /// `pod.spec.initContainers` (used to name fields in errors).
    pub container: &'a Container,
    /// The image's OCI config (ENTRYPOINT, CMD, ENV, USER, WORKDIR).
    pub image: &'a ImageConfiguration,
    /// The merged overlay directory; the runtime mounts it, the spec only
    /// points at it.
    pub rootfs: PathBuf,
    /// The container's hostname. Empty, or the pod's name, means the pod's
    /// hostname by Kubernetes' rule ([`pod_hostname`]: `spec.hostname`, else
    /// the name, cut to 63 characters); any other value is cut by the same
    /// rule ([`truncate_hostname`]).
    pub hostname: String,
    /// The pod's network namespace to join; `None` creates a new one.
    pub netns: Option<PathBuf>,
    /// The pod's IPC namespace to join; `None` creates a new one.
    pub ipcns: Option<PathBuf>,
    /// The pod's UTS namespace to join; `None` creates a new one.
    pub utsns: Option<PathBuf>,
    /// The container's cgroup, e.g. `/selur-<agent>/pod<uid>/<container>`.
    pub cgroups_path: String,
    /// Volume mounts with their sources already prepared on the host.
    pub mounts: Vec<VolumeMount>,
    /// Host files bound read-only over `/etc/hosts`, `/etc/resolv.conf` and
    /// `/etc/hostname`.
    pub etc_files: EtcFiles,
    /// The container's environment after `valueFrom`/`envFrom` resolution
    /// and `$(VAR)` expansion of `env[].value`, in Kubernetes order (later
    /// entries win). Image `ENV` is merged in here, so leave it out.
    pub env_resolved: Vec<(String, String)>,
    /// Apply [`default_seccomp`]; `false` runs the container unconfined.
    pub seccomp: bool,
    /// The pids cgroup limit; `None` means [`DEFAULT_PIDS_LIMIT`], zero or a
    /// negative number sets no limit.
    pub pids_limit: Option<i64>,
}

/// A volume mount whose source the caller has prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// Absolute path inside the container.
    pub destination: PathBuf,
    /// Host path for [`MountKind::Bind`]; ignored for tmpfs.
    pub source: PathBuf,
    /// Mount read-only.
    pub read_only: bool,
    /// How the volume is mounted.
    pub kind: MountKind,
}

/// How a [`VolumeMount`] is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// A recursive bind mount of `source` (hostPath, emptyDir on disk,
    /// ConfigMap and Secret directories, ...).
    Bind,
    /// A fresh tmpfs (`emptyDir.medium: Memory`), optionally capped at
    /// `size` bytes (`emptyDir.sizeLimit`).
    Tmpfs {
        /// Size cap in bytes; `None` leaves the kernel default (half of RAM).
        size: Option<u64>,
    },
}

/// Host paths of the pod's generated `/etc` files. `None` leaves the image's
/// own file in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcFiles {
    /// Bound over `/etc/hosts`.
    pub hosts: Option<PathBuf>,
    /// Bound over `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// Bound over `/etc/hostname`.
    pub hostname: Option<PathBuf>,
}

/// Why a container cannot be turned into a runtime spec. Each variant names
/// the offending field in Kubernetes' path syntax and says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A value that must be present is missing.
    #[error("{field}: Required value: {detail}")]
    Required {
        /// e.g. `spec.containers[0].command`.
        field: String,
        /// What is missing and how to provide it.
        detail: String,
    },
    /// A value is present but unusable.
    #[error("{field}: Invalid value: {value}: {detail}")]
    Invalid {
        /// e.g. `spec.containers[0].resources.limits[cpu]`.
        field: String,
        /// The value as the user wrote it.
        value: String,
        /// Why it is unusable and what would work.
        detail: String,
    },
    /// A value asks for something Selur does not allow.
    #[error("{field}: Forbidden: {detail}")]
    Forbidden {
        /// e.g. `spec.containers[0].securityContext.privileged`.
        field: String,
        /// Why, and what to do instead.
        detail: String,
    },
}

impl SpecError {
    /// The field path the error is about.
    pub fn field(&self) -> &str {
        match self {
            SpecError::Required { field, .. }
            | SpecError::Invalid { field, .. }
            | SpecError::Forbidden { field, .. } => field,
        }
    }

    pub(crate) fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        SpecError::Required {
            field: field.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Debug,
        detail: impl Into<String>,
    ) -> Self {
        SpecError::Invalid {
            field: field.into(),
            value: format!("{value:?}"),
            detail: detail.into(),
        }
    }

    pub(crate) fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        SpecError::Forbidden {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

/// What the submodules share: where the container sits in the pod (for
/// field paths) and the two security contexts.
pub(crate) struct Ctx<'a> {
    /// `spec.containers[i]` or `spec.initContainers[i]`.
    pub(crate) path: String,
    pub(crate) pod_spec: Option<&'a PodSpec>,
    pub(crate) pod_sc: Option<&'a PodSecurityContext>,
    pub(crate) sc: Option<&'a SecurityContext>,
}

impl<'a> Ctx<'a> {
    fn new(input: &SpecInput<'a>) -> Self {
        let pod_spec = input.pod.spec.as_ref();
        let name = &input.container.name;
        let path = pod_spec
            .and_then(|s| {
                if let Some(i) = s.containers.iter().position(|c| &c.name == name) {
                    return Some(format!("spec.containers[{i}]"));
                }
                let init = s.init_containers.as_deref().unwrap_or_default();
                let i = init.iter().position(|c| &c.name == name)?;
                Some(format!("spec.initContainers[{i}]"))
            })
            .unwrap_or_else(|| format!("spec.containers[{name:?}]"));
        Ctx {
            path,
            pod_spec,
            pod_sc: pod_spec.and_then(|s| s.security_context.as_ref()),
            sc: input.container.security_context.as_ref(),
        }
    }

    /// A field below the container, e.g. `field("securityContext.runAsUser")`.
    pub(crate) fn field(&self, sub: &str) -> String {
        format!("{}.{sub}", self.path)
    }
}

/// Build the OCI runtime spec for `input.container`.
///
/// Pure: reads only `input`, touches no files and starts nothing. Fails with
/// a [`SpecError`] naming the field when the container cannot run under
/// Selur's rules (no command, a named image USER, a root user under
/// `runAsNonRoot`, privileged mode, host namespaces, unsafe sysctls, ...).
pub fn build_spec(input: &SpecInput) -> Result<Spec, SpecError> {
    let ctx = Ctx::new(input);
    security::check_pod(&ctx)?;
    security::check_container(&ctx)?;

    let mut proc = Process::default();
    // `tty: true`: the runtime makes a terminal whose master reaches the
    // shim through its console socket; otherwise the shim holds pipes.
    let tty = input.container.tty.unwrap_or(false);
    proc.set_terminal(Some(tty))
        .set_console_size(None)
        .set_args(Some(process::args(input, &ctx)?))
        .set_env(Some(process::env(input)))
        .set_cwd(process::cwd(input, &ctx)?)
        .set_user(process::user(input, &ctx)?)
        .set_capabilities(Some(security::capabilities(&ctx)?))
        .set_no_new_privileges(Some(security::no_new_privileges(&ctx)))
        // Inherit the runtime's limits rather than impose runc's 1024 files.
        .set_rlimits(None);

    let mut root = Root::default();
    root.set_path(input.rootfs.clone()).set_readonly(Some(
        ctx.sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
    ));

    let mut linux = Linux::default();
    linux
        .set_namespaces(Some(security::namespaces(input)))
        .set_uid_mappings(None)
        .set_gid_mappings(None)
        .set_resources(Some(resources::linux_resources(input, &ctx)?))
        .set_cgroups_path(Some(PathBuf::from(&input.cgroups_path)))
        .set_sysctl(Some(resources::sysctls(&ctx)?))
        .set_devices(None)
        .set_seccomp(input.seccomp.then(default_seccomp))
        .set_masked_paths(Some(strings(security::MASKED_PATHS)))
        .set_readonly_paths(Some(strings(security::READONLY_PATHS)));

    let meta = &input.pod.metadata;
    let annotations = HashMap::from([
        (
            "io.kubernetes.pod.name".to_string(),
            meta.name.clone().unwrap_or_default(),
        ),
        (
            "io.kubernetes.pod.namespace".to_string(),
            meta.namespace
                .clone()
                .unwrap_or_else(|| "default".to_string()),
        ),
        (
            "io.kubernetes.pod.uid".to_string(),
            meta.uid.clone().unwrap_or_default(),
        ),
        (
            "io.kubernetes.container.name".to_string(),
            input.container.name.clone(),
        ),
    ]);

    let mut spec = Spec::default();
    spec.set_version(oci_spec::runtime::VERSION.to_string())
        .set_root(Some(root))
        .set_mounts(Some(mounts::mounts(input, &ctx)?))
        .set_process(Some(proc))
        .set_hostname(Some(container_hostname(input)))
        .set_domainname(None)
        .set_hooks(None)
        .set_annotations(Some(annotations))
        .set_linux(Some(linux));
    Ok(spec)
}

/// The longest hostname Linux (and DNS, per label) accepts.
pub const MAX_HOSTNAME_LEN: usize = 63;

/// A pod's hostname as the kubelet makes it (`GeneratePodHostNameAndDomain`):
/// `spec.hostname` when set, else the pod's name, cut by
/// [`truncate_hostname`]. Used for the UTS namespace, `HOSTNAME`,
/// `/etc/hostname` and the pod's own line in `/etc/hosts`.
pub fn pod_hostname(pod: &Pod) -> String {
    let own = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty());
    let name = pod.metadata.name.as_deref().unwrap_or("");
    truncate_hostname(own.unwrap_or(name))
}

/// Kubernetes' `truncatePodHostnameIfNeeded`: a hostname longer than 63
/// characters is cut to 63, then trailing `-` and `.` are trimmed (a
/// hostname may not end in them).
pub fn truncate_hostname(hostname: &str) -> String {
    if hostname.len() <= MAX_HOSTNAME_LEN {
        return hostname.to_string();
    }
    // Names are ASCII (validated as DNS names); cut on a character boundary anyway.
    let mut end = MAX_HOSTNAME_LEN;
    while !hostname.is_char_boundary(end) {
        end -= 1;
    }
    hostname[..end].trim_end_matches(['-', '.']).to_string()
}

/// The hostname a container gets (see [`SpecInput::hostname`]).
pub(crate) fn container_hostname(input: &SpecInput) -> String {
    let name = input.pod.metadata.name.as_deref().unwrap_or("");
    if input.hostname.is_empty() || input.hostname == name {
        pod_hostname(input.pod)
    } else {
        truncate_hostname(&input.hostname)
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
