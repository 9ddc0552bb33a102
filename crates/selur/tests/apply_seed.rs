//! Every object manifest of the seed applies as written, shows back with
//! server-filled metadata and a status, and re-applies as `unchanged`.

mod common;

use common::{examples, stdout, Server};

const SEED: &[(&str, &str, &str)] = &[
    ("pod-microservices.yaml", "pod", "microservices-pod"),
    ("daemonset-vordr.yaml", "daemonset", "vordr-monitor"),
    ("hpa-lago-grey-app.yaml", "hpa", "lago-grey-app"),
    ("resourcequota-compute.yaml", "quota", "compute-resources"),
    (
        "psp-lago-grey-restricted.yaml",
        "psp",
        "lago-grey-restricted",
    ),
    (
        "virtualservice-lago-grey.yaml",
        "virtualservice",
        "lago-grey-service",
    ),
    (
        "servicemonitor-lago-grey.yaml",
        "servicemonitor",
        "lago-grey-metrics",
    ),
    ("deployment-web-service.yaml", "deploy", "web-service"),
    ("job-data-processing.yaml", "job", "data-processing"),
    ("cronjob-nightly-backup.yaml", "cj", "nightly-backup"),
];

#[test]
fn each_seed_manifest_applies_and_reapplies_unchanged() {
    // No scheduler: a binding would bump the pod's resourceVersion under the test.
    let s = Server::start(&["--disable-scheduler"]);
    for (file, kind, name) in SEED {
        let path = examples().join("seed").join(file);
        let out = s.ok(&["apply", "-f", path.to_str().unwrap()]);
        assert!(out.contains("created"), "{file}: {out}");
        let obj = s.get_json(&[kind, name]);
        let meta = &obj["metadata"];
        assert_eq!(meta["name"], *name);
        assert!(
            meta["uid"].as_str().is_some_and(|u| u.len() == 36),
            "{file}: uid"
        );
        assert!(
            meta["creationTimestamp"].is_string(),
            "{file}: creationTimestamp"
        );
        assert!(
            meta["resourceVersion"].is_string(),
            "{file}: resourceVersion"
        );
        assert_eq!(meta["generation"], 1, "{file}: generation");
        assert!(obj.get("status").is_some(), "{file}: status field present");
        // Controllers write status and annotations (a Deployment's revision)
        // right after a create: let them settle before the no-op apply.
        let mut rv = meta["resourceVersion"].clone();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let now = s.get_json(&[kind, name])["metadata"]["resourceVersion"].clone();
            if now == rv {
                break;
            }
            rv = now;
        }
        let again = s.ok(&["apply", "-f", path.to_str().unwrap()]);
        assert!(again.contains("unchanged"), "{file}: {again}");
        assert_eq!(
            s.get_json(&[kind, name])["metadata"]["resourceVersion"],
            rv,
            "{file}: RV bumped by no-op apply"
        );
    }
}

#[test]
fn multi_document_seed_file_applies_and_yaml_shows_metadata() {
    // No scheduler: a binding would bump the pod's resourceVersion under the test.
    let s = Server::start(&["--disable-scheduler"]);
    let path = examples().join("seed.yaml");
    let out = s.ok(&["apply", "-f", path.to_str().unwrap()]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" created")).count(),
        10,
        "{out}"
    );
    assert!(out.contains("deployment.apps/web-service created"), "{out}");
    assert!(
        out.contains("horizontalpodautoscaler.autoscaling/lago-grey-app created"),
        "{out}"
    );
    let yaml = s.ok(&["get", "deploy", "web-service", "-o", "yaml"]);
    for needle in [
        "uid:",
        "resourceVersion:",
        "creationTimestamp:",
        "namespace: default",
        "status:",
        "imagePullPolicy: IfNotPresent",
        "kubectl.kubernetes.io/last-applied-configuration",
    ] {
        assert!(yaml.contains(needle), "missing {needle} in\n{yaml}");
    }
    let again = s.ok(&["apply", "-f", path.to_str().unwrap()]);
    assert_eq!(
        again.lines().filter(|l| l.ends_with(" unchanged")).count(),
        10,
        "{again}"
    );
    // The table view lists what was applied.
    let pods = stdout(&s.selur(&["get", "po"]));
    assert!(pods.contains("microservices-pod"), "{pods}");
    let psp = s.ok(&["get", "psp", "-o", "name"]);
    assert_eq!(psp.trim(), "podsecuritypolicy.policy/lago-grey-restricted");
    // Defaults the PSP gets for the strategies the seed leaves out.
    let p = s.get_json(&["psp", "lago-grey-restricted"]);
    assert_eq!(p["spec"]["runAsUser"]["rule"], "MustRunAsNonRoot");
    assert_eq!(p["spec"]["fsGroup"]["rule"], "RunAsAny");
}
