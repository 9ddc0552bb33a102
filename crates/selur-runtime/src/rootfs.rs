//! Container root file systems: an overlayfs of the image's unpacked layers
//! (shared, read-only lower dirs) with the container's own upper and work
//! dirs. Always an overlay with an upper dir, even for read-only roots: overlay
//! refuses a single lower dir without one, and runc needs to create mount
//! points for /etc/hosts and friends.

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

    /// Mount an overlay of `layers` (bottom to top) at `merged`.
    pub fn mount(&self, layers: &[PathBuf]) -> Result<(), RootfsError> {
        if layers.is_empty() {
            return Err(RootfsError::NoLayers);
        }
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

    /// Unmount (lazily, so a busy mount still goes) and remove the directories.
    pub fn remove(&self) -> Result<(), RootfsError> {
        if is_mounted(&self.merged) {
            unmount(&self.merged, UnmountFlags::DETACH).map_err(|e| RootfsError::Io {
                what: "unmounting",
                path: self.merged.clone(),
                source: e.into(),
            })?;
        }
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

/// Whether `path` is a mount point (listed in /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.display().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp.replace("\\040", " ") == want)
}

#[cfg(test)]
mod tests {
    use super::*;

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
