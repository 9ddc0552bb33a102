//! Pod start latency and memory per pod on a real node: an all-in-one
//! `selur server` process (the release binary, in-process agent, node
//! `bench`) in a temp dir, with a small static image built into its store.
//!
//! 1. Pod start: N pods created one after the other; each timed from just
//!    before its POST until a pod watch shows
//!    `status.containerStatuses[0].state.running`, plus a breakdown (POST ack,
//!    the agent's `Pulled` and `Started` events seen through an event watch,
//!    and the moment runc actually started the container, i.e. its
//!    `exec.fifo` was consumed).
//! 2. The floor, same run, interleaved with the pods (each round: every
//!    floor variant once, then one pod): N `runc run -d` of a bundle holding
//!    the same binary, command and user, bare; after a network namespace
//!    (`unshare --net=FILE`, joined by path); after the whole sandbox the
//!    agent makes (net/ipc/uts namespaces, hostname, loopback up); and with
//!    the agent's own generated OCI spec for the pod's container.
//! 3. Memory: RSS/PSS of the server process (API server + agent) idle, after
//!    the image build, before and with M pods running, and PSS of every
//!    `selur shim` process (and, not counted, the `runc run` each keeps).
//!
//! Needs root, runc, util-linux's unshare/nsenter and iproute2. Everything it
//! makes (server, containers, mounts, cgroups, log links) is removed at the
//! end, also on error or Ctrl-C. Run:
//! `cargo build --release -p selur -p selur-bench && target/release/pod-bench --pods 50 --mem-pods 20`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use futures::StreamExt;
use serde_json::{json, Value};

const NODE: &str = "bench";
const TAG: &str = "localhost/bench:1";
const PODS: &str = "/api/v1/namespaces/default/pods";
const EVENTS: &str = "/api/v1/namespaces/default/events";
/// Wait before memory readings, so transient threads and buffers are gone.
const SETTLE: Duration = Duration::from_secs(12);
const USAGE: &str = "usage: pod-bench [--pods N] [--mem-pods M] [--selur PATH] \
    [--image auto|demo|busybox] [--demo PATH] [--server-log FILE]";

// ---------------------------------------------------------------- arguments

#[derive(Debug, Clone, Copy, PartialEq)]
enum ImageChoice {
    Auto,
    Demo,
    Busybox,
}

#[derive(Debug)]
struct Args {
    selur: PathBuf,
    pods: usize,
    mem_pods: usize,
    image: ImageChoice,
    demo: Option<PathBuf>,
    server_log: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let exe_dir = std::env::current_exe()
        .context("current_exe")?
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("the executable has no directory"))?;
    let mut a = Args {
        selur: exe_dir.join("selur"),
        pods: 50,
        mem_pods: 20,
        image: ImageChoice::Auto,
        demo: None,
        server_log: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let val = it
            .next()
            .ok_or_else(|| anyhow!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--pods" => a.pods = val.parse().context("--pods")?,
            "--mem-pods" => a.mem_pods = val.parse().context("--mem-pods")?,
            "--selur" => a.selur = PathBuf::from(val),
            "--demo" => a.demo = Some(PathBuf::from(val)),
            "--server-log" => a.server_log = Some(PathBuf::from(val)),
            "--image" => {
                a.image = match val.as_str() {
                    "auto" => ImageChoice::Auto,
                    "demo" => ImageChoice::Demo,
                    "busybox" => ImageChoice::Busybox,
                    _ => bail!("--image auto|demo|busybox, not {val}"),
                }
            }
            _ => bail!("unknown argument {flag}\n{USAGE}"),
        }
    }
    ensure!(a.pods > 0, "--pods must be at least 1");
    if a.demo.is_none() {
        // target/release/pod-bench -> target/x86_64-unknown-linux-gnu/release/selur-demo
        let rel = Path::new("x86_64-unknown-linux-gnu/release/selur-demo");
        let candidates = [
            exe_dir.parent().map(|t| t.join(rel)),
            Some(Path::new("target").join(rel)),
        ];
        a.demo = candidates.into_iter().flatten().find(|p| p.is_file());
    }
    Ok(a)
}

/// What runs in the pods and in the floor's bundles.
struct Workload {
    /// Name of the image and what to say in the header.
    label: String,
    /// (source file, path inside the image).
    binary: (PathBuf, &'static str),
    /// The process the container runs.
    argv: Vec<String>,
    /// The pod's `command` (None: the image's CMD).
    pod_command: Option<Vec<String>>,
    containerfile: String,
}

fn workload(args: &Args) -> Result<Workload> {
    let demo = match (args.image, &args.demo) {
        (ImageChoice::Busybox, _) => None,
        (_, Some(d)) if d.is_file() => Some(d.clone()),
        (ImageChoice::Demo, _) => {
            bail!("--image demo: no selur-demo binary (build it with scripts/build-demo.sh or pass --demo PATH)")
        }
        _ => None,
    };
    Ok(match demo {
        Some(d) => Workload {
            label: format!("static selur-demo web-server ({})", d.display()),
            binary: (d, "usr/bin/web-server"),
            argv: vec!["/usr/bin/web-server".into()],
            pod_command: None,
            containerfile: "FROM scratch\nCOPY web-server /usr/bin/web-server\nUSER 65532\nCMD [\"/usr/bin/web-server\"]\n".into(),
        },
        None => {
            ensure!(
                Path::new("/bin/busybox").is_file(),
                "no selur-demo binary and no /bin/busybox (apt-get install busybox-static)"
            );
            let argv: Vec<String> = ["/bin/busybox", "sleep", "3600"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            Workload {
                label: "static busybox, `sleep 3600`".into(),
                binary: (PathBuf::from("/bin/busybox"), "bin/busybox"),
                pod_command: Some(argv.clone()),
                argv,
                containerfile: "FROM scratch\nCOPY busybox /bin/busybox\nUSER 65532\n".into(),
            }
        }
    })
}

// ---------------------------------------------------------------- statistics

#[derive(Clone, Default)]
struct Stats(Vec<Duration>);

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort();
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i].as_secs_f64() * 1000.0
    }
    fn row(&self, name: &str) {
        println!(
            "| {name:<58} | {:>4} | {:>7.1} | {:>7.1} | {:>7.1} | {:>7.1} |",
            self.0.len(),
            self.pct(0.5),
            self.pct(0.9),
            self.pct(0.99),
            self.pct(1.0)
        );
    }
}

fn table_head() {
    println!(
        "| {:<58} | {:>4} | {:>7} | {:>7} | {:>7} | {:>7} |",
        "measurement", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    println!(
        "|{}|------|---------|---------|---------|---------|",
        "-".repeat(60)
    );
}

// ---------------------------------------------------------------- host helpers

fn sh(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd}"))?;
    ensure!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// `Rss:` and `Pss:` of a process, in kB, from smaps_rollup.
fn rss_pss_kb(pid: u32) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| -> Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/smaps_rollup"))
    };
    Ok((field("Rss:")?, field("Pss:")?))
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// `selur shim` processes whose `--runtime-root` lies under `dir`.
fn shims_under(dir: &Path) -> Vec<u32> {
    pids()
        .into_iter()
        .filter(|pid| {
            let argv = cmdline(*pid);
            argv.get(1).is_some_and(|a| a == "shim")
                && argv
                    .windows(2)
                    .any(|w| w[0] == "--runtime-root" && Path::new(&w[1]).starts_with(dir))
        })
        .collect()
}

/// Ids of the containers a runc state root holds.
fn runc_ids(root: &Path) -> Vec<String> {
    if !root.exists() {
        return Vec::new();
    }
    Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["list", "-q"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `runc delete --force` every container of `root`, four at a time.
fn runc_delete_all(root: &Path) {
    let ids = runc_ids(root);
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(id) = ids.get(i) else {
                    return;
                };
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(root)
                    .args(["delete", "--force", id])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            });
        }
    });
}

/// `umount -l` everything under `dir`, innermost first, in batches;
/// returns what is still mounted.
fn umount_under(dir: &Path) -> Vec<String> {
    for _ in 0..5 {
        let ms = mounts_under(dir);
        if ms.is_empty() {
            break;
        }
        for batch in ms.chunks(64) {
            let _ = Command::new("umount")
                .arg("-l")
                .args(batch)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    mounts_under(dir)
}

/// Mount points under `dir`, innermost (latest) first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    v.reverse();
    v
}

/// rmdir a cgroup directory tree, children first.
fn rmdir_tree(dir: &Path) -> bool {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            rmdir_tree(&e.path());
        }
    }
    std::fs::remove_dir(dir).is_ok() || !dir.exists()
}

fn cgroup_dirs() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/sys/fs/cgroup").join(format!("selur-{NODE}"))];
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        if !p.is_symlink() && p.is_dir() {
            v.push(p.join(format!("selur-{NODE}")));
        }
    }
    v.into_iter().filter(|p| p.is_dir()).collect()
}

// ---------------------------------------------------------------- cleanup

/// Everything the bench made on the host; removed by `cleanup` (also on drop).
#[derive(Default)]
struct Host {
    data: Option<tempfile::TempDir>,
    floor: Option<tempfile::TempDir>,
    server: Option<std::process::Child>,
}

impl Host {
    fn data_dir(&self) -> Result<&Path> {
        self.data
            .as_ref()
            .map(|d| d.path())
            .ok_or_else(|| anyhow!("no data dir"))
    }

    fn agent_runc_root(&self) -> Result<PathBuf> {
        Ok(self.data_dir()?.join("agent").join("runc"))
    }

    fn server_pid(&self) -> Result<u32> {
        self.server
            .as_ref()
            .map(|c| c.id())
            .ok_or_else(|| anyhow!("no server"))
    }

    /// Remove everything; returns what could not be removed.
    fn cleanup(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let dirs: Vec<PathBuf> = [&self.data, &self.floor]
            .into_iter()
            .flatten()
            .map(|d| d.path().to_path_buf())
            .collect();
        if dirs.is_empty() {
            return problems;
        }
        let roots: Vec<PathBuf> = self
            .data
            .iter()
            .map(|d| d.path().join("agent").join("runc"))
            .chain(self.floor.iter().map(|d| d.path().join("runc")))
            .collect();
        for _ in 0..3 {
            for r in &roots {
                runc_delete_all(r);
            }
            if roots.iter().all(|r| runc_ids(r).is_empty()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for r in &roots {
            let left = runc_ids(r);
            if !left.is_empty() {
                problems.push(format!("runc containers left in {}: {left:?}", r.display()));
            }
        }
        // Shims exit once their `runc run` ended; kill stragglers.
        if let Some(d) = &self.data {
            let deadline = Instant::now() + Duration::from_secs(3);
            while !shims_under(d.path()).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            for pid in shims_under(d.path()) {
                let _ = Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        for d in &dirs {
            let left = umount_under(d);
            if !left.is_empty() {
                problems.push(format!("mounts left: {left:?}"));
            }
        }
        if let Ok(entries) = std::fs::read_dir("/var/log/containers") {
            for e in entries.flatten() {
                if std::fs::read_link(e.path()).is_ok_and(|t| dirs.iter().any(|d| t.starts_with(d)))
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        for cg in cgroup_dirs() {
            let mut ok = false;
            for _ in 0..20 {
                if rmdir_tree(&cg) {
                    ok = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !ok {
                problems.push(format!("cgroup left: {}", cg.display()));
            }
        }
        for d in [self.data.take(), self.floor.take()].into_iter().flatten() {
            let p = d.path().to_path_buf();
            if let Err(e) = d.close() {
                problems.push(format!("removing {}: {e}", p.display()));
            }
        }
        problems
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for p in self.cleanup() {
            eprintln!("pod-bench: cleanup: {p}");
        }
    }
}

// ---------------------------------------------------------------- server and API

struct Api {
    url: String,
    c: reqwest::Client,
}

impl Api {
    async fn post_pod(&self, pod: &Value) -> Result<Value> {
        let r = self
            .c
            .post(format!("{}{PODS}", self.url))
            .json(pod)
            .send()
            .await?;
        let code = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        ensure!(code == 201, "create pod: HTTP {code}: {body}");
        Ok(body)
    }

    async fn delete_pod(&self, name: &str) -> Result<()> {
        let r = self
            .c
            .delete(format!("{}{PODS}/{name}", self.url))
            .send()
            .await?;
        let code = r.status().as_u16();
        ensure!(
            matches!(code, 200 | 202 | 404),
            "delete pod {name}: HTTP {code}: {}",
            r.text().await.unwrap_or_default()
        );
        Ok(())
    }
}

async fn start_server(args: &Args, host: &mut Host) -> Result<Api> {
    let data = tempfile::Builder::new().prefix("pod-bench-").tempdir()?;
    let dir = data.path().to_path_buf();
    host.data = Some(data);
    let log_path = args
        .server_log
        .clone()
        .unwrap_or_else(|| dir.join("server.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    use std::os::unix::process::CommandExt;
    let child = Command::new(&args.selur)
        .arg("server")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen", "127.0.0.1:0", "--node-name", NODE])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // Its own process group: Ctrl-C reaches the bench, which cleans up.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} server", args.selur.display()))?;
    host.server = Some(child);
    let log_tail = || {
        let t = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    let kc = dir.join("kubeconfig");
    let start = Instant::now();
    let url = loop {
        if let Ok(t) = std::fs::read_to_string(&kc) {
            if let Some(l) = t.lines().find(|l| l.trim_start().starts_with("server:")) {
                break l
                    .trim_start()
                    .trim_start_matches("server:")
                    .trim()
                    .to_string();
            }
        }
        if let Some(c) = host.server.as_mut() {
            if let Some(st) = c.try_wait()? {
                bail!("selur server exited ({st}):\n{}", log_tail());
            }
        }
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "no kubeconfig after 30 s:\n{}",
            log_tail()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let api = Api {
        url,
        c: reqwest::Client::new(),
    };
    loop {
        let r = api
            .c
            .get(format!("{}/api/v1/nodes/{NODE}", api.url))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().as_u16() == 200) {
            break;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(60),
            "node {NODE} did not register within 60 s:\n{}",
            log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(api)
}

async fn build_image(host: &Host, w: &Workload, kubeconfig: &Path, selur: &Path) -> Result<()> {
    let ctx = host.data_dir()?.join("ctx");
    std::fs::create_dir_all(&ctx)?;
    let name = Path::new(w.binary.1)
        .file_name()
        .ok_or_else(|| anyhow!("bad binary path"))?;
    std::fs::copy(&w.binary.0, ctx.join(name))
        .with_context(|| format!("copying {}", w.binary.0.display()))?;
    std::fs::write(ctx.join("Containerfile"), &w.containerfile)?;
    let out = tokio::process::Command::new(selur)
        .args(["image", "build", "-t", TAG])
        .arg(&ctx)
        .env("SELUR_CONFIG", kubeconfig)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "selur image build: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// When things were first seen, by key (`running/NAME`, `runc/NAME`,
/// `Pulled/NAME`, `Started/NAME`, `pod/NAME` for any pod event).
#[derive(Default)]
struct Marks {
    seen: Mutex<HashMap<String, Instant>>,
    notify: tokio::sync::Notify,
    /// Why a watch ended, when it did.
    ended: Mutex<Option<String>>,
}

impl Marks {
    fn mark(&self, key: String, at: Instant) {
        if let Ok(mut m) = self.seen.lock() {
            m.entry(key).or_insert(at);
        }
        self.notify.notify_waiters();
    }

    fn get(&self, key: &str) -> Option<Instant> {
        self.seen.lock().ok().and_then(|m| m.get(key).copied())
    }

    async fn wait(&self, key: &str, timeout: Duration) -> Result<Instant> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let n = self.notify.notified();
            if let Some(t) = self.get(key) {
                return Ok(t);
            }
            if let Some(why) = self.ended.lock().ok().and_then(|e| e.clone()) {
                if !key.starts_with("runc/") {
                    bail!("waiting for {key}: {why}");
                }
            }
            if tokio::time::timeout_at(deadline, n).await.is_err() {
                bail!("{key} not seen within {} s", timeout.as_secs());
            }
        }
    }
}

/// Open a watch and record what `classify` finds in each event.
async fn spawn_watch(
    api: &Api,
    path: &str,
    marks: Arc<Marks>,
    classify: fn(&Value) -> Vec<String>,
) -> Result<tokio::task::JoinHandle<()>> {
    let resp = api
        .c
        .get(format!("{}{path}?watch=true", api.url))
        .send()
        .await?;
    ensure!(
        resp.status().is_success(),
        "watch {path}: HTTP {}",
        resp.status()
    );
    let mut stream = resp.bytes_stream();
    let path = path.to_string();
    Ok(tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        let why = loop {
            match stream.next().await {
                None => break format!("watch {path} ended"),
                Some(Err(e)) => break format!("watch {path}: {e}"),
                Some(Ok(chunk)) => {
                    let at = Instant::now();
                    buf.extend_from_slice(&chunk);
                    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        if let Ok(ev) = serde_json::from_slice::<Value>(&line) {
                            for k in classify(&ev) {
                                marks.mark(k, at);
                            }
                        }
                    }
                }
            }
        };
        if let Ok(mut e) = marks.ended.lock() {
            *e = Some(why);
        }
        marks.notify.notify_waiters();
    }))
}

fn classify_pod(ev: &Value) -> Vec<String> {
    let o = &ev["object"];
    let Some(name) = o["metadata"]["name"].as_str() else {
        return Vec::new();
    };
    let mut v = vec![format!("pod/{name}")];
    if o["status"]["containerStatuses"][0]["state"]["running"].is_object() {
        v.push(format!("running/{name}"));
    }
    v
}

fn classify_event(ev: &Value) -> Vec<String> {
    let o = &ev["object"];
    match (o["reason"].as_str(), o["involvedObject"]["name"].as_str()) {
        (Some(r), Some(n)) => vec![format!("{r}/{n}")],
        _ => Vec::new(),
    }
}

/// The runtime id the agent gives container `c` of pod `uid` (see
/// selur-agent's `id_for`).
fn container_id(uid: &str) -> String {
    let short: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("{NODE}-{short}-c")
}

/// Record `runc/NAME` once runc started the container: its state exists and
/// its exec fifo was consumed (what `runc start` waits for).
fn spawn_runc_poll(root: PathBuf, id: String, name: String, marks: Arc<Marks>) {
    tokio::spawn(async move {
        let dir = root.join(&id);
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if dir.join("state.json").exists() && !dir.join("exec.fifo").exists() {
                marks.mark(format!("runc/{name}"), Instant::now());
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
}

fn pod_manifest(name: &str, w: &Workload) -> Value {
    let mut c = json!({"name": "c", "image": TAG, "imagePullPolicy": "Never"});
    if let Some(cmd) = &w.pod_command {
        c["command"] = json!(cmd);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": NODE, "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 1, "containers": [c]}})
}

async fn delete_pods_and_wait(api: &Api, names: &[String], runc_root: &Path) -> Result<Duration> {
    let t = Instant::now();
    for n in names {
        api.delete_pod(n).await?;
    }
    loop {
        let root = runc_root.to_path_buf();
        let left = tokio::task::spawn_blocking(move || runc_ids(&root)).await?;
        if left.is_empty() {
            return Ok(t.elapsed());
        }
        ensure!(
            t.elapsed() < Duration::from_secs(60),
            "{} containers still there 60 s after deleting the pods: {left:?}",
            left.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- floor

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Bare,
    Netns,
    Sandbox,
}

struct Floor {
    dir: PathBuf,
    root: PathBuf,
    template: Value,
    binary: (PathBuf, &'static str),
}

impl Floor {
    /// The same floor, but running Selur's own OCI spec for the pod's
    /// container (from `config`), made standalone: own root file system,
    /// fresh namespaces instead of the pod's, no bind mounts from the pod dir.
    fn with_selur_spec(&self, config: &Value, data_dir: &Path) -> Floor {
        let mut spec = config.clone();
        let readonly = spec["root"]["readonly"].as_bool().unwrap_or(false);
        spec["root"] = json!({"path": "rootfs", "readonly": readonly});
        if let Some(list) = spec["linux"]["namespaces"].as_array_mut() {
            for n in list.iter_mut() {
                if let Some(o) = n.as_object_mut() {
                    o.remove("path");
                }
            }
        }
        if let Some(list) = spec["mounts"].as_array_mut() {
            list.retain(|m| {
                !m["source"]
                    .as_str()
                    .is_some_and(|s| Path::new(s).starts_with(data_dir))
            });
        }
        Floor {
            dir: self.dir.clone(),
            root: self.root.clone(),
            template: spec,
            binary: self.binary.clone(),
        }
    }

    fn new(dir: &Path, w: &Workload) -> Result<Floor> {
        let tdir = dir.join("template");
        std::fs::create_dir_all(&tdir)?;
        sh("runc", &["spec", "--bundle", &tdir.display().to_string()])?;
        let mut spec: Value = serde_json::from_slice(&std::fs::read(tdir.join("config.json"))?)?;
        spec["process"]["args"] = json!(w.argv);
        spec["process"]["terminal"] = json!(false);
        spec["process"]["user"] = json!({"uid": 65532, "gid": 65532});
        spec["root"] = json!({"path": "rootfs", "readonly": false});
        Ok(Floor {
            dir: dir.to_path_buf(),
            root: dir.join("runc"),
            template: spec,
            binary: w.binary.clone(),
        })
    }

    /// A bundle for container `id` (not timed): rootfs with the binary, config.
    fn bundle(&self, id: &str, v: Variant) -> Result<PathBuf> {
        let b = self.dir.join(id);
        let target = b.join("rootfs").join(self.binary.1);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::copy(&self.binary.0, &target)?;
        let ns = b.join("ns");
        std::fs::create_dir_all(&ns)?;
        let mut spec = self.template.clone();
        spec["linux"]["cgroupsPath"] = json!(format!("/selur-{NODE}/floor/{id}"));
        let paths: &[&str] = match v {
            Variant::Bare => &[],
            Variant::Netns => &["network"],
            Variant::Sandbox => &["network", "ipc", "uts"],
        };
        if let Some(list) = spec["linux"]["namespaces"].as_array_mut() {
            for n in list.iter_mut() {
                let kind = n["type"].as_str().unwrap_or("").to_string();
                if paths.contains(&kind.as_str()) {
                    n["path"] = json!(ns.join(&kind).display().to_string());
                }
            }
        }
        if v == Variant::Sandbox {
            // The hostname is set when the UTS namespace is made.
            if let Some(o) = spec.as_object_mut() {
                o.remove("hostname");
            }
        }
        std::fs::write(b.join("config.json"), serde_json::to_vec_pretty(&spec)?)?;
        for k in paths {
            std::fs::write(ns.join(k), b"")?;
        }
        Ok(b)
    }

    /// The timed part: namespaces (per variant) and `runc run -d`.
    fn run(&self, id: &str, bundle: &Path, v: Variant) -> Result<Duration> {
        let ns = bundle.join("ns");
        let nsarg = |flag: &str, kind: &str| format!("--{flag}={}", ns.join(kind).display());
        let t = Instant::now();
        match v {
            Variant::Bare => {}
            Variant::Netns => {
                sh("unshare", &[&nsarg("net", "network"), "true"])?;
            }
            Variant::Sandbox => {
                sh(
                    "unshare",
                    &[
                        &nsarg("net", "network"),
                        &nsarg("ipc", "ipc"),
                        &nsarg("uts", "uts"),
                        "hostname",
                        id,
                    ],
                )?;
                sh(
                    "nsenter",
                    &[&nsarg("net", "network"), "ip", "link", "set", "lo", "up"],
                )?;
            }
        }
        let st = Command::new("runc")
            .arg("--root")
            .arg(&self.root)
            .args(["run", "-d", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        let took = t.elapsed();
        ensure!(st.success(), "runc run -d {id}: {st}");
        Ok(took)
    }
}

/// One timed floor start in a blocking thread (the bundle is made untimed).
async fn floor_once(floor: Arc<Floor>, id: String, v: Variant) -> Result<Duration> {
    tokio::task::spawn_blocking(move || -> Result<Duration> {
        let b = floor.bundle(&id, v)?;
        floor.run(&id, &b, v)
    })
    .await?
}

const FLOOR_ROWS: [&str; 4] = [
    "floor: bare `runc run -d`",
    "floor + netns (`unshare --net=FILE true`, joined by path)",
    "floor + Selur's sandbox (net/ipc/uts, hostname, lo up)",
    "floor with Selur's generated OCI spec (bare, no sandbox)",
];

// ---------------------------------------------------------------- the run

struct Report {
    workload: String,
    idle: (u64, u64),
    /// After the image build (and a settle time).
    built: (u64, u64),
    load_before: String,
    load_after: String,
    latency: Vec<(String, Stats)>,
    selur_running: Stats,
    selur_runc: Stats,
    /// Per FLOOR_ROWS.
    floor: [Stats; 4],
    mem: Option<Mem>,
    delete_latency: Duration,
}

struct Mem {
    pods: usize,
    before: (u64, u64),
    after: (u64, u64),
    shims: u64,
    shim_count: usize,
    runc_run: u64,
    runc_count: usize,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// POST pod `name` and watch for its runc start; returns (t0, POST answered).
async fn create_pod(
    api: &Api,
    w: &Workload,
    name: &str,
    runc_root: &Path,
    marks: &Arc<Marks>,
) -> Result<(Instant, Instant)> {
    let t0 = Instant::now();
    let created = api.post_pod(&pod_manifest(name, w)).await?;
    let acked = Instant::now();
    let uid = created["metadata"]["uid"]
        .as_str()
        .ok_or_else(|| anyhow!("created pod has no uid: {created}"))?;
    spawn_runc_poll(
        runc_root.to_path_buf(),
        container_id(uid),
        name.to_string(),
        marks.clone(),
    );
    Ok((t0, acked))
}

async fn wait_running(marks: &Marks, name: &str) -> Result<()> {
    let timeout = Duration::from_secs(60);
    marks
        .wait(&format!("running/{name}"), timeout)
        .await
        .with_context(|| format!("pod {name}"))?;
    marks.wait(&format!("runc/{name}"), timeout).await?;
    Ok(())
}

async fn run(args: &Args, host: &mut Host) -> Result<Report> {
    let w = workload(args)?;
    ensure!(
        args.selur.is_file(),
        "no selur binary at {} (cargo build --release -p selur, or --selur PATH)",
        args.selur.display()
    );
    let load_before = loadavg();
    eprintln!("pod-bench: starting {} server", args.selur.display());
    let api = start_server(args, host).await?;
    let server_pid = host.server_pid()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_pss_kb(server_pid)?;
    let data = host.data_dir()?.to_path_buf();
    eprintln!("pod-bench: building {TAG} ({})", w.label);
    build_image(host, &w, &data.join("kubeconfig"), &args.selur).await?;
    tokio::time::sleep(SETTLE).await;
    let built = rss_pss_kb(server_pid)?;

    let floor_tmp = tempfile::Builder::new()
        .prefix("pod-bench-floor-")
        .tempdir()?;
    let floor_dir = floor_tmp.path().to_path_buf();
    host.floor = Some(floor_tmp);
    let floor = Arc::new(Floor::new(&floor_dir, &w)?);

    let marks = Arc::new(Marks::default());
    let pod_watch = spawn_watch(&api, PODS, marks.clone(), classify_pod).await?;
    let ev_watch = spawn_watch(&api, EVENTS, marks.clone(), classify_event).await;
    if let Err(e) = &ev_watch {
        eprintln!("pod-bench: no event watch ({e}); the breakdown omits agent events");
    }
    let runc_root = host.agent_runc_root()?;

    // Warm-up, untimed: one pod, and one start of each floor variant. The
    // pod also gives Selur's generated spec for the last floor variant.
    let (_, _) = create_pod(&api, &w, "p000", &runc_root, &marks).await?;
    wait_running(&marks, "p000").await?;
    let uid = api
        .c
        .get(format!("{}{PODS}/p000", api.url))
        .send()
        .await?
        .json::<Value>()
        .await?["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let config_path = data.join("agent/pods").join(uid).join("c/c/config.json");
    let selur_config: Value = serde_json::from_slice(
        &std::fs::read(&config_path)
            .with_context(|| format!("reading Selur's spec {}", config_path.display()))?,
    )?;
    let spec_floor = Arc::new(floor.with_selur_spec(&selur_config, &data));
    let variants = [
        (floor.clone(), Variant::Bare),
        (floor.clone(), Variant::Netns),
        (floor.clone(), Variant::Sandbox),
        (spec_floor, Variant::Bare),
    ];
    for (k, (f, v)) in variants.iter().enumerate() {
        floor_once(f.clone(), format!("f{k}-0"), *v).await?;
    }

    // Rounds: each floor variant once, then one pod, so background load on
    // this machine hits all of them alike.
    let pause = || tokio::time::sleep(Duration::from_millis(30));
    let mut floor_stats: [Stats; 4] = Default::default();
    let mut pods: Vec<(String, Instant, Instant)> = Vec::new();
    eprintln!(
        "pod-bench: {} rounds of 4 floor starts and 1 pod",
        args.pods
    );
    for i in 1..=args.pods {
        for (k, (f, v)) in variants.iter().enumerate() {
            floor_stats[k]
                .0
                .push(floor_once(f.clone(), format!("f{k}-{i}"), *v).await?);
            pause().await;
        }
        let name = format!("p{i:03}");
        let (t0, acked) = create_pod(&api, &w, &name, &runc_root, &marks).await?;
        wait_running(&marks, &name).await?;
        pods.push((name, t0, acked));
        pause().await;
        if i % 10 == 0 {
            eprintln!("pod-bench: {i}/{}", args.pods);
        }
    }
    // Late events (recorded off the agent's critical path).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut parts: HashMap<&str, Stats> = HashMap::new();
    for (name, t0, acked) in &pods {
        parts.entry("ack").or_default().0.push(*acked - *t0);
        for k in ["pod", "Pulled", "Started", "running", "runc"] {
            if let Some(t) = marks.get(&format!("{k}/{name}")) {
                parts
                    .entry(k)
                    .or_default()
                    .0
                    .push(t.saturating_duration_since(*t0));
            }
        }
    }
    let labels = [
        ("ack", "POST answered (201)"),
        ("pod", "pod watch: first event of the pod"),
        ("Pulled", "event watch: agent's `Pulled` (image present)"),
        ("runc", "runc started the container (exec.fifo consumed)"),
        ("Started", "event watch: agent's `Started`"),
        ("running", "pod watch: containerStatuses[0].state.running"),
    ];
    let latency: Vec<(String, Stats)> = labels
        .iter()
        .filter_map(|(k, l)| parts.get(k).map(|s| (l.to_string(), s.clone())))
        .collect();
    let selur_running = parts.get("running").cloned().unwrap_or_default();
    let selur_runc = parts.get("runc").cloned().unwrap_or_default();

    eprintln!("pod-bench: removing the floor's containers");
    let root = floor.root.clone();
    let fd = floor_dir.clone();
    let left = tokio::task::spawn_blocking(move || {
        runc_delete_all(&root);
        umount_under(&fd)
    })
    .await?;
    ensure!(left.is_empty(), "cannot unmount {left:?}");
    let mut names: Vec<String> = pods.iter().map(|p| p.0.clone()).collect();
    names.push("p000".into());
    eprintln!("pod-bench: deleting {} pods", names.len());
    let delete_latency = delete_pods_and_wait(&api, &names, &runc_root).await?;

    // Memory per pod.
    let mem = if args.mem_pods > 0 {
        // Let idle blocking-pool threads (10 s keep-alive) go first.
        tokio::time::sleep(SETTLE).await;
        let before = rss_pss_kb(server_pid)?;
        eprintln!("pod-bench: memory: {} pods", args.mem_pods);
        let mut mnames = Vec::new();
        for i in 0..args.mem_pods {
            let name = format!("m{i:03}");
            create_pod(&api, &w, &name, &runc_root, &marks).await?;
            mnames.push(name);
        }
        for n in &mnames {
            wait_running(&marks, n).await?;
        }
        tokio::time::sleep(SETTLE).await;
        let after = rss_pss_kb(server_pid)?;
        let shim_pids = shims_under(&data);
        let mut shims = 0;
        for p in &shim_pids {
            shims += rss_pss_kb(*p)?.1;
        }
        let runc_pids: Vec<u32> = pids()
            .into_iter()
            .filter(|p| ppid(*p).is_some_and(|pp| shim_pids.contains(&pp)))
            .filter(|p| cmdline(*p).first().is_some_and(|a| a.ends_with("runc")))
            .collect();
        let mut runc_run = 0;
        for p in &runc_pids {
            runc_run += rss_pss_kb(*p).map(|x| x.1).unwrap_or(0);
        }
        let m = Mem {
            pods: args.mem_pods,
            before,
            after,
            shims,
            shim_count: shim_pids.len(),
            runc_run,
            runc_count: runc_pids.len(),
        };
        delete_pods_and_wait(&api, &mnames, &runc_root).await?;
        Some(m)
    } else {
        None
    };
    pod_watch.abort();
    if let Ok(h) = ev_watch {
        h.abort();
    }
    Ok(Report {
        workload: w.label,
        idle,
        built,
        load_before,
        load_after: loadavg(),
        latency,
        selur_running,
        selur_runc,
        floor: floor_stats,
        mem,
        delete_latency,
    })
}

fn print_report(args: &Args, r: &Report) {
    let n = args.pods;
    println!(
        "Load average (1/5/15 min): {} before, {} after.",
        r.load_before, r.load_after
    );
    println!();
    println!("## 1. Pod start latency ({n} pods, created one after the other, image present)");
    println!();
    println!("Each pod: one container, `imagePullPolicy: Never`, `nodeName: {NODE}`, `restartPolicy: Always`,");
    println!("`terminationGracePeriodSeconds: 1`. Times from just before the POST, rows in the order things");
    println!("happen; one untimed warm-up pod first. The target is measured on the watch row (the last).");
    println!();
    table_head();
    for (l, s) in &r.latency {
        s.row(l);
    }
    println!();
    println!(
        "Deleting all {} pods until the agent removed their containers: {:.2} s",
        n + 1,
        r.delete_latency.as_secs_f64()
    );
    println!();
    println!("## 2. Floor, same run");
    println!();
    println!("{n} rounds, each: the four floor variants once, then one Selur pod (30 ms pauses between);");
    println!("one untimed warm-up of each first. Floor containers keep running until the end, as the pods do.");
    println!();
    table_head();
    for (s, l) in r.floor.iter().zip(FLOOR_ROWS) {
        s.row(l);
    }
    r.selur_runc
        .row("Selur: POST -> runc started the container");
    r.selur_running.row("Selur: POST -> watch shows running");
    println!();
    let sp50 = r.selur_running.pct(0.5);
    let rp50 = r.selur_runc.pct(0.5);
    let f = |k: usize| r.floor[k].pct(0.5);
    println!(
        "| p50 ratio                                          | watch running | runc started |"
    );
    println!(
        "|----------------------------------------------------|---------------|--------------|"
    );
    for (label, d) in [
        ("Selur / bare floor (target <= 1.3x)", f(0)),
        ("Selur / (floor + netns)", f(1)),
        ("Selur / (floor + Selur's sandbox)", f(2)),
    ] {
        println!(
            "| {label:<50} | {:>12.2}x | {:>11.2}x |",
            sp50 / d,
            rp50 / d
        );
    }
    println!(
        "| Selur p99, ms (target < 250)                       | {:>13.1} | {:>12.1} |",
        r.selur_running.pct(0.99),
        r.selur_runc.pct(0.99)
    );
    println!();
    println!(
        "Over the bare floor at p50: netns {:.1} ms, Selur's whole sandbox {:.1} ms, Selur's OCI spec {:.1} ms.",
        f(1) - f(0),
        f(2) - f(0),
        f(3) - f(0)
    );
    println!();
    let mb = |kb: u64| format!("{:.1} MB", kb as f64 / 1024.0);
    let kb = |v: f64| format!("{v:.0} kB");
    let row = |what: String, value: String| println!("| {what:<52} | {value:>10} |");
    println!("## 3. Memory");
    println!();
    row("what".into(), "value".into());
    println!("|{}|{}|", "-".repeat(54), "-".repeat(12));
    row("idle server RSS (target < 40 MB)".into(), mb(r.idle.0));
    row("idle server PSS".into(), mb(r.idle.1));
    row("server RSS after the image build".into(), mb(r.built.0));
    row("server PSS after the image build".into(), mb(r.built.1));
    if let Some(m) = &r.mem {
        let p = m.pods as f64;
        let delta = m.after.1 as f64 - m.before.1 as f64;
        row(
            "server RSS before the pods (after sections 1-2)".into(),
            mb(m.before.0),
        );
        row(
            "server PSS before the pods (after sections 1-2)".into(),
            mb(m.before.1),
        );
        row(
            format!("server RSS with {} pods running", m.pods),
            mb(m.after.0),
        );
        row(
            format!("server PSS with {} pods running", m.pods),
            mb(m.after.1),
        );
        row(
            "server RSS delta per pod".into(),
            kb((m.after.0 as f64 - m.before.0 as f64) / p),
        );
        row("server PSS delta per pod (see note)".into(), kb(delta / p));
        row(
            format!("shim PSS per pod ({} shims)", m.shim_count),
            kb(m.shims as f64 / p),
        );
        row(
            "total Selur PSS per pod (target < 1 MB)".into(),
            kb((delta + m.shims as f64) / p),
        );
        row(
            format!(
                "not counted: `runc run` PSS per pod ({} procs)",
                m.runc_count
            ),
            kb(m.runc_run as f64 / p),
        );
        println!();
        println!(
            "Note: the shims run the same `selur` executable as the server, so PSS moves the shared \
             pages' cost from the server to the shims as they start (the server's PSS delta can be \
             negative); only the sum is meaningful. Idle readings: 1 s after the node registered; \
             the others {} s after the last change. Each shim keeps a foreground `runc run` \
             process, listed but not counted as Selur's.",
            SETTLE.as_secs()
        );
    }
}

fn machine() -> String {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let runc = sh("runc", &["--version"])
        .ok()
        .and_then(|s| s.lines().next().map(String::from))
        .unwrap_or_else(|| "runc not found".into());
    format!("nproc {nproc}, kernel {kernel}, {runc}")
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = parse_args()?;
    println!("# Selur pod benchmark");
    println!();
    println!("Machine: {}", machine());
    println!();
    let mut host = Host::default();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let res = tokio::select! {
        r = run(&args, &mut host) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        _ = sigterm.recv() => Err(anyhow!("terminated")),
    };
    if let Some(l) = &args.server_log {
        eprintln!("pod-bench: server log in {}", l.display());
    }
    eprintln!("pod-bench: cleaning up");
    let problems = host.cleanup();
    for p in &problems {
        eprintln!("pod-bench: cleanup: {p}");
    }
    let report = res?;
    println!("Image: {TAG}, {}", report.workload);
    println!();
    print_report(&args, &report);
    ensure!(problems.is_empty(), "cleanup left things behind");
    Ok(())
}
