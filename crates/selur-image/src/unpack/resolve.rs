//! Path resolution inside a layer tree without letting the OS follow
//! symlinks: every component is `lstat`ed under the layer root and symlinks
//! are expanded by hand, refusing any that lead outside the tree.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::Hostile;

/// Most symlinks expanded while resolving one path (as Linux' MAXSYMLINKS).
const MAX_HOPS: usize = 40;

/// A failure to resolve: the entry is hostile, or the file system failed.
#[derive(Debug)]
pub(super) enum ResolveError {
    Hostile(Hostile),
    Io(PathBuf, io::Error),
}

impl From<Hostile> for ResolveError {
    fn from(h: Hostile) -> Self {
        ResolveError::Hostile(h)
    }
}

/// The normal components of a tar entry path; `.` and a leading `./` are
/// dropped, absolute paths and `..` are refused. Empty means the layer root.
pub(super) fn components(raw: &Path) -> Result<Vec<OsString>, Hostile> {
    let mut out = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err(Hostile::ParentDir),
            Component::RootDir | Component::Prefix(_) => return Err(Hostile::Absolute),
        }
    }
    Ok(out)
}

/// Show relative components as a path for messages.
pub(super) fn display(comps: &[OsString]) -> String {
    let p: PathBuf = comps.iter().collect();
    p.display().to_string()
}

/// Resolve the directory `comps` under `root`, following symlinks that stay
/// inside the tree. Missing directories are created (mode 0755) when
/// `create`, otherwise they are an error of kind `NotFound`. Returns the
/// resolved components (a chain of real directories under `root`).
pub(super) fn resolve_dir(
    root: &Path,
    comps: &[OsString],
    create: bool,
) -> Result<Vec<OsString>, ResolveError> {
    let mut cur: Vec<OsString> = Vec::new();
    let mut pending: VecDeque<OsString> = comps.iter().cloned().collect();
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        if c == OsStr::new(".") {
            continue;
        }
        if c == OsStr::new("..") {
            // Only symlink targets bring `..` here; the entry paths never do.
            if cur.pop().is_none() {
                return Err(Hostile::ParentDir.into());
            }
            continue;
        }
        let mut path = join(root, &cur);
        path.push(&c);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => cur.push(c),
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(Hostile::SymlinkLoop.into());
                }
                let target = fs::read_link(&path).map_err(|e| ResolveError::Io(path.clone(), e))?;
                let mut link = cur.clone();
                link.push(c);
                let escape = || Hostile::SymlinkEscape {
                    link: display(&link),
                    target: target.display().to_string(),
                };
                let mut expanded = Vec::new();
                for tc in target.components() {
                    match tc {
                        Component::Normal(n) => expanded.push(n.to_os_string()),
                        Component::ParentDir => expanded.push(OsString::from("..")),
                        Component::CurDir => {}
                        Component::RootDir | Component::Prefix(_) => return Err(escape().into()),
                    }
                }
                // Check the `..`s against the depth now, to name the link.
                let mut depth = cur.len() as isize;
                for e in &expanded {
                    depth += if e == OsStr::new("..") { -1 } else { 1 };
                    if depth < 0 {
                        return Err(escape().into());
                    }
                }
                for e in expanded.into_iter().rev() {
                    pending.push_front(e);
                }
            }
            Ok(_) => {
                let mut p = cur.clone();
                p.push(c);
                return Err(Hostile::NotADirectory { path: display(&p) }.into());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&path)
                    .map_err(|e| ResolveError::Io(path.clone(), e))?;
                // The umask may have taken bits away.
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| ResolveError::Io(path.clone(), e))?;
                cur.push(c);
            }
            Err(e) => return Err(ResolveError::Io(path, e)),
        }
    }
    Ok(cur)
}

/// `root` joined with relative components.
pub(super) fn join(root: &Path, comps: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(comps);
    p
}

/// Whether every prefix of `comps` under `root` is a real directory (no symlink).
pub(super) fn is_real_dir_chain(root: &Path, comps: &[OsString]) -> bool {
    let mut p = root.to_path_buf();
    for c in comps {
        p.push(c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn entry_components() {
        assert_eq!(
            components(Path::new("./bin/sh")).unwrap(),
            os(&["bin", "sh"])
        );
        assert_eq!(
            components(Path::new("bin/./x/")).unwrap(),
            os(&["bin", "x"])
        );
        assert!(components(Path::new(".")).unwrap().is_empty());
        assert_eq!(components(Path::new("/etc/passwd")), Err(Hostile::Absolute));
        assert_eq!(components(Path::new("a/../../b")), Err(Hostile::ParentDir));
    }

    #[test]
    fn symlinks_resolve_inside_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../../..", root.join("usr/up")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        fs::write(root.join("file"), "").unwrap();
        assert_eq!(
            resolve_dir(&root, &os(&["lib", "x"]), true).unwrap(),
            os(&["usr", "lib", "x"])
        );
        assert!(root.join("usr/lib/x").is_dir());
        let h = |r: Result<Vec<OsString>, ResolveError>| match r {
            Err(ResolveError::Hostile(h)) => h,
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            h(resolve_dir(&root, &os(&["abs"]), true)),
            Hostile::SymlinkEscape { .. }
        ));
        assert!(matches!(
            h(resolve_dir(&root, &os(&["usr", "up"]), true)),
            Hostile::SymlinkEscape { .. }
        ));
        assert_eq!(
            h(resolve_dir(&root, &os(&["loop"]), true)),
            Hostile::SymlinkLoop
        );
        assert!(matches!(
            h(resolve_dir(&root, &os(&["file", "x"]), true)),
            Hostile::NotADirectory { .. }
        ));
        assert!(matches!(
            resolve_dir(&root, &os(&["nope"]), false),
            Err(ResolveError::Io(..))
        ));
        assert!(!t.path().join("etc").exists());
        assert!(is_real_dir_chain(&root, &os(&["usr", "lib"])));
        assert!(!is_real_dir_chain(&root, &os(&["lib"])));
    }
}
