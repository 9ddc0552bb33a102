//! Image references and registries, without an image store: Docker-style
//! references and their normalisation, `sha256:` digests, the registry
//! settings (mirrors, rewrites, TLS, credentials) and the endpoints they give
//! for a reference.
//!
//! This is what the API server and the scheduler need to reason about images
//! they never hold. Deliberately not here: the node's image store (blobs,
//! names, unpacking, builds, imports, lint, GC) and downloading layers into
//! it; those live in `selur-image`, which builds on this crate and re-exports
//! its modules.

#![forbid(unsafe_code)]

pub mod digest;
pub mod reference;
pub mod registries;

pub use digest::Digest;
