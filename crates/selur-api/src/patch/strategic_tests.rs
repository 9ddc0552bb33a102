use super::*;
use crate::patch::test_support::{assert_no_directives, deployment, smp};
use serde_json::json;

#[test]
fn containers_merge_by_name_keeping_other_writers_fields() {
    let original = deployment(json!([
        {"name": "web", "image": "a", "resources": {"limits": {"cpu": "1"}}},
        {"name": "sidecar", "image": "s"}
    ]));
    let patch = deployment(json!([{"name": "web", "image": "b"}, {"name": "new", "image": "n"}]));
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
    let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "annotations": {"x": "y"}}});
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
    let original =
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
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
    let err = apply_strategic_merge(&deployment(json!([{"name": "web"}])), &no_key).unwrap_err();
    assert!(err.to_string().contains("merge key"), "{err}");
    assert!(apply_strategic_merge(&json!({}), &json!({"$retainKeys": "x"})).is_err());
    assert!(apply_strategic_merge(&json!({}), &json!({"$deleteFromPrimitiveList/f": 1})).is_err());
    // A null original is an empty object being created.
    assert_eq!(
        apply_strategic_merge(&Value::Null, &json!({"a": 1})).unwrap(),
        json!({"a": 1})
    );
}
