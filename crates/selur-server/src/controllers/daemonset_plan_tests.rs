use super::*;
use serde_json::json;

fn node(name: &str, run: bool) -> NodeView {
    NodeView {
        name: name.into(),
        should_run: run,
        should_continue: run,
    }
}

fn pod(name: &str, node: &str, updated: bool, available: bool) -> PodView {
    PodView {
        name: name.into(),
        node: node.into(),
        updated,
        ready: available,
        available,
        failed: false,
        terminating: false,
    }
}

const ROLL: Strategy = Strategy::RollingUpdate {
    max_unavailable: 1,
    max_surge: 0,
};

#[test]
fn one_pod_per_eligible_node_and_none_elsewhere() {
    let nodes = [node("a", true), node("b", true), node("c", false)];
    let pods = [
        pod("pa", "a", true, true),
        pod("pc", "c", true, true),
        pod("pz", "gone", true, true),
    ];
    let p = plan(&nodes, &pods, ROLL);
    assert_eq!(p.create, vec!["b".to_string()]);
    let mut del = p.delete.clone();
    del.sort();
    assert_eq!(del, vec!["pc".to_string(), "pz".to_string()]);
}

#[test]
fn a_pod_tolerated_only_for_noschedule_stays_but_no_new_one_is_placed() {
    let n = NodeView {
        name: "a".into(),
        should_run: false,
        should_continue: true,
    };
    assert_eq!(
        plan(
            std::slice::from_ref(&n),
            &[pod("pa", "a", true, true)],
            ROLL
        ),
        Plan::default()
    );
    assert_eq!(plan(&[n], &[], ROLL), Plan::default());
}

#[test]
fn rolling_update_replaces_within_max_unavailable() {
    let nodes = [node("a", true), node("b", true), node("c", true)];
    let pods = [
        pod("pa", "a", false, true),
        pod("pb", "b", false, true),
        pod("pc", "c", false, true),
    ];
    let p = plan(&nodes, &pods, ROLL);
    assert_eq!(p.delete.len(), 1, "{p:?}");
    assert!(p.create.is_empty());
    // The replacement is not available yet: nothing more goes.
    let pods = [
        pod("pa2", "a", true, false),
        pod("pb", "b", false, true),
        pod("pc", "c", false, true),
    ];
    assert_eq!(plan(&nodes, &pods, ROLL), Plan::default());
    // Old pods that are unavailable anyway go at once.
    let pods = [pod("pa", "a", false, false), pod("pb", "b", false, false)];
    let p = plan(&nodes[..2], &pods, ROLL);
    assert_eq!(p.delete.len(), 2);
}

#[test]
fn surge_creates_the_new_pod_first_then_removes_the_old() {
    let s = Strategy::RollingUpdate {
        max_unavailable: 0,
        max_surge: 1,
    };
    let nodes = [node("a", true), node("b", true)];
    let old = [pod("pa", "a", false, true), pod("pb", "b", false, true)];
    let p = plan(&nodes, &old, s);
    assert_eq!(p.create.len(), 1);
    assert!(p.delete.is_empty());
    let mid = [
        pod("pa", "a", false, true),
        pod("pa2", "a", true, true),
        pod("pb", "b", false, true),
    ];
    let p = plan(&nodes, &mid, s);
    assert_eq!(p.delete, vec!["pa".to_string()]);
    assert!(p.create.is_empty(), "the surge slot is still taken");
}

#[test]
fn on_delete_leaves_old_pods_alone() {
    let nodes = [node("a", true)];
    let p = plan(&nodes, &[pod("pa", "a", false, true)], Strategy::OnDelete);
    assert_eq!(p, Plan::default());
}

#[test]
fn failed_pods_are_replaced() {
    let mut f = pod("pa", "a", true, false);
    f.failed = true;
    let p = plan(&[node("a", true)], &[f], ROLL);
    assert_eq!(p.delete, vec!["pa".to_string()]);
    assert_eq!(p.create, vec!["a".to_string()]);
}

#[test]
fn percentages_scale_as_kubernetes_rounds_them() {
    assert_eq!(scaled(Some(&json!("25%")), 10, true, 0), 3);
    assert_eq!(scaled(Some(&json!("25%")), 10, false, 0), 2);
    assert_eq!(scaled(Some(&json!(2)), 10, false, 1), 2);
    assert_eq!(scaled(None, 10, false, 1), 1);
}

#[test]
fn a_terminating_pod_is_left_alone_and_blocks_a_new_one_on_its_node() {
    let mut t = pod("pa", "a", true, true);
    t.terminating = true;
    let p = plan(&[node("a", true)], std::slice::from_ref(&t), ROLL);
    assert_eq!(p, Plan::default(), "wait until the old pod is gone");
    // Not even deleted again when its node no longer wants it, or is gone.
    let p = plan(&[node("a", false)], std::slice::from_ref(&t), ROLL);
    assert_eq!(p, Plan::default());
    let p = plan(&[], std::slice::from_ref(&t), ROLL);
    assert_eq!(p, Plan::default());
    // Once it is gone, the node gets a new pod.
    let p = plan(&[node("a", true)], &[], ROLL);
    assert_eq!(p.create, vec!["a".to_string()]);
}
