//! Measures the cluster DNS server on loopback: Records::build time for a
//! large snapshot, then queries/s and latency for cluster names, unknown
//! names and forwarded names (through a small upstream started here).
//! Prints, asserts nothing.
//!
//! cargo run --release -p selur-dns --example dns_load [SERVICES] [QUERIES] [CONCURRENCY]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::AAAA;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Pod, Service};
use selur_dns::{load, serve, DnsConfig, Records};
use tokio::net::{TcpListener, UdpSocket};

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

async fn upstream() -> std::io::Result<SocketAddr> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = socket.local_addr()?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
            reply.add_queries(query.queries.clone());
            if let Some(q) = query.queries.first() {
                reply.add_answer(Record::from_rdata(
                    q.name().clone(),
                    300,
                    RData::AAAA(AAAA(std::net::Ipv6Addr::LOCALHOST)),
                ));
            }
            if let Ok(bytes) = reply.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let services_n = arg(1, 1000);
    let queries = arg(2, 20_000);
    let concurrency = arg(3, 8);

    let mut services = Vec::with_capacity(services_n);
    let mut pods = Vec::with_capacity(services_n * 5);
    for i in 0..services_n {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
            "spec": {"clusterIP": format!("fd01::{:x}", i + 0x100),
                     "ports": [{"name": "http", "port": 80}]},
        }))?;
        services.push(service);
        for j in 0..5 {
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("pod-{i}-{j}"), "namespace": "bench"},
                "spec": {"containers": []},
                "status": {"phase": "Running", "podIP": format!("fd00::{:x}:{:x}", i, j)},
            }))?;
            pods.push(pod);
        }
    }
    // Twice: the first build also pays for growing a fresh process's heap,
    // the second is what a rebuild in a running agent costs.
    let mut records = Records::default();
    for run in ["first", "again"] {
        let started = Instant::now();
        records = Records::build("cluster.local", &services, &[], &pods);
        println!(
            "Records::build ({run}): {} services, {} pods -> {} names in {:.2?}",
            services.len(),
            pods.len(),
            records.len(),
            started.elapsed()
        );
    }

    let udp = UdpSocket::bind("[::1]:0").await?;
    let tcp = TcpListener::bind("[::1]:0").await?;
    let addr = udp.local_addr()?;
    let cfg = DnsConfig::new("cluster.local", vec![upstream().await?]);
    let (handle, server) = serve(cfg, udp, tcp).await?;
    let started = Instant::now();
    handle.update(records);
    println!("update: {:.2?}", started.elapsed());

    let cluster: Vec<Name> = (0..services_n)
        .map(|i| Name::from_ascii(format!("svc-{i}.bench.svc.cluster.local.")))
        .collect::<Result<_, _>>()?;
    let unknown: Vec<Name> = (0..100)
        .map(|i| Name::from_ascii(format!("gone-{i}.bench.svc.cluster.local.")))
        .collect::<Result<_, _>>()?;
    let external: Vec<Name> = (0..100)
        .map(|i| Name::from_ascii(format!("host-{i}.example.org.")))
        .collect::<Result<_, _>>()?;
    let timeout = Duration::from_secs(1);
    for (what, names) in [
        ("cluster AAAA", &cluster),
        ("unknown (NXDOMAIN)", &unknown),
        ("forwarded", &external),
    ] {
        let report =
            load::run(addr, names, RecordType::AAAA, queries, concurrency, timeout).await?;
        println!("{what}: {report}");
    }
    server.shutdown().await?;
    Ok(())
}
