//! Services on a real in-process server (store, API, controllers): clusterIP
//! and nodePort allocation under concurrency and across a restart, the
//! `default/kubernetes` Service, and EndpointSlices/Endpoints following pod
//! readiness. There is no node: the test plays the kubelet by writing pod
//! status (podIP, Ready) through the API.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use selur_client::{Client, ClientError, Method};
use selur_server::{serve_with, ServerConfig};
use serde_json::{json, Value};

const SVCS: &str = "/api/v1/namespaces/default/services";

struct TestServer {
    client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    async fn start(dir: &Path, tune: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut config =
            ServerConfig::new(PathBuf::from(dir), "127.0.0.1:0".parse().expect("addr"));
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
            stop: Some(stop_tx),
            task: Some(task),
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

    async fn create_svc(&self, body: Value) -> Result<Value, ClientError> {
        self.client.post(SVCS, &body).await
    }

    async fn delete(&self, path: &str) {
        self.client
            .request(Method::DELETE, path, &[], None)
            .await
            .expect("delete");
    }
}

fn svc(name: &str, spec: Value) -> Value {
    let mut s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"ports": [{"port": 80}]}});
    if let (Some(o), Some(e)) = (s["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    s
}

fn ip_of(v: &Value) -> String {
    v["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn api_error(e: &ClientError) -> (u16, String) {
    match e {
        ClientError::Api { code, message, .. } => (*code, message.clone()),
        other => panic!("not an API error: {other}"),
    }
}

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
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_creates_get_distinct_cluster_ips_in_the_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path(), |_| {}).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = s.client.clone();
        tasks.spawn(async move { client.post(SVCS, &svc(&format!("s{i}"), json!({}))).await });
    }
    let mut ips = BTreeSet::new();
    while let Some(r) = tasks.join_next().await {
        let v = r.expect("task").expect("create");
        assert_eq!(v["spec"]["clusterIPs"], json!([ip_of(&v)]));
        assert_eq!(v["spec"]["ipFamilies"], json!(["IPv6"]));
        assert_eq!(v["spec"]["ipFamilyPolicy"], "SingleStack");
        ips.insert(ip_of(&v));
    }
    assert_eq!(ips.len(), 200, "every Service has its own IP");
    let range: selur_api::network::Ipv6Cidr = "fd01::/112".parse().expect("cidr");
    for ip in &ips {
        let a: Ipv6Addr = ip.parse().expect("an IPv6 clusterIP");
        assert!(range.contains(a), "{ip} in the Service range");
        assert!(
            !["fd01::", "fd01::1", "fd01::a"].contains(&ip.as_str()),
            "{ip} is reserved"
        );
    }
    // The stored objects say the same.
    let list = s.client.get(SVCS).await.expect("list");
    let stored: BTreeSet<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["metadata"]["name"] != "kubernetes")
        .map(ip_of)
        .collect();
    assert_eq!(stored, ips);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_cluster_ips_are_honoured_once_and_refused_when_taken_or_out_of_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path(), |_| {}).await;
    let a = s
        .create_svc(svc("a", json!({"clusterIP": "fd01::77"})))
        .await
        .expect("explicit IP");
    assert_eq!(ip_of(&a), "fd01::77");
    let (code, msg) = api_error(
        &s.create_svc(svc("b", json!({"clusterIP": "fd01::77"})))
            .await
            .expect_err("taken"),
    );
    assert_eq!(code, 422);
    assert!(msg.contains("spec.clusterIP"), "{msg}");
    assert!(msg.contains("provided IP is already allocated"), "{msg}");
    // The kubernetes Service holds base+1.
    let (code, msg) = api_error(
        &s.create_svc(svc("c", json!({"clusterIP": "fd01::1"})))
            .await
            .expect_err("kubernetes' IP"),
    );
    assert_eq!(code, 422, "{msg}");
    let (code, msg) = api_error(
        &s.create_svc(svc("d", json!({"clusterIP": "fd02::5"})))
            .await
            .expect_err("outside"),
    );
    assert_eq!(code, 422);
    assert!(msg.contains("spec.clusterIP"), "{msg}");
    assert!(
        msg.contains("provided IP is not in the valid range"),
        "{msg}"
    );
    // IPv4 and dual stack are refused, naming the field.
    for (spec, field) in [
        (json!({"clusterIP": "10.96.0.5"}), "spec.clusterIP"),
        (json!({"ipFamilies": ["IPv4"]}), "spec.ipFamilies"),
        (
            json!({"ipFamilyPolicy": "PreferDualStack"}),
            "spec.ipFamilyPolicy",
        ),
    ] {
        let (code, msg) = api_error(&s.create_svc(svc("e", spec)).await.expect_err("v4"));
        assert_eq!(code, 422);
        assert!(msg.contains(field), "{msg}");
    }
    // Headless: no IP taken.
    let h = s
        .create_svc(svc("h", json!({"clusterIP": "None"})))
        .await
        .expect("headless");
    assert_eq!(ip_of(&h), "None");
    assert_eq!(h["spec"]["clusterIPs"], json!(["None"]));
    // Deleting frees the IP at once.
    s.delete(&format!("{SVCS}/a")).await;
    let b = s
        .create_svc(svc("b", json!({"clusterIP": "fd01::77"})))
        .await
        .expect("freed by the delete");
    assert_eq!(ip_of(&b), "fd01::77");
    // A PUT that leaves clusterIP out keeps it.
    let mut put = svc("b", json!({}));
    put["metadata"]["resourceVersion"] = b["metadata"]["resourceVersion"].clone();
    let b2 = s
        .client
        .json(
            Method::PUT,
            &format!("{SVCS}/b"),
            &[],
            &put,
            "application/json",
        )
        .await
        .expect("put");
    assert_eq!(ip_of(&b2), "fd01::77");

    // A Service held by a finalizer keeps its IP until the finalizer goes;
    // the write that removes it frees the IP.
    s.create_svc(svc("held", json!({"clusterIP": "fd01::88"})))
        .await
        .expect("held");
    s.client
        .merge_patch(
            &format!("{SVCS}/held"),
            &json!({"metadata": {"finalizers": ["example.com/hold"]}}),
        )
        .await
        .expect("finalizer");
    s.delete(&format!("{SVCS}/held")).await;
    let (code, _) = api_error(
        &s.create_svc(svc("c2", json!({"clusterIP": "fd01::88"})))
            .await
            .expect_err("still held"),
    );
    assert_eq!(code, 422);
    s.client
        .merge_patch(
            &format!("{SVCS}/held"),
            &json!({"metadata": {"finalizers": null}}),
        )
        .await
        .expect("finalizer removed");
    s.create_svc(svc("c2", json!({"clusterIP": "fd01::88"})))
        .await
        .expect("freed with the finalizer");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_survive_a_restart_and_are_never_handed_out_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A /124 has 16 addresses: 13 free ones once ::0, ::1 and ::a are
    // kept back, so a restart that forgot allocations would reuse one.
    let net = selur_api::network::NetworkInput {
        service_cidr: Some(("--service-cidr".into(), "fd01::/124".into())),
        ..Default::default()
    }
    .resolve()
    .expect("network");
    // The same port both times: the kubernetes Service's targetPort is it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let tune = |c: &mut ServerConfig| {
        c.network = net.clone();
        c.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    };
    let s = TestServer::start(dir.path(), tune).await;
    let mut before = Vec::new();
    for i in 0..8 {
        let v = s
            .create_svc(svc(&format!("s{i}"), json!({})))
            .await
            .expect("create");
        before.push(ip_of(&v));
    }
    let rvs = |s: &TestServer| {
        let c = s.client.clone();
        async move {
            let mut out = Vec::new();
            for p in [
                "/api/v1/namespaces/default/services/kubernetes",
                "/api/v1/namespaces/default/endpoints/kubernetes",
                "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes",
            ] {
                let v = c.get(p).await.expect("kubernetes objects");
                out.push(v["metadata"]["resourceVersion"].clone());
            }
            out
        }
    };
    let kubernetes_rvs = rvs(&s).await;
    s.stop().await;

    let s = TestServer::start(dir.path(), tune).await;
    let k = s
        .client
        .get(&format!("{SVCS}/kubernetes"))
        .await
        .expect("kubernetes");
    assert_eq!(ip_of(&k), "fd01::1", "the kubernetes Service kept");
    assert_eq!(rvs(&s).await, kubernetes_rvs, "a restart rewrites nothing");
    let mut after = BTreeSet::new();
    for i in 8..13 {
        let v = s
            .create_svc(svc(&format!("s{i}"), json!({})))
            .await
            .expect("create");
        after.insert(ip_of(&v));
    }
    assert!(
        before.iter().all(|ip| !after.contains(ip)),
        "{before:?} {after:?}"
    );
    let (code, msg) = api_error(
        &s.create_svc(svc("full", json!({})))
            .await
            .expect_err("full"),
    );
    assert!(msg.contains("range is full"), "{code} {msg}");
    // A delete frees one; the next create gets exactly that one.
    s.delete(&format!("{SVCS}/s3")).await;
    let v = s
        .create_svc(svc("again", json!({})))
        .await
        .expect("create after delete");
    assert_eq!(ip_of(&v), before[3]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ports_are_allocated_kept_refused_when_taken_and_released_with_the_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path(), |_| {}).await;
    let a = s
        .create_svc(svc(
            "a",
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 80}, {"name": "x", "port": 81, "nodePort": 30081}],
                   "sessionAffinity": "ClientIP"}),
        ))
        .await
        .expect("nodeport");
    let np = a["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("allocated");
    assert!((30000..=32767).contains(&np), "{np}");
    assert_eq!(a["spec"]["ports"][1]["nodePort"], 30081);
    assert_eq!(
        a["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
        10800
    );
    for (port, want) in [
        (30081, "provided port is already allocated"),
        (8080, "provided port is not in the valid range"),
    ] {
        let (code, msg) = api_error(
            &s.create_svc(svc(
                "b",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}),
            ))
            .await
            .expect_err("refused"),
        );
        assert_eq!(code, 422);
        assert!(
            msg.contains("spec.ports[0].nodePort") && msg.contains(want),
            "{msg}"
        );
    }
    // NodePort -> ClusterIP gives the ports back.
    let c = s
        .client
        .merge_patch(
            &format!("{SVCS}/a"),
            &json!({"spec": {"type": "ClusterIP"}}),
        )
        .await
        .expect("to ClusterIP");
    assert!(c["spec"]["ports"][1].get("nodePort").is_none(), "{c}");
    s.create_svc(svc(
        "b",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30081}]}),
    ))
    .await
    .expect("30081 free again");
    // ClusterIP -> NodePort allocates.
    let c = s
        .client
        .merge_patch(&format!("{SVCS}/a"), &json!({"spec": {"type": "NodePort"}}))
        .await
        .expect("to NodePort");
    let got = c["spec"]["ports"][1]["nodePort"]
        .as_u64()
        .expect("allocated");
    assert_ne!(got, 30081);
    // Delete frees them.
    s.delete(&format!("{SVCS}/b")).await;
    s.create_svc(svc(
        "d",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30081}]}),
    ))
    .await
    .expect("30081 free after delete");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_service_points_at_the_advertised_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path(), |c| {
        c.advertise_address = Some("fd00:1::5".parse().expect("ip"));
    })
    .await;
    let k = s
        .client
        .get(&format!("{SVCS}/kubernetes"))
        .await
        .expect("svc");
    assert_eq!(ip_of(&k), "fd01::1");
    assert_eq!(k["spec"]["ports"][0]["name"], "https");
    assert_eq!(k["spec"]["ports"][0]["port"], 443);
    let port = k["spec"]["ports"][0]["targetPort"]
        .as_u64()
        .expect("targetPort");
    let ep = s
        .client
        .get("/api/v1/namespaces/default/endpoints/kubernetes")
        .await
        .expect("endpoints");
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "fd00:1::5");
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], port);
    let sl = s
        .client
        .get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes")
        .await
        .expect("slice");
    assert_eq!(sl["addressType"], "IPv6");
    assert_eq!(sl["endpoints"][0]["addresses"][0], "fd00:1::5");
    // Deleted, it comes back with the same IP.
    let uid = k["metadata"]["uid"].clone();
    s.delete(&format!("{SVCS}/kubernetes")).await;
    let again = eventually("the kubernetes Service back", || async {
        let v = s.client.get(&format!("{SVCS}/kubernetes")).await.ok()?;
        (v["metadata"]["uid"] != uid).then_some(v)
    })
    .await;
    assert_eq!(ip_of(&again), "fd01::1");
    s.stop().await;

    // Listening on IPv4 only with no advertise address: no endpoints.
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path(), |_| {}).await;
    let ep = s
        .client
        .get("/api/v1/namespaces/default/endpoints/kubernetes")
        .await
        .expect("endpoints");
    assert!(ep.get("subsets").is_none(), "{ep}");
    s.stop().await;
}

async fn slice_of(s: &TestServer, svc: &str) -> Option<Value> {
    let l = s
        .client
        .get(&format!(
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D{svc}"
        ))
        .await
        .ok()?;
    let items = l["items"].as_array()?.clone();
    (items.len() == 1).then(|| items[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_slice_follows_pod_readiness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path(), |_| {}).await;
    s.create_svc(svc(
        "web",
        json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}),
    ))
    .await
    .expect("svc");
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "localhost/x:1",
            "ports": [{"name": "http", "containerPort": 8080}]}]}});
    s.client
        .post("/api/v1/namespaces/default/pods", &pod)
        .await
        .expect("pod");
    // No podIP yet: an empty slice, managed and owned.
    let sl = eventually("an empty slice", || async { slice_of(&s, "web").await }).await;
    assert_eq!(sl["endpoints"], json!([]));
    assert_eq!(
        sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.selur.io"
    );
    assert_eq!(sl["metadata"]["ownerReferences"][0]["kind"], "Service");

    let status = |ready: &str| {
        json!({"status": {"phase": "Running", "podIP": "fd00::17", "podIPs": [{"ip": "fd00::17"}],
            "conditions": [{"type": "Ready", "status": ready}]}})
    };
    let pod_status = "/api/v1/namespaces/default/pods/web-1/status";
    s.client
        .merge_patch(pod_status, &status("False"))
        .await
        .expect("status");
    let started = Instant::now();
    let sl = eventually("a not-ready endpoint", || async {
        slice_of(&s, "web")
            .await
            .filter(|sl| sl["endpoints"].as_array().is_some_and(|e| e.len() == 1))
    })
    .await;
    assert_eq!(sl["endpoints"][0]["addresses"], json!(["fd00::17"]));
    assert_eq!(sl["endpoints"][0]["conditions"]["ready"], false);
    assert_eq!(sl["endpoints"][0]["targetRef"]["name"], "web-1");
    assert_eq!(
        sl["ports"][0]["port"], 8080,
        "the named targetPort resolved"
    );
    let ep = s
        .client
        .get("/api/v1/namespaces/default/endpoints/web")
        .await
        .expect("endpoints");
    assert_eq!(ep["subsets"][0]["notReadyAddresses"][0]["ip"], "fd00::17");

    s.client
        .merge_patch(pod_status, &status("True"))
        .await
        .expect("ready");
    let sl = eventually("a ready endpoint", || async {
        slice_of(&s, "web")
            .await
            .filter(|sl| sl["endpoints"][0]["conditions"]["ready"] == true)
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(sl["endpoints"][0]["conditions"]["serving"], true);
    let rv = sl["metadata"]["resourceVersion"].clone();
    let ep = eventually("ready in Endpoints", || async {
        let ep = s
            .client
            .get("/api/v1/namespaces/default/endpoints/web")
            .await
            .ok()?;
        (ep["subsets"][0]["addresses"][0]["ip"] == "fd00::17").then_some(ep)
    })
    .await;
    assert!(ep["subsets"][0].get("notReadyAddresses").is_none());
    // Nothing changes: nothing is written.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = slice_of(&s, "web").await.expect("slice");
    assert_eq!(again["metadata"]["resourceVersion"], rv);

    // Deleting the Service removes its slices and Endpoints (GC).
    s.delete(&format!("{SVCS}/web")).await;
    eventually("slices gone", || async {
        let l = s
            .client
            .get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb")
            .await
            .ok()?;
        l["items"].as_array()?.is_empty().then_some(())
    })
    .await;
    s.stop().await;
}
