//! Kubernetes' defaulting (k8s.io/kubernetes/pkg/apis/*/v1/defaults.go) for
//! the kinds Selur serves, applied after decoding and before validation.
//! Idempotent: applying twice is applying once. Selur-specific: Services
//! default to IPv6 SingleStack, and every kind with a `status` gets an empty
//! one so clients always see the field.

use k8s_openapi::api::apps::v1::{
    DaemonSetSpec, DaemonSetUpdateStrategy, DeploymentSpec, DeploymentStrategy,
    RollingUpdateDaemonSet, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscalerSpec,
};
use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Probe, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use crate::types::StrategyOptions;
use crate::TypedObject;

fn set<T>(field: &mut Option<T>, value: T) {
    if field.is_none() {
        *field = Some(value);
    }
}

fn set_str(field: &mut Option<String>, value: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(value.to_string());
    }
}

/// `Always` for `:latest` or untagged images without a digest, else `IfNotPresent`.
pub fn image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn probe(p: &mut Option<Probe>) {
    if let Some(p) = p {
        set(&mut p.timeout_seconds, 1);
        set(&mut p.period_seconds, 10);
        set(&mut p.success_threshold, 1);
        set(&mut p.failure_threshold, 3);
        if let Some(h) = &mut p.http_get {
            set_str(&mut h.scheme, "HTTP");
        }
    }
}

fn container(c: &mut Container) {
    let policy = image_pull_policy(c.image.as_deref().unwrap_or(""));
    set_str(&mut c.image_pull_policy, policy);
    set_str(&mut c.termination_message_path, "/dev/termination-log");
    set_str(&mut c.termination_message_policy, "File");
    for p in c.ports.iter_mut().flatten() {
        set_str(&mut p.protocol, "TCP");
    }
    probe(&mut c.liveness_probe);
    probe(&mut c.readiness_probe);
    probe(&mut c.startup_probe);
    for e in c.env.iter_mut().flatten() {
        if let Some(f) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            set_str(&mut f.api_version, "v1");
        }
    }
    // Limits without requests: requests default to the limits.
    if let Some(r) = &mut c.resources {
        if let Some(limits) = r.limits.clone() {
            let requests = r.requests.get_or_insert_with(Default::default);
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
}

/// Defaults of a pod spec (pods and every pod template).
pub fn pod_spec(s: &mut PodSpec) {
    set_str(&mut s.restart_policy, "Always");
    set_str(&mut s.dns_policy, "ClusterFirst");
    set_str(&mut s.scheduler_name, "default-scheduler");
    set(&mut s.termination_grace_period_seconds, 30);
    set(&mut s.security_context, Default::default());
    set(&mut s.enable_service_links, true);
    for c in s.containers.iter_mut() {
        container(c);
    }
    for c in s.init_containers.iter_mut().flatten() {
        container(c);
    }
    for v in s.volumes.iter_mut().flatten() {
        if let Some(h) = &mut v.host_path {
            set(&mut h.type_, String::new());
        }
        if let Some(sec) = &mut v.secret {
            set(&mut sec.default_mode, 0o644);
        }
        if let Some(cm) = &mut v.config_map {
            set(&mut cm.default_mode, 0o644);
        }
    }
}

fn template(t: &mut PodTemplateSpec) {
    pod_spec(t.spec.get_or_insert_with(Default::default));
}

fn deployment(s: &mut DeploymentSpec) {
    set(&mut s.replicas, 1);
    let strategy = s.strategy.get_or_insert_with(DeploymentStrategy::default);
    set_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        set(&mut ru.max_surge, IntOrString::String("25%".into()));
        set(&mut ru.max_unavailable, IntOrString::String("25%".into()));
    }
    set(&mut s.revision_history_limit, 10);
    set(&mut s.progress_deadline_seconds, 600);
    template(&mut s.template);
}

fn daemonset(s: &mut DaemonSetSpec) {
    let us = s
        .update_strategy
        .get_or_insert_with(DaemonSetUpdateStrategy::default);
    set_str(&mut us.type_, "RollingUpdate");
    if us.type_.as_deref() == Some("RollingUpdate") {
        let ru = us
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        set(&mut ru.max_unavailable, IntOrString::Int(1));
        set(&mut ru.max_surge, IntOrString::Int(0));
    }
    set(&mut s.revision_history_limit, 10);
    template(&mut s.template);
}

fn job(s: &mut JobSpec) {
    set(&mut s.parallelism, 1);
    set(&mut s.backoff_limit, 6);
    set_str(&mut s.completion_mode, "NonIndexed");
    set(&mut s.suspend, false);
    template(&mut s.template);
}

fn service(s: &mut ServiceSpec) {
    set_str(&mut s.type_, "ClusterIP");
    set_str(&mut s.session_affinity, "None");
    if s.type_.as_deref() != Some("ExternalName") {
        set(&mut s.ip_families, vec!["IPv6".to_string()]);
        set_str(&mut s.ip_family_policy, "SingleStack");
        set_str(&mut s.internal_traffic_policy, "Cluster");
    }
    for p in s.ports.iter_mut().flatten() {
        set_str(&mut p.protocol, "TCP");
        set(&mut p.target_port, IntOrString::Int(p.port));
    }
    if s.session_affinity.as_deref() == Some("ClientIP") {
        // Kubernetes' default sticky time: 3 hours.
        let c = s
            .session_affinity_config
            .get_or_insert_with(Default::default);
        let ip = c.client_ip.get_or_insert_with(Default::default);
        set(&mut ip.timeout_seconds, 10800);
    }
}

fn scaling_rules(
    rules: &mut Option<HPAScalingRules>,
    window: i32,
    policies: Vec<HPAScalingPolicy>,
) {
    let r = rules.get_or_insert_with(HPAScalingRules::default);
    set(&mut r.stabilization_window_seconds, window);
    set_str(&mut r.select_policy, "Max");
    if r.policies.as_ref().is_none_or(Vec::is_empty) {
        r.policies = Some(policies);
    }
}

fn policy(type_: &str, value: i32) -> HPAScalingPolicy {
    HPAScalingPolicy {
        type_: type_.to_string(),
        value,
        period_seconds: 15,
    }
}

fn hpa(s: &mut HorizontalPodAutoscalerSpec) {
    set(&mut s.min_replicas, 1);
    // Behavior is filled in only when given, as Kubernetes does.
    if let Some(b) = &mut s.behavior {
        scaling_rules(
            &mut b.scale_up,
            0,
            vec![policy("Pods", 4), policy("Percent", 100)],
        );
        scaling_rules(&mut b.scale_down, 300, vec![policy("Percent", 100)]);
    }
}

fn run_as_any(s: &mut Option<StrategyOptions>) {
    set(
        s,
        StrategyOptions {
            rule: "RunAsAny".into(),
            ..Default::default()
        },
    );
}

/// Apply every default that applies to `obj`.
pub fn apply(obj: &mut TypedObject) {
    match obj {
        TypedObject::Pod(p) => {
            pod_spec(p.spec.get_or_insert_with(Default::default));
            set(&mut p.status, Default::default());
        }
        TypedObject::Deployment(d) => {
            deployment(d.spec.get_or_insert_with(Default::default));
            set(&mut d.status, Default::default());
        }
        TypedObject::ReplicaSet(r) => {
            let s = r.spec.get_or_insert_with(Default::default);
            set(&mut s.replicas, 1);
            if let Some(t) = &mut s.template {
                template(t);
            }
            set(&mut r.status, Default::default());
        }
        TypedObject::DaemonSet(d) => {
            daemonset(d.spec.get_or_insert_with(Default::default));
            set(&mut d.status, Default::default());
        }
        TypedObject::Job(j) => {
            job(j.spec.get_or_insert_with(Default::default));
            set(&mut j.status, Default::default());
        }
        TypedObject::CronJob(c) => {
            let s = c.spec.get_or_insert_with(Default::default);
            set_str(&mut s.concurrency_policy, "Allow");
            set(&mut s.suspend, false);
            set(&mut s.successful_jobs_history_limit, 3);
            set(&mut s.failed_jobs_history_limit, 1);
            job(s.job_template.spec.get_or_insert_with(Default::default));
            set(&mut c.status, Default::default());
        }
        TypedObject::Service(s) => {
            service(s.spec.get_or_insert_with(Default::default));
            set(&mut s.status, Default::default());
        }
        TypedObject::HorizontalPodAutoscaler(h) => {
            hpa(h.spec.get_or_insert_with(Default::default));
            set(&mut h.status, Default::default());
        }
        TypedObject::Namespace(n) => {
            let spec = n.spec.get_or_insert_with(Default::default);
            set(&mut spec.finalizers, vec!["kubernetes".to_string()]);
            let st = n.status.get_or_insert_with(Default::default);
            set_str(&mut st.phase, "Active");
        }
        TypedObject::Node(n) => set(&mut n.status, Default::default()),
        TypedObject::ResourceQuota(q) => set(&mut q.status, Default::default()),
        TypedObject::Secret(s) => set_str(&mut s.type_, "Opaque"),
        TypedObject::PodSecurityPolicy(p) => {
            run_as_any(&mut p.spec.run_as_user);
            run_as_any(&mut p.spec.se_linux);
            run_as_any(&mut p.spec.supplemental_groups);
            run_as_any(&mut p.spec.fs_group);
            set(&mut p.status, json!({}));
        }
        TypedObject::VirtualService(v) => set(&mut v.status, json!({})),
        TypedObject::ServiceMonitor(m) => set(&mut m.status, json!({})),
        TypedObject::Image(i) => set(&mut i.status, Default::default()),
        TypedObject::Endpoints(_)
        | TypedObject::Event(_)
        | TypedObject::LimitRange(_)
        | TypedObject::ConfigMap(_)
        | TypedObject::ServiceAccount(_)
        | TypedObject::Lease(_)
        | TypedObject::PriorityClass(_)
        | TypedObject::EndpointSlice(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, parse_documents};

    fn seed() -> Vec<TypedObject> {
        let text = include_str!("../../../examples/seed.yaml");
        parse_documents(text)
            .unwrap()
            .into_iter()
            .map(|v| decode(v).unwrap().1)
            .collect()
    }

    #[test]
    fn pull_policy_from_tag() {
        assert_eq!(
            image_pull_policy("ghcr.io/hyperpolymath/lago-grey:minimal"),
            "IfNotPresent"
        );
        assert_eq!(
            image_pull_policy("ghcr.io/hyperpolymath/svalinn:latest"),
            "Always"
        );
        assert_eq!(image_pull_policy("busybox"), "Always");
        assert_eq!(image_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(image_pull_policy("x@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn seed_defaults_are_kubernetes_like_and_idempotent() {
        for mut obj in seed() {
            apply(&mut obj);
            let once = obj.clone();
            apply(&mut obj);
            assert_eq!(once, obj, "idempotent for {}", obj.kind());
            let v = obj.to_value().unwrap();
            assert!(v.get("status").is_some(), "{} has status", obj.kind());
            match obj.kind() {
                "Deployment" => {
                    assert_eq!(v["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
                    assert_eq!(v["spec"]["template"]["spec"]["restartPolicy"], "Always");
                    let c = &v["spec"]["template"]["spec"]["containers"][0];
                    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
                    assert_eq!(c["ports"][0]["protocol"], "TCP");
                    assert_eq!(c["readinessProbe"]["timeoutSeconds"], 1);
                    assert_eq!(c["readinessProbe"]["periodSeconds"], 5, "user value kept");
                }
                "Pod" => {
                    assert_eq!(v["spec"]["containers"][2]["imagePullPolicy"], "Always");
                }
                "Job" => {
                    assert_eq!(v["spec"]["backoffLimit"], 6);
                    assert!(v["spec"].get("completions").is_none());
                    assert_eq!(v["spec"]["template"]["spec"]["restartPolicy"], "Never");
                }
                "CronJob" => {
                    assert_eq!(v["spec"]["concurrencyPolicy"], "Allow");
                    assert_eq!(
                        v["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"],
                        "OnFailure"
                    );
                }
                "HorizontalPodAutoscaler" => {
                    let up = &v["spec"]["behavior"]["scaleUp"];
                    assert_eq!(
                        up["policies"].as_array().unwrap().len(),
                        1,
                        "user policies kept"
                    );
                    assert_eq!(up["selectPolicy"], "Max");
                    assert_eq!(
                        v["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
                        300
                    );
                }
                "PodSecurityPolicy" => {
                    assert_eq!(v["spec"]["runAsUser"]["rule"], "MustRunAsNonRoot");
                    assert_eq!(v["spec"]["fsGroup"]["rule"], "RunAsAny");
                }
                _ => {}
            }
        }
    }

    #[test]
    fn services_default_to_ipv6_single_stack() {
        let (_, mut s) = decode(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80}]}}),
        )
        .unwrap();
        apply(&mut s);
        let v = s.to_value().unwrap();
        assert_eq!(v["spec"]["ipFamilies"], json!(["IPv6"]));
        assert_eq!(v["spec"]["ipFamilyPolicy"], "SingleStack");
        assert_eq!(v["spec"]["ports"][0]["targetPort"], 80);
        assert!(v["spec"].get("sessionAffinityConfig").is_none());
    }

    #[test]
    fn client_ip_affinity_sticks_for_three_hours_by_default() {
        let (_, mut s) = decode(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80}], "sessionAffinity": "ClientIP"}}),
        )
        .unwrap();
        apply(&mut s);
        let v = s.to_value().unwrap();
        assert_eq!(
            v["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10800
        );
    }
}
