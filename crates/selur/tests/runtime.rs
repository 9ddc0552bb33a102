//! A real container: an image built by `selur image build` logic, unpacked
//! safely, mounted as an overlay root, turned into an OCI spec and run by
//! runc under `selur shim`, which writes Docker json-file logs and the exit
//! status. Everything is removed afterwards (mount, runc state, cgroups).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use selur_runtime::rootfs::Rootfs;
use serde_json::{json, Value};

struct Cleanup {
    rootfs: Rootfs,
    runc_root: PathBuf,
    id: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&self.runc_root)
            .args(["delete", "--force", &self.id])
            .output();
        let _ = self.rootfs.remove();
    }
}

fn image(store: &selur_image::ImageStore, ctx: &Path) -> selur_image::Digest {
    std::fs::create_dir_all(ctx).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nUSER 65532\nENTRYPOINT [\"/bin/busybox\"]\nCMD [\"echo\", \"hello\"]\n",
    )
    .unwrap();
    selur_image::build::build(
        store,
        &ctx.join("Containerfile"),
        ctx,
        &["localhost/rt:1".into()],
        &Default::default(),
    )
    .unwrap()
    .digest
}

/// A prepared container: its bundle, and the shim command that runs it.
struct Prepared {
    shim: Command,
    id: String,
    runc_root: PathBuf,
    log: PathBuf,
    exit: PathBuf,
    _cleanup: Cleanup,
}

/// Run one container with `args` (None = the image's CMD); returns (exit code, log lines).
fn run_container(
    dir: &Path,
    store: &selur_image::ImageStore,
    digest: &selur_image::Digest,
    name: &str,
    args: Option<Vec<&str>>,
) -> (i64, Vec<Value>) {
    let mut p = prepare(dir, store, digest, name, args, None);
    let out = p.shim.output().unwrap();
    finish(&p, &out)
}

fn finish(p: &Prepared, out: &std::process::Output) -> (i64, Vec<Value>) {
    assert!(
        p.exit.exists(),
        "shim wrote no exit file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&std::fs::read(&p.exit).unwrap()).unwrap();
    let lines = std::fs::read_to_string(&p.log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (status["exitCode"].as_i64().unwrap(), lines)
}

fn prepare(
    dir: &Path,
    store: &selur_image::ImageStore,
    digest: &selur_image::Digest,
    name: &str,
    args: Option<Vec<&str>>,
    sandbox: Option<&selur_runtime::sandbox::Sandbox>,
) -> Prepared {
    let layers = selur_image::unpack::unpack_image(store, digest, &Default::default()).unwrap();
    let cdir = dir.join(name);
    let rootfs = Rootfs::at(&cdir);
    let id = format!("selur-test-{}-{name}", std::process::id());
    let runc_root = dir.join("runc");
    let cleanup = Cleanup {
        rootfs: rootfs.clone(),
        runc_root: runc_root.clone(),
        id: id.clone(),
    };
    rootfs.mount(&layers).unwrap();
    let mut c = json!({"name": name, "image": "localhost/rt:1"});
    if let Some(a) = args {
        c["args"] = json!(a);
    }
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": {"containers": [c], "securityContext": {"runAsNonRoot": true}}
    }))
    .unwrap();
    let container = &pod.spec.as_ref().unwrap().containers[0];
    let m = store.manifest(digest).unwrap();
    let (_, config) = store.config(&m).unwrap();
    let etc = cdir.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    for f in ["hosts", "resolv.conf", "hostname"] {
        std::fs::write(etc.join(f), "").unwrap();
    }
    let input = selur_runtime::SpecInput {
        pod: &pod,
        container,
        image: &config,
        rootfs: rootfs.merged.clone(),
        hostname: "p".into(),
        netns: sandbox.map(|s| s.net_path()),
        ipcns: sandbox.map(|s| s.ipc_path()),
        utsns: sandbox.map(|s| s.uts_path()),
        cgroups_path: format!("/{id}"),
        mounts: vec![],
        etc_files: selur_runtime::EtcFiles {
            hosts: Some(etc.join("hosts")),
            resolv_conf: Some(etc.join("resolv.conf")),
            hostname: Some(etc.join("hostname")),
        },
        env_resolved: vec![],
        seccomp: true,
        pids_limit: Some(64),
    };
    let spec = selur_runtime::build_spec(&input).unwrap();
    std::fs::write(
        cdir.join("config.json"),
        serde_json::to_vec_pretty(&spec).unwrap(),
    )
    .unwrap();
    let log = cdir.join("c.log");
    let exit = cdir.join("exit.json");
    let mut shim = common::selur_cmd();
    shim.args(["shim", "--id", &id, "--bundle"])
        .arg(&cdir)
        .arg("--runtime-root")
        .arg(&runc_root)
        .arg("--log")
        .arg(&log)
        .arg("--exit-file")
        .arg(&exit);
    Prepared {
        shim,
        id: id.clone(),
        runc_root: runc_root.clone(),
        log,
        exit,
        _cleanup: cleanup,
    }
}

#[test]
fn runc_runs_a_built_image_with_json_logs_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let store = selur_image::ImageStore::open(&dir.path().join("images")).unwrap();
    let digest = image(&store, &dir.path().join("ctx"));

    let (code, lines) = run_container(dir.path(), &store, &digest, "hello", None);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["log"], "hello\n");
    assert_eq!(lines[0]["stream"], "stdout");

    // Non-root (image USER 65532), stderr, exit code, no IPv4 address besides loopback, read-only /proc/sys.
    let script = "id -u; echo oops >&2; ip -4 addr 2>/dev/null | grep -c inet; echo 1 > /proc/sys/kernel/hostname 2>/dev/null || echo ro; exit 3";
    let (code, lines) = run_container(
        dir.path(),
        &store,
        &digest,
        "fails",
        Some(vec!["sh", "-c", script]),
    );
    assert_eq!(code, 3, "{lines:?}");
    let text: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap().to_string(),
                l["log"].as_str().unwrap().trim().to_string(),
            )
        })
        .collect();
    assert!(
        text.contains(&("stdout".into(), "65532".into())),
        "{text:?}"
    );
    assert!(text.contains(&("stderr".into(), "oops".into())), "{text:?}");
    assert!(text.contains(&("stdout".into(), "ro".into())), "{text:?}");
    assert!(!selur_runtime::rootfs::is_mounted(
        &dir.path().join("hello/rootfs")
    ));
}

#[test]
fn containers_of_a_pod_share_its_sandbox_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let store = selur_image::ImageStore::open(&dir.path().join("images")).unwrap();
    let digest = image(&store, &dir.path().join("ctx"));
    struct SbGuard(selur_runtime::sandbox::Sandbox);
    impl Drop for SbGuard {
        fn drop(&mut self) {
            let _ = self.0.destroy();
        }
    }
    let sb = SbGuard(selur_runtime::sandbox::Sandbox::create(&dir.path().join("sandbox")).unwrap());
    // A listens on the pod's loopback; B, another container, reaches it over ::1.
    let mut a = prepare(
        dir.path(),
        &store,
        &digest,
        "server",
        Some(vec!["sh", "-c", "hostname; nc -l -p 8080"]),
        Some(&sb.0),
    );
    let a_child = a.shim.spawn().unwrap();
    let client = "hostname; for i in $(seq 1 50); do echo ping | nc ::1 8080 && exit 0; sleep 0.1; done; exit 1";
    let (b_code, b_lines) = {
        let mut b = prepare(
            dir.path(),
            &store,
            &digest,
            "client",
            Some(vec!["sh", "-c", client]),
            Some(&sb.0),
        );
        let out = b.shim.output().unwrap();
        finish(&b, &out)
    };
    let a_out = a_child.wait_with_output().unwrap();
    let (a_code, a_lines) = finish(&a, &a_out);
    assert_eq!(
        b_code, 0,
        "client could not reach the server over the pod loopback: {b_lines:?}"
    );
    assert_eq!(a_code, 0, "{a_lines:?}");
    let logs = |lines: &[Value]| {
        lines
            .iter()
            .map(|l| l["log"].as_str().unwrap().trim().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(logs(&a_lines), vec!["p".to_string(), "ping".to_string()]);
    // The client's stdout (its refused tries go to stderr, and the two
    // streams are not ordered against each other).
    let b_stdout: Vec<Value> = b_lines
        .iter()
        .filter(|l| l["stream"] == "stdout")
        .cloned()
        .collect();
    assert_eq!(
        logs(&b_stdout).first().map(String::as_str),
        Some("p"),
        "same UTS namespace, same hostname: {b_lines:?}"
    );
}

#[test]
fn the_runtime_wrapper_signals_a_running_container() {
    let dir = tempfile::tempdir().unwrap();
    let store = selur_image::ImageStore::open(&dir.path().join("images")).unwrap();
    let digest = image(&store, &dir.path().join("ctx"));
    let mut p = prepare(
        dir.path(),
        &store,
        &digest,
        "sleeper",
        Some(vec!["sleep", "30"]),
        None,
    );
    let child = p.shim.spawn().unwrap();
    let rt = selur_runtime::runc::Runtime::new("runc", &p.runc_root);
    let start = std::time::Instant::now();
    // Signal it once it runs: a KILL while runc still holds it "created"
    // makes `runc run` fail (exit 1) rather than report the signal.
    while rt
        .state(&p.id)
        .is_none_or(|(status, _)| status != "running")
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "container never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    rt.kill(&p.id, "KILL").unwrap();
    let out = child.wait_with_output().unwrap();
    let (code, _) = finish(&p, &out);
    assert_eq!(code, 137, "SIGKILL is 128+9");
}
