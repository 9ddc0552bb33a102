//! Where a COPY's sources land: Docker's destination rules (a directory
//! source copies its contents; a file goes *into* a destination that ends
//! in `/` or is an existing directory, else *to* it; several sources need a
//! destination ending in `/`), `--chown`/`--chmod`, and every parent
//! directory so each layer unpacks on its own.

use super::copy::{base_name, Root, Source};
use super::layer::{Entry, EntryKind, Plan};
use super::tree::{join, parent, Kind, Tree};

/// Owner and mode overrides of `--chown` / `--chmod`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Overrides {
    pub chown: Option<(u64, u64)>,
    pub chmod: Option<u32>,
}

impl Overrides {
    fn apply(&self, mut e: Entry) -> Entry {
        if let Some((u, g)) = self.chown {
            (e.uid, e.gid) = (u, g);
        }
        if let (Some(m), false) = (self.chmod, matches!(e.kind, EntryKind::Symlink(_))) {
            e.mode = m;
        }
        e
    }
}

/// Clean an absolute path, `..` stopping at the root.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// Place `sources` at `dest` (relative to `workdir`) on top of `fs`.
pub(crate) fn place(
    sources: Vec<Source>,
    dest: &str,
    workdir: Option<&str>,
    fs: &Tree<()>,
    o: Overrides,
) -> Result<Plan, String> {
    let dir_syntax = dest.ends_with('/') || dest == "." || dest.ends_with("/.") || dest == "..";
    if sources.len() > 1 && !dir_syntax {
        return Err(format!(
            "several sources are copied, so the destination must be a directory ending in /: write {dest}/"
        ));
    }
    let abs = if dest.starts_with('/') {
        clean(dest)
    } else {
        clean(&format!("{}/{dest}", workdir.unwrap_or("/")))
    };
    let resolved = fs.resolve(&abs, true);
    let into_dir = dir_syntax || abs.is_empty() || fs.is_dir(&resolved);
    let mut plan = Plan::new();
    for s in sources {
        match s.root {
            Root::File(e) => {
                let target = if into_dir {
                    join(&resolved, &s.name)
                } else {
                    join(&fs.resolve(parent(&abs), true), &base_name(&abs))
                };
                plan.insert(target, o.apply(e));
            }
            Root::Dir { mode, children } => {
                if !resolved.is_empty() && !fs.is_dir(&resolved) {
                    let e = Entry {
                        kind: EntryKind::Dir,
                        mode,
                        uid: 0,
                        gid: 0,
                    };
                    plan.insert(resolved.clone(), o.apply(e));
                }
                for (rel, e) in children {
                    plan.insert(join(&resolved, &rel), o.apply(e));
                }
            }
        }
    }
    // A `.wh.` name would unpack as a deletion of something else.
    if let Some(k) = plan
        .keys()
        .find(|k| k.split('/').any(|c| c.starts_with(".wh.")))
    {
        return Err(format!(
            "/{k}: names starting with .wh. mark deletions in OCI layers and cannot be copied; rename the file"
        ));
    }
    // Parent directories: as the image has them, else 0755 root-owned.
    let keys: Vec<String> = plan.keys().cloned().collect();
    for k in keys {
        let mut p = parent(&k).to_string();
        while !p.is_empty() && !plan.contains_key(&p) {
            let (mode, uid, gid) = match fs.nodes.get(&p) {
                Some(n) if n.kind == Kind::Dir => (n.mode, n.uid, n.gid),
                _ => (0o755, 0, 0),
            };
            plan.insert(
                p.clone(),
                Entry {
                    kind: EntryKind::Dir,
                    mode,
                    uid,
                    gid,
                },
            );
            p = parent(&p).to_string();
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Source {
        let kind = EntryKind::Symlink("x".into());
        let e = Entry {
            kind,
            mode: 0o777,
            uid: 0,
            gid: 0,
        };
        Source {
            name: "f".into(),
            root: Root::File(e),
        }
    }

    #[test]
    fn destinations() {
        let mut fs: Tree<()> = Tree::empty();
        let dir = |mode| super::super::tree::Node {
            kind: Kind::Dir,
            mode,
            uid: 7,
            gid: 7,
            data: None,
        };
        fs.insert("etc".into(), dir(0o750));
        let o = Overrides::default();
        // Into an existing directory even without a trailing slash; parents keep their metadata.
        let p = place(vec![file()], "/etc", None, &fs, o).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["etc", "etc/f"]);
        assert_eq!((p["etc"].mode, p["etc"].uid), (0o750, 7));
        // To a new name, relative to WORKDIR.
        let p = place(vec![file()], "g", Some("/w"), &fs, o).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["w", "w/g"]);
        assert!(place(vec![file(), file()], "/x", None, &fs, o).is_err());
        assert!(place(vec![file()], "/a/.wh.b", None, &fs, o).is_err());
    }
}
