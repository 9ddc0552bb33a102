//! One streaming pass over an image archive (tar, maybe gzip/zstd
//! compressed): blobs go straight into the store, metadata files are kept in
//! memory (bounded), links are remembered.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path};

use tar::EntryType;

use super::{io_err, read_limited, ImportError};
use crate::digest::Digest;
use crate::store::ImageStore;

/// Largest metadata file (index.json, manifest.json, ...) read into memory.
const MAX_META: u64 = 16 << 20;
/// Most links followed when looking a file up.
const MAX_HOPS: usize = 16;

/// A file of the archive stored as a blob.
#[derive(Debug, Clone)]
pub(super) struct StoredFile {
    pub digest: Digest,
    pub size: u64,
}

/// What one pass over an archive found.
#[derive(Debug, Default)]
pub(super) struct Scanned {
    pub oci_layout: bool,
    pub index_json: Option<Vec<u8>>,
    pub manifest_json: Option<Vec<u8>>,
    /// Other regular files, stored as blobs, by normalised path.
    pub files: HashMap<String, StoredFile>,
    /// Symlinks and hard links: normalised path to normalised target.
    pub links: HashMap<String, String>,
}

impl Scanned {
    /// The stored file at `path` (links followed).
    pub fn lookup(&self, path: &str) -> Option<&StoredFile> {
        let mut p = normalize(Path::new(path))?;
        for _ in 0..MAX_HOPS {
            if let Some(f) = self.files.get(&p) {
                return Some(f);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }
}

/// `a/./b/../c` → `a/c`; `None` if it climbs out of the archive or is empty.
pub(super) fn normalize(p: &Path) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n.to_str()?.to_string()),
            Component::ParentDir => {
                out.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    (!out.is_empty()).then(|| out.join("/"))
}

/// Open `path` as a tar stream, decompressing gzip or zstd by magic bytes.
fn open_tar(path: &Path) -> Result<Box<dyn Read>, ImportError> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut r = BufReader::new(f);
    let magic = r.fill_buf().map_err(io_err(path))?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r).map_err(io_err(path))?)
    } else {
        Box::new(r)
    })
}

/// Read the archive at `path` once, storing its blobs.
pub(super) fn scan(store: &ImageStore, path: &Path) -> Result<Scanned, ImportError> {
    let not_tar = |e: std::io::Error| ImportError::NotAnImage {
        path: path.to_path_buf(),
        reason: format!("not a readable (gzip/zstd) tar: {e}"),
    };
    let mut archive = tar::Archive::new(open_tar(path)?);
    let mut out = Scanned::default();
    let mut seen_any = false;
    for entry in archive.entries().map_err(not_tar)? {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) if !seen_any => return Err(not_tar(e)),
            Err(e) => return Err(io_err(path)(e)),
        };
        seen_any = true;
        let raw = entry.path().map_err(io_err(path))?.into_owned();
        let Some(name) = normalize(&raw) else {
            continue;
        };
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Symlink | EntryType::Link => {
                let Some(target) = entry.link_name().map_err(io_err(path))? else {
                    continue;
                };
                let joined = if kind == EntryType::Symlink {
                    Path::new(&name)
                        .parent()
                        .unwrap_or(Path::new(""))
                        .join(target)
                } else {
                    target.into_owned()
                };
                if let Some(t) = normalize(&joined) {
                    out.links.insert(name, t);
                }
                continue;
            }
            EntryType::Regular | EntryType::Continuous => {}
            _ => continue,
        }
        let meta = |e| ImportError::Invalid {
            path: path.to_path_buf(),
            file: name.clone(),
            reason: format!("{e}"),
        };
        match name.as_str() {
            "oci-layout" => {
                read_limited(&mut entry, MAX_META).map_err(meta)?;
                out.oci_layout = true;
                continue;
            }
            "index.json" => {
                out.index_json = Some(read_limited(&mut entry, MAX_META).map_err(meta)?);
                continue;
            }
            "manifest.json" => {
                out.manifest_json = Some(read_limited(&mut entry, MAX_META).map_err(meta)?);
                continue;
            }
            "repositories" => continue,
            // Legacy docker-save metadata, never referenced by manifest.json.
            n if n.ends_with("/VERSION") || n.ends_with("/json") => continue,
            _ => {}
        }
        let expected = name
            .strip_prefix("blobs/sha256/")
            .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok());
        let size = entry.size();
        if let Some(d) = &expected {
            if store.has_blob(d) {
                // Already verified when it was stored; `tar` skips the content.
                out.files.insert(
                    name,
                    StoredFile {
                        digest: d.clone(),
                        size,
                    },
                );
                continue;
            }
        }
        let (digest, size) = store
            .put_blob(expected.as_ref(), &mut entry)
            .map_err(|source| ImportError::BlobRefused {
                path: path.to_path_buf(),
                file: name.clone(),
                source,
            })?;
        tracing::debug!(file = %name, %digest, size, "stored archive file");
        out.files.insert(name, StoredFile { digest, size });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_archive_paths() {
        assert_eq!(
            normalize(Path::new("./manifest.json")).as_deref(),
            Some("manifest.json")
        );
        assert_eq!(
            normalize(Path::new("abc/../x.tar")).as_deref(),
            Some("x.tar")
        );
        assert_eq!(normalize(Path::new("../x")), None);
        assert_eq!(normalize(Path::new("./")), None);
    }
}
