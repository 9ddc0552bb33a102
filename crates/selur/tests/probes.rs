//! Probes on real containers: an httpGet readiness probe to the pod's
//! `[::1]` gates the Ready condition; a failing liveness probe restarts the
//! container with a Killing event; the Lago Grey `obli-pkg status` check is
//! judged by its JSON (declared, or implicit when the image holds
//! `/usr/bin/obli-pkg`), and `selur health` shows the last parsed status.

mod common;

use std::time::{Duration, Instant};

use common::{wait_pod, write_file, Server};
use serde_json::Value;

/// A busybox image whose `/usr/bin/obli-pkg` prints `/state/obli.json`.
fn server(node: &str) -> Server {
    let s = Server::start(&[
        "--node-name",
        node,
        "--container-backoff",
        "1s",
        "--obli-health-period",
        "1s",
        "--obli-health-failure-threshold",
        "1",
    ]);
    let ctx = s.data_dir().join("ctx");
    std::fs::create_dir_all(ctx.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("bin/busybox")).unwrap();
    std::fs::write(
        ctx.join("obli-pkg"),
        "#!/bin/busybox sh\nif [ \"$1\" != status ]; then exit 2; fi\nexec /bin/busybox cat /state/obli.json\n",
    )
    .unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY bin/busybox /bin/busybox\nCOPY --chmod=0755 obli-pkg /usr/bin/obli-pkg\nUSER 65532\nENTRYPOINT [\"/bin/busybox\"]\n",
    )
    .unwrap();
    s.ok(&[
        "image",
        "build",
        "-t",
        "localhost/probe:1",
        ctx.to_str().unwrap(),
    ]);
    s
}

fn condition(p: &Value, t: &str) -> String {
    p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn events(s: &Server) -> String {
    s.ok(&["get", "events", "-o", "json"])
}

const HEALTHY: &str =
    r#"{"status":"healthy","packages":7,"last_operation":"install","integrity":"ok"}"#;
const BROKEN: &str =
    r#"{"status":"healthy","packages":7,"last_operation":"verify","integrity":"failed"}"#;

#[test]
fn http_readiness_and_exec_liveness() {
    let s = server("probes");
    let y = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  nodeName: probes\n  terminationGracePeriodSeconds: 1\n  volumes: [{name: www, emptyDir: {}}]\n  containers:\n  - name: web\n    image: localhost/probe:1\n    imagePullPolicy: Never\n    args: [\"sh\", \"-c\", \"touch /www/alive; sleep 2; echo ok > /www/health; exec httpd -f -p [::]:8080 -h /www\"]\n    ports: [{name: http, containerPort: 8080}]\n    volumeMounts: [{name: www, mountPath: /www}]\n    readinessProbe:\n      httpGet: {path: /health, port: http}\n      periodSeconds: 1\n    livenessProbe:\n      exec: {command: [/bin/busybox, test, -e, /www/alive]}\n      periodSeconds: 1\n      failureThreshold: 2\n";
    let f = write_file(&s, "web.yaml", y);
    s.ok(&["apply", "-f", &f]);
    let running = wait_pod(&s, "web", "running", |p| {
        p["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });
    assert_eq!(
        condition(&running, "Ready"),
        "False",
        "not ready before the probe passes"
    );
    let ready = wait_pod(&s, "web", "Ready", |p| condition(p, "Ready") == "True");
    assert_eq!(ready["status"]["containerStatuses"][0]["ready"], true);
    // Liveness: remove the file; after 2 failures the container restarts.
    s.ok(&["exec", "web", "--", "/bin/busybox", "rm", "/www/alive"]);
    wait_pod(&s, "web", "restarted", |p| {
        p["status"]["containerStatuses"][0]["restartCount"].as_u64() >= Some(1)
    });
    let ev = events(&s);
    assert!(ev.contains("Liveness probe failed"), "{ev}");
    assert!(
        ev.contains("failed liveness probe, will be restarted"),
        "{ev}"
    );
    // Back after the restart (the script recreates the file).
    wait_pod(&s, "web", "Ready again", |p| {
        condition(p, "Ready") == "True"
    });
    s.ok(&["delete", "-f", &f]);
}

#[test]
fn obli_pkg_health_is_judged_by_its_json() {
    let s = server("obli");
    let pod = |name: &str, probe: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: obli\n  terminationGracePeriodSeconds: 1\n  volumes: [{{name: state, emptyDir: {{}}}}]\n  containers:\n  - name: app\n    image: localhost/probe:1\n    imagePullPolicy: Never\n    args: [\"sh\", \"-c\", \"echo \\\"$OBLI\\\" > /state/obli.json; exec sleep 1000\"]\n    env: [{{name: OBLI, value: '{HEALTHY}'}}]\n    volumeMounts: [{{name: state, mountPath: /state}}]\n{probe}"
        )
    };
    let declared = "    readinessProbe:\n      exec: {command: [obli-pkg, status]}\n      periodSeconds: 1\n      failureThreshold: 1\n";
    let y = [pod("declared", declared), pod("implicit", "")].join("---\n");
    let f = write_file(&s, "obli.yaml", &y);
    s.ok(&["apply", "-f", &f]);
    for name in ["declared", "implicit"] {
        wait_pod(&s, name, "Ready", |p| condition(p, "Ready") == "True");
        let set = format!("echo '{BROKEN}' > /state/obli.json");
        s.ok(&["exec", name, "--", "/bin/busybox", "sh", "-c", &set]);
        let p = wait_pod(&s, name, "unready", |p| condition(p, "Ready") == "False");
        assert_eq!(condition(&p, "selur.io/obli-pkg-app"), "False");
        let ev = events(&s);
        assert!(
            ev.contains("Readiness probe failed: obli-pkg status: status=healthy integrity=failed"),
            "{ev}"
        );
        let health = s.ok(&["health", name]);
        assert!(
            health.contains("failed") && health.contains("verify"),
            "{health}"
        );
        let set = format!("echo '{HEALTHY}' > /state/obli.json");
        s.ok(&["exec", name, "--", "/bin/busybox", "sh", "-c", &set]);
        wait_pod(&s, name, "ready again", |p| condition(p, "Ready") == "True");
    }
    // Output that is not JSON fails the check with the reason.
    s.ok(&[
        "exec",
        "implicit",
        "--",
        "/bin/busybox",
        "sh",
        "-c",
        "echo oops > /state/obli.json",
    ]);
    wait_pod(&s, "implicit", "unready on bad output", |p| {
        condition(p, "Ready") == "False"
    });
    let start = Instant::now();
    while !events(&s).contains("output is not JSON") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no reason in the event"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The opt-out annotation disables the implicit check.
    let out = pod("optout", "").replace(
        "metadata:\n  name: optout\n",
        "metadata:\n  name: optout\n  annotations: {selur.io/obli-pkg-health: \"false\"}\n",
    );
    let f2 = write_file(&s, "optout.yaml", &out);
    s.ok(&["apply", "-f", &f2]);
    let p = wait_pod(&s, "optout", "Ready", |p| condition(p, "Ready") == "True");
    assert_eq!(condition(&p, "selur.io/obli-pkg-app"), "");
    let health: Value = serde_json::from_str(&s.ok(&["health", "declared", "-o", "json"])).unwrap();
    assert_eq!(health["app"]["integrity"], "ok");
    s.ok(&["delete", "-f", &f]);
    s.ok(&["delete", "-f", &f2]);
}
