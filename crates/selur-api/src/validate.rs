//! Field-path validation in Kubernetes' wording: [`validate`] at create time and
//! [`validate_update`] (the same checks plus immutable fields) at update time.
//!
//! Objects arrive here after defaults were applied and after the server set
//! `metadata.name` (from `generateName`) and `metadata.namespace`. Every problem
//! is collected; nothing here panics. This file holds the entry points and
//! metadata checks; the submodules, each small: `names` (DNS-1123, RFC 1035,
//! qualified names, IANA service names), `fields` (quantities, bounds, enums,
//! ports, selector vs template), `pod` with `probes`, `volumes` and
//! `pod_update`, `workloads` (Deployment, ReplicaSet, DaemonSet, Job), `cron`
//! (CronJob), `other` (Service, quotas, PriorityClass, ConfigMap, Secret),
//! `hpa`, and `custom` (Selur's PodSecurityPolicy, VirtualService, ServiceMonitor).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::{FieldError, TypedObject};

mod cron;
mod custom;
mod fields;
mod hpa;
mod names;
mod other;
mod pod;
mod pod_update;
mod probes;
mod volumes;
mod workloads;

use fields::{
    in_range, non_negative, non_negative_quantity, one_of, port_num_or_name, positive, quantity,
    quantity_map, selector_matches_template,
};
use names::{
    dns1123_label, dns1123_subdomain, iana_svc_name, label_value, qualified_name, rfc1035_label,
};

/// Create-time validation; every problem, with Kubernetes field paths.
pub fn validate(obj: &TypedObject) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let format = match obj {
        TypedObject::Namespace(_) => NameFormat::Dns1123Label,
        TypedObject::Service(_) => NameFormat::Rfc1035Label,
        _ => NameFormat::Dns1123Subdomain,
    };
    validate_object_meta(obj.metadata(), format, &mut errs);
    match obj {
        TypedObject::Pod(p) => match &p.spec {
            Some(spec) => pod::validate_pod_spec(spec, "spec", &mut errs),
            None => errs.push(FieldError::required("spec", "")),
        },
        TypedObject::Deployment(d) => workloads::validate_deployment(d, &mut errs),
        TypedObject::ReplicaSet(r) => workloads::validate_replica_set(r, &mut errs),
        TypedObject::DaemonSet(d) => workloads::validate_daemon_set(d, &mut errs),
        TypedObject::Job(j) => match &j.spec {
            Some(spec) => workloads::validate_job_spec(spec, "spec", &mut errs),
            None => errs.push(FieldError::required("spec", "")),
        },
        TypedObject::CronJob(c) => cron::validate_cron_job(c, &mut errs),
        other => other::validate_other(other, &mut errs),
    }
    errs
}

/// Update-time: [`validate`] of `new` plus the fields that may not change.
pub fn validate_update(old: &TypedObject, new: &TypedObject) -> Vec<FieldError> {
    let mut errs = validate(new);
    let (om, nm) = (old.metadata(), new.metadata());
    if om.name != nm.name {
        errs.push(immutable(
            "metadata.name",
            &q(nm.name.as_deref().unwrap_or("")),
        ));
    }
    if om.namespace != nm.namespace {
        errs.push(immutable(
            "metadata.namespace",
            &q(nm.namespace.as_deref().unwrap_or("")),
        ));
    }
    match (old, new) {
        (TypedObject::Deployment(o), TypedObject::Deployment(n)) => {
            let sel = |d: &k8s_openapi::api::apps::v1::Deployment| {
                d.spec.as_ref().map(|s| s.selector.clone())
            };
            selector_unchanged(sel(o), sel(n), &mut errs);
        }
        (TypedObject::ReplicaSet(o), TypedObject::ReplicaSet(n)) => {
            let sel = |d: &k8s_openapi::api::apps::v1::ReplicaSet| {
                d.spec.as_ref().map(|s| s.selector.clone())
            };
            selector_unchanged(sel(o), sel(n), &mut errs);
        }
        (TypedObject::DaemonSet(o), TypedObject::DaemonSet(n)) => {
            let sel = |d: &k8s_openapi::api::apps::v1::DaemonSet| {
                d.spec.as_ref().map(|s| s.selector.clone())
            };
            selector_unchanged(sel(o), sel(n), &mut errs);
        }
        (TypedObject::Job(o), TypedObject::Job(n)) => {
            let sel = |j: &k8s_openapi::api::batch::v1::Job| {
                j.spec.as_ref().and_then(|s| s.selector.clone())
            };
            selector_unchanged(sel(o), sel(n), &mut errs);
        }
        (TypedObject::Pod(o), TypedObject::Pod(n)) => {
            if let (Some(os), Some(ns)) = (&o.spec, &n.spec) {
                pod_update::validate_pod_spec_update(os, ns, &mut errs);
            }
        }
        (TypedObject::Service(o), TypedObject::Service(n)) => {
            other::validate_service_update(o, n, &mut errs)
        }
        _ => {}
    }
    errs
}

fn selector_unchanged(
    old: Option<LabelSelector>,
    new: Option<LabelSelector>,
    errs: &mut Vec<FieldError>,
) {
    if old != new {
        let shown = new.as_ref().map(selector_string).unwrap_or_default();
        errs.push(immutable("spec.selector", &shown));
    }
}

/// `field is immutable` at `path` showing `value`.
fn immutable(path: &str, value: &str) -> FieldError {
    FieldError::invalid(path, value, "field is immutable")
}

/// Kubernetes shows a selector as `v1.LabelSelector{MatchLabels:map[string]string{"app":"web"}, ...}`;
/// Selur shows the shorter `{"matchLabels":{"app":"web"}}` JSON form.
fn selector_string(sel: &LabelSelector) -> String {
    serde_json::to_string(sel).unwrap_or_default()
}

/// A string value as Kubernetes shows it in messages: double-quoted.
fn q(s: &str) -> String {
    format!("{s:?}")
}

/// Which name rule `metadata.name` follows for a kind.
#[derive(Clone, Copy)]
enum NameFormat {
    Dns1123Subdomain,
    Dns1123Label,
    Rfc1035Label,
}

/// Total size allowed for all annotations (keys plus values).
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

fn validate_object_meta(meta: &ObjectMeta, format: NameFormat, errs: &mut Vec<FieldError>) {
    match meta.name.as_deref() {
        None | Some("") => errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => {
            let msgs = match format {
                NameFormat::Dns1123Subdomain => dns1123_subdomain(name),
                NameFormat::Dns1123Label => dns1123_label(name),
                NameFormat::Rfc1035Label => rfc1035_label(name),
            };
            push_msgs("metadata.name", name, msgs, errs);
        }
    }
    if let Some(ns) = meta.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        push_msgs("metadata.namespace", ns, dns1123_label(ns), errs);
    }
    if let Some(labels) = &meta.labels {
        validate_labels(labels, "metadata.labels", errs);
    }
    if let Some(annotations) = &meta.annotations {
        let mut total = 0usize;
        for (k, v) in annotations {
            push_msgs(
                "metadata.annotations",
                k,
                qualified_name(&k.to_lowercase()),
                errs,
            );
            total += k.len() + v.len();
        }
        if total > TOTAL_ANNOTATION_SIZE_LIMIT {
            errs.push(FieldError::invalid(
                "metadata.annotations",
                format!("{total} bytes"),
                format!("Too long: must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"),
            ));
        }
    }
}

/// Label keys (qualified names) and values at `path`.
fn validate_labels(labels: &BTreeMap<String, String>, path: &str, errs: &mut Vec<FieldError>) {
    for (k, v) in labels {
        push_msgs(path, k, qualified_name(k), errs);
        push_msgs(path, v, label_value(v), errs);
    }
}

/// One `Invalid value` error per message, as Kubernetes reports them.
fn push_msgs(path: &str, value: &str, msgs: Vec<String>, errs: &mut Vec<FieldError>) {
    for m in msgs {
        errs.push(FieldError::invalid(path, q(value), m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Decode `v` and apply defaults, as the server does before validating.
    pub(super) fn object(v: Value) -> TypedObject {
        let (_, mut obj) = crate::decode::decode(v).expect("test object decodes");
        crate::defaults::apply(&mut obj);
        obj
    }

    /// The errors of `validate` on `v`, as displayed.
    pub(super) fn errors(v: Value) -> Vec<String> {
        validate(&object(v))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Assert some error contains `needle`.
    pub(super) fn assert_has(errs: &[String], needle: &str) {
        assert!(
            errs.iter().any(|e| e.contains(needle)),
            "no error contains {needle:?}: {errs:#?}"
        );
    }

    /// A minimal valid pod named `name` with one container.
    pub(super) fn pod(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"containers": [{"name": "app", "image": "nginx:1"}]}})
    }

    const SEED: &[(&str, &str)] = &[
        (
            "pod-microservices",
            include_str!("../../../examples/seed/pod-microservices.yaml"),
        ),
        (
            "daemonset-vordr",
            include_str!("../../../examples/seed/daemonset-vordr.yaml"),
        ),
        (
            "hpa-lago-grey-app",
            include_str!("../../../examples/seed/hpa-lago-grey-app.yaml"),
        ),
        (
            "resourcequota-compute",
            include_str!("../../../examples/seed/resourcequota-compute.yaml"),
        ),
        (
            "psp-lago-grey-restricted",
            include_str!("../../../examples/seed/psp-lago-grey-restricted.yaml"),
        ),
        (
            "virtualservice-lago-grey",
            include_str!("../../../examples/seed/virtualservice-lago-grey.yaml"),
        ),
        (
            "servicemonitor-lago-grey",
            include_str!("../../../examples/seed/servicemonitor-lago-grey.yaml"),
        ),
        (
            "deployment-web-service",
            include_str!("../../../examples/seed/deployment-web-service.yaml"),
        ),
        (
            "job-data-processing",
            include_str!("../../../examples/seed/job-data-processing.yaml"),
        ),
        (
            "cronjob-nightly-backup",
            include_str!("../../../examples/seed/cronjob-nightly-backup.yaml"),
        ),
    ];

    #[test]
    fn every_seed_manifest_is_valid() {
        for (name, text) in SEED {
            let docs = crate::decode::parse_documents(text).expect("seed parses");
            assert_eq!(docs.len(), 1, "{name}");
            for doc in docs {
                let mut obj = object(doc);
                obj.metadata_mut().namespace = match obj.kind() {
                    "PodSecurityPolicy" => None,
                    _ => Some("default".into()),
                };
                let errs = validate(&obj);
                assert!(errs.is_empty(), "{name}: {}", crate::error::join(&errs));
                assert!(validate_update(&obj, &obj).is_empty(), "{name} update");
            }
        }
    }

    #[test]
    fn metadata_name_is_required_and_formatted() {
        let mut p = pod("x");
        p["metadata"] = json!({"generateName": "web-"});
        let errs = errors(p);
        assert_eq!(
            errs,
            ["metadata.name: Required value: name or generateName is required"]
        );
        assert_has(
            &errors(pod("Web_1")),
            "metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain",
        );
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1web"},
                         "spec": {"ports": [{"port": 80}]}});
        assert_has(
            &errors(svc),
            "metadata.name: Invalid value: \"1web\": a DNS-1035 label",
        );
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}});
        assert_has(&errors(ns), "a lowercase RFC 1123 label");
    }

    #[test]
    fn pod_names_up_to_253_characters_are_accepted() {
        // The node cuts the hostname to 63 characters; the name may be longer.
        let name = format!("{}-{}", "a".repeat(62), "b".repeat(37));
        assert_eq!(name.len(), 100);
        assert_eq!(errors(pod(&name)), Vec::<String>::new());
        let longest = format!("{}.{}", "a".repeat(63), "b".repeat(189));
        assert_eq!(longest.len(), 253);
        assert_eq!(errors(pod(&longest)), Vec::<String>::new());
        assert_has(&errors(pod(&"a".repeat(254))), "no more than 253");
    }

    #[test]
    fn labels_annotations_and_namespace() {
        let mut p = pod("web");
        p["metadata"]["namespace"] = json!("Bad_NS");
        p["metadata"]["labels"] =
            json!({"example.com/app": "web", "-bad": "ok", "good": "bad value"});
        p["metadata"]["annotations"] = json!({"note": "x".repeat(300 * 1024)});
        let errs = errors(p);
        assert_has(&errs, "metadata.namespace: Invalid value: \"Bad_NS\"");
        assert_has(
            &errs,
            "metadata.labels: Invalid value: \"-bad\": name part must consist",
        );
        assert_has(
            &errs,
            "metadata.labels: Invalid value: \"bad value\": a valid label must be",
        );
        assert_has(
            &errs,
            "metadata.annotations: Invalid value: 307204 bytes: Too long",
        );
        assert_eq!(errs.len(), 4, "{errs:#?}");
    }

    #[test]
    fn update_keeps_name_namespace_and_selectors() {
        let deploy = |app: &str, name: &str| {
            object(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": app}},
                         "template": {"metadata": {"labels": {"app": app}},
                                      "spec": {"containers": [{"name": "c", "image": "i"}]}}}}))
        };
        assert!(validate_update(&deploy("a", "d"), &deploy("a", "d")).is_empty());
        let errs: Vec<String> = validate_update(&deploy("a", "d"), &deploy("b", "e"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_has(
            &errs,
            "metadata.name: Invalid value: \"e\": field is immutable",
        );
        assert_has(
            &errs,
            "spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"b\"}}: field is immutable",
        );
    }
}
