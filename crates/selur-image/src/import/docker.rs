//! docker-archives (`manifest.json` + config JSON + layer tars): the config
//! is kept as is (it is OCI-compatible), layers are checked against the
//! config's `rootfs.diff_ids`, and a new OCI manifest is written for them.

use std::io::{self, BufReader, Read};
use std::path::Path;

use oci_spec::image::ImageConfiguration;
use serde::Deserialize;
use serde_json::json;

use super::archive::{Scanned, StoredFile};
use super::{full_reference, ImportError, ImportedImage, Tag};
use crate::digest::{Digest, HashingWriter};
use crate::store::ImageStore;

/// One image of `manifest.json`.
#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// The images of a scanned docker-archive, imported but not yet tagged.
pub(super) fn import(
    store: &ImageStore,
    path: &Path,
    scanned: &Scanned,
    tag: Option<&Tag>,
) -> Result<Vec<ImportedImage>, ImportError> {
    let invalid = |file: &str, reason: String| ImportError::Invalid {
        path: path.to_path_buf(),
        file: file.to_string(),
        reason,
    };
    let bytes = scanned.manifest_json.as_deref().unwrap_or_default();
    let entries: Vec<Entry> =
        serde_json::from_slice(bytes).map_err(|e| invalid("manifest.json", e.to_string()))?;
    if entries.is_empty() {
        return Err(ImportError::NotAnImage {
            path: path.to_path_buf(),
            reason: "a docker-archive whose manifest.json lists no image".into(),
        });
    }
    // Names first: nothing is written for an archive we could not name.
    let mut named = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let names: Vec<String> = match tag {
            Some(t) if entries.len() == 1 => vec![t.raw.clone()],
            Some(t) => {
                return Err(ImportError::AmbiguousTag {
                    path: path.to_path_buf(),
                    tag: t.raw.clone(),
                    count: entries.len(),
                    names: entries
                        .iter()
                        .flat_map(|e| e.repo_tags.clone().unwrap_or_default())
                        .collect(),
                })
            }
            None => {
                let tags = e.repo_tags.clone().unwrap_or_default();
                let names: Vec<String> = tags
                    .iter()
                    .filter_map(|t| full_reference(t).or_else(|| short(t)))
                    .collect();
                if names.is_empty() || names.len() != tags.len() {
                    return Err(ImportError::NeedTag {
                        path: path.to_path_buf(),
                        what: format!("image {} of manifest.json (RepoTags {tags:?})", i + 1),
                    });
                }
                names
            }
        };
        named.push((e, names));
    }
    let mut out = Vec::new();
    for (e, names) in named {
        let (digest, size) = convert(store, path, scanned, e)?;
        out.extend(names.into_iter().map(|name| ImportedImage {
            name,
            digest: digest.clone(),
            size,
        }));
    }
    Ok(out)
}

/// `busybox:latest` in RepoTags means `docker.io/library/busybox:latest` to docker.
fn short(t: &str) -> Option<String> {
    crate::reference::Reference::parse(t)
        .ok()
        .filter(|r| r.digest.is_none() && r.tag.is_some() && t.contains(':'))
        .map(|r| r.to_string())
}

/// Check one image's config and layers, write its OCI manifest.
fn convert(
    store: &ImageStore,
    path: &Path,
    scanned: &Scanned,
    e: &Entry,
) -> Result<(Digest, u64), ImportError> {
    let missing = |file: &str| ImportError::Invalid {
        path: path.to_path_buf(),
        file: "manifest.json".into(),
        reason: format!("it lists {file:?}, which is not in the archive"),
    };
    let config = scanned
        .lookup(&e.config)
        .ok_or_else(|| missing(&e.config))?;
    // Configs are usually named by their digest: hold them to it.
    let stem = Path::new(&e.config)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if let Ok(named) = Digest::parse(&format!("sha256:{stem}")) {
        if named != config.digest {
            return Err(ImportError::BlobRefused {
                path: path.to_path_buf(),
                file: e.config.clone(),
                source: crate::store::StoreError::DigestMismatch {
                    expected: named,
                    actual: config.digest.clone(),
                },
            });
        }
    }
    let config_bytes = store.read_blob(&config.digest)?;
    let cfg =
        ImageConfiguration::from_reader(&config_bytes[..]).map_err(|err| ImportError::Invalid {
            path: path.to_path_buf(),
            file: e.config.clone(),
            reason: format!("not a container image config: {err}"),
        })?;
    let diff_ids = cfg.rootfs().diff_ids();
    if diff_ids.len() != e.layers.len() {
        return Err(ImportError::Invalid {
            path: path.to_path_buf(),
            file: e.config.clone(),
            reason: format!(
                "{} diff_ids for {} layers in manifest.json",
                diff_ids.len(),
                e.layers.len()
            ),
        });
    }
    let mut layers = Vec::new();
    let mut size = config.size;
    for (file, diff_id) in e.layers.iter().zip(diff_ids) {
        let layer = scanned.lookup(file).ok_or_else(|| missing(file))?;
        let media_type = check_layer(store, path, file, layer, diff_id)?;
        size += layer.size;
        layers.push(
            json!({"mediaType": media_type, "digest": layer.digest.as_str(), "size": layer.size}),
        );
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.digest.as_str(),
            "size": config.size,
        },
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|err| ImportError::Invalid {
        path: path.to_path_buf(),
        file: "manifest.json".into(),
        reason: err.to_string(),
    })?;
    let digest = store.put_blob_bytes(&bytes)?;
    Ok((digest, size + bytes.len() as u64))
}

/// Check a stored layer against its diff_id (the digest of the uncompressed
/// tar); returns its OCI media type.
fn check_layer(
    store: &ImageStore,
    path: &Path,
    file: &str,
    layer: &StoredFile,
    diff_id: &str,
) -> Result<&'static str, ImportError> {
    let blob = || store.open_blob(&layer.digest);
    let io = |e| super::io_err(&store.blob_path(&layer.digest))(e);
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut blob()?, &mut magic).map_err(io)?;
    let (media_type, actual) = if magic[..n].starts_with(&[0x1f, 0x8b]) {
        let r = flate2::read::MultiGzDecoder::new(BufReader::new(blob()?));
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            hash(r).map_err(io)?,
        )
    } else if magic[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let r = zstd::stream::read::Decoder::new(blob()?).map_err(io)?;
        (
            "application/vnd.oci.image.layer.v1.tar+zstd",
            hash(r).map_err(io)?,
        )
    } else {
        (
            "application/vnd.oci.image.layer.v1.tar",
            layer.digest.clone(),
        )
    };
    if actual.as_str() != diff_id {
        return Err(ImportError::LayerMismatch {
            path: path.to_path_buf(),
            file: file.to_string(),
            expected: diff_id.to_string(),
            actual,
        });
    }
    Ok(media_type)
}

fn hash(mut r: impl Read) -> io::Result<Digest> {
    let mut w = HashingWriter::new(io::sink());
    io::copy(&mut r, &mut w)?;
    Ok(w.finish().0)
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
