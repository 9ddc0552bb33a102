//! The content-addressed store: `blobs/sha256/<hex>` written through a temp
//! file that is hashed while written, fsynced and renamed into place only if
//! its digest is the expected one; `index.json` maps normalised names to
//! manifest digests (rewritten atomically).
//!
//! Layout under the root:
//! ```text
//! blobs/sha256/<hex>   manifests, configs, layers (immutable)
//! index.json           {"images": {"docker.io/library/busybox:latest": "sha256:..."}}
//! layers/<hex>/        unpacked layers (see `unpack`), keyed by layer digest
//! tmp/                 partial writes (same file system, so rename is atomic)
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingWriter};
use crate::reference;

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob digest mismatch: expected {expected}, got {actual}; the content was refused and not stored")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("image {0:?} not found in the node's store (see `selur image ls`)")]
    NotFound(String),
    #[error("blob {0} is missing from the store")]
    MissingBlob(Digest),
    #[error("{what} is not valid: {reason}")]
    Invalid { what: String, reason: String },
    #[error(transparent)]
    Reference(#[from] reference::BadReference),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Index {
    images: BTreeMap<String, Digest>,
}

/// What `inspect` and `ls` show of an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    pub names: Vec<String>,
    pub digest: Digest,
    pub config_digest: Digest,
    pub labels: BTreeMap<String, String>,
    pub user: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub exposed_ports: Vec<String>,
    pub layers: Vec<LayerInfo>,
    /// Manifest + config + compressed layers, bytes.
    pub size: u64,
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerInfo {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// One node's image store.
///
/// Manifests and configs are parsed once per digest and kept (blobs are
/// immutable: a digest always names the same bytes); `index.json` is
/// parsed again only when its size or modification time changed. So a
/// container start costs a `stat` of the index, not a read and parse of the
/// index, the manifest (twice) and the config.
pub struct ImageStore {
    root: PathBuf,
    index: Mutex<()>,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    /// `index.json` as last read, with the (len, mtime) it had.
    index: Option<((u64, std::time::SystemTime), Index)>,
    manifests: std::collections::HashMap<Digest, ImageManifest>,
    configs: std::collections::HashMap<Digest, ImageConfiguration>,
}

/// Most manifests and configs kept parsed (a node rarely holds more images).
const CACHE_MAX: usize = 1024;

impl ImageStore {
    /// Open or create the store at `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for d in ["blobs/sha256", "layers", "tmp"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            index: Mutex::new(()),
            cache: Mutex::new(Cache::default()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// A temp file in the store (same file system as the blobs).
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        let dir = self.root.join("tmp");
        tempfile::NamedTempFile::new_in(&dir).map_err(io_err(&dir))
    }

    /// Store what `reader` yields; refused (nothing stored) if `expected` is given and differs.
    pub fn put_blob(
        &self,
        expected: Option<&Digest>,
        mut reader: impl Read,
    ) -> Result<(Digest, u64), StoreError> {
        let tmp = self.temp_file()?;
        let tmp_path = tmp.path().to_path_buf();
        let mut w = HashingWriter::new(tmp);
        io::copy(&mut reader, &mut w).map_err(io_err(&tmp_path))?;
        let size = w.written;
        let (actual, tmp) = w.finish();
        if let Some(e) = expected {
            if *e != actual {
                return Err(StoreError::DigestMismatch {
                    expected: e.clone(),
                    actual,
                });
            }
        }
        let dest = self.blob_path(&actual);
        if dest.is_file() {
            return Ok((actual, size));
        }
        tmp.as_file().sync_all().map_err(io_err(&tmp_path))?;
        tmp.persist(&dest).map_err(|e| StoreError::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        sync_dir(dest.parent().unwrap_or(&self.root));
        Ok((actual, size))
    }

    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        Ok(self.put_blob(None, bytes)?.0)
    }

    /// Adopt a file already written in `tmp/` (e.g. a verified download) as a blob.
    pub fn adopt_temp(
        &self,
        tmp: tempfile::NamedTempFile,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        let dest = self.blob_path(digest);
        tmp.as_file().sync_all().map_err(io_err(&dest))?;
        tmp.persist(&dest).map_err(|e| StoreError::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(d);
        match fs::read(&p) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::MissingBlob(d.clone()))
            }
            Err(e) => Err(StoreError::Io { path: p, source: e }),
        }
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File, StoreError> {
        let p = self.blob_path(d);
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::MissingBlob(d.clone()),
            _ => StoreError::Io { path: p, source: e },
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_index(&self) -> Result<Index, StoreError> {
        let p = self.root.join("index.json");
        let stamp = match fs::metadata(&p) {
            Ok(m) => (m.len(), m.modified().map_err(io_err(&p))?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Index::default()),
            Err(e) => return Err(StoreError::Io { path: p, source: e }),
        };
        if let Some((at, idx)) = &self.cache().index {
            if *at == stamp {
                return Ok(idx.clone());
            }
        }
        let idx: Index = match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| StoreError::Invalid {
                what: p.display().to_string(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Index::default()),
            Err(e) => return Err(StoreError::Io { path: p, source: e }),
        };
        self.cache().index = Some((stamp, idx.clone()));
        Ok(idx)
    }

    fn write_index(&self, idx: &Index) -> Result<(), StoreError> {
        let p = self.root.join("index.json");
        let mut tmp = self.temp_file()?;
        let bytes = serde_json::to_vec_pretty(idx).map_err(|e| StoreError::Invalid {
            what: "index".into(),
            reason: e.to_string(),
        })?;
        tmp.write_all(&bytes).map_err(io_err(&p))?;
        tmp.as_file().sync_all().map_err(io_err(&p))?;
        tmp.persist(&p).map_err(|e| StoreError::Io {
            path: p.clone(),
            source: e.error,
        })?;
        sync_dir(&self.root);
        // Same size within the file system's time granularity would look
        // unchanged: forget the cached copy.
        self.cache().index = None;
        Ok(())
    }

    /// Point `name` (normalised) at `manifest`.
    pub fn tag(&self, name: &str, manifest: &Digest) -> Result<String, StoreError> {
        let name = reference::normalize(name)?;
        let _g = self.index.lock().map_err(|_| poisoned())?;
        let mut idx = self.read_index()?;
        idx.images.insert(name.clone(), manifest.clone());
        self.write_index(&idx)?;
        Ok(name)
    }

    /// The manifest digest a name, `name@digest` or bare digest refers to.
    pub fn resolve(&self, name: &str) -> Result<Digest, StoreError> {
        if let Ok(d) = Digest::parse(name) {
            return if self.has_blob(&d) {
                Ok(d)
            } else {
                Err(StoreError::NotFound(name.into()))
            };
        }
        let r = reference::Reference::parse(name)?;
        if let Some(d) = &r.digest {
            let d = Digest::parse(d).map_err(|e| StoreError::Invalid {
                what: name.into(),
                reason: e.to_string(),
            })?;
            return if self.has_blob(&d) {
                Ok(d)
            } else {
                Err(StoreError::NotFound(name.into()))
            };
        }
        let idx = self.read_index()?;
        idx.images
            .get(&r.to_string())
            .cloned()
            .ok_or_else(|| StoreError::NotFound(name.into()))
    }

    /// Names pointing at each manifest.
    pub fn names(&self) -> Result<BTreeMap<Digest, Vec<String>>, StoreError> {
        let mut out: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for (n, d) in self.read_index()?.images {
            out.entry(d).or_default().push(n);
        }
        Ok(out)
    }

    pub fn manifest(&self, d: &Digest) -> Result<ImageManifest, StoreError> {
        if let Some(m) = self.cache().manifests.get(d) {
            return Ok(m.clone());
        }
        let bytes = self.read_blob(d)?;
        let m = ImageManifest::from_reader(&bytes[..]).map_err(|e| StoreError::Invalid {
            what: format!("manifest {d}"),
            reason: e.to_string(),
        })?;
        let mut c = self.cache();
        if c.manifests.len() >= CACHE_MAX {
            c.manifests.clear();
        }
        c.manifests.insert(d.clone(), m.clone());
        Ok(m)
    }

    pub fn config(&self, m: &ImageManifest) -> Result<(Digest, ImageConfiguration), StoreError> {
        let d = desc_digest(m.config().digest().to_string())?;
        if let Some(c) = self.cache().configs.get(&d) {
            return Ok((d, c.clone()));
        }
        let bytes = self.read_blob(&d)?;
        let c = ImageConfiguration::from_reader(&bytes[..]).map_err(|e| StoreError::Invalid {
            what: format!("config {d}"),
            reason: e.to_string(),
        })?;
        let mut cache = self.cache();
        if cache.configs.len() >= CACHE_MAX {
            cache.configs.clear();
        }
        cache.configs.insert(d.clone(), c.clone());
        Ok((d, c))
    }

    /// Everything `inspect` shows.
    pub fn inspect(&self, name: &str) -> Result<ImageInfo, StoreError> {
        let d = self.resolve(name)?;
        let names = self.names()?.remove(&d).unwrap_or_default();
        self.info(&d, names)
    }

    fn info(&self, d: &Digest, names: Vec<String>) -> Result<ImageInfo, StoreError> {
        let m = self.manifest(d)?;
        let (config_digest, c) = self.config(&m)?;
        let mut layers = Vec::new();
        for l in m.layers() {
            layers.push(LayerInfo {
                digest: desc_digest(l.digest().to_string())?,
                size: l.size(),
                media_type: l.media_type().to_string(),
            });
        }
        let manifest_size = fs::metadata(self.blob_path(d))
            .map(|m| m.len())
            .unwrap_or(0);
        let size = manifest_size + m.config().size() + layers.iter().map(|l| l.size).sum::<u64>();
        let cfg = c.config().clone().unwrap_or_default();
        Ok(ImageInfo {
            names,
            digest: d.clone(),
            config_digest,
            labels: cfg
                .labels()
                .clone()
                .map(|l| l.into_iter().collect())
                .unwrap_or_default(),
            user: cfg.user().clone().filter(|u| !u.is_empty()),
            entrypoint: cfg.entrypoint().clone(),
            cmd: cfg.cmd().clone(),
            env: cfg.env().clone(),
            working_dir: cfg.working_dir().clone().filter(|w| !w.is_empty()),
            exposed_ports: cfg.exposed_ports().clone().unwrap_or_default(),
            layers,
            size,
            created: c.created().clone(),
            architecture: c.architecture().to_string(),
            os: c.os().to_string(),
        })
    }

    /// Every named image.
    pub fn list(&self) -> Result<Vec<ImageInfo>, StoreError> {
        let mut out = Vec::new();
        for (d, names) in self.names()? {
            out.push(self.info(&d, names)?);
        }
        Ok(out)
    }

    /// Remove a name (or every name of a digest). Blobs go at the next prune.
    pub fn remove(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let d = self.resolve(name)?;
        let _g = self.index.lock().map_err(|_| poisoned())?;
        let mut idx = self.read_index()?;
        let by_name = reference::normalize(name).ok();
        let removed: Vec<String> = idx
            .images
            .iter()
            .filter(|(n, v)| {
                **v == d
                    && (by_name.as_deref() == Some(n.as_str())
                        || Digest::parse(name).is_ok()
                        || name.contains('@'))
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in &removed {
            idx.images.remove(n);
        }
        self.write_index(&idx)?;
        Ok(removed)
    }

    /// Blobs reachable from named images plus `keep` (images pods use).
    pub fn reachable(&self, keep: &HashSet<Digest>) -> Result<BTreeSet<Digest>, StoreError> {
        let mut out = BTreeSet::new();
        let mut roots: Vec<Digest> = self.read_index()?.images.into_values().collect();
        roots.extend(keep.iter().cloned());
        for d in roots {
            if !self.has_blob(&d) {
                continue;
            }
            let m = self.manifest(&d)?;
            out.insert(d);
            out.insert(desc_digest(m.config().digest().to_string())?);
            for l in m.layers() {
                out.insert(desc_digest(l.digest().to_string())?);
            }
        }
        Ok(out)
    }

    /// Delete blobs and unpacked layers nothing reaches; returns bytes freed.
    pub fn prune(&self, keep: &HashSet<Digest>) -> Result<u64, StoreError> {
        let _g = self.index.lock().map_err(|_| poisoned())?;
        let live = self.reachable(keep)?;
        let live_hex: HashSet<&str> = live.iter().map(Digest::hex).collect();
        let mut freed = 0;
        let blobs = self.root.join("blobs/sha256");
        for e in fs::read_dir(&blobs).map_err(io_err(&blobs))?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !live_hex.contains(name.as_str()) {
                freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                let _ = fs::remove_file(e.path());
            }
        }
        let layers = self.root.join("layers");
        for e in fs::read_dir(&layers).map_err(io_err(&layers))?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !live_hex.contains(name.as_str()) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        let mut c = self.cache();
        c.manifests.retain(|d, _| live.contains(d));
        c.configs.retain(|d, _| live.contains(d));
        Ok(freed)
    }

    /// From an image index, the linux/amd64 manifest's digest (or its only
    /// manifest's); the same choice a pull makes.
    pub fn pick_platform(index: &ImageIndex) -> Option<Digest> {
        selur_registry::remote::pick_platform(index)
    }
}

fn poisoned() -> StoreError {
    StoreError::Invalid {
        what: "image index lock".into(),
        reason: "poisoned by a panic".into(),
    }
}

pub(crate) fn desc_digest(s: String) -> Result<Digest, StoreError> {
    Digest::parse(&s).map_err(|e| StoreError::Invalid {
        what: "descriptor digest".into(),
        reason: e.to_string(),
    })
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_index_follows_every_change_of_names() {
        let d = tempfile::tempdir().unwrap();
        let s = ImageStore::open(d.path()).unwrap();
        let a = s.put_blob_bytes(b"a").unwrap();
        let b = s.put_blob_bytes(b"b").unwrap();
        s.tag("localhost/x:1", &a).unwrap();
        assert_eq!(s.resolve("localhost/x:1").unwrap(), a);
        // Retagged to a digest of the same length: the index has the same
        // size, and may have the same mtime.
        s.tag("localhost/x:1", &b).unwrap();
        assert_eq!(s.resolve("localhost/x:1").unwrap(), b);
        s.remove("localhost/x:1").unwrap();
        assert!(matches!(
            s.resolve("localhost/x:1"),
            Err(StoreError::NotFound(_))
        ));
        // Another process rewriting the file (a second store on the same root).
        let other = ImageStore::open(d.path()).unwrap();
        other.tag("localhost/y:1", &a).unwrap();
        assert_eq!(s.resolve("localhost/y:1").unwrap(), a);
    }

    #[test]
    fn blobs_are_verified_and_atomic() {
        let d = tempfile::tempdir().unwrap();
        let s = ImageStore::open(d.path()).unwrap();
        let good = Digest::of(b"hello");
        let (got, size) = s.put_blob(Some(&good), &b"hello"[..]).unwrap();
        assert_eq!((got, size), (good.clone(), 5));
        let bad = s.put_blob(Some(&good), &b"evil"[..]).unwrap_err();
        assert!(matches!(bad, StoreError::DigestMismatch { .. }));
        assert!(!s.has_blob(&Digest::of(b"evil")), "refused blob not stored");
        assert_eq!(
            fs::read_dir(d.path().join("tmp")).unwrap().count(),
            0,
            "no temp left"
        );
    }
}
