//! Services on the server side: clusterIP and nodePort allocation inside
//! the Service's own store transaction ([`alloc`]), and the
//! `default/kubernetes` Service that points at the API server
//! ([`kubernetes`]). The endpoints controller that fills EndpointSlices and
//! Endpoints from pods is `controllers::endpoints`.

pub mod alloc;
pub mod kubernetes;

use serde_json::Value;

use selur_api::kinds::ResourceKind;

use crate::registry::{Registry, Subresource};
use crate::status::ApiResult;

/// `value` as the API would store it (strict decode and re-encode), so two
/// objects compare equal exactly when a write would change nothing.
pub(crate) fn normalized(value: &Value) -> Option<Value> {
    let (_, obj) = selur_api::decode::decode(value.clone()).ok()?;
    obj.to_value().ok()
}

/// `stored` with `desired`'s top-level `fields` (a field `desired` lacks is
/// removed) and its `metadata.labels` and `metadata.ownerReferences`.
pub(crate) fn with_fields(stored: &Value, desired: &Value, fields: &[&str]) -> Value {
    let mut out = stored.clone();
    if let Some(o) = out.as_object_mut() {
        for f in fields {
            match desired.get(*f) {
                Some(v) => o.insert((*f).to_string(), v.clone()),
                None => o.remove(*f),
            };
        }
    }
    if let Some(m) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in ["labels", "ownerReferences"] {
            match desired.pointer(&format!("/metadata/{f}")) {
                Some(v) => m.insert(f.to_string(), v.clone()),
                None => m.remove(f),
            };
        }
    }
    out
}

/// Bring a stored object's `fields` (and labels, owners) to `desired`;
/// writes nothing when they agree already. The write carries the stored
/// resourceVersion, so a concurrent change makes it fail (409) rather than
/// be overwritten. Returns whether it wrote.
pub(crate) async fn update_if_changed(
    reg: &Registry,
    kind: &'static ResourceKind,
    stored: &Value,
    desired: &Value,
    fields: &[&str],
) -> ApiResult<bool> {
    let want = with_fields(stored, desired, fields);
    if normalized(&want) == normalized(stored) {
        return Ok(false);
    }
    let ns = stored
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    let name = stored
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    reg.update(kind, ns, name, want, Subresource::Main, false)
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn with_fields_replaces_and_removes() {
        let stored = json!({"metadata": {"name": "a", "labels": {"x": "1"}, "uid": "u"},
            "subsets": [{"addresses": [{"ip": "fd00::1"}]}], "keep": 1});
        let desired = json!({"metadata": {"labels": {"y": "2"}}});
        let got = with_fields(&stored, &desired, &["subsets"]);
        assert_eq!(
            got,
            json!({"metadata": {"name": "a", "labels": {"y": "2"}, "uid": "u"}, "keep": 1})
        );
    }
}
