//! Safe layer unpacking: each layer blob is extracted once into
//! `<store>/layers/<hex>/`, shared read-only by every pod (the runtime stacks
//! these directories as overlayfs `lowerdir`s).
//!
//! A layer is first extracted into a private temp directory under the
//! store's `tmp/` and renamed into `layers/` only when it is complete, so a
//! directory under `layers/<hex>` is always a whole layer (no marker file).
//! Any error removes the partial tree.
//!
//! Layers are untrusted input. Refused, with the entry named:
//! - paths that are absolute or contain `..`;
//! - writes through a symlink that leads outside the layer (symlinks inside
//!   the layer are resolved by hand, component by component; the OS never
//!   follows one for us). Symlinks with absolute targets (`bin/sh ->
//!   /bin/busybox`) are kept verbatim; only writing *through* them is refused;
//! - hard links whose target is outside the layer or not (yet) in it;
//! - character/block devices and FIFOs (except `0/0` whiteout devices);
//! - more than [`UnpackLimits::max_entries`] entries or more than
//!   [`UnpackLimits::max_bytes`] uncompressed bytes (checked mid-stream).
//!
//! Whiteouts: `.wh.<name>` becomes an overlayfs whiteout (character device
//! 0/0), created with the `mknod` command because this crate forbids
//! `unsafe` (and so cannot call mknod(2)). Opaque directories
//! (`.wh..wh..opq`) get the `trusted.overlay.opaque=y` xattr through
//! `setfattr`. Whatever cannot be applied that way (no `mknod`/`setfattr`,
//! not root) is listed in `<layer>/.selur-whiteouts` ([`WhiteoutRecord`],
//! JSON) for the runtime to apply.
//!
//! Ownership and modes are preserved (`lchown` fails harmlessly when not
//! root), regular files keep their mtimes; directory mtimes are not restored.

mod extract;
mod resolve;

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};
use crate::store::{ImageStore, StoreError};

pub use extract::WhiteoutRecord;

/// Name of the file listing whiteouts that could not be made overlayfs-native.
pub const WHITEOUT_RECORD: &str = ".selur-whiteouts";

/// Bounds against tar bombs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Most uncompressed bytes of the layer tar (contents and headers).
    pub max_bytes: u64,
    /// Most entries in the layer tar.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_bytes: 4 << 30,
            max_entries: 1_000_000,
        }
    }
}

/// Why a layer entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Hostile {
    /// An absolute entry path.
    #[error("absolute path")]
    Absolute,
    /// A `..` component (or a symlink climbing above the root).
    #[error("path contains `..`")]
    ParentDir,
    /// Written through a symlink leading outside the layer.
    #[error(
        "it would be written through symlink {link:?} -> {target:?}, which leads outside the layer"
    )]
    SymlinkEscape { link: String, target: String },
    /// Symlinks nested too deep.
    #[error("too many levels of symlinks")]
    SymlinkLoop,
    /// A parent component is a file.
    #[error("{path:?} is not a directory")]
    NotADirectory { path: String },
    /// A hard link to outside the layer.
    #[error("hard link to {target:?}, which is outside the layer")]
    HardlinkOutside { target: String },
    /// A hard link to a file not (yet) extracted.
    #[error("hard link to {target:?}, which does not exist in the layer (yet)")]
    HardlinkMissing { target: String },
    /// A character or block device (other than a 0/0 whiteout).
    #[error("device nodes are not allowed in images")]
    Device,
    /// A named pipe.
    #[error("FIFOs are not allowed in images")]
    Fifo,
    /// A tar entry type selur does not extract.
    #[error("unsupported tar entry type {0}")]
    UnsupportedType(String),
    /// A link without a target.
    #[error("empty symlink or hard link target")]
    EmptyLink,
    /// A whiteout naming nothing (`.wh.`, `.wh..`).
    #[error("bad whiteout name")]
    BadWhiteout,
    /// An entry named like selur's whiteout record.
    #[error("{WHITEOUT_RECORD} is a name reserved by selur")]
    Reserved,
    /// More entries than `max_entries`.
    #[error("the layer has more than {max} entries")]
    TooManyEntries { max: u64 },
    /// More uncompressed bytes than `max_bytes`.
    #[error("the layer is larger than {max} bytes uncompressed")]
    TooLarge { max: u64 },
}

/// Errors of layer unpacking.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The store failed (missing blob, bad manifest, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A hostile entry; nothing of the layer was kept.
    #[error("layer {layer}: entry {entry:?} refused: {kind}; the layer is unsafe to unpack — rebuild the image without it or import a trusted copy")]
    Refused {
        layer: Digest,
        entry: String,
        kind: Hostile,
    },
    /// Not a tar layer (e.g. encrypted).
    #[error("layer {layer} has media type {media_type:?}, which is not a (gzip/zstd) tar layer selur can unpack; rebuild the image with plain OCI layers")]
    UnsupportedMediaType { layer: Digest, media_type: String },
    /// The blob does not decompress or is not a tar.
    #[error("layer {layer} is not a readable tar ({at}): {source}; the blob is corrupt — remove the image and import it again")]
    Corrupt {
        layer: Digest,
        at: String,
        #[source]
        source: io::Error,
    },
    /// The blob on disk is not what its digest says.
    #[error("layer {layer} on disk hashes to {actual}; the store is corrupt — remove the image and import it again")]
    DigestMismatch { layer: Digest, actual: Digest },
    /// The file system failed.
    #[error("unpacking layer {layer}: {path}: {source}")]
    Io {
        layer: Digest,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The directory holding the unpacked `layer` (it may not exist yet).
pub fn layer_dir(store: &ImageStore, layer: &Digest) -> PathBuf {
    store.root().join("layers").join(layer.hex())
}

/// Unpack the layer blob `layer` (a tar, plain or gzip/zstd compressed) into
/// `<store>/layers/<hex>/`, unless it is already there; returns that directory.
pub fn unpack_layer(
    store: &ImageStore,
    layer: &Digest,
    media_type: &str,
    limits: &UnpackLimits,
) -> Result<PathBuf, UnpackError> {
    let dest = layer_dir(store, layer);
    if dest.is_dir() {
        return Ok(dest);
    }
    if !media_type.contains("tar") || media_type.contains("encrypted") {
        return Err(UnpackError::UnsupportedMediaType {
            layer: layer.clone(),
            media_type: media_type.to_string(),
        });
    }
    let file = store.open_blob(layer)?;
    let tmp_root = store.root().join("tmp");
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UnpackError::Io {
            layer: layer.clone(),
            path,
            source,
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix(&format!("layer-{}-", &layer.hex()[..12]))
        .tempdir_in(&tmp_root)
        .map_err(io_err(&tmp_root))?;
    // `tmp` is removed when dropped: every early return leaves nothing behind.
    let mut tee = Tee {
        inner: file,
        hash: HashingWriter::new(io::sink()),
    };
    let mut ex = extract::Extractor::new(tmp.path(), layer, limits);
    {
        let mut buffered = BufReader::new(&mut tee);
        let magic = buffered
            .fill_buf()
            .map_err(|e| corrupt(layer, "start", e))?;
        let decoder: Box<dyn Read + '_> = match Compression::sniff(magic, media_type) {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(buffered)
                    .map_err(|e| corrupt(layer, "start", e))?,
            ),
            Compression::None => Box::new(buffered),
        };
        ex.run(decoder)?;
    }
    // Hash whatever follows the end of the tar, then compare.
    io::copy(&mut tee, &mut io::sink()).map_err(|e| corrupt(layer, "end", e))?;
    let (actual, _) = tee.hash.finish();
    if actual != *layer {
        return Err(UnpackError::DigestMismatch {
            layer: layer.clone(),
            actual,
        });
    }
    ex.finish()?;
    match fs::rename(tmp.path(), &dest) {
        Ok(()) => {
            if let Ok(d) = File::open(dest.parent().unwrap_or(&dest)) {
                let _ = d.sync_all();
            }
            Ok(dest)
        }
        // Someone else (another pod starting) finished first: theirs is as good.
        Err(_) if dest.is_dir() => Ok(dest),
        Err(e) => Err(io_err(&dest)(e)),
    }
}

/// Unpack every layer of the image manifest `manifest`; returns the layer
/// directories bottom-to-top (reverse them for an overlayfs `lowerdir=`).
pub fn unpack_image(
    store: &ImageStore,
    manifest: &Digest,
    limits: &UnpackLimits,
) -> Result<Vec<PathBuf>, UnpackError> {
    let m = store.manifest(manifest)?;
    let mut dirs = Vec::with_capacity(m.layers().len());
    for l in m.layers() {
        let d = Digest::parse(l.digest().as_ref()).map_err(|e| StoreError::Invalid {
            what: format!("layer descriptor in manifest {manifest}"),
            reason: e.to_string(),
        })?;
        dirs.push(unpack_layer(store, &d, l.media_type().as_ref(), limits)?);
    }
    Ok(dirs)
}

fn corrupt(layer: &Digest, at: &str, source: io::Error) -> UnpackError {
    UnpackError::Corrupt {
        layer: layer.clone(),
        at: at.to_string(),
        source,
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Magic bytes win; the media type decides only when they say nothing.
    fn sniff(magic: &[u8], media_type: &str) -> Self {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if magic.len() >= 4 {
            Compression::None
        } else if media_type.ends_with("gzip") {
            Compression::Gzip
        } else if media_type.ends_with("zstd") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// A reader that also feeds what it reads to a hasher.
struct Tee<R> {
    inner: R,
    hash: HashingWriter<io::Sink>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_compression() {
        assert_eq!(
            Compression::sniff(&[0x1f, 0x8b, 8, 0], ""),
            Compression::Gzip
        );
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd], ""),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"bin/", "x+gzip"), Compression::None);
        assert_eq!(
            Compression::sniff(b"", "application/vnd.oci.image.layer.v1.tar+zstd"),
            Compression::Zstd
        );
    }
}
