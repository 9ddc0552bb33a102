//! Selur's object model, with no I/O: the kinds Selur serves and their REST
//! names ([`kinds`]), strict decoding of manifests ([`decode`]), Kubernetes
//! defaults ([`defaults`]), field-path validation ([`validate`]), label and
//! field selectors ([`selector`]), resource quantities ([`quantity`]) and the
//! three patch formats including strategic merge ([`patch`]), the framing of
//! the exec/port-forward streams ([`stream`]), the columns of the tables
//! `get` shows per kind ([`columns`]) and the cluster's IPv6 network
//! settings ([`network`]).
//!
//! The server, the CLI and later the agent share these so that a manifest is
//! judged the same way wherever it is read.

#![forbid(unsafe_code)]

pub mod columns;
pub mod cron;
pub mod decode;
pub mod defaults;
pub mod error;
pub mod kinds;
pub mod network;
pub mod object;
pub mod patch;
pub mod quantity;
pub mod selector;
pub mod stream;
pub mod types;
pub mod validate;

pub use error::{FieldError, FieldErrorKind};
pub use kinds::ResourceKind;
pub use object::TypedObject;
