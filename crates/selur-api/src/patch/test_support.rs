//! Helpers shared by the patch tests.

use super::{apply_strategic_merge, is_directive_key, three_way_merge};
use serde_json::{json, Value};

pub(super) fn smp(original: Value, patch: Value) -> Value {
    apply_strategic_merge(&original, &patch).unwrap()
}

/// Asserts no SMP directive key survives anywhere in `v`.
pub(super) fn assert_no_directives(v: &Value) {
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
pub(super) fn round_trip(original: Option<&Value>, modified: &Value, current: &Value) -> Value {
    let patch = three_way_merge(original, modified, current).unwrap();
    let applied = apply_strategic_merge(current, &patch).unwrap();
    assert!(
        is_superset(&applied, modified),
        "applied {applied:#} lacks parts of modified {modified:#} (patch {patch:#})"
    );
    assert_no_directives(&applied);
    applied
}

pub(super) fn deployment(containers: Value) -> Value {
    json!({"spec": {"template": {"spec": {"containers": containers}}}})
}
