//! Which fields of a running pod's spec an update may change: container and
//! init container images, activeDeadlineSeconds, terminationGracePeriodSeconds,
//! and additions to tolerations. Anything else is refused, naming what changed.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::PodSpec;

use crate::FieldError;

/// What an update may change in a pod's spec: images, activeDeadlineSeconds,
/// terminationGracePeriodSeconds, and additions to tolerations.
pub(super) fn validate_pod_spec_update(old: &PodSpec, new: &PodSpec, errs: &mut Vec<FieldError>) {
    let mut patched = new.clone();
    if patched.containers.len() == old.containers.len() {
        for (p, o) in patched.containers.iter_mut().zip(&old.containers) {
            p.image.clone_from(&o.image);
        }
    }
    if let (Some(p), Some(o)) = (
        patched.init_containers.as_mut(),
        old.init_containers.as_ref(),
    ) {
        if p.len() == o.len() {
            for (p, o) in p.iter_mut().zip(o) {
                p.image.clone_from(&o.image);
            }
        }
    }
    patched.active_deadline_seconds = old.active_deadline_seconds;
    patched.termination_grace_period_seconds = old.termination_grace_period_seconds;
    let old_tols = old.tolerations.as_deref().unwrap_or_default();
    let new_tols = new.tolerations.as_deref().unwrap_or_default();
    if old_tols.iter().all(|t| new_tols.contains(t)) {
        patched.tolerations.clone_from(&old.tolerations);
    }
    if patched == *old {
        return;
    }
    let (o, n) = (serde_json::to_value(old), serde_json::to_value(&patched));
    let changed: Vec<String> = match (o, n) {
        (Ok(serde_json::Value::Object(o)), Ok(serde_json::Value::Object(n))) => {
            let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
            keys.into_iter()
                .filter(|k| o.get(*k) != n.get(*k))
                .map(|k| format!("spec.{k}"))
                .collect()
        }
        _ => Vec::new(),
    };
    errs.push(FieldError::forbidden(
        "spec",
        format!(
            "pod updates may not change fields other than `spec.containers[*].image`, \
             `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, \
             `spec.tolerations` (only additions to existing tolerations), \
             `spec.terminationGracePeriodSeconds` (changed: {}); delete and recreate the pod, \
             or manage it with a Deployment to roll out such changes",
            changed.join(", ")
        ),
    ));
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_has, object, pod};
    use super::super::validate_update;
    use serde_json::json;

    #[test]
    fn pod_update_may_change_image_only() {
        let old = object(pod("p"));
        let mut v = pod("p");
        v["spec"]["containers"][0]["image"] = json!("nginx:2");
        v["spec"]["activeDeadlineSeconds"] = json!(30);
        assert!(validate_update(&old, &object(v.clone())).is_empty());
        v["spec"]["nodeName"] = json!("n1");
        let errs: Vec<String> = validate_update(&old, &object(v))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_has(
            &errs,
            "spec: Forbidden: pod updates may not change fields other than",
        );
        assert_has(&errs, "changed: spec.nodeName");
    }

    #[test]
    fn tolerations_may_only_be_added() {
        let mut v = pod("p");
        v["spec"]["tolerations"] = json!([{"key": "a", "operator": "Exists"}]);
        let old = object(v.clone());
        v["spec"]["tolerations"] =
            json!([{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]);
        assert!(validate_update(&old, &object(v.clone())).is_empty());
        v["spec"]["tolerations"] = json!([{"key": "b", "operator": "Exists"}]);
        assert_eq!(validate_update(&old, &object(v)).len(), 1);
    }
}
