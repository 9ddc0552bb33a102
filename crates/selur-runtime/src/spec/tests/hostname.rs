//! Pod hostnames cut as the kubelet cuts them (`truncatePodHostnameIfNeeded`).

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::super::{build_spec, pod_hostname, truncate_hostname};
use super::{distroless, input};

fn named(name: &str, hostname: Option<&str>) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "x", "command": ["/app"]}]});
    if let Some(h) = hostname {
        spec["hostname"] = json!(h);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "prod", "uid": "u"},
        "spec": spec,
    }))
    .expect("test pod")
}

#[test]
fn short_names_stay_as_they_are() {
    assert_eq!(pod_hostname(&named("web", None)), "web");
    let exactly = "a".repeat(63);
    assert_eq!(pod_hostname(&named(&exactly, None)), exactly);
}

#[test]
fn long_names_are_cut_to_63() {
    let name = "a".repeat(100);
    assert_eq!(pod_hostname(&named(&name, None)), "a".repeat(63));
    let name = format!("{}-tail", "b".repeat(70));
    assert_eq!(pod_hostname(&named(&name, None)).len(), 63);
}

#[test]
fn trailing_dashes_and_dots_after_the_cut_go() {
    // Characters 61..63 are '-', '.', '-': all trimmed after the cut.
    let name = format!("{}-.-rest-of-a-long-name", "x".repeat(60));
    assert_eq!(pod_hostname(&named(&name, None)), "x".repeat(60));
    // Not trimmed when no cut is needed (Kubernetes only trims after cutting).
    assert_eq!(truncate_hostname("short-"), "short-");
}

#[test]
fn spec_hostname_wins_over_the_name() {
    let name = "n".repeat(100);
    assert_eq!(pod_hostname(&named(&name, Some("db-0"))), "db-0");
    assert_eq!(pod_hostname(&named("web", Some(""))), "web");
}

#[test]
fn the_runtime_spec_and_hostname_env_use_the_cut_name() {
    let name = format!("{}-{}", "w".repeat(62), "z".repeat(37));
    assert_eq!(name.len(), 100);
    let pod = named(&name, None);
    let img = distroless();
    let mut inp = input(&pod, &img);
    // What the agent passes today: the pod's name.
    inp.hostname = name.clone();
    let spec = build_spec(&inp).expect("spec");
    let want = "w".repeat(62);
    assert_eq!(spec.hostname().as_deref(), Some(want.as_str()));
    let env = spec
        .process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default();
    assert!(env.contains(&format!("HOSTNAME={want}")), "{env:?}");
    // spec.hostname is honoured too.
    let pod = named(&name, Some("db-0"));
    let mut inp = input(&pod, &img);
    inp.hostname = String::new();
    assert_eq!(
        build_spec(&inp).expect("spec").hostname().as_deref(),
        Some("db-0")
    );
}
