//! Resolving references on registries, without a store.
//!
//! A reference is resolved through the [`RegistrySettings`]: its mirrors are
//! tried in order, then the registry itself. An endpoint that is unreachable,
//! lacks the image or fails with a server error gives way to the next one;
//! an authentication failure or content that does not match its digest stops
//! with a clear error.
//!
//! Resolving fetches the manifest (an image index is resolved to its
//! linux/amd64 manifest and kept too) and the config, never layers. The
//! client of one endpoint ([`Remote`]) also streams blobs with their size and
//! digest checked, which is what `selur-image` uses to pull layers into the
//! node's store.

mod client;

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use crate::reference::{BadReference, Reference};
use crate::registries::RegistrySettings;
use crate::Digest;
pub use client::{error_chain, Failure, Remote};

/// Why talking to a registry failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
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
}

fn unauthorized_hint(host: &str, had_credentials: bool) -> String {
    if had_credentials {
        format!("check the credentials for {host} in the registry settings")
    } else {
        format!("{host} wants credentials; add them under configs.\"{host}\".auth in the registry settings")
    }
}

/// A manifest resolved on one endpoint, with its config.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The image index the reference named, if it named one: its exact
    /// bytes and digest.
    pub index: Option<(Vec<u8>, Digest)>,
    /// The (platform) image manifest's exact bytes.
    pub manifest_bytes: Vec<u8>,
    /// The (platform) image manifest's digest.
    pub digest: Digest,
    pub manifest: ImageManifest,
    /// The config's exact bytes.
    pub config_bytes: Vec<u8>,
    pub config_digest: Digest,
    pub config: ImageConfiguration,
}

/// The manifest digest, manifest and config `reference` resolves to through
/// the settings, without fetching layers or touching a store.
pub async fn resolve_remote(
    settings: &RegistrySettings,
    reference: &str,
) -> Result<(Digest, ImageManifest, ImageConfiguration), RemoteError> {
    let r = Reference::parse(reference)?;
    let remotes = remotes(settings, &r)?;
    let (_, res) = resolve(&remotes, &r).await?;
    Ok((res.digest, res.manifest, res.config))
}

/// A client for each endpoint the settings give for `r`, in the order they
/// are to be tried; an error if there is none.
pub fn remotes(settings: &RegistrySettings, r: &Reference) -> Result<Vec<Remote>, RemoteError> {
    let remotes = settings
        .endpoints(r)
        .iter()
        .map(Remote::new)
        .collect::<Result<Vec<_>, _>>()?;
    if remotes.is_empty() {
        return Err(RemoteError::Unavailable {
            reference: r.to_string(),
            attempts: "the registry settings leave no endpoint to try".into(),
        });
    }
    Ok(remotes)
}

/// Resolve on the first endpoint that answers; returns its index.
pub async fn resolve(remotes: &[Remote], r: &Reference) -> Result<(usize, Resolved), RemoteError> {
    let mut attempts = Attempts::default();
    for (i, remote) in remotes.iter().enumerate() {
        match resolve_on(remote, r).await {
            Ok(res) => return Ok((i, res)),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(msg)) => attempts.failed(remote, msg),
        }
    }
    Err(attempts.unavailable(r))
}

/// The endpoints tried so far and why each gave way to the next.
#[derive(Debug, Default)]
pub struct Attempts(Vec<String>);

impl Attempts {
    /// `remote` failed in a way the next endpoint may not (`msg`).
    pub fn failed(&mut self, remote: &Remote, msg: String) {
        tracing::debug!(endpoint = %remote.endpoint, "{msg}; trying the next endpoint");
        self.0.push(format!("{}: {msg}", remote.endpoint));
    }

    /// Every endpoint failed: the error listing them.
    pub fn unavailable(self, r: &Reference) -> RemoteError {
        RemoteError::Unavailable {
            reference: r.to_string(),
            attempts: self.0.join("; "),
        }
    }
}

async fn resolve_on(remote: &Remote, r: &Reference) -> Result<Resolved, Failure> {
    let (bytes, digest) = remote
        .manifest(r.tag.as_deref(), r.digest.as_deref())
        .await?;
    let (index, manifest_bytes, digest) = if is_index(&bytes) {
        let idx = ImageIndex::from_reader(&bytes[..]).map_err(|e| RemoteError::Invalid {
            what: format!("image index {digest} from {}", remote.endpoint),
            reason: e.to_string(),
        })?;
        let pick = pick_platform(&idx).ok_or_else(|| RemoteError::Invalid {
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
        Failure::Fatal(RemoteError::Invalid {
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

/// The manifest an image index names for linux/amd64 (or its only manifest).
pub fn pick_platform(index: &ImageIndex) -> Option<Digest> {
    index
        .manifests()
        .iter()
        .find(|m| {
            m.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"
            })
        })
        .or_else(|| {
            index
                .manifests()
                .first()
                .filter(|_| index.manifests().len() == 1)
        })
        .and_then(|m| Digest::parse(m.digest().as_ref()).ok())
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

/// A descriptor's digest, or an error saying it is not one.
pub fn descriptor_digest(s: &str) -> Result<Digest, RemoteError> {
    Digest::parse(s).map_err(|e| RemoteError::Invalid {
        what: "descriptor digest".into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[(&str, &str)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch))| {
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{}", i.to_string().repeat(64)),
                    "size": 1,
                    "platform": {"os": os, "architecture": arch},
                })
            })
            .collect();
        let v = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
        ImageIndex::from_reader(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn picks_linux_amd64_or_the_only_manifest() {
        let i = index(&[("linux", "arm64"), ("linux", "amd64")]);
        assert_eq!(
            pick_platform(&i).unwrap().as_str(),
            format!("sha256:{}", "1".repeat(64))
        );
        assert!(pick_platform(&index(&[("linux", "arm64"), ("windows", "amd64")])).is_none());
        assert!(pick_platform(&index(&[("linux", "arm64")])).is_some());
    }

    #[test]
    fn tells_indexes_from_manifests() {
        assert!(is_index(
            br#"{"mediaType":"application/vnd.oci.image.index.v1+json"}"#
        ));
        assert!(is_index(
            br#"{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json"}"#
        ));
        assert!(is_index(br#"{"schemaVersion":2,"manifests":[]}"#));
        assert!(!is_index(
            br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}"#
        ));
        assert!(!is_index(b"not json"));
    }
}
