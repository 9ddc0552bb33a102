//! Helpers shared by the registry tests.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use selur_api::kinds::{self, ResourceKind};
use selur_store::{SqliteOptions, SqliteStore};

use super::{DeleteOptions, Registry};
use crate::admission::Admission;
use crate::clock::ManualClock;

pub(super) fn bound(node: &str, phase: &str, own_grace: Option<i64>) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": phase}});
    if let Some(g) = own_grace {
        p["spec"]["terminationGracePeriodSeconds"] = json!(g);
    }
    p
}

pub(super) async fn registry() -> (tempfile::TempDir, Registry, Arc<ManualClock>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).expect("store"));
    let start: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().expect("time");
    let clock = Arc::new(ManualClock::new(start));
    let reg = Registry::new(store, Admission::default(), clock.clone());
    reg.ensure_namespace("default").await.expect("namespace");
    (dir, reg, clock)
}

pub(super) fn pod_kind() -> &'static ResourceKind {
    kinds::by_api_version_kind("v1", "Pod").expect("pod kind")
}

pub(super) async fn add_node(reg: &Registry, name: &str) {
    let nk = kinds::by_api_version_kind("v1", "Node").expect("node kind");
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    reg.create(nk, None, node, false).await.expect("node");
}

pub(super) async fn add_pod(reg: &Registry, name: &str, node: &str, finalizers: &[&str]) -> Value {
    let mut p = bound(node, "Running", Some(20));
    p["metadata"]["name"] = json!(name);
    if !finalizers.is_empty() {
        p["metadata"]["finalizers"] = json!(finalizers);
    }
    reg.create(pod_kind(), Some("default"), p, false)
        .await
        .expect("pod")
}

pub(super) fn grace(opts_grace: Option<i64>) -> DeleteOptions {
    DeleteOptions {
        grace_period_seconds: opts_grace,
        ..Default::default()
    }
}
