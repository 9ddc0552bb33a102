//! A node's image store: content-addressed OCI blobs (manifests, configs,
//! layers) verified on write and written atomically, names pointing at
//! manifests, import of OCI layouts and oci-/docker-archives, export as an
//! oci-archive, builds from
//! distroless Containerfiles, safe layer unpacking and an ELF-reading lint.
//!
//! Not here: talking to registries (pull) and to the API server.

#![forbid(unsafe_code)]

pub mod build;
pub mod digest;
pub mod export;
pub mod gc;
pub mod import;
pub mod lint;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use store::{ImageInfo, ImageStore, StoreError};
