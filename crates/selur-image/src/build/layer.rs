//! Reproducible layers: a tar of sorted entries with fixed mtimes, numeric
//! owners only (no user/group names, no xattrs, no PAX times), gzip-ed with
//! a fixed header (no mtime, no file name, OS "unknown"), hashed on the way
//! into the store (diff_id over the tar, digest over the gzip stream).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read};
use std::path::PathBuf;

use flate2::{Compression, GzBuilder};

use crate::digest::{Digest, HashingWriter};
use crate::store::ImageStore;

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// A file of the build context.
    Disk(PathBuf),
    /// A file of an earlier stage or stored image.
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
pub(crate) enum EntryKind {
    Dir,
    File { content: Content, size: u64 },
    Symlink(String),
}

/// One path of a layer.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

/// A layer's entries keyed by path (relative to `/`), so sorted.
pub(crate) type Plan = BTreeMap<String, Entry>;

/// A layer written to the store.
#[derive(Debug, Clone)]
pub(crate) struct WrittenLayer {
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
}

/// Write `plan` as a gzip-ed tar blob with every mtime set to `mtime`.
pub(crate) fn write_layer(
    store: &ImageStore,
    plan: &Plan,
    mtime: u64,
) -> Result<WrittenLayer, String> {
    let tmp = store.temp_file().map_err(|e| format!("image store: {e}"))?;
    let compressed = HashingWriter::new(BufWriter::new(tmp));
    // Level 6 with the same flate2 back end always gives the same bytes.
    let gz = GzBuilder::new().write(compressed, Compression::new(6));
    let mut ar = tar::Builder::new(HashingWriter::new(gz));
    let werr = |path: &str, e: io::Error| format!("cannot write /{path} into the layer: {e}");
    for (path, e) in plan {
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode & 0o7777);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(mtime);
        match &e.kind {
            EntryKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                ar.append_data(&mut h, format!("{path}/"), io::empty())
                    .map_err(|x| werr(path, x))?;
            }
            EntryKind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                ar.append_link(&mut h, path, target)
                    .map_err(|x| werr(path, x))?;
            }
            EntryKind::File { content, size } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(*size);
                match content {
                    Content::Bytes(b) => ar.append_data(&mut h, path, &b[..]),
                    Content::Disk(p) => {
                        let f = File::open(p)
                            .map_err(|x| format!("cannot read {}: {x}", p.display()))?;
                        ar.append_data(&mut h, path, Exact::new(f, *size))
                    }
                }
                .map_err(|x| werr(path, x))?;
            }
        }
    }
    let raw = ar
        .into_inner()
        .map_err(|e| format!("cannot finish the layer: {e}"))?;
    let (diff_id, gz) = raw.finish();
    let compressed = gz
        .finish()
        .map_err(|e| format!("cannot finish the layer: {e}"))?;
    let size = compressed.written;
    let (digest, buffered) = compressed.finish();
    let tmp = buffered
        .into_inner()
        .map_err(|e| format!("cannot finish the layer: {}", e.error()))?;
    if !store.has_blob(&digest) {
        store
            .adopt_temp(tmp, &digest)
            .map_err(|e| format!("image store: {e}"))?;
    }
    Ok(WrittenLayer {
        digest,
        size,
        diff_id,
    })
}

/// Reads exactly `size` bytes, failing if the file changed under us.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Exact<R> {
    fn new(inner: R, size: u64) -> Self {
        Exact { inner, left: size }
    }
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being copied; do not modify the build context during a build",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
