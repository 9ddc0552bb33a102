//! Importing images from files into the store: an OCI image layout
//! directory, an oci-archive (the same layout in a tar, as `skopeo copy ...
//! oci-archive:FILE:TAG` writes) or a docker-archive (`skopeo copy ...
//! docker-archive:FILE:NAME:TAG`, `docker save`, `podman save`), plain or
//! gzip/zstd compressed. The format is detected from the content.
//!
//! Archives are streamed in one pass: every file under `blobs/sha256/` goes
//! through [`ImageStore::put_blob`] with the digest its name claims (a blob
//! that does not match is refused and nothing is tagged); a docker-archive's
//! config and layer files are stored under the digest computed while
//! storing, then checked against the config's `rootfs.diff_ids`, and a new
//! OCI manifest is written for them. Image indexes (nested too) resolve to
//! linux/amd64 with [`ImageStore::pick_platform`]; the index blobs are kept.
//!
//! Names: the `tag` argument when given; otherwise an OCI layout's
//! `org.opencontainers.image.ref.name` annotation if it is a full reference
//! (`localhost/app:1`, not just `1`), or a docker-archive's `RepoTags`.
//! Names are only set once every image of the file has been stored.

mod archive;
mod docker;
mod oci;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::reference::{self, BadReference, Reference};
use crate::store::{ImageStore, StoreError};

/// One name given to an imported image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImage {
    /// The normalised name, e.g. `localhost/app:latest`.
    pub name: String,
    /// The image manifest's digest.
    pub digest: Digest,
    /// Manifest + config + (compressed) layers, bytes.
    pub size: u64,
}

/// Errors of [`import`].
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading the input failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Neither an OCI layout, an oci-archive nor a docker-archive.
    #[error("{path} is not an image: {reason}; import an OCI layout directory, an oci-archive or a docker-archive (e.g. written by `skopeo copy ... oci-archive:FILE:TAG`)")]
    NotAnImage { path: PathBuf, reason: String },
    /// A metadata file does not parse or contradicts itself.
    #[error(
        "{file} in {path} is not valid: {reason}; the export is damaged — export the image again"
    )]
    Invalid {
        path: PathBuf,
        file: String,
        reason: String,
    },
    /// A referenced blob is neither in the input nor in the store.
    #[error("blob {digest} is referenced but missing from {path}; export the image again with all its blobs")]
    MissingBlob { path: PathBuf, digest: String },
    /// A blob does not match its digest.
    #[error("{file} in {path} was refused: {source}; the export is damaged or tampered with — export the image again")]
    BlobRefused {
        path: PathBuf,
        file: String,
        #[source]
        source: StoreError,
    },
    /// A blob is not the size its descriptor says.
    #[error("blob {digest} in {path} is {actual} bytes but its descriptor says {expected}; the export is damaged — export the image again")]
    SizeMismatch {
        path: PathBuf,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    /// A docker-archive layer does not match the config's diff_id.
    #[error("layer {file} in {path} does not match the config's diff_id {expected} (it is {actual}); the export is damaged — export the image again")]
    LayerMismatch {
        path: PathBuf,
        file: String,
        expected: String,
        actual: Digest,
    },
    /// No usable name in the input: `tag` is needed.
    #[error("{path} does not say which name to give {what}; pass one with --tag NAME[:TAG] (e.g. --tag localhost/app:1)")]
    NeedTag { path: PathBuf, what: String },
    /// `tag` given for an input holding several images.
    #[error("{path} holds {count} images, so --tag {tag:?} is ambiguous (their names: {names:?}); import without --tag, or extract one image first (e.g. with skopeo)")]
    AmbiguousTag {
        path: PathBuf,
        tag: String,
        count: usize,
        names: Vec<String>,
    },
    /// `tag` is not a valid image name.
    #[error("--tag {tag:?}: {source}; give a name like localhost/app:1")]
    BadTag {
        tag: String,
        #[source]
        source: BadReference,
    },
    /// An image index without a linux/amd64 image.
    #[error("image index {index} in {path} has no linux/amd64 image; export that platform (e.g. `skopeo copy --override-arch amd64 ...`)")]
    NoPlatform { path: PathBuf, index: Digest },
    /// Image indexes nested too deep.
    #[error("image indexes in {path} are nested more than {max} deep at {digest}; the export is not a usable image")]
    TooDeep {
        path: PathBuf,
        digest: Digest,
        max: usize,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Import the image(s) in `path` into `store` and name them; see the module docs.
pub fn import(
    store: &ImageStore,
    path: &Path,
    tag: Option<&str>,
) -> Result<Vec<ImportedImage>, ImportError> {
    let tag = tag.map(Tag::parse).transpose()?;
    let meta = fs::metadata(path).map_err(io_err(path))?;
    let found = if meta.is_dir() {
        if !path.join("oci-layout").is_file() {
            return Err(ImportError::NotAnImage {
                path: path.to_path_buf(),
                reason: "a directory without an oci-layout file".into(),
            });
        }
        let index = read_small(&path.join("index.json"), oci::MAX_JSON)?;
        oci::import_layout(store, path, oci::Source::Dir(path), &index, tag.as_ref())?
    } else {
        let scanned = archive::scan(store, path)?;
        if scanned.oci_layout {
            let index = scanned
                .index_json
                .as_deref()
                .ok_or_else(|| ImportError::Invalid {
                    path: path.to_path_buf(),
                    file: "index.json".into(),
                    reason: "missing next to oci-layout".into(),
                })?;
            oci::import_layout(store, path, oci::Source::Stored, index, tag.as_ref())?
        } else if scanned.manifest_json.is_some() {
            docker::import(store, path, &scanned, tag.as_ref())?
        } else {
            return Err(ImportError::NotAnImage {
                path: path.to_path_buf(),
                reason: "a tar with neither oci-layout nor manifest.json".into(),
            });
        }
    };
    let mut out = Vec::with_capacity(found.len());
    for f in found {
        let name = store.tag(&f.name, &f.digest)?;
        tracing::info!(%name, digest = %f.digest, size = f.size, "imported image");
        out.push(ImportedImage { name, ..f });
    }
    Ok(out)
}

/// The `--tag` argument, checked.
pub(crate) struct Tag {
    /// As the user gave it.
    raw: String,
    /// Its tag part (`1` of `localhost/app:1`).
    tag_part: Option<String>,
}

impl Tag {
    fn parse(raw: &str) -> Result<Self, ImportError> {
        let bad = |source| ImportError::BadTag {
            tag: raw.to_string(),
            source,
        };
        let r = Reference::parse(raw).map_err(bad)?;
        if r.digest.is_some() {
            return Err(bad(BadReference {
                input: raw.to_string(),
                reason: "a name to give cannot contain @digest".into(),
            }));
        }
        Ok(Tag {
            raw: raw.to_string(),
            tag_part: r.tag,
        })
    }
}

/// A name (from an archive) usable as is: a full reference with a repository, no digest.
fn full_reference(name: &str) -> Option<String> {
    if !name.contains('/') {
        return None;
    }
    match Reference::parse(name) {
        Ok(r) if r.digest.is_none() => reference::normalize(name).ok(),
        _ => None,
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImportError + '_ {
    move |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Read a metadata file, refusing one larger than `max` bytes.
fn read_small(path: &Path, max: u64) -> Result<Vec<u8>, ImportError> {
    let f = fs::File::open(path).map_err(io_err(path))?;
    read_limited(f, max).map_err(io_err(path))
}

fn read_limited(r: impl io::Read, max: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(r, max + 1), &mut buf)?;
    if buf.len() as u64 > max {
        return Err(io::Error::other(format!(
            "larger than {max} bytes, too large for metadata"
        )));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            full_reference("localhost/test:latest").as_deref(),
            Some("localhost/test:latest")
        );
        assert_eq!(
            full_reference("library/busybox").as_deref(),
            Some("docker.io/library/busybox:latest")
        );
        assert_eq!(full_reference("latest"), None);
        assert_eq!(full_reference("minimal"), None);
        assert!(Tag::parse("localhost/app:1").is_ok_and(|t| t.tag_part.as_deref() == Some("1")));
        assert!(matches!(
            Tag::parse("Bad Name"),
            Err(ImportError::BadTag { .. })
        ));
        let d = format!("localhost/x@sha256:{}", "a".repeat(64));
        assert!(matches!(Tag::parse(&d), Err(ImportError::BadTag { .. })));
    }
}
