//! Pulling images from registries into the node's [`ImageStore`].
//!
//! A reference is resolved through the [`RegistrySettings`]: its mirrors are
//! tried in order, then the registry itself. An endpoint that is unreachable,
//! lacks the image or fails with a server error gives way to the next one;
//! an authentication failure or content that does not match its digest stops
//! the pull with a clear error.
//!
//! The manifest (an image index is resolved to its linux/amd64 manifest and
//! kept too) and the config are fetched first; then each layer missing from
//! the store is streamed into a temp file of the store while hashed, checked
//! against its descriptor's size and digest and only then adopted as a blob.
//! Layers already in the store are not fetched again, so a pull interrupted
//! midway resumes where it stopped (a partial download is a temp file that
//! is discarded). Two pulls of the same layer into the same store in one
//! process are deduplicated: the second waits for the first. The manifest
//! and names are written last, so an image is only visible once complete.
//!
//! Blob files are written with ordinary (blocking) file I/O from the pulling
//! task, chunk by chunk as they arrive; the final fsync of each blob too.

mod inflight;
mod remote;

use futures::{StreamExt, TryStreamExt};
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use crate::reference::{BadReference, Reference};
use crate::registries::RegistrySettings;
use crate::{Digest, ImageStore, StoreError};
use remote::{Failure, Remote};

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

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Reference(#[from] BadReference),
    #[error("unauthorized: {}", unauthorized_hint(host, *had_credentials))]
    Unauthorized { host: String, had_credentials: bool },
    #[error("{what} from {endpoint}: digest mismatch: expected {expected}, got {actual}; the content was refused and not stored")]
    DigestMismatch {
        what: String,
        endpoint: String,
        expected: String,
        actual: String,
    },
    #[error("{what} from {endpoint}: expected {expected} bytes, got {got}; the content was refused and not stored")]
    SizeMismatch {
        what: String,
        endpoint: String,
        expected: u64,
        got: u64,
    },
    #[error("cannot pull {reference}: {attempts}")]
    Unavailable { reference: String, attempts: String },
    #[error("registry settings for {host}: {message}")]
    Settings { host: String, message: String },
    #[error("{what} is not valid: {reason}")]
    Invalid { what: String, reason: String },
    #[error("writing {what}: {source}")]
    Write {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn unauthorized_hint(host: &str, had_credentials: bool) -> String {
    if had_credentials {
        format!("check the credentials for {host} in the registry settings")
    } else {
        format!("{host} wants credentials; add them under configs.\"{host}\".auth in the registry settings")
    }
}

/// The progress callback: called from the pulling task, possibly for several
/// layers interleaved.
pub type ProgressFn<'a> = &'a (dyn Fn(PullProgress) + Send + Sync);

/// A manifest resolved on one endpoint, with its config.
struct Resolved {
    /// The image index the reference named, if it named one.
    index: Option<(Vec<u8>, Digest)>,
    manifest_bytes: Vec<u8>,
    digest: Digest,
    manifest: ImageManifest,
    config_bytes: Vec<u8>,
    config_digest: Digest,
    config: ImageConfiguration,
}

/// Pull `reference` into `store`, tag it with its normalised name and say
/// how many layers were fetched and how many were already there.
pub async fn pull(
    store: &ImageStore,
    settings: &RegistrySettings,
    reference: &str,
    progress: ProgressFn<'_>,
) -> Result<PullResult, PullError> {
    let r = Reference::parse(reference)?;
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

/// The manifest digest, manifest and config `reference` resolves to through
/// the settings, without fetching layers or touching a store.
pub async fn resolve_remote(
    settings: &RegistrySettings,
    reference: &str,
) -> Result<(Digest, ImageManifest, ImageConfiguration), PullError> {
    let r = Reference::parse(reference)?;
    let remotes = remotes(settings, &r)?;
    let (_, res) = resolve(&remotes, &r).await?;
    Ok((res.digest, res.manifest, res.config))
}

fn remotes(settings: &RegistrySettings, r: &Reference) -> Result<Vec<Remote>, PullError> {
    let remotes = settings
        .endpoints(r)
        .iter()
        .map(Remote::new)
        .collect::<Result<Vec<_>, _>>()?;
    if remotes.is_empty() {
        return Err(PullError::Unavailable {
            reference: r.to_string(),
            attempts: "the registry settings leave no endpoint to try".into(),
        });
    }
    Ok(remotes)
}

/// Resolve on the first endpoint that answers; returns its index.
async fn resolve(remotes: &[Remote], r: &Reference) -> Result<(usize, Resolved), PullError> {
    let mut attempts = Vec::new();
    for (i, remote) in remotes.iter().enumerate() {
        match resolve_on(remote, r).await {
            Ok(res) => return Ok((i, res)),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(msg)) => {
                tracing::debug!(endpoint = %remote.endpoint, "{msg}; trying the next endpoint");
                attempts.push(format!("{}: {msg}", remote.endpoint));
            }
        }
    }
    Err(PullError::Unavailable {
        reference: r.to_string(),
        attempts: attempts.join("; "),
    })
}

async fn resolve_on(remote: &Remote, r: &Reference) -> Result<Resolved, Failure> {
    let (bytes, digest) = remote
        .manifest(r.tag.as_deref(), r.digest.as_deref())
        .await?;
    let (index, manifest_bytes, digest) = if is_index(&bytes) {
        let idx = ImageIndex::from_reader(&bytes[..]).map_err(|e| PullError::Invalid {
            what: format!("image index {digest} from {}", remote.endpoint),
            reason: e.to_string(),
        })?;
        let pick = ImageStore::pick_platform(&idx).ok_or_else(|| PullError::Invalid {
            what: format!("image index {digest} from {}", remote.endpoint),
            reason: "it has no linux/amd64 image".into(),
        })?;
        let (m, d) = remote.manifest(None, Some(pick.as_str())).await?;
        (Some((bytes, digest)), m, d)
    } else {
        (None, bytes, digest)
    };
    let manifest = ImageManifest::from_reader(&manifest_bytes[..]).map_err(|e| {
        Failure::Retry(format!(
            "manifest {digest} is not a valid image manifest: {e}"
        ))
    })?;
    let config_digest = descriptor_digest(manifest.config().digest().as_ref())?;
    let mut config_bytes = Vec::new();
    remote
        .blob(
            &config_digest,
            manifest.config().size(),
            &mut config_bytes,
            &|_| {},
        )
        .await?;
    let config = ImageConfiguration::from_reader(&config_bytes[..]).map_err(|e| {
        Failure::Fatal(PullError::Invalid {
            what: format!("image config {config_digest}"),
            reason: e.to_string(),
        })
    })?;
    Ok(Resolved {
        index,
        manifest_bytes,
        digest,
        manifest,
        config_bytes,
        config_digest,
        config,
    })
}

/// Whether manifest bytes are an image index / manifest list.
fn is_index(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(p) => match p.media_type.as_deref() {
            Some(t) => t.contains("index") || t.contains("manifest.list"),
            None => p.manifests.is_some(),
        },
        Err(_) => false,
    }
}

fn descriptor_digest(s: &str) -> Result<Digest, PullError> {
    Digest::parse(s).map_err(|e| PullError::Invalid {
        what: "descriptor digest".into(),
        reason: e.to_string(),
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
    let mut attempts = Vec::new();
    for remote in remotes {
        let mut tmp = store.temp_file()?;
        match remote.blob(d, size, &mut tmp, &report).await {
            Ok(()) => {
                store.adopt_temp(tmp, d)?;
                return Ok(true);
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(msg)) => {
                tracing::debug!(endpoint = %remote.endpoint, "{msg}; trying the next endpoint");
                attempts.push(format!("{}: {msg}", remote.endpoint));
            }
        }
    }
    Err(PullError::Unavailable {
        reference: r.to_string(),
        attempts: attempts.join("; "),
    })
}
