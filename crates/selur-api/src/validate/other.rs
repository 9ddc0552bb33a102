//! Validation of the remaining built-in kinds: Service (IPv6-only),
//! ResourceQuota, LimitRange, PriorityClass, ConfigMap and Secret (a Namespace
//! only has its name checked). The HorizontalPodAutoscaler is in `hpa`, Selur's
//! own PodSecurityPolicy, VirtualService and ServiceMonitor in `custom`.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::{Service, ServiceSpec};

use super::{in_range, one_of, port_num_or_name, push_msgs, q, quantity_map};
use crate::{FieldError, TypedObject};

/// Kind-specific checks for every kind not handled by `pod` or `workloads`.
pub(super) fn validate_other(obj: &TypedObject, errs: &mut Vec<FieldError>) {
    match obj {
        TypedObject::Service(s) => validate_service(s, errs),
        TypedObject::HorizontalPodAutoscaler(h) => super::hpa::validate_hpa(h, errs),
        TypedObject::ResourceQuota(r) => {
            let hard = r.spec.as_ref().and_then(|s| s.hard.as_ref());
            quantity_map("spec.hard", hard, errs);
        }
        TypedObject::LimitRange(l) => {
            for (i, item) in l.spec.iter().flat_map(|s| &s.limits).enumerate() {
                let p = format!("spec.limits[{i}]");
                one_of(
                    &format!("{p}.type"),
                    Some(&item.type_),
                    &["Container", "Pod", "PersistentVolumeClaim"],
                    errs,
                );
                quantity_map(&format!("{p}.max"), item.max.as_ref(), errs);
                quantity_map(&format!("{p}.min"), item.min.as_ref(), errs);
                quantity_map(&format!("{p}.default"), item.default.as_ref(), errs);
                quantity_map(
                    &format!("{p}.defaultRequest"),
                    item.default_request.as_ref(),
                    errs,
                );
                quantity_map(
                    &format!("{p}.maxLimitRequestRatio"),
                    item.max_limit_request_ratio.as_ref(),
                    errs,
                );
            }
        }
        TypedObject::PodSecurityPolicy(p) => super::custom::validate_psp(p, errs),
        TypedObject::VirtualService(v) => super::custom::validate_virtual_service(v, errs),
        TypedObject::ServiceMonitor(m) => super::custom::validate_service_monitor(m, errs),
        TypedObject::PriorityClass(p) => {
            if p.value > 1_000_000_000 {
                errs.push(FieldError::invalid(
                    "value",
                    p.value,
                    "must be less than or equal to 1000000000; higher values are reserved for system priority classes",
                ));
            }
            one_of(
                "preemptionPolicy",
                p.preemption_policy.as_deref(),
                &["PreemptLowerPriority", "Never"],
                errs,
            );
        }
        TypedObject::ConfigMap(c) => {
            let data = c.data.iter().flatten().map(|(k, v)| (k, v.len()));
            let binary = c.binary_data.iter().flatten().map(|(k, v)| (k, v.0.len()));
            let size = data_keys("data", data, errs) + data_keys("binaryData", binary, errs);
            if let (Some(d), Some(b)) = (&c.data, &c.binary_data) {
                for k in d.keys().filter(|k| b.contains_key(*k)) {
                    errs.push(FieldError::invalid(
                        format!("data[{k}]"),
                        q(k),
                        "duplicate of key present in binaryData; keep each key in only one of them",
                    ));
                }
            }
            total_size(size, errs);
        }
        TypedObject::Secret(s) => {
            let data = s.data.iter().flatten().map(|(k, v)| (k, v.0.len()));
            let string_data = s.string_data.iter().flatten().map(|(k, v)| (k, v.len()));
            let size = data_keys("data", data, errs) + data_keys("stringData", string_data, errs);
            total_size(size, errs);
        }
        _ => {}
    }
}

/// Largest ConfigMap or Secret payload.
const MAX_DATA_SIZE: usize = 1024 * 1024;

fn total_size(size: usize, errs: &mut Vec<FieldError>) {
    if size > MAX_DATA_SIZE {
        errs.push(FieldError::invalid(
            "data",
            format!("{size} bytes"),
            format!("Too long: must have at most {MAX_DATA_SIZE} bytes"),
        ));
    }
}

/// Check ConfigMap/Secret keys under `field`; returns the summed value sizes.
fn data_keys<'a>(
    field: &str,
    entries: impl Iterator<Item = (&'a String, usize)>,
    errs: &mut Vec<FieldError>,
) -> usize {
    let mut size = 0;
    for (k, len) in entries {
        size += len;
        let path = format!("{field}[{k}]");
        let ok_chars = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !ok_chars {
            errs.push(FieldError::invalid(
                path,
                q(k),
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' \
                 (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ));
        } else if k == "." || k == ".." {
            errs.push(FieldError::invalid(
                path,
                q(k),
                format!("must not be '{k}'"),
            ));
        } else if k.len() > 253 {
            errs.push(FieldError::invalid(
                path,
                q(k),
                "must be no more than 253 characters",
            ));
        }
    }
    size
}

const IPV6_ONLY: &str = "Selur clusters are IPv6-only";

fn validate_service(s: &Service, errs: &mut Vec<FieldError>) {
    let default = ServiceSpec::default();
    let spec = s.spec.as_ref().unwrap_or(&default);
    let types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    one_of("spec.type", spec.type_.as_deref(), &types, errs);
    let external = spec.type_.as_deref() == Some("ExternalName");
    let headless = spec.cluster_ip.as_deref() == Some("None");
    if external && spec.external_name.as_deref().is_none_or(str::is_empty) {
        errs.push(FieldError::required(
            "spec.externalName",
            "the DNS name this service aliases",
        ));
    }
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && !external && !headless {
        errs.push(FieldError::required(
            "spec.ports",
            "add at least one port (e.g. port: 80, targetPort: 8080)",
        ));
    }
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        in_range(&format!("{pp}.port"), Some(p.port), 1, 65535, errs);
        match p.name.as_deref().filter(|n| !n.is_empty()) {
            None if ports.len() > 1 => errs.push(FieldError::required(
                format!("{pp}.name"),
                "each port must be named when a service has more than one",
            )),
            None => {}
            Some(n) => {
                push_msgs(&format!("{pp}.name"), n, super::iana_svc_name(n), errs);
                if !names.insert(n) {
                    errs.push(FieldError::duplicate(format!("{pp}.name"), q(n)));
                }
            }
        }
        one_of(
            &format!("{pp}.protocol"),
            p.protocol.as_deref(),
            &["TCP", "UDP", "SCTP"],
            errs,
        );
        if let Some(tp) = &p.target_port {
            port_num_or_name(&format!("{pp}.targetPort"), tp, errs);
        }
        if p.node_port != Some(0) {
            in_range(&format!("{pp}.nodePort"), p.node_port, 1, 65535, errs);
        }
    }
    let families = spec.ip_families.as_deref().unwrap_or_default();
    for (i, f) in families.iter().enumerate().filter(|(_, f)| *f != "IPv6") {
        let mut e = FieldError::not_supported(format!("spec.ipFamilies[{i}]"), f, &["IPv6"]);
        e.detail = format!("{IPV6_ONLY}; remove ipFamilies or set [IPv6]");
        errs.push(e);
    }
    if families.len() > 1 {
        errs.push(FieldError::invalid(
            "spec.ipFamilies",
            serde_json::to_string(families).unwrap_or_default(),
            format!("may specify no more than one IP family; {IPV6_ONLY}, set [IPv6]"),
        ));
    }
    if let Some(policy) = spec
        .ip_family_policy
        .as_deref()
        .filter(|p| *p != "SingleStack")
    {
        let mut e = FieldError::not_supported("spec.ipFamilyPolicy", policy, &["SingleStack"]);
        e.detail = format!("{IPV6_ONLY}; remove ipFamilyPolicy or set SingleStack");
        errs.push(e);
    }
    if let Some(ip) = spec.cluster_ip.as_deref() {
        cluster_ip("spec.clusterIP", ip, errs);
    }
    for (i, ip) in spec.cluster_ips.iter().flatten().enumerate() {
        cluster_ip(&format!("spec.clusterIPs[{i}]"), ip, errs);
    }
    one_of(
        "spec.sessionAffinity",
        spec.session_affinity.as_deref(),
        &["ClientIP", "None"],
        errs,
    );
}

/// Empty (allocate one), `None` (headless) or an IPv6 address.
fn cluster_ip(path: &str, ip: &str, errs: &mut Vec<FieldError>) {
    if ip.is_empty() || ip == "None" || ip.parse::<Ipv6Addr>().is_ok() {
        return;
    }
    let detail = if ip.parse::<Ipv4Addr>().is_ok() {
        format!("{IPV6_ONLY}; use an IPv6 address, \"None\" for a headless service, or leave clusterIP unset to have one allocated")
    } else {
        "must be a valid IP address (e.g. 2001:db8::ffff), \"None\", or empty".to_string()
    };
    errs.push(FieldError::invalid(path, q(ip), detail));
}

/// A Service's allocated clusterIP may not change, nor be cleared.
pub(super) fn validate_service_update(old: &Service, new: &Service, errs: &mut Vec<FieldError>) {
    let ip = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|s| s.cluster_ip.clone())
            .unwrap_or_default()
    };
    let (o, n) = (ip(old), ip(new));
    if !o.is_empty() && o != n {
        errs.push(FieldError::invalid(
            "spec.clusterIP",
            q(&n),
            format!("field is immutable; keep the allocated value {}", q(&o)),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_has, errors, object};
    use super::super::validate_update;
    use serde_json::{json, Value};

    fn service(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn services_are_ipv6_only() {
        let errs = errors(service(
            json!({"ports": [{"port": 80}], "ipFamilies": ["IPv4"],
                                         "ipFamilyPolicy": "PreferDualStack", "clusterIP": "10.0.0.1"}),
        ));
        assert_has(
            &errs,
            "spec.ipFamilies[0]: Unsupported value: \"IPv4\": supported values: \"IPv6\": Selur clusters are IPv6-only; remove ipFamilies or set [IPv6]",
        );
        assert_has(
            &errs,
            "spec.ipFamilyPolicy: Unsupported value: \"PreferDualStack\"",
        );
        assert_has(
            &errs,
            "spec.clusterIP: Invalid value: \"10.0.0.1\": Selur clusters are IPv6-only",
        );
        assert!(errors(service(
            json!({"ports": [{"port": 80}], "clusterIP": "fd00::10"})
        ))
        .is_empty());
        assert!(errors(service(json!({"clusterIP": "None"}))).is_empty());
    }

    #[test]
    fn service_ports() {
        let errs = errors(service(
            json!({"type": "Internal", "sessionAffinity": "Sticky", "ports": [
                {"port": 0, "protocol": "ICMP"},
                {"name": "http", "port": 80, "targetPort": "HTTP"},
                {"name": "http", "port": 81, "targetPort": 0},
            ]}),
        ));
        assert_has(&errs, "spec.type: Unsupported value: \"Internal\"");
        assert_has(&errs, "spec.sessionAffinity: Unsupported value: \"Sticky\"");
        assert_has(&errs, "spec.ports[0].port: Invalid value: 0");
        assert_has(&errs, "spec.ports[0].name: Required value");
        assert_has(&errs, "spec.ports[0].protocol: Unsupported value: \"ICMP\"");
        assert_has(&errs, "spec.ports[1].targetPort: Invalid value: \"HTTP\"");
        assert_has(&errs, "spec.ports[2].name: Duplicate value: \"http\"");
        assert_has(&errs, "spec.ports[2].targetPort: Invalid value: 0");
        assert_has(&errors(service(json!({}))), "spec.ports: Required value");
        assert!(errors(service(
            json!({"type": "ExternalName", "externalName": "db.example.com"})
        ))
        .is_empty());
    }

    #[test]
    fn cluster_ip_is_immutable() {
        let old = object(service(
            json!({"ports": [{"port": 80}], "clusterIP": "fd00::1"}),
        ));
        let new = object(service(
            json!({"ports": [{"port": 8080}], "clusterIP": "fd00::2"}),
        ));
        let errs: Vec<String> = validate_update(&old, &new)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errs, ["spec.clusterIP: Invalid value: \"fd00::2\": field is immutable; keep the allocated value \"fd00::1\""]);
        assert!(validate_update(&old, &old).is_empty());
    }

    #[test]
    fn quotas_limits_priorities_and_data_keys() {
        let rq = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
                        "spec": {"hard": {"pods": "-1", "requests.cpu": "lots"}}});
        let errs = errors(rq);
        assert_has(
            &errs,
            "spec.hard[pods]: Invalid value: \"-1\": must be greater than or equal to 0",
        );
        assert_has(&errs, "spec.hard[requests.cpu]: Invalid value: \"lots\"");
        let lr = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "l"},
                        "spec": {"limits": [{"type": "Node", "max": {"cpu": "2x"}}]}});
        let errs = errors(lr);
        assert_has(&errs, "spec.limits[0].type: Unsupported value: \"Node\"");
        assert_has(&errs, "spec.limits[0].max[cpu]: Invalid value: \"2x\"");
        let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                        "metadata": {"name": "p"}, "value": 2_000_000_000});
        assert_has(
            &errors(pc),
            "value: Invalid value: 2000000000: must be less than or equal to 1000000000",
        );
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                        "data": {"a b": "1", "..": "2", "k": "3"}, "binaryData": {"k": "aGk="}});
        let errs = errors(cm);
        assert_has(
            &errs,
            "data[a b]: Invalid value: \"a b\": a valid config key",
        );
        assert_has(&errs, "data[..]: Invalid value: \"..\": must not be '..'");
        assert_has(
            &errs,
            "data[k]: Invalid value: \"k\": duplicate of key present in binaryData",
        );
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                            "stringData": {"ok.key": "v", "bad/key": "v"}});
        assert_eq!(errors(secret).len(), 1);
    }
}
