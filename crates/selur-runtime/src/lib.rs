//! Selur's container runtime glue.
//!
//! This crate turns what the API says about a container (a pod, one of its
//! containers) plus what the image says about itself (its OCI image config)
//! into an [OCI runtime spec](https://github.com/opencontainers/runtime-spec)
//! (`config.json`) that an OCI runtime such as runc or crun can start.
//!
//! The [`spec`] module is the pure part: [`build_spec`] is a function from
//! inputs to an [`oci_spec::runtime::Spec`] with Kubernetes semantics
//! (command/args against ENTRYPOINT/CMD, `$(VAR)` expansion, security
//! contexts, requests and limits, QoS classes) and Selur's security defaults
//! (no new privileges, a minimal capability set, a default seccomp profile,
//! masked `/proc` paths, no privileged containers, no host namespaces).
//!
//! [`spec`] does not start processes, mount the root file system, write
//! bundles or resolve ConfigMaps, Secrets and volumes: callers do that and
//! hand the results in through [`SpecInput`]. It touches no files and spawns
//! nothing, so it can be tested exhaustively without root.

#![forbid(unsafe_code)]

pub mod cgroups;
pub mod logs;
pub mod restart;
pub mod rootfs;
pub mod runc;
pub mod sandbox;
pub mod shim;
pub mod spec;
pub mod terminal;

pub use spec::{
    build_spec, default_capabilities, default_seccomp, pod_hostname, pod_limits, qos_class,
    truncate_hostname, EtcFiles, MountKind, QosClass, SpecError, SpecInput, VolumeMount,
    DEFAULT_PATH, DEFAULT_PIDS_LIMIT, MAX_HOSTNAME_LEN,
};
