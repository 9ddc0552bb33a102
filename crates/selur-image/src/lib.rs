//! A node's image store: content-addressed OCI blobs (manifests, configs,
//! layers) verified on write and written atomically, names pointing at
//! manifests, import of OCI layouts and oci-/docker-archives, export as an
//! oci-archive, builds from
//! distroless Containerfiles, safe layer unpacking and an ELF-reading lint.
//!
//! Image references, digests and registry settings come from
//! `selur-registry` and are re-exported here under their old paths
//! ([`reference`](mod@reference), [`digest`], [`registries`], [`Digest`]).
//!
//! Not here: talking to the API server.

#![forbid(unsafe_code)]

pub mod build;
pub mod export;
pub mod gc;
pub mod import;
pub mod lint;
pub mod pull;
pub mod store;
pub mod unpack;

pub use selur_registry::Digest;
pub use selur_registry::{digest, reference, registries};
pub use store::{ImageInfo, ImageStore, StoreError};
