//! A small load generator for measuring a DNS server: queries per second
//! and latency percentiles over UDP. Bounded in count and time; meant for
//! loopback servers in benchmarks and examples (`examples/dns_load.rs`).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Queries answered (any response code).
    pub answered: usize,
    /// Queries that got no answer within the per-query timeout, or failed
    /// to send.
    pub failed: usize,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Median latency of answered queries.
    pub p50: Duration,
    /// 99th percentile latency of answered queries.
    pub p99: Duration,
}

impl LoadReport {
    /// Answered queries per second of wall time.
    pub fn queries_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.answered as f64 / secs
        } else {
            0.0
        }
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answered, {} failed in {:.2?}: {:.0} queries/s, p50 {:.2?}, p99 {:.2?}",
            self.answered,
            self.failed,
            self.elapsed,
            self.queries_per_second(),
            self.p50,
            self.p99
        )
    }
}

/// Sends `total` queries for `names` (round robin, type `qtype`) to
/// `server` from `concurrency` clients, each waiting for its answer (at
/// most `per_query_timeout`) before the next query.
pub async fn run(
    server: SocketAddr,
    names: &[Name],
    qtype: RecordType,
    total: usize,
    concurrency: usize,
    per_query_timeout: Duration,
) -> std::io::Result<LoadReport> {
    let names: Arc<[Name]> = names.into();
    let concurrency = concurrency.max(1);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let share = total / concurrency + usize::from(worker < total % concurrency);
        let names = names.clone();
        tasks.push(tokio::spawn(async move {
            client(server, &names, qtype, worker, share, per_query_timeout).await
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut failed = 0;
    for task in tasks {
        let (mut got, lost) = task.await.map_err(std::io::Error::other)??;
        latencies.append(&mut got);
        failed += lost;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let percentile = |p: usize| {
        if latencies.is_empty() {
            Duration::ZERO
        } else {
            latencies[((latencies.len() - 1) * p) / 100]
        }
    };
    Ok(LoadReport {
        answered: latencies.len(),
        failed,
        elapsed,
        p50: percentile(50),
        p99: percentile(99),
    })
}

async fn client(
    server: SocketAddr,
    names: &[Name],
    qtype: RecordType,
    worker: usize,
    count: usize,
    per_query_timeout: Duration,
) -> std::io::Result<(Vec<Duration>, usize)> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    let mut latencies = Vec::with_capacity(count);
    let mut failed = 0;
    let mut buf = vec![0u8; 4096];
    for i in 0..count {
        if names.is_empty() {
            break;
        }
        let id = u16::try_from((worker * 7919 + i) % 65_536).unwrap_or(0);
        let name = names[(worker + i) % names.len()].clone();
        let mut message = Message::query();
        message.metadata.id = id;
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(name, qtype));
        let bytes = message.to_vec().map_err(std::io::Error::other)?;
        let sent = Instant::now();
        if socket.send(&bytes).await.is_err() {
            failed += 1;
            continue;
        }
        let answered = tokio::time::timeout(per_query_timeout, async {
            loop {
                let n = socket.recv(&mut buf).await?;
                if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                    return Ok::<(), std::io::Error>(());
                }
            }
        })
        .await;
        match answered {
            Ok(Ok(())) => latencies.push(sent.elapsed()),
            _ => failed += 1,
        }
    }
    Ok((latencies, failed))
}
