//! Strategic merge patch: applying a patch with its `$patch`, `$retainKeys`,
//! `$setElementOrder` and `$deleteFromPrimitiveList` directives.

use super::{
    child_path, dotted, invalid, is_directive_key, list_strategy, ListStrategy, Object, PatchError,
    DELETE_FROM_PRIMITIVE_LIST, DIRECTIVE, RETAIN_KEYS, SET_ELEMENT_ORDER,
};
use serde_json::Value;
use std::collections::VecDeque;

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

pub(super) fn missing_key(key: &str, path: &[&str]) -> PatchError {
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

#[cfg(test)]
#[path = "strategic_tests.rs"]
mod tests;
