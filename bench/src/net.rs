//! The pod network's data and control paths on a real node: an all-in-one
//! `selur server --pod-network bridge` (release binary, node `bench`) in a
//! network namespace the bench creates for itself (see `common::netns`).
//!
//! 1. Service path: a Deployment of the demo web server
//!    (`localhost/bench:1`, `/usr/bin/web-server` on 8080) behind a
//!    ClusterIP Service (port 80 -> 8080). From the node (the bench process
//!    itself, in the namespace), HTTP/1.1 `GET /health` with
//!    `Connection: close`, one new TCP connection per request: latency at
//!    concurrency 1 and throughput at concurrency C, through the ClusterIP
//!    and straight to a pod IP, interleaved in rounds.
//! 2. Proxy scale: N Services without selector, each with one EndpointSlice
//!    of 10 endpoints written by the bench (addresses on the namespace's
//!    loopback where the bench listens, so no pods are needed), for N = 100
//!    then 1,000. Each change flips the ready condition of all 10 endpoints
//!    of one slice (one PUT); it is timed from just before the PUT until a
//!    connection to the Service's ClusterIP changes outcome (refused by the
//!    proxy's reject rule when no endpoint is ready, accepted again once
//!    they are).
//! 3. DNS: `selur_dns::load` against the agent's cluster DNS on
//!    [fd01::a]:53 for Service names, and against a trivial UDP responder
//!    in the bench (echoes the query as an empty answer: the load
//!    generator's own floor).
//!
//! Needs root, runc, util-linux, iproute2, nftables and the demo binary
//! (scripts/build-demo.sh). Run:
//! `cargo build --release -p selur -p selur-bench && target/release/net-bench`.

mod common;

use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use selur_client::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::host::{loadavg, machine, sh, Host};
use common::server::{build_image, start_server, Api, PODS};
use common::stats::{table_head, Stats};
use common::workload::{workload, ImageChoice};
use common::NODE;

const TAG: &str = "localhost/bench:1";
const NS: &str = "/api/v1/namespaces/default";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
/// Where the proxy-scale endpoints live (on lo in the bench's namespace).
const EP_PREFIX: &str = "fd02::";
const EP_PORT: u16 = 9000;
const DNS: &str = "[fd01::a]:53";
const USAGE: &str = "usage: net-bench [--replicas R] [--seconds S] [--concurrency C] \
    [--sizes 100,1000] [--changes N] [--dns-queries Q] [--dns-concurrency C] \
    [--sections http,proxy,dns] [--selur PATH] [--demo PATH] [--server-log FILE]";

struct Args {
    selur: PathBuf,
    demo: Option<PathBuf>,
    server_log: Option<PathBuf>,
    replicas: usize,
    seconds: f64,
    concurrency: usize,
    sizes: Vec<usize>,
    changes: usize,
    dns_queries: usize,
    dns_concurrency: usize,
    sections: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        selur: PathBuf::new(),
        demo: None,
        server_log: None,
        replicas: 3,
        seconds: 4.0,
        concurrency: 4,
        sizes: vec![100, 1000],
        changes: 20,
        dns_queries: 20_000,
        dns_concurrency: 8,
        sections: vec!["http".into(), "proxy".into(), "dns".into()],
    };
    let list = |v: &str| -> Result<Vec<usize>> {
        v.split(',')
            .map(|s| s.trim().parse::<usize>().context("a list of numbers"))
            .collect()
    };
    let common = common::args::parse_args(USAGE, |flag, val| {
        match flag {
            "--replicas" => a.replicas = val.parse().context("--replicas")?,
            "--seconds" => a.seconds = val.parse().context("--seconds")?,
            "--concurrency" => a.concurrency = val.parse().context("--concurrency")?,
            "--sizes" => a.sizes = list(&val)?,
            "--changes" => a.changes = val.parse().context("--changes")?,
            "--dns-queries" => a.dns_queries = val.parse().context("--dns-queries")?,
            "--dns-concurrency" => a.dns_concurrency = val.parse().context("--dns-concurrency")?,
            "--sections" => a.sections = val.split(',').map(|s| s.trim().to_string()).collect(),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    a.selur = common.selur;
    a.demo = common.demo;
    a.server_log = common.server_log;
    ensure!(
        a.replicas > 0 && a.concurrency > 0,
        "--replicas and --concurrency must be > 0"
    );
    Ok(a)
}

// ---------------------------------------------------------------- API helpers

async fn create(api: &Api, path: &str, body: &Value) -> Result<Value> {
    let r = api.send(Method::POST, path, Some(body)).await?;
    let code = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    ensure!(code == 201 || code == 200, "POST {path}: HTTP {code}: {v}");
    Ok(v)
}

async fn put(api: &Api, path: &str, body: &Value) -> Result<Value> {
    let r = api.send(Method::PUT, path, Some(body)).await?;
    let code = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    ensure!(code == 200, "PUT {path}: HTTP {code}: {v}");
    Ok(v)
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let t = Instant::now();
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        ensure!(
            t.elapsed() < timeout,
            "{what}: not within {} s",
            timeout.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- HTTP load

/// One request on a new connection; Ok(latency) on a 200.
async fn http_once(addr: SocketAddr) -> Result<Duration> {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = Vec::with_capacity(512);
    s.read_to_end(&mut buf).await?;
    let took = t.elapsed();
    ensure!(
        buf.starts_with(b"HTTP/1.1 200"),
        "answer: {:?}",
        String::from_utf8_lossy(&buf[..buf.len().min(80)])
    );
    Ok(took)
}

#[derive(Default)]
struct Load {
    lat: Stats,
    errors: usize,
    wall: Duration,
}

impl Load {
    fn add(&mut self, o: Load) {
        self.lat.0.extend(o.lat.0);
        self.errors += o.errors;
        self.wall += o.wall;
    }
    fn rps(&self) -> f64 {
        self.lat.0.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// `concurrency` loops of `http_once` for `secs`, each request to the
/// next of `addrs` (round robin per loop).
async fn http_load(addrs: &[SocketAddr], concurrency: usize, secs: f64) -> Load {
    let t = Instant::now();
    let deadline = t + Duration::from_secs_f64(secs);
    let mut hs = Vec::new();
    for w in 0..concurrency {
        let addrs = addrs.to_vec();
        hs.push(tokio::spawn(async move {
            let mut l = Load::default();
            let mut i = w;
            while Instant::now() < deadline {
                let addr = addrs[i % addrs.len()];
                i += 1;
                match tokio::time::timeout(Duration::from_secs(2), http_once(addr)).await {
                    Ok(Ok(d)) => l.lat.0.push(d),
                    _ => l.errors += 1,
                }
            }
            l
        }));
    }
    let mut all = Load::default();
    for h in hs {
        if let Ok(l) = h.await {
            all.lat.0.extend(l.lat.0);
            all.errors += l.errors;
        }
    }
    all.wall = t.elapsed();
    all
}

struct HttpReport {
    cluster_ip: String,
    pod_ip: String,
    replicas: usize,
    /// (target label, concurrency, load)
    rows: Vec<(String, usize, Load)>,
    ratio_p50: f64,
}

async fn section_http(args: &Args, api: &Api, host: &Host) -> Result<HttpReport> {
    let w = workload(ImageChoice::Demo, args.demo.as_deref())?;
    let data = host.data_dir()?.to_path_buf();
    eprintln!("net-bench: building {TAG} ({})", w.label);
    build_image(host, &w, TAG, &data.join("kubeconfig"), &args.selur).await?;
    let c = json!({
        "name": "web", "image": TAG, "imagePullPolicy": "Never",
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 1},
    });
    create(
        api,
        DEPLOYMENTS,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": args.replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"terminationGracePeriodSeconds": 1, "containers": [c]}}}}),
    )
    .await?;
    let svc = create(
        api,
        &format!("{NS}/services"),
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
    )
    .await?;
    let cluster_ip = svc["spec"]["clusterIP"]
        .as_str()
        .ok_or_else(|| anyhow!("Service web has no clusterIP: {svc}"))?
        .to_string();
    eprintln!(
        "net-bench: Service web {cluster_ip}: waiting for {} ready endpoints",
        args.replicas
    );
    let n = args.replicas;
    wait_for(
        "ready endpoints of web",
        Duration::from_secs(120),
        || async {
            let l = api
                .get_json(&format!(
                    "{SLICES}?labelSelector=kubernetes.io%2Fservice-name%3Dweb"
                ))
                .await?;
            let ready = l["items"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                .filter(|e| e["conditions"]["ready"].as_bool() == Some(true))
                .count();
            Ok((ready >= n).then_some(()))
        },
    )
    .await?;
    let pods = api
        .get_json(&format!("{PODS}?labelSelector=app%3Dweb"))
        .await?;
    let pod_ips: Vec<String> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["status"]["podIP"].as_str().map(String::from))
        .collect();
    ensure!(!pod_ips.is_empty(), "no pod of web has a podIP");
    let caddr = [SocketAddr::new(Ipv6Addr::from_str(&cluster_ip)?.into(), 80)];
    let paddr: Vec<SocketAddr> = pod_ips
        .iter()
        .map(|ip| Ok(SocketAddr::new(Ipv6Addr::from_str(ip)?.into(), 8080)))
        .collect::<Result<_>>()?;
    let pod_ip = pod_ips.join(", ");
    wait_for("ClusterIP answering", Duration::from_secs(30), || async {
        Ok(http_once(caddr[0]).await.ok())
    })
    .await?;
    // Warm-up, untimed.
    http_load(&paddr, 1, 0.3).await;
    http_load(&caddr, 1, 0.3).await;

    let mut rows = Vec::new();
    for (conc, label) in [(1usize, "latency"), (args.concurrency, "throughput")] {
        let mut pod = Load::default();
        let mut cip = Load::default();
        // Two rounds each, interleaved, so background load hits both alike.
        for _ in 0..2 {
            eprintln!("net-bench: {label}: pod IP, concurrency {conc}");
            pod.add(http_load(&paddr, conc, args.seconds / 2.0).await);
            eprintln!("net-bench: {label}: ClusterIP, concurrency {conc}");
            cip.add(http_load(&caddr, conc, args.seconds / 2.0).await);
        }
        rows.push(("pod IPs, round robin, :8080".to_string(), conc, pod));
        rows.push((format!("ClusterIP [{cluster_ip}]:80"), conc, cip));
    }
    let ratio_p50 = rows[1].2.lat.pct(0.5) / rows[0].2.lat.pct(0.5);
    Ok(HttpReport {
        cluster_ip,
        pod_ip,
        replicas: n,
        rows,
        ratio_p50,
    })
}

// ---------------------------------------------------------------- proxy scale

fn slice(i: usize, ready: bool) -> Value {
    let eps: Vec<Value> = (1..=10)
        .map(|k| {
            json!({"addresses": [format!("{EP_PREFIX}{k:x}")],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
                "nodeName": NODE})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("s{i}-1"), "labels": {"kubernetes.io/service-name": format!("s{i}")}},
        "addressType": "IPv6",
        "endpoints": eps,
        "ports": [{"name": "http", "port": EP_PORT, "protocol": "TCP"}]})
}

/// Create Services `s{from}`..`s{to-1}` (no selector) and their slices,
/// eight at a time; their ClusterIPs.
async fn create_services(api: &Arc<Api>, from: usize, to: usize) -> Result<Vec<String>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(from));
    let mut hs = Vec::new();
    for _ in 0..8 {
        let api = api.clone();
        let next = next.clone();
        hs.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= to {
                    return Ok::<_, anyhow::Error>(out);
                }
                let svc = create(
                    &api,
                    &format!("{NS}/services"),
                    &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("s{i}")},
                        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": EP_PORT, "protocol": "TCP"}]}}),
                )
                .await?;
                create(&api, SLICES, &slice(i, true)).await?;
                let ip = svc["spec"]["clusterIP"]
                    .as_str()
                    .ok_or_else(|| anyhow!("s{i} has no clusterIP"))?
                    .to_string();
                out.push((i, ip));
            }
        }));
    }
    let mut all = Vec::new();
    for h in hs {
        all.extend(h.await??);
    }
    all.sort();
    Ok(all.into_iter().map(|(_, ip)| ip).collect())
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Probe {
    Accepted,
    /// Reset by the proxy's reject rule (no ready endpoint).
    Refused,
    /// No answer: the ClusterIP is not (yet) in the proxy's maps, whose
    /// range rule drops it.
    Silent,
}

async fn probe(addr: SocketAddr) -> Result<Probe> {
    match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(Probe::Accepted),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(Probe::Refused),
        Ok(Err(e)) => Err(anyhow!("connect {addr}: {e}")),
        Err(_) => Ok(Probe::Silent),
    }
}

/// Poll until a connection to `addr` gives `want`; when it did.
async fn until_probe(addr: SocketAddr, want: Probe, timeout: Duration) -> Result<Instant> {
    let t = Instant::now();
    loop {
        let got = probe(addr).await?;
        if got == want {
            return Ok(Instant::now());
        }
        ensure!(
            t.elapsed() < timeout,
            "connect {addr}: still {got:?}, not {want:?}, after {} s",
            timeout.as_secs()
        );
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

struct ScaleRow {
    services: usize,
    create: Duration,
    /// From the last create until the last Service answered.
    converge: Duration,
    to_refused: Stats,
    to_accepted: Stats,
    all: Stats,
    nft_lines: usize,
}

async fn section_proxy(args: &Args, api: &Arc<Api>) -> Result<Vec<ScaleRow>> {
    for k in 1..=10 {
        sh(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{EP_PREFIX}{k:x}/128"),
                "dev",
                "lo",
                "nodad",
            ],
        )?;
    }
    let listener = tokio::net::TcpListener::bind(("::", EP_PORT)).await?;
    let acceptor = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let mut ips: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for &size in &args.sizes {
        if size <= ips.len() {
            continue;
        }
        eprintln!(
            "net-bench: proxy: creating Services s{}..s{}",
            ips.len(),
            size - 1
        );
        let t = Instant::now();
        let more = create_services(api, ips.len(), size).await?;
        let create_took = t.elapsed();
        ips.extend(more);
        let tc = Instant::now();
        let last = SocketAddr::new(Ipv6Addr::from_str(&ips[size - 1])?.into(), 80);
        until_probe(last, Probe::Accepted, Duration::from_secs(120)).await?;
        let converge = tc.elapsed();
        let nft_lines = sh("nft", &["list", "table", "ip6", "selur"])
            .map(|s| s.lines().count())
            .unwrap_or(0);
        let mut row = ScaleRow {
            services: size,
            create: create_took,
            converge,
            to_refused: Stats::default(),
            to_accepted: Stats::default(),
            all: Stats::default(),
            nft_lines,
        };
        eprintln!(
            "net-bench: proxy: {} changes at {size} Services",
            args.changes
        );
        for c in 0..args.changes {
            // Spread over the Services; each one flipped to unready, then back.
            let i = (c / 2 * 7919 + size / 3) % size;
            let ready = c % 2 == 1;
            let addr = SocketAddr::new(Ipv6Addr::from_str(&ips[i])?.into(), 80);
            let (before, after) = if ready {
                (Probe::Refused, Probe::Accepted)
            } else {
                (Probe::Accepted, Probe::Refused)
            };
            until_probe(addr, before, Duration::from_secs(30)).await?;
            let path = format!("{SLICES}/s{i}-1");
            let mut body = api.get_json(&path).await?;
            let fresh = slice(i, ready);
            body["endpoints"] = fresh["endpoints"].clone();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let t0 = Instant::now();
            put(api, &path, &body).await?;
            let at = until_probe(addr, after, Duration::from_secs(30)).await?;
            let d = at - t0;
            if ready {
                row.to_accepted.0.push(d);
            } else {
                row.to_refused.0.push(d);
            }
            row.all.0.push(d);
        }
        rows.push(row);
    }
    acceptor.abort();
    Ok(rows)
}

// ---------------------------------------------------------------- DNS

/// A UDP responder on [::1] that answers every query with its own
/// question, QR set, no records: the floor of the load generator.
async fn echo_dns() -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let sock = tokio::net::UdpSocket::bind("[::1]:0").await?;
    let addr = sock.local_addr()?;
    let h = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if n >= 12 {
                buf[2] |= 0x80;
                buf[3] &= 0xf0;
                let _ = sock.send_to(&buf[..n], from).await;
            }
        }
    });
    Ok((addr, h))
}

/// Ask `server` once for `name` AAAA; (rcode, answer count) from the
/// raw header.
async fn ask(server: SocketAddr, name: &hickory_proto::rr::Name) -> Result<(u8, u16)> {
    use hickory_proto::op::{Message, Query};
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        name.clone(),
        hickory_proto::rr::RecordType::AAAA,
    ));
    let bytes = m.to_vec()?;
    let sock = tokio::net::UdpSocket::bind("[::]:0").await?;
    sock.connect(server).await?;
    sock.send(&bytes).await?;
    let mut buf = [0u8; 1500];
    let n = tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await??;
    ensure!(n >= 12, "short DNS answer");
    Ok((buf[3] & 0x0f, u16::from_be_bytes([buf[6], buf[7]])))
}

struct DnsRow {
    label: String,
    r: selur_dns::load::LoadReport,
}

async fn section_dns(args: &Args, services: usize) -> Result<Vec<DnsRow>> {
    use hickory_proto::rr::{Name, RecordType};
    let mut names: Vec<Name> = Vec::new();
    if services > 0 {
        for i in 0..services.min(20) {
            names.push(Name::from_str(&format!("s{i}.default.svc.cluster.local."))?);
        }
    } else {
        names.push(Name::from_str("kubernetes.default.svc.cluster.local.")?);
    }
    let server: SocketAddr = DNS.parse()?;
    let timeout = Duration::from_secs(1);
    let (echo, echo_task) = echo_dns().await?;
    // Warm-up, and a check that the names resolve.
    let w = selur_dns::load::run(server, &names, RecordType::AAAA, 200, 1, timeout).await?;
    ensure!(w.answered > 0, "cluster DNS {DNS} answers nothing: {w}");
    let mut good = 0;
    for n in &names {
        if let Ok((0, an)) = ask(server, n).await {
            if an > 0 {
                good += 1;
            }
        }
    }
    let mut rows = Vec::new();
    rows.push(DnsRow {
        label: format!(
            "cluster DNS warm-up, 200 queries, c1 ({good} of {} names: NOERROR + AAAA)",
            names.len()
        ),
        r: w,
    });
    for conc in [1, args.dns_concurrency] {
        for (label, addr) in [
            (
                format!("cluster DNS {DNS}, {} Service names, AAAA", names.len()),
                server,
            ),
            (
                "echo responder on [::1] (load generator floor)".to_string(),
                echo,
            ),
        ] {
            eprintln!("net-bench: dns: {label}, concurrency {conc}");
            let r = selur_dns::load::run(
                addr,
                &names,
                RecordType::AAAA,
                args.dns_queries,
                conc,
                timeout,
            )
            .await?;
            rows.push(DnsRow {
                label: format!("{label}, concurrency {conc}"),
                r,
            });
        }
    }
    echo_task.abort();
    Ok(rows)
}

// ---------------------------------------------------------------- main

struct Report {
    http: Option<HttpReport>,
    proxy: Vec<ScaleRow>,
    dns: Vec<DnsRow>,
    notes: Vec<String>,
    load_before: String,
    load_after: String,
}

async fn run(args: &Args, host: &mut Host) -> Result<Report> {
    ensure!(
        args.selur.is_file(),
        "no selur binary at {} (cargo build --release -p selur, or --selur PATH)",
        args.selur.display()
    );
    let load_before = loadavg();
    host.reset_with = Some(args.selur.clone());
    eprintln!(
        "net-bench: starting {} server --pod-network bridge",
        args.selur.display()
    );
    let api = Arc::new(
        start_server(
            &args.selur,
            args.server_log.as_deref(),
            &["--pod-network", "bridge"],
            host,
        )
        .await?,
    );
    // The agent sets the pod network up once the node has its podCIDR:
    // wait for its route to the Service range and its nftables table.
    let t = Instant::now();
    wait_for(
        "the agent's pod network",
        Duration::from_secs(60),
        || async {
            let route = sh("ip", &["-6", "route", "show", "fd01::/112"]).unwrap_or_default();
            let table = sh("nft", &["list", "table", "ip6", "selur"]).is_ok();
            Ok((!route.trim().is_empty() && table).then_some(()))
        },
    )
    .await?;
    eprintln!(
        "net-bench: pod network ready {:.1} s after the node registered",
        t.elapsed().as_secs_f64()
    );
    let on = |s: &str| args.sections.iter().any(|x| x == s);
    let mut notes = Vec::new();
    let http = if on("http") {
        Some(section_http(args, &api, host).await?)
    } else {
        None
    };
    let proxy = if on("proxy") {
        section_proxy(args, &api).await?
    } else {
        Vec::new()
    };
    let services = proxy.last().map(|r| r.services).unwrap_or(0);
    let dns = if on("dns") {
        match section_dns(args, services).await {
            Ok(d) => d,
            Err(e) => {
                notes.push(format!("DNS section failed: {e:#}"));
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    Ok(Report {
        http,
        proxy,
        dns,
        notes,
        load_before,
        load_after: loadavg(),
    })
}

fn print_report(args: &Args, r: &Report) {
    println!(
        "Load average (1/5/15 min): {} before, {} after.",
        r.load_before, r.load_after
    );
    println!();
    if let Some(h) = &r.http {
        println!("## 1. Service path: ClusterIP vs pod IP");
        println!();
        println!(
            "Deployment `web` ({} replicas of `{TAG}`, /usr/bin/web-server on 8080), Service `web` \
             {} port 80 -> 8080; direct: the pod IPs {} in turn (the ClusterIP spreads over the \
             same pods). Client: the bench process on the node \
             (in the bench's netns), its own HTTP/1.1 loop: a new TCP connection per `GET /health` \
             with `Connection: close`, read to EOF. {:.1} s per target and concurrency, in two \
             interleaved rounds.",
            h.replicas, h.cluster_ip, h.pod_ip, args.seconds
        );
        println!();
        println!(
            "| {:<44} | {:>4} | {:>8} | {:>8} | {:>7} | {:>7} | {:>7} | {:>8} | {:>8} | {:>6} |",
            "target",
            "conc",
            "requests",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            ">200 ms",
            "errors"
        );
        println!(
            "|{}|------|----------|----------|---------|---------|---------|----------|----------|--------|",
            "-".repeat(46)
        );
        for (l, c, load) in &h.rows {
            println!(
                "| {l:<44} | {c:>4} | {:>8} | {:>8.0} | {:>7.3} | {:>7.3} | {:>7.3} | {:>8.1} | {:>8} | {:>6} |",
                load.lat.0.len(),
                load.rps(),
                load.lat.pct(0.5),
                load.lat.pct(0.9),
                load.lat.pct(0.99),
                load.lat.pct(1.0),
                load
                    .lat
                    .0
                    .iter()
                    .filter(|d| **d > Duration::from_millis(200))
                    .count(),
                load.errors
            );
        }
        println!();
        println!(
            "ClusterIP p50 / pod IP p50 at concurrency 1: {:.2}x (target < 1.2x)",
            h.ratio_p50
        );
        println!();
    }
    if !r.proxy.is_empty() {
        println!("## 2. Proxy: EndpointSlice change until the rule is live");
        println!();
        println!(
            "Services without selector, one EndpointSlice each with 10 endpoints ({EP_PREFIX}1..a on \
             the netns loopback, port {EP_PORT}, the bench accepting), created through the API 8 at \
             a time. A change = one PUT of a slice flipping all 10 endpoints' ready condition; timed \
             from just before the PUT until a TCP connect to the ClusterIP changes outcome \
             (polled every 0.5 ms): refused by the reject rule once none is ready, accepted once \
             they are ready again."
        );
        println!();
        table_head();
        for s in &r.proxy {
            s.all.row(&format!(
                "{} Services x 10 endpoints: all changes",
                s.services
            ));
            s.to_refused.row(&format!(
                "{} Services: ready -> unready (refused)",
                s.services
            ));
            s.to_accepted.row(&format!(
                "{} Services: unready -> ready (accepted)",
                s.services
            ));
        }
        println!();
        println!("| services | create (API) s | last created Service answering, s | `nft list table` lines |");
        println!("|----------|---------------|-----------------------------------|------------------------|");
        for s in &r.proxy {
            println!(
                "| {:>8} | {:>13.2} | {:>33.2} | {:>22} |",
                s.services,
                s.create.as_secs_f64(),
                s.converge.as_secs_f64(),
                s.nft_lines
            );
        }
        println!();
    }
    if !r.dns.is_empty() {
        println!("## 3. DNS");
        println!();
        println!(
            "`selur_dns::load::run` from the bench process (node netns), {} queries per row, UDP, \
             1 s timeout per query. The echo responder answers each query with itself (QR set, \
             no records): what the load generator and loopback UDP cost alone.",
            args.dns_queries
        );
        println!();
        println!(
            "| {:<84} | {:>8} | {:>6} | {:>9} | {:>7} | {:>7} |",
            "server", "answered", "failed", "queries/s", "p50 ms", "p99 ms"
        );
        println!(
            "|{}|----------|--------|-----------|---------|---------|",
            "-".repeat(86)
        );
        for d in &r.dns {
            println!(
                "| {:<84} | {:>8} | {:>6} | {:>9.0} | {:>7.3} | {:>7.3} |",
                d.label,
                d.r.answered,
                d.r.failed,
                d.r.queries_per_second(),
                d.r.p50.as_secs_f64() * 1000.0,
                d.r.p99.as_secs_f64() * 1000.0
            );
        }
        println!();
    }
    for n in &r.notes {
        println!("Note: {n}");
    }
}

fn main() -> Result<()> {
    common::netns::enter("net-bench")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(amain())
}

async fn amain() -> Result<()> {
    let args = parse_args()?;
    println!("# Selur pod network benchmark");
    println!();
    println!("Machine: {}", machine());
    println!();
    println!(
        "`selur server --pod-network bridge`, node `{NODE}`; server, agent and clients in the bench's own network namespace ({}).",
        common::netns::current()
    );
    println!();
    let mut host = Host::new("net-bench");
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let res = tokio::select! {
        r = run(&args, &mut host) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        _ = sigterm.recv() => Err(anyhow!("terminated")),
    };
    if let Some(l) = &args.server_log {
        eprintln!("net-bench: server log in {}", l.display());
    }
    eprintln!("net-bench: cleaning up");
    let problems = host.cleanup();
    for p in &problems {
        eprintln!("net-bench: cleanup: {p}");
    }
    let report = res?;
    print_report(&args, &report);
    ensure!(problems.is_empty(), "cleanup left things behind");
    Ok(())
}
