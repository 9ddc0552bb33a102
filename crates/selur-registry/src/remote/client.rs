//! One registry endpoint seen through `oci-client`: manifests by tag or
//! digest, blobs streamed with their size and digest checked, and errors
//! sorted into "try the next endpoint" and "stop here".

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use sha2::{Digest as _, Sha256};

use super::RemoteError;
use crate::registries::{Endpoint, Protocol};
use crate::Digest;

/// Manifest media types asked for (OCI and Docker, images and indexes).
const MANIFEST_TYPES: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// Why a request failed.
pub enum Failure {
    /// The endpoint is unreachable or lacks the content: try the next one.
    Retry(String),
    /// A failure another endpoint would not cure (credentials, tampering).
    Fatal(RemoteError),
}

impl From<RemoteError> for Failure {
    fn from(e: RemoteError) -> Self {
        Failure::Fatal(e)
    }
}

/// A client for one endpoint.
pub struct Remote {
    pub endpoint: Endpoint,
    client: Client,
    auth: RegistryAuth,
}

impl Remote {
    /// Build the client; a CA file that cannot be read or parsed is an error.
    pub fn new(endpoint: &Endpoint) -> Result<Self, RemoteError> {
        let mut extra_root_certificates = Vec::new();
        if let Some(path) = &endpoint.ca_file {
            let data = std::fs::read(path).map_err(|e| RemoteError::Settings {
                host: endpoint.host.clone(),
                message: format!("CA file {}: {e}", path.display()),
            })?;
            extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let config = ClientConfig {
            protocol: match endpoint.protocol {
                Protocol::Http => ClientProtocol::Http,
                Protocol::Https => ClientProtocol::Https,
            },
            extra_root_certificates,
            accept_invalid_certificates: endpoint.insecure_skip_verify,
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| RemoteError::Settings {
            host: endpoint.host.clone(),
            message: error_chain(&e),
        })?;
        let auth = match &endpoint.auth {
            Some(a) => RegistryAuth::Basic(a.username.clone(), a.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        Ok(Self {
            endpoint: endpoint.clone(),
            client,
            auth,
        })
    }

    fn reference(&self, tag: Option<&str>, digest: Option<&str>) -> oci_client::Reference {
        let (registry, repository) = (self.endpoint.host.clone(), self.endpoint.repository.clone());
        match digest {
            Some(d) => oci_client::Reference::with_digest(registry, repository, d.to_string()),
            None => oci_client::Reference::with_tag(
                registry,
                repository,
                tag.unwrap_or("latest").to_string(),
            ),
        }
    }

    /// A manifest (or index) by tag or digest: its exact bytes and digest.
    pub async fn manifest(
        &self,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> Result<(Vec<u8>, Digest), Failure> {
        let what = match (digest, tag) {
            (Some(d), _) => format!("manifest {d}"),
            (None, t) => format!("manifest for tag {:?}", t.unwrap_or("latest")),
        };
        let r = self.reference(tag, digest);
        let (body, _) = self
            .client
            .pull_manifest_raw(&r, &self.auth, MANIFEST_TYPES)
            .await
            .map_err(|e| self.classify(&what, e))?;
        let actual = Digest::of(&body);
        if let Some(expected) = digest {
            if actual.as_str() != expected {
                return Err(Failure::Fatal(RemoteError::DigestMismatch {
                    what,
                    endpoint: self.endpoint.to_string(),
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                }));
            }
        }
        Ok((body.to_vec(), actual))
    }

    /// Stream blob `digest` of `size` bytes into `out`, calling `progress`
    /// with the bytes received so far. Refused (an error) if the content is
    /// longer or shorter than `size` or does not hash to `digest`.
    pub async fn blob(
        &self,
        digest: &Digest,
        size: u64,
        out: &mut impl Write,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), Failure> {
        let what = format!("blob {digest}");
        let r = self.reference(None, Some(digest.as_str()));
        let mut stream = self
            .client
            .pull_blob_stream(&r, digest.as_str())
            .await
            .map_err(|e| self.classify(&what, e))?;
        let mut hasher = Sha256::new();
        let mut done = 0u64;
        let mismatch = |hasher: Sha256| {
            Failure::Fatal(RemoteError::DigestMismatch {
                what: what.clone(),
                endpoint: self.endpoint.to_string(),
                expected: digest.to_string(),
                actual: format!("sha256:{}", hex::encode(hasher.finalize())),
            })
        };
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let verification = e
                        .get_ref()
                        .and_then(|i| i.downcast_ref::<DigestError>())
                        .is_some_and(|d| matches!(d, DigestError::VerificationError { .. }));
                    return Err(if verification {
                        mismatch(hasher)
                    } else {
                        Failure::Retry(format!("{what}: {}", error_chain(&e)))
                    });
                }
            };
            done += chunk.len() as u64;
            if done > size {
                return Err(Failure::Fatal(RemoteError::SizeMismatch {
                    what,
                    endpoint: self.endpoint.to_string(),
                    expected: size,
                    got: done,
                }));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).map_err(|e| {
                Failure::Fatal(RemoteError::Write {
                    what: what.clone(),
                    source: e,
                })
            })?;
            progress(done);
        }
        if done != size {
            return Err(Failure::Fatal(RemoteError::SizeMismatch {
                what,
                endpoint: self.endpoint.to_string(),
                expected: size,
                got: done,
            }));
        }
        let actual = format!("sha256:{}", hex::encode(hasher.clone().finalize()));
        if actual != digest.as_str() {
            return Err(mismatch(hasher));
        }
        Ok(())
    }

    /// Sort a client error: credentials and tampering stop the pull, the
    /// rest (unreachable, not found, server errors) moves on to the next endpoint.
    fn classify(&self, what: &str, e: OciDistributionError) -> Failure {
        use OciDistributionError as E;
        let unauthorized = || {
            Failure::Fatal(RemoteError::Unauthorized {
                host: self.endpoint.host.clone(),
                had_credentials: self.endpoint.auth.is_some(),
            })
        };
        match &e {
            E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => unauthorized(),
            E::ServerError {
                code: 401 | 403, ..
            } => unauthorized(),
            E::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|x| {
                    matches!(x.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)
                }) =>
            {
                unauthorized()
            }
            E::DigestError(DigestError::VerificationError { expected, actual }) => {
                Failure::Fatal(RemoteError::DigestMismatch {
                    what: what.to_string(),
                    endpoint: self.endpoint.to_string(),
                    expected: expected.clone(),
                    actual: actual.clone(),
                })
            }
            E::RegistryError { envelope, .. } => {
                let msgs: Vec<String> = envelope
                    .errors
                    .iter()
                    .map(|x| format!("{:?}: {}", x.code, x.message))
                    .collect();
                Failure::Retry(format!("{what}: {}", msgs.join("; ")))
            }
            _ => Failure::Retry(format!("{what}: {}", error_chain(&e))),
        }
    }
}

/// An error and its sources, joined by `: ` (repeats left out).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = s.source();
    }
    parts.join(": ")
}
