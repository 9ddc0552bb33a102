//! The agent runs pods bound to its node for real: a sandbox, containers
//! under runc via `selur shim`, json-file logs linked from
//! `/var/log/containers`, pod status (Running, Succeeded, Failed,
//! CrashLoopBackOff), and full cleanup when the pod is deleted.

mod common;

use std::time::{Duration, Instant};

use common::{node_with_busybox_image, wait_pod, write_file};
use serde_json::Value;

fn pod(name: &str, policy: &str, containers: &[(&str, &str)]) -> String {
    let mut y = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: main\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: 2\n  containers:\n");
    for (c, script) in containers {
        y.push_str(&format!("  - name: {c}\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    args: [\"sh\", \"-c\", \"{script}\"]\n"));
    }
    y
}

#[test]
fn agent_runs_pods_reports_status_and_cleans_up() {
    let s = node_with_busybox_image();

    let manifests = [
        pod(
            "web",
            "Always",
            &[("web", "echo hello; sleep 60"), ("side", "sleep 60")],
        ),
        pod("done", "Never", &[("job", "echo ok")]),
        pod("fails", "Never", &[("job", "exit 3")]),
        pod("crash", "Always", &[("c", "exit 1")]),
    ]
    .join("---\n");
    let f = write_file(&s, "pods.yaml", &manifests);
    s.ok(&["apply", "-f", &f]);

    let web = wait_pod(&s, "web", "Running and Ready", |p| {
        p["status"]["phase"] == "Running"
            && p["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|cs| {
                    cs.len() == 2 && cs.iter().all(|c| c["state"]["running"].is_object())
                })
            && p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    });
    assert_eq!(web["status"]["qosClass"], "BestEffort");
    let uid = web["metadata"]["uid"].as_str().unwrap().to_string();
    // The log, in Docker json-file format, linked from /var/log/containers.
    let start = Instant::now();
    let link = loop {
        let found = std::fs::read_dir("/var/log/containers")
            .ok()
            .and_then(|rd| {
                rd.flatten().map(|e| e.path()).find(|p| {
                    let n = p.file_name().unwrap().to_string_lossy().to_string();
                    n.starts_with("web_default_web-")
                        && std::fs::read_link(p).is_ok_and(|t| t.starts_with(s.data_dir()))
                })
            });
        if let Some(l) = found {
            if std::fs::read_to_string(&l)
                .unwrap_or_default()
                .contains("hello")
            {
                break l;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no log link with hello"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(&link)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (line["log"].as_str(), line["stream"].as_str()),
        (Some("hello\n"), Some("stdout"))
    );

    wait_pod(&s, "done", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    let failed = wait_pod(&s, "fails", "Failed", |p| p["status"]["phase"] == "Failed");
    assert_eq!(
        failed["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
    wait_pod(&s, "crash", "in CrashLoopBackOff", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });

    // Environment from literals, the pod's fields, a ConfigMap and a Secret,
    // and the kubelet's Service variables.
    let env = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-db\nspec:\n  ports: [{port: 5432}]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  k: from-cm\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: sec\ndata:\n  p: c2VjcmV0\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: env\nspec:\n  nodeName: main\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    args: [\"sh\", \"-c\", \"echo $LIT $FROM_CM $FROM_SECRET $POD $NODE $CM_k $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT $WEB_DB_SERVICE_PORT\"]\n    envFrom:\n    - prefix: CM_\n      configMapRef: {name: cm}\n    env:\n    - {name: LIT, value: lit}\n    - name: FROM_CM\n      valueFrom: {configMapKeyRef: {name: cm, key: k}}\n    - name: FROM_SECRET\n      valueFrom: {secretKeyRef: {name: sec, key: p}}\n    - name: POD\n      valueFrom: {fieldRef: {fieldPath: metadata.name}}\n    - name: NODE\n      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}\n";
    let ef = write_file(&s, "env.yaml", env);
    s.ok(&["apply", "-f", &ef]);
    wait_pod(&s, "env", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(
        s.ok(&["logs", "env"]),
        "lit from-cm secret env main from-cm fd01::1 443 5432\n"
    );
    s.ok(&["delete", "-f", &ef]);

    // Deleting the pods stops the containers and removes mounts, namespaces and links.
    s.ok(&["delete", "-f", &f]);
    let start = Instant::now();
    loop {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let ours = mounts
            .lines()
            .filter(|l| l.contains(&uid) || l.contains(s.data_dir().to_str().unwrap()))
            .count();
        if ours == 0 && !link.exists() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "pod not cleaned up ({ours} mounts left)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn pod_volumes_empty_dir_memory_and_host_path() {
    let s = node_with_busybox_image();
    let host = s.data_dir().join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("hello"), "hello-from-host\n").unwrap();
    let created = s.data_dir().join("created-by-pod");
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: vols
spec:
  nodeName: main
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: writer
    image: localhost/rt:1
    imagePullPolicy: Never
    args: ["sh", "-c", "echo shared > /data/f; echo mem > /mem/f; grep -c ' /mem tmpfs' /proc/mounts; sleep 60"]
    volumeMounts: [{{name: data, mountPath: /data}}, {{name: mem, mountPath: /mem}}, {{name: created, mountPath: /created}}]
  - name: reader
    image: localhost/rt:1
    imagePullPolicy: Never
    args: ["sh", "-c", "for i in $(seq 1 50); do [ -f /data/f ] && break; sleep 0.1; done; cat /data/f; cat /host/hello; (echo x > /host/new) 2>/dev/null || echo read-only; sleep 60"]
    volumeMounts: [{{name: data, mountPath: /data}}, {{name: host, mountPath: /host, readOnly: true}}]
  volumes:
  - {{name: data, emptyDir: {{}}}}
  - {{name: mem, emptyDir: {{medium: Memory, sizeLimit: 1Mi}}}}
  - {{name: host, hostPath: {{path: {host}}}}}
  - {{name: created, hostPath: {{path: {created}}}}}
"#,
        host = host.display(),
        created = created.display()
    );
    let f = write_file(&s, "vols.yaml", &manifest);
    s.ok(&["apply", "-f", &f]);
    let p = wait_pod(&s, "vols", "Running", |p| {
        p["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|cs| cs.len() == 2 && cs.iter().all(|c| c["state"]["running"].is_object()))
    });
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let logs = s
        .data_dir()
        .join("agent/logs")
        .join(format!("default_vols_{uid}"));
    let read = |c: &str| -> Vec<String> {
        std::fs::read_to_string(logs.join(c).join("0.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["log"]
                    .as_str()
                    .unwrap()
                    .trim()
                    .to_string()
            })
            .collect()
    };
    let start = Instant::now();
    while read("reader").len() < 3 || read("writer").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "reader: {:?}, writer: {:?}",
            read("reader"),
            read("writer")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        read("reader"),
        vec!["shared", "hello-from-host", "read-only"],
        "emptyDir shared, hostPath read-only"
    );
    assert_eq!(read("writer"), vec!["1"], "Memory emptyDir is a tmpfs");
    assert!(!host.join("new").exists(), "read-only hostPath was written");
    assert!(
        created.is_dir(),
        "a missing hostPath without type is created as a directory"
    );
    s.ok(&["delete", "pod", "vols"]);
    let start = Instant::now();
    while std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(s.data_dir().to_str().unwrap())
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "volumes or rootfs still mounted after delete"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        host.join("hello").exists(),
        "hostPath contents survive the pod"
    );
}

#[test]
fn init_containers_run_in_order_before_the_app() {
    let s = node_with_busybox_image();
    let c = |name: &str, script: &str| {
        format!("  - name: {name}\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    args: [\"sh\", \"-c\", \"{script}\"]\n    volumeMounts: [{{name: work, mountPath: /work}}]\n")
    };
    let pod = |name: &str, inits: &[String], app: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: main\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  volumes: [{{name: work, emptyDir: {{}}}}]\n  initContainers:\n{}  containers:\n{}",
            inits.concat(),
            c("app", app)
        )
    };
    let manifests = [
        pod(
            "ordered",
            &[
                c("first", "echo one > /work/log"),
                c("second", "echo two >> /work/log"),
            ],
            "cat /work/log",
        ),
        pod("initfail", &[c("bad", "exit 2")], "echo should-not-run"),
    ]
    .join("---\n");
    let f = write_file(&s, "init.yaml", &manifests);
    s.ok(&["apply", "-f", &f]);
    let p = wait_pod(&s, "ordered", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(
        s.ok(&["logs", "ordered", "-c", "app"]),
        "one\ntwo\n",
        "init containers ran in order, before the app"
    );
    let inits = p["status"]["initContainerStatuses"].as_array().unwrap();
    assert_eq!(inits.len(), 2);
    assert!(inits
        .iter()
        .all(|i| i["state"]["terminated"]["reason"] == "Completed"));
    let failed = wait_pod(&s, "initfail", "Failed", |p| {
        p["status"]["phase"] == "Failed"
    });
    assert_eq!(
        failed["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
        2
    );
    assert_eq!(
        failed["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "PodInitializing",
        "the app never started: {}",
        failed["status"]
    );
    s.ok(&["delete", "-f", &f]);
}

#[test]
fn configmap_and_secret_volumes_wait_for_their_objects() {
    let s = node_with_busybox_image();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: files\nspec:\n  nodeName: main\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  securityContext: {fsGroup: 4242}\n  volumes:\n  - name: cfg\n    configMap:\n      name: app-config\n      items: [{key: app.conf, path: conf/app.conf, mode: 0440}]\n  - name: sec\n    secret: {secretName: app-secret}\n  containers:\n  - name: c\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    args: [\"sh\", \"-c\", \"cat /cfg/conf/app.conf /sec/token; stat -c %a /cfg/conf/app.conf; grep -c ' /sec tmpfs' /proc/mounts; touch /cfg/x 2>/dev/null || echo read-only\"]\n    volumeMounts: [{name: cfg, mountPath: /cfg}, {name: sec, mountPath: /sec}]\n";
    let f = write_file(&s, "files.yaml", pod);
    s.ok(&["apply", "-f", &f]);
    // The ConfigMap and Secret do not exist yet: the pod waits with FailedMount.
    let start = Instant::now();
    loop {
        let ev = s.ok(&["get", "events", "-o", "json"]);
        if ev.contains("FailedMount") && ev.contains("configmap \\\"app-config\\\" not found") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no FailedMount event: {ev}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let objs = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-config\ndata:\n  app.conf: mode=fast\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: app-secret\ndata:\n  token: czNjcjN0\n";
    let o = write_file(&s, "objs.yaml", objs);
    s.ok(&["apply", "-f", &o]);
    wait_pod(&s, "files", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(
        s.ok(&["logs", "files"]),
        "mode=fasts3cr3t440\n1\nread-only\n",
        "files per item with their mode (readable through fsGroup), the secret on tmpfs, mounts read-only"
    );
    s.ok(&["delete", "-f", &f]);
}

#[test]
fn read_only_root_and_run_as_user_are_enforced() {
    let s = node_with_busybox_image();
    let y = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: locked\nspec:\n  nodeName: main\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  volumes: [{name: tmp, emptyDir: {}}]\n  containers:\n  - name: c\n    image: localhost/rt:1\n    imagePullPolicy: Never\n    args: [\"sh\", \"-c\", \"id -u; touch /x 2>/dev/null || echo root-read-only; touch /tmp/ok && echo tmp-writable; grep -c NoNewPrivs:.1 /proc/self/status; grep CapEff /proc/self/status\"]\n    securityContext: {readOnlyRootFilesystem: true, runAsUser: 1000, allowPrivilegeEscalation: false}\n    volumeMounts: [{name: tmp, mountPath: /tmp}]\n";
    let f = write_file(&s, "locked.yaml", y);
    s.ok(&["apply", "-f", &f]);
    wait_pod(&s, "locked", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(
        s.ok(&["logs", "locked"]),
        "1000\nroot-read-only\ntmp-writable\n1\nCapEff:\t0000000000000000\n"
    );
    s.ok(&["delete", "-f", &f]);
}

#[test]
fn containers_of_a_pod_share_dev_shm_hosts_and_hostname() {
    let s = node_with_busybox_image();
    let y = pod(
        "shm",
        "Never",
        &[
            ("a", "echo shared > /dev/shm/x; sleep 3"),
            (
                "b",
                "sleep 1; cat /dev/shm/x; hostname; grep -c shm /etc/hosts; cat /etc/resolv.conf",
            ),
        ],
    );
    let f = write_file(&s, "shm.yaml", &y);
    s.ok(&["apply", "-f", &f]);
    wait_pod(&s, "shm", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    // No pod network here (`--pod-network none`): no cluster DNS, so the
    // pod gets the node's resolvers, as the kubelet falls back to.
    let log = s.ok(&["logs", "shm", "-c", "b"]);
    let rest = log
        .strip_prefix("shared\nshm\n1\n")
        .unwrap_or_else(|| panic!("{log}"));
    let node = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for ns in node.lines().filter(|l| l.starts_with("nameserver")).take(3) {
        assert!(rest.contains(ns.trim()), "{ns} missing from {rest}");
    }
    s.ok(&["delete", "-f", &f]);
}
