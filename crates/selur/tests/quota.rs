//! ResourceQuota and LimitRange admission over the REST API: the seed's
//! quota (in a namespace of its own), racing creates for the last slots,
//! release on delete, the "must specify" refusal and LimitRange defaults.

mod common;

use std::time::{Duration, Instant};

use common::{call, examples, Server};
use selur_client::Method;
use serde_json::{json, Value};

const NS: &str = "quota-test";

fn pod(name: &str, resources: bool) -> Value {
    let mut c = json!({"name": "web", "image": "ghcr.io/hyperpolymath/lago-grey:minimal"});
    if resources {
        c["resources"] = json!({"requests": {"cpu": "10m", "memory": "8Mi"},
                                "limits": {"cpu": "20m", "memory": "16Mi"}});
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [c]}})
}

async fn create(url: &str, p: &Value) -> (u16, Value) {
    call(
        url,
        Method::POST,
        &format!("/api/v1/namespaces/{NS}/pods"),
        Some(("application/json", p)),
    )
    .await
}

async fn quota(url: &str) -> Value {
    call(
        url,
        Method::GET,
        &format!("/api/v1/namespaces/{NS}/resourcequotas/compute-resources"),
        None,
    )
    .await
    .1
}

/// The namespace and the seed's quota in it, as written.
async fn setup(s: &Server) {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
    let (code, body) = call(
        &s.url,
        Method::POST,
        "/api/v1/namespaces",
        Some(("application/json", &ns)),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let seed = examples().join("seed/resourcequota-compute.yaml");
    s.ok(&["apply", "-n", NS, "-f", seed.to_str().unwrap_or_default()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_quota_lets_exactly_the_free_slots_through_and_releases_on_delete() {
    // No scheduler and no agent: quota counts pods whether they run or not.
    let s = Server::start(&["--disable-scheduler", "--disable-agent"]);
    setup(&s).await;

    // A pod that states nothing is refused with Kubernetes' message.
    let (code, body) = create(&s.url, &pod("bare", false)).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods \"bare\" is forbidden: failed quota: compute-resources: must specify \
         limits.cpu for: web; limits.memory for: web; requests.cpu for: web; requests.memory for: web"
    );

    for i in 0..95 {
        let (code, body) = create(&s.url, &pod(&format!("p{i}"), true)).await;
        assert_eq!(code, 201, "{body}");
    }
    let racers = (0..20).map(|i| {
        let url = s.url.clone();
        tokio::spawn(async move { create(&url, &pod(&format!("race{i}"), true)).await })
    });
    let mut won = 0;
    for r in futures_join(racers).await {
        let (code, body) = r;
        match code {
            201 => won += 1,
            403 => assert!(
                body["message"].as_str().unwrap_or("").ends_with(
                    "exceeded quota: compute-resources, requested: pods=1, used: pods=100, limited: pods=100"
                ),
                "{body}"
            ),
            _ => panic!("unexpected {code}: {body}"),
        }
    }
    assert_eq!(won, 5, "exactly the free slots are taken");
    let q = quota(&s.url).await;
    assert_eq!(q["status"]["used"]["pods"], "100", "{q}");
    assert_eq!(q["status"]["used"]["requests.cpu"], "1", "{q}");
    assert_eq!(q["status"]["hard"]["pods"], "100", "{q}");

    // Deleting one releases its slot (the quota controller recounts).
    let (code, _) = call(
        &s.url,
        Method::DELETE,
        &format!("/api/v1/namespaces/{NS}/pods/p0"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let start = Instant::now();
    loop {
        let (code, body) = create(&s.url, &pod("after-delete", true)).await;
        if code == 201 {
            break;
        }
        assert_eq!(code, 403, "{body}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "slot never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _) = create(&s.url, &pod("one-too-many", true)).await;
    assert_eq!(code, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limitrange_defaults_satisfy_the_quota_and_max_is_enforced() {
    let s = Server::start(&["--disable-scheduler", "--disable-agent"]);
    setup(&s).await;
    let lr = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults"},
        "spec": {"limits": [{"type": "Container",
            "default": {"cpu": "200m", "memory": "64Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "32Mi"},
            "max": {"cpu": "1"}}]}});
    let (code, body) = call(
        &s.url,
        Method::POST,
        &format!("/api/v1/namespaces/{NS}/limitranges"),
        Some(("application/json", &lr)),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = create(&s.url, &pod("bare", false)).await;
    assert_eq!(code, 201, "{body}");
    let res = &body["spec"]["containers"][0]["resources"];
    assert_eq!(res["limits"], json!({"cpu": "200m", "memory": "64Mi"}));
    assert_eq!(res["requests"], json!({"cpu": "100m", "memory": "32Mi"}));
    let q = quota(&s.url).await;
    assert_eq!(q["status"]["used"]["limits.cpu"], "200m", "{q}");

    let mut big = pod("big", false);
    big["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "2"}});
    let (code, body) = create(&s.url, &big).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
    );
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
