//! Process-wide deduplication of layer downloads: one lock per (store, blob
//! digest), so a second pull of the same layer waits for the first and then
//! finds the blob in the store instead of fetching it again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::Digest;

type Key = (PathBuf, Digest);

static INFLIGHT: LazyLock<Mutex<HashMap<Key, Weak<AsyncMutex<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Wait until no other download of `digest` into the store at `root` runs in
/// this process, and hold that place until the guard is dropped.
pub(super) async fn lock(root: &Path, digest: &Digest) -> OwnedMutexGuard<()> {
    let lock = {
        // A poisoned map only means another thread panicked while holding
        // it; the map itself is still consistent.
        let mut map = INFLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        let key = (root.to_path_buf(), digest.clone());
        match map.get(&key).and_then(Weak::upgrade) {
            Some(l) => l,
            None => {
                let l = Arc::new(AsyncMutex::new(()));
                map.insert(key, Arc::downgrade(&l));
                l
            }
        }
    };
    lock.lock_owned().await
}
