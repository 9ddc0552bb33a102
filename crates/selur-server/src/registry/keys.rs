//! Store keys: where each object lives under [`ROOT`].

use selur_api::kinds::{self, ResourceKind};

/// Root of every object key.
pub const ROOT: &str = "/registry/";

/// Store key of one object.
pub fn key(kind: &ResourceKind, namespace: Option<&str>, name: &str) -> String {
    match (kind.namespaced, namespace) {
        (true, Some(ns)) => format!("{ROOT}{}/{}/{ns}/{name}", kind.store_group(), kind.plural),
        _ => format!("{ROOT}{}/{}/{name}", kind.store_group(), kind.plural),
    }
}

/// Store prefix of a collection (one namespace, or all).
pub fn prefix(kind: &ResourceKind, namespace: Option<&str>) -> String {
    match (kind.namespaced, namespace) {
        (true, Some(ns)) => format!("{ROOT}{}/{}/{ns}/", kind.store_group(), kind.plural),
        _ => format!("{ROOT}{}/{}/", kind.store_group(), kind.plural),
    }
}

/// The kind a store key belongs to.
pub fn kind_of_key(key: &str) -> Option<&'static ResourceKind> {
    let rest = key.strip_prefix(ROOT)?;
    let mut parts = rest.splitn(3, '/');
    let group = parts.next()?;
    let plural = parts.next()?;
    let group = if group == "core" { "" } else { group };
    kinds::KINDS
        .iter()
        .find(|k| k.group == group && k.plural == plural)
}

/// The Namespace kind.
pub fn ns_kind() -> &'static ResourceKind {
    // The table always holds Namespace; fall back to the first kind only to avoid a panic path.
    kinds::by_api_version_kind("v1", "Namespace").unwrap_or(&kinds::KINDS[0])
}
