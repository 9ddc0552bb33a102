//! Events about this node's pods, recorded through the agent's deduplicating
//! recorder. Everything that acts on pods (the runtime, volumes, image
//! pulls, the pod watcher) reports through here, so none of them depends on
//! another for it.

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use selur_client::recorder::ObjectRef;

use crate::Agent;

/// What an event can be about: a pod as the API sent it (JSON) or decoded.
pub trait Regarding {
    /// The pod's reference, about its part `field_path` (may be empty).
    fn object_ref(&self, field_path: &str) -> ObjectRef;
}

impl Regarding for Value {
    fn object_ref(&self, field_path: &str) -> ObjectRef {
        let mut r = ObjectRef::of(self).field(field_path);
        if r.api_version.is_empty() {
            r.api_version = "v1".into();
        }
        if r.kind.is_empty() {
            r.kind = "Pod".into();
        }
        r
    }
}

impl Regarding for Pod {
    fn object_ref(&self, field_path: &str) -> ObjectRef {
        let m = &self.metadata;
        ObjectRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            field_path: field_path.to_string(),
        }
    }
}

impl<T: Regarding + ?Sized> Regarding for std::sync::Arc<T> {
    fn object_ref(&self, field_path: &str) -> ObjectRef {
        (**self).object_ref(field_path)
    }
}

/// Record an event about `pod` (deduplicated by the agent's recorder).
pub async fn event(
    agent: &Agent,
    pod: &(impl Regarding + ?Sized),
    field_path: &str,
    type_: &str,
    reason: &str,
    message: &str,
) {
    agent
        .recorder
        .record(&pod.object_ref(field_path), type_, reason, message)
        .await;
}

/// Record an event without waiting for the API (off the pod start path).
pub fn event_later(
    agent: &Agent,
    pod: &(impl Regarding + ?Sized),
    field_path: &str,
    type_: &str,
    reason: &str,
    message: &str,
) {
    agent.recorder.record_later(
        pod.object_ref(field_path),
        type_,
        reason,
        message.to_string(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_decoded_pods_refer_alike() {
        let v = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {"containers": []}});
        let pod: Pod = serde_json::from_value(v.clone()).unwrap();
        let r = v.object_ref("spec.containers{web}");
        assert_eq!(r, pod.object_ref("spec.containers{web}"));
        assert_eq!((r.api_version.as_str(), r.kind.as_str()), ("v1", "Pod"));
    }
}
