//! Time until a Deployment of N replicas of the demo web server (requests
//! 10m CPU / 8Mi, httpGet readiness probe with periodSeconds 1) is all
//! Ready on one node: an all-in-one `selur server` process (the release
//! binary, in-process agent, node `bench`) in a temp dir. Beside it, in the
//! same run:
//!
//! - the floor: N bare `runc run -d` of a bundle holding the same binary,
//!   four at a time; the same after `unshare --net=FILE true` per
//!   container (the bundle joins that namespace by path); and the same
//!   after loopback up and a CNI `bridge` ADD (host-local IPv6) in that
//!   namespace, the floor for `--pod-network bridge` (the default);
//! - `podman kube play --network none` of the same Deployment with its ports
//!   removed (podman with runc, its storage in a temp dir), until `podman ps`
//!   shows every container running.
//!
//! The whole bench runs in a network namespace of its own
//! (`common::netns`), so the agent's bridge, routes and nftables table never
//! touch the machine's.
//!
//! Needs root, runc, util-linux's unshare, containernetworking-plugins and
//! podman. Everything it makes
//! (server, containers, mounts, cgroups, log links, podman storage) is
//! removed at the end, also on error or Ctrl-C. Run:
//! `cargo build --release -p selur -p selur-bench && target/release/deploy-bench`.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use selur_client::Method;
use serde_json::{json, Value};

use common::floor::{Floor, Variant};
use common::host::{loadavg, machine, rmdir_tree, runc_delete_all, runc_ids, umount_under, Host};
use common::server::{build_image, spawn_watch, start_server, Api, Marks, PODS};
use common::stats::Stats;
use common::workload::{workload, ImageChoice, Workload};
use common::NODE;

const TAG: &str = "localhost/bench:1";
const PODMAN_TAG: &str = "localhost/web:1";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const NAME: &str = "web";
const PARALLEL: usize = 4;
const USAGE: &str = "usage: deploy-bench [--replicas N] [--podman-counts 20,100|none] \
    [--pod-network bridge|none] [--selur PATH] [--demo PATH] [--server-log FILE]";

// ---------------------------------------------------------------- arguments

struct Args {
    selur: PathBuf,
    replicas: usize,
    podman_counts: Vec<usize>,
    /// The server's `--pod-network` (bridge or none).
    pod_network: String,
    demo: Option<PathBuf>,
    server_log: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut replicas = 100;
    let mut podman_counts = vec![20, 100];
    let mut pod_network = "bridge".to_string();
    let common = common::args::parse_args(USAGE, |flag, val| {
        match flag {
            "--replicas" => replicas = val.parse().context("--replicas")?,
            "--pod-network" => {
                ensure!(
                    val == "bridge" || val == "none",
                    "--pod-network bridge|none, not {val}"
                );
                pod_network = val
            }
            "--podman-counts" => {
                podman_counts = if val == "none" {
                    Vec::new()
                } else {
                    val.split(',')
                        .map(|s| s.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .context("--podman-counts")?
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    ensure!(replicas > 0, "--replicas must be at least 1");
    Ok(Args {
        selur: common.selur,
        replicas,
        podman_counts,
        pod_network,
        demo: common.demo,
        server_log: common.server_log,
    })
}

// ---------------------------------------------------------------- Selur

fn deployment(replicas: usize, image: &str, ports: bool) -> Value {
    let mut c = json!({
        "name": NAME,
        "image": image,
        "imagePullPolicy": "Never",
        "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}},
        "readinessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 1},
    });
    if ports {
        c["ports"] = json!([{"containerPort": 8080}]);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [c]},
            },
        },
    })
}

/// Marks per pod of the Deployment: `created/`, `scheduled/`, `running/`
/// (every container running), `ready/` (condition Ready True).
fn classify_pod(ev: &Value) -> Vec<String> {
    let o = &ev["object"];
    let Some(name) = o["metadata"]["name"].as_str() else {
        return Vec::new();
    };
    if ev["type"] == "DELETED" || !name.starts_with(&format!("{NAME}-")) {
        return Vec::new();
    }
    let mut v = vec![format!("created/{name}")];
    if o["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty())
    {
        v.push(format!("scheduled/{name}"));
    }
    if let Some(cs) = o["status"]["containerStatuses"].as_array() {
        if !cs.is_empty() && cs.iter().all(|c| c["state"]["running"].is_object()) {
            v.push(format!("running/{name}"));
        }
    }
    if let Some(conds) = o["status"]["conditions"].as_array() {
        if conds
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
        {
            v.push(format!("ready/{name}"));
        }
    }
    v
}

/// `available=N` and `ready=N` for the Deployment's status counts.
fn classify_deployment(ev: &Value) -> Vec<String> {
    let o = &ev["object"];
    if o["metadata"]["name"] != NAME || ev["type"] == "DELETED" {
        return Vec::new();
    }
    let mut v = Vec::new();
    for (k, f) in [
        ("available", "availableReplicas"),
        ("ready", "readyReplicas"),
    ] {
        if let Some(n) = o["status"][f].as_u64() {
            v.push(format!("{k}={n}"));
        }
    }
    v
}

/// Times (sorted) of the marks with this prefix.
fn times(marks: &Marks, prefix: &str) -> Vec<Instant> {
    let mut v: Vec<Instant> = marks
        .seen
        .lock()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(_, t)| *t)
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Wait until `n` marks with `prefix` were seen.
async fn wait_count(marks: &Marks, prefix: &str, n: usize, deadline: Instant) -> Result<()> {
    loop {
        let notified = marks.notify.notified();
        let have = times(marks, prefix).len();
        if have >= n {
            return Ok(());
        }
        if let Some(why) = marks.ended.lock().ok().and_then(|e| e.clone()) {
            bail!("waiting for {n} {prefix}: {why}");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        ensure!(
            !left.is_zero(),
            "only {have} of {n} {prefix} before the deadline"
        );
        let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
    }
}

/// Mark `runc/ID` once runc started a container of the agent's root (its
/// state exists and its exec fifo was consumed).
fn spawn_runc_scan(root: PathBuf, marks: Arc<Marks>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(rd) = std::fs::read_dir(&root) {
                let now = Instant::now();
                for e in rd.flatten() {
                    let d = e.path();
                    if d.join("state.json").exists() && !d.join("exec.fifo").exists() {
                        let id = e.file_name().to_string_lossy().to_string();
                        marks.mark(format!("runc/{id}"), now);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

struct SelurResult {
    /// (row label, first, median, all) in ms from just before the POST.
    rows: Vec<(String, f64, f64, f64)>,
    all_running: f64,
    all_ready: f64,
    available: f64,
    delete: Duration,
}

async fn run_selur(api: &Api, host: &Host, n: usize) -> Result<SelurResult> {
    let marks = Arc::new(Marks::default());
    let pods_w = spawn_watch(api, PODS, marks.clone(), classify_pod).await?;
    let dep_w = spawn_watch(api, DEPLOYMENTS, marks.clone(), classify_deployment).await?;
    let runc_root = host.agent_runc_root()?;
    let scan = spawn_runc_scan(runc_root.clone(), marks.clone());

    eprintln!("deploy-bench: Selur: Deployment {NAME} with {n} replicas");
    let t0 = Instant::now();
    let r = api
        .send(Method::POST, DEPLOYMENTS, Some(&deployment(n, TAG, true)))
        .await?;
    let acked = Instant::now();
    let code = r.status().as_u16();
    ensure!(
        code == 201,
        "create Deployment: HTTP {code}: {}",
        r.text().await.unwrap_or_default()
    );
    let deadline = t0 + Duration::from_secs(180);
    let waited = async {
        wait_count(&marks, "ready/", n, deadline).await?;
        wait_count(&marks, &format!("available={n}"), 1, deadline).await
    }
    .await;
    if let Err(e) = waited {
        let c = |p: &str| times(&marks, p).len();
        bail!(
            "{e} (created {}, scheduled {}, runc started {}, running {}, ready {})",
            c("created/"),
            c("scheduled/"),
            c("runc/"),
            c("running/"),
            c("ready/")
        );
    }
    let ms = |t: Instant| t.saturating_duration_since(t0).as_secs_f64() * 1000.0;
    let mut rows = vec![(
        "POST answered (201)".to_string(),
        ms(acked),
        ms(acked),
        ms(acked),
    )];
    let mut all = std::collections::HashMap::new();
    for (k, label) in [
        ("created/", "pod watch: pod created (ReplicaSet controller)"),
        ("scheduled/", "pod watch: spec.nodeName set (scheduled)"),
        ("runc/", "runc started the container (exec.fifo consumed)"),
        ("running/", "pod watch: container running"),
        ("ready/", "pod watch: condition Ready=True"),
    ] {
        let t = times(&marks, k);
        let t = &t[..n.min(t.len())];
        ensure!(!t.is_empty(), "no {k} marks");
        let row = (
            label.to_string(),
            ms(t[0]),
            ms(t[(t.len() - 1) / 2]),
            ms(t[t.len() - 1]),
        );
        all.insert(k, row.3);
        rows.push(row);
    }
    let avail = marks
        .get(&format!("available={n}"))
        .map(ms)
        .unwrap_or(f64::NAN);
    rows.push((
        format!("Deployment watch: availableReplicas={n}"),
        avail,
        avail,
        avail,
    ));

    eprintln!("deploy-bench: Selur: deleting the Deployment");
    let td = Instant::now();
    let r = api
        .send(Method::DELETE, &format!("{DEPLOYMENTS}/{NAME}"), None)
        .await?;
    ensure!(
        r.status().is_success(),
        "delete Deployment: HTTP {}",
        r.status()
    );
    loop {
        let root = runc_root.clone();
        let left = tokio::task::spawn_blocking(move || runc_ids(&root)).await?;
        let pods = api.get_json(PODS).await?;
        let npods = pods["items"].as_array().map_or(0, |v| v.len());
        if left.is_empty() && npods == 0 {
            break;
        }
        ensure!(
            td.elapsed() < Duration::from_secs(90),
            "90 s after deleting the Deployment: {} containers, {npods} pods left",
            left.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delete = td.elapsed();
    pods_w.abort();
    dep_w.abort();
    scan.abort();
    Ok(SelurResult {
        rows,
        all_running: all["running/"],
        all_ready: all["ready/"],
        available: avail,
        delete,
    })
}

// ---------------------------------------------------------------- floor

struct FloorResult {
    wall: Duration,
    each: Stats,
}

/// N starts of the floor variant, `PARALLEL` at a time (bundles made
/// beforehand, untimed); then the containers are removed.
async fn run_floor(floor: Arc<Floor>, n: usize, v: Variant, tag: &str) -> Result<FloorResult> {
    let tag = tag.to_string();
    tokio::task::spawn_blocking(move || -> Result<FloorResult> {
        let ids: Vec<String> = (0..n).map(|i| format!("{tag}-{i:03}")).collect();
        let bundles: Vec<PathBuf> = ids
            .iter()
            .map(|id| floor.bundle(id, v))
            .collect::<Result<_>>()?;
        let next = AtomicUsize::new(0);
        let t = Instant::now();
        let results: Vec<Result<Vec<Duration>>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..PARALLEL)
                .map(|_| {
                    s.spawn(|| -> Result<Vec<Duration>> {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::SeqCst);
                            let Some(id) = ids.get(i) else {
                                return Ok(out);
                            };
                            out.push(floor.run(id, &bundles[i], v)?);
                        }
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("floor thread panicked")))
                })
                .collect()
        });
        let wall = t.elapsed();
        let mut each = Stats::default();
        for r in results {
            each.0.extend(r?);
        }
        runc_delete_all(&floor.root);
        let cni_errors = floor.cni_del_all();
        ensure!(cni_errors.is_empty(), "CNI DEL: {cni_errors:?}");
        for b in &bundles {
            let _ = std::fs::remove_dir_all(b);
        }
        Ok(FloorResult { wall, each })
    })
    .await?
}

// ---------------------------------------------------------------- podman

/// Podman with its own storage, run root, tmp dir and containers.conf in a
/// temp dir; `cleanup` removes its containers, mounts, storage and the pod
/// cgroups it made under `libpod_parent`.
struct Podman {
    dir: Option<tempfile::TempDir>,
    cgroups_before: HashSet<PathBuf>,
}

fn libpod_cgroups() -> HashSet<PathBuf> {
    fn walk(d: &Path, out: &mut HashSet<PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.insert(e.path());
                walk(&e.path(), out);
            }
        }
    }
    let mut out = HashSet::new();
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path().join("libpod_parent");
        if !e.path().is_symlink() && p.is_dir() {
            out.insert(p.clone());
            walk(&p, &mut out);
        }
    }
    out
}

impl Podman {
    fn new() -> Result<Podman> {
        let cgroups_before = libpod_cgroups();
        let dir = tempfile::Builder::new()
            .prefix("deploy-bench-podman-")
            .tempdir()?;
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             [engine]\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             runtime = \"runc\"\n",
        )?;
        Ok(Podman {
            dir: Some(dir),
            cgroups_before,
        })
    }

    fn path(&self) -> Result<&Path> {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .ok_or_else(|| anyhow!("podman dir gone"))
    }

    fn cmd(&self) -> Result<tokio::process::Command> {
        let d = self.path()?;
        let mut c = tokio::process::Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        Ok(c)
    }

    async fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.cmd()?.args(args).output().await?;
        ensure!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Containers running, not counting the pods' infra containers.
    async fn running(&self) -> Result<usize> {
        let out = self
            .run(&[
                "ps",
                "--filter",
                "status=running",
                "--format",
                "{{.IsInfra}}",
            ])
            .await?;
        Ok(out.lines().filter(|l| l.trim() == "false").count())
    }

    async fn all(&self) -> Result<usize> {
        Ok(self.run(&["ps", "-a", "-q"]).await?.lines().count())
    }

    fn cleanup(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(d) = self.dir.take() else {
            return problems;
        };
        let p = d.path().to_path_buf();
        let podman = |args: &[&str]| {
            Command::new("podman")
                .env("CONTAINERS_CONF", p.join("containers.conf"))
                .arg("--root")
                .arg(p.join("root"))
                .arg("--runroot")
                .arg(p.join("runroot"))
                .arg("--tmpdir")
                .arg(p.join("tmp"))
                .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        };
        if p.join("root").exists() {
            let _ = podman(&["pod", "rm", "-a", "-f", "-t", "0"]);
            let _ = podman(&["rm", "-a", "-f", "-t", "0"]);
            let _ = podman(&["system", "reset", "-f"]);
        }
        let left = umount_under(&p);
        if !left.is_empty() {
            problems.push(format!("podman mounts left: {left:?}"));
        }
        let mut new: Vec<PathBuf> = libpod_cgroups()
            .difference(&self.cgroups_before)
            .cloned()
            .collect();
        // Deepest first.
        new.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for cg in new {
            let mut ok = false;
            for _ in 0..20 {
                if rmdir_tree(&cg) {
                    ok = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !ok {
                problems.push(format!("podman cgroup left: {}", cg.display()));
            }
        }
        if let Err(e) = d.close() {
            problems.push(format!("removing {}: {e}", p.display()));
        }
        problems
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for p in self.cleanup() {
            eprintln!("deploy-bench: cleanup: {p}");
        }
    }
}

struct PodmanResult {
    n: usize,
    play: Duration,
    running: Duration,
    down: Duration,
}

fn kube_yaml(n: usize) -> Result<String> {
    // JSON is YAML; podman reads it as such.
    Ok(serde_json::to_string_pretty(&deployment(
        n, PODMAN_TAG, false,
    ))?)
}

async fn podman_prepare(pm: &Podman, w: &Workload) -> Result<()> {
    let ctx = pm.path()?.join("ctx");
    std::fs::create_dir_all(&ctx)?;
    let name = Path::new(w.binary.1)
        .file_name()
        .ok_or_else(|| anyhow!("bad binary path"))?;
    std::fs::copy(&w.binary.0, ctx.join(name))?;
    std::fs::write(ctx.join("Containerfile"), &w.containerfile)?;
    let ctx_s = ctx.display().to_string();
    pm.run(&["build", "-q", "-t", PODMAN_TAG, &ctx_s]).await?;
    // Warm-up, untimed: builds podman's pause image for the infra containers.
    podman_play(pm, 1).await?;
    Ok(())
}

async fn podman_play(pm: &Podman, n: usize) -> Result<PodmanResult> {
    let file = pm.path()?.join(format!("kube-{n}.yaml"));
    std::fs::write(&file, kube_yaml(n)?)?;
    let f = file.display().to_string();
    let t0 = Instant::now();
    pm.run(&["kube", "play", "--network", "none", &f]).await?;
    let play = t0.elapsed();
    loop {
        let r = pm.running().await?;
        if r >= n {
            break;
        }
        ensure!(
            t0.elapsed() < Duration::from_secs(300),
            "podman: only {r} of {n} running after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let running = t0.elapsed();
    let td = Instant::now();
    pm.run(&["kube", "down", &f]).await?;
    let down = td.elapsed();
    let left = pm.all().await?;
    ensure!(left == 0, "podman: {left} containers left after kube down");
    Ok(PodmanResult {
        n,
        play,
        running,
        down,
    })
}

// ---------------------------------------------------------------- the run

struct Report {
    workload: String,
    load_before: String,
    load_after: String,
    allocatable_pods: String,
    selur: SelurResult,
    floor_bare: FloorResult,
    floor_netns: FloorResult,
    floor_cni: FloorResult,
    podman: Vec<PodmanResult>,
    podman_note: Option<String>,
}

async fn run(args: &Args, host: &mut Host, pm: &mut Option<Podman>) -> Result<Report> {
    let w = workload(ImageChoice::Demo, args.demo.as_deref())?;
    ensure!(
        args.selur.is_file(),
        "no selur binary at {} (cargo build --release -p selur, or --selur PATH)",
        args.selur.display()
    );
    let load_before = loadavg();
    eprintln!("deploy-bench: starting {} server", args.selur.display());
    host.reset_with = Some(args.selur.clone());
    let api = start_server(
        &args.selur,
        args.server_log.as_deref(),
        &["--pod-network", &args.pod_network],
        host,
    )
    .await?;
    let node = api.get_json(&format!("/api/v1/nodes/{NODE}")).await?;
    let allocatable_pods = node["status"]["allocatable"]["pods"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    if let Ok(p) = allocatable_pods.parse::<usize>() {
        ensure!(
            p >= args.replicas,
            "node {NODE} allows {p} pods, fewer than {} replicas",
            args.replicas
        );
    }
    let data = host.data_dir()?.to_path_buf();
    eprintln!("deploy-bench: building {TAG} ({})", w.label);
    build_image(host, &w, TAG, &data.join("kubeconfig"), &args.selur).await?;

    let floor_tmp = tempfile::Builder::new()
        .prefix("deploy-bench-floor-")
        .tempdir()?;
    let floor_dir = floor_tmp.path().to_path_buf();
    host.floor = Some(floor_tmp);
    let floor = Arc::new(Floor::new(&floor_dir, &w)?);
    let n = args.replicas;
    eprintln!("deploy-bench: floor: {n} bare `runc run -d`, {PARALLEL} at a time");
    let floor_bare = run_floor(floor.clone(), n, Variant::Bare, "bare").await?;
    eprintln!("deploy-bench: floor: {n} netns + `runc run -d`, {PARALLEL} at a time");
    let floor_netns = run_floor(floor.clone(), n, Variant::Netns, "netns").await?;
    eprintln!(
        "deploy-bench: floor: {n} netns + CNI bridge ADD + `runc run -d`, {PARALLEL} at a time"
    );
    let floor_cni = run_floor(floor.clone(), n, Variant::Cni, "cni").await?;
    let left = umount_under(&floor_dir);
    ensure!(left.is_empty(), "cannot unmount {left:?}");

    let selur = run_selur(&api, host, n).await?;

    let mut podman = Vec::new();
    let mut podman_note = None;
    if !args.podman_counts.is_empty() {
        let p = pm.insert(Podman::new()?);
        eprintln!("deploy-bench: podman: building {PODMAN_TAG}, one warm-up kube play");
        match podman_prepare(p, &w).await {
            Err(e) => podman_note = Some(format!("podman failed: {e:#}")),
            Ok(()) => {
                for &c in &args.podman_counts {
                    eprintln!("deploy-bench: podman: kube play of {c} replicas");
                    match podman_play(p, c).await {
                        Ok(r) => podman.push(r),
                        Err(e) => {
                            podman_note = Some(format!("podman, {c} replicas: {e:#}"));
                            break;
                        }
                    }
                }
            }
        }
    }
    Ok(Report {
        workload: w.label,
        load_before,
        load_after: loadavg(),
        allocatable_pods,
        selur,
        floor_bare,
        floor_netns,
        floor_cni,
        podman,
        podman_note,
    })
}

fn print_report(args: &Args, r: &Report) {
    let n = args.replicas;
    println!(
        "Load average (1/5/15 min): {} before, {} after. Node `{NODE}` allocatable pods: {}.",
        r.load_before, r.load_after, r.allocatable_pods
    );
    println!();
    println!("## 1. Selur: Deployment of {n} replicas until all Ready");
    println!();
    println!(
        "Container: `{TAG}`, `imagePullPolicy: Never`, requests cpu 10m / memory 8Mi, port 8080,"
    );
    println!(
        "readinessProbe httpGet /health:8080 periodSeconds 1. Times from just before the POST of"
    );
    println!("the Deployment; per row the first pod, the median pod and the last pod.");
    println!();
    println!(
        "| {:<52} | {:>9} | {:>9} | {:>9} |",
        "stage", "first ms", "median ms", "all ms"
    );
    println!("|{}|-----------|-----------|-----------|", "-".repeat(54));
    for (l, a, b, c) in &r.selur.rows {
        println!("| {l:<52} | {a:>9.0} | {b:>9.0} | {c:>9.0} |");
    }
    println!();
    println!(
        "Deleting the Deployment until the agent removed all containers and pods: {:.2} s",
        r.selur.delete.as_secs_f64()
    );
    println!();
    println!(
        "## 2. Floor, same run ({n} containers, {PARALLEL} at a time, bundles made beforehand)"
    );
    println!();
    println!(
        "| {:<52} | {:>9} | {:>9} | {:>9} |",
        "floor", "wall ms", "p50 ms", "p90 ms"
    );
    println!("|{}|-----------|-----------|-----------|", "-".repeat(54));
    for (l, f) in [
        ("bare `runc run -d`", &r.floor_bare),
        (
            "`unshare --net=FILE true` + `runc run -d` (joined)",
            &r.floor_netns,
        ),
        (
            "netns + lo up + CNI `bridge` ADD + `runc run -d`",
            &r.floor_cni,
        ),
    ] {
        println!(
            "| {l:<52} | {:>9.0} | {:>9.1} | {:>9.1} |",
            f.wall.as_secs_f64() * 1000.0,
            f.each.pct(0.5),
            f.each.pct(0.9)
        );
    }
    println!();
    println!("## 3. podman kube play, same run");
    println!();
    println!(
        "`podman --runtime runc kube play --network none` of the same Deployment without ports"
    );
    println!("(readinessProbe kept), podman's storage in a temp dir, after one untimed 1-replica warm-up.");
    println!();
    println!(
        "| {:>8} | {:>19} | {:>24} | {:>15} |",
        "replicas", "kube play ms", "all running (ps) ms", "kube down ms"
    );
    println!("|----------|---------------------|--------------------------|-----------------|");
    for p in &r.podman {
        println!(
            "| {:>8} | {:>19.0} | {:>24.0} | {:>15.0} |",
            p.n,
            p.play.as_secs_f64() * 1000.0,
            p.running.as_secs_f64() * 1000.0,
            p.down.as_secs_f64() * 1000.0
        );
    }
    if let Some(note) = &r.podman_note {
        println!();
        println!("Note: {note}");
    }
    println!();
    println!("## 4. Against the targets");
    println!();
    let s = &r.selur;
    let fb = r.floor_bare.wall.as_secs_f64() * 1000.0;
    let fnet = r.floor_netns.wall.as_secs_f64() * 1000.0;
    let fcni = r.floor_cni.wall.as_secs_f64() * 1000.0;
    println!("| {:<60} | {:>9} | {:>8} |", "measure", "value", "target");
    println!("|{}|-----------|----------|", "-".repeat(62));
    let row = |m: String, v: String, t: &str| println!("| {m:<60} | {v:>9} | {t:>8} |");
    row(
        format!("Selur: all {n} Ready, s"),
        format!("{:.2}", s.all_ready / 1000.0),
        "< 3",
    );
    row(
        format!("Selur: availableReplicas={n}, s"),
        format!("{:.2}", s.available / 1000.0),
        "",
    );
    row(
        "all Ready / floor with netns + CNI bridge".into(),
        format!("{:.2}x", s.all_ready / fcni),
        "<= 1.5x",
    );
    row(
        "all Ready / floor with netns".into(),
        format!("{:.2}x", s.all_ready / fnet),
        "",
    );
    row(
        "all Ready / bare floor".into(),
        format!("{:.2}x", s.all_ready / fb),
        "",
    );
    row(
        "all running / floor with netns".into(),
        format!("{:.2}x", s.all_running / fnet),
        "",
    );
    if let Some(p) = r.podman.iter().find(|p| p.n == n) {
        row(
            format!("podman all {n} running / Selur all {n} running"),
            format!("{:.1}x", p.running.as_secs_f64() * 1000.0 / s.all_running),
            ">= 5x",
        );
        row(
            format!("podman all {n} running / Selur all {n} Ready"),
            format!("{:.1}x", p.running.as_secs_f64() * 1000.0 / s.all_ready),
            "",
        );
    }
}

fn main() -> Result<()> {
    // Everything (server, agent, floor, podman) runs in a network namespace
    // of its own.
    common::netns::enter("deploy-bench")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(amain())
}

async fn amain() -> Result<()> {
    let args = parse_args()?;
    println!("# Selur Deployment benchmark");
    println!();
    println!("Machine: {}", machine());
    println!();
    println!(
        "Pod network: `--pod-network {}`; everything runs in the bench's own network namespace ({}).",
        args.pod_network,
        common::netns::current()
    );
    println!();
    let mut host = Host::new("deploy-bench");
    let mut pm: Option<Podman> = None;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let res = tokio::select! {
        r = run(&args, &mut host, &mut pm) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        _ = sigterm.recv() => Err(anyhow!("terminated")),
    };
    if let Some(l) = &args.server_log {
        eprintln!("deploy-bench: server log in {}", l.display());
    }
    eprintln!("deploy-bench: cleaning up");
    let mut problems = host.cleanup();
    if let Some(mut p) = pm.take() {
        problems.extend(p.cleanup());
    }
    for p in &problems {
        eprintln!("deploy-bench: cleanup: {p}");
    }
    let report = res?;
    println!("Image: {TAG}, {}", report.workload);
    println!();
    print_report(&args, &report);
    ensure!(problems.is_empty(), "cleanup left things behind");
    Ok(())
}
