use super::*;

fn pod(name: &str, node: &str, phase: &str, ready: bool, created: &str) -> Value {
    json!({"metadata": {"name": name, "creationTimestamp": created},
        "spec": {"nodeName": node},
        "status": {"phase": phase, "conditions": [{"type": "Ready",
            "status": if ready { "True" } else { "False" }, "lastTransitionTime": created}]}})
}

#[test]
fn extra_pods_are_deleted_unscheduled_then_not_ready_then_newest() {
    let mut pods = [
        pod("old-ready", "n1", "Running", true, "2024-01-01T00:00:00Z"),
        pod("new-ready", "n1", "Running", true, "2024-01-01T00:01:00Z"),
        pod("not-ready", "n1", "Running", false, "2024-01-01T00:00:00Z"),
        pod("pending", "n1", "Pending", false, "2024-01-01T00:00:00Z"),
        pod("unscheduled", "", "Pending", false, "2024-01-01T00:00:00Z"),
    ];
    pods.sort_by_key(deletion_rank);
    let names: Vec<_> = pods
        .iter()
        .map(|p| meta_str(p, "name").unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "unscheduled",
            "pending",
            "not-ready",
            "new-ready",
            "old-ready"
        ]
    );
}

#[test]
fn status_counts_ready_available_and_labels() {
    let rs = json!({"metadata": {"generation": 3},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}}},
        "status": {"replicas": 0}});
    let mut a = pod("a", "n", "Running", true, "2024-01-01T00:00:00Z");
    a["metadata"]["labels"] = json!({"app": "web"});
    let b = pod("b", "n", "Running", false, "2024-01-01T00:00:00Z");
    let now = podstate::parse_time(Some(&json!("2024-01-01T00:00:30Z"))).unwrap_or_default();
    let s = status_of(&rs, &[a, b], 60, now, None);
    assert_eq!(s["replicas"], 2);
    assert_eq!(s["fullyLabeledReplicas"], 1);
    assert_eq!(s["readyReplicas"], 1);
    assert_eq!(s["availableReplicas"], 0);
    assert_eq!(s["observedGeneration"], 3);
    assert!(status_changed(&rs, &s));
    let mut same = rs.clone();
    same["status"] = s.clone();
    assert!(!status_changed(&same, &s));
    let failed = status_of(
        &rs,
        &[],
        0,
        now,
        Some(&("FailedCreate", ApiError::forbidden("quota"))),
    );
    assert_eq!(failed["conditions"][0]["type"], "ReplicaFailure");
}

mod with_store {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::admission::{Admission, AdmissionRequest, Charge, QuotaCharger};
    use crate::clock::ManualClock;
    use selur_api::TypedObject;
    use selur_store::{SqliteOptions, SqliteStore};

    /// Refuses pod creates once `budget` is spent (a stand-in for a ResourceQuota).
    struct PodBudget(AtomicUsize);

    #[async_trait::async_trait]
    impl QuotaCharger for PodBudget {
        async fn charge(&self, req: &AdmissionRequest<'_>, _: &TypedObject) -> ApiResult<Charge> {
            if req.kind.kind == "Pod" && req.old.is_none() && !req.dry_run {
                let left = self.0.load(Ordering::SeqCst);
                if left == 0 {
                    return Err(ApiError::forbidden("exceeded quota: pods"));
                }
                self.0.store(left - 1, Ordering::SeqCst);
            }
            Ok(Charge::default())
        }
    }

    async fn setup(
        budget: usize,
    ) -> (
        tempfile::TempDir,
        Arc<Ctx>,
        Arc<ManualClock>,
        Arc<PodBudget>,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).expect("store"));
        let quota = Arc::new(PodBudget(AtomicUsize::new(budget)));
        let mut adm = Admission::default();
        adm.quotas.push(quota.clone());
        let start: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().expect("time");
        let clock = Arc::new(ManualClock::new(start));
        let reg = Registry::new(store, adm, clock.clone());
        reg.ensure_namespace("default").await.expect("namespace");
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3, "minReadySeconds": 10, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}});
        reg.create(
            kind("replicasets").expect("kind"),
            Some("default"),
            rs,
            false,
        )
        .await
        .expect("rs");
        (dir, Ctx::new(reg), clock, quota)
    }

    async fn rs(ctx: &Ctx) -> Value {
        ctx.reg
            .get(kind("replicasets").expect("kind"), Some("default"), "web")
            .await
            .expect("rs")
    }

    #[tokio::test]
    async fn a_refused_create_sets_replica_failure_and_a_retry_recovers() {
        let (_dir, ctx, _clock, quota) = setup(2).await;
        let err = reconcile(ctx.clone(), "default/web".into()).await;
        assert!(err.is_err(), "a refused create is retried with back-off");
        let r = rs(&ctx).await;
        assert_eq!(r["status"]["replicas"], 2);
        assert_eq!(r["status"]["conditions"][0]["type"], "ReplicaFailure");
        assert_eq!(r["status"]["conditions"][0]["reason"], "FailedCreate");
        quota.0.store(10, Ordering::SeqCst);
        reconcile(ctx.clone(), "default/web".into())
            .await
            .expect("reconcile");
        let r = rs(&ctx).await;
        assert_eq!(r["status"]["replicas"], 3);
        assert_eq!(r["status"]["conditions"], json!([]));
        // Idempotent: nothing more to do.
        let rv = r["metadata"]["resourceVersion"].clone();
        reconcile(ctx.clone(), "default/web".into())
            .await
            .expect("reconcile");
        assert_eq!(rs(&ctx).await["metadata"]["resourceVersion"], rv);
    }

    #[tokio::test]
    async fn pods_count_as_available_after_min_ready_seconds_on_the_controller_clock() {
        let (_dir, ctx, clock, _) = setup(10).await;
        reconcile(ctx.clone(), "default/web".into())
            .await
            .expect("reconcile");
        let pod_kind = kind("pods").expect("kind");
        let pods = ctx
            .reg
            .list(pod_kind, Some("default"), &Default::default())
            .await
            .expect("pods");
        let now = rfc3339(ctx.reg.clock.now());
        for p in pods["items"].as_array().into_iter().flatten() {
            let patch = json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
            let name = meta_str(p, "name").unwrap_or("");
            ctx.reg
                .merge(pod_kind, Some("default"), name, &patch, Subresource::Status)
                .await
                .expect("ready");
        }
        let again = reconcile(ctx.clone(), "default/web".into())
            .await
            .expect("reconcile");
        let r = rs(&ctx).await;
        assert_eq!(
            (
                r["status"]["readyReplicas"].clone(),
                r["status"]["availableReplicas"].clone()
            ),
            (json!(3), json!(0))
        );
        assert!(
            again.is_some_and(|d| d.as_secs() == 10),
            "looks again when they become available: {again:?}"
        );
        clock.advance(chrono::Duration::seconds(10));
        reconcile(ctx.clone(), "default/web".into())
            .await
            .expect("reconcile");
        assert_eq!(rs(&ctx).await["status"]["availableReplicas"], 3);
        // Scaling down deletes pods and says so.
        let rs_kind = kind("replicasets").expect("kind");
        ctx.reg
            .merge(
                rs_kind,
                Some("default"),
                "web",
                &json!({"spec": {"replicas": 1}}),
                Subresource::Main,
            )
            .await
            .expect("scale");
        reconcile(ctx.clone(), "default/web".into())
            .await
            .expect("reconcile");
        let left = ctx
            .reg
            .list(pod_kind, Some("default"), &Default::default())
            .await
            .expect("pods");
        assert_eq!(left["items"].as_array().map(Vec::len), Some(1));
    }
}
