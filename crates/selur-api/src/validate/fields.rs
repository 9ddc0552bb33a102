//! Checks of single fields shared by the kind validators: quantities, numeric
//! bounds, enumerations, ports, and a selector against its pod template.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::iana_svc_name;
use super::{push_msgs, q, selector_string, validate_labels};
use crate::FieldError;

/// Parse a quantity at `path`, reporting the parser's message when it is not one.
pub(super) fn quantity(
    path: &str,
    value: &K8sQuantity,
    errs: &mut Vec<FieldError>,
) -> Option<crate::quantity::Quantity> {
    match crate::quantity::parse(&value.0) {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            errs.push(FieldError::invalid(path, q(&value.0), e.to_string()));
            None
        }
    }
}

/// A quantity that must also be zero or more.
pub(super) fn non_negative_quantity(
    path: &str,
    value: &K8sQuantity,
    errs: &mut Vec<FieldError>,
) -> Option<crate::quantity::Quantity> {
    let parsed = quantity(path, value, errs)?;
    if parsed.millis() < 0 {
        errs.push(FieldError::invalid(
            path,
            q(&value.0),
            "must be greater than or equal to 0",
        ));
        return None;
    }
    Some(parsed)
}

/// Every value of a resource map (`requests`, `spec.hard`, ...) as `path[name]`.
pub(super) fn quantity_map(
    path: &str,
    map: Option<&BTreeMap<String, K8sQuantity>>,
    errs: &mut Vec<FieldError>,
) -> BTreeMap<String, crate::quantity::Quantity> {
    let mut out = BTreeMap::new();
    for (name, value) in map.into_iter().flatten() {
        if let Some(parsed) = non_negative_quantity(&format!("{path}[{name}]"), value, errs) {
            out.insert(name.clone(), parsed);
        }
    }
    out
}

/// `value >= 0` when set.
pub(super) fn non_negative(path: &str, value: Option<impl Into<i64>>, errs: &mut Vec<FieldError>) {
    if let Some(v) = value.map(Into::into) {
        if v < 0 {
            errs.push(FieldError::invalid(
                path,
                v,
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// `value > 0` when set.
pub(super) fn positive(path: &str, value: Option<impl Into<i64>>, errs: &mut Vec<FieldError>) {
    if let Some(v) = value.map(Into::into) {
        if v <= 0 {
            errs.push(FieldError::invalid(path, v, "must be greater than 0"));
        }
    }
}

/// `min <= value <= max` when set.
pub(super) fn in_range(
    path: &str,
    value: Option<impl Into<i64>>,
    min: i64,
    max: i64,
    errs: &mut Vec<FieldError>,
) {
    if let Some(v) = value.map(Into::into) {
        if v < min || v > max {
            errs.push(FieldError::invalid(
                path,
                v,
                format!("must be between {min} and {max}, inclusive"),
            ));
        }
    }
}

/// `value` must be one of `allowed` when set (an empty string counts as set).
pub(super) fn one_of(
    path: &str,
    value: Option<&str>,
    allowed: &[&str],
    errs: &mut Vec<FieldError>,
) {
    if let Some(v) = value {
        if !allowed.contains(&v) {
            errs.push(FieldError::not_supported(path, v, allowed));
        }
    }
}

/// A port given as a number (1..65535) or an IANA service name.
pub(super) fn port_num_or_name(path: &str, port: &IntOrString, errs: &mut Vec<FieldError>) {
    match port {
        IntOrString::Int(n) => in_range(path, Some(*n), 1, 65535, errs),
        IntOrString::String(s) => push_msgs(path, s, iana_svc_name(s), errs),
    }
}

/// The selector, if well-formed and non-empty, must select `labels`.
/// Reports at `path.selector` and `template_labels_path`.
pub(super) fn selector_matches_template(
    selector: &LabelSelector,
    selector_path: &str,
    labels: Option<&BTreeMap<String, String>>,
    template_labels_path: &str,
    errs: &mut Vec<FieldError>,
) {
    let empty = selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty);
    if empty {
        errs.push(FieldError::required(
            selector_path,
            "set matchLabels (or matchExpressions) that select the pod template's labels",
        ));
        return;
    }
    if let Some(ml) = &selector.match_labels {
        validate_labels(ml, &format!("{selector_path}.matchLabels"), errs);
    }
    match crate::selector::LabelSelector::from_k8s(selector) {
        Err(e) => errs.push(FieldError::invalid(
            selector_path,
            selector_string(selector),
            e.to_string(),
        )),
        Ok(sel) => {
            let empty_labels = BTreeMap::new();
            if !sel.matches(labels.unwrap_or(&empty_labels)) {
                let shown =
                    serde_json::to_string(&labels.unwrap_or(&empty_labels)).unwrap_or_default();
                errs.push(FieldError::invalid(
                    template_labels_path,
                    shown,
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: impl FnOnce(&mut Vec<FieldError>)) -> Vec<String> {
        let mut errs = Vec::new();
        f(&mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn numbers_and_enums() {
        assert!(run(|e| non_negative("a", Some(0), e)).is_empty());
        assert_eq!(
            run(|e| non_negative("a", Some(-2), e)),
            ["a: Invalid value: -2: must be greater than or equal to 0"]
        );
        assert_eq!(
            run(|e| positive("a", Some(0i64), e)),
            ["a: Invalid value: 0: must be greater than 0"]
        );
        assert!(run(|e| positive("a", None::<i32>, e)).is_empty());
        assert_eq!(
            run(|e| one_of("t", Some("x"), &["A", "B"], e)),
            ["t: Unsupported value: \"x\": supported values: \"A\", \"B\""]
        );
    }

    #[test]
    fn ports_and_quantities() {
        assert!(run(|e| port_num_or_name("p", &IntOrString::Int(8080), e)).is_empty());
        assert!(run(|e| port_num_or_name("p", &IntOrString::String("http".into()), e)).is_empty());
        assert_eq!(
            run(|e| port_num_or_name("p", &IntOrString::Int(0), e)),
            ["p: Invalid value: 0: must be between 1 and 65535, inclusive"]
        );
        let q = |s: &str| K8sQuantity(s.to_string());
        assert!(run(|e| {
            non_negative_quantity("m", &q("64Mi"), e);
        })
        .is_empty());
        assert_eq!(
            run(|e| {
                non_negative_quantity("m", &q("-1"), e);
            }),
            ["m: Invalid value: \"-1\": must be greater than or equal to 0"]
        );
        let map = BTreeMap::from([
            ("cpu".to_string(), q("1.5")),
            ("memory".to_string(), q("1Zi")),
        ]);
        let mut errs = Vec::new();
        let parsed = quantity_map("r", Some(&map), &mut errs);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed["cpu"].millis(), 1500);
        assert!(errs[0]
            .to_string()
            .starts_with("r[memory]: Invalid value: \"1Zi\": quantities must match"));
    }
}
