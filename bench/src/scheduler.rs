//! Scheduler throughput: placements per second with the binding writes to the
//! embedded store included, over 1,000 simulated nodes (varied capacity,
//! labels and taints; an image catalog with layers held by some nodes).
//!
//! Everything is in-process: a SqliteStore (WAL, fsync on commit) and the
//! server's Registry, no HTTP. 10,000 pending pods (varied requests, images,
//! owners, some with a nodeSelector or a toleration) are created first; then
//! the scheduler starts, and the clock runs from its start (initial list
//! included) until every pod is bound. Per-placement latency is from taking
//! the pod off the queue to its binding being durable. Afterwards the store
//! is checked: every pod bound, no node over its allocatable, no tainted
//! node holding a pod that does not tolerate it, selectors respected.
//!
//! Run: `cargo run --release -p selur-bench --bin sched-bench [-- --nodes N --pods M]`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use selur_server::admission::Admission;
use selur_server::clock::SystemClock;
use selur_server::registry::{decode_kv, prefix, Registry, Subresource};
use selur_server::scheduler::{self, BindRecord, SchedulerConfig};
use selur_store::{SqliteOptions, SqliteStore, Store};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn kind(name: &str) -> anyhow::Result<&'static selur_api::ResourceKind> {
    selur_api::kinds::by_cli_name(name).ok_or_else(|| anyhow::anyhow!("kind {name} missing"))
}

const IMAGES: usize = 20;

fn node(i: usize) -> Value {
    let (cpu, mem) = match i % 4 {
        0 => ("4", "8Gi"),
        1 => ("8", "16Gi"),
        2 => ("16", "32Gi"),
        _ => ("32", "128Gi"),
    };
    let name = format!("node-{i:04}");
    let mut labels = json!({"kubernetes.io/hostname": name, "zone": format!("z{}", i % 4)});
    if i.is_multiple_of(2) {
        labels["disk"] = json!("ssd");
    }
    let mut taints = vec![];
    if i % 10 == 9 {
        labels["accel"] = json!("gpu");
        taints.push(json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}));
    }
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {"capacity": {"cpu": cpu, "memory": mem, "pods": "110"},
                   "allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}}})
}

fn image(i: usize, nodes: usize) -> (Value, Vec<String>) {
    let digest = format!("sha256:{i:064x}");
    // A shared base layer plus one of the image's own, 5-200 MB in all.
    let layers = json!([
        {"digest": format!("sha256:base{:060x}", i % 3), "size": 4_000_000u64 * (1 + (i % 3) as u64)},
        {"digest": format!("sha256:top{i:061x}"), "size": 1_000_000u64 * (1 + (i * 37 % 190) as u64)},
    ]);
    let holders: Vec<String> = (0..nodes)
        .filter(|n| (n * 7 + i).is_multiple_of(13))
        .map(|n| format!("node-{n:04}"))
        .collect();
    let obj = json!({"apiVersion": "images.selur.io/v1", "kind": "Image",
        "metadata": {"name": digest.replacen(':', "-", 1)},
        "spec": {"digest": digest, "names": [format!("registry.example/app-{i}:1")],
                 "layers": layers, "sizeBytes": 0}});
    (obj, holders)
}

fn pod(i: usize) -> Value {
    let cpu = format!("{}m", 100 + (i % 5) * 100);
    let mem = format!("{}Mi", 64 << (i % 4));
    let mut spec = json!({"containers": [{"name": "app",
        "image": format!("registry.example/app-{}:1", i % IMAGES),
        "resources": {"requests": {"cpu": cpu, "memory": mem}}}]});
    if i.is_multiple_of(7) {
        spec["nodeSelector"] = json!({"disk": "ssd"});
    }
    if i.is_multiple_of(11) {
        spec["tolerations"] = json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    }
    let owner = i % 100;
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("p{i:05}"), "namespace": "default",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("rs-{owner}"), "uid": format!("00000000-0000-0000-0000-{owner:012}"),
                "controller": true}]},
        "spec": spec})
}

/// Run `f` over `0..n`, `width` at a time.
async fn each<F, Fut>(n: usize, width: usize, f: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        if set.len() >= width {
            if let Some(r) = set.join_next().await {
                r??;
            }
        }
        set.spawn(f(i));
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let nodes = arg("--nodes", 1000);
    let pods = arg("--pods", 10_000);
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default())?);
    let reg = Registry::new(store, Admission::default(), Arc::new(SystemClock));
    reg.ensure_namespace("default")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (node_k, pod_k) = (kind("nodes")?, kind("pods")?);
    let image_k = selur_api::kinds::by_api_version_kind("images.selur.io/v1", "Image")
        .ok_or_else(|| anyhow::anyhow!("Image kind missing"))?;

    let t = Instant::now();
    let r = reg.clone();
    each(nodes, 64, move |i| {
        let r = r.clone();
        async move {
            let n = node(i);
            let name = n["metadata"]["name"].as_str().unwrap_or("").to_string();
            let status = json!({"status": n["status"].clone()});
            r.create(node_k, None, n, false)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            r.merge(node_k, None, &name, &status, Subresource::Status)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(())
        }
    })
    .await?;
    for i in 0..IMAGES {
        let (img, holders) = image(i, nodes);
        let name = img["metadata"]["name"].as_str().unwrap_or("").to_string();
        reg.create(image_k, None, img, false)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        reg.merge(
            image_k,
            None,
            &name,
            &json!({"status": {"nodes": holders}}),
            Subresource::Status,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let r = reg.clone();
    each(pods, 64, move |i| {
        let r = r.clone();
        async move {
            r.create(pod_k, Some("default"), pod(i), false)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(())
        }
    })
    .await?;
    println!(
        "setup: {nodes} nodes, {IMAGES} catalog images, {pods} pending pods in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<BindRecord>();
    let cfg = SchedulerConfig {
        observer: Some(tx),
        ..SchedulerConfig::default()
    };
    let start = Instant::now();
    let sched = tokio::spawn(scheduler::run(reg.clone(), cfg));
    let mut lat = Vec::with_capacity(pods);
    while lat.len() < pods {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(rec)) => lat.push(rec.latency),
            _ => anyhow::bail!("only {} of {pods} pods bound", lat.len()),
        }
    }
    let elapsed = start.elapsed();
    // Scheduled events are written beside the bindings, fewer at a time; see when the last lands.
    let ev_k = kind("events")?;
    let events_done = loop {
        let (evs, _) = reg
            .list_all(&prefix(ev_k, Some("default")))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let n = evs
            .iter()
            .filter(|kv| kv.value.windows(11).any(|w| w == b"\"Scheduled\""))
            .count();
        if n >= pods {
            break start.elapsed();
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "only {n} Scheduled events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    sched.abort();
    lat.sort();
    let rate = pods as f64 / elapsed.as_secs_f64();

    // Check what was written.
    let (node_kvs, _) = reg
        .list_all(&prefix(node_k, None))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut alloc: HashMap<String, (f64, f64, bool, bool)> = HashMap::new();
    for kv in &node_kvs {
        let n = decode_kv(kv).map_err(|e| anyhow::anyhow!("{e}"))?;
        let a = &n["status"]["allocatable"];
        let cpu: f64 = a["cpu"].as_str().unwrap_or("0").parse().unwrap_or(0.0) * 1000.0;
        let mem_gi: f64 = a["memory"]
            .as_str()
            .unwrap_or("0Gi")
            .trim_end_matches("Gi")
            .parse()
            .unwrap_or(0.0);
        let tainted = n["spec"]["taints"]
            .as_array()
            .is_some_and(|t| !t.is_empty());
        let ssd = n["metadata"]["labels"]["disk"] == "ssd";
        alloc.insert(
            n["metadata"]["name"].as_str().unwrap_or("").into(),
            (cpu, mem_gi * 1024.0, tainted, ssd),
        );
    }
    let (pod_kvs, _) = reg
        .list_all(&prefix(pod_k, Some("default")))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut used: HashMap<String, (f64, f64)> = HashMap::new();
    let mut bound = 0;
    for kv in &pod_kvs {
        let p = decode_kv(kv).map_err(|e| anyhow::anyhow!("{e}"))?;
        let Some(n) = p["spec"]["nodeName"].as_str() else {
            continue;
        };
        bound += 1;
        let i: usize = p["metadata"]["name"]
            .as_str()
            .unwrap_or("p0")
            .trim_start_matches('p')
            .parse()
            .unwrap_or(0);
        let (_, _, tainted, ssd) = alloc.get(n).copied().unwrap_or_default();
        anyhow::ensure!(
            !tainted || i.is_multiple_of(11),
            "{i} on tainted {n} without toleration"
        );
        anyhow::ensure!(
            ssd || !i.is_multiple_of(7),
            "{i} needs disk=ssd but is on {n}"
        );
        let e = used.entry(n.to_string()).or_default();
        e.0 += (100 + (i % 5) * 100) as f64;
        e.1 += (64 << (i % 4)) as f64;
    }
    anyhow::ensure!(bound == pods, "{bound} of {pods} pods bound in the store");
    for (n, (cpu, mem)) in &used {
        let (acpu, amem, _, _) = alloc.get(n).copied().unwrap_or_default();
        anyhow::ensure!(
            *cpu <= acpu && *mem <= amem,
            "{n} over-committed: {cpu}m/{acpu}m, {mem}Mi/{amem}Mi"
        );
    }

    println!();
    println!("| nodes | pods  | wall time (s) | placements/s | p50 (ms) | p99 (ms) | nodes used |");
    println!("|------:|------:|--------------:|-------------:|---------:|---------:|-----------:|");
    println!(
        "| {nodes:>5} | {pods:>5} | {:>13.2} | {rate:>12.0} | {:>8.2} | {:>8.2} | {:>10} |",
        elapsed.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        used.len()
    );
    println!(
        "target: at least 5,000 placements/s {}",
        if rate >= 5000.0 { "(met)" } else { "(NOT met)" }
    );
    println!(
        "all {pods} Scheduled events written {:.2} s after the scheduler started (they trail the bindings)",
        events_done.as_secs_f64()
    );
    Ok(())
}
