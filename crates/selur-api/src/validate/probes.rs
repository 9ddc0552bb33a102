//! Container probes (liveness, readiness, startup) and lifecycle hooks: exactly
//! one handler, valid ports and schemes, sane timings.

use k8s_openapi::api::core::v1::{LifecycleHandler, Probe};

use super::{in_range, non_negative, one_of, port_num_or_name, positive};
use crate::FieldError;

/// Exactly one of exec/httpGet/tcpSocket/grpc, and sane timings.
pub(super) fn validate_probe(
    p: &Probe,
    path: &str,
    must_succeed_once: bool,
    errs: &mut Vec<FieldError>,
) {
    let handlers = [
        p.exec.is_some(),
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.grpc.is_some(),
    ];
    match handlers.iter().filter(|b| **b).count() {
        0 => errs.push(FieldError::required(
            path,
            "must specify a handler type (one of exec, httpGet, tcpSocket, grpc)",
        )),
        1 => {}
        _ => errs.push(FieldError::forbidden(
            path,
            "may not specify more than 1 handler type",
        )),
    }
    if let Some(h) = &p.http_get {
        port_num_or_name(&format!("{path}.httpGet.port"), &h.port, errs);
        one_of(
            &format!("{path}.httpGet.scheme"),
            h.scheme.as_deref(),
            &["HTTP", "HTTPS"],
            errs,
        );
    }
    if let Some(t) = &p.tcp_socket {
        port_num_or_name(&format!("{path}.tcpSocket.port"), &t.port, errs);
    }
    if let Some(g) = &p.grpc {
        in_range(&format!("{path}.grpc.port"), Some(g.port), 1, 65535, errs);
    }
    non_negative(
        &format!("{path}.initialDelaySeconds"),
        p.initial_delay_seconds,
        errs,
    );
    positive(&format!("{path}.periodSeconds"), p.period_seconds, errs);
    positive(&format!("{path}.timeoutSeconds"), p.timeout_seconds, errs);
    positive(
        &format!("{path}.successThreshold"),
        p.success_threshold,
        errs,
    );
    positive(
        &format!("{path}.failureThreshold"),
        p.failure_threshold,
        errs,
    );
    if must_succeed_once {
        if let Some(v) = p.success_threshold.filter(|v| *v != 1) {
            errs.push(FieldError::invalid(
                format!("{path}.successThreshold"),
                v,
                "must be 1",
            ));
        }
    }
}

/// A lifecycle hook: exactly one of exec/httpGet/sleep/tcpSocket.
pub(super) fn validate_handler(h: &LifecycleHandler, path: &str, errs: &mut Vec<FieldError>) {
    let handlers = [
        h.exec.is_some(),
        h.http_get.is_some(),
        h.sleep.is_some(),
        h.tcp_socket.is_some(),
    ];
    match handlers.iter().filter(|b| **b).count() {
        0 => errs.push(FieldError::required(
            path,
            "must specify a handler type (one of exec, httpGet, sleep, tcpSocket)",
        )),
        1 => {}
        _ => errs.push(FieldError::forbidden(
            path,
            "may not specify more than 1 handler type",
        )),
    }
    if let Some(g) = &h.http_get {
        port_num_or_name(&format!("{path}.httpGet.port"), &g.port, errs);
        one_of(
            &format!("{path}.httpGet.scheme"),
            g.scheme.as_deref(),
            &["HTTP", "HTTPS"],
            errs,
        );
    }
    if let Some(t) = &h.tcp_socket {
        port_num_or_name(&format!("{path}.tcpSocket.port"), &t.port, errs);
    }
    if let Some(s) = &h.sleep {
        non_negative(&format!("{path}.sleep.seconds"), Some(s.seconds), errs);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_has, errors, pod};
    use serde_json::json;

    #[test]
    fn probes_need_exactly_one_valid_handler() {
        let mut p = pod("p");
        let c = &mut p["spec"]["containers"][0];
        c["livenessProbe"] = json!({"periodSeconds": 0, "successThreshold": 2});
        c["readinessProbe"] = json!({"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}});
        c["startupProbe"] =
            json!({"httpGet": {"port": "Web--Port", "scheme": "FTP"}, "initialDelaySeconds": -1});
        c["lifecycle"] = json!({"preStop": {}, "postStart": {"tcpSocket": {"port": 70000}}});
        let errs = errors(p);
        let lp = "spec.containers[0].livenessProbe";
        assert_has(
            &errs,
            &format!("{lp}: Required value: must specify a handler type"),
        );
        assert_has(
            &errs,
            &format!("{lp}.periodSeconds: Invalid value: 0: must be greater than 0"),
        );
        assert_has(
            &errs,
            &format!("{lp}.successThreshold: Invalid value: 2: must be 1"),
        );
        assert_has(
            &errs,
            "spec.containers[0].readinessProbe: Forbidden: may not specify more than 1 handler type",
        );
        let sp = "spec.containers[0].startupProbe";
        assert_has(
            &errs,
            &format!("{sp}.httpGet.port: Invalid value: \"Web--Port\""),
        );
        assert_has(
            &errs,
            &format!("{sp}.httpGet.scheme: Unsupported value: \"FTP\""),
        );
        assert_has(
            &errs,
            &format!("{sp}.initialDelaySeconds: Invalid value: -1"),
        );
        assert_has(
            &errs,
            "spec.containers[0].lifecycle.preStop: Required value",
        );
        assert_has(
            &errs,
            "spec.containers[0].lifecycle.postStart.tcpSocket.port: Invalid value: 70000",
        );
    }

    #[test]
    fn readiness_may_need_several_successes() {
        let mut p = pod("p");
        p["spec"]["containers"][0]["readinessProbe"] =
            json!({"grpc": {"port": 9090}, "successThreshold": 3});
        assert!(errors(p).is_empty());
    }
}
