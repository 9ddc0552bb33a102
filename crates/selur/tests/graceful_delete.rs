//! Graceful pod deletion over the API and the CLI: a bound pod is marked
//! (deletionTimestamp + grace) and stays Terminating until its node confirms
//! with a grace-0, uid-preconditioned delete; pods that never ran, or whose
//! node is gone, are removed at once. The server runs without an agent and
//! pods are bound by hand to a Node object nobody serves, so nothing confirms
//! on its own.

mod common;

use common::{call, stderr, stdout, watch_events, Server};
use selur_client::Method;
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";
const JSON: &str = "application/json";

fn server() -> Server {
    Server::start(&["--disable-agent"])
}

async fn add_node(s: &Server, name: &str) {
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    let (c, body) = call(&s.url, Method::POST, "/api/v1/nodes", Some((JSON, &node))).await;
    assert_eq!(c, 201, "{body}");
}

fn pod(name: &str, node: Option<&str>, labels: Value) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"terminationGracePeriodSeconds": 30,
            "containers": [{"name": "c", "image": "busybox"}]}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

async fn create(s: &Server, p: &Value) -> Value {
    let (c, body) = call(&s.url, Method::POST, PODS, Some((JSON, p))).await;
    assert_eq!(c, 201, "{body}");
    body
}

async fn get(s: &Server, name: &str) -> (u16, Value) {
    call(&s.url, Method::GET, &format!("{PODS}/{name}"), None).await
}

async fn delete(s: &Server, name: &str, query: &str, body: Option<&Value>) -> (u16, Value) {
    call(
        &s.url,
        Method::DELETE,
        &format!("{PODS}/{name}{query}"),
        body.map(|b| (JSON, b)),
    )
    .await
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("timestamp"))
        .expect("rfc3339")
        .with_timezone(&chrono::Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_pod_terminates_until_its_node_confirms() {
    let s = server();
    add_node(&s, "n1").await;
    let created = create(&s, &pod("p", Some("n1"), json!({"app": "x"}))).await;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let uid = created["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    let url = s.url.clone();
    let watch = tokio::spawn(async move { watch_events(&url, PODS, &rv, 4).await });

    // The pod's own grace period: marked, 200 with the object, still there.
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let (c, marked) = delete(&s, "p", "", None).await;
    assert_eq!(c, 200, "{marked}");
    assert_eq!(marked["kind"], "Pod", "{marked}");
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    let at = time(&marked["metadata"]["deletionTimestamp"]);
    assert!(
        at >= before + chrono::Duration::seconds(30)
            && at <= chrono::Utc::now() + chrono::Duration::seconds(31),
        "deletionTimestamp {at} is not now + 30s"
    );
    assert_eq!(
        marked["metadata"]["generation"],
        created["metadata"]["generation"]
    );
    let (c, still) = get(&s, "p").await;
    assert_eq!(c, 200);
    assert_eq!(still["metadata"]["deletionGracePeriodSeconds"], 30);

    // `selur get pods` says Terminating.
    let table = s.ok(&["get", "pods"]);
    let line = table
        .lines()
        .find(|l| l.starts_with("p "))
        .expect("pod row");
    assert!(line.contains("Terminating"), "{table}");

    // A shorter grace period shortens both fields; the same or a longer one does nothing.
    let (c, short) = delete(&s, "p", "?gracePeriodSeconds=10", None).await;
    assert_eq!(c, 200, "{short}");
    assert_eq!(short["metadata"]["deletionGracePeriodSeconds"], 10);
    assert_eq!(
        time(&short["metadata"]["deletionTimestamp"]),
        at - chrono::Duration::seconds(20)
    );
    for body in [
        json!({"gracePeriodSeconds": 10}),
        json!({"gracePeriodSeconds": 20}),
        json!({}),
    ] {
        let (c, same) = delete(&s, "p", "", Some(&body)).await;
        assert_eq!(c, 200, "{same}");
        assert_eq!(same["metadata"]["deletionGracePeriodSeconds"], 10);
        assert_eq!(
            same["metadata"]["resourceVersion"],
            short["metadata"]["resourceVersion"]
        );
    }

    // Status writes still work on a terminating pod.
    let (c, st) = call(
        &s.url,
        Method::PATCH,
        &format!("{PODS}/p/status"),
        Some((
            "application/merge-patch+json",
            &json!({"status": {"phase": "Running"}}),
        )),
    )
    .await;
    assert_eq!(c, 200, "{st}");
    assert_eq!(st["status"]["phase"], "Running");
    assert_eq!(st["metadata"]["deletionGracePeriodSeconds"], 10);

    // The node's confirmation: a wrong uid is a conflict, the right one removes it.
    let wrong = json!({"gracePeriodSeconds": 0, "preconditions": {"uid": "not-the-uid"}});
    let (c, body) = delete(&s, "p", "", Some(&wrong)).await;
    assert_eq!(c, 409, "{body}");
    assert_eq!(get(&s, "p").await.0, 200);
    let confirm = json!({"gracePeriodSeconds": 0, "preconditions": {"uid": uid}});
    let (c, body) = delete(&s, "p", "", Some(&confirm)).await;
    assert_eq!(c, 200, "{body}");
    assert_eq!(get(&s, "p").await.0, 404);

    let evs = watch.await.expect("watch task");
    let types: Vec<&str> = evs.iter().filter_map(|e| e["type"].as_str()).collect();
    // Marked, shortened, status written, removed.
    assert_eq!(
        types,
        ["MODIFIED", "MODIFIED", "MODIFIED", "DELETED"],
        "{evs:?}"
    );
    assert_eq!(
        evs[0]["object"]["metadata"]["deletionGracePeriodSeconds"],
        30
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_never_ran_or_lost_their_node_go_at_once() {
    // No Node objects at all: the scheduler cannot bind "unbound".
    let s = server();
    create(&s, &pod("unbound", None, json!({}))).await;
    create(&s, &pod("orphan", Some("ghost"), json!({}))).await;
    for name in ["unbound", "orphan"] {
        let (c, body) = delete(&s, name, "", None).await;
        assert_eq!(c, 200, "{body}");
        assert_eq!(
            body["kind"], "Status",
            "{name} was not removed at once: {body}"
        );
        assert_eq!(get(&s, name).await.0, 404, "{name}");
    }
    // A finalizer holds a removed pod; binding it is refused.
    let mut held = pod("held", None, json!({}));
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    create(&s, &held).await;
    let (c, body) = delete(&s, "held", "", None).await;
    assert_eq!(c, 200, "{body}");
    assert_eq!(body["metadata"]["deletionGracePeriodSeconds"], 0, "{body}");
    add_node(&s, "n1").await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "held"}, "target": {"kind": "Node", "name": "n1"}});
    let (c, body) = call(
        &s.url,
        Method::POST,
        &format!("{PODS}/held/binding"),
        Some((JSON, &binding)),
    )
    .await;
    assert_eq!(c, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("being deleted"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_delete_selects_forces_and_waits() {
    let s = server();
    add_node(&s, "n1").await;
    for (name, app) in [("a", "x"), ("b", "x"), ("c", "y")] {
        create(&s, &pod(name, Some("n1"), json!({"app": app}))).await;
    }
    // -l deletes the matching pods only; they terminate.
    let out = s.ok(&["delete", "pods", "-l", "app=x", "--wait=false"]);
    assert!(
        out.contains("pod \"a\" deleted") && out.contains("pod \"b\" deleted"),
        "{out}"
    );
    assert!(!out.contains("\"c\""), "{out}");
    for name in ["a", "b"] {
        let (c, v) = get(&s, name).await;
        assert_eq!(c, 200);
        assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 30, "{name}");
    }
    assert!(get(&s, "c").await.1["metadata"]["deletionTimestamp"].is_null());

    // --grace-period=0 alone becomes 1 (kubectl); with --force it removes at once and warns.
    s.ok(&["delete", "pod", "b", "--grace-period=0", "--wait=false"]);
    assert_eq!(
        get(&s, "b").await.1["metadata"]["deletionGracePeriodSeconds"],
        1
    );
    let o = s.selur(&["delete", "pod", "a", "--grace-period=0", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("pod \"a\" force deleted"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely."),
        "{}",
        stderr(&o)
    );
    assert_eq!(get(&s, "a").await.0, 404);
    let o = s.selur(&["delete", "pod", "c", "--force", "--grace-period=5"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--force and --grace-period greater than 0"),
        "{}",
        stderr(&o)
    );

    // Waiting (the default) for a pod nobody confirms times out with a clear error.
    let o = s.selur(&["delete", "pod", "c", "--timeout=1s"]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("pod \"c\" deleted"), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("timed out")
            && err.contains("\"c\"")
            && err.contains("--grace-period=0 --force"),
        "{err}"
    );
    assert_eq!(get(&s, "c").await.0, 200);

    // --all with --force: everything goes, and waiting returns at once.
    let o = s.selur(&["delete", "pods", "--all", "--grace-period=0", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in ["b", "c"] {
        assert_eq!(get(&s, name).await.0, 404, "{name}");
    }
    let out = s.ok(&["delete", "pods", "--all"]);
    assert!(out.contains("No resources found"), "{out}");
    let o = s.selur(&["delete", "pods", "--all", "-l", "app=x"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot set --all and --selector"),
        "{}",
        stderr(&o)
    );
}

async fn add_event(s: &Server, name: &str, involved: Value, message: &str, last: &str) {
    let ev = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name},
        "involvedObject": involved, "reason": "Test", "message": message, "type": "Normal",
        "firstTimestamp": last, "lastTimestamp": last, "count": 1,
        "source": {"component": "test"}});
    let (c, body) = call(
        &s.url,
        Method::POST,
        "/api/v1/namespaces/default/events",
        Some((JSON, &ev)),
    )
    .await;
    assert_eq!(c, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_only_the_new_objects_events() {
    let s = server();
    let old = create(&s, &pod("web", None, json!({}))).await;
    let involved = |p: &Value| json!({"kind": "Pod", "namespace": "default", "name": "web", "uid": p["metadata"]["uid"]});
    add_event(
        &s,
        "e-old",
        involved(&old),
        "from-the-old-pod",
        "2026-01-01T00:00:00Z",
    )
    .await;
    let (c, _) = delete(&s, "web", "", None).await;
    assert_eq!(c, 200);
    let new = create(&s, &pod("web", None, json!({}))).await;
    add_event(
        &s,
        "e-late",
        involved(&new),
        "second-new-event",
        "2026-01-01T00:00:09Z",
    )
    .await;
    add_event(
        &s,
        "e-early",
        involved(&new),
        "first-new-event",
        "2026-01-01T00:00:05Z",
    )
    .await;
    add_event(
        &s,
        "e-nouid",
        json!({"kind": "Pod", "namespace": "default", "name": "web"}),
        "event-without-uid",
        "2026-01-01T00:00:07Z",
    )
    .await;
    let out = s.ok(&["describe", "pod", "web"]);
    assert!(!out.contains("from-the-old-pod"), "{out}");
    let pos = |m: &str| out.find(m).unwrap_or_else(|| panic!("{m} missing: {out}"));
    assert!(pos("first-new-event") < pos("event-without-uid"), "{out}");
    assert!(pos("event-without-uid") < pos("second-new-event"), "{out}");
}
