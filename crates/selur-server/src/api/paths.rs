//! Parsing a Kubernetes REST path into the kind, namespace, name and
//! subresource it names.

use serde_json::Value;

use selur_api::kinds::{self, ResourceKind};

use super::discovery::resource_list;
use crate::status::{ApiError, ApiResult};

/// What a request path names.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) kind: &'static ResourceKind,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) sub: Option<String>,
}

pub(super) enum Route {
    Discovery(Value),
    Resource(Target),
}

pub(super) fn parse_path(path: &str) -> ApiResult<Route> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::not_found_path(path)),
    };
    if rest.is_empty() {
        return resource_list(group, version)
            .map(Route::Discovery)
            .ok_or_else(|| ApiError::not_found_path(path));
    }
    let lookup = |plural: &str| {
        kinds::by_plural(group, version, plural).ok_or_else(|| ApiError::not_found_path(path))
    };
    let target = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if kinds::by_plural(group, version, plural).is_some() =>
        {
            let kind = lookup(plural)?;
            if !kind.namespaced {
                return Err(ApiError::not_found_path(path));
            }
            Target {
                kind,
                namespace: Some(ns.to_string()),
                name: tail.first().map(|s| s.to_string()),
                sub: match tail {
                    [_] | [] => None,
                    [_, sub] => Some(sub.to_string()),
                    _ => return Err(ApiError::not_found_path(path)),
                },
            }
        }
        [plural, tail @ ..] => {
            let kind = lookup(plural)?;
            if kind.namespaced && !tail.is_empty() {
                return Err(ApiError::not_found_path(path));
            }
            Target {
                kind,
                namespace: None,
                name: tail.first().map(|s| s.to_string()),
                sub: match tail {
                    [_] | [] => None,
                    [_, sub] => Some(sub.to_string()),
                    _ => return Err(ApiError::not_found_path(path)),
                },
            }
        }
        [] => return Err(ApiError::not_found_path(path)),
    };
    Ok(Route::Resource(target))
}
