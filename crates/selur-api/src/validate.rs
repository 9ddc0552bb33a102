//! Field-path validation in Kubernetes' wording: [`validate`] at create time and
//! [`validate_update`] (the same checks plus immutable fields) at update time.
//!
//! Objects arrive here after defaults were applied and after the server set
//! `metadata.name` (from `generateName`) and `metadata.namespace`. Every problem
//! is collected; nothing here panics. This file holds the entry points and the
//! helpers shared by the per-area submodules: [`pod`] (PodSpec), [`workloads`]
//! (Deployment, ReplicaSet, DaemonSet, Job, CronJob) and [`other`] (the rest).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::{FieldError, TypedObject};

mod other;
mod pod;
mod workloads;

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
        TypedObject::CronJob(c) => workloads::validate_cron_job(c, &mut errs),
        other => other::validate_other(other, &mut errs),
    }
    errs
}

/// Update-time: [`validate`] of `new` plus the fields that may not change.
pub fn validate_update(old: &TypedObject, new: &TypedObject) -> Vec<FieldError> {
    let mut errs = validate(new);
    let (om, nm) = (old.metadata(), new.metadata());
    if om.name != nm.name {
        errs.push(immutable("metadata.name", &q(nm.name.as_deref().unwrap_or(""))));
    }
    if om.namespace != nm.namespace {
        errs.push(immutable("metadata.namespace", &q(nm.namespace.as_deref().unwrap_or(""))));
    }
    match (old, new) {
        (TypedObject::Deployment(o), TypedObject::Deployment(n)) => {
            let sel = |d: &k8s_openapi::api::apps::v1::Deployment| d.spec.as_ref().map(|s| s.selector.clone());
            selector_unchanged(sel(o), sel(n), &mut errs);
        }
        (TypedObject::ReplicaSet(o), TypedObject::ReplicaSet(n)) => {
            let sel = |d: &k8s_openapi::api::apps::v1::ReplicaSet| d.spec.as_ref().map(|s| s.selector.clone());
            selector_unchanged(sel(o), sel(n), &mut errs);
        }
        (TypedObject::DaemonSet(o), TypedObject::DaemonSet(n)) => {
            let sel = |d: &k8s_openapi::api::apps::v1::DaemonSet| d.spec.as_ref().map(|s| s.selector.clone());
            selector_unchanged(sel(o), sel(n), &mut errs);
        }
        (TypedObject::Job(o), TypedObject::Job(n)) => {
            let sel = |j: &k8s_openapi::api::batch::v1::Job| j.spec.as_ref().and_then(|s| s.selector.clone());
            selector_unchanged(sel(o), sel(n), &mut errs);
        }
        (TypedObject::Pod(o), TypedObject::Pod(n)) => {
            if let (Some(os), Some(ns)) = (&o.spec, &n.spec) {
                pod::validate_pod_spec_update(os, ns, &mut errs);
            }
        }
        (TypedObject::Service(o), TypedObject::Service(n)) => other::validate_service_update(o, n, &mut errs),
        _ => {}
    }
    errs
}

fn selector_unchanged(old: Option<LabelSelector>, new: Option<LabelSelector>, errs: &mut Vec<FieldError>) {
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
            push_msgs("metadata.annotations", k, qualified_name(&k.to_lowercase()), errs);
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

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const RFC1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn too_long(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn is_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Problems with `s` as a DNS-1123 label (empty when valid).
pub(crate) fn dns1123_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push(too_long(63));
    }
    if !is_label_chars(s) {
        out.push(DNS1123_LABEL_MSG.to_string());
    }
    out
}

/// Problems with `s` as a DNS-1123 subdomain (empty when valid).
pub(crate) fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push(too_long(253));
    }
    if !s.split('.').all(is_label_chars) {
        out.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    out
}

/// Problems with `s` as an RFC 1035 label (empty when valid).
pub(crate) fn rfc1035_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push(too_long(63));
    }
    if !is_label_chars(s) || !s.as_bytes()[0].is_ascii_lowercase() {
        out.push(RFC1035_LABEL_MSG.to_string());
    }
    out
}

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Problems with `s` as a qualified name (label or annotation key): `[prefix/]name`.
pub(crate) fn qualified_name(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            out.push("prefix part must be non-empty".to_string());
        } else {
            out.extend(dns1123_subdomain(p).into_iter().map(|m| format!("prefix part {m}")));
        }
    }
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
        return out;
    }
    if name.len() > 63 {
        out.push(format!("name part {}", too_long(63)));
    }
    if !is_name_part(name) {
        out.push(QUALIFIED_NAME_MSG.to_string());
    }
    out
}

/// Problems with `s` as a label value (may be empty).
pub(crate) fn label_value(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push(too_long(63));
    }
    if !s.is_empty() && !is_name_part(s) {
        out.push(LABEL_VALUE_MSG.to_string());
    }
    out
}

/// Problems with `s` as an IANA service name (a named port).
pub(crate) fn iana_svc_name(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 15 {
        out.push(too_long(15));
    }
    let b = s.as_bytes();
    if !b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-') {
        out.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if s.contains("--") {
        out.push("must not contain consecutive hyphens".into());
    }
    if !b.iter().any(|c| c.is_ascii_lowercase()) {
        out.push("must contain at least one letter (a-z)".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        out.push("must not begin or end with a hyphen".into());
    }
    out
}
