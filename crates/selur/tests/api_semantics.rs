//! Object semantics over the REST API and CLI: optimistic concurrency,
//! cascading deletion, scale, three-way apply, namespaces, pagination,
//! selectors, dry run, finalizers, generation, binding, discovery.

mod common;

use std::time::Duration;

use common::{call, configmap, write_file, Server, CM_PATH};
use selur_client::Method;
use serde_json::{json, Value};

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_update_conflicts() {
    let s = Server::start(&[]);
    let (c, created) = call(
        &s.url,
        Method::POST,
        CM_PATH,
        Some(("application/json", &configmap("c1"))),
    )
    .await;
    assert_eq!(c, 201);
    let mut first = created.clone();
    first["data"]["k"] = json!("one");
    let (c, _) = call(
        &s.url,
        Method::PUT,
        &format!("{CM_PATH}/c1"),
        Some(("application/json", &first)),
    )
    .await;
    assert_eq!(c, 200);
    let mut stale = created.clone();
    stale["data"]["k"] = json!("two");
    let (c, body) = call(
        &s.url,
        Method::PUT,
        &format!("{CM_PATH}/c1"),
        Some(("application/json", &stale)),
    )
    .await;
    assert_eq!(c, 409, "{body}");
    assert_eq!(body["reason"], "Conflict");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("the object has been modified"));
    // Creating again is AlreadyExists.
    let (c, body) = call(
        &s.url,
        Method::POST,
        CM_PATH,
        Some(("application/json", &configmap("c1"))),
    )
    .await;
    assert_eq!((c, body["reason"].as_str()), (409, Some("AlreadyExists")));
}

fn owned_cm(name: &str, owner: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascading_delete_removes_dependents_and_orphan_keeps_them() {
    let s = Server::start(&["--bookmark-interval", "1"]);
    for (owner_name, policy) in [
        ("owner-bg", None),
        ("owner-fg", Some("Foreground")),
        ("owner-orphan", Some("Orphan")),
    ] {
        let (_, owner) = call(
            &s.url,
            Method::POST,
            CM_PATH,
            Some(("application/json", &configmap(owner_name))),
        )
        .await;
        for i in 0..2 {
            let (c, _) = call(
                &s.url,
                Method::POST,
                CM_PATH,
                Some((
                    "application/json",
                    &owned_cm(&format!("{owner_name}-dep{i}"), &owner),
                )),
            )
            .await;
            assert_eq!(c, 201);
        }
        let q = policy
            .map(|p| format!("?propagationPolicy={p}"))
            .unwrap_or_default();
        let (c, _) = call(
            &s.url,
            Method::DELETE,
            &format!("{CM_PATH}/{owner_name}{q}"),
            None,
        )
        .await;
        assert_eq!(c, 200);
        let url = s.url.clone();
        eventually("owner gone", || {
            let url = url.clone();
            async move {
                call(&url, Method::GET, &format!("{CM_PATH}/{owner_name}"), None)
                    .await
                    .0
                    == 404
            }
        })
        .await;
        for i in 0..2 {
            let dep = format!("{owner_name}-dep{i}");
            let url = s.url.clone();
            if policy == Some("Orphan") {
                let (c, body) = call(&url, Method::GET, &format!("{CM_PATH}/{dep}"), None).await;
                assert_eq!(c, 200, "orphaned dependent survives");
                assert!(body["metadata"]
                    .get("ownerReferences")
                    .is_none_or(|r| r.as_array().unwrap().is_empty()));
            } else {
                eventually(&format!("{dep} collected"), || {
                    let url = url.clone();
                    let dep = dep.clone();
                    async move {
                        call(&url, Method::GET, &format!("{CM_PATH}/{dep}"), None)
                            .await
                            .0
                            == 404
                    }
                })
                .await;
            }
        }
    }
}

const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: IMAGE\n        ports:\n        - containerPort: 8080\n      - name: side\n        image: side:1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_and_reapply_keep_fields_other_writers_own() {
    let s = Server::start(&[]);
    let f = write_file(&s, "d.yaml", &DEPLOY.replace("IMAGE", "web:1"));
    s.ok(&["apply", "-f", &f]);
    let before = s.get_json(&["deploy", "web"]);
    assert_eq!(before["spec"]["replicas"], 1, "defaulted");
    // Another writer: scale (through the scale subresource) and a field inside a container.
    assert!(s
        .ok(&["scale", "deployment", "web", "--replicas=7"])
        .contains("deployment.apps/web scaled"));
    let scaled = s.get_json(&["deploy", "web"]);
    let mut a = scaled["spec"].clone();
    let mut b = before["spec"].clone();
    a["replicas"] = json!(0);
    b["replicas"] = json!(0);
    assert_eq!(a, b, "scale touched only replicas");
    assert_eq!(scaled["metadata"]["generation"], 2);
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "workingDir": "/srv"}]}}}});
    let (c, _) = call(
        &s.url,
        Method::PATCH,
        "/apis/apps/v1/namespaces/default/deployments/web",
        Some(("application/strategic-merge-patch+json", &patch)),
    )
    .await;
    assert_eq!(c, 200);
    // Re-apply with a new image: replicas and workingDir stay, image changes, the sidecar stays in place.
    std::fs::write(&f, DEPLOY.replace("IMAGE", "web:2")).unwrap();
    assert!(s
        .ok(&["apply", "-f", &f])
        .contains("deployment.apps/web configured"));
    let after = s.get_json(&["deploy", "web"]);
    assert_eq!(after["spec"]["replicas"], 7);
    let c0 = &after["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        (
            c0["name"].as_str(),
            c0["image"].as_str(),
            c0["workingDir"].as_str()
        ),
        (Some("web"), Some("web:2"), Some("/srv"))
    );
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][1]["name"],
        "side"
    );
    // Dropping the sidecar from the manifest removes it (it was in the last-applied config).
    let without_side = DEPLOY
        .replace("IMAGE", "web:2")
        .replace("      - name: side\n        image: side:1\n", "");
    std::fs::write(&f, without_side).unwrap();
    s.ok(&["apply", "-f", &f]);
    let after = s.get_json(&["deploy", "web"]);
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The scale subresource reads back.
    let (c, scale) = call(
        &s.url,
        Method::GET,
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        None,
    )
    .await;
    assert_eq!(c, 200);
    assert_eq!(scale["spec"]["replicas"], 7);
    assert_eq!(scale["status"]["selector"], "app=web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_gate_creation_and_deletion_empties_them() {
    let s = Server::start(&[]);
    let (c, body) = call(
        &s.url,
        Method::POST,
        "/api/v1/namespaces/nope/configmaps",
        Some(("application/json", &configmap("x"))),
    )
    .await;
    assert_eq!(c, 404, "{body}");
    assert_eq!(body["message"], "namespaces \"nope\" not found");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tmp"}});
    assert_eq!(
        call(
            &s.url,
            Method::POST,
            "/api/v1/namespaces",
            Some(("application/json", &ns))
        )
        .await
        .0,
        201
    );
    for i in 0..3 {
        assert_eq!(
            call(
                &s.url,
                Method::POST,
                "/api/v1/namespaces/tmp/configmaps",
                Some(("application/json", &configmap(&format!("c{i}"))))
            )
            .await
            .0,
            201
        );
    }
    assert_eq!(
        call(&s.url, Method::DELETE, "/api/v1/namespaces/tmp", None)
            .await
            .0,
        200
    );
    let url = s.url.clone();
    eventually("namespace removed", || {
        let url = url.clone();
        async move {
            call(&url, Method::GET, "/api/v1/namespaces/tmp", None)
                .await
                .0
                == 404
        }
    })
    .await;
    let (_, list) = call(
        &s.url,
        Method::GET,
        "/api/v1/namespaces/tmp/configmaps",
        None,
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    // default exists out of the box.
    assert_eq!(
        call(&s.url, Method::GET, "/api/v1/namespaces/default", None)
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_selectors_dry_run_finalizers_generation() {
    let s = Server::start(&[]);
    for i in 0..25 {
        let mut cm = configmap(&format!("p{i:02}"));
        cm["metadata"]["labels"] = json!({"tier": if i % 2 == 0 { "even" } else { "odd" }});
        assert_eq!(
            call(
                &s.url,
                Method::POST,
                CM_PATH,
                Some(("application/json", &cm))
            )
            .await
            .0,
            201
        );
    }
    let mut names = Vec::new();
    let mut cont = String::new();
    loop {
        let (c, page) = call(
            &s.url,
            Method::GET,
            &format!("{CM_PATH}?limit=10&continue={cont}"),
            None,
        )
        .await;
        assert_eq!(c, 200);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 10);
        names.extend(
            items
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match page["metadata"]["continue"].as_str() {
            Some(t) => cont = t.to_string(),
            None => break,
        }
    }
    assert_eq!(names.len(), 25);
    names.dedup();
    assert_eq!(names.len(), 25);
    let (_, odd) = call(
        &s.url,
        Method::GET,
        &format!("{CM_PATH}?labelSelector=tier%20in%20(odd)"),
        None,
    )
    .await;
    assert_eq!(odd["items"].as_array().unwrap().len(), 12);
    let (_, one) = call(
        &s.url,
        Method::GET,
        &format!("{CM_PATH}?fieldSelector=metadata.name%3Dp03"),
        None,
    )
    .await;
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    let cli = s.ok(&["get", "cm", "-l", "tier=even", "-o", "name"]);
    assert_eq!(cli.lines().count(), 13);

    // dryRun=All writes nothing.
    let (c, _) = call(
        &s.url,
        Method::POST,
        &format!("{CM_PATH}?dryRun=All"),
        Some(("application/json", &configmap("dry"))),
    )
    .await;
    assert_eq!(c, 201);
    assert_eq!(
        call(&s.url, Method::GET, &format!("{CM_PATH}/dry"), None)
            .await
            .0,
        404
    );

    // Finalizers hold a delete until removed.
    let mut cm = configmap("fin");
    cm["metadata"]["finalizers"] = json!(["example.com/hold"]);
    call(
        &s.url,
        Method::POST,
        CM_PATH,
        Some(("application/json", &cm)),
    )
    .await;
    assert_eq!(
        call(&s.url, Method::DELETE, &format!("{CM_PATH}/fin"), None)
            .await
            .0,
        200
    );
    let (c, held) = call(&s.url, Method::GET, &format!("{CM_PATH}/fin"), None).await;
    assert_eq!(c, 200);
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    let (c, _) = call(
        &s.url,
        Method::PATCH,
        &format!("{CM_PATH}/fin"),
        Some((
            "application/merge-patch+json",
            &json!({"metadata": {"finalizers": null}}),
        )),
    )
    .await;
    assert_eq!(c, 200);
    assert_eq!(
        call(&s.url, Method::GET, &format!("{CM_PATH}/fin"), None)
            .await
            .0,
        404
    );

    // generation: bumped by spec changes only.
    let dep_path = "/apis/apps/v1/namespaces/default/deployments";
    let f = write_file(&s, "d.yaml", &DEPLOY.replace("IMAGE", "web:1"));
    s.ok(&["apply", "-f", &f]);
    let lbl = json!({"metadata": {"labels": {"extra": "1"}}});
    let (_, d) = call(
        &s.url,
        Method::PATCH,
        &format!("{dep_path}/web"),
        Some(("application/merge-patch+json", &lbl)),
    )
    .await;
    assert_eq!(d["metadata"]["generation"], 1);
    let spec = json!({"spec": {"minReadySeconds": 5}});
    let (_, d) = call(
        &s.url,
        Method::PATCH,
        &format!("{dep_path}/web"),
        Some(("application/merge-patch+json", &spec)),
    )
    .await;
    assert_eq!(d["metadata"]["generation"], 2);
    // JSON patch works too.
    let jp = json!([{"op": "replace", "path": "/spec/minReadySeconds", "value": 6}]);
    let (c, d) = call(
        &s.url,
        Method::PATCH,
        &format!("{dep_path}/web"),
        Some(("application/json-patch+json", &jp)),
    )
    .await;
    assert_eq!((c, d["spec"]["minReadySeconds"].as_i64()), (200, Some(6)));
    // generateName
    let gen =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}});
    let (c, g) = call(
        &s.url,
        Method::POST,
        CM_PATH,
        Some(("application/json", &gen)),
    )
    .await;
    assert_eq!(c, 201);
    assert!(
        g["metadata"]["name"].as_str().unwrap().starts_with("gen-")
            && g["metadata"]["name"].as_str().unwrap().len() == 9
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_discovery_and_errors() {
    // Bound by hand here, so no scheduler races the test for the pod.
    let s = Server::start(&["--disable-scheduler"]);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}});
    assert_eq!(
        call(
            &s.url,
            Method::POST,
            "/api/v1/namespaces/default/pods",
            Some(("application/json", &pod))
        )
        .await
        .0,
        201
    );
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
    let (c, _) = call(
        &s.url,
        Method::POST,
        "/api/v1/namespaces/default/pods/p/binding",
        Some(("application/json", &binding)),
    )
    .await;
    assert_eq!(c, 201);
    let (_, p) = call(
        &s.url,
        Method::GET,
        "/api/v1/namespaces/default/pods/p",
        None,
    )
    .await;
    assert_eq!(p["spec"]["nodeName"], "n1");
    let (_, bound) = call(
        &s.url,
        Method::GET,
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1",
        None,
    )
    .await;
    assert_eq!(bound["items"].as_array().unwrap().len(), 1);
    let (c, _) = call(
        &s.url,
        Method::POST,
        "/api/v1/namespaces/default/pods/p/binding",
        Some(("application/json", &binding)),
    )
    .await;
    assert_eq!(c, 409);
    // Pod spec is immutable apart from a few fields: 422 naming the field.
    let (c, body) = call(
        &s.url,
        Method::PATCH,
        "/api/v1/namespaces/default/pods/p",
        Some((
            "application/merge-patch+json",
            &json!({"spec": {"restartPolicy": "Never"}}),
        )),
    )
    .await;
    assert_eq!(c, 422, "{body}");
    // Status subresource changes status only.
    let (c, st) = call(
        &s.url,
        Method::PATCH,
        "/api/v1/namespaces/default/pods/p/status",
        Some((
            "application/merge-patch+json",
            &json!({"status": {"phase": "Running"}, "spec": {"nodeName": "other"}}),
        )),
    )
    .await;
    assert_eq!(c, 200, "{st}");
    assert_eq!(
        (
            st["status"]["phase"].as_str(),
            st["spec"]["nodeName"].as_str()
        ),
        (Some("Running"), Some("n1"))
    );

    let (c, v) = call(&s.url, Method::GET, "/version", None).await;
    assert_eq!((c, v["major"].as_str()), (200, Some("1")));
    let (_, apis) = call(&s.url, Method::GET, "/apis", None).await;
    assert!(apis["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "apps"));
    let (_, core) = call(&s.url, Method::GET, "/api/v1", None).await;
    assert!(core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "pods/binding"));
    let (c, nf) = call(
        &s.url,
        Method::GET,
        "/api/v1/namespaces/default/pods/missing",
        None,
    )
    .await;
    assert_eq!(
        (c, nf["kind"].as_str(), nf["reason"].as_str()),
        (404, Some("Status"), Some("NotFound"))
    );
    let (c, _) = call(
        &s.url,
        Method::POST,
        CM_PATH,
        Some((
            "application/json",
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad_name"}}),
        )),
    )
    .await;
    assert_eq!(c, 422);
    let (c, _) = call(&s.url, Method::GET, "/apis/nope/v1/things", None).await;
    assert_eq!(c, 404);
}
