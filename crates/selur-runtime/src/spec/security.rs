//! Privileges: capabilities, no-new-privileges, seccomp, namespaces, masked
//! paths, and the pod and container settings Selur refuses.

use std::collections::HashSet;
use std::str::FromStr;

use oci_spec::runtime::{
    Arch, Capability, LinuxCapabilities, LinuxNamespace, LinuxNamespaceType, LinuxSeccomp,
    LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall,
};

use super::{Ctx, SpecError, SpecInput};

/// The capabilities every container starts with, each kept for a common,
/// contained need (Docker's default set minus AUDIT_WRITE, MKNOD, NET_RAW,
/// SETFCAP and SYS_CHROOT, which few workloads need and which widen the
/// attack surface):
///
/// * `CAP_CHOWN`: entrypoints that `chown` their data directories at start.
/// * `CAP_DAC_OVERRIDE`: root in the container reading and writing files in
///   the image regardless of their mode bits, as images built as root expect.
/// * `CAP_FOWNER`: `chmod`/`utime` on files the process does not own
///   (package managers, unpacking archives).
/// * `CAP_FSETID`: keeping set-user/group-ID bits when root modifies files.
/// * `CAP_KILL`: a root init process signalling children running as other
///   users.
/// * `CAP_SETGID`, `CAP_SETUID`: servers that start as root and drop to an
///   unprivileged user (nginx, postgres' entrypoint, `su-exec`/`gosu`).
/// * `CAP_SETPCAP`: dropping capabilities from the bounding set, which such
///   servers do when they de-privilege themselves.
/// * `CAP_NET_BIND_SERVICE`: binding ports below 1024 (80, 443).
///
/// The kernel clears effective capabilities when a non-root user execs, so
/// containers running as non-root effectively get none of these.
pub fn default_capabilities() -> Vec<String> {
    [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect()
}

/// Paths under `/proc` and `/sys` hidden from containers (containerd's and
/// runc's defaults): kernel memory, keyrings, timers and hardware details
/// that leak host information or allow attacks on the host.
pub(crate) const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths under `/proc` left readable but not writable (containerd's and
/// runc's defaults): host-wide kernel knobs.
pub(crate) const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Refuse pod settings that would share host namespaces or need features
/// Selur does not provide, instead of quietly ignoring them.
pub(crate) fn check_pod(ctx: &Ctx) -> Result<(), SpecError> {
    let Some(spec) = ctx.pod_spec else {
        return Ok(());
    };
    let host = [
        ("hostNetwork", spec.host_network),
        ("hostPID", spec.host_pid),
        ("hostIPC", spec.host_ipc),
    ];
    for (name, value) in host {
        if value == Some(true) {
            return Err(SpecError::forbidden(
                format!("spec.{name}"),
                "Selur does not share host namespaces with containers; remove the field",
            ));
        }
    }
    if spec.share_process_namespace == Some(true) {
        return Err(SpecError::forbidden(
            "spec.shareProcessNamespace",
            "Selur gives each container its own PID namespace; remove the field",
        ));
    }
    if spec.host_users == Some(false) {
        return Err(SpecError::forbidden(
            "spec.hostUsers",
            "Selur does not support user namespaces yet; remove the field and use runAsUser \
             with a non-root uid instead",
        ));
    }
    Ok(())
}

/// Refuse container settings that would defeat isolation.
pub(crate) fn check_container(ctx: &Ctx) -> Result<(), SpecError> {
    let Some(sc) = ctx.sc else {
        return Ok(());
    };
    if sc.privileged == Some(true) {
        return Err(SpecError::forbidden(
            ctx.field("securityContext.privileged"),
            "Selur does not run privileged containers; remove privileged and add only the \
             capabilities the container needs under securityContext.capabilities.add",
        ));
    }
    if let Some(mode) = sc.proc_mount.as_deref().filter(|m| *m != "Default") {
        return Err(SpecError::invalid(
            ctx.field("securityContext.procMount"),
            mode,
            "Selur only supports the Default proc mount, which masks sensitive /proc paths",
        ));
    }
    Ok(())
}

/// `noNewPrivileges` stays on unless the pod explicitly allows escalation.
pub(crate) fn no_new_privileges(ctx: &Ctx) -> bool {
    ctx.sc.and_then(|s| s.allow_privilege_escalation) != Some(true)
}

/// Normalise a Kubernetes capability name (`NET_ADMIN`, `CAP_NET_ADMIN`,
/// `net_admin`) to `CAP_NET_ADMIN`, refusing names the kernel does not know.
fn capability(name: &str, field: String) -> Result<Capability, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare).map_err(|_| {
        SpecError::invalid(
            field,
            name,
            "not a Linux capability; use names such as NET_ADMIN or SYS_TIME (see capabilities(7))",
        )
    })
}

/// Bounding, effective and permitted sets: [`default_capabilities`], then
/// `drop: [ALL]` empties it, then `add` entries are added, then `drop`
/// entries removed (containerd's order, so `drop: [ALL], add: [X]` leaves X).
/// Inheritable and ambient stay empty so exec'd programs gain nothing.
pub(crate) fn capabilities(ctx: &Ctx) -> Result<LinuxCapabilities, SpecError> {
    let caps = ctx.sc.and_then(|s| s.capabilities.as_ref());
    let add = caps.and_then(|c| c.add.as_deref()).unwrap_or_default();
    let drop = caps.and_then(|c| c.drop.as_deref()).unwrap_or_default();
    let is_all = |s: &String| s.trim().eq_ignore_ascii_case("ALL");

    let mut set: HashSet<Capability> = if drop.iter().any(is_all) {
        HashSet::new()
    } else {
        default_capabilities()
            .iter()
            .filter_map(|c| capability(c, String::new()).ok())
            .collect()
    };
    for (i, name) in add.iter().enumerate() {
        let field = ctx.field(&format!("securityContext.capabilities.add[{i}]"));
        if is_all(name) {
            return Err(SpecError::forbidden(
                field,
                "Selur does not grant ALL capabilities; list the ones the container needs",
            ));
        }
        set.insert(capability(name, field)?);
    }
    for (i, name) in drop.iter().enumerate() {
        if !is_all(name) {
            let field = ctx.field(&format!("securityContext.capabilities.drop[{i}]"));
            set.remove(&capability(name, field)?);
        }
    }

    let mut out = LinuxCapabilities::default();
    out.set_bounding(Some(set.clone()))
        .set_effective(Some(set.clone()))
        .set_permitted(Some(set))
        .set_inheritable(Some(HashSet::new()))
        .set_ambient(Some(HashSet::new()));
    Ok(out)
}

/// PID, mount and cgroup namespaces are always new; network, IPC and UTS
/// join the pod's when the caller gives their paths.
pub(crate) fn namespaces(input: &SpecInput) -> Vec<LinuxNamespace> {
    let ns = |typ: LinuxNamespaceType, path: Option<&std::path::PathBuf>| {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(typ).set_path(path.cloned());
        ns
    };
    vec![
        ns(LinuxNamespaceType::Pid, None),
        ns(LinuxNamespaceType::Network, input.netns.as_ref()),
        ns(LinuxNamespaceType::Ipc, input.ipcns.as_ref()),
        ns(LinuxNamespaceType::Uts, input.utsns.as_ref()),
        ns(LinuxNamespaceType::Mount, None),
        ns(LinuxNamespaceType::Cgroup, None),
    ]
}

/// Syscalls refused with `EPERM` by [`default_seccomp`], grouped by why.
const DENIED_SYSCALLS: &[&str] = &[
    // Loading code into or replacing the kernel.
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "bpf",
    // Rebooting, swapping, accounting, quotas, the kernel log.
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "syslog",
    // Changing the host's clocks.
    "settimeofday",
    "clock_settime",
    "stime",
    // Leaving or reshaping the container's namespaces and mounts. runc does
    // its own mounting and namespace setup before the filter is loaded.
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "setns",
    "unshare",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    // Escaping bind mounts through file handles.
    "open_by_handle_at",
    // Kernel attack surface rarely needed by applications.
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "lookup_dcookie",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    // Raw hardware access and obsolete interfaces.
    "iopl",
    "ioperm",
    "vm86",
    "vm86old",
    "uselib",
    "nfsservctl",
    "_sysctl",
];

/// `clone` flags that create namespaces (CLONE_NEWNS, CLONE_NEWCGROUP,
/// CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET).
const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Selur's default seccomp profile, deny-list style: every syscall is allowed
/// except those in a list of dangerous ones, which fail with `EPERM`.
///
/// Why a deny list rather than Docker's allow list: an allow list must track
/// every syscall each libc and language runtime starts using (and breaks
/// programs when it lags), while the syscalls worth refusing are a short,
/// stable set that mostly needs capabilities containers do not get anyway;
/// seccomp is the second wall here, not the first. The cost is that a new,
/// dangerous syscall is allowed until it is added to the list.
///
/// Besides the named syscalls, `clone` with any namespace-creating flag fails
/// with `EPERM`, and `clone3` (whose flags sit behind a pointer seccomp cannot
/// read) fails with `ENOSYS`, so libc falls back to `clone`, as Docker does.
/// `ptrace` and `personality` stay allowed (debuggers and 32-bit tooling).
/// Names a kernel or architecture lacks are skipped by runc and crun.
pub fn default_seccomp() -> LinuxSeccomp {
    let rule = |names: &[&str], errno: u32| {
        let mut r = LinuxSyscall::default();
        r.set_names(names.iter().map(|n| n.to_string()).collect())
            .set_action(LinuxSeccompAction::ScmpActErrno)
            .set_errno_ret(Some(errno));
        r
    };
    let mut syscalls = vec![rule(DENIED_SYSCALLS, EPERM), rule(&["clone3"], ENOSYS)];
    for flag in CLONE_NAMESPACE_FLAGS {
        // `arg0 & flag == flag`. The builder cannot fail with every field
        // set; were it to, the rule would lose its argument filter and deny
        // every clone: failing closed.
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(*flag)
            .value_two(*flag)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()
            .ok();
        let mut r = rule(&["clone"], EPERM);
        r.set_args(arg.map(|a| vec![a]));
        syscalls.push(r);
    }
    // The native ABI plus the compat ones the same CPU can run, so a 32-bit
    // syscall cannot slip past rules written for 64-bit numbers.
    let architectures = if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    };
    let mut seccomp = LinuxSeccomp::default();
    seccomp
        .set_default_action(LinuxSeccompAction::ScmpActAllow)
        .set_architectures(Some(architectures))
        .set_syscalls(Some(syscalls));
    seccomp
}
