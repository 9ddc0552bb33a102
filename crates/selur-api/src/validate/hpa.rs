//! HorizontalPodAutoscaler (autoscaling/v2): scale target, replica bounds,
//! metrics with their targets, and scaling behavior.

use k8s_openapi::api::autoscaling::v2::{
    HPAScalingRules, HorizontalPodAutoscaler, MetricSpec, MetricTarget,
};

use super::{in_range, one_of, positive, quantity};
use crate::FieldError;

/// autoscaling/v2 HorizontalPodAutoscaler.
pub(super) fn validate_hpa(h: &HorizontalPodAutoscaler, errs: &mut Vec<FieldError>) {
    let Some(spec) = &h.spec else {
        errs.push(FieldError::required("spec", ""));
        return;
    };
    if spec.scale_target_ref.kind.is_empty() {
        errs.push(FieldError::required(
            "spec.scaleTargetRef.kind",
            "e.g. Deployment",
        ));
    }
    if spec.scale_target_ref.name.is_empty() {
        errs.push(FieldError::required(
            "spec.scaleTargetRef.name",
            "the name of the object to scale",
        ));
    }
    if spec.max_replicas < 1 {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            spec.max_replicas,
            "must be greater than or equal to 1",
        ));
    }
    if let Some(min) = spec.min_replicas {
        if min < 1 {
            errs.push(FieldError::invalid(
                "spec.minReplicas",
                min,
                "must be greater than or equal to 1",
            ));
        } else if min > spec.max_replicas {
            errs.push(FieldError::invalid(
                "spec.minReplicas",
                min,
                "must be less than or equal to maxReplicas",
            ));
        }
    }
    for (i, m) in spec.metrics.iter().flatten().enumerate() {
        validate_metric(m, &format!("spec.metrics[{i}]"), errs);
    }
    if let Some(b) = &spec.behavior {
        if let Some(r) = &b.scale_up {
            scaling_rules(r, "spec.behavior.scaleUp", errs);
        }
        if let Some(r) = &b.scale_down {
            scaling_rules(r, "spec.behavior.scaleDown", errs);
        }
    }
}

fn validate_metric(m: &MetricSpec, path: &str, errs: &mut Vec<FieldError>) {
    let members = [
        ("Resource", "resource", m.resource.is_some()),
        ("Pods", "pods", m.pods.is_some()),
        ("Object", "object", m.object.is_some()),
        ("External", "external", m.external.is_some()),
        (
            "ContainerResource",
            "containerResource",
            m.container_resource.is_some(),
        ),
    ];
    let types: Vec<&str> = members.iter().map(|(t, _, _)| *t).collect();
    if m.type_.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.type"),
            "must specify a metric source type",
        ));
    } else {
        one_of(&format!("{path}.type"), Some(&m.type_), &types, errs);
    }
    for (ty, field, set) in members {
        if ty == m.type_ && !set {
            errs.push(FieldError::required(
                format!("{path}.{field}"),
                "must populate information for the given metric source",
            ));
        } else if ty != m.type_ && set {
            errs.push(FieldError::forbidden(
                format!("{path}.{field}"),
                "must populate the given metric source only",
            ));
        }
    }
    if let Some(r) = &m.resource {
        if r.name.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.resource.name"),
                "e.g. cpu or memory",
            ));
        }
        metric_target(&r.target, &format!("{path}.resource.target"), errs);
    }
    if let Some(r) = &m.container_resource {
        metric_target(&r.target, &format!("{path}.containerResource.target"), errs);
    }
    if let Some(p) = &m.pods {
        metric_target(&p.target, &format!("{path}.pods.target"), errs);
    }
    if let Some(o) = &m.object {
        metric_target(&o.target, &format!("{path}.object.target"), errs);
    }
    if let Some(e) = &m.external {
        metric_target(&e.target, &format!("{path}.external.target"), errs);
    }
}

fn metric_target(t: &MetricTarget, path: &str, errs: &mut Vec<FieldError>) {
    one_of(
        &format!("{path}.type"),
        Some(&t.type_),
        &["Utilization", "Value", "AverageValue"],
        errs,
    );
    let missing = |field: &str, errs: &mut Vec<FieldError>| {
        errs.push(FieldError::required(
            format!("{path}.{field}"),
            format!("must set {field} when target type is {}", t.type_),
        ))
    };
    match t.type_.as_str() {
        "Utilization" if t.average_utilization.is_none() => missing("averageUtilization", errs),
        "AverageValue" if t.average_value.is_none() => missing("averageValue", errs),
        "Value" if t.value.is_none() => missing("value", errs),
        _ => {}
    }
    positive(
        &format!("{path}.averageUtilization"),
        t.average_utilization,
        errs,
    );
    if let Some(v) = &t.average_value {
        quantity(&format!("{path}.averageValue"), v, errs);
    }
    if let Some(v) = &t.value {
        quantity(&format!("{path}.value"), v, errs);
    }
}

fn scaling_rules(r: &HPAScalingRules, path: &str, errs: &mut Vec<FieldError>) {
    in_range(
        &format!("{path}.stabilizationWindowSeconds"),
        r.stabilization_window_seconds,
        0,
        3600,
        errs,
    );
    one_of(
        &format!("{path}.selectPolicy"),
        r.select_policy.as_deref(),
        &["Max", "Min", "Disabled"],
        errs,
    );
    for (i, p) in r.policies.iter().flatten().enumerate() {
        let pp = format!("{path}.policies[{i}]");
        one_of(
            &format!("{pp}.type"),
            Some(&p.type_),
            &["Pods", "Percent"],
            errs,
        );
        positive(&format!("{pp}.value"), Some(p.value), errs);
        in_range(
            &format!("{pp}.periodSeconds"),
            Some(p.period_seconds),
            1,
            1800,
            errs,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_has, errors};
    use serde_json::{json, Value};

    fn hpa(spec: Value) -> Value {
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
               "metadata": {"name": "h"}, "spec": spec})
    }

    #[test]
    fn replicas_and_target() {
        let errs = errors(hpa(json!({"scaleTargetRef": {"kind": "", "name": ""},
                                     "minReplicas": 5, "maxReplicas": 3})));
        assert_has(&errs, "spec.scaleTargetRef.kind: Required value");
        assert_has(&errs, "spec.scaleTargetRef.name: Required value");
        assert_has(
            &errs,
            "spec.minReplicas: Invalid value: 5: must be less than or equal to maxReplicas",
        );
        let errs = errors(hpa(
            json!({"scaleTargetRef": {"kind": "Deployment", "name": "d"},
                                     "minReplicas": 0, "maxReplicas": 0}),
        ));
        assert_has(
            &errs,
            "spec.maxReplicas: Invalid value: 0: must be greater than or equal to 1",
        );
        assert_has(
            &errs,
            "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
        );
    }

    #[test]
    fn metrics_and_behavior() {
        let errs = errors(hpa(json!({
            "scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 3,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}},
                {"type": "Pods", "resource": {"name": "cpu", "target": {"type": "AverageValue", "averageValue": "1x"}}},
                {"type": "Memory"},
            ],
            "behavior": {"scaleUp": {"stabilizationWindowSeconds": 4000, "selectPolicy": "Any",
                                     "policies": [{"type": "Ratio", "value": 0, "periodSeconds": 3600}]}}
        })));
        let m = "spec.metrics";
        assert_has(
            &errs,
            &format!("{m}[0].resource.target.averageUtilization: Required value"),
        );
        assert_has(&errs, &format!("{m}[1].pods: Required value: must populate information for the given metric source"));
        assert_has(
            &errs,
            &format!("{m}[1].resource: Forbidden: must populate the given metric source only"),
        );
        assert_has(
            &errs,
            &format!("{m}[1].resource.target.averageValue: Invalid value: \"1x\""),
        );
        assert_has(
            &errs,
            &format!("{m}[2].type: Unsupported value: \"Memory\""),
        );
        let b = "spec.behavior.scaleUp";
        assert_has(&errs, &format!("{b}.stabilizationWindowSeconds: Invalid value: 4000: must be between 0 and 3600, inclusive"));
        assert_has(
            &errs,
            &format!("{b}.selectPolicy: Unsupported value: \"Any\""),
        );
        assert_has(
            &errs,
            &format!("{b}.policies[0].type: Unsupported value: \"Ratio\""),
        );
        assert_has(
            &errs,
            &format!("{b}.policies[0].value: Invalid value: 0: must be greater than 0"),
        );
        assert_has(
            &errs,
            &format!(
                "{b}.policies[0].periodSeconds: Invalid value: 3600: must be between 1 and 1800"
            ),
        );
    }
}
