//! CronJob and Job timing on a real server (store, API, controllers) whose
//! clock the test drives (`ServerConfig::clock` = `ManualClock`): minute
//! boundaries, `concurrencyPolicy: Forbid`, a Job's `activeDeadlineSeconds`
//! and `ttlSecondsAfterFinished`, a node's heartbeat grace, without waiting
//! wall-clock minutes. There
//! is no node: the test plays the kubelet by setting pod phases through the
//! status subresource.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeZone;
use selur_client::Client;
use selur_server::clock::ManualClock;
use selur_server::{serve_with, ServerConfig};
use serde_json::{json, Value};

struct TestServer {
    client: Client,
    clock: Arc<ManualClock>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start(at: &str) -> TestServer {
        Self::start_with(at, |_| {}).await
    }

    async fn start_with(at: &str, tune: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let start = chrono::DateTime::parse_from_rfc3339(at)
            .expect("start time")
            .with_timezone(&chrono::Utc);
        let clock = Arc::new(ManualClock::new(start));
        let mut config = ServerConfig::new(
            dir.path().to_path_buf(),
            "127.0.0.1:0".parse().expect("addr"),
        );
        config.clock = clock.clone();
        config.scheduler = None;
        tune(&mut config);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let res = serve_with(
                config,
                async {
                    let _ = stop_rx.await;
                },
                move |a| {
                    let _ = addr_tx.send(a);
                },
            )
            .await;
            if let Err(e) = res {
                panic!("server failed: {e}");
            }
        });
        let addr = tokio::time::timeout(Duration::from_secs(20), addr_rx)
            .await
            .expect("server listening in time")
            .expect("address");
        let client = Client::from_url(&format!("http://{addr}")).expect("client");
        TestServer {
            client,
            clock,
            stop: Some(stop_tx),
            task: Some(task),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
    }

    async fn list(&self, path: &str) -> Vec<Value> {
        let v = self.client.get(path).await.expect("list");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    async fn jobs_of(&self, cronjob: &str) -> Vec<Value> {
        self.list("/apis/batch/v1/namespaces/default/jobs")
            .await
            .into_iter()
            .filter(|j| j["metadata"]["ownerReferences"][0]["name"] == cronjob)
            .collect()
    }

    async fn pods_of(&self, job: &str) -> Vec<Value> {
        self.list(&format!(
            "/api/v1/namespaces/default/pods?labelSelector=job-name%3D{job}"
        ))
        .await
    }

    /// Play the kubelet: set a pod's phase.
    async fn set_phase(&self, pod: &Value, phase: &str) {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let mut status = json!({"phase": phase});
        if phase == "Succeeded" || phase == "Failed" {
            let code = if phase == "Succeeded" { 0 } else { 1 };
            status["containerStatuses"] = json!([{"name": "c", "image": "x", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "reason": if code == 0 {"Completed"} else {"Error"}}}}]);
        }
        self.client
            .merge_patch(
                &format!("/api/v1/namespaces/default/pods/{name}/status"),
                &json!({ "status": status }),
            )
            .await
            .expect("pod status");
    }

    async fn create(&self, path: &str, obj: Value) {
        self.client.post(path, &obj).await.expect("create");
    }
}

/// Poll `f` until it gives `Some` (the controllers act within milliseconds
/// of a clock jump; 20 s only bounds a broken build).
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cronjob(name: &str, policy: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
        "spec": {"schedule": "*/1 * * * *", "concurrencyPolicy": policy,
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "localhost/rt:1"}]}}}}}})
}

fn condition(o: &Value, t: &str) -> bool {
    o["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == t && c["status"] == "True")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjobs_run_at_each_minute_of_the_servers_clock_and_forbid_skips_while_one_runs() {
    let s = TestServer::start("2030-01-01T00:00:30Z").await;
    let cj_path = "/apis/batch/v1/namespaces/default/cronjobs";
    s.create(cj_path, cronjob("quick", "Allow")).await;
    s.create(cj_path, cronjob("slow", "Forbid")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        s.jobs_of("quick").await.is_empty(),
        "a Job before its minute"
    );

    // 00:01:00: both create a Job named for the minute.
    s.advance(30);
    let minute = chrono::Utc
        .with_ymd_and_hms(2030, 1, 1, 0, 1, 0)
        .single()
        .expect("time");
    let first = eventually("the first minute's Jobs", || async {
        let q = s.jobs_of("quick").await;
        (q.len() == 1 && s.jobs_of("slow").await.len() == 1).then(|| q[0].clone())
    })
    .await;
    assert_eq!(
        first["metadata"]["name"],
        format!("quick-{}", minute.timestamp() / 60)
    );
    assert_eq!(
        first["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        "2030-01-01T00:01:00Z"
    );

    // quick's pod succeeds: its Job completes; slow's keeps running.
    let quick_job = first["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pod = eventually("quick's pod", || async {
        s.pods_of(&quick_job).await.pop()
    })
    .await;
    s.set_phase(&pod, "Succeeded").await;
    let slow_job = s.jobs_of("slow").await[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let slow_pod = eventually("slow's pod", || async { s.pods_of(&slow_job).await.pop() }).await;
    s.set_phase(&slow_pod, "Running").await;
    eventually("quick's Job completes", || async {
        let j = s
            .client
            .get(&format!(
                "/apis/batch/v1/namespaces/default/jobs/{quick_job}"
            ))
            .await
            .ok()?;
        condition(&j, "Complete").then_some(())
    })
    .await;
    let cj = eventually("quick's lastSuccessfulTime", || async {
        let c = s.client.get(&format!("{cj_path}/quick")).await.ok()?;
        c["status"]["lastSuccessfulTime"].is_string().then_some(c)
    })
    .await;
    assert_eq!(cj["status"]["lastScheduleTime"], "2030-01-01T00:01:00Z");

    // 00:02:00: quick runs again; slow (Forbid, its Job still running) does not.
    s.advance(60);
    eventually("quick's second Job", || async {
        (s.jobs_of("quick").await.len() == 2).then_some(())
    })
    .await;
    let events = eventually("JobAlreadyActive", || async {
        let ev = s.list("/api/v1/namespaces/default/events").await;
        ev.iter()
            .any(|e| e["reason"] == "JobAlreadyActive" && e["involvedObject"]["name"] == "slow")
            .then_some(ev)
    })
    .await;
    assert!(!events.is_empty());
    assert_eq!(s.jobs_of("slow").await.len(), 1, "Forbid skipped the run");
    let slow = s
        .client
        .get(&format!("{cj_path}/slow"))
        .await
        .expect("slow");
    assert_eq!(slow["status"]["active"].as_array().map(Vec::len), Some(1));
    assert_eq!(slow["status"]["lastScheduleTime"], "2030-01-01T00:01:00Z");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_active_deadline_and_ttl_run_out_on_the_servers_clock() {
    let s = TestServer::start("2030-01-01T00:00:00Z").await;
    let jobs = "/apis/batch/v1/namespaces/default/jobs";
    s.create(
        jobs,
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "deadline"},
            "spec": {"activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 3600,
                "template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "localhost/rt:1"}]}}}}),
    )
    .await;
    let pod = eventually("the Job's pod", || async {
        s.pods_of("deadline").await.pop()
    })
    .await;
    s.set_phase(&pod, "Running").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let j = s
        .client
        .get(&format!("{jobs}/deadline"))
        .await
        .expect("job");
    assert!(!condition(&j, "Failed"), "failed before its deadline: {j}");

    // Ten minutes later the deadline has passed: Failed, DeadlineExceeded.
    s.advance(601);
    let j = eventually("DeadlineExceeded", || async {
        let j = s.client.get(&format!("{jobs}/deadline")).await.ok()?;
        condition(&j, "Failed").then_some(j)
    })
    .await;
    let reason = j["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Failed")
        .map(|c| c["reason"].clone());
    assert_eq!(reason, Some(json!("DeadlineExceeded")), "{j}");

    // An hour after it finished, the TTL deletes it.
    s.advance(3601);
    eventually("the TTL deletes the Job", || async {
        s.client
            .get(&format!("{jobs}/deadline"))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_heartbeats_turns_unreachable_when_the_servers_clock_passes_its_grace() {
    // A grace of 400 s: the lifecycle pass's own period (a quarter of it) is
    // far beyond this test's bounds, so only the clock's jump can trigger it.
    let s = TestServer::start_with("2030-01-01T00:00:00Z", |c| {
        c.node_grace = Duration::from_secs(400);
    })
    .await;
    s.create(
        "/api/v1/nodes",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "quiet"}}),
    )
    .await;
    let unreachable = |n: &Value| {
        n["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable")
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = s.client.get("/api/v1/nodes/quiet").await.expect("node");
    assert!(!unreachable(&n), "unreachable within its grace: {n}");
    s.advance(401);
    let n = eventually("the unreachable taint", || async {
        let n = s.client.get("/api/v1/nodes/quiet").await.ok()?;
        unreachable(&n).then_some(n)
    })
    .await;
    let ready = n["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| c["status"].clone());
    assert_eq!(ready, Some(json!("Unknown")), "{n}");
    s.stop().await;
}
