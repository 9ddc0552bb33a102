use super::*;
use crate::patch::test_support::{deployment, round_trip};
use serde_json::json;

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
    let modified =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "b"}]}}}});
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
    let original =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "a"}]}}}});
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
    let original = json!({"metadata": {"labels": {"app": "x", "tier": "web"}}, "data": {"k": "v"}});
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
    let modified =
        deployment(json!([{"name": "web", "image": "b", "env": [{"name": "A", "value": "1"}]}]));
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
    let modified =
        json!({"metadata": {"finalizers": ["a", "c"]}, "spec": {"ipFamilies": ["IPv4", "IPv6"]}});
    let current =
        json!({"metadata": {"finalizers": ["a", "b", "other"]}, "spec": {"ipFamilies": ["IPv4"]}});
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
        let (cur, applied_labels, want) = (labels(&current), labels(&applied), labels(&modified));
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
