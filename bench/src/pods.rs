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
//!    agent makes (net/ipc/uts namespaces, hostname, loopback up); with
//!    the agent's own generated OCI spec for the pod's container; and after
//!    a network namespace wired by the CNI `bridge` plugin (host-local
//!    IPv6), the floor for `--pod-network bridge` (the default).
//! 3. Memory: RSS/PSS of the server process (API server + agent) idle, after
//!    the image build, before and with M pods running, and PSS of every
//!    `selur shim` process (and, not counted, the `runc run` each keeps).
//!
//! The whole bench runs in a network namespace of its own (`common::netns`).
//! Needs root, runc, util-linux's unshare/nsenter, iproute2 and
//! containernetworking-plugins. Everything it
//! makes (server, containers, mounts, cgroups, log links) is removed at the
//! end, also on error or Ctrl-C. Run:
//! `cargo build --release -p selur -p selur-bench && target/release/pod-bench --pods 50 --mem-pods 20`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Value};

use common::floor::{floor_once, Floor, Variant};
use common::host::{
    cmdline, loadavg, machine, pids, ppid, rss_pss_kb, runc_delete_all, runc_ids, shims_under,
    umount_under, Host,
};
use common::server::{build_image, spawn_watch, start_server, Api, Marks, PODS};
use common::stats::{table_head, Stats};
use common::workload::{workload, ImageChoice, Workload};
use common::NODE;

const TAG: &str = "localhost/bench:1";
const EVENTS: &str = "/api/v1/namespaces/default/events";
/// Wait before memory readings, so transient threads and buffers are gone.
const SETTLE: Duration = Duration::from_secs(12);
const USAGE: &str = "usage: pod-bench [--pods N] [--mem-pods M] [--pod-network bridge|none] \
    [--selur PATH] [--image auto|demo|busybox] [--demo PATH] [--server-log FILE]";

// ---------------------------------------------------------------- arguments

#[derive(Debug)]
struct Args {
    selur: PathBuf,
    pods: usize,
    mem_pods: usize,
    /// The server's `--pod-network` (bridge or none).
    pod_network: String,
    image: ImageChoice,
    demo: Option<PathBuf>,
    server_log: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut pods = 50;
    let mut mem_pods = 20;
    let mut image = ImageChoice::Auto;
    let mut pod_network = "bridge".to_string();
    let common = common::args::parse_args(USAGE, |flag, val| {
        match flag {
            "--pods" => pods = val.parse().context("--pods")?,
            "--mem-pods" => mem_pods = val.parse().context("--mem-pods")?,
            "--pod-network" => {
                ensure!(
                    val == "bridge" || val == "none",
                    "--pod-network bridge|none, not {val}"
                );
                pod_network = val
            }
            "--image" => {
                image = match val.as_str() {
                    "auto" => ImageChoice::Auto,
                    "demo" => ImageChoice::Demo,
                    "busybox" => ImageChoice::Busybox,
                    _ => bail!("--image auto|demo|busybox, not {val}"),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    ensure!(pods > 0, "--pods must be at least 1");
    Ok(Args {
        selur: common.selur,
        pods,
        mem_pods,
        pod_network,
        image,
        demo: common.demo,
        server_log: common.server_log,
    })
}

// ---------------------------------------------------------------- pods

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

const FLOOR_ROWS: [&str; 5] = [
    "floor: bare `runc run -d`",
    "floor + netns (`unshare --net=FILE true`, joined by path)",
    "floor + Selur's sandbox (net/ipc/uts, hostname, lo up)",
    "floor with Selur's generated OCI spec (bare, no sandbox)",
    "floor + netns + lo up + CNI `bridge` ADD (host-local v6)",
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
    floor: [Stats; 5],
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
    let w = workload(args.image, args.demo.as_deref())?;
    ensure!(
        args.selur.is_file(),
        "no selur binary at {} (cargo build --release -p selur, or --selur PATH)",
        args.selur.display()
    );
    let load_before = loadavg();
    eprintln!("pod-bench: starting {} server", args.selur.display());
    host.reset_with = Some(args.selur.clone());
    let api = start_server(
        &args.selur,
        args.server_log.as_deref(),
        &["--pod-network", &args.pod_network],
        host,
    )
    .await?;
    let server_pid = host.server_pid()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_pss_kb(server_pid)?;
    let data = host.data_dir()?.to_path_buf();
    eprintln!("pod-bench: building {TAG} ({})", w.label);
    build_image(host, &w, TAG, &data.join("kubeconfig"), &args.selur).await?;
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
    let uid = api.get_json(&format!("{PODS}/p000")).await?["metadata"]["uid"]
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
        (floor.clone(), Variant::Cni),
    ];
    for (k, (f, v)) in variants.iter().enumerate() {
        floor_once(f.clone(), format!("f{k}-0"), *v).await?;
    }

    // Rounds: each floor variant once, then one pod, so background load on
    // this machine hits all of them alike.
    let pause = || tokio::time::sleep(Duration::from_millis(30));
    let mut floor_stats: [Stats; 5] = Default::default();
    let mut pods: Vec<(String, Instant, Instant)> = Vec::new();
    eprintln!(
        "pod-bench: {} rounds of 5 floor starts and 1 pod",
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
    let fl = floor.clone();
    let fd = floor_dir.clone();
    let (cni_errors, left) = tokio::task::spawn_blocking(move || {
        runc_delete_all(&fl.root);
        let e = fl.cni_del_all();
        (e, umount_under(&fd))
    })
    .await?;
    ensure!(left.is_empty(), "cannot unmount {left:?}");
    ensure!(cni_errors.is_empty(), "CNI DEL: {cni_errors:?}");
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
    println!("{n} rounds, each: the five floor variants once, then one Selur pod (30 ms pauses between);");
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
        ("Selur / bare floor", f(0)),
        ("Selur / (floor + netns)", f(1)),
        ("Selur / (floor + Selur's sandbox)", f(2)),
        ("Selur / (floor + netns + CNI bridge), target <= 1.3x", f(4)),
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
        "Over the bare floor at p50: netns {:.1} ms, Selur's whole sandbox {:.1} ms, Selur's OCI spec {:.1} ms, \
         netns + CNI bridge ADD {:.1} ms.",
        f(1) - f(0),
        f(2) - f(0),
        f(3) - f(0),
        f(4) - f(0)
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
            "Note: the shims (`selur-shim`, or `selur shim` when that is missing) share pages with \
             the server, so PSS moves some shared pages' cost from the server to the shims as they \
             start (the server's PSS delta can be negative); only the sum is meaningful. Idle \
             readings: 1 s after the node registered; the others {} s after the last change. The \
             shims start containers with `runc run --detach` and keep no runc process; any \
             `runc` process found under a shim is listed but not counted as Selur's.",
            SETTLE.as_secs()
        );
    }
}

fn main() -> Result<()> {
    // Everything (server, agent, floor) runs in a network namespace of its own.
    common::netns::enter("pod-bench")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(amain())
}

async fn amain() -> Result<()> {
    let args = parse_args()?;
    println!("# Selur pod benchmark");
    println!();
    println!("Machine: {}", machine());
    println!();
    println!(
        "Pod network: `--pod-network {}`; server, agent and floor run in the bench's own network namespace ({}).",
        args.pod_network,
        common::netns::current()
    );
    println!();
    let mut host = Host::new("pod-bench");
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
