//! The DNS server over real sockets on loopback (random ports): queries are
//! raw hickory-proto messages, as any stub resolver sends them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::{AAAA, PTR, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use selur_dns::{serve, DnsConfig, DnsHandle, DnsServer, Records};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

struct Running {
    handle: DnsHandle,
    server: DnsServer,
    udp: SocketAddr,
    tcp: SocketAddr,
}

async fn start(upstreams: Vec<SocketAddr>, timeout: Duration) -> Running {
    start_with(upstreams, timeout, None).await
}

async fn start_with(
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    dns64_prefix: Option<std::net::Ipv6Addr>,
) -> Running {
    let udp = UdpSocket::bind("[::1]:0").await.unwrap();
    let tcp = TcpListener::bind("[::1]:0").await.unwrap();
    let (udp_addr, tcp_addr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    let cfg = DnsConfig {
        domain: "cluster.local".into(),
        upstreams,
        upstream_timeout: timeout,
        dns64_prefix,
    };
    let (handle, server) = serve(cfg, udp, tcp).await.unwrap();
    Running {
        handle,
        server,
        udp: udp_addr,
        tcp: tcp_addr,
    }
}

fn message(id: u16, name: &str, qtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message
}

/// One UDP query; checks that id and question come back as sent.
async fn query(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let socket = UdpSocket::bind("[::1]:0").await.unwrap();
    socket.connect(server).await.unwrap();
    let id = 0x4a4a ^ (name.len() as u16);
    let sent = message(id, name, qtype);
    socket.send(&sent.to_vec().unwrap()).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("server answered within 5 s")
        .unwrap();
    let answer = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(answer.metadata.id, id);
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    // The question comes back as asked, letter case included (on the wire
    // every name is absolute, so the trailing dot is not compared).
    assert_eq!(answer.queries.len(), 1);
    let (got, want) = (&answer.queries[0], &sent.queries[0]);
    assert_eq!(
        got.name().to_string().trim_end_matches('.'),
        want.name().to_string().trim_end_matches('.')
    );
    assert_eq!(
        (got.query_type(), got.query_class()),
        (want.query_type(), want.query_class())
    );
    answer
}

async fn query_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let bytes = message(7, name, qtype).to_vec().unwrap();
    stream.write_u16(bytes.len() as u16).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn data(answer: &Message) -> Vec<RData> {
    answer.answers.iter().map(|r| r.data.clone()).collect()
}

fn aaaa(ip: &str) -> RData {
    RData::AAAA(AAAA(ip.parse().unwrap()))
}

fn name(n: &str) -> Name {
    Name::from_ascii(n).unwrap()
}

fn snapshot() -> Records {
    let services: Vec<Service> = serde_json::from_value(serde_json::json!([
        {"metadata": {"name": "web", "namespace": "default"},
         "spec": {"clusterIP": "fd01::20", "clusterIPs": ["fd01::20"],
                  "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
        {"metadata": {"name": "pg", "namespace": "db"},
         "spec": {"clusterIP": "None", "ports": [{"name": "sql", "port": 5432}]}},
    ]))
    .unwrap();
    let slices: Vec<EndpointSlice> = serde_json::from_value(serde_json::json!([
        {"metadata": {"name": "pg-x", "namespace": "db",
                      "labels": {"kubernetes.io/service-name": "pg"}},
         "addressType": "IPv6",
         "endpoints": [
            {"addresses": ["fd00::5"], "hostname": "pg-0", "conditions": {"ready": true}},
            {"addresses": ["fd00::6"], "hostname": "pg-1"},
            {"addresses": ["fd00:0:0:1::7"], "hostname": "pg-2"},
            {"addresses": ["fd00::8"], "conditions": {"ready": false}},
         ],
         "ports": [{"name": "sql", "port": 5432, "protocol": "TCP"}]},
    ]))
    .unwrap();
    let pods: Vec<Pod> = serde_json::from_value(serde_json::json!([
        {"metadata": {"name": "client", "namespace": "default"},
         "spec": {"containers": []},
         "status": {"phase": "Running", "podIP": "fd00::9", "podIPs": [{"ip": "fd00::9"}]}},
    ]))
    .unwrap();
    Records::build("cluster.local", &services, &slices, &pods)
}

async fn with_snapshot() -> Running {
    let running = start(Vec::new(), Duration::from_secs(2)).await;
    running.handle.update(snapshot());
    running
}

#[tokio::test]
async fn service_aaaa_is_its_cluster_ip_with_a_5s_ttl() {
    let dns = with_snapshot().await;
    let answer = query(dns.udp, "Web.Default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.metadata.authoritative);
    assert_eq!(data(&answer), vec![aaaa("fd01::20")]);
    assert_eq!(answer.answers[0].ttl, 5);
    // The owner name comes back spelled as asked (0x20-randomising resolvers check it).
    assert_eq!(
        answer.answers[0].name.to_string(),
        "Web.Default.svc.cluster.local."
    );
    dns.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_query_for_a_cluster_name_is_empty_noerror_with_soa() {
    let dns = with_snapshot().await;
    let answer = query(dns.udp, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.answers.is_empty());
    assert_eq!(answer.authorities.len(), 1);
    assert_eq!(answer.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(answer.authorities[0].name, name("cluster.local."));
}

#[tokio::test]
async fn srv_of_a_named_port_points_at_the_service() {
    let dns = with_snapshot().await;
    let answer = query(
        dns.udp,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(
        data(&answer),
        vec![RData::SRV(SRV::new(
            0,
            100,
            80,
            name("web.default.svc.cluster.local.")
        ))]
    );
    let additional: Vec<&Record> = answer
        .additionals
        .iter()
        .filter(|r| r.record_type() == RecordType::AAAA)
        .collect();
    assert_eq!(additional.len(), 1);
    assert_eq!(additional[0].data, aaaa("fd01::20"));
}

#[tokio::test]
async fn ptr_names_a_service_ip_and_a_pod_ip() {
    let dns = with_snapshot().await;
    let reverse = |ip: &str| Name::from(ip.parse::<IpAddr>().unwrap()).to_string();
    let service = query(dns.udp, &reverse("fd01::20"), RecordType::PTR).await;
    assert_eq!(
        data(&service),
        vec![RData::PTR(PTR(name("web.default.svc.cluster.local.")))]
    );
    let pod = query(dns.udp, &reverse("fd00::9"), RecordType::PTR).await;
    assert_eq!(
        data(&pod),
        vec![RData::PTR(PTR(name("fd00--9.default.pod.cluster.local.")))]
    );
    let endpoint = query(dns.udp, &reverse("fd00::5"), RecordType::PTR).await;
    assert_eq!(
        data(&endpoint),
        vec![RData::PTR(PTR(name("pg-0.pg.db.svc.cluster.local.")))]
    );
    let pod_name = query(
        dns.udp,
        "fd00--9.default.pod.cluster.local.",
        RecordType::AAAA,
    )
    .await;
    assert_eq!(data(&pod_name), vec![aaaa("fd00::9")]);
}

#[tokio::test]
async fn unknown_cluster_name_is_nxdomain() {
    let dns = with_snapshot().await;
    let answer = query(dns.udp, "nope.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    assert!(answer.metadata.authoritative);
    assert!(answer.answers.is_empty());
    assert_eq!(answer.authorities[0].record_type(), RecordType::SOA);
    // Not forwarded: there are no upstreams, which would have been SERVFAIL.
}

#[tokio::test]
async fn headless_service_answers_every_ready_endpoint() {
    let dns = with_snapshot().await;
    let answer = query(dns.udp, "pg.db.svc.cluster.local", RecordType::AAAA).await;
    let mut got = data(&answer);
    got.sort_by_key(|d| format!("{d:?}"));
    assert_eq!(
        got,
        vec![aaaa("fd00:0:0:1::7"), aaaa("fd00::5"), aaaa("fd00::6")]
    );
    let host = query(dns.udp, "pg-1.pg.db.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(data(&host), vec![aaaa("fd00::6")]);
    let srv = query(
        dns.udp,
        "_sql._tcp.pg.db.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(srv.answers.len(), 3);
    // The same answers over TCP.
    let tcp = query_tcp(dns.tcp, "pg.db.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(tcp.answers.len(), 3);
}

#[tokio::test]
async fn update_takes_effect_for_the_next_query() {
    let dns = start(Vec::new(), Duration::from_secs(2)).await;
    let before = query(dns.udp, "web.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(before.metadata.response_code, ResponseCode::NXDomain);
    dns.handle.update(snapshot());
    let after = query(dns.udp, "web.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(data(&after), vec![aaaa("fd01::20")]);
    dns.handle.update(Records::default());
    let gone = query(dns.udp, "web.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
}

/// A tiny upstream: answers every AAAA query with 2001:db8::1 over UDP,
/// or, when `truncate` is set, with an empty truncated UDP answer and the
/// full one over TCP on the same port.
async fn fake_upstream(truncate: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    let listener = TcpListener::bind(addr).await.unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let answer = |query: &Message, truncated: bool| {
        let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
        reply.metadata.recursion_desired = query.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.add_queries(query.queries.clone());
        if truncated {
            reply.metadata.truncation = true;
        } else {
            let q = &query.queries[0];
            reply.add_answer(Record::from_rdata(
                q.name().clone(),
                300,
                RData::AAAA(AAAA("2001:db8::1".parse().unwrap())),
            ));
        }
        reply.to_vec().unwrap()
    };
    let udp_count = count.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            udp_count.fetch_add(1, Ordering::SeqCst);
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let _ = socket.send_to(&answer(&query, truncate), from).await;
        }
    });
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let Ok(len) = stream.read_u16().await else {
                continue;
            };
            let mut buf = vec![0u8; len as usize];
            if stream.read_exact(&mut buf).await.is_err() {
                continue;
            }
            let Ok(query) = Message::from_vec(&buf) else {
                continue;
            };
            let reply = answer(&query, false);
            let _ = stream.write_u16(reply.len() as u16).await;
            let _ = stream.write_all(&reply).await;
        }
    });
    (addr, count)
}

#[tokio::test]
async fn external_name_is_answered_through_the_upstream() {
    let (upstream, count) = fake_upstream(false).await;
    let dns = start(vec![upstream], Duration::from_secs(2)).await;
    let answer = query(dns.udp, "Example.ORG.", RecordType::AAAA).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(!answer.metadata.authoritative);
    assert!(answer.metadata.recursion_available);
    assert_eq!(data(&answer), vec![aaaa("2001:db8::1")]);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn external_name_with_edns_keeps_edns_in_the_answer() {
    let (upstream, _) = fake_upstream(false).await;
    let dns = start(vec![upstream], Duration::from_secs(2)).await;
    let socket = UdpSocket::bind("[::1]:0").await.unwrap();
    let mut sent = message(99, "example.org.", RecordType::AAAA);
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    sent.set_edns(edns);
    socket
        .send_to(&sent.to_vec().unwrap(), dns.udp)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(answer.metadata.id, 99);
    assert!(answer.edns.is_some());
    assert_eq!(data(&answer), vec![aaaa("2001:db8::1")]);
}

#[tokio::test]
async fn truncated_upstream_answer_is_asked_again_over_tcp() {
    let (upstream, _) = fake_upstream(true).await;
    let dns = start(vec![upstream], Duration::from_secs(2)).await;
    let answer = query(dns.udp, "big.example.org.", RecordType::AAAA).await;
    assert!(!answer.metadata.truncation);
    assert_eq!(data(&answer), vec![aaaa("2001:db8::1")]);
}

#[tokio::test]
async fn dead_first_upstream_falls_through_to_the_next() {
    let closed = {
        let socket = std::net::UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        socket.local_addr().unwrap()
    };
    let (upstream, _) = fake_upstream(false).await;
    let dns = start(vec![closed, upstream], Duration::from_secs(2)).await;
    let started = Instant::now();
    let answer = query(dns.udp, "example.org.", RecordType::AAAA).await;
    assert_eq!(data(&answer), vec![aaaa("2001:db8::1")]);
    // The closed port is refused at once: no waiting out its share of the time.
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn blackholed_upstream_gives_servfail_within_the_timeout() {
    // A bound socket that never answers.
    let blackhole = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let dns = start(
        vec![blackhole.local_addr().unwrap()],
        Duration::from_secs(2),
    )
    .await;
    let started = Instant::now();
    let answer = query(dns.udp, "example.org.", RecordType::AAAA).await;
    let took = started.elapsed();
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert!(
        took >= Duration::from_millis(1900),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "hung: {took:?}");
}

#[tokio::test]
async fn closed_upstream_port_gives_servfail_at_once() {
    let closed = {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket.local_addr().unwrap()
    };
    let dns = start(vec![closed], Duration::from_secs(2)).await;
    let started = Instant::now();
    let answer = query(dns.udp, "example.org.", RecordType::AAAA).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn names_outside_the_domain_are_not_answered_from_cluster_records() {
    // `svc.cluster.local.example.org.` contains the domain's labels but is
    // not under it: it goes upstream.
    let (upstream, count) = fake_upstream(false).await;
    let dns = start(vec![upstream], Duration::from_secs(2)).await;
    dns.handle.update(snapshot());
    let answer = query(
        dns.udp,
        "web.default.svc.cluster.local.example.org.",
        RecordType::AAAA,
    )
    .await;
    assert_eq!(data(&answer), vec![aaaa("2001:db8::1")]);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn load_run_reports_rate_and_latency() {
    let dns = with_snapshot().await;
    let names = [
        name("web.default.svc.cluster.local."),
        name("pg.db.svc.cluster.local."),
    ];
    let report = selur_dns::load::run(
        dns.udp,
        &names,
        RecordType::AAAA,
        2000,
        4,
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    println!("cluster names over UDP: {report}");
    assert_eq!(report.answered + report.failed, 2000);
}

#[tokio::test]
async fn own_address_as_upstream_is_skipped_not_looped() {
    let udp = UdpSocket::bind("[::1]:0").await.unwrap();
    let tcp = TcpListener::bind("[::1]:0").await.unwrap();
    let own = udp.local_addr().unwrap();
    let cfg = DnsConfig {
        domain: "cluster.local".into(),
        upstreams: vec![own],
        upstream_timeout: Duration::from_secs(2),
        dns64_prefix: None,
    };
    let (_handle, server) = serve(cfg, udp, tcp).await.unwrap();
    let started = Instant::now();
    let answer = query(own, "example.org.", RecordType::AAAA).await;
    // No upstream left: SERVFAIL at once rather than a storm of queries
    // to ourselves for two seconds.
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_millis(500));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn zone_transfer_is_refused() {
    let dns = with_snapshot().await;
    let answer = query_tcp(dns.tcp, "cluster.local.", RecordType::AXFR).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn soa_of_the_domain_is_answered() {
    let dns = with_snapshot().await;
    let answer = query(dns.udp, "cluster.local.", RecordType::SOA).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answer.answers.len(), 1);
    assert_eq!(answer.answers[0].record_type(), RecordType::SOA);
}

#[tokio::test]
async fn upstream_answers_with_another_id_or_question_are_ignored() {
    // A spoofer's answers first (wrong id, then wrong question), the real
    // one after: only the real one may reach the client.
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let upstream = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let reply = |id: u16, qname: &Name, ip: &str| {
                let mut reply = Message::response(id, query.metadata.op_code);
                reply.add_query(Query::query(qname.clone(), RecordType::AAAA));
                reply.add_answer(Record::from_rdata(
                    qname.clone(),
                    60,
                    RData::AAAA(AAAA(ip.parse().unwrap())),
                ));
                reply.to_vec().unwrap()
            };
            let asked = query.queries[0].name().clone();
            let id = query.metadata.id;
            let other = name("evil.example.");
            for bytes in [
                reply(id.wrapping_add(1), &asked, "2001:db8::bad"),
                reply(id, &other, "2001:db8::bad"),
                reply(id, &asked, "2001:db8::1"),
            ] {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    let dns = start(vec![upstream], Duration::from_secs(2)).await;
    let answer = query(dns.udp, "example.org.", RecordType::AAAA).await;
    assert_eq!(data(&answer), vec![aaaa("2001:db8::1")]);
}

/// An upstream that knows only IPv4: A 192.0.2.7 for every name, an empty
/// NOERROR answer for AAAA.
async fn ipv4_only_upstream() -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
            reply.metadata.recursion_available = true;
            reply.add_queries(query.queries.clone());
            let q = &query.queries[0];
            if q.query_type() == RecordType::A {
                reply.add_answer(Record::from_rdata(
                    q.name().clone(),
                    120,
                    RData::A(hickory_proto::rr::rdata::A("192.0.2.7".parse().unwrap())),
                ));
            }
            let _ = socket.send_to(&reply.to_vec().unwrap(), from).await;
        }
    });
    addr
}

#[tokio::test]
async fn dns64_synthesizes_aaaa_from_a_only_when_asked_to() {
    let upstream = ipv4_only_upstream().await;
    let dns = start_with(
        vec![upstream],
        Duration::from_secs(2),
        Some("64:ff9b::".parse().unwrap()),
    )
    .await;
    let answer = query(dns.udp, "v4only.example.", RecordType::AAAA).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(data(&answer), vec![aaaa("64:ff9b::c000:207")]);
    // Cluster names are never synthesized, A queries pass through as they are.
    let a = query(dns.udp, "v4only.example.", RecordType::A).await;
    assert_eq!(a.answers.len(), 1);
    // Without a prefix: the empty answer as the upstream gave it.
    let plain = start(vec![upstream], Duration::from_secs(2)).await;
    let answer = query(plain.udp, "v4only.example.", RecordType::AAAA).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.answers.is_empty());
}
