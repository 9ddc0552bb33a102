//! The merged file-system view of an image's layers, read straight from the
//! layer blobs (gzip, zstd or plain tar, told apart by their magic bytes):
//! later layers shadow earlier ones, `.wh.<name>` whiteouts remove a path
//! and `.wh..wh..opq` hides everything lower layers had in a directory.
//!
//! File contents are not kept unless the caller's visitor returns something
//! for them, so a metadata-only view of a large image stays small.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};

use crate::digest::Digest;
use crate::store::{ImageStore, StoreError};

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File {
        size: u64,
    },
    Symlink(String),
    /// Devices, FIFOs and the like.
    Other,
}

/// One path of the merged view; `data` is what the visitor kept for a file.
#[derive(Debug, Clone)]
pub(crate) struct Node<T> {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub data: Option<T>,
}

/// Paths (relative, no leading `/`, `""` is the root) to nodes, sorted.
#[derive(Debug, Clone)]
pub(crate) struct Tree<T> {
    pub nodes: BTreeMap<String, Node<T>>,
}

/// A layer that cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TreeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("layer {digest} cannot be read: {source}; the blob may be corrupt: remove the image and import it again")]
    Layer {
        digest: Digest,
        #[source]
        source: io::Error,
    },
}

/// Called for every regular file with (path, mode, contents, size).
pub(crate) type Visitor<'a, T> =
    dyn FnMut(&str, u32, &mut dyn Read, u64) -> io::Result<Option<T>> + 'a;

/// One entry of one layer, before it is merged.
enum Op<T> {
    Put(String, Node<T>),
    HardLink(String, String),
    Whiteout(String),
    Opaque(String),
}

/// Lexically normalise a path inside an image: no leading `/` or `./`, no
/// `.` components, `..` resolved; `None` if it climbs above the root.
pub(crate) fn normalize(raw: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// `dir` joined with `name` (either may be the root `""`).
pub(crate) fn join(dir: &str, name: &str) -> String {
    match (dir.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => dir.to_string(),
        _ => format!("{dir}/{name}"),
    }
}

/// The parent of a normalised path (`""` for top-level paths and the root).
pub(crate) fn parent(path: &str) -> &str {
    path.rfind('/').map(|i| &path[..i]).unwrap_or("")
}

/// Open a layer blob, undoing gzip or zstd compression if its magic says so.
pub(crate) fn open_layer(store: &ImageStore, digest: &Digest) -> Result<Box<dyn Read>, TreeError> {
    let file = store.open_blob(digest)?;
    let mut r = BufReader::new(file);
    let magic = r.fill_buf().map_err(|source| TreeError::Layer {
        digest: digest.clone(),
        source,
    })?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(r)))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let z = zstd::stream::read::Decoder::with_buffer(r).map_err(|source| TreeError::Layer {
            digest: digest.clone(),
            source,
        })?;
        Ok(Box::new(z))
    } else {
        Ok(Box::new(r))
    }
}

impl<T: Clone> Tree<T> {
    /// An empty file system (what `FROM scratch` starts with).
    pub fn empty() -> Self {
        Tree {
            nodes: BTreeMap::new(),
        }
    }

    /// Merge `layers` (bottom first). `visit(path, mode, contents, size)` is
    /// called for every regular file; what it returns is kept as its data.
    pub fn read(
        store: &ImageStore,
        layers: &[Digest],
        visit: &mut Visitor<'_, T>,
    ) -> Result<Self, TreeError> {
        let mut tree = Tree::empty();
        for d in layers {
            let reader = open_layer(store, d)?;
            let ops = read_layer(reader, visit).map_err(|source| TreeError::Layer {
                digest: d.clone(),
                source,
            })?;
            tree.apply(ops);
        }
        Ok(tree)
    }

    fn apply(&mut self, ops: Vec<Op<T>>) {
        // Whiteouts hide what lower layers had, not this layer's own entries.
        for op in &ops {
            match op {
                Op::Whiteout(p) => self.remove_subtree(p, true),
                Op::Opaque(dir) => self.remove_subtree(dir, false),
                _ => {}
            }
        }
        for op in ops {
            match op {
                Op::Put(path, node) => self.insert(path, node),
                Op::HardLink(path, target) => {
                    if let Some(n) = self.nodes.get(&target).cloned() {
                        self.insert(path, n);
                    }
                }
                Op::Whiteout(_) | Op::Opaque(_) => {}
            }
        }
    }

    /// Put `node` at `path`; a non-directory replaces a whole directory.
    pub fn insert(&mut self, path: String, node: Node<T>) {
        let replaces_dir =
            node.kind != Kind::Dir && self.nodes.get(&path).is_some_and(|n| n.kind == Kind::Dir);
        if replaces_dir {
            self.remove_subtree(&path, true);
        }
        self.nodes.insert(path, node);
    }

    /// Remove everything below `path`, and `path` itself if `itself`.
    pub fn remove_subtree(&mut self, path: &str, itself: bool) {
        if itself {
            self.nodes.remove(path);
        }
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.nodes.remove(&k);
        }
    }

    /// Everything strictly below directory `dir`, with paths relative to it.
    pub fn below<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a str, &'a Node<T>)> + 'a {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let skip = prefix.len();
        self.nodes
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k.is_empty())
            .map(move |(k, n)| (&k[skip..], n))
    }

    pub fn is_dir(&self, path: &str) -> bool {
        path.is_empty() || self.nodes.get(path).is_some_and(|n| n.kind == Kind::Dir)
    }

    /// Resolve symbolic links in `path` (in the last component too if
    /// `follow_last`), the way the kernel would inside the image's root.
    /// The result may name a path that does not exist.
    pub fn resolve(&self, path: &str, follow_last: bool) -> String {
        let mut todo: Vec<String> = path
            .split('/')
            .rev()
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            done.push(c);
            let here = done.join("/");
            let is_last = todo.is_empty();
            if let Some(Node {
                kind: Kind::Symlink(target),
                ..
            }) = self.nodes.get(&here)
            {
                if (is_last && !follow_last) || hops >= 40 {
                    continue;
                }
                hops += 1;
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                }
                todo.extend(
                    target
                        .split('/')
                        .rev()
                        .filter(|c| !c.is_empty())
                        .map(str::to_string),
                );
            }
        }
        done.join("/")
    }
}

/// Read one layer's tar stream into merge operations.
fn read_layer<T>(reader: Box<dyn Read>, visit: &mut Visitor<'_, T>) -> io::Result<Vec<Op<T>>> {
    let mut ops = Vec::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(path) = normalize(&raw) else {
            tracing::warn!(path = %raw, "layer entry climbs above the root; ignored");
            continue;
        };
        if path.is_empty() {
            continue;
        }
        let (dir, base) = match path.rfind('/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => ("", path.as_str()),
        };
        if base == ".wh..wh..opq" {
            ops.push(Op::Opaque(dir.to_string()));
            continue;
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            ops.push(Op::Whiteout(join(dir, hidden)));
            continue;
        }
        let h = entry.header();
        let mode = h.mode()? & 0o7777;
        let uid = h.uid()?;
        let gid = h.gid()?;
        let et = h.entry_type();
        let link = || -> io::Result<String> {
            Ok(entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default())
        };
        let node = |kind, data| Node {
            kind,
            mode,
            uid,
            gid,
            data,
        };
        if et.is_hard_link() {
            if let Some(target) = normalize(&link()?) {
                ops.push(Op::HardLink(path, target));
            }
        } else if et.is_symlink() {
            let target = link()?;
            ops.push(Op::Put(path, node(Kind::Symlink(target), None)));
        } else if et.is_dir() {
            ops.push(Op::Put(path, node(Kind::Dir, None)));
        } else if et.is_file() || et.is_contiguous() || et.is_gnu_sparse() {
            let size = entry.size();
            let data = visit(&path, mode, &mut entry, size)?;
            ops.push(Op::Put(path, node(Kind::File { size }, data)));
        } else if et.is_character_special() || et.is_block_special() || et.is_fifo() {
            ops.push(Op::Put(path, node(Kind::Other, None)));
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file<T>() -> Node<T> {
        Node {
            kind: Kind::File { size: 0 },
            mode: 0o644,
            uid: 0,
            gid: 0,
            data: None,
        }
    }

    #[test]
    fn paths_and_links() {
        assert_eq!(normalize("./a//b/../c/").as_deref(), Some("a/c"));
        assert_eq!(normalize("../x"), None);
        let mut t: Tree<()> = Tree::empty();
        t.insert("usr/bin/x".into(), file());
        t.insert(
            "bin".into(),
            Node {
                kind: Kind::Symlink("usr/bin".into()),
                mode: 0o777,
                uid: 0,
                gid: 0,
                data: None,
            },
        );
        assert_eq!(t.resolve("/bin/x", true), "usr/bin/x");
        assert_eq!(t.resolve("bin", false), "bin");
        t.apply(vec![Op::Whiteout("usr".into())]);
        assert!(!t.nodes.contains_key("usr/bin/x"));
    }
}
