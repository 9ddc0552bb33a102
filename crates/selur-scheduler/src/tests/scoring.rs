//! Scores (image locality, least allocated, owner spreading), the bounded
//! search, and queue order.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{merge, node, pod, requesting, snap};
use crate::pod::short_id;
use crate::queue::{self, Priorities};
use crate::score;
use crate::snapshot::{CatalogImage, Snapshot};
use crate::{feasible_nodes_to_find, schedule};

fn image(digest: &str, name: &str, layers: &[(&str, u64)], nodes: &[&str]) -> CatalogImage {
    CatalogImage {
        digest: digest.into(),
        names: vec![name.into()],
        layers: layers.iter().map(|(d, s)| (short_id(d), *s)).collect(),
        size: layers.iter().map(|(_, s)| s).sum(),
        size_mb_label: None,
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
    }
}

#[test]
fn image_locality_prefers_the_node_holding_the_image_all_else_equal() {
    let mut s = snap(&[
        node("a", "2", "4Gi", json!({})),
        node("b", "2", "4Gi", json!({})),
        node("c", "2", "4Gi", json!({})),
    ]);
    s.upsert_image(image(
        "sha256:app",
        "docker.io/library/app:1",
        &[("sha256:base", 90), ("sha256:top", 10)],
        &["b"],
    ));
    // Node c holds another image sharing the big base layer.
    s.upsert_image(image(
        "sha256:other",
        "docker.io/library/other:1",
        &[("sha256:base", 90)],
        &["c"],
    ));
    let p = pod(
        "p",
        json!({"spec": {"containers": [{"name": "c", "image": "app:1"}]}}),
    );
    let placed = schedule(&s, &p).expect("fits");
    assert_eq!(placed.node.as_ref(), "b");
    let by = |n: &str| {
        placed
            .scores
            .iter()
            .find(|x| x.node.as_ref() == n)
            .expect("scored")
            .image_locality
    };
    assert_eq!((by("a"), by("b"), by("c")), (0, 100, 90));
}

#[test]
fn least_allocated_and_spreading_by_owner() {
    let mut s = snap(&[
        node("a", "4", "8Gi", json!({})),
        node("b", "4", "8Gi", json!({})),
    ]);
    let owned = |name: &str| {
        let mut p = requesting(name, "1", "1Gi");
        p.owner = Some(short_id("rs-uid"));
        p
    };
    s.place("x1", "a", Arc::new(owned("x1")), false);
    let n = s.node("a").expect("node");
    assert_eq!(score::least_allocated(&requesting("p", "1", "1Gi"), n), 62);
    assert_eq!(score::owner_count(&owned("x2"), n), 1);
    assert_eq!((score::spread(1, 1), score::spread(0, 1)), (0, 100));
    let placed = schedule(&s, &owned("x2")).expect("fits");
    assert_eq!(placed.node.as_ref(), "b");
    let b = placed.scores.iter().find(|x| x.node.as_ref() == "b");
    assert_eq!(b.map(|x| (x.spread, x.least_allocated)), Some((100, 81)));
}

#[test]
fn feasible_search_is_bounded_on_large_clusters() {
    assert_eq!(feasible_nodes_to_find(3), 3);
    assert_eq!(feasible_nodes_to_find(1000), 420);
    // 150 nodes: 49% is 73, raised to the floor of 100.
    assert_eq!(feasible_nodes_to_find(150), 100);
    assert_eq!(feasible_nodes_to_find(10_000), 500);
}

#[test]
fn queue_orders_by_priority_then_image_size_then_age() {
    let mut prio = Priorities::default();
    let pc: k8s_openapi::api::scheduling::v1::PriorityClass = serde_json::from_value(
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "high"}, "value": 1000}),
    )
    .expect("pc");
    prio.upsert(&pc);
    let mut s = Snapshot::default();
    s.upsert_image(image(
        "sha256:big",
        "docker.io/library/big:1",
        &[("l1", 500_000_000)],
        &[],
    ));
    let mut small = image("sha256:small", "docker.io/library/small:1", &[], &[]);
    small.size = 0;
    small.size_mb_label = Some(14.6);
    s.upsert_image(small);
    let with = |name: &str, img: &str, extra: Value| {
        let mut p = json!({"spec": {"containers": [{"name": "c", "image": img}]}});
        merge(&mut p, extra);
        pod(name, p)
    };
    let pods = [
        ("d/unknown", with("unknown", "nowhere:1", json!({}))),
        ("d/big", with("big", "big:1", json!({}))),
        ("d/small", with("small", "small:1", json!({}))),
        (
            "d/urgent-big",
            with(
                "urgent-big",
                "big:1",
                json!({"spec": {"priorityClassName": "high"}}),
            ),
        ),
        (
            "d/explicit",
            with("explicit", "big:1", json!({"spec": {"priority": 5}})),
        ),
    ];
    let order = queue::order(pods.iter().map(|(k, p)| (*k, p)), &prio, &s.catalog);
    assert_eq!(
        order,
        [
            "d/urgent-big",
            "d/explicit",
            "d/small",
            "d/big",
            "d/unknown"
        ]
    );
    assert_eq!(queue::image_bytes(&pods[2].1, &s.catalog), Some(14_600_000));
}
