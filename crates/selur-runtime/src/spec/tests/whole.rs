//! The spec as a whole: metadata, process basics and JSON.

use oci_spec::runtime::Spec;
use serde_json::json;

use super::super::build_spec;
use super::{distroless, input, one};

fn example() -> Spec {
    let p = one(json!({"name": "web", "image": "x", "command": ["/usr/bin/web-server"]}));
    let img = distroless();
    let mut inp = input(&p, &img);
    inp.seccomp = true;
    build_spec(&inp).unwrap()
}

#[test]
fn hostname_annotations_and_cgroup() {
    let s = example();
    assert_eq!(s.hostname().as_deref(), Some("web"));
    let a = s.annotations().clone().unwrap();
    assert_eq!(a["io.kubernetes.pod.name"], "web");
    assert_eq!(a["io.kubernetes.pod.namespace"], "prod");
    assert_eq!(a["io.kubernetes.pod.uid"], "4f1c-uid");
    assert_eq!(a["io.kubernetes.container.name"], "web");
    let linux = s.linux().as_ref().unwrap();
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(std::path::Path::new("/selur-node1/pod4f1c-uid/web"))
    );
    assert!(linux.uid_mappings().is_none());
    assert!(s.hooks().is_none());
}

#[test]
fn serializes_to_json_with_oci_version() {
    let s = example();
    let text = serde_json::to_string(&s).unwrap();
    assert!(text.contains("\"ociVersion\":\"1.1.0\""), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["process"]["terminal"], json!(false));
    assert_eq!(v["process"]["noNewPrivileges"], json!(true));
    assert_eq!(v["process"]["args"], json!(["/usr/bin/web-server"]));
    assert_eq!(v["root"]["readonly"], json!(false));
    assert_eq!(
        v["linux"]["seccomp"]["defaultAction"],
        json!("SCMP_ACT_ALLOW")
    );
    assert!(v["linux"]["maskedPaths"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    // And back: what we write, a runtime (and oci-spec) can read.
    let back: Spec = serde_json::from_str(&text).unwrap();
    assert_eq!(back, s);
}
