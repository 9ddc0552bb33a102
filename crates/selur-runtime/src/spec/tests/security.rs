//! Root file system, capabilities, privilege escalation, refusals,
//! namespaces, masked paths and seccomp.

use std::collections::BTreeSet;
use std::path::PathBuf;

use oci_spec::runtime::{
    Capabilities, Linux, LinuxNamespaceType, LinuxSeccompAction, LinuxSeccompOperator, Spec,
};
use serde_json::{json, Value};

use super::super::{build_spec, default_capabilities, default_seccomp, SpecError};
use super::{build, distroless, input, one, pod};

fn with_sc(sc: Value) -> Result<Spec, SpecError> {
    let p = one(json!({"name": "web", "image": "x", "securityContext": sc}));
    build(&p, &distroless())
}

fn names(caps: &Option<Capabilities>) -> BTreeSet<String> {
    caps.iter().flatten().map(|c| format!("CAP_{c}")).collect()
}

fn caps(sc: Value) -> BTreeSet<String> {
    let s = with_sc(sc).unwrap();
    let c = s
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    assert_eq!(c.bounding(), c.effective());
    assert_eq!(c.bounding(), c.permitted());
    assert_eq!(names(c.inheritable()), BTreeSet::new());
    assert_eq!(names(c.ambient()), BTreeSet::new());
    names(c.bounding())
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn linux(s: &Spec) -> &Linux {
    s.linux().as_ref().unwrap()
}

#[test]
fn root_points_at_rootfs_and_honours_read_only() {
    let s = with_sc(json!({})).unwrap();
    let root = s.root().as_ref().unwrap();
    assert_eq!(
        root.path(),
        &PathBuf::from("/var/lib/selur/pods/4f1c/web/rootfs")
    );
    assert_eq!(root.readonly(), Some(false));

    let s = with_sc(json!({"readOnlyRootFilesystem": true})).unwrap();
    assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
}

#[test]
fn default_capabilities_are_the_documented_minimal_set() {
    let defaults = set(&[
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
    ]);
    assert_eq!(
        default_capabilities().into_iter().collect::<BTreeSet<_>>(),
        defaults
    );
    assert_eq!(caps(json!({})), defaults);
}

#[test]
fn capabilities_add_and_drop() {
    let mut want: BTreeSet<String> = default_capabilities().into_iter().collect();
    want.insert("CAP_NET_ADMIN".into());
    want.insert("CAP_SYS_TIME".into());
    want.remove("CAP_CHOWN");
    let got = caps(json!({"capabilities": {
        "add": ["NET_ADMIN", "cap_sys_time"], "drop": ["CHOWN"]}}));
    assert_eq!(got, want);
}

#[test]
fn drop_all_then_add() {
    assert_eq!(
        caps(json!({"capabilities": {"drop": ["ALL"]}})),
        BTreeSet::new()
    );
    assert_eq!(
        caps(json!({"capabilities": {"drop": ["all"], "add": ["NET_BIND_SERVICE"]}})),
        set(&["CAP_NET_BIND_SERVICE"])
    );
}

#[test]
fn adding_all_or_unknown_capabilities_is_refused() {
    let err = with_sc(json!({"capabilities": {"add": ["ALL"]}})).unwrap_err();
    assert!(matches!(err, SpecError::Forbidden { .. }));
    assert_eq!(
        err.field(),
        "spec.containers[0].securityContext.capabilities.add[0]"
    );

    let err = with_sc(json!({"capabilities": {"drop": ["CHOWN", "NOT_A_CAP"]}})).unwrap_err();
    assert_eq!(
        err.field(),
        "spec.containers[0].securityContext.capabilities.drop[1]"
    );
    assert!(err.to_string().contains("not a Linux capability"), "{err}");
}

#[test]
fn no_new_privileges_unless_escalation_is_allowed() {
    let nnp = |sc: Value| {
        with_sc(sc)
            .unwrap()
            .process()
            .as_ref()
            .unwrap()
            .no_new_privileges()
    };
    assert_eq!(nnp(json!({})), Some(true));
    assert_eq!(nnp(json!({"allowPrivilegeEscalation": false})), Some(true));
    assert_eq!(nnp(json!({"allowPrivilegeEscalation": true})), Some(false));
}

#[test]
fn privileged_and_unmasked_proc_are_refused() {
    let err = with_sc(json!({"privileged": true})).unwrap_err();
    assert_eq!(err.field(), "spec.containers[0].securityContext.privileged");
    assert!(err
        .to_string()
        .contains("does not run privileged containers"));
    assert!(with_sc(json!({"privileged": false})).is_ok());

    let err = with_sc(json!({"procMount": "Unmasked"})).unwrap_err();
    assert_eq!(err.field(), "spec.containers[0].securityContext.procMount");
}

#[test]
fn host_namespaces_are_refused() {
    for field in ["hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"] {
        let mut spec = json!({"containers": [{"name": "web", "image": "x"}]});
        spec[field] = json!(true);
        let err = build(&pod(spec), &distroless()).unwrap_err();
        assert_eq!(err.field(), format!("spec.{field}"));
    }
    let p = pod(json!({"hostUsers": false, "containers": [{"name": "web", "image": "x"}]}));
    assert_eq!(
        build(&p, &distroless()).unwrap_err().field(),
        "spec.hostUsers"
    );
}

#[test]
fn namespaces_join_pod_ones_and_create_the_rest() {
    let p = one(json!({"name": "web", "image": "x"}));
    let img = distroless();
    let mut inp = input(&p, &img);
    inp.ipcns = Some(PathBuf::from("/run/selur/ipcns/4f1c"));
    let s = build_spec(&inp).unwrap();
    let ns: Vec<(LinuxNamespaceType, Option<PathBuf>)> = linux(&s)
        .namespaces()
        .iter()
        .flatten()
        .map(|n| (n.typ(), n.path().clone()))
        .collect();
    assert_eq!(
        ns,
        vec![
            (LinuxNamespaceType::Pid, None),
            (
                LinuxNamespaceType::Network,
                Some(PathBuf::from("/run/selur/netns/4f1c"))
            ),
            (
                LinuxNamespaceType::Ipc,
                Some(PathBuf::from("/run/selur/ipcns/4f1c"))
            ),
            (LinuxNamespaceType::Uts, None),
            (LinuxNamespaceType::Mount, None),
            (LinuxNamespaceType::Cgroup, None),
        ]
    );
    assert!(!ns.iter().any(|(t, _)| *t == LinuxNamespaceType::User));
}

#[test]
fn masked_and_readonly_paths_are_present() {
    let s = with_sc(json!({})).unwrap();
    let masked = linux(&s).masked_paths().clone().unwrap();
    for path in [
        "/proc/acpi",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ] {
        assert!(masked.iter().any(|m| m == path), "{path} not masked");
    }
    let readonly = linux(&s).readonly_paths().clone().unwrap();
    for path in [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ] {
        assert!(readonly.iter().any(|m| m == path), "{path} not read-only");
    }
    // /proc/asound is masked outright, which is stricter than read-only.
    assert!(masked.iter().any(|m| m == "/proc/asound"));
}

#[test]
fn seccomp_only_when_asked() {
    let p = one(json!({"name": "web", "image": "x"}));
    let img = distroless();
    let mut inp = input(&p, &img);
    assert!(linux(&build_spec(&inp).unwrap()).seccomp().is_none());
    inp.seccomp = true;
    assert_eq!(
        linux(&build_spec(&inp).unwrap()).seccomp().as_ref(),
        Some(&default_seccomp())
    );
}

#[test]
fn default_seccomp_denies_the_dangerous_and_allows_the_rest() {
    let profile = default_seccomp();
    assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActAllow);
    assert!(profile
        .architectures()
        .as_ref()
        .is_some_and(|a| !a.is_empty()));
    let rules = profile.syscalls().clone().unwrap();
    let denied_with = |name: &str| -> Option<u32> {
        rules
            .iter()
            .find(|r| r.names().iter().any(|n| n == name) && r.args().is_none())
            .map(|r| {
                assert_eq!(r.action(), LinuxSeccompAction::ScmpActErrno);
                r.errno_ret().unwrap()
            })
    };
    for name in [
        "kexec_load",
        "open_by_handle_at",
        "init_module",
        "finit_module",
        "delete_module",
        "iopl",
        "ioperm",
        "swapon",
        "swapoff",
        "syslog",
        "mount",
        "umount2",
        "pivot_root",
        "unshare",
        "reboot",
        "setns",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "keyctl",
        "add_key",
        "request_key",
        "acct",
        "settimeofday",
        "clock_settime",
        "stime",
        "create_module",
        "get_kernel_syms",
        "query_module",
        "uselib",
        "nfsservctl",
        "lookup_dcookie",
        "vm86",
        "vm86old",
        "quotactl",
        "fsopen",
        "move_mount",
    ] {
        assert_eq!(denied_with(name), Some(1), "{name} should fail with EPERM");
    }
    for allowed in ["ptrace", "personality", "read", "clone", "execve"] {
        assert_eq!(denied_with(allowed), None, "{allowed} should be allowed");
    }
    assert_eq!(denied_with("clone3"), Some(38));

    // clone is refused only with namespace flags, one masked rule per flag.
    let clone_rules: Vec<_> = rules
        .iter()
        .filter(|r| r.names() == &["clone".to_string()])
        .collect();
    assert_eq!(clone_rules.len(), 7);
    let newuser = clone_rules
        .iter()
        .flat_map(|r| r.args().iter().flatten())
        .find(|a| a.value() == 0x1000_0000)
        .expect("CLONE_NEWUSER rule");
    assert_eq!(newuser.index(), 0);
    assert_eq!(newuser.value_two(), Some(0x1000_0000));
    assert_eq!(newuser.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
}
