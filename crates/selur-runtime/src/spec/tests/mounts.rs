//! Standard mounts, `/etc` files, volumes and their order.

use std::path::PathBuf;

use oci_spec::runtime::{Mount, Spec};
use serde_json::json;

use super::super::{build_spec, EtcFiles, MountKind, SpecError, VolumeMount};
use super::{distroless, input, one};

fn bind(dest: &str, source: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        destination: PathBuf::from(dest),
        source: PathBuf::from(source),
        read_only,
        kind: MountKind::Bind,
    }
}

fn tmpfs(dest: &str, size: Option<u64>) -> VolumeMount {
    VolumeMount {
        destination: PathBuf::from(dest),
        source: PathBuf::new(),
        read_only: false,
        kind: MountKind::Tmpfs { size },
    }
}

fn build_with(volumes: Vec<VolumeMount>, etc: EtcFiles) -> Result<Spec, SpecError> {
    let p = one(json!({"name": "web", "image": "x", "volumeMounts": [
        {"name": "data", "mountPath": "/data"},
        {"name": "proc", "mountPath": "/proc/sys"},
    ]}));
    let img = distroless();
    let mut inp = input(&p, &img);
    inp.mounts = volumes;
    inp.etc_files = etc;
    build_spec(&inp)
}

fn mounts(s: &Spec) -> Vec<Mount> {
    s.mounts().clone().unwrap()
}

fn dests(s: &Spec) -> Vec<String> {
    mounts(s)
        .iter()
        .map(|m| m.destination().display().to_string())
        .collect()
}

fn find(s: &Spec, dest: &str) -> Mount {
    mounts(s)
        .into_iter()
        .find(|m| m.destination() == &PathBuf::from(dest))
        .unwrap_or_else(|| panic!("no mount at {dest}"))
}

fn options(m: &Mount) -> Vec<String> {
    m.options().clone().unwrap_or_default()
}

fn etc_files() -> EtcFiles {
    EtcFiles {
        hosts: Some(PathBuf::from("/run/selur/pods/4f1c/hosts")),
        resolv_conf: Some(PathBuf::from("/run/selur/pods/4f1c/resolv.conf")),
        hostname: Some(PathBuf::from("/run/selur/pods/4f1c/hostname")),
    }
}

#[test]
fn standard_mounts_in_parent_first_order() {
    let s = build_with(vec![], EtcFiles::default()).unwrap();
    assert_eq!(
        dests(&s),
        [
            "/proc",
            "/dev",
            "/sys",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys/fs/cgroup"
        ]
    );
    assert_eq!(find(&s, "/proc").typ().as_deref(), Some("proc"));
    let sys = find(&s, "/sys");
    assert_eq!(sys.typ().as_deref(), Some("sysfs"));
    for o in ["ro", "nosuid", "noexec", "nodev"] {
        assert!(options(&sys).iter().any(|x| x == o), "/sys lacks {o}");
    }
    let cgroup = find(&s, "/sys/fs/cgroup");
    assert_eq!(cgroup.typ().as_deref(), Some("cgroup"));
    assert!(options(&cgroup).iter().any(|x| x == "ro"));
    let shm = find(&s, "/dev/shm");
    assert_eq!(shm.typ().as_deref(), Some("tmpfs"));
    assert!(options(&shm).iter().any(|x| x == "size=67108864"));
    assert_eq!(find(&s, "/dev/mqueue").typ().as_deref(), Some("mqueue"));
}

#[test]
fn etc_files_are_bound_read_only() {
    let s = build_with(vec![], etc_files()).unwrap();
    for (dest, source) in [
        ("/etc/hosts", "/run/selur/pods/4f1c/hosts"),
        ("/etc/resolv.conf", "/run/selur/pods/4f1c/resolv.conf"),
        ("/etc/hostname", "/run/selur/pods/4f1c/hostname"),
    ] {
        let m = find(&s, dest);
        assert_eq!(m.typ().as_deref(), Some("bind"));
        assert_eq!(m.source(), &Some(PathBuf::from(source)));
        assert!(options(&m).iter().any(|o| o == "ro"), "{dest} not ro");
        assert!(options(&m).iter().any(|o| o == "rbind"));
    }
    // Absent files are not mounted.
    let only_hosts = EtcFiles {
        hosts: Some(PathBuf::from("/h")),
        ..EtcFiles::default()
    };
    let d = dests(&build_with(vec![], only_hosts).unwrap());
    assert!(d.contains(&"/etc/hosts".to_string()));
    assert!(!d.contains(&"/etc/resolv.conf".to_string()));
}

#[test]
fn volumes_bind_and_tmpfs_options() {
    let s = build_with(
        vec![
            bind("/data", "/var/lib/selur/vol/data", false),
            bind("/config", "/var/lib/selur/vol/config", true),
            tmpfs("/cache", Some(1 << 20)),
            tmpfs("/scratch", None),
        ],
        EtcFiles::default(),
    )
    .unwrap();
    let data = find(&s, "/data");
    assert_eq!(data.typ().as_deref(), Some("bind"));
    assert_eq!(
        data.source(),
        &Some(PathBuf::from("/var/lib/selur/vol/data"))
    );
    assert_eq!(options(&data), ["rbind", "nosuid", "nodev", "rw"]);
    assert_eq!(
        options(&find(&s, "/config")),
        ["rbind", "nosuid", "nodev", "ro"]
    );
    let cache = find(&s, "/cache");
    assert_eq!(cache.typ().as_deref(), Some("tmpfs"));
    assert!(options(&cache).iter().any(|o| o == "size=1048576"));
    assert!(!options(&find(&s, "/scratch"))
        .iter()
        .any(|o| o.starts_with("size=")));
}

#[test]
fn memory_volume_replaces_dev_shm() {
    let s = build_with(
        vec![tmpfs("/dev/shm/", Some(256 << 20))],
        EtcFiles::default(),
    )
    .unwrap();
    let shm: Vec<Mount> = mounts(&s)
        .into_iter()
        .filter(|m| m.destination() == &PathBuf::from("/dev/shm"))
        .collect();
    assert_eq!(shm.len(), 1);
    assert!(options(&shm[0]).iter().any(|o| o == "size=268435456"));
}

#[test]
fn volume_over_etc_hosts_replaces_the_pod_file() {
    let s = build_with(vec![bind("/etc/hosts", "/mine", true)], etc_files()).unwrap();
    let hosts: Vec<Mount> = mounts(&s)
        .into_iter()
        .filter(|m| m.destination() == &PathBuf::from("/etc/hosts"))
        .collect();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].source(), &Some(PathBuf::from("/mine")));
}

#[test]
fn dev_volume_replaces_everything_under_dev() {
    let s = build_with(vec![bind("/dev", "/host-dev", false)], EtcFiles::default()).unwrap();
    let d = dests(&s);
    assert_eq!(d.iter().filter(|d| d.starts_with("/dev")).count(), 1);
}

#[test]
fn parents_come_before_children() {
    let s = build_with(
        vec![
            bind("/data/logs/app", "/v/c", false),
            bind("/data/logs", "/v/b", false),
            bind("/etc", "/v/etc", true),
            bind("/data", "/v/a", false),
        ],
        etc_files(),
    )
    .unwrap();
    let d = dests(&s);
    let pos = |p: &str| d.iter().position(|x| x == p).unwrap();
    assert!(pos("/data") < pos("/data/logs"));
    assert!(pos("/data/logs") < pos("/data/logs/app"));
    assert!(pos("/etc") < pos("/etc/hosts"));
    assert!(pos("/dev") < pos("/dev/pts"));
    assert!(pos("/sys") < pos("/sys/fs/cgroup"));
    // Every mount comes after any mount that is its ancestor.
    for (i, a) in d.iter().enumerate() {
        for b in &d[i + 1..] {
            assert!(
                !std::path::Path::new(a).starts_with(b),
                "{a} is mounted before its parent {b}"
            );
        }
    }
}

#[test]
fn bad_volume_destinations_are_refused() {
    let err = build_with(vec![bind("/proc/sys", "/x", false)], EtcFiles::default()).unwrap_err();
    assert!(matches!(err, SpecError::Forbidden { .. }));
    assert_eq!(err.field(), "spec.containers[0].volumeMounts[1].mountPath");

    let err = build_with(vec![bind("/sys", "/x", false)], EtcFiles::default()).unwrap_err();
    assert_eq!(err.field(), "spec.containers[0].volumeMounts");

    for dest in ["data", "/data/../etc", "/"] {
        let err = build_with(vec![bind(dest, "/x", false)], EtcFiles::default()).unwrap_err();
        assert!(matches!(err, SpecError::Invalid { .. }), "{dest}: {err}");
    }

    let err = build_with(
        vec![bind("/data", "/x", false), tmpfs("/data/", None)],
        EtcFiles::default(),
    )
    .unwrap_err();
    assert_eq!(err.field(), "spec.containers[0].volumeMounts[0].mountPath");
    assert!(err.to_string().contains("must be unique"));
}
