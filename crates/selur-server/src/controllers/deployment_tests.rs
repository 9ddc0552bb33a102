use super::*;
use crate::controllers::deployment_rs::template_hash;

#[test]
fn template_hash_is_stable_and_changes_with_the_template() {
    let a = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}});
    let b = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x:2"}]}});
    assert_eq!(template_hash(&a, 0), template_hash(&a, 0));
    assert_ne!(template_hash(&a, 0), template_hash(&b, 0));
    assert_ne!(template_hash(&a, 0), template_hash(&a, 1));
    assert!(template_hash(&a, 0)
        .chars()
        .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    let mut labeled = a.clone();
    labeled["metadata"]["labels"][HASH_LABEL] = json!("abc");
    assert_eq!(without_hash(&labeled), a);
}

#[test]
fn events_map_to_deployments() {
    let kv = |key: &str, v: Value| selur_store::KeyValue {
        key: key.into(),
        value: serde_json::to_vec(&v).unwrap_or_default(),
        create_revision: 1,
        mod_revision: 1,
    };
    let rs = json!({"metadata": {"namespace": "ns", "name": "web-h1",
        "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "u", "controller": true}]}});
    let ev = Event {
        event_type: EventType::Put,
        kv: kv("/registry/apps/replicasets/ns/web-h1", rs),
        prev: None,
    };
    assert_eq!(keys_of(&ev), ["ns/web"]);
    let pod = json!({"metadata": {"namespace": "ns", "name": "web-h1-x", "labels": {HASH_LABEL: "h1"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "web-h1", "uid": "r", "controller": true}]}});
    let gone = Event {
        event_type: EventType::Delete,
        kv: kv("/registry/core/pods/ns/web-h1-x", pod.clone()),
        prev: None,
    };
    assert_eq!(keys_of(&gone), ["ns/web"]);
    let put = Event {
        event_type: EventType::Put,
        kv: kv("/registry/core/pods/ns/web-h1-x", pod),
        prev: None,
    };
    assert!(keys_of(&put).is_empty());
}
