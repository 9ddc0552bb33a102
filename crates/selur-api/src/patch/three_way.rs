//! The three-way patch of `kubectl apply` (client-side): additions from the
//! live object to the manifest, deletions from the last-applied manifest.

use super::strategic::missing_key;
use super::{
    child_path, invalid, list_strategy, ListStrategy, Object, PatchError,
    DELETE_FROM_PRIMITIVE_LIST, DIRECTIVE,
};
use serde_json::Value;

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

#[cfg(test)]
#[path = "three_way_tests.rs"]
mod tests;
