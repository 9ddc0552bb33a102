//! The sources of a COPY (or local ADD): files matched in the build context
//! (globs, directories walked recursively, symbolic links kept as links,
//! nothing outside the context) or in an earlier stage / stored image
//! (`--from`). Where they land is decided in `place`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::layer::{Content, Entry, EntryKind};
use super::tree::{self, join, Kind, Tree};
use crate::digest::Digest;
use crate::store::ImageStore;

/// One matched source.
pub(crate) struct Source {
    /// Base name (used when the destination is a directory).
    pub name: String,
    pub root: Root,
}

pub(crate) enum Root {
    File(Entry),
    /// A directory: its mode and everything below it (relative paths).
    Dir {
        mode: u32,
        children: Vec<(String, Entry)>,
    },
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Shell-style pattern matching of one path component (`*`, `?`, `[a-z]`,
/// `[!x]`, `\` escapes).
pub(crate) fn glob_match(pat: &str, name: &str) -> bool {
    fn m(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| m(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && m(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().skip(2).position(|&c| c == ']').map(|e| e + 2) else {
                    return n.first() == Some(&'[') && m(&p[1..], &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let (neg, set) = match p[1] {
                    '!' | '^' => (true, &p[2..end]),
                    _ => (false, &p[1..end]),
                };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != neg && m(&p[end + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && m(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && m(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    m(&p, &n)
}

fn mode_of(md: &fs::Metadata) -> u32 {
    md.permissions().mode() & 0o7777
}

pub(crate) fn base_name(rel: &str) -> String {
    rel.rsplit('/').next().unwrap_or("").to_string()
}

/// Sources matched by `patterns` in the build context `context` (canonical).
/// With `add`, archives and URLs are refused (ADD would fetch or extract them).
pub(crate) fn from_context(
    context: &Path,
    patterns: &[String],
    add: bool,
) -> Result<Vec<Source>, String> {
    let mut out = Vec::new();
    for pat in patterns {
        if add && (pat.contains("://") || pat.starts_with("git@")) {
            return Err(format!(
                "ADD {pat}: remote sources are not supported; download it outside the build, check its digest, and COPY it from the context"
            ));
        }
        let norm = tree::normalize(pat)
            .ok_or_else(|| format!("{pat} is outside the build context; sources are paths inside the context directory"))?;
        let mut matched = vec![norm.clone()];
        if has_glob(&norm) {
            matched = vec![String::new()];
            for comp in norm.split('/') {
                let mut next = Vec::new();
                for cur in &matched {
                    if !has_glob(comp) {
                        next.push(join(cur, comp));
                        continue;
                    }
                    let Ok(rd) = fs::read_dir(context.join(cur)) else {
                        continue;
                    };
                    let mut names: Vec<String> = rd
                        .flatten()
                        .filter_map(|e| e.file_name().to_str().map(str::to_string))
                        .collect();
                    names.sort();
                    next.extend(
                        names
                            .into_iter()
                            .filter(|n| glob_match(comp, n))
                            .map(|n| join(cur, &n)),
                    );
                }
                matched = next;
            }
            matched.retain(|m| fs::symlink_metadata(context.join(m)).is_ok());
            if matched.is_empty() {
                return Err(format!("no file in the build context matches {pat}"));
            }
        }
        for rel in matched {
            let path = context.join(&rel);
            let real = fs::canonicalize(&path).map_err(|e| {
                format!("{rel} cannot be read in the build context {} ({e}); source paths are relative to the context directory", context.display())
            })?;
            if !real.starts_with(context) {
                return Err(format!("{rel} resolves to {}, outside the build context; copy the file into the context", real.display()));
            }
            let md = fs::metadata(&real).map_err(|e| format!("{}: {e}", real.display()))?;
            let root = if md.is_dir() {
                let mut children = Vec::new();
                walk(&real, "", &mut children)?;
                Root::Dir {
                    mode: mode_of(&md),
                    children,
                }
            } else if md.is_file() {
                if add && is_archive(&real) {
                    return Err(format!(
                        "ADD {rel}: this is an archive and ADD would extract it, which Selur does not do; extract it into the context and COPY the directory, or use COPY to add the archive as a file"
                    ));
                }
                Root::File(Entry {
                    kind: EntryKind::File {
                        content: Content::Disk(real.clone()),
                        size: md.len(),
                    },
                    mode: mode_of(&md),
                    uid: 0,
                    gid: 0,
                })
            } else {
                return Err(special(&real));
            };
            out.push(Source {
                name: base_name(&rel),
                root,
            });
        }
    }
    Ok(out)
}

fn special(p: &Path) -> String {
    format!(
        "{} is a device, FIFO or socket; only regular files, directories and symbolic links can be copied",
        p.display()
    )
}

/// Does the file start like a tar or a compressed stream?
fn is_archive(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 512];
    let n = fs::File::open(p)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let h = &head[..n];
    h.starts_with(&[0x1f, 0x8b])
        || h.starts_with(b"BZh")
        || h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (n >= 262 && &h[257..262] == b"ustar")
}

/// Everything below `dir`, sorted, symbolic links kept as links.
fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, Entry)>) -> Result<(), String> {
    let rd = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut items: Vec<_> = rd
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    items.sort_by_key(|e| e.file_name());
    for item in items {
        let path = item.path();
        let name = item
            .file_name()
            .to_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{}: file names must be UTF-8; rename it", path.display()))?;
        let r = join(rel, &name);
        let md = fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let ft = md.file_type();
        let entry = |kind| Entry {
            kind,
            mode: mode_of(&md),
            uid: 0,
            gid: 0,
        };
        if ft.is_symlink() {
            let t = fs::read_link(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let t = t
                .to_str()
                .ok_or_else(|| format!("{}: link target must be UTF-8", path.display()))?;
            out.push((r, entry(EntryKind::Symlink(t.to_string()))));
        } else if ft.is_dir() {
            out.push((r.clone(), entry(EntryKind::Dir)));
            walk(&path, &r, out)?;
        } else if ft.is_file() {
            let kind = EntryKind::File {
                content: Content::Disk(path.clone()),
                size: md.len(),
            };
            out.push((r, entry(kind)));
        } else {
            return Err(special(&path));
        }
    }
    Ok(())
}

/// Sources matched by `patterns` (absolute paths) in an image whose layers
/// are `layers` and whose metadata view is `meta`; `what` names it.
pub(crate) fn from_image(
    store: &ImageStore,
    layers: &[Digest],
    meta: &Tree<()>,
    patterns: &[String],
    what: &str,
) -> Result<Vec<Source>, String> {
    let mut roots = Vec::new();
    for pat in patterns {
        let norm = tree::normalize(pat).unwrap_or_default();
        if has_glob(&norm) {
            let comps: Vec<&str> = norm.split('/').collect();
            let before = roots.len();
            for key in meta.nodes.keys() {
                let kc: Vec<&str> = key.split('/').collect();
                if kc.len() == comps.len() && comps.iter().zip(&kc).all(|(p, n)| glob_match(p, n)) {
                    roots.push(key.clone());
                }
            }
            if roots.len() == before {
                return Err(format!("nothing in {what} matches {pat}"));
            }
        } else {
            let r = meta.resolve(&norm, true);
            if !r.is_empty() && !meta.nodes.contains_key(&r) {
                return Err(format!("{pat} does not exist in {what}; check the path (sources of COPY --from are absolute paths in that image)"));
            }
            roots.push(r);
        }
    }
    let under = |p: &str| {
        roots.iter().any(|r| {
            r.is_empty()
                || p == r
                || p.strip_prefix(r.as_str())
                    .is_some_and(|s| s.starts_with('/'))
        })
    };
    let data: Tree<Vec<u8>> = Tree::read(store, layers, &mut |p, _, r, _| {
        if !under(p) {
            return Ok(None);
        }
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        Ok(Some(v))
    })
    .map_err(|e| format!("{what}: {e}"))?;
    let convert = |path: &str, n: &tree::Node<Vec<u8>>| -> Result<Option<Entry>, String> {
        let kind = match &n.kind {
            Kind::Dir => EntryKind::Dir,
            Kind::Symlink(t) => EntryKind::Symlink(t.clone()),
            Kind::File { size } => EntryKind::File {
                content: Content::Bytes(n.data.clone().ok_or_else(|| {
                    format!("/{path} in {what} is a hard link to a file outside what is copied; copy the link target instead")
                })?),
                size: *size,
            },
            Kind::Other => {
                tracing::warn!(path, "device or FIFO in {what} not copied");
                return Ok(None);
            }
        };
        Ok(Some(Entry {
            kind,
            mode: n.mode,
            uid: 0,
            gid: 0,
        }))
    };
    let mut out = Vec::new();
    for r in roots {
        let root = match data.nodes.get(&r) {
            Some(n) if n.kind != Kind::Dir => match convert(&r, n)? {
                Some(e) => Root::File(e),
                None => continue,
            },
            n => {
                let mut children = Vec::new();
                for (rel, c) in data.below(&r) {
                    if let Some(e) = convert(&join(&r, rel), c)? {
                        children.push((rel.to_string(), e));
                    }
                }
                Root::Dir {
                    mode: n.map(|n| n.mode).unwrap_or(0o755),
                    children,
                }
            }
        };
        out.push(Source {
            name: base_name(&r),
            root,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "a.txt.bak"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[!a-c]x", "bx"));
        assert!(glob_match(r"\*", "*"));
    }
}
