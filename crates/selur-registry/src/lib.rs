//! Image references and registries, without an image store: Docker-style
//! references and their normalisation, `sha256:` digests, the registry
//! settings (mirrors, rewrites, TLS, credentials) and the endpoints they give
//! for a reference, and [`remote`]: an `oci-client` based client per endpoint
//! and [`resolve_remote`], which resolves a reference through the settings to
//! its manifest digest, manifest and config.
//!
//! This is what the API server and the scheduler need to reason about images
//! they never hold, so they link no store code. Deliberately not here:
//!
//! - no image store: no blobs on disk, names, unpacking, builds, imports,
//!   lint or GC;
//! - no layers: resolving stops at the manifest and the config.
//!
//! Both belong to the node and live in `selur-image`, whose `pull` streams
//! layers into its store through [`remote::Remote`], and which re-exports
//! [`digest`], [`reference`](mod@reference) and [`registries`] under its own paths.

#![forbid(unsafe_code)]

pub mod digest;
pub mod reference;
pub mod registries;
pub mod remote;

pub use digest::Digest;
pub use remote::{resolve_remote, RemoteError};
