//! Thin wrappers for RFC 7386 JSON merge patch and RFC 6902 JSON patch.

use super::{invalid, PatchError};
use serde_json::Value;

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
