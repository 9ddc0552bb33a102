//! OCI image layouts (a directory, or an archive already scanned into the
//! store): pick the images of `index.json`, name them, and make sure every
//! blob they need is in the store, verified.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use super::{full_reference, ImportError, ImportedImage, Tag};
use crate::digest::Digest;
use crate::store::ImageStore;

/// Largest `index.json` read into memory.
pub(super) const MAX_JSON: u64 = 16 << 20;
/// Deepest nesting of image indexes followed.
const MAX_DEPTH: usize = 4;
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Where the layout's blobs are.
pub(super) enum Source<'a> {
    /// A layout directory: `blobs/sha256/<hex>` under it, copied on demand.
    Dir(&'a Path),
    /// An archive whose blobs were stored while it was scanned.
    Stored,
}

/// The images of a layout's `index.json`, imported but not yet tagged.
pub(super) fn import_layout(
    store: &ImageStore,
    path: &Path,
    src: Source<'_>,
    index_json: &[u8],
    tag: Option<&Tag>,
) -> Result<Vec<ImportedImage>, ImportError> {
    let index = ImageIndex::from_reader(index_json).map_err(|e| invalid(path, "index.json", e))?;
    let entries = index.manifests();
    let ref_name = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .cloned()
    };
    let chosen: Vec<(String, &Descriptor)> = match tag {
        Some(t) if entries.len() == 1 => vec![(t.raw.clone(), &entries[0])],
        Some(t) => {
            let m: Vec<&Descriptor> = entries
                .iter()
                .filter(|d| {
                    ref_name(d).is_some_and(|n| n == t.raw || Some(&n) == t.tag_part.as_ref())
                })
                .collect();
            if m.len() != 1 {
                return Err(ImportError::AmbiguousTag {
                    path: path.to_path_buf(),
                    tag: t.raw.clone(),
                    count: entries.len(),
                    names: entries.iter().filter_map(ref_name).collect(),
                });
            }
            vec![(t.raw.clone(), m[0])]
        }
        None => {
            let mut v = Vec::new();
            for d in entries {
                let name = ref_name(d);
                match name.as_deref().and_then(full_reference) {
                    Some(n) => v.push((n, d)),
                    None => {
                        return Err(ImportError::NeedTag {
                            path: path.to_path_buf(),
                            what: match name {
                                Some(n) => format!("the image whose ref.name is only {n:?}"),
                                None => {
                                    format!("image {} (it has no ref.name annotation)", d.digest())
                                }
                            },
                        })
                    }
                }
            }
            v
        }
    };
    if chosen.is_empty() {
        return Err(ImportError::NotAnImage {
            path: path.to_path_buf(),
            reason: "an OCI layout whose index.json lists no image".into(),
        });
    }
    let mut out = Vec::new();
    for (name, desc) in chosen {
        let (digest, size) = import_manifest(store, path, &src, desc, 0)?;
        out.push(ImportedImage { name, digest, size });
    }
    Ok(out)
}

fn invalid(path: &Path, file: &str, e: impl std::fmt::Display) -> ImportError {
    ImportError::Invalid {
        path: path.to_path_buf(),
        file: file.to_string(),
        reason: e.to_string(),
    }
}

/// Store the manifest `desc` points at (resolving indexes) with its config
/// and layers; returns the image manifest's digest and the image's size.
fn import_manifest(
    store: &ImageStore,
    path: &Path,
    src: &Source<'_>,
    desc: &Descriptor,
    depth: usize,
) -> Result<(Digest, u64), ImportError> {
    let digest = ensure_blob(store, path, src, desc)?;
    if depth > MAX_DEPTH {
        return Err(ImportError::TooDeep {
            path: path.to_path_buf(),
            digest,
            max: MAX_DEPTH,
        });
    }
    let bytes = store.read_blob(&digest)?;
    let what = format!("blob {digest}");
    if is_index(desc.media_type(), &bytes) {
        let index = ImageIndex::from_reader(&bytes[..]).map_err(|e| invalid(path, &what, e))?;
        let picked = ImageStore::pick_platform(&index).ok_or_else(|| ImportError::NoPlatform {
            path: path.to_path_buf(),
            index: digest.clone(),
        })?;
        let child = index
            .manifests()
            .iter()
            .find(|m| m.digest().as_ref() == picked.as_str())
            .ok_or_else(|| ImportError::NoPlatform {
                path: path.to_path_buf(),
                index: digest.clone(),
            })?;
        return import_manifest(store, path, src, child, depth + 1);
    }
    let manifest = ImageManifest::from_reader(&bytes[..]).map_err(|e| invalid(path, &what, e))?;
    let config = ensure_blob(store, path, src, manifest.config())?;
    let config_bytes = store.read_blob(&config)?;
    ImageConfiguration::from_reader(&config_bytes[..]).map_err(|e| {
        invalid(
            path,
            &format!("config {config} (not a container image config?)"),
            e,
        )
    })?;
    let mut size = bytes.len() as u64 + manifest.config().size();
    for l in manifest.layers() {
        ensure_blob(store, path, src, l)?;
        size += l.size();
    }
    Ok((digest, size))
}

/// Whether the blob is an image index (by media type, else by content).
fn is_index(mt: &MediaType, bytes: &[u8]) -> bool {
    match mt {
        MediaType::ImageIndex => true,
        MediaType::ImageManifest => false,
        MediaType::Other(s) if s == "application/vnd.docker.distribution.manifest.list.v2+json" => {
            true
        }
        MediaType::Other(s) if s == "application/vnd.docker.distribution.manifest.v2+json" => false,
        _ => serde_json::from_slice::<serde_json::Value>(bytes)
            .is_ok_and(|v| v.get("manifests").is_some()),
    }
}

/// Make sure the blob `desc` describes is in the store, verified, with the size it claims.
fn ensure_blob(
    store: &ImageStore,
    path: &Path,
    src: &Source<'_>,
    desc: &Descriptor,
) -> Result<Digest, ImportError> {
    let raw = desc.digest().to_string();
    let digest = Digest::parse(&raw).map_err(|e| ImportError::Invalid {
        path: path.to_path_buf(),
        file: format!("descriptor of {raw}"),
        reason: format!("{e} (only sha256 digests are supported)"),
    })?;
    if !store.has_blob(&digest) {
        let Source::Dir(dir) = src else {
            return Err(ImportError::MissingBlob {
                path: path.to_path_buf(),
                digest: raw,
            });
        };
        let file = dir.join("blobs/sha256").join(digest.hex());
        let f = match File::open(&file) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImportError::MissingBlob {
                    path: path.to_path_buf(),
                    digest: raw,
                })
            }
            Err(e) => return Err(super::io_err(&file)(e)),
        };
        store
            .put_blob(Some(&digest), f)
            .map_err(|source| ImportError::BlobRefused {
                path: path.to_path_buf(),
                file: format!("blobs/sha256/{}", digest.hex()),
                source,
            })?;
    }
    let actual = fs::metadata(store.blob_path(&digest))
        .map_err(super::io_err(&store.blob_path(&digest)))?
        .len();
    if actual != desc.size() {
        return Err(ImportError::SizeMismatch {
            path: path.to_path_buf(),
            digest,
            expected: desc.size(),
            actual,
        });
    }
    Ok(digest)
}
