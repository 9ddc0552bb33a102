//! Container root file systems: an overlayfs of the image's unpacked layers
//! (shared, read-only lower dirs) with the container's own upper and work
//! dirs. Always an overlay with an upper dir, even for read-only roots: overlay
//! refuses a single lower dir without one, and runc needs to create mount
//! points for /etc/hosts and friends.
//!
//! Mounting is safe to repeat after the caller was killed at any point: a
//! mount left at `merged` by an earlier attempt (or several stacked ones)
//! is lazily unmounted before the new overlay goes on, and removing
//! unmounts until nothing is mounted there.

use std::path::{Path, PathBuf};

use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

/// Errors mounting or unmounting a root file system.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("an image needs at least one layer to build a root file system")]
    NoLayers,
}

/// The directories of one container's root file system.
#[derive(Debug, Clone)]
pub struct Rootfs {
    pub merged: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl Rootfs {
    /// Under `dir`: `upper/`, `work/`, `rootfs/` (merged).
    pub fn at(dir: &Path) -> Self {
        Self {
            merged: dir.join("rootfs"),
            upper: dir.join("upper"),
            work: dir.join("work"),
        }
    }

    /// Mount an overlay of `layers` (bottom to top) at `merged`, replacing
    /// whatever an earlier attempt left mounted there.
    pub fn mount(&self, layers: &[PathBuf]) -> Result<(), RootfsError> {
        if layers.is_empty() {
            return Err(RootfsError::NoLayers);
        }
        unmount_all(&self.merged).map_err(|source| RootfsError::Io {
            what: "unmounting the earlier root file system at",
            path: self.merged.clone(),
            source,
        })?;
        for d in [&self.merged, &self.upper, &self.work] {
            std::fs::create_dir_all(d).map_err(|source| RootfsError::Io {
                what: "creating",
                path: d.clone(),
                source,
            })?;
        }
        // overlay's lowerdir lists the top layer first.
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            self.upper.display(),
            self.work.display()
        );
        let data = std::ffi::CString::new(data).map_err(|e| RootfsError::Io {
            what: "building overlay options for",
            path: self.merged.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        mount(
            "overlay",
            &self.merged,
            "overlay",
            MountFlags::empty(),
            Some(data.as_c_str()),
        )
        .map_err(|e| RootfsError::Io {
            what: "mounting overlay at",
            path: self.merged.clone(),
            source: e.into(),
        })
    }

    /// Unmount (lazily, so a busy mount still goes; every mount stacked
    /// there) and remove the directories. Safe to repeat.
    pub fn remove(&self) -> Result<(), RootfsError> {
        unmount_all(&self.merged).map_err(|source| RootfsError::Io {
            what: "unmounting",
            path: self.merged.clone(),
            source,
        })?;
        for d in [&self.merged, &self.upper, &self.work] {
            match std::fs::remove_dir_all(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(RootfsError::Io {
                        what: "removing",
                        path: d.clone(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

/// Lazily unmount every mount stacked on `path` until it is no mount point
/// any more (also when nothing was mounted, or `path` does not exist).
pub fn unmount_all(path: &Path) -> std::io::Result<()> {
    // Each attempt that was killed after mounting may have left one more.
    for _ in 0..64 {
        match unmount(path, UnmountFlags::DETACH) {
            Ok(()) => {}
            // Not (or no longer) a mount point.
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(std::io::Error::other("still mounted after 64 unmounts"))
}

/// The mount points at or below `dir` (as this process sees them).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|mp| PathBuf::from(unescape_mountinfo(mp)))
        .filter(|mp| mp.starts_with(&dir))
        .collect()
}

/// Lazily unmount every mount at or below `dir` (deepest first), e.g. what
/// a killed attempt left under a pod's directory: namespace files, root
/// file systems, volumes. Returns the mount points that could not be
/// unmounted, with why.
pub fn unmount_under(dir: &Path) -> Vec<(PathBuf, std::io::Error)> {
    let mut points = mounts_under(dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    let mut failed = Vec::new();
    for p in points {
        if let Err(e) = unmount_all(&p) {
            failed.push((p, e));
        }
    }
    failed
}

/// Undo the octal escapes (`\040` for a space, ...) of a mountinfo field.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = (b[i] == b'\\' && i + 3 < b.len())
            .then(|| &b[i + 1..i + 4])
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u16, |v, c| v * 8 + u16::from(c - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        if let Some(v) = octal {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` is a mount point (listed in /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| Path::new(&unescape_mountinfo(mp)) == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape_mountinfo("/x\\9"), "/x\\9");
    }

    #[test]
    fn overlay_of_two_layers_with_upper() {
        let d = tempfile::tempdir().unwrap();
        let l1 = d.path().join("l1");
        let l2 = d.path().join("l2");
        std::fs::create_dir_all(&l1).unwrap();
        std::fs::create_dir_all(&l2).unwrap();
        std::fs::write(l1.join("a"), "bottom").unwrap();
        std::fs::write(l2.join("a"), "top").unwrap();
        std::fs::write(l1.join("b"), "only-bottom").unwrap();
        let r = Rootfs::at(&d.path().join("c"));
        r.mount(&[l1.clone(), l2]).unwrap();
        // Unmounts even when an assertion fails.
        struct Guard<'a>(&'a Rootfs);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                let _ = self.0.remove();
            }
        }
        let guard = Guard(&r);
        assert_eq!(std::fs::read_to_string(r.merged.join("a")).unwrap(), "top");
        assert_eq!(
            std::fs::read_to_string(r.merged.join("b")).unwrap(),
            "only-bottom"
        );
        std::fs::write(r.merged.join("new"), "x").unwrap();
        assert!(r.upper.join("new").exists(), "writes land in the upper dir");
        assert!(!l1.join("new").exists(), "lower layers stay untouched");
        drop(guard);
        assert!(!is_mounted(&r.merged));
    }
}
