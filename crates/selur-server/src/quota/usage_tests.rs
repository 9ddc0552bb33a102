use super::*;
use selur_api::kinds::by_cli_name;
use serde_json::json;

fn pods() -> &'static ResourceKind {
    by_cli_name("pods").expect("pods")
}

fn pod() -> Value {
    json!({"spec": {
        "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "2"}}}],
        "containers": [
            {"name": "web", "resources": {"requests": {"cpu": "500m", "memory": "64Mi"},
                                          "limits": {"cpu": "1", "memory": "128Mi"}}},
            {"name": "side", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"},
                                           "limits": {"cpu": "1", "memory": "128Mi"}}}]}})
}

#[test]
fn a_pod_costs_its_effective_requests_and_limits() {
    let u = usage(pods(), &pod());
    assert_eq!(
        pretty(&u),
        "count/pods=1,cpu=2,limits.cpu=2,limits.memory=256Mi,memory=128Mi,pods=1,requests.cpu=2,requests.memory=128Mi"
    );
}

#[test]
fn a_finished_pod_costs_nothing() {
    let mut p = pod();
    p["status"] = json!({"phase": "Succeeded"});
    assert!(usage(pods(), &p).is_empty());
}

#[test]
fn other_kinds_cost_one_count() {
    let d = by_cli_name("deployments").expect("deployments");
    let u = usage(d, &json!({}));
    assert_eq!(pretty(&u), "count/deployments.apps=1");
    assert_eq!(kind_of_resource("count/deployments.apps"), Some(d));
    assert_eq!(kind_of_resource("limits.cpu"), Some(pods()));
    assert_eq!(
        kind_of_resource("services").map(|k| k.plural),
        Some("services")
    );
    assert_eq!(kind_of_resource("nonsense"), None);
}

#[test]
fn a_cpu_or_memory_quota_needs_every_container_to_state_it() {
    let tracked: Vec<String> = ["pods", "limits.cpu", "limits.memory", "requests.cpu"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let bare = json!({"spec": {"containers": [{"name": "web"}]}});
    assert_eq!(
        pod_constraints(&tracked, &bare),
        Err(
            "must specify limits.cpu for: web; limits.memory for: web; requests.cpu for: web"
                .into()
        )
    );
    assert_eq!(pod_constraints(&tracked, &pod()).map_err(|_| ()), Err(()));
    let ok = json!({"spec": {"containers": [{"name": "web", "resources": {
        "requests": {"cpu": "1"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]}});
    assert_eq!(pod_constraints(&tracked, &ok), Ok(()));
    assert_eq!(pod_constraints(&["pods".to_string()], &bare), Ok(()));
}

#[test]
fn exceeded_names_only_what_goes_over() {
    let hard = parse_list(Some(&json!({"pods": "100", "requests.cpu": "40"})));
    let used = parse_list(Some(&json!({"pods": "100", "requests.cpu": "1"})));
    let u = usage(pods(), &pod());
    let over = exceeded(&hard, &used, &u);
    assert_eq!(over, vec!["pods".to_string()]);
    assert_eq!(pretty(&mask(&u, &over)), "pods=1");
    assert_eq!(pretty(&mask(&used, &over)), "pods=100");
    assert_eq!(to_json(&mask(&hard, &over)), json!({"pods": "100"}));
}
