//! Shared fixtures for the spec tests; the tests themselves sit in
//! `tests/`, one file per concern.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use super::{build_spec, EtcFiles, SpecError, SpecInput};

mod hostname;
mod mounts;
mod process;
mod resources;
mod security;
mod whole;

/// A pod named `web` in `prod` with the given `spec`.
pub(super) fn pod(spec: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "prod", "uid": "4f1c-uid"},
        "spec": spec,
    }))
    .expect("test pod")
}

/// A pod with one container and no pod-level settings.
pub(super) fn one(container: Value) -> Pod {
    pod(json!({"containers": [container]}))
}

/// An image config with the given `config` section.
pub(super) fn image(config: Value) -> ImageConfiguration {
    serde_json::from_value(json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .expect("test image config")
}

/// An image that runs `/app` as 65532, like a distroless image.
pub(super) fn distroless() -> ImageConfiguration {
    image(json!({"Entrypoint": ["/app"], "User": "65532"}))
}

/// Inputs for the pod's first container.
pub(super) fn input<'a>(pod: &'a Pod, image: &'a ImageConfiguration) -> SpecInput<'a> {
    SpecInput {
        pod,
        container: &pod.spec.as_ref().expect("pod spec").containers[0],
        image,
        rootfs: PathBuf::from("/var/lib/selur/pods/4f1c/web/rootfs"),
        hostname: "web".to_string(),
        netns: Some(PathBuf::from("/run/selur/netns/4f1c")),
        ipcns: None,
        utsns: None,
        cgroups_path: "/selur-node1/pod4f1c-uid/web".to_string(),
        mounts: Vec::new(),
        etc_files: EtcFiles::default(),
        env_resolved: Vec::new(),
        seccomp: false,
        pids_limit: None,
    }
}

/// `build_spec` for the pod's first container with default inputs.
pub(super) fn build(pod: &Pod, image: &ImageConfiguration) -> Result<Spec, SpecError> {
    build_spec(&input(pod, image))
}

/// Like [`build`], for tests that expect success.
pub(super) fn spec(pod: &Pod, image: &ImageConfiguration) -> Spec {
    build(pod, image).expect("spec builds")
}
