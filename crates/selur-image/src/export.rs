//! Export of a stored image as an oci-archive: a tar of an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/...`) holding one manifest,
//! its config and its layers, the form `skopeo copy oci-archive:FILE ...`,
//! `podman load` and `selur image import` read.
//!
//! The manifest's descriptor in `index.json` carries the image's full
//! normalised name as `org.opencontainers.image.ref.name` (as `podman save
//! --format oci-archive` writes it, so `oci-archive:FILE:NAME` finds it and
//! an import names the image again) and as `io.containerd.image.name`.

use std::io::Write;

use serde_json::json;

use crate::digest::Digest;
use crate::reference::Reference;
use crate::store::{desc_digest, ImageStore, StoreError};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Write `name` (a name, `name@digest` or digest) from `store` to `out` as
/// an oci-archive. Returns the manifest digest written.
pub fn export_oci_archive(
    store: &ImageStore,
    name: &str,
    out: impl Write,
) -> Result<Digest, StoreError> {
    let manifest_digest = store.resolve(name)?;
    let manifest_bytes = store.read_blob(&manifest_digest)?;
    let manifest = store.manifest(&manifest_digest)?;
    let mut blobs = vec![manifest.config().digest().to_string()];
    blobs.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
    let media_type = manifest
        .media_type()
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_else(|| OCI_MANIFEST.to_string());

    let mut annotations = serde_json::Map::new();
    if let Ok(r) = Reference::parse(name) {
        if r.digest.is_none() {
            annotations.insert("io.containerd.image.name".into(), json!(r.to_string()));
            annotations.insert(
                "org.opencontainers.image.ref.name".into(),
                json!(r.to_string()),
            );
        }
    }
    let mut desc = json!({
        "mediaType": media_type,
        "digest": manifest_digest.to_string(),
        "size": manifest_bytes.len(),
    });
    if !annotations.is_empty() {
        desc["annotations"] = serde_json::Value::Object(annotations);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [desc],
    });

    let mut tar = tar::Builder::new(out);
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    append(&mut tar, "oci-layout", layout.len() as u64, &layout[..])?;
    let index_bytes = serde_json::to_vec(&index).map_err(|e| StoreError::Invalid {
        what: "index.json".into(),
        reason: e.to_string(),
    })?;
    append(
        &mut tar,
        "index.json",
        index_bytes.len() as u64,
        &index_bytes[..],
    )?;
    let blob_path = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    let manifest_len = manifest_bytes.len() as u64;
    append(
        &mut tar,
        &blob_path(&manifest_digest),
        manifest_len,
        &manifest_bytes[..],
    )?;
    let mut seen = std::collections::HashSet::new();
    for b in blobs {
        let d = desc_digest(b)?;
        if seen.insert(d.clone()) {
            let path = blob_path(&d);
            let f = store.open_blob(&d)?;
            let len = f.metadata().map_err(|e| io_err(&path, e))?.len();
            append(&mut tar, &path, len, f)?;
        }
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| io_err("archive", e))?;
    Ok(manifest_digest)
}

/// Append a regular file of `len` bytes with fixed mode and time (so the
/// same image gives the same archive).
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    len: u64,
    data: impl std::io::Read,
) -> Result<(), StoreError> {
    let mut h = tar::Header::new_ustar();
    h.set_size(len);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, path, data)
        .map_err(|source| io_err(path, source))
}

fn io_err(path: &str, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exported_archive_imports_back_to_the_same_digest() {
        let a = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(&a.path().join("store")).expect("store");
        let ctx = a.path().join("ctx");
        std::fs::create_dir_all(ctx.join("bin")).expect("ctx");
        std::fs::write(ctx.join("bin/hello"), b"hello").expect("file");
        std::fs::write(
            ctx.join("Containerfile"),
            "FROM scratch\nCOPY bin/hello /bin/hello\nLABEL a=b\n",
        )
        .expect("containerfile");
        let built = crate::build::build(
            &store,
            &ctx.join("Containerfile"),
            &ctx,
            &["example.org/t/hello:v1".to_string()],
            &Default::default(),
        )
        .expect("build");
        let mut tar = Vec::new();
        let d = export_oci_archive(&store, "example.org/t/hello:v1", &mut tar).expect("export");
        assert_eq!(d, built.digest);

        let b = tempfile::tempdir().expect("tempdir");
        let other = ImageStore::open(b.path()).expect("store");
        let archive = b.path().join("img.tar");
        std::fs::write(&archive, &tar).expect("write");
        let imported = crate::import::import(&other, &archive, None).expect("import");
        assert_eq!(imported.len(), 1);
        assert_eq!(imported[0].digest, d);
        assert_eq!(imported[0].name, "example.org/t/hello:v1");
        assert_eq!(
            other.resolve("example.org/t/hello:v1").expect("name"),
            d,
            "the archive's name annotation names the image"
        );
        assert!(other.inspect("example.org/t/hello:v1").is_ok());
    }
}
