//! Patches over untyped JSON: Kubernetes strategic merge patch (SMP), the
//! three-way patch that `kubectl apply` (client-side) computes, and thin
//! wrappers for RFC 7386 JSON merge patch and RFC 6902 JSON patch.
//!
//! Why SMP exists at all: a plain JSON merge patch replaces lists wholesale, so
//! two writers of one Pod spec (say `kubectl apply` and a sidecar injector)
//! would keep clobbering each other's containers. Kubernetes instead tags some
//! list fields with a *merge key* (`containers` merge by `name`, a Service's
//! `ports` by `port`, ...) so list items are matched and merged individually.
//! Selur works on `serde_json::Value` rather than typed structs, so the tags are
//! reproduced here as a table keyed by field path ([`list_strategy`]).
//!
//! The semantics follow `k8s.io/apimachinery/pkg/util/strategicpatch`:
//! `null` deletes a key, `$patch: replace|delete` directives on maps and list
//! items, `$setElementOrder/<field>`, `$retainKeys` and
//! `$deleteFromPrimitiveList/<field>`. Directive keys never survive into a
//! result. Deliberate differences from upstream are documented on the items
//! that make them.

mod json;
mod strategic;
mod strategy;
mod three_way;

#[cfg(test)]
mod test_support;

pub use json::{apply_json_patch, apply_merge_patch};
pub use strategic::apply_strategic_merge;
pub use strategy::{list_strategy, ListStrategy};
pub use three_way::three_way_merge;

use serde_json::{Map, Value};

/// Map key carrying a `$patch` directive (`replace`, `delete`).
const DIRECTIVE: &str = "$patch";
/// Map key listing the only keys of the original map that may survive.
const RETAIN_KEYS: &str = "$retainKeys";
/// Prefix of a key giving the desired final order of a merged list.
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
/// Prefix of a key listing values to drop from a primitive merge list.
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

type Object = Map<String, Value>;

/// Why a patch could not be applied or computed.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch (or, for three-way merges, an input document) is malformed:
    /// not an object, an unknown directive, a keyed list item without its key.
    #[error("invalid patch: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> PatchError {
    PatchError::Invalid(msg.into())
}

/// Renders a field path for error messages.
fn dotted(path: &[&str]) -> String {
    if path.is_empty() {
        "<root>".to_string()
    } else {
        path.join(".")
    }
}

fn child_path<'a>(path: &[&'a str], field: &'a str) -> Vec<&'a str> {
    let mut child = Vec::with_capacity(path.len() + 1);
    child.extend_from_slice(path);
    child.push(field);
    child
}

/// True for the SMP directive keys, which must never reach a stored object.
fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}
