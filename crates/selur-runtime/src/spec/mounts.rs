//! Mounts: the kernel file systems every container gets, the pod's `/etc`
//! files, then the volumes, ordered so parents come before children.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount;

use super::{Ctx, MountKind, SpecError, SpecInput};

/// Size of `/dev/shm` unless a volume replaces it (Docker's default).
pub(crate) const SHM_SIZE: u64 = 64 * 1024 * 1024;

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination))
        .set_typ(Some(typ.to_string()))
        .set_source(Some(PathBuf::from(source)))
        .set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// The kernel file systems, with runc's and containerd's options.
fn standard_mounts() -> Vec<Mount> {
    let shm_size = format!("size={SHM_SIZE}");
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ]
}

/// An absolute destination without `.`/`..` or trailing slashes, so that
/// equal paths compare equal and depth can be counted.
fn clean(dest: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    let mut components = dest.components();
    if components.next() != Some(Component::RootDir) {
        return None;
    }
    for c in components {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Where the container's `volumeMounts` entry for `dest` sits, for errors.
fn volume_field(input: &SpecInput, ctx: &Ctx, dest: &Path) -> String {
    let mounts = input.container.volume_mounts.as_deref().unwrap_or_default();
    match mounts
        .iter()
        .position(|m| clean(Path::new(&m.mount_path)).as_deref() == clean(dest).as_deref())
    {
        Some(i) => ctx.field(&format!("volumeMounts[{i}].mountPath")),
        None => ctx.field("volumeMounts"),
    }
}

/// The container's mounts: standard ones, `/etc` files, volumes.
///
/// A volume at the same destination as a standard mount or an `/etc` file
/// replaces it (an `emptyDir` with `medium: Memory` at `/dev/shm` is the
/// usual case), and a volume at `/dev` replaces everything under `/dev`, as
/// in containerd. Volumes over `/proc` or `/sys` are refused: they would
/// undo the masked and read-only paths.
pub(crate) fn mounts(input: &SpecInput, ctx: &Ctx) -> Result<Vec<Mount>, SpecError> {
    let mut volumes = Vec::with_capacity(input.mounts.len());
    let mut supplied = HashSet::new();
    for vm in &input.mounts {
        let field = || volume_field(input, ctx, &vm.destination);
        let display = vm.destination.display().to_string();
        let dest = clean(&vm.destination).ok_or_else(|| {
            SpecError::invalid(
                field(),
                &display,
                "must be an absolute path without '..', e.g. /data",
            )
        })?;
        if dest == Path::new("/") {
            return Err(SpecError::invalid(
                field(),
                &display,
                "cannot mount over the root file system; choose a directory such as /data",
            ));
        }
        if dest.starts_with("/proc") || dest.starts_with("/sys") {
            return Err(SpecError::forbidden(
                field(),
                format!(
                    "mounting over {display} would expose the host kernel's interfaces; \
                     choose a path outside /proc and /sys"
                ),
            ));
        }
        if !supplied.insert(dest.clone()) {
            return Err(SpecError::invalid(field(), &display, "must be unique"));
        }
        let mut m = Mount::default();
        m.set_destination(dest);
        let rw = if vm.read_only { "ro" } else { "rw" };
        match vm.kind {
            MountKind::Bind => {
                m.set_typ(Some("bind".to_string()))
                    .set_source(Some(vm.source.clone()))
                    .set_options(Some(
                        ["rbind", "nosuid", "nodev", rw]
                            .map(str::to_string)
                            .to_vec(),
                    ));
            }
            MountKind::Tmpfs { size } => {
                // Mode 0777, as Kubernetes gives emptyDir directories.
                let mut options: Vec<String> = ["nosuid", "nodev", "mode=0777", rw]
                    .map(str::to_string)
                    .to_vec();
                if let Some(size) = size {
                    options.push(format!("size={size}"));
                }
                m.set_typ(Some("tmpfs".to_string()))
                    .set_source(Some(PathBuf::from("tmpfs")))
                    .set_options(Some(options));
            }
        }
        volumes.push(m);
    }

    let kept = |m: &Mount| {
        let dest = m.destination();
        let under_supplied_dev = supplied.contains(Path::new("/dev")) && dest.starts_with("/dev");
        !supplied.contains(dest) && !under_supplied_dev
    };
    let etc = [
        ("/etc/hosts", input.etc_files.hosts.as_ref()),
        ("/etc/resolv.conf", input.etc_files.resolv_conf.as_ref()),
        ("/etc/hostname", input.etc_files.hostname.as_ref()),
    ];
    let mut all: Vec<Mount> = standard_mounts().into_iter().filter(kept).collect();
    for (dest, source) in etc {
        let Some(source) = source else { continue };
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(dest))
            .set_typ(Some("bind".to_string()))
            .set_source(Some(source.clone()))
            // Read-only (Kubernetes mounts /etc/hosts read-write): a
            // container has no business rewriting the pod's name service.
            .set_options(Some(
                ["rbind", "nosuid", "nodev", "noexec", "ro"]
                    .map(str::to_string)
                    .to_vec(),
            ));
        if kept(&m) {
            all.push(m);
        }
    }
    all.extend(volumes);
    // Stable, so equal depths keep the order above (standard, /etc, volumes).
    all.sort_by_key(|m| m.destination().components().count());
    Ok(all)
}
