//! Pulling images from registries into the node's [`ImageStore`].
//!
//! The reference is resolved with `selur-registry` (mirrors tried in order,
//! then the registry itself; manifest and config only, see
//! [`selur_registry::remote`]); then each layer missing from
//! the store is streamed into a temp file of the store while hashed, checked
//! against its descriptor's size and digest and only then adopted as a blob.
//! Layers are fetched first from the endpoint that served the manifest, then
//! from the others. An endpoint that is unreachable, lacks the layer or fails
//! with a server error gives way to the next one; an authentication failure
//! or content that does not match its digest stops the pull with a clear
//! error.
//!
//! Layers already in the store are not fetched again, so a pull interrupted
//! midway resumes where it stopped (a partial download is a temp file that
//! is discarded). Two pulls of the same layer into the same store in one
//! process are deduplicated: the second waits for the first. The manifest
//! and names are written last, so an image is only visible once complete.
//!
//! Blob files are written with ordinary (blocking) file I/O from the pulling
//! task, chunk by chunk as they arrive; the final fsync of each blob too.

mod inflight;

use futures::{StreamExt, TryStreamExt};
use selur_registry::remote::{descriptor_digest, remotes, resolve, Attempts, Failure, Remote};
pub use selur_registry::remote::{resolve_remote, RemoteError};

use crate::reference::Reference;
use crate::registries::RegistrySettings;
use crate::{Digest, ImageStore, StoreError};

/// How many layers are downloaded at once.
const PARALLEL_LAYERS: usize = 3;

/// Progress of one layer: `done` of `total` bytes (reported as chunks
/// arrive, and once with `done == total` for a layer already present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    pub layer: Digest,
    pub done: u64,
    pub total: u64,
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullResult {
    /// The normalised name the image is stored under.
    pub name: String,
    /// The (platform) image manifest's digest.
    pub digest: Digest,
    /// Manifest + config + compressed layers, bytes.
    pub size: u64,
    pub layers_fetched: usize,
    pub layers_reused: usize,
}

/// Why a pull failed: talking to the registry (the messages are
/// [`RemoteError`]'s) or writing into the store.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The progress callback: called from the pulling task, possibly for several
/// layers interleaved.
pub type ProgressFn<'a> = &'a (dyn Fn(PullProgress) + Send + Sync);

/// Pull `reference` into `store`, tag it with its normalised name and say
/// how many layers were fetched and how many were already there.
pub async fn pull(
    store: &ImageStore,
    settings: &RegistrySettings,
    reference: &str,
    progress: ProgressFn<'_>,
) -> Result<PullResult, PullError> {
    let r = Reference::parse(reference).map_err(RemoteError::from)?;
    let remotes = remotes(settings, &r)?;
    let (served_by, res) = resolve(&remotes, &r).await?;
    // Try the endpoint that served the manifest first, then the others.
    let order: Vec<&Remote> = std::iter::once(&remotes[served_by])
        .chain(
            remotes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != served_by)
                .map(|(_, x)| x),
        )
        .collect();

    let mut layers: Vec<(Digest, u64)> = Vec::new();
    for l in res.manifest.layers() {
        let d = descriptor_digest(l.digest().as_ref())?;
        if !layers.iter().any(|(x, _)| *x == d) {
            layers.push((d, l.size()));
        }
    }
    // Futures built up front (not in a stream's `map`), so the pull future is `Send`.
    let jobs: Vec<_> = layers
        .iter()
        .map(|(d, size)| fetch_layer(store, &order, &r, d, *size, progress))
        .collect();
    let fetched: Vec<bool> = futures::stream::iter(jobs)
        .buffer_unordered(PARALLEL_LAYERS)
        .try_collect()
        .await?;
    let layers_fetched = fetched.iter().filter(|f| **f).count();

    store.put_blob(Some(&res.config_digest), &res.config_bytes[..])?;
    store.put_blob(Some(&res.digest), &res.manifest_bytes[..])?;
    if let Some((bytes, d)) = &res.index {
        store.put_blob(Some(d), &bytes[..])?;
    }
    let mut names = Vec::new();
    if let Some(tag) = &r.tag {
        names.push(store.tag(&format!("{}:{tag}", r.name()), &res.digest)?);
    }
    if let Some(d) = &r.digest {
        names.push(store.tag(&format!("{}@{d}", r.name()), &res.digest)?);
    }
    let size = res.manifest_bytes.len() as u64
        + res.manifest.config().size()
        + res.manifest.layers().iter().map(|l| l.size()).sum::<u64>();
    Ok(PullResult {
        name: names.into_iter().next().unwrap_or_else(|| r.to_string()),
        digest: res.digest,
        size,
        layers_fetched,
        layers_reused: fetched.len() - layers_fetched,
    })
}

/// Make sure layer `d` is in the store; true if it was downloaded.
async fn fetch_layer(
    store: &ImageStore,
    remotes: &[&Remote],
    r: &Reference,
    d: &Digest,
    size: u64,
    progress: ProgressFn<'_>,
) -> Result<bool, PullError> {
    let present = || {
        progress(PullProgress {
            layer: d.clone(),
            done: size,
            total: size,
        });
        Ok(false)
    };
    if store.has_blob(d) {
        return present();
    }
    let _guard = inflight::lock(store.root(), d).await;
    if store.has_blob(d) {
        return present();
    }
    let report = |done| {
        progress(PullProgress {
            layer: d.clone(),
            done,
            total: size,
        })
    };
    report(0);
    let mut attempts = Attempts::default();
    for remote in remotes {
        let mut tmp = store.temp_file()?;
        match remote.blob(d, size, &mut tmp, &report).await {
            Ok(()) => {
                store.adopt_temp(tmp, d)?;
                return Ok(true);
            }
            Err(Failure::Fatal(e)) => return Err(e.into()),
            Err(Failure::Retry(msg)) => attempts.failed(remote, msg),
        }
    }
    Err(attempts.unavailable(r).into())
}
