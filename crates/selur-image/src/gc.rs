//! Image garbage collection: when the file system holding the store is more
//! than `high` percent full, unused images are removed, least recently
//! tagged first, until usage is at or below `low` percent (the kubelet's
//! image GC thresholds). Images in use (by pods) are never removed.

use std::collections::HashSet;
use std::path::Path;

use crate::store::{ImageStore, StoreError};
use crate::Digest;

/// How full a file system is.
pub trait DiskUsage {
    /// (used bytes, total bytes) of the file system holding `path`.
    fn usage(&self, path: &Path) -> std::io::Result<(u64, u64)>;
}

/// The real file system, through statvfs.
#[derive(Debug, Default, Clone, Copy)]
pub struct StatVfs;

impl DiskUsage for StatVfs {
    fn usage(&self, path: &Path) -> std::io::Result<(u64, u64)> {
        let s = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
        let total = s.f_blocks.saturating_mul(s.f_frsize);
        let free = s.f_bavail.saturating_mul(s.f_frsize);
        Ok((total.saturating_sub(free), total))
    }
}

/// GC thresholds, in percent of the file system.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GcPolicy {
    pub high_percent: u8,
    pub low_percent: u8,
}

impl Default for GcPolicy {
    fn default() -> Self {
        // The kubelet's defaults.
        Self {
            high_percent: 85,
            low_percent: 80,
        }
    }
}

/// What a GC run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcReport {
    pub removed: Vec<String>,
    pub freed_bytes: u64,
}

/// Remove unused images until usage is at or below the low threshold, if it is above the high one.
pub fn collect(
    store: &ImageStore,
    disk: &dyn DiskUsage,
    policy: GcPolicy,
    in_use: &HashSet<Digest>,
) -> Result<GcReport, StoreError> {
    let io = |e| StoreError::Io {
        path: store.root().to_path_buf(),
        source: e,
    };
    let (used, total) = disk.usage(store.root()).map_err(io)?;
    let pct = |used: u64| used.saturating_mul(100).checked_div(total).unwrap_or(0);
    if pct(used) <= u64::from(policy.high_percent) {
        return Ok(GcReport::default());
    }
    let target = total.saturating_mul(u64::from(policy.low_percent)) / 100;
    let mut need = used.saturating_sub(target);
    let mut report = GcReport::default();
    // Oldest tag first: the index keeps insertion order per name only, so use the manifest blob's mtime.
    let mut candidates: Vec<(std::time::SystemTime, Digest, Vec<String>)> = store
        .names()?
        .into_iter()
        .filter(|(d, _)| !in_use.contains(d))
        .map(|(d, names)| {
            let t = std::fs::metadata(store.blob_path(&d))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, d, names)
        })
        .collect();
    candidates.sort();
    for (_, digest, names) in candidates {
        if need == 0 {
            break;
        }
        store.remove(digest.as_str())?;
        let freed = store.prune(in_use)?;
        report.removed.extend(names);
        report.freed_bytes += freed;
        need = need.saturating_sub(freed);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A disk whose usage is the store's blob bytes plus a fixed base.
    struct Fake {
        base: u64,
        total: u64,
        calls: Cell<u32>,
    }

    impl DiskUsage for Fake {
        fn usage(&self, path: &Path) -> std::io::Result<(u64, u64)> {
            self.calls.set(self.calls.get() + 1);
            let mut used = self.base;
            for e in std::fs::read_dir(path.join("blobs/sha256"))?.flatten() {
                used += e.metadata()?.len();
            }
            Ok((used, self.total))
        }
    }

    fn image(store: &ImageStore, name: &str, payload: usize, seed: u8) -> Digest {
        let layer = store.put_blob_bytes(&vec![seed; payload]).unwrap();
        let config = store
            .put_blob_bytes(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#)
            .unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":10}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{payload}}}]}}"#
        );
        let m = store.put_blob_bytes(manifest.as_bytes()).unwrap();
        store.tag(name, &m).unwrap();
        m
    }

    #[test]
    fn removes_unused_images_down_to_low_threshold_and_keeps_used_ones() {
        let d = tempfile::tempdir().unwrap();
        let s = ImageStore::open(d.path()).unwrap();
        let a = image(&s, "localhost/a:1", 300_000, 1);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = image(&s, "localhost/b:1", 300_000, 2);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let _c = image(&s, "localhost/c:1", 300_000, 3);
        let disk = Fake {
            base: 0,
            total: 1_000_000,
            calls: Cell::new(0),
        };
        // ~90% used; high 85 -> collect down to 50: must free ~400k: two images, oldest unused first.
        let in_use: HashSet<Digest> = [a.clone()].into();
        let r = collect(
            &s,
            &disk,
            GcPolicy {
                high_percent: 85,
                low_percent: 50,
            },
            &in_use,
        )
        .unwrap();
        assert_eq!(
            r.removed,
            vec!["localhost/b:1".to_string(), "localhost/c:1".to_string()]
        );
        assert!(s.resolve("localhost/a:1").is_ok(), "in-use image kept");
        assert!(!s.has_blob(&b));
        // Below the high threshold: nothing happens.
        let r = collect(&s, &disk, GcPolicy::default(), &HashSet::new()).unwrap();
        assert!(r.removed.is_empty());
    }
}
