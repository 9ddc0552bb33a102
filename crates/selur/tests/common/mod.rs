//! Test harness: a real `selur server` process on a loopback port in a temp
//! dir, killed and cleaned up on drop (also when the test fails).

#![allow(dead_code)]

pub mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use selur_client::{Client, Method};
use serde_json::Value;

pub const SELUR: &str = env!("CARGO_BIN_EXE_selur");

/// A `selur` command for tests. Its agents run in this machine's own
/// network namespace, so pods get no network there (`--pod-network none`):
/// a bridge, routes and nftables rules would touch the host and collide
/// with other tests. Tests of the pod network run their nodes in network
/// namespaces of their own (see `netns`) and pass `--pod-network bridge`.
pub fn selur_cmd() -> Command {
    let mut c = Command::new(SELUR);
    c.env("SELUR_POD_NETWORK", "none");
    c
}

/// The repository's examples directory.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub url: String,
    extra: Vec<String>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server {
            dir,
            child: None,
            url: String::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn();
        s
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Start (or restart) the server process on the same data dir.
    pub fn spawn(&mut self) {
        let kc = self.kubeconfig();
        let _ = std::fs::remove_file(&kc);
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log file");
        let child = selur_cmd()
            .arg("server")
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn selur server");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&kc) {
                if let Some(line) = text.lines().find(|l| l.trim_start().starts_with("server:")) {
                    self.url = line
                        .trim_start()
                        .trim_start_matches("server:")
                        .trim()
                        .to_string();
                    break;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("server exited early ({status}): {}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "server did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Run the CLI against this server.
    pub fn selur(&self, args: &[&str]) -> Output {
        self.selur_stdin(args, None)
    }

    pub fn selur_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = selur_cmd()
            .args(args)
            .env("SELUR_CONFIG", self.kubeconfig())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn selur");
        if let (Some(text), Some(mut si)) = (stdin, child.stdin.take()) {
            si.write_all(text.as_bytes()).expect("stdin");
        }
        child.wait_with_output().expect("selur output")
    }

    /// Run the CLI and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.selur(args);
        assert!(
            out.status.success(),
            "selur {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `get -o json` of one object.
    pub fn get_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("json output")
    }

    /// An API client for this server (raw answers through `send`/`builder`).
    pub fn http(&self) -> Client {
        Client::from_url(&self.url).expect("API client")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        clean_host(self.dir.path());
    }
}

/// Safety net for tests that run containers: remove runc containers, mounts
/// and /var/log/containers links that belong to this data dir, even when the
/// test failed before the agent could clean up.
pub fn clean_host(data_dir: &Path) {
    let dir = data_dir.display().to_string();
    // Shims that started a container just as the server was killed.
    kill_shims_under(&dir);
    for root in walk_dirs_named(data_dir, "runc") {
        if let Ok(out) = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["list", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force", id])
                    .output();
            }
        }
    }
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| m.starts_with(&dir))
        .collect();
    for m in mounts.iter().rev() {
        let _ = Command::new("umount").args(["-l", m]).output();
    }
    for pods in walk_dirs_named(data_dir, "pods") {
        for e in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
            remove_pod_cgroups(&e.file_name().to_string_lossy());
        }
    }
    if let Ok(entries) = std::fs::read_dir("/var/log/containers") {
        for e in entries.flatten() {
            if std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(data_dir)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Kill supervisor processes whose runtime root lies under `dir`.
fn kill_shims_under(dir: &str) {
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        let is_shim = args.iter().any(|a| a == "shim")
            && args
                .windows(2)
                .any(|w| w[0] == "--runtime-root" && w[1].starts_with(dir));
        if is_shim {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
        }
    }
}

/// Remove `selur-*/[qos/]pod<uid>` (and its container cgroups) from every hierarchy.
fn remove_pod_cgroups(uid: &str) {
    let roots = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten();
    for root in roots.map(|e| e.path()).filter(|p| !p.is_symlink()) {
        let parents = std::fs::read_dir(&root).into_iter().flatten().flatten();
        for parent in parents.filter(|e| e.file_name().to_string_lossy().starts_with("selur-")) {
            for sub in ["burstable", "besteffort", ""] {
                let pod = parent.path().join(sub).join(format!("pod{uid}"));
                for c in std::fs::read_dir(&pod).into_iter().flatten().flatten() {
                    let _ = std::fs::remove_dir(c.path());
                }
                let _ = std::fs::remove_dir(&pod);
                let _ = std::fs::remove_dir(parent.path().join(sub));
            }
        }
    }
}

fn walk_dirs_named(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if p.file_name().is_some_and(|n| n == name) {
                    out.push(p.clone());
                }
                if p.components().count() < root.components().count() + 3 {
                    stack.push(p);
                }
            }
        }
    }
    out
}

/// Write `text` into the server's temp dir as `name`; returns the path.
pub fn write_file(server: &Server, name: &str, text: &str) -> String {
    let p = server.dir.path().join(name);
    std::fs::write(&p, text).expect("write manifest");
    p.display().to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// JSON over HTTP against the server; returns (status code, body).
pub async fn call(
    s_url: &str,
    method: Method,
    path: &str,
    body: Option<(&str, &Value)>,
) -> (u16, Value) {
    let c = Client::from_url(s_url).expect("API client");
    let body = body.map(|(ct, b)| (ct, serde_json::to_vec(b).expect("json")));
    let resp = c.send(method, path, &[], body).await.expect("request");
    let code = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body");
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub fn configmap(name: &str) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

pub const CM_PATH: &str = "/api/v1/namespaces/default/configmaps";

/// Run a tool the test needs, failing the test with its stderr.
pub fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A busybox image in an OCI layout made with umoci (`<dir>/layout:t`),
/// with the given `umoci config` arguments applied after the repack.
pub fn umoci_busybox(dir: &Path, config: &[&str]) -> String {
    let l = dir.join("layout").display().to_string();
    let b = dir.join("bundle").display().to_string();
    let img = format!("{l}:t");
    sh("umoci", &["init", "--layout", &l]);
    sh("umoci", &["new", "--image", &img]);
    sh("umoci", &["unpack", "--image", &img, &b]);
    std::fs::create_dir_all(format!("{b}/rootfs/bin")).unwrap();
    std::fs::copy("/bin/busybox", format!("{b}/rootfs/bin/busybox")).unwrap();
    std::os::unix::fs::symlink("/bin/busybox", format!("{b}/rootfs/bin/sh")).unwrap();
    sh("umoci", &["repack", "--image", &img, &b]);
    if !config.is_empty() {
        let mut args = vec!["config", "--image", &img];
        args.extend_from_slice(config);
        sh("umoci", &args);
    }
    img
}

/// Wait (up to 40 s) until pod `name` satisfies `f`; returns it.
pub fn wait_pod(s: &Server, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let out = s.selur(&["get", "pod", name, "-o", "json"]);
        if out.status.success() {
            let p: Value = serde_json::from_slice(&out.stdout).unwrap();
            if f(&p) {
                return p;
            }
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "{name}: never {what}: {}",
                p["status"]
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An all-in-one server (node "main") whose store holds `localhost/rt:1`:
/// static busybox as the entrypoint, running as 65532.
pub fn node_with_busybox_image() -> Server {
    let s = Server::start(&["--node-name", "main"]);
    build_busybox_image(&s, None);
    s
}

/// Build `localhost/rt:1` (static busybox as the entrypoint, running as
/// 65532) into the server's node, or into `node` of several.
pub fn build_busybox_image(s: &Server, node: Option<&str>) {
    let ctx = s
        .data_dir()
        .join(format!("ctx-{}", node.unwrap_or("default")));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nUSER 65532\nENTRYPOINT [\"/bin/busybox\"]\n",
    )
    .unwrap();
    let mut args = vec!["image", "build", "-t", "localhost/rt:1"];
    if let Some(n) = node {
        args.extend(["--node", n]);
    }
    let ctx = ctx.display().to_string();
    args.push(&ctx);
    s.ok(&args);
}

/// A local `docker-registry` on a free loopback port, storing under `dir`
/// (deletes enabled); killed on drop.
pub struct LocalRegistry {
    child: Child,
    pub port: u16,
}

/// Registry settings in `dir` marking the registry on 127.0.0.1:`port` as
/// plain HTTP; returns the file's path.
pub fn insecure_registry_settings(dir: &Path, port: u16) -> PathBuf {
    let settings = dir.join("registries.yaml");
    std::fs::write(
        &settings,
        format!("configs:\n  \"127.0.0.1:{port}\":\n    insecure: true\n"),
    )
    .expect("registry settings");
    settings
}

/// A free loopback port (for a registry that appears later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl LocalRegistry {
    pub fn start(dir: &Path) -> LocalRegistry {
        Self::start_on(dir, free_port())
    }

    /// On a given port (one a test named before the registry ran).
    pub fn start_on(dir: &Path, port: u16) -> LocalRegistry {
        let cfg = dir.join("registry.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("storage").display()
            ),
        )
        .expect("registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let registry = LocalRegistry { child, port };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The static demo binary (`scripts/build-demo.sh`, run by `scripts/test.sh`
/// before the tests; built here if missing).
pub fn demo_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target.join("x86_64-unknown-linux-gnu/release/selur-demo");
    if !bin.exists() {
        let out = Command::new("bash")
            .arg(root.join("scripts/build-demo.sh"))
            .output()
            .expect("run scripts/build-demo.sh");
        assert!(
            out.status.success(),
            "scripts/build-demo.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    bin
}

/// Build the local stand-ins for the seed's images (lago-grey, svalinn,
/// vordr) into the server's node with `scripts/standins.sh`.
pub fn standin_images(s: &Server) {
    standin_images_on(s, None);
}

/// [`standin_images`] on one node of several.
pub fn standin_images_on(s: &Server, node: Option<&str>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("scripts/standins.sh"))
        .arg(demo_binary())
        .env("SELUR", SELUR)
        .env("SELUR_CONFIG", s.kubeconfig());
    if let Some(n) = node {
        cmd.env("SELUR_NODE", n);
    }
    let out = cmd.output().expect("run scripts/standins.sh");
    assert!(
        out.status.success(),
        "scripts/standins.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An extra `selur agent` process joined to `s` as node `name` (killed on drop).
pub struct ExtraAgent(pub Child);

impl ExtraAgent {
    pub fn start(s: &Server, name: &str, extra: &[&str]) -> ExtraAgent {
        let dir = s.data_dir().join(format!("agent-{name}"));
        let log = std::fs::File::create(s.data_dir().join(format!("agent-{name}.log")))
            .expect("agent log");
        let child = selur_cmd()
            .args([
                "agent",
                "--server",
                &s.url,
                "--node-name",
                name,
                "--data-dir",
            ])
            .arg(&dir)
            .args(["--heartbeat-interval", "1"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn selur agent");
        let start = Instant::now();
        while !s.selur(&["get", "node", name]).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "agent {name} never joined"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        ExtraAgent(child)
    }
}

impl Drop for ExtraAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Read `n` non-bookmark events from a watch on `path` starting after `rv`.
pub async fn watch_events(url: &str, path: &str, rv: &str, n: usize) -> Vec<Value> {
    let resp = Client::from_url(url)
        .unwrap()
        .send(
            Method::GET,
            path,
            &[("watch", "true".into()), ("resourceVersion", rv.into())],
            None,
        )
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while out.len() < n {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("timed out with {} of {n} events: {out:?}", out.len()))
            .expect("stream ended")
            .unwrap();
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let ev: Value = serde_json::from_slice(&line).unwrap();
            if ev["type"] != "BOOKMARK" {
                out.push(ev);
            }
        }
    }
    out
}
