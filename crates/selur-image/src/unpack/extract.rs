//! The extraction loop: one pass over the tar entries, each checked and
//! written under the layer root by hand (never with `tar`'s own unpack).

use std::cell::Cell;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{lchown, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tar::EntryType;

use super::resolve::{self, ResolveError};
use super::{Hostile, UnpackError, UnpackLimits, WHITEOUT_RECORD};
use crate::digest::Digest;

/// Whiteouts of a layer that are not overlayfs-native (no `mknod`/`setfattr`
/// or no privilege), stored as JSON in `<layer>/.selur-whiteouts`: the
/// runtime hides `whiteouts` and makes `opaque` directories opaque itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhiteoutRecord {
    /// Paths (relative to the layer root) hidden from lower layers.
    pub whiteouts: Vec<String>,
    /// Directories (relative to the layer root) whose lower contents are hidden.
    pub opaque: Vec<String>,
}

/// Directory attributes, applied once everything is written.
struct DirAttrs {
    comps: Vec<OsString>,
    mode: u32,
    uid: u64,
    gid: u64,
}

pub(super) struct Extractor<'a> {
    root: &'a Path,
    layer: &'a Digest,
    limits: &'a UnpackLimits,
    dirs: Vec<DirAttrs>,
    record: WhiteoutRecord,
    mknod_works: bool,
    setfattr_works: bool,
}

/// Counts the uncompressed bytes and fails the stream past the limit.
struct Counted<R> {
    inner: R,
    read: Rc<Cell<u64>>,
    max: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.read.get() + n as u64;
        self.read.set(total);
        if total > self.max {
            return Err(io::Error::other(
                "layer exceeds the uncompressed size limit",
            ));
        }
        Ok(n)
    }
}

impl<'a> Extractor<'a> {
    pub(super) fn new(root: &'a Path, layer: &'a Digest, limits: &'a UnpackLimits) -> Self {
        Self {
            root,
            layer,
            limits,
            dirs: Vec::new(),
            record: WhiteoutRecord::default(),
            mknod_works: true,
            setfattr_works: true,
        }
    }

    fn refused(&self, entry: &str, kind: Hostile) -> UnpackError {
        UnpackError::Refused {
            layer: self.layer.clone(),
            entry: entry.to_string(),
            kind,
        }
    }

    fn io(&self, path: PathBuf) -> impl FnOnce(io::Error) -> UnpackError + '_ {
        move |source| UnpackError::Io {
            layer: self.layer.clone(),
            path,
            source,
        }
    }

    fn resolve_err(&self, entry: &str, e: ResolveError) -> UnpackError {
        match e {
            ResolveError::Hostile(h) => self.refused(entry, h),
            ResolveError::Io(path, source) => UnpackError::Io {
                layer: self.layer.clone(),
                path,
                source,
            },
        }
    }

    /// Extract every entry of the (decompressed) tar stream.
    pub(super) fn run(&mut self, stream: impl Read) -> Result<(), UnpackError> {
        let read = Rc::new(Cell::new(0u64));
        let counted = Counted {
            inner: stream,
            read: read.clone(),
            max: self.limits.max_bytes,
        };
        let too_large = Hostile::TooLarge {
            max: self.limits.max_bytes,
        };
        let mut archive = tar::Archive::new(counted);
        let mut last = String::from("(first entry)");
        // What an error between entries names: the entry being read.
        let next = |last: &str, first: bool| {
            if first {
                "(first entry)".to_string()
            } else {
                format!("(entry after {last:?})")
            }
        };
        let entries = archive
            .entries()
            .map_err(|e| super::corrupt(self.layer, &last, e))?;
        let mut count = 0u64;
        for entry in entries {
            let mut entry = match entry {
                Ok(e) => e,
                Err(_) if read.get() > self.limits.max_bytes => {
                    return Err(self.refused(&next(&last, count == 0), too_large))
                }
                Err(e) => return Err(super::corrupt(self.layer, &next(&last, count == 0), e)),
            };
            let name = entry
                .path()
                .map_err(|e| super::corrupt(self.layer, &next(&last, count == 0), e))?;
            last = name.display().to_string();
            count += 1;
            if count > self.limits.max_entries {
                return Err(self.refused(
                    &last,
                    Hostile::TooManyEntries {
                        max: self.limits.max_entries,
                    },
                ));
            }
            if read.get().saturating_add(entry.size()) > self.limits.max_bytes {
                return Err(self.refused(&last, too_large));
            }
            let name = name.into_owned();
            match self.entry(&name, &last, &mut entry) {
                Err(UnpackError::Io { .. } | UnpackError::Corrupt { .. })
                    if read.get() > self.limits.max_bytes =>
                {
                    return Err(self.refused(&last, too_large))
                }
                other => other?,
            }
        }
        Ok(())
    }

    fn entry<R: Read>(
        &mut self,
        raw: &Path,
        shown: &str,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), UnpackError> {
        let comps = resolve::components(raw).map_err(|h| self.refused(shown, h))?;
        if comps.len() == 1 && comps[0] == WHITEOUT_RECORD {
            return Err(self.refused(shown, Hostile::Reserved));
        }
        let h = entry.header();
        let kind = h.entry_type();
        match kind {
            EntryType::Char | EntryType::Block => {
                let whiteout = kind == EntryType::Char
                    && h.device_major().ok().flatten() == Some(0)
                    && h.device_minor().ok().flatten() == Some(0);
                if !whiteout {
                    return Err(self.refused(shown, Hostile::Device));
                }
                let name = comps
                    .last()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let parent = &comps[..comps.len().saturating_sub(1)];
                return self.whiteout(parent, &name, shown);
            }
            EntryType::Fifo => return Err(self.refused(shown, Hostile::Fifo)),
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link => {}
            other => {
                return Err(self.refused(shown, Hostile::UnsupportedType(format!("{other:?}"))))
            }
        }
        let mode = h.mode().map_err(|e| super::corrupt(self.layer, shown, e))? & 0o7777;
        let uid = h.uid().map_err(|e| super::corrupt(self.layer, shown, e))?;
        let gid = h.gid().map_err(|e| super::corrupt(self.layer, shown, e))?;
        let mtime = h.mtime().unwrap_or(0);
        let (parent, name) = match comps.split_last() {
            Some((n, p)) => (p.to_vec(), n.clone()),
            None => {
                // The layer root itself (`./`).
                if kind.is_dir() {
                    self.dirs.push(DirAttrs {
                        comps: Vec::new(),
                        mode,
                        uid,
                        gid,
                    });
                    return Ok(());
                }
                return Err(self.refused(shown, Hostile::NotADirectory { path: ".".into() }));
            }
        };
        let name_str = name.to_string_lossy().to_string();
        if let Some(hidden) = name_str.strip_prefix(".wh.") {
            return self.whiteout(&parent, hidden, shown);
        }
        let parent = resolve::resolve_dir(self.root, &parent, true)
            .map_err(|e| self.resolve_err(shown, e))?;
        let mut leaf_comps = parent.clone();
        leaf_comps.push(name);
        let leaf = resolve::join(self.root, &leaf_comps);
        let existing = fs::symlink_metadata(&leaf).ok();
        if kind == EntryType::Directory {
            match existing {
                Some(m) if m.is_dir() => {}
                Some(_) => {
                    fs::remove_file(&leaf).map_err(self.io(leaf.clone()))?;
                    fs::create_dir(&leaf).map_err(self.io(leaf.clone()))?;
                }
                None => fs::create_dir(&leaf).map_err(self.io(leaf.clone()))?,
            }
            self.dirs.push(DirAttrs {
                comps: leaf_comps,
                mode,
                uid,
                gid,
            });
            return Ok(());
        }
        // Hard links are checked before the old file goes (it may be the target).
        let link_target = if kind == EntryType::Link {
            Some(self.hardlink_target(entry, shown)?)
        } else {
            None
        };
        if link_target.as_deref() == Some(leaf.as_path()) {
            return Ok(());
        }
        match existing {
            Some(m) if m.is_dir() => fs::remove_dir_all(&leaf).map_err(self.io(leaf.clone()))?,
            Some(_) => fs::remove_file(&leaf).map_err(self.io(leaf.clone()))?,
            None => {}
        }
        match kind {
            EntryType::Link => {
                let target = link_target.unwrap_or_default();
                fs::hard_link(&target, &leaf).map_err(self.io(leaf.clone()))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| super::corrupt(self.layer, shown, e))?
                    .filter(|t| !t.as_os_str().is_empty())
                    .ok_or_else(|| self.refused(shown, Hostile::EmptyLink))?;
                std::os::unix::fs::symlink(&target, &leaf).map_err(self.io(leaf.clone()))?;
                chown(&leaf, uid, gid).map_err(self.io(leaf.clone()))?;
            }
            _ => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&leaf)
                    .map_err(self.io(leaf.clone()))?;
                io::copy(entry, &mut f).map_err(|e| super::corrupt(self.layer, shown, e))?;
                chown(&leaf, uid, gid).map_err(self.io(leaf.clone()))?;
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(self.io(leaf.clone()))?;
                let _ = f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
            }
        }
        Ok(())
    }

    /// The existing, in-layer, non-directory file a hard link points at.
    fn hardlink_target<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<PathBuf, UnpackError> {
        let raw = entry
            .link_name()
            .map_err(|e| super::corrupt(self.layer, shown, e))?
            .filter(|t| !t.as_os_str().is_empty())
            .ok_or_else(|| self.refused(shown, Hostile::EmptyLink))?;
        let target = raw.display().to_string();
        let outside = || {
            self.refused(
                shown,
                Hostile::HardlinkOutside {
                    target: target.clone(),
                },
            )
        };
        let missing = || {
            self.refused(
                shown,
                Hostile::HardlinkMissing {
                    target: target.clone(),
                },
            )
        };
        let comps = resolve::components(&raw).map_err(|_| outside())?;
        let Some((name, parent)) = comps.split_last() else {
            return Err(missing());
        };
        let parent = match resolve::resolve_dir(self.root, parent, false) {
            Ok(p) => p,
            Err(ResolveError::Hostile(Hostile::NotADirectory { .. })) => return Err(missing()),
            Err(ResolveError::Hostile(_)) => return Err(outside()),
            Err(ResolveError::Io(_, e)) if e.kind() == io::ErrorKind::NotFound => {
                return Err(missing())
            }
            Err(e) => return Err(self.resolve_err(shown, e)),
        };
        let mut p = resolve::join(self.root, &parent);
        p.push(name);
        match fs::symlink_metadata(&p) {
            Ok(m) if !m.is_dir() => Ok(p),
            _ => Err(missing()),
        }
    }

    /// `.wh.<hidden>` in `parent` (or `.wh..wh..opq`: `parent` is opaque).
    fn whiteout(
        &mut self,
        parent: &[OsString],
        hidden: &str,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let parent = resolve::resolve_dir(self.root, parent, true)
            .map_err(|e| self.resolve_err(shown, e))?;
        let dir = resolve::join(self.root, &parent);
        if hidden == ".wh..opq" {
            let shown_dir = resolve::display(&parent);
            if !(self.setfattr_works
                && run(Command::new("setfattr")
                    .args(["-h", "-n", "trusted.overlay.opaque", "-v", "y"])
                    .arg(&dir)))
            {
                self.setfattr_works = false;
                self.record.opaque.push(if shown_dir.is_empty() {
                    ".".into()
                } else {
                    shown_dir
                });
            }
            return Ok(());
        }
        if hidden.starts_with(".wh.") {
            // AUFS metadata (`.wh..wh.plnk`, ...): nothing to do for overlayfs.
            return Ok(());
        }
        if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
            return Err(self.refused(shown, Hostile::BadWhiteout));
        }
        let path = dir.join(hidden);
        if fs::symlink_metadata(&path).is_ok() {
            // The same layer also has the file: the file wins.
            return Ok(());
        }
        if !(self.mknod_works
            && run(Command::new("mknod")
                .args(["-m", "0"])
                .arg(&path)
                .args(["c", "0", "0"])))
        {
            self.mknod_works = false;
            let mut rel = parent;
            rel.push(hidden.into());
            self.record.whiteouts.push(resolve::display(&rel));
        }
        Ok(())
    }

    /// Write the whiteout record and apply directory attributes (deepest first).
    pub(super) fn finish(mut self) -> Result<(), UnpackError> {
        if !self.record.whiteouts.is_empty() || !self.record.opaque.is_empty() {
            let p = self.root.join(WHITEOUT_RECORD);
            let json = serde_json::to_vec_pretty(&self.record)
                .map_err(|e| self.io(p.clone())(e.into()))?;
            fs::write(&p, json).map_err(self.io(p.clone()))?;
        }
        fs::set_permissions(self.root, fs::Permissions::from_mode(0o755))
            .map_err(self.io(self.root.to_path_buf()))?;
        let mut dirs = std::mem::take(&mut self.dirs);
        // Stable sort: for the same directory, the last entry is applied last.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.comps.len()));
        for d in dirs {
            // A later entry may have replaced the directory or a parent with a symlink.
            if !resolve::is_real_dir_chain(self.root, &d.comps) {
                continue;
            }
            let p = resolve::join(self.root, &d.comps);
            chown(&p, d.uid, d.gid).map_err(self.io(p.clone()))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(d.mode))
                .map_err(self.io(p.clone()))?;
        }
        Ok(())
    }
}

/// `lchown`, ignoring "not permitted" (not root) and ids beyond 32 bits.
fn chown(path: &Path, uid: u64, gid: u64) -> io::Result<()> {
    let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
        return Ok(());
    };
    match lchown(path, Some(uid), Some(gid)) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        other => other,
    }
}

/// Run a helper command quietly; whether it succeeded.
fn run(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
