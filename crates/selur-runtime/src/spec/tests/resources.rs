//! QoS classes, cgroup resources and sysctls.

use std::collections::HashMap;

use oci_spec::runtime::{LinuxResources, Spec};
use serde_json::{json, Value};

use super::super::{build_spec, qos_class, QosClass, DEFAULT_PIDS_LIMIT};
use super::{build, distroless, input, one, pod, spec};

fn resources(s: &Spec) -> &LinuxResources {
    s.linux().as_ref().unwrap().resources().as_ref().unwrap()
}

fn with_resources(res: Value) -> Spec {
    spec(
        &one(json!({"name": "web", "image": "x", "resources": res})),
        &distroless(),
    )
}

/// The container of the seed's Example 1 (a stateless web service).
fn example_1() -> Value {
    json!({
        "name": "web",
        "image": "ghcr.io/hyperpolymath/lago-grey:minimal",
        "command": ["/usr/bin/web-server"],
        "ports": [{"containerPort": 8080}],
        "resources": {
            "requests": {"memory": "64Mi", "cpu": "100m"},
            "limits": {"memory": "128Mi", "cpu": "200m"},
        },
    })
}

#[test]
fn example_1_cpu_and_memory() {
    let s = spec(&one(example_1()), &distroless());
    let r = resources(&s);
    let cpu = r.cpu().as_ref().unwrap();
    assert_eq!(cpu.shares(), Some(102));
    assert_eq!(cpu.quota(), Some(20_000));
    assert_eq!(cpu.period(), Some(100_000));
    assert_eq!(r.memory().as_ref().unwrap().limit(), Some(134_217_728));
    assert_eq!(r.pids().as_ref().unwrap().limit(), DEFAULT_PIDS_LIMIT);
    assert_eq!(qos_class(&one(example_1())), QosClass::Burstable);
}

#[test]
fn no_resources_gives_minimum_shares_and_no_limits() {
    let s = with_resources(json!({}));
    let r = resources(&s);
    let cpu = r.cpu().as_ref().unwrap();
    assert_eq!(cpu.shares(), Some(2));
    assert_eq!(cpu.quota(), None);
    assert_eq!(cpu.period(), None);
    assert!(r.memory().is_none());
    // Devices: deny everything; the runtime adds the standard ones.
    let devices = r.devices().clone().unwrap();
    assert_eq!(devices.len(), 1);
    assert!(!devices[0].allow());
    assert_eq!(devices[0].access().as_deref(), Some("rwm"));
}

#[test]
fn cpu_shares_and_quota_edge_cases() {
    let cpu = |res: Value| {
        let s = with_resources(res);
        let c = resources(&s).cpu().clone().unwrap();
        (c.shares(), c.quota())
    };
    // A limit without a request: shares from the limit.
    assert_eq!(
        cpu(json!({"limits": {"cpu": "500m"}})),
        (Some(512), Some(50_000))
    );
    // Tiny values hit the floors (2 shares, 1ms quota).
    assert_eq!(
        cpu(json!({"requests": {"cpu": "1m"}, "limits": {"cpu": "1m"}})),
        (Some(2), Some(1_000))
    );
    // Whole CPUs.
    assert_eq!(
        cpu(json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1.5"}})),
        (Some(2048), Some(150_000))
    );
    // Shares are capped.
    assert_eq!(
        cpu(json!({"requests": {"cpu": "1000"}})),
        (Some(262_144), None)
    );
}

#[test]
fn memory_limit_rounds_up_to_bytes() {
    let s = with_resources(json!({"limits": {"memory": "1G"}}));
    assert_eq!(
        resources(&s).memory().as_ref().unwrap().limit(),
        Some(1_000_000_000)
    );
    let s = with_resources(json!({"limits": {"memory": "1.5Ki"}}));
    assert_eq!(resources(&s).memory().as_ref().unwrap().limit(), Some(1536));
}

#[test]
fn bad_quantities_name_the_field() {
    let p = one(json!({"name": "web", "image": "x", "resources": {"limits": {"cpu": "lots"}}}));
    let err = build(&p, &distroless()).unwrap_err();
    assert_eq!(err.field(), "spec.containers[0].resources.limits[cpu]");
    let p = one(json!({"name": "web", "image": "x", "resources": {"requests": {"memory": "-1"}}}));
    // Requests for memory are not used for cgroups, so they are not checked here.
    assert!(build(&p, &distroless()).is_ok());
    let p = one(json!({"name": "web", "image": "x", "resources": {"limits": {"memory": "-1"}}}));
    let err = build(&p, &distroless()).unwrap_err();
    assert_eq!(err.field(), "spec.containers[0].resources.limits[memory]");
}

#[test]
fn pids_limit_default_custom_and_unlimited() {
    let p = one(json!({"name": "web", "image": "x"}));
    let img = distroless();
    let mut inp = input(&p, &img);
    inp.pids_limit = Some(64);
    let s = build_spec(&inp).unwrap();
    assert_eq!(resources(&s).pids().as_ref().unwrap().limit(), 64);
    inp.pids_limit = Some(0);
    let s = build_spec(&inp).unwrap();
    assert!(resources(&s).pids().is_none());
}

fn qos(containers: Value, init: Value) -> QosClass {
    let mut spec = json!({"containers": containers});
    if !init.is_null() {
        spec["initContainers"] = init;
    }
    qos_class(&pod(spec))
}

fn c(name: &str, res: Value) -> Value {
    json!({"name": name, "image": "x", "resources": res})
}

#[test]
fn qos_classes() {
    let equal = json!({"requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "100m", "memory": "64Mi"}});
    let n = Value::Null;

    assert_eq!(
        qos(json!([c("a", json!({}))]), n.clone()),
        QosClass::BestEffort
    );
    assert_eq!(
        qos(json!([{"name": "a", "image": "x"}]), n.clone()),
        QosClass::BestEffort
    );
    assert_eq!(
        qos(json!([c("a", equal.clone())]), n.clone()),
        QosClass::Guaranteed
    );
    assert_eq!(
        qos(
            json!([c("a", equal.clone()), c("b", equal.clone())]),
            json!([c("i", equal.clone())])
        ),
        QosClass::Guaranteed
    );
    // Limits alone default the requests: still Guaranteed.
    assert_eq!(
        qos(
            json!([c("a", json!({"limits": {"cpu": "1", "memory": "1Gi"}}))]),
            n.clone()
        ),
        QosClass::Guaranteed
    );
    // Requests below limits.
    assert_eq!(
        qos(
            json!([c(
                "a",
                json!({
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "200m", "memory": "64Mi"}})
            )]),
            n.clone()
        ),
        QosClass::Burstable
    );
    // Requests only.
    assert_eq!(
        qos(
            json!([c("a", json!({"requests": {"cpu": "100m"}}))]),
            n.clone()
        ),
        QosClass::Burstable
    );
    // Only a memory limit: cpu is not limited.
    assert_eq!(
        qos(
            json!([c("a", json!({"limits": {"memory": "1Gi"}}))]),
            n.clone()
        ),
        QosClass::Burstable
    );
    // One container without limits makes the pod Burstable.
    assert_eq!(
        qos(json!([c("a", equal.clone()), c("b", json!({}))]), n.clone()),
        QosClass::Burstable
    );
    // Init containers count.
    assert_eq!(
        qos(json!([c("a", equal.clone())]), json!([c("i", json!({}))])),
        QosClass::Burstable
    );
    assert_eq!(
        qos(
            json!([c("a", json!({}))]),
            json!([c("i", json!({"requests": {"memory": "1Mi"}}))])
        ),
        QosClass::Burstable
    );
    // Resources other than cpu and memory do not count.
    assert_eq!(
        qos(
            json!([c("a", json!({"limits": {"ephemeral-storage": "1Gi"}}))]),
            n.clone()
        ),
        QosClass::BestEffort
    );
    // Zero quantities count as unset.
    assert_eq!(
        qos(json!([c("a", json!({"requests": {"cpu": "0"}}))]), n),
        QosClass::BestEffort
    );
    assert_eq!(QosClass::Burstable.to_string(), "Burstable");
}

fn sysctls(list: Value) -> Result<HashMap<String, String>, String> {
    let p = pod(json!({"securityContext": {"sysctls": list},
        "containers": [{"name": "web", "image": "x"}]}));
    build(&p, &distroless())
        .map(|s| {
            s.linux()
                .as_ref()
                .unwrap()
                .sysctl()
                .clone()
                .unwrap_or_default()
        })
        .map_err(|e| e.to_string())
}

#[test]
fn sysctls_allow_namespaced_safe_ones_only() {
    let got = sysctls(json!([
        {"name": "kernel.shm_rmid_forced", "value": "1"},
        {"name": "net.ipv4.ip_local_port_range", "value": "1024 65000"},
        {"name": "net/ipv4/ip_unprivileged_port_start", "value": "0"},
        {"name": "net/ipv4/conf/eno2.100/rp_filter", "value": "1"},
        {"name": "net.ipv6.conf.all.disable_ipv6", "value": "1"},
    ]))
    .unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got["net.ipv4.ip_unprivileged_port_start"], "0");
    assert_eq!(got["net.ipv4.conf.eno2/100.rp_filter"], "1");
    assert_eq!(got["kernel.shm_rmid_forced"], "1");

    let err = sysctls(json!([
        {"name": "net.ipv4.tcp_syncookies", "value": "1"},
        {"name": "kernel.panic", "value": "1"},
    ]))
    .unwrap_err();
    assert!(
        err.starts_with("spec.securityContext.sysctls[1].name: Forbidden:"),
        "{err}"
    );
    assert!(sysctls(json!([{"name": "vm.overcommit_memory", "value": "1"}])).is_err());
}

#[test]
fn pod_limits_sum_only_when_every_container_limits() {
    use crate::spec::pod_limits;
    let both = pod(json!({"containers": [
        {"name": "a", "image": "x", "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}},
        {"name": "b", "image": "x", "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "32Mi", "cpu": "250m"}}},
    ]}));
    let l = pod_limits(&both, 1024);
    assert_eq!(l.memory, Some(96 << 20));
    assert_eq!(l.cpu_quota, Some(75_000));
    assert_eq!(l.cpu_shares, 768);
    assert_eq!(l.pids, Some(1024));
    let partial = pod(json!({"containers": [
        {"name": "a", "image": "x", "resources": {"limits": {"memory": "64Mi"}}},
        {"name": "b", "image": "x"},
    ]}));
    let l = pod_limits(&partial, 0);
    assert_eq!(l.memory, None);
    assert_eq!(l.cpu_quota, None);
    assert_eq!(l.cpu_shares, 2);
    assert_eq!(l.pids, None);
}
