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

use serde_json::{Map, Value};
use std::collections::VecDeque;

/// Map key carrying a `$patch` directive (`replace`, `delete`).
const DIRECTIVE: &str = "$patch";
/// Map key listing the only keys of the original map that may survive.
const RETAIN_KEYS: &str = "$retainKeys";
/// Prefix of a key giving the desired final order of a merged list.
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
/// Prefix of a key listing values to drop from a primitive merge list.
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

type Object = Map<String, Value>;

/// How a list field merges, decided from its path.
///
/// Kubernetes encodes this in `patchStrategy`/`patchMergeKey` struct tags; we
/// have no typed structs at patch time, so the strategy is looked up by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Items are objects matched by the value of this field and merged pairwise.
    MergeByKey(&'static str),
    /// Items are scalars; merging is a set union that keeps first-seen order.
    MergePrimitives,
    /// The patch list replaces the original list (the JSON merge patch rule).
    Replace,
}

/// Field names whose items are containers; `ports` below them merge by
/// `containerPort` rather than a Service's `port`.
fn is_container_list(field: &str) -> bool {
    matches!(
        field,
        "containers" | "initContainers" | "ephemeralContainers"
    )
}

/// `path` is the object-field path from the object root with list indices removed,
/// e.g. ["spec","template","spec","containers"] or ["spec","ports"] (a Service) or ["metadata","finalizers"].
///
/// The table mirrors the `patchMergeKey` tags of the Kubernetes core types that
/// Selur serves. Fields not listed are atomic (replaced), which is also what
/// upstream does for untagged lists and for custom resources.
pub fn list_strategy(path: &[&str]) -> ListStrategy {
    let Some((&last, ancestors)) = path.split_last() else {
        return ListStrategy::Replace;
    };
    match last {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => ListStrategy::MergeByKey("name"),
        "volumeMounts" => ListStrategy::MergeByKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeByKey("devicePath"),
        "hostAliases" => ListStrategy::MergeByKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeByKey("topologyKey"),
        "conditions" => ListStrategy::MergeByKey("type"),
        "ownerReferences" => ListStrategy::MergeByKey("uid"),
        // Container ports are identified by the port the process listens on; a
        // Service's ports by the port the Service exposes.
        "ports" if ancestors.iter().any(|a| is_container_list(a)) => {
            ListStrategy::MergeByKey("containerPort")
        }
        "ports" => ListStrategy::MergeByKey("port"),
        // Only `metadata.finalizers` is a merge list; e.g. a Namespace's
        // `spec.finalizers` is atomic upstream.
        "finalizers" if matches!(ancestors.last(), None | Some(&"metadata")) => {
            ListStrategy::MergePrimitives
        }
        _ => ListStrategy::Replace,
    }
}

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

/// Apply a strategic merge patch to `original`, returning the result.
///
/// `patch` must be a JSON object. A non-object `original` (e.g. `null` for an
/// object being created) is treated as `{}`. A top-level `"$patch": "delete"`
/// yields `{}`.
///
/// Deviations from upstream, all in the direction of a cleaner result: a value
/// the patch adds where the original had nothing is still stripped of
/// directives and `null`s (upstream copies it verbatim), and a nested map
/// carrying `"$patch": "delete"` removes its key (upstream leaves `{}`).
pub fn apply_strategic_merge(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let patch = patch
        .as_object()
        .ok_or_else(|| invalid("a strategic merge patch must be a JSON object"))?;
    validate_directives(patch, &mut Vec::new())?;
    let empty = Object::new();
    let original = original.as_object().unwrap_or(&empty);
    let merged = merge_map(original, patch, &[])?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

/// Checks every directive in the patch up front, so a malformed directive is
/// reported even where it lands on a field the original lacks (such values are
/// copied via [`clean`], which does not look at directives closely).
fn validate_directives<'p>(patch: &'p Object, path: &mut Vec<&'p str>) -> Result<(), PatchError> {
    for (key, value) in patch {
        if key == DIRECTIVE {
            if !matches!(value.as_str(), Some("replace" | "delete")) {
                return Err(invalid(format!(
                    "unknown {DIRECTIVE} directive {value} at {}",
                    dotted(path)
                )));
            }
        } else if key == RETAIN_KEYS {
            string_list(value, RETAIN_KEYS, path)?;
        } else if key.starts_with(SET_ELEMENT_ORDER) || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
        {
            if !value.is_array() {
                return Err(invalid(format!("{key} at {} must be a list", dotted(path))));
            }
        } else {
            path.push(key);
            let checked = validate_value(value, path);
            path.pop();
            checked?;
        }
    }
    Ok(())
}

fn validate_value<'p>(value: &'p Value, path: &mut Vec<&'p str>) -> Result<(), PatchError> {
    match value {
        Value::Object(map) => validate_directives(map, path),
        Value::Array(items) => items.iter().try_for_each(|item| validate_value(item, path)),
        _ => Ok(()),
    }
}

/// Merges `patch` into `original`; `None` means the map itself is deleted.
fn merge_map(
    original: &Object,
    patch: &Object,
    path: &[&str],
) -> Result<Option<Object>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => Ok(Some(clean_map(patch))),
            Some("delete") => Ok(None),
            _ => Err(invalid(format!(
                "unknown {DIRECTIVE} directive {directive} in map at {}",
                dotted(path)
            ))),
        };
    }

    let mut result = original.clone();

    // `$retainKeys` prunes the original before merging: it is how a patch says
    // "this union-type field now holds only these members".
    if let Some(keys) = patch.get(RETAIN_KEYS) {
        let keep = string_list(keys, RETAIN_KEYS, path)?;
        result.retain(|k, _| keep.contains(&k.as_str()));
    }

    // Deletions from primitive lists happen before additions so a patch may
    // remove and re-add in one go, as upstream allows.
    for (key, value) in patch {
        let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) else {
            continue;
        };
        let doomed = value
            .as_array()
            .ok_or_else(|| invalid(format!("{key} at {} must be a list", dotted(path))))?;
        if let Some(Value::Array(items)) = result.get_mut(field) {
            items.retain(|item| !doomed.contains(item));
        }
    }

    for (key, value) in patch {
        if is_directive_key(key) {
            continue;
        }
        if value.is_null() {
            result.shift_remove(key);
            continue;
        }
        let child = child_path(path, key);
        let merged = match (result.get(key), value) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                merge_map(o, p, &child)?.map(Value::Object)
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                Some(Value::Array(merge_list(o, p, &child)?))
            }
            _ => clean(value),
        };
        match merged {
            // `insert` on an existing key keeps its position, so field order
            // of the original is preserved.
            Some(v) => {
                result.insert(key.clone(), v);
            }
            None => {
                result.shift_remove(key);
            }
        }
    }

    for (key, value) in patch {
        let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) else {
            continue;
        };
        let order = value
            .as_array()
            .ok_or_else(|| invalid(format!("{key} at {} must be a list", dotted(path))))?;
        let id_key = match list_strategy(&child_path(path, field)) {
            ListStrategy::MergeByKey(k) => Some(k),
            ListStrategy::MergePrimitives => None,
            // Atomic lists already have the patch's order.
            ListStrategy::Replace => continue,
        };
        let server: &[Value] = match original.get(field) {
            Some(Value::Array(items)) => items,
            _ => &[],
        };
        if let Some(Value::Array(items)) = result.get_mut(field) {
            let merged = std::mem::take(items);
            *items = reorder(merged, order, server, id_key);
        }
    }

    Ok(Some(result))
}

fn string_list<'v>(
    value: &'v Value,
    what: &str,
    path: &[&str],
) -> Result<Vec<&'v str>, PatchError> {
    let bad = || {
        invalid(format!(
            "{what} at {} must be a list of strings",
            dotted(path)
        ))
    };
    value
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|k| k.as_str().ok_or_else(bad))
        .collect()
}

/// Merges a patch list into an original list according to the field's strategy.
fn merge_list(
    original: &[Value],
    patch: &[Value],
    path: &[&str],
) -> Result<Vec<Value>, PatchError> {
    let mut replace = false;
    let mut deletes = Vec::new();
    let mut plain = Vec::new();
    for item in patch {
        match item.get(DIRECTIVE) {
            None => plain.push(item),
            Some(directive) => match directive.as_str() {
                Some("replace") => replace = true,
                Some("delete") => deletes.push(item),
                _ => {
                    return Err(invalid(format!(
                        "unknown {DIRECTIVE} directive {directive} in list {}",
                        dotted(path)
                    )))
                }
            },
        }
    }
    if replace {
        // `{"$patch": "replace"}` as an item: the other (non-directive) items
        // are the whole new list.
        return Ok(clean_items(plain));
    }

    match list_strategy(path) {
        ListStrategy::Replace => Ok(clean_items(plain)),
        ListStrategy::MergePrimitives => {
            let mut out: Vec<Value> = Vec::with_capacity(original.len() + plain.len());
            for item in original.iter().chain(plain) {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            Ok(out)
        }
        ListStrategy::MergeByKey(key) => {
            // A keyed list patched with scalars cannot be merged by key; take
            // the patch as the new value, as JSON merge patch would.
            if !plain.iter().all(|item| item.is_object()) {
                return Ok(clean_items(plain));
            }
            let mut out = original.to_vec();
            for item in deletes {
                let wanted = item.get(key).ok_or_else(|| missing_key(key, path))?;
                out.retain(|o| o.get(key) != Some(wanted));
            }
            for item in plain {
                let Value::Object(item_map) = item else {
                    continue;
                };
                let wanted = item_map.get(key).ok_or_else(|| missing_key(key, path))?;
                // Search the in-progress list so a key repeated in the patch
                // merges into the item appended for its first occurrence.
                match out.iter().position(|o| o.get(key) == Some(wanted)) {
                    Some(i) => {
                        let merged = match &out[i] {
                            Value::Object(o) => merge_map(o, item_map, path)?,
                            _ => Some(clean_map(item_map)),
                        };
                        match merged {
                            Some(m) => out[i] = Value::Object(m),
                            None => {
                                out.remove(i);
                            }
                        }
                    }
                    None => out.push(Value::Object(clean_map(item_map))),
                }
            }
            Ok(out)
        }
    }
}

fn missing_key(key: &str, path: &[&str]) -> PatchError {
    invalid(format!(
        "item of {} lacks its merge key \"{key}\"",
        dotted(path)
    ))
}

/// Reorders a merged list as `$setElementOrder` asks, following upstream's
/// `normalizeElementOrder`: items named in `order` take that order; items only
/// the server had keep their original order and stay interleaved where the
/// server had them relative to the ordered items.
fn reorder(merged: Vec<Value>, order: &[Value], server: &[Value], key: Option<&str>) -> Vec<Value> {
    let total = merged.len();
    let (mut patched, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| position(order, item, key).is_some());
    patched.sort_by_key(|item| position(order, item, key).unwrap_or(usize::MAX));
    server_only.sort_by_key(|item| position(server, item, key).unwrap_or(usize::MAX));

    let mut left = VecDeque::from(server_only);
    let mut right = VecDeque::from(patched);
    let mut out = Vec::with_capacity(total);
    loop {
        let take_left = match (left.front(), right.front()) {
            (Some(l), Some(r)) => matches!(
                (position(server, l, key), position(server, r, key)),
                (Some(li), Some(ri)) if li < ri
            ),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_left {
            left.pop_front()
        } else {
            right.pop_front()
        };
        out.extend(next);
    }
    out
}

/// What identifies a list item: its merge key's value, or the item itself.
fn identity<'v>(item: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(k) => item.get(k),
        None => Some(item),
    }
}

fn position(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let id = identity(item, key)?;
    list.iter().position(|e| identity(e, key) == Some(id))
}

/// A patch value as it should be stored when there is nothing to merge it
/// into: directives stripped, `null` keys dropped (they delete nothing), maps
/// and list items marked `"$patch": "delete"` removed. `None` if the value
/// itself is deleted.
fn clean(value: &Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                None
            } else {
                Some(Value::Object(clean_map(map)))
            }
        }
        Value::Array(items) => Some(Value::Array(clean_items(items))),
        other => Some(other.clone()),
    }
}

fn clean_map(map: &Object) -> Object {
    map.iter()
        .filter(|(k, v)| !is_directive_key(k) && !v.is_null())
        .filter_map(|(k, v)| clean(v).map(|c| (k.clone(), c)))
        .collect()
}

fn clean_items<'v>(items: impl IntoIterator<Item = &'v Value>) -> Vec<Value> {
    items
        .into_iter()
        .filter(|item| item.get(DIRECTIVE).is_none())
        .filter_map(clean)
        .collect()
}

/// kubectl client-side apply: build the patch that turns `current` (live object) into one that
/// reflects `modified` (the new manifest), deleting what `original` (last-applied) had and `modified` lacks.
/// Returns a strategic merge patch (a JSON object); an empty object `{}` means nothing to change.
///
/// Like upstream's `CreateThreeWayMergePatch`, the patch is the union of
/// * additions and changes, `current → modified`, ignoring fields `current`
///   has and `modified` lacks: another writer (an autoscaler setting
///   `replicas`, a webhook adding container fields) may own them; and
/// * deletions, `original → modified`: only what this applier set before and
///   has now dropped is removed (`null`, `{"<key>": v, "$patch": "delete"}`,
///   `$deleteFromPrimitiveList/<field>`).
///
/// Unlike kubectl, no `$setElementOrder` directives are emitted, so items new
/// to a keyed list are appended rather than placed where the manifest has
/// them. A `null` in `modified` is read as "make sure this is absent". All
/// fields, including the last-applied annotation, are treated generically.
pub fn three_way_merge(
    original: Option<&Value>,
    modified: &Value,
    current: &Value,
) -> Result<Value, PatchError> {
    let modified = modified
        .as_object()
        .ok_or_else(|| invalid("the modified object must be a JSON object"))?;
    let empty = Object::new();
    let current = current.as_object().unwrap_or(&empty);
    let deletions = match original {
        None | Some(Value::Null) => Object::new(),
        Some(Value::Object(original)) => diff_deletions_map(original, modified, &[])?,
        Some(_) => {
            return Err(invalid(
                "the original (last-applied) object must be a JSON object",
            ))
        }
    };
    let delta = diff_delta_map(current, modified, &[])?;
    Ok(Value::Object(combine_maps(deletions, delta, &[])))
}

/// What `modified` sets that `current` lacks or holds differently; fields only
/// in `current` are left alone.
fn diff_delta_map(
    current: &Object,
    modified: &Object,
    path: &[&str],
) -> Result<Object, PatchError> {
    let mut out = Object::new();
    for (key, want) in modified {
        let have = current.get(key).filter(|v| !v.is_null());
        let Some(have) = have else {
            if !want.is_null() {
                out.insert(key.clone(), want.clone());
            }
            continue;
        };
        if want.is_null() {
            out.insert(key.clone(), Value::Null);
            continue;
        }
        let child = child_path(path, key);
        match (have, want) {
            (Value::Object(h), Value::Object(w)) => {
                let diff = diff_delta_map(h, w, &child)?;
                if !diff.is_empty() {
                    out.insert(key.clone(), Value::Object(diff));
                }
            }
            (Value::Array(h), Value::Array(w)) => {
                if let Some(diff) = diff_delta_list(h, w, &child)? {
                    out.insert(key.clone(), diff);
                }
            }
            _ => {
                if have != want {
                    out.insert(key.clone(), want.clone());
                }
            }
        }
    }
    Ok(out)
}

fn diff_delta_list(
    current: &[Value],
    modified: &[Value],
    path: &[&str],
) -> Result<Option<Value>, PatchError> {
    let whole = || (current != modified).then(|| Value::Array(modified.to_vec()));
    match list_strategy(path) {
        ListStrategy::Replace => Ok(whole()),
        ListStrategy::MergePrimitives => {
            // Only additions: the patch list is unioned into the live list.
            let mut added: Vec<Value> = Vec::new();
            for item in modified {
                if !current.contains(item) && !added.contains(item) {
                    added.push(item.clone());
                }
            }
            Ok((!added.is_empty()).then_some(Value::Array(added)))
        }
        ListStrategy::MergeByKey(key) => {
            // Mirrors the apply side: a keyed list of scalars is atomic.
            if !modified.iter().all(Value::is_object) {
                return Ok(whole());
            }
            let mut items = Vec::new();
            for want in modified {
                let Value::Object(want_map) = want else {
                    continue;
                };
                let id = want_map.get(key).ok_or_else(|| missing_key(key, path))?;
                match current.iter().find(|c| c.get(key) == Some(id)) {
                    Some(Value::Object(have_map)) => {
                        let diff = diff_delta_map(have_map, want_map, path)?;
                        if !diff.is_empty() {
                            items.push(Value::Object(keyed(key, id, diff)));
                        }
                    }
                    _ => items.push(want.clone()),
                }
            }
            Ok((!items.is_empty()).then_some(Value::Array(items)))
        }
    }
}

/// `{key: id, ...rest}`, with the merge key first for readability.
fn keyed(key: &str, id: &Value, rest: Object) -> Object {
    let mut item = Object::with_capacity(rest.len() + 1);
    item.insert(key.to_string(), id.clone());
    for (k, v) in rest {
        if k != key {
            item.insert(k, v);
        }
    }
    item
}

/// What `original` had that `modified` no longer has, expressed as deletions.
fn diff_deletions_map(
    original: &Object,
    modified: &Object,
    path: &[&str],
) -> Result<Object, PatchError> {
    let mut out = Object::new();
    for (key, had) in original {
        if had.is_null() {
            continue;
        }
        let Some(want) = modified.get(key).filter(|v| !v.is_null()) else {
            out.insert(key.clone(), Value::Null);
            continue;
        };
        let child = child_path(path, key);
        match (had, want) {
            (Value::Object(h), Value::Object(w)) => {
                let diff = diff_deletions_map(h, w, &child)?;
                if !diff.is_empty() {
                    out.insert(key.clone(), Value::Object(diff));
                }
            }
            (Value::Array(h), Value::Array(w)) => match list_strategy(&child) {
                ListStrategy::Replace => {}
                ListStrategy::MergePrimitives => {
                    let mut gone: Vec<Value> = Vec::new();
                    for item in h {
                        if !w.contains(item) && !gone.contains(item) {
                            gone.push(item.clone());
                        }
                    }
                    if !gone.is_empty() {
                        out.insert(
                            format!("{DELETE_FROM_PRIMITIVE_LIST}{key}"),
                            Value::Array(gone),
                        );
                    }
                }
                ListStrategy::MergeByKey(merge_key) => {
                    // Scalar items: the list is atomic and the delta replaces it.
                    if !h.iter().chain(w).all(Value::is_object) {
                        continue;
                    }
                    let items = diff_deletions_keyed(h, w, merge_key, &child)?;
                    if !items.is_empty() {
                        out.insert(key.clone(), Value::Array(items));
                    }
                }
            },
            _ => {}
        }
    }
    Ok(out)
}

fn diff_deletions_keyed(
    original: &[Value],
    modified: &[Value],
    key: &str,
    path: &[&str],
) -> Result<Vec<Value>, PatchError> {
    let mut items: Vec<Value> = Vec::new();
    let mut seen: Vec<&Value> = Vec::new();
    for had in original {
        let Value::Object(had_map) = had else {
            continue;
        };
        // An item we cannot identify cannot be addressed by a patch either.
        let Some(id) = had_map.get(key) else {
            continue;
        };
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        match modified.iter().find(|m| m.get(key) == Some(id)) {
            None => {
                let mut gone = Object::new();
                gone.insert(key.to_string(), id.clone());
                gone.insert(DIRECTIVE.to_string(), Value::String("delete".to_string()));
                items.push(Value::Object(gone));
            }
            Some(Value::Object(want_map)) => {
                let diff = diff_deletions_map(had_map, want_map, path)?;
                if !diff.is_empty() {
                    items.push(Value::Object(keyed(key, id, diff)));
                }
            }
            Some(_) => {}
        }
    }
    Ok(items)
}

/// Unions the deletions patch with the additions patch. They rarely overlap
/// (deletions name only fields `modified` lacks) except inside maps and keyed
/// list items present in both, which are combined recursively.
fn combine_maps(mut deletions: Object, delta: Object, path: &[&str]) -> Object {
    for (key, add) in delta {
        let child = child_path(path, &key);
        // Taking the value out (rather than removing the key) keeps the key's
        // position; `insert` below then overwrites it in place.
        let existing = deletions.get_mut(&key).map(std::mem::take);
        let combined = match (existing, add) {
            (Some(Value::Object(d)), Value::Object(a)) => Value::Object(combine_maps(d, a, &child)),
            (Some(Value::Array(d)), Value::Array(a)) => match list_strategy(&child) {
                ListStrategy::MergeByKey(merge_key) => {
                    Value::Array(combine_keyed(d, a, merge_key, &child))
                }
                _ => Value::Array(a),
            },
            (_, add) => add,
        };
        deletions.insert(key, combined);
    }
    deletions
}

fn combine_keyed(
    mut deletions: Vec<Value>,
    delta: Vec<Value>,
    key: &str,
    path: &[&str],
) -> Vec<Value> {
    for add in delta {
        let slot = deletions.iter().position(|d| {
            d.get(DIRECTIVE).is_none() && d.get(key).is_some() && d.get(key) == add.get(key)
        });
        match (slot, add) {
            (Some(i), Value::Object(a)) => {
                if let Value::Object(d) = std::mem::take(&mut deletions[i]) {
                    deletions[i] = Value::Object(combine_maps(d, a, path));
                } else {
                    deletions[i] = Value::Object(a);
                }
            }
            (_, add) => deletions.push(add),
        }
    }
    deletions
}

/// RFC 7386 JSON merge patch: maps merge, `null` deletes, everything else
/// (lists included) is replaced. Used for `application/merge-patch+json`.
pub fn apply_merge_patch(original: &Value, patch: &Value) -> Value {
    let mut doc = original.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// RFC 6902 JSON patch (`application/json-patch+json`). The operations are
/// applied atomically: on any failure the error is returned and nothing is
/// half-applied.
pub fn apply_json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| invalid(format!("not a JSON patch: {e}")))?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| invalid(e.to_string()))?;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(original: Value, patch: Value) -> Value {
        apply_strategic_merge(&original, &patch).unwrap()
    }

    /// Asserts no SMP directive key survives anywhere in `v`.
    fn assert_no_directives(v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    assert!(!is_directive_key(k), "directive {k} left in result");
                    assert_no_directives(v);
                }
            }
            Value::Array(items) => items.iter().for_each(assert_no_directives),
            _ => {}
        }
    }

    /// `actual` has every non-null field of `expected` with the same value;
    /// every expected list item has a matching (superset) item in `actual`.
    fn is_superset(actual: &Value, expected: &Value) -> bool {
        match (actual, expected) {
            (Value::Object(a), Value::Object(e)) => e
                .iter()
                .filter(|(_, v)| !v.is_null())
                .all(|(k, v)| a.get(k).is_some_and(|av| is_superset(av, v))),
            (Value::Array(a), Value::Array(e)) => {
                e.iter().all(|ev| a.iter().any(|av| is_superset(av, ev)))
            }
            _ => actual == expected,
        }
    }

    /// Applies a three-way patch to `current` and checks kubectl's promise:
    /// the result carries every field of `modified`.
    fn round_trip(original: Option<&Value>, modified: &Value, current: &Value) -> Value {
        let patch = three_way_merge(original, modified, current).unwrap();
        let applied = apply_strategic_merge(current, &patch).unwrap();
        assert!(
            is_superset(&applied, modified),
            "applied {applied:#} lacks parts of modified {modified:#} (patch {patch:#})"
        );
        assert_no_directives(&applied);
        applied
    }

    fn deployment(containers: Value) -> Value {
        json!({"spec": {"template": {"spec": {"containers": containers}}}})
    }

    #[test]
    fn strategy_table() {
        use ListStrategy::*;
        let pod = ["spec", "template", "spec"];
        let at = |tail: &[&'static str]| {
            let mut p: Vec<&str> = pod.to_vec();
            p.extend_from_slice(tail);
            list_strategy(&p)
        };
        assert_eq!(at(&["containers"]), MergeByKey("name"));
        assert_eq!(at(&["initContainers"]), MergeByKey("name"));
        assert_eq!(at(&["ephemeralContainers"]), MergeByKey("name"));
        assert_eq!(at(&["volumes"]), MergeByKey("name"));
        assert_eq!(at(&["imagePullSecrets"]), MergeByKey("name"));
        assert_eq!(at(&["hostAliases"]), MergeByKey("ip"));
        assert_eq!(
            at(&["topologySpreadConstraints"]),
            MergeByKey("topologyKey")
        );
        assert_eq!(at(&["containers", "env"]), MergeByKey("name"));
        assert_eq!(at(&["containers", "volumeMounts"]), MergeByKey("mountPath"));
        assert_eq!(
            at(&["containers", "volumeDevices"]),
            MergeByKey("devicePath")
        );
        assert_eq!(at(&["containers", "ports"]), MergeByKey("containerPort"));
        assert_eq!(
            at(&["initContainers", "ports"]),
            MergeByKey("containerPort")
        );
        assert_eq!(
            list_strategy(&["spec", "containers", "ports"]),
            MergeByKey("containerPort")
        );
        assert_eq!(list_strategy(&["spec", "ports"]), MergeByKey("port"));
        assert_eq!(list_strategy(&["status", "conditions"]), MergeByKey("type"));
        assert_eq!(
            list_strategy(&["metadata", "ownerReferences"]),
            MergeByKey("uid")
        );
        assert_eq!(list_strategy(&["metadata", "finalizers"]), MergePrimitives);
        assert_eq!(list_strategy(&["spec", "finalizers"]), Replace);
        for atomic in ["args", "command", "envFrom"] {
            assert_eq!(at(&["containers", atomic]), Replace);
        }
        assert_eq!(at(&["tolerations"]), Replace);
        assert_eq!(list_strategy(&["spec", "ipFamilies"]), Replace);
        assert_eq!(list_strategy(&["spec", "rules", "http"]), Replace);
        assert_eq!(list_strategy(&[]), Replace);
    }

    #[test]
    fn containers_merge_by_name_keeping_other_writers_fields() {
        let original = deployment(json!([
            {"name": "web", "image": "a", "resources": {"limits": {"cpu": "1"}}},
            {"name": "sidecar", "image": "s"}
        ]));
        let patch =
            deployment(json!([{"name": "web", "image": "b"}, {"name": "new", "image": "n"}]));
        let got = smp(original, patch);
        assert_eq!(
            got,
            deployment(json!([
                {"name": "web", "image": "b", "resources": {"limits": {"cpu": "1"}}},
                {"name": "sidecar", "image": "s"},
                {"name": "new", "image": "n"}
            ]))
        );
        // Original order of existing items is kept, new ones are appended.
        let names: Vec<&str> = got["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web", "sidecar", "new"]);
    }

    #[test]
    fn patch_delete_in_keyed_list() {
        let original = deployment(json!([{"name": "web"}, {"name": "sidecar"}]));
        let patch = deployment(
            json!([{"name": "sidecar", "$patch": "delete"}, {"name": "gone", "$patch": "delete"}]),
        );
        assert_eq!(smp(original, patch), deployment(json!([{"name": "web"}])));
    }

    #[test]
    fn patch_replace_on_list() {
        let original = deployment(json!([{"name": "web", "image": "a"}, {"name": "sidecar"}]));
        let patch =
            deployment(json!([{"$patch": "replace"}, {"name": "only", "image": "o", "x": null}]));
        let got = smp(original, patch);
        assert_eq!(got, deployment(json!([{"name": "only", "image": "o"}])));
        assert_no_directives(&got);
    }

    #[test]
    fn patch_replace_and_delete_on_map() {
        let original =
            json!({"metadata": {"labels": {"a": "1", "b": "2"}, "annotations": {"x": "y"}}});
        let patch = json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}, "annotations": {"$patch": "delete"}}});
        let got = smp(original, patch);
        assert_eq!(got, json!({"metadata": {"labels": {"c": "3"}}}));

        // A top-level delete empties the object.
        assert_eq!(smp(json!({"a": 1}), json!({"$patch": "delete"})), json!({}));
        assert_eq!(
            smp(
                json!({"a": 1, "b": 2}),
                json!({"$patch": "replace", "b": 3})
            ),
            json!({"b": 3})
        );
    }

    #[test]
    fn null_deletes_keys_and_maps_merge_recursively() {
        let original =
            json!({"spec": {"replicas": 3, "paused": false, "selector": {"app": "x"}}, "keep": 1});
        let patch = json!({"spec": {"replicas": null, "paused": true, "selector": {"tier": "web"}, "absent": null}});
        assert_eq!(
            smp(original, patch),
            json!({"spec": {"paused": true, "selector": {"app": "x", "tier": "web"}}, "keep": 1})
        );
    }

    #[test]
    fn null_inside_keyed_item_deletes_field() {
        let original = deployment(json!([{"name": "web", "image": "a", "args": ["x"]}]));
        let patch = deployment(json!([{"name": "web", "args": null}]));
        assert_eq!(
            smp(original, patch),
            deployment(json!([{"name": "web", "image": "a"}]))
        );
    }

    #[test]
    fn primitive_list_union_and_delete() {
        let original = json!({"metadata": {"finalizers": ["a", "b"]}});
        let got = smp(
            original.clone(),
            json!({"metadata": {"finalizers": ["b", "c", "c"]}}),
        );
        assert_eq!(got, json!({"metadata": {"finalizers": ["a", "b", "c"]}}));

        let got = smp(
            original.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zz"], "finalizers": ["d"]}}),
        );
        assert_eq!(got, json!({"metadata": {"finalizers": ["b", "d"]}}));

        let got = smp(
            original,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "b"]}}),
        );
        assert_eq!(got, json!({"metadata": {"finalizers": []}}));
    }

    #[test]
    fn replace_lists_and_scalars_are_replaced() {
        let original = deployment(json!([{"name": "web", "args": ["a", "b"], "command": ["sh"]}]));
        let patch = deployment(json!([{"name": "web", "args": ["c"]}]));
        assert_eq!(
            smp(original, patch),
            deployment(json!([{"name": "web", "args": ["c"], "command": ["sh"]}]))
        );

        let original =
            json!({"spec": {"template": {"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "c"}]}}}});
        assert_eq!(smp(original, patch.clone()), patch);

        // Type changes simply take the patch value.
        assert_eq!(
            smp(json!({"a": {"b": 1}}), json!({"a": 5})),
            json!({"a": 5})
        );
        assert_eq!(
            smp(json!({"a": 5}), json!({"a": {"b": 1, "c": null}})),
            json!({"a": {"b": 1}})
        );
    }

    #[test]
    fn service_ports_by_port_container_ports_by_container_port() {
        let svc = json!({"spec": {"ports": [
            {"port": 80, "targetPort": 8080, "name": "http"},
            {"port": 443, "targetPort": 8443}
        ]}});
        let got = smp(
            svc,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 53, "protocol": "UDP"}]}}),
        );
        assert_eq!(
            got,
            json!({"spec": {"ports": [
                {"port": 80, "targetPort": 9090, "name": "http"},
                {"port": 443, "targetPort": 8443},
                {"port": 53, "protocol": "UDP"}
            ]}})
        );

        let pod = json!({"spec": {"containers": [{"name": "web", "ports": [
            {"containerPort": 80, "name": "http"}, {"containerPort": 9000}
        ]}]}});
        let got = smp(
            pod,
            json!({"spec": {"containers": [{"name": "web", "ports": [
                {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 9000, "$patch": "delete"}
            ]}]}}),
        );
        assert_eq!(
            got,
            json!({"spec": {"containers": [{"name": "web", "ports": [
                {"containerPort": 80, "name": "http", "protocol": "TCP"}
            ]}]}})
        );
    }

    #[test]
    fn env_and_volume_mounts_merge_by_their_keys() {
        let original = deployment(json!([{"name": "web",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "volumeMounts": [{"mountPath": "/data", "name": "d"}]}]));
        let patch = deployment(json!([{"name": "web",
            "env": [{"name": "B", "value": "3"}],
            "volumeMounts": [{"mountPath": "/data", "readOnly": true}]}]));
        assert_eq!(
            smp(original, patch),
            deployment(json!([{"name": "web",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}],
                "volumeMounts": [{"mountPath": "/data", "name": "d", "readOnly": true}]}]))
        );
    }

    #[test]
    fn set_element_order_reorders_and_is_stripped() {
        let original = deployment(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "d"}],
            "containers": [{"name": "d", "image": "x"}]
        }}}});
        let got = smp(original, patch);
        assert_no_directives(&got);
        let names: Vec<&str> = got["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        // "b" is server-only and keeps its place relative to the server order.
        assert_eq!(names.len(), 4);
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("c") < pos("a") && pos("a") < pos("d"));

        let got = smp(
            json!({"metadata": {"finalizers": ["x", "y"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["y", "x"]}}),
        );
        assert_eq!(got, json!({"metadata": {"finalizers": ["y", "x"]}}));
    }

    #[test]
    fn retain_keys_prunes_original() {
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        assert_eq!(
            smp(original, patch),
            json!({"spec": {"strategy": {"type": "Recreate"}}})
        );
    }

    #[test]
    fn directives_never_survive_into_new_values() {
        let patch = json!({"spec": {"template": {"spec": {
            "containers": [
                {"name": "web", "env": [{"name": "A", "value": "1"}, {"name": "B", "$patch": "delete"}],
                 "$setElementOrder/env": [{"name": "A"}], "gone": null},
                {"name": "x", "$patch": "delete"}
            ],
            "volumes": [{"$patch": "replace"}, {"name": "v"}],
            "meta": {"$patch": "replace", "k": "v", "$retainKeys": ["k"]}
        }}}});
        let got = smp(json!({}), patch);
        assert_no_directives(&got);
        assert_eq!(
            got,
            json!({"spec": {"template": {"spec": {
                "containers": [{"name": "web", "env": [{"name": "A", "value": "1"}]}],
                "volumes": [{"name": "v"}],
                "meta": {"k": "v"}
            }}}})
        );
    }

    #[test]
    fn malformed_patches_are_rejected() {
        assert!(apply_strategic_merge(&json!({}), &json!([1])).is_err());
        assert!(apply_strategic_merge(&json!({}), &json!({"a": {"$patch": "explode"}})).is_err());
        let no_key = deployment(json!([{"image": "a"}]));
        let err =
            apply_strategic_merge(&deployment(json!([{"name": "web"}])), &no_key).unwrap_err();
        assert!(err.to_string().contains("merge key"), "{err}");
        assert!(apply_strategic_merge(&json!({}), &json!({"$retainKeys": "x"})).is_err());
        assert!(
            apply_strategic_merge(&json!({}), &json!({"$deleteFromPrimitiveList/f": 1})).is_err()
        );
        // A null original is an empty object being created.
        assert_eq!(
            apply_strategic_merge(&Value::Null, &json!({"a": 1})).unwrap(),
            json!({"a": 1})
        );
    }

    #[test]
    fn three_way_unchanged_is_empty() {
        let manifest = json!({"metadata": {"name": "d", "labels": {"app": "x"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "a", "ports": [{"containerPort": 80}]}]}}}});
        let mut current = manifest.clone();
        current["metadata"]["uid"] = json!("123");
        current["status"] = json!({"readyReplicas": 2});
        current["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] =
            json!("/dev/termination-log");
        assert_eq!(
            three_way_merge(Some(&manifest), &manifest, &current).unwrap(),
            json!({})
        );
        assert_eq!(
            three_way_merge(None, &manifest, &current).unwrap(),
            json!({})
        );
    }

    #[test]
    fn three_way_documented_example() {
        let original = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "web", "image": "a"}]}}}});
        let modified = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "b"}]}}}});
        let current = json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [
            {"name": "web", "image": "a", "resources": {"limits": {"cpu": "1"}}}
        ]}}}});
        let patch = three_way_merge(Some(&original), &modified, &current).unwrap();
        assert_eq!(
            patch,
            json!({"spec": {"replicas": null, "template": {"spec": {"containers": [{"name": "web", "image": "b"}]}}}})
        );
        let applied = round_trip(Some(&original), &modified, &current);
        assert_eq!(applied["spec"].get("replicas"), None);
        assert_eq!(
            applied["spec"]["template"]["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "1"}})
        );

        // If we never set replicas, the autoscaler's value is not ours to touch.
        let original = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "a"}]}}}});
        let patch = three_way_merge(Some(&original), &modified, &current).unwrap();
        assert_eq!(
            patch,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "b"}]}}}})
        );
        let applied = round_trip(Some(&original), &modified, &current);
        assert_eq!(applied["spec"]["replicas"], json!(5));
    }

    #[test]
    fn three_way_removed_field_is_nulled() {
        let original =
            json!({"metadata": {"labels": {"app": "x", "tier": "web"}}, "data": {"k": "v"}});
        let modified = json!({"metadata": {"labels": {"app": "x"}}});
        let current = json!({"metadata": {"labels": {"app": "x", "tier": "web", "owner": "ops"}}, "data": {"k": "v"}});
        let patch = three_way_merge(Some(&original), &modified, &current).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"labels": {"tier": null}}, "data": null})
        );
        let applied = round_trip(Some(&original), &modified, &current);
        assert_eq!(
            applied,
            json!({"metadata": {"labels": {"app": "x", "owner": "ops"}}})
        );
    }

    #[test]
    fn three_way_removed_container_is_deleted_by_key() {
        let original =
            deployment(json!([{"name": "web", "image": "a"}, {"name": "old", "image": "o"}]));
        let modified = deployment(json!([{"name": "web", "image": "a"}]));
        let current = deployment(json!([
            {"name": "web", "image": "a"},
            {"name": "old", "image": "o"},
            {"name": "injected", "image": "i"}
        ]));
        let patch = three_way_merge(Some(&original), &modified, &current).unwrap();
        assert_eq!(
            patch,
            deployment(json!([{"name": "old", "$patch": "delete"}]))
        );
        let applied = round_trip(Some(&original), &modified, &current);
        assert_eq!(
            applied,
            deployment(json!([{"name": "web", "image": "a"}, {"name": "injected", "image": "i"}]))
        );
    }

    #[test]
    fn three_way_field_in_container_removed_and_others_kept() {
        let original = deployment(
            json!([{"name": "web", "image": "a", "args": ["--v"], "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]),
        );
        let modified = deployment(
            json!([{"name": "web", "image": "b", "env": [{"name": "A", "value": "1"}]}]),
        );
        let current = deployment(
            json!([{"name": "web", "image": "a", "args": ["--v"], "imagePullPolicy": "Always",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}]}]),
        );
        let patch = three_way_merge(Some(&original), &modified, &current).unwrap();
        assert_eq!(
            patch,
            deployment(
                json!([{"name": "web", "args": null, "env": [{"name": "B", "$patch": "delete"}], "image": "b"}])
            )
        );
        let applied = round_trip(Some(&original), &modified, &current);
        assert_eq!(
            applied,
            deployment(
                json!([{"name": "web", "image": "b", "imagePullPolicy": "Always",
                "env": [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]}])
            )
        );
    }

    #[test]
    fn three_way_primitive_and_replace_lists() {
        let original =
            json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"ipFamilies": ["IPv4"]}});
        let modified = json!({"metadata": {"finalizers": ["a", "c"]}, "spec": {"ipFamilies": ["IPv4", "IPv6"]}});
        let current = json!({"metadata": {"finalizers": ["a", "b", "other"]}, "spec": {"ipFamilies": ["IPv4"]}});
        let patch = three_way_merge(Some(&original), &modified, &current).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"], "finalizers": ["c"]},
                   "spec": {"ipFamilies": ["IPv4", "IPv6"]}})
        );
        let applied = round_trip(Some(&original), &modified, &current);
        assert_eq!(
            applied,
            json!({"metadata": {"finalizers": ["a", "other", "c"]}, "spec": {"ipFamilies": ["IPv4", "IPv6"]}})
        );
    }

    #[test]
    fn three_way_service_ports_and_new_fields() {
        let original = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let modified = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 9090}, {"port": 53, "protocol": "UDP"}]}, "metadata": {"labels": {"a": "b"}}});
        let current = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.0.0.1",
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}]}});
        let patch = three_way_merge(Some(&original), &modified, &current).unwrap();
        assert_eq!(
            patch,
            json!({"spec": {"ports": [{"port": 443, "$patch": "delete"}, {"port": 80, "targetPort": 9090}, {"port": 53, "protocol": "UDP"}],
                            "type": "NodePort"},
                   "metadata": {"labels": {"a": "b"}}})
        );
        let applied = round_trip(Some(&original), &modified, &current);
        assert_eq!(applied["spec"]["clusterIP"], json!("10.0.0.1"));
        assert_eq!(
            applied["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}])
        );
    }

    #[test]
    fn three_way_round_trips() {
        let cases = [
            (None, json!({"a": {"b": [1, 2]}, "c": "x"}), json!({})),
            (
                None,
                json!({"a": {"b": [1, 2]}}),
                json!({"a": "scalar", "z": 1}),
            ),
            (
                Some(json!({"a": 1})),
                json!({"a": {"nested": true}}),
                json!({"a": 1}),
            ),
            (
                Some(deployment(json!([{"name": "a"}]))),
                deployment(
                    json!([{"name": "b", "ports": [{"containerPort": 1}]}, {"name": "a", "image": "i"}]),
                ),
                deployment(json!([{"name": "a", "image": "old", "ports": [{"containerPort": 5}]}])),
            ),
            (
                Some(
                    json!({"spec": {"template": {"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}}}),
                ),
                json!({"spec": {"template": {"spec": {"volumes": [{"name": "v", "configMap": {"name": "c"}}]}}}}),
                json!({"spec": {"template": {"spec": {"volumes": [{"name": "v", "emptyDir": {"medium": "Memory"}}]}}}}),
            ),
            (
                Some(json!({"metadata": {"finalizers": ["x"]}, "spec": {"x": null}})),
                json!({"metadata": {"finalizers": ["y", "x"]}, "spec": {"y": null}}),
                json!({"metadata": {"finalizers": ["z"]}, "spec": {"x": 1, "y": 2}}),
            ),
        ];
        for (original, modified, current) in &cases {
            let applied = round_trip(original.as_ref(), modified, current);
            // Null in the manifest means "absent".
            if let Some(spec) = modified.get("spec").and_then(|s| s.get("y")) {
                assert!(spec.is_null());
                assert_eq!(applied["spec"].get("y"), None);
            }
        }
        // Removing an emptyDir source while adding configMap removes the old source.
        let applied = round_trip(cases[4].0.as_ref(), &cases[4].1, &cases[4].2);
        assert_eq!(
            applied,
            json!({"spec": {"template": {"spec": {"volumes": [{"name": "v", "configMap": {"name": "c"}}]}}}})
        );
    }

    /// Tiny deterministic generator so the randomized test needs no extra crate.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }

        fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
            options[self.below(options.len() as u64) as usize]
        }

        /// A random subset of `options`, in a random order.
        fn subset(&mut self, options: &[&'static str]) -> Vec<&'static str> {
            let mut chosen: Vec<&str> = options
                .iter()
                .copied()
                .filter(|_| self.below(2) == 0)
                .collect();
            if chosen.len() > 1 && self.below(2) == 0 {
                chosen.reverse();
            }
            chosen
        }

        fn object(&mut self) -> Value {
            let mut labels = Object::new();
            for key in self.subset(&["app", "tier", "team"]) {
                labels.insert(key.into(), json!(self.pick(&["a", "b"])));
            }
            let containers: Vec<Value> = self
                .subset(&["web", "sidecar", "init"])
                .into_iter()
                .map(|name| {
                    let mut c = json!({"name": name});
                    if self.below(3) > 0 {
                        c["image"] = json!(self.pick(&["img:1", "img:2"]));
                    }
                    if self.below(2) == 0 {
                        let env: Vec<Value> = self
                            .subset(&["A", "B"])
                            .into_iter()
                            .map(|n| json!({"name": n, "value": self.pick(&["1", "2"])}))
                            .collect();
                        c["env"] = json!(env);
                    }
                    if self.below(2) == 0 {
                        let ports: Vec<Value> = [80, 443]
                            .into_iter()
                            .filter(|_| self.below(2) == 0)
                            .map(|p| json!({"containerPort": p}))
                            .collect();
                        c["ports"] = json!(ports);
                    }
                    if self.below(3) == 0 {
                        c["args"] = json!(self.subset(&["-v", "-q"]));
                    }
                    c
                })
                .collect();
            let mut obj = json!({
                "metadata": {"name": "d", "labels": labels, "finalizers": self.subset(&["f1", "f2", "f3"])},
                "spec": {"template": {"spec": {"containers": containers}}}
            });
            if self.below(2) == 0 {
                obj["spec"]["replicas"] = json!(self.below(4));
            }
            if self.below(4) == 0 {
                obj["spec"]["template"]["spec"]["tolerations"] =
                    json!([{"key": self.pick(&["x", "y"])}]);
            }
            obj
        }
    }

    #[test]
    fn three_way_randomized_round_trips() {
        let mut rng = Lcg(0x5e1u64);
        for _ in 0..2000 {
            let original = rng.object();
            let modified = rng.object();
            let current = rng.object();
            let original = (rng.below(5) > 0).then_some(original);
            let applied = round_trip(original.as_ref(), &modified, &current);

            // Labels nobody applied survive; labels we applied and dropped go.
            let labels = |v: &Value| {
                v["metadata"]["labels"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
            };
            let (cur, applied_labels, want) =
                (labels(&current), labels(&applied), labels(&modified));
            let had = original.as_ref().map(labels).unwrap_or_default();
            for (k, v) in &cur {
                if !want.contains_key(k) {
                    if had.contains_key(k) {
                        assert!(
                            !applied_labels.contains_key(k),
                            "label {k} should be deleted"
                        );
                    } else {
                        assert_eq!(applied_labels.get(k), Some(v), "label {k} owned elsewhere");
                    }
                }
            }

            // Applying the same manifest again is a no-op.
            let again = three_way_merge(Some(&modified), &modified, &applied).unwrap();
            assert_eq!(
                again,
                json!({}),
                "second apply not idempotent on {applied:#}"
            );
        }
    }

    #[test]
    fn three_way_rejects_bad_inputs() {
        assert!(three_way_merge(None, &json!([1]), &json!({})).is_err());
        assert!(three_way_merge(Some(&json!(3)), &json!({}), &json!({})).is_err());
        assert!(three_way_merge(
            None,
            &deployment(json!([{"image": "x"}])),
            &deployment(json!([{"name": "a"}]))
        )
        .is_err());
        // A missing live object (create) is treated as empty.
        assert_eq!(
            three_way_merge(None, &json!({"a": 1}), &Value::Null).unwrap(),
            json!({"a": 1})
        );
    }

    #[test]
    fn json_merge_and_json_patch_wrappers() {
        let doc = json!({"a": 1, "b": [1, 2], "c": {"d": 1}});
        assert_eq!(
            apply_merge_patch(&doc, &json!({"a": null, "b": [3], "c": {"e": 2}})),
            json!({"b": [3], "c": {"d": 1, "e": 2}})
        );
        let patched = apply_json_patch(
            &doc,
            &json!([{"op": "replace", "path": "/a", "value": 2}, {"op": "add", "path": "/b/-", "value": 3}]),
        )
        .unwrap();
        assert_eq!(patched, json!({"a": 2, "b": [1, 2, 3], "c": {"d": 1}}));
        assert!(apply_json_patch(&doc, &json!([{"op": "remove", "path": "/zz"}])).is_err());
        assert!(apply_json_patch(&doc, &json!({"op": "add"})).is_err());
        // A failed test op leaves nothing half-applied.
        assert!(apply_json_patch(
            &doc,
            &json!([{"op": "replace", "path": "/a", "value": 9}, {"op": "test", "path": "/a", "value": 1}])
        )
        .is_err());
    }
}
