//! Workload validation: Deployment, ReplicaSet, DaemonSet (selector vs template
//! labels, update strategies), Job (restart policy, counts, completion mode)
//! (restart policy, counts, completion mode). CronJobs are in `cron`.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::validate_pod_spec;
use super::{non_negative, one_of, positive, q, selector_matches_template, validate_labels};
use crate::FieldError;

/// The pod template at `{path}.template`, optionally selected by `selector`,
/// with the restart policies the controller supports.
fn validate_template(
    tpl: &PodTemplateSpec,
    selector: Option<&LabelSelector>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let labels = tpl.metadata.as_ref().and_then(|m| m.labels.as_ref());
    if let Some(l) = labels {
        validate_labels(l, &format!("{path}.template.metadata.labels"), errs);
    }
    if let Some(sel) = selector {
        selector_matches_template(
            sel,
            &format!("{path}.selector"),
            labels,
            &format!("{path}.template.metadata.labels"),
            errs,
        );
    }
    match &tpl.spec {
        Some(spec) => validate_pod_spec(spec, &format!("{path}.template.spec"), errs),
        None => errs.push(FieldError::required(format!("{path}.template.spec"), "")),
    }
}

/// Template restart policy for long-running controllers: only `Always`.
fn require_always(tpl: &PodTemplateSpec, errs: &mut Vec<FieldError>) {
    let rp = tpl.spec.as_ref().and_then(|s| s.restart_policy.as_deref());
    if let Some(rp) = rp.filter(|rp| *rp != "Always") {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            rp,
            &["Always"],
        ));
    }
}

/// An int ≥0 or a percent string `N%`; returns the number (percent or count).
fn int_or_percent(path: &str, v: &IntOrString, errs: &mut Vec<FieldError>) -> Option<i64> {
    match v {
        IntOrString::Int(n) => {
            non_negative(path, Some(*n), errs);
            Some(i64::from(*n))
        }
        IntOrString::String(s) => {
            let num = s
                .strip_suffix('%')
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            match num.and_then(|n| n.parse::<i64>().ok()) {
                Some(n) => Some(n),
                None => {
                    errs.push(FieldError::invalid(
                        path,
                        q(s),
                        "a valid percent string must be a numeric string followed by an ending '%' \
                         (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                    ));
                    None
                }
            }
        }
    }
}

/// maxSurge / maxUnavailable of a rolling update at `path`.
fn rolling_update(
    path: &str,
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    errs: &mut Vec<FieldError>,
) {
    let surge = max_surge.and_then(|v| int_or_percent(&format!("{path}.maxSurge"), v, errs));
    let unavailable =
        max_unavailable.and_then(|v| int_or_percent(&format!("{path}.maxUnavailable"), v, errs));
    if let Some(IntOrString::String(s)) = max_unavailable {
        if unavailable.is_some_and(|u| u > 100) {
            errs.push(FieldError::invalid(
                format!("{path}.maxUnavailable"),
                q(s),
                "must not be greater than 100%",
            ));
        }
    }
    if surge == Some(0) && unavailable == Some(0) {
        errs.push(FieldError::invalid(
            format!("{path}.maxUnavailable"),
            0,
            "may not be 0 when `maxSurge` is 0; allow at least one of them to be non-zero",
        ));
    }
}

/// apps/v1 Deployment.
pub(super) fn validate_deployment(d: &Deployment, errs: &mut Vec<FieldError>) {
    let Some(spec) = &d.spec else {
        errs.push(FieldError::required("spec", ""));
        return;
    };
    validate_template(&spec.template, Some(&spec.selector), "spec", errs);
    require_always(&spec.template, errs);
    non_negative("spec.replicas", spec.replicas, errs);
    non_negative("spec.minReadySeconds", spec.min_ready_seconds, errs);
    non_negative(
        "spec.revisionHistoryLimit",
        spec.revision_history_limit,
        errs,
    );
    positive(
        "spec.progressDeadlineSeconds",
        spec.progress_deadline_seconds,
        errs,
    );
    if let Some(st) = &spec.strategy {
        let ty = st.type_.as_deref();
        one_of(
            "spec.strategy.type",
            ty,
            &["RollingUpdate", "Recreate"],
            errs,
        );
        if let Some(ru) = &st.rolling_update {
            if ty.is_some_and(|t| t != "RollingUpdate") {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    format!(
                        "may not be specified when strategy `type` is '{}'",
                        ty.unwrap_or_default()
                    ),
                ));
            } else {
                rolling_update(
                    "spec.strategy.rollingUpdate",
                    ru.max_surge.as_ref(),
                    ru.max_unavailable.as_ref(),
                    errs,
                );
            }
        }
    }
}

/// apps/v1 ReplicaSet.
pub(super) fn validate_replica_set(r: &ReplicaSet, errs: &mut Vec<FieldError>) {
    let Some(spec) = &r.spec else {
        errs.push(FieldError::required("spec", ""));
        return;
    };
    match &spec.template {
        Some(tpl) => {
            validate_template(tpl, Some(&spec.selector), "spec", errs);
            require_always(tpl, errs);
        }
        None => errs.push(FieldError::required("spec.template", "")),
    }
    non_negative("spec.replicas", spec.replicas, errs);
    non_negative("spec.minReadySeconds", spec.min_ready_seconds, errs);
}

/// apps/v1 DaemonSet.
pub(super) fn validate_daemon_set(d: &DaemonSet, errs: &mut Vec<FieldError>) {
    let Some(spec) = &d.spec else {
        errs.push(FieldError::required("spec", ""));
        return;
    };
    validate_template(&spec.template, Some(&spec.selector), "spec", errs);
    require_always(&spec.template, errs);
    non_negative("spec.minReadySeconds", spec.min_ready_seconds, errs);
    non_negative(
        "spec.revisionHistoryLimit",
        spec.revision_history_limit,
        errs,
    );
    if let Some(us) = &spec.update_strategy {
        let ty = us.type_.as_deref();
        one_of(
            "spec.updateStrategy.type",
            ty,
            &["RollingUpdate", "OnDelete"],
            errs,
        );
        if let Some(ru) = &us.rolling_update {
            if ty.is_some_and(|t| t != "RollingUpdate") {
                errs.push(FieldError::forbidden(
                    "spec.updateStrategy.rollingUpdate",
                    format!(
                        "may not be specified when updateStrategy `type` is '{}'",
                        ty.unwrap_or_default()
                    ),
                ));
            } else {
                rolling_update(
                    "spec.updateStrategy.rollingUpdate",
                    ru.max_surge.as_ref(),
                    ru.max_unavailable.as_ref(),
                    errs,
                );
            }
        }
    }
}

/// batch/v1 JobSpec at `path` (`spec`, or `spec.jobTemplate.spec` in a CronJob).
pub(super) fn validate_job_spec(spec: &JobSpec, path: &str, errs: &mut Vec<FieldError>) {
    validate_template(&spec.template, spec.selector.as_ref(), path, errs);
    let rp_path = format!("{path}.template.spec.restartPolicy");
    match spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
    {
        Some("OnFailure") | Some("Never") => {}
        None | Some("Always") => errs.push(FieldError::required(
            rp_path,
            "valid values: \"OnFailure\", \"Never\"",
        )),
        Some(other) => errs.push(FieldError::not_supported(
            rp_path,
            other,
            &["OnFailure", "Never"],
        )),
    }
    non_negative(&format!("{path}.parallelism"), spec.parallelism, errs);
    non_negative(&format!("{path}.completions"), spec.completions, errs);
    non_negative(&format!("{path}.backoffLimit"), spec.backoff_limit, errs);
    positive(
        &format!("{path}.activeDeadlineSeconds"),
        spec.active_deadline_seconds,
        errs,
    );
    non_negative(
        &format!("{path}.ttlSecondsAfterFinished"),
        spec.ttl_seconds_after_finished,
        errs,
    );
    let mode = spec.completion_mode.as_deref();
    one_of(
        &format!("{path}.completionMode"),
        mode,
        &["NonIndexed", "Indexed"],
        errs,
    );
    if mode == Some("Indexed") && spec.completions.is_none() {
        errs.push(FieldError::required(
            format!("{path}.completions"),
            "when completion mode is Indexed; set spec.completions to the number of indexes",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_has, errors};
    use serde_json::{json, Value};

    fn workload(kind: &str, selector: Value, labels: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "w"},
               "spec": {"selector": selector,
                        "template": {"metadata": {"labels": labels},
                                     "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    }

    #[test]
    fn selector_is_required_and_must_match_template() {
        for kind in ["Deployment", "ReplicaSet", "DaemonSet"] {
            let errs = errors(workload(kind, json!({}), json!({"app": "web"})));
            assert_has(&errs, "spec.selector: Required value");
            let errs = errors(workload(
                kind,
                json!({"matchLabels": {"app": "api"}}),
                json!({"app": "web"}),
            ));
            assert_eq!(
                errs,
                ["spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`"],
                "{kind}"
            );
        }
    }

    #[test]
    fn deployment_fields() {
        let mut d = workload(
            "Deployment",
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        d["spec"]["strategy"] = json!({"type": "RollingUpdate",
                                       "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
        let errs = errors(d.clone());
        assert_has(
            &errs,
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        );
        assert_has(&errs, "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"");
        assert_has(&errs, "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0");
        d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {"maxSurge": "x%"}});
        assert_has(&errors(d), "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'");
    }

    #[test]
    fn daemonset_update_strategy() {
        let mut d = workload(
            "DaemonSet",
            json!({"matchLabels": {"app": "x"}}),
            json!({"app": "x"}),
        );
        d["spec"]["updateStrategy"] =
            json!({"type": "Rolling", "rollingUpdate": {"maxUnavailable": "ten%"}});
        let errs = errors(d);
        assert_has(
            &errs,
            "spec.updateStrategy.type: Unsupported value: \"Rolling\"",
        );
        assert_has(&errs, "spec.updateStrategy.rollingUpdate: Forbidden");
        let mut d = workload(
            "DaemonSet",
            json!({"matchLabels": {"app": "x"}}),
            json!({"app": "x"}),
        );
        d["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "ten%"}});
        assert_has(
            &errors(d),
            "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: \"ten%\": a valid percent string",
        );
    }

    fn job(spec: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": spec})
    }

    #[test]
    fn job_restart_policy_and_counts() {
        let pod = json!({"spec": {"containers": [{"name": "c", "image": "i"}]}});
        let errs = errors(job(
            json!({"template": pod, "completionMode": "Indexed", "backoffLimit": -1}),
        ));
        assert_has(
            &errs,
            "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
        );
        assert_has(
            &errs,
            "spec.completions: Required value: when completion mode is Indexed",
        );
        assert_has(&errs, "spec.backoffLimit: Invalid value: -1");
        let pod = json!({"metadata": {"labels": {"a": "b"}},
                         "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}});
        let errs = errors(job(
            json!({"template": pod, "selector": {"matchLabels": {"a": "c"}},
                                     "activeDeadlineSeconds": 0}),
        ));
        assert_has(&errs, "spec.template.metadata.labels: Invalid value: {\"a\":\"b\"}: `selector` does not match");
        assert_has(
            &errs,
            "spec.activeDeadlineSeconds: Invalid value: 0: must be greater than 0",
        );
    }
}
