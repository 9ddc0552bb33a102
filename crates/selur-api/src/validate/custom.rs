//! Validation of Selur's own types (see [`crate::types`]): PodSecurityPolicy
//! strategies and image rules, Istio VirtualService routes, and the Prometheus
//! operator's ServiceMonitor endpoints and durations.

use crate::types::{
    PodSecurityPolicy, ServiceMonitor, StrategyOptions, VirtualService, VirtualServiceTls,
};
use crate::FieldError;

use super::{one_of, q};

/// policy/v1beta1 PodSecurityPolicy.
pub(super) fn validate_psp(p: &PodSecurityPolicy, errs: &mut Vec<FieldError>) {
    let s = &p.spec;
    let groups = ["MustRunAs", "MayRunAs", "RunAsAny"];
    strategy(
        "spec.runAsUser",
        s.run_as_user.as_ref(),
        &["MustRunAs", "MustRunAsNonRoot", "RunAsAny"],
        errs,
    );
    strategy("spec.runAsGroup", s.run_as_group.as_ref(), &groups, errs);
    strategy("spec.fsGroup", s.fs_group.as_ref(), &groups, errs);
    strategy(
        "spec.supplementalGroups",
        s.supplemental_groups.as_ref(),
        &groups,
        errs,
    );
    strategy(
        "spec.seLinux",
        s.se_linux.as_ref(),
        &["MustRunAs", "RunAsAny"],
        errs,
    );
    for (i, img) in s.allowed_images.iter().flatten().enumerate() {
        if img.trim().is_empty() {
            errs.push(FieldError::required(
                format!("spec.allowedImages[{i}]"),
                "an image pattern such as \"ghcr.io/org/app:*\"",
            ));
        }
    }
    if let Some(mb) = s.max_image_size_mb {
        if mb.is_nan() || mb <= 0.0 {
            errs.push(FieldError::invalid(
                "spec.maxImageSizeMB",
                mb,
                "must be greater than 0",
            ));
        }
    }
}

/// One `{rule, ranges}` strategy at `path`.
fn strategy(
    path: &str,
    opts: Option<&StrategyOptions>,
    rules: &[&str],
    errs: &mut Vec<FieldError>,
) {
    let Some(o) = opts else { return };
    if o.rule.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.rule"),
            format!("one of {}", rules.join(", ")),
        ));
        return;
    }
    one_of(&format!("{path}.rule"), Some(&o.rule), rules, errs);
    let ranges = o.ranges.as_deref().unwrap_or_default();
    if o.rule == "MustRunAs" && ranges.is_empty() && path != "spec.seLinux" {
        errs.push(FieldError::required(
            format!("{path}.ranges"),
            "must provide at least one range (e.g. [{min: 1000, max: 65535}]) when rule is MustRunAs",
        ));
    }
    for (i, r) in ranges.iter().enumerate() {
        let rp = format!("{path}.ranges[{i}]");
        if r.min < 0 {
            errs.push(FieldError::invalid(
                format!("{rp}.min"),
                r.min,
                "must be greater than or equal to 0",
            ));
        }
        if r.min > r.max {
            errs.push(FieldError::invalid(
                rp,
                format!("{}-{}", r.min, r.max),
                "min must be less than or equal to max",
            ));
        }
    }
}

/// networking.istio.io VirtualService.
pub(super) fn validate_virtual_service(v: &VirtualService, errs: &mut Vec<FieldError>) {
    let s = &v.spec;
    if s.hosts.is_empty() {
        errs.push(FieldError::required(
            "spec.hosts",
            "at least one host the routes apply to",
        ));
    }
    for (i, h) in s.hosts.iter().enumerate() {
        if h.trim().is_empty() {
            errs.push(FieldError::required(format!("spec.hosts[{i}]"), ""));
        }
    }
    for (i, route) in s.http.iter().flatten().enumerate() {
        let rp = format!("spec.http[{i}].route");
        let dests = route.route.as_deref().unwrap_or_default();
        if dests.is_empty() {
            errs.push(FieldError::required(
                rp.clone(),
                "at least one destination to send traffic to",
            ));
        }
        for (j, d) in dests.iter().enumerate() {
            if d.destination.host.is_empty() {
                errs.push(FieldError::required(
                    format!("{rp}[{j}].destination.host"),
                    "the Service name traffic goes to",
                ));
            }
        }
    }
    if let Some(VirtualServiceTls::Mode(m)) = &s.tls {
        one_of(
            "spec.tls.mode",
            Some(&m.mode),
            &["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"],
            errs,
        );
    }
}

/// monitoring.coreos.com ServiceMonitor.
pub(super) fn validate_service_monitor(m: &ServiceMonitor, errs: &mut Vec<FieldError>) {
    if m.spec.endpoints.is_empty() {
        errs.push(FieldError::required(
            "spec.endpoints",
            "at least one endpoint to scrape",
        ));
    }
    for (i, e) in m.spec.endpoints.iter().enumerate() {
        let p = format!("spec.endpoints[{i}]");
        if e.port.as_deref().is_none_or(str::is_empty) && e.target_port.is_none() {
            errs.push(FieldError::required(
                p.clone(),
                "must set port (the name of a Service port) or targetPort",
            ));
        }
        for (field, value) in [
            ("interval", &e.interval),
            ("scrapeTimeout", &e.scrape_timeout),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !is_duration(v)) {
                errs.push(FieldError::invalid(
                    format!("{p}.{field}"),
                    q(v),
                    "must be a duration such as 30s, 1m or 1h30m (units y, w, d, h, m, s, ms)",
                ));
            }
        }
    }
}

/// A Prometheus duration: `0`, or number+unit pairs in decreasing unit order (`1h30m`).
fn is_duration(s: &str) -> bool {
    const UNITS: [&str; 7] = ["y", "w", "d", "h", "m", "s", "ms"];
    if s == "0" {
        return true;
    }
    let mut rest = s;
    let mut last: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = if rest.starts_with("ms") {
            "ms"
        } else {
            rest.get(..1).unwrap_or("")
        };
        let Some(idx) = UNITS.iter().position(|u| *u == unit) else {
            return false;
        };
        if last.is_some_and(|l| idx <= l) {
            return false;
        }
        last = Some(idx);
        rest = &rest[unit.len()..];
    }
    last.is_some()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_has, errors};
    use super::is_duration;
    use serde_json::json;

    #[test]
    fn pod_security_policy_strategies() {
        let psp = json!({"apiVersion": "policy/v1beta1", "kind": "PodSecurityPolicy",
            "metadata": {"name": "p"},
            "spec": {"runAsUser": {"rule": "MustRunAs"},
                     "fsGroup": {"rule": "MustRunAsNonRoot"},
                     "supplementalGroups": {"rule": "MayRunAs", "ranges": [{"min": 10, "max": 5}, {"min": -1, "max": 5}]},
                     "allowedImages": [""], "maxImageSizeMB": 0}});
        let errs = errors(psp);
        assert_has(
            &errs,
            "spec.runAsUser.ranges: Required value: must provide at least one range",
        );
        assert_has(
            &errs,
            "spec.fsGroup.rule: Unsupported value: \"MustRunAsNonRoot\"",
        );
        assert_has(&errs, "spec.supplementalGroups.ranges[0]: Invalid value: 10-5: min must be less than or equal to max");
        assert_has(
            &errs,
            "spec.supplementalGroups.ranges[1].min: Invalid value: -1",
        );
        assert_has(&errs, "spec.allowedImages[0]: Required value");
        assert_has(
            &errs,
            "spec.maxImageSizeMB: Invalid value: 0: must be greater than 0",
        );
        assert_eq!(errs.len(), 6, "{errs:#?}");
    }

    #[test]
    fn virtual_service_routes() {
        let vs = json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "v"},
            "spec": {"hosts": [], "http": [{"route": []}, {"route": [{"destination": {"host": ""}}]}],
                     "tls": {"mode": "STRICT"}}});
        let errs = errors(vs);
        assert_has(&errs, "spec.hosts: Required value");
        assert_has(&errs, "spec.http[0].route: Required value");
        assert_has(
            &errs,
            "spec.http[1].route[0].destination.host: Required value",
        );
        assert_has(&errs, "spec.tls.mode: Unsupported value: \"STRICT\"");
    }

    #[test]
    fn service_monitor_endpoints() {
        let sm = json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": "m"},
            "spec": {"selector": {}, "endpoints": [{"path": "/metrics", "interval": "30 seconds"},
                                                   {"targetPort": 9090, "scrapeTimeout": "10s"}]}});
        let errs = errors(sm);
        assert_has(&errs, "spec.endpoints[0]: Required value: must set port");
        assert_has(
            &errs,
            "spec.endpoints[0].interval: Invalid value: \"30 seconds\"",
        );
        assert_eq!(errs.len(), 2, "{errs:#?}");
        let sm = json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": "m"}, "spec": {"selector": {}, "endpoints": []}});
        assert_has(&errors(sm), "spec.endpoints: Required value");
    }

    #[test]
    fn durations() {
        for d in ["30s", "1m", "1h30m", "500ms", "1d", "0", "2w1d"] {
            assert!(is_duration(d), "{d}");
        }
        for d in ["", "s", "30", "1m1h", "1.5s", "10 s", "5sec", "1µs"] {
            assert!(!is_duration(d), "{d}");
        }
    }
}
