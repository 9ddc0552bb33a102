//! PodSpec validation (at `spec` for a Pod, `spec.template.spec` for templates,
//! `spec.jobTemplate.spec.template.spec` for a CronJob): containers, ports,
//! resources, env, volume mounts, restart policies, DNS policy and security
//! contexts. Probes are in `probes`, volumes in `volumes`, updates in `pod_update`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use super::probes::{validate_handler, validate_probe};
use super::volumes::validate_volumes;
use super::{in_range, non_negative, one_of, positive, push_msgs, q};
use crate::FieldError;

/// Validate a PodSpec found at `path`.
pub(super) fn validate_pod_spec(spec: &PodSpec, path: &str, errs: &mut Vec<FieldError>) {
    let volumes = validate_volumes(spec.volumes.as_deref().unwrap_or_default(), path, errs);
    if spec.containers.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.containers"),
            "a pod needs at least one container with a name and an image",
        ));
    }
    let mut names = BTreeSet::new();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let p = format!("{path}.initContainers[{i}]");
        validate_container(c, &p, true, &volumes, &mut names, errs);
    }
    for (i, c) in spec.containers.iter().enumerate() {
        let p = format!("{path}.containers[{i}]");
        validate_container(c, &p, false, &volumes, &mut names, errs);
    }
    one_of(
        &format!("{path}.restartPolicy"),
        spec.restart_policy.as_deref(),
        &["Always", "OnFailure", "Never"],
        errs,
    );
    one_of(
        &format!("{path}.dnsPolicy"),
        spec.dns_policy.as_deref(),
        &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        errs,
    );
    if let Some(sc) = &spec.security_context {
        let p = format!("{path}.securityContext");
        non_negative(&format!("{p}.runAsUser"), sc.run_as_user, errs);
        non_negative(&format!("{p}.runAsGroup"), sc.run_as_group, errs);
        non_negative(&format!("{p}.fsGroup"), sc.fs_group, errs);
    }
    non_negative(
        &format!("{path}.terminationGracePeriodSeconds"),
        spec.termination_grace_period_seconds,
        errs,
    );
    positive(
        &format!("{path}.activeDeadlineSeconds"),
        spec.active_deadline_seconds,
        errs,
    );
}

fn validate_container(
    c: &Container,
    path: &str,
    init: bool,
    volumes: &BTreeSet<String>,
    names: &mut BTreeSet<String>,
    errs: &mut Vec<FieldError>,
) {
    let name_path = format!("{path}.name");
    if c.name.is_empty() {
        errs.push(FieldError::required(name_path, ""));
    } else {
        push_msgs(&name_path, &c.name, super::dns1123_label(&c.name), errs);
        if !names.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(name_path, q(&c.name)));
        }
    }
    match c.image.as_deref() {
        None | Some("") => errs.push(FieldError::required(format!("{path}.image"), "")),
        Some(image) if image.trim() != image => errs.push(FieldError::invalid(
            format!("{path}.image"),
            q(image),
            "must not have leading or trailing whitespace",
        )),
        Some(_) => {}
    }
    one_of(
        &format!("{path}.imagePullPolicy"),
        c.image_pull_policy.as_deref(),
        &["Always", "IfNotPresent", "Never"],
        errs,
    );
    let mut port_names = BTreeSet::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let pp = format!("{path}.ports[{i}]");
        in_range(
            &format!("{pp}.containerPort"),
            Some(p.container_port),
            1,
            65535,
            errs,
        );
        if p.host_port != Some(0) {
            in_range(&format!("{pp}.hostPort"), p.host_port, 1, 65535, errs);
        }
        if let Some(n) = p.name.as_deref() {
            push_msgs(&format!("{pp}.name"), n, super::iana_svc_name(n), errs);
            if !port_names.insert(n.to_string()) {
                errs.push(FieldError::duplicate(format!("{pp}.name"), q(n)));
            }
        }
        one_of(
            &format!("{pp}.protocol"),
            p.protocol.as_deref(),
            &["TCP", "UDP", "SCTP"],
            errs,
        );
    }
    if let Some(r) = &c.resources {
        validate_resources(r, &format!("{path}.resources"), errs);
    }
    for (i, e) in c.env.iter().flatten().enumerate() {
        validate_env(e, &format!("{path}.env[{i}]"), errs);
    }
    let mut mount_paths = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mp = format!("{path}.volumeMounts[{i}]");
        if m.name.is_empty() {
            errs.push(FieldError::required(format!("{mp}.name"), ""));
        } else if !volumes.contains(&m.name) {
            errs.push(FieldError::invalid(
                format!("{mp}.name"),
                q(&m.name),
                "not found; add a volume with this name to spec.volumes",
            ));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(format!("{mp}.mountPath"), ""));
        } else if !m.mount_path.starts_with('/') {
            errs.push(FieldError::invalid(
                format!("{mp}.mountPath"),
                q(&m.mount_path),
                "must be an absolute path",
            ));
        } else if !mount_paths.insert(m.mount_path.clone()) {
            errs.push(FieldError::invalid(
                format!("{mp}.mountPath"),
                q(&m.mount_path),
                "must be unique",
            ));
        }
    }
    let sidecar = init && c.restart_policy.as_deref() == Some("Always");
    let probes = [
        ("livenessProbe", &c.liveness_probe, true),
        ("readinessProbe", &c.readiness_probe, false),
        ("startupProbe", &c.startup_probe, true),
    ];
    for (field, probe, must_succeed_once) in probes {
        let Some(probe) = probe else { continue };
        let pp = format!("{path}.{field}");
        if init && !sidecar {
            errs.push(FieldError::forbidden(
                pp,
                "may not be set for init containers without restartPolicy=Always",
            ));
        } else {
            validate_probe(probe, &pp, must_succeed_once, errs);
        }
    }
    if let Some(lc) = &c.lifecycle {
        if let Some(h) = &lc.post_start {
            validate_handler(h, &format!("{path}.lifecycle.postStart"), errs);
        }
        if let Some(h) = &lc.pre_stop {
            validate_handler(h, &format!("{path}.lifecycle.preStop"), errs);
        }
    }
    if let Some(rp) = c.restart_policy.as_deref() {
        let rpp = format!("{path}.restartPolicy");
        if !init {
            errs.push(FieldError::forbidden(
                rpp,
                "may not be set for non-init containers; use it on an initContainer to make a sidecar",
            ));
        } else if rp != "Always" {
            errs.push(FieldError::not_supported(rpp, rp, &["Always"]));
        }
    }
    if let Some(sc) = &c.security_context {
        non_negative(
            &format!("{path}.securityContext.runAsUser"),
            sc.run_as_user,
            errs,
        );
        non_negative(
            &format!("{path}.securityContext.runAsGroup"),
            sc.run_as_group,
            errs,
        );
    }
}

/// Quantities parse and are not negative; every request is at most its limit.
fn validate_resources(r: &ResourceRequirements, path: &str, errs: &mut Vec<FieldError>) {
    let limits = super::quantity_map(&format!("{path}.limits"), r.limits.as_ref(), errs);
    let requests = super::quantity_map(&format!("{path}.requests"), r.requests.as_ref(), errs);
    for (name, req) in &requests {
        let Some(lim) = limits.get(name) else {
            continue;
        };
        if req > lim {
            let raw = |m: Option<&BTreeMap<String, K8sQuantity>>| {
                m.and_then(|m| m.get(name))
                    .map(|v| v.0.clone())
                    .unwrap_or_default()
            };
            errs.push(FieldError::invalid(
                format!("{path}.requests"),
                q(&raw(r.requests.as_ref())),
                format!(
                    "must be less than or equal to {name} limit of {}",
                    raw(r.limits.as_ref())
                ),
            ));
        }
    }
}

fn validate_env(e: &EnvVar, path: &str, errs: &mut Vec<FieldError>) {
    if e.name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else if e.name.contains('=') || !e.name.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        errs.push(FieldError::invalid(
            format!("{path}.name"),
            q(&e.name),
            "a valid environment variable name must consist only of printable ASCII characters other than '='",
        ));
    }
    let Some(from) = &e.value_from else { return };
    let vp = format!("{path}.valueFrom");
    let count = [
        from.config_map_key_ref.is_some(),
        from.field_ref.is_some(),
        from.resource_field_ref.is_some(),
        from.secret_key_ref.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if count == 0 {
        errs.push(FieldError::invalid(
            vp.clone(),
            q(""),
            "must specify one of: `configMapKeyRef`, `fieldRef`, `resourceFieldRef` or `secretKeyRef`",
        ));
    } else if count > 1 {
        errs.push(FieldError::invalid(
            vp.clone(),
            q(""),
            "may not have more than one field specified at a time",
        ));
    }
    if e.value.as_deref().is_some_and(|v| !v.is_empty()) {
        errs.push(FieldError::invalid(
            vp,
            q(""),
            "may not be specified when `value` is not empty",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_has, errors, pod};
    use serde_json::json;

    #[test]
    fn containers_and_images_are_required() {
        let mut p = pod("p");
        p["spec"]["containers"] = json!([]);
        assert_eq!(
            errors(p),
            ["spec.containers: Required value: a pod needs at least one container with a name and an image"]
        );
        let mut p = pod("p");
        p["spec"]["containers"] =
            json!([{"name": "a"}, {"name": "a", "image": "x", "imagePullPolicy": "Sometimes"}]);
        let errs = errors(p);
        assert_has(&errs, "spec.containers[0].image: Required value");
        assert_has(&errs, "spec.containers[1].name: Duplicate value: \"a\"");
        assert_has(
            &errs,
            "spec.containers[1].imagePullPolicy: Unsupported value: \"Sometimes\"",
        );
    }

    #[test]
    fn ports_and_resources() {
        let mut p = pod("p");
        p["spec"]["containers"][0]["ports"] = json!([
            {"containerPort": 0, "name": "http"},
            {"containerPort": 80, "hostPort": 70000, "name": "http", "protocol": "ICMP"},
        ]);
        p["spec"]["containers"][0]["resources"] = json!({
            "requests": {"cpu": "300m", "memory": "lots"},
            "limits": {"cpu": "200m"}
        });
        let errs = errors(p);
        assert_has(&errs, "spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive");
        assert_has(
            &errs,
            "spec.containers[0].ports[1].hostPort: Invalid value: 70000",
        );
        assert_has(
            &errs,
            "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
        );
        assert_has(
            &errs,
            "spec.containers[0].ports[1].protocol: Unsupported value: \"ICMP\"",
        );
        assert_has(&errs, "spec.containers[0].resources.requests[memory]: Invalid value: \"lots\": quantities must match");
        assert_has(
            &errs,
            "spec.containers[0].resources.requests: Invalid value: \"300m\": must be less than or equal to cpu limit of 200m",
        );
    }

    #[test]
    fn env_mounts_and_restart_policies() {
        let mut p = pod("p");
        p["spec"]["restartPolicy"] = json!("Sometimes");
        p["spec"]["dnsPolicy"] = json!("Google");
        p["spec"]["terminationGracePeriodSeconds"] = json!(-1);
        p["spec"]["activeDeadlineSeconds"] = json!(0);
        p["spec"]["securityContext"] = json!({"runAsUser": -1});
        let c = &mut p["spec"]["containers"][0];
        c["env"] = json!([{"name": "A=B", "value": "x"}, {"name": "", "valueFrom": {}}]);
        c["volumeMounts"] = json!([{"name": "x", "mountPath": "rel"}]);
        c["restartPolicy"] = json!("Always");
        let errs = errors(p);
        assert_has(&errs, "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"");
        assert_has(&errs, "spec.dnsPolicy: Unsupported value: \"Google\"");
        assert_has(
            &errs,
            "spec.terminationGracePeriodSeconds: Invalid value: -1",
        );
        assert_has(
            &errs,
            "spec.activeDeadlineSeconds: Invalid value: 0: must be greater than 0",
        );
        assert_has(&errs, "spec.securityContext.runAsUser: Invalid value: -1");
        assert_has(
            &errs,
            "spec.containers[0].env[0].name: Invalid value: \"A=B\"",
        );
        assert_has(&errs, "spec.containers[0].env[1].name: Required value");
        assert_has(
            &errs,
            "spec.containers[0].env[1].valueFrom: Invalid value: \"\": must specify one of",
        );
        assert_has(
            &errs,
            "spec.containers[0].volumeMounts[0].name: Invalid value: \"x\": not found; add a volume with this name to spec.volumes",
        );
        assert_has(&errs, "spec.containers[0].volumeMounts[0].mountPath: Invalid value: \"rel\": must be an absolute path");
        assert_has(
            &errs,
            "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers",
        );
    }

    #[test]
    fn sidecar_init_containers_may_restart_always() {
        let mut p = pod("p");
        p["spec"]["initContainers"] = json!([
            {"name": "proxy", "image": "envoy", "restartPolicy": "Always"},
            {"name": "setup", "image": "busybox", "restartPolicy": "Never"},
        ]);
        assert_eq!(
            errors(p),
            ["spec.initContainers[1].restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""]
        );
    }
}
