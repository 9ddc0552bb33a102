//! The DNS server: hickory-server's listeners around our request handler,
//! which answers cluster names from the current [`Records`] and forwards
//! the rest.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::forward::forward;
use crate::records::{fqdn, Lookup, Records, TTL};

/// How long a TCP client may stay idle between queries.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses buffered per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// The largest UDP answer we send to an EDNS client (the 2020 DNS flag
/// day's value, which avoids IP fragmentation).
const MAX_UDP_PAYLOAD: u16 = 1232;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// The cluster domain, `cluster.local`; answered here, never forwarded.
    pub domain: String,
    /// The node's resolvers (from /etc/resolv.conf, either family), tried in
    /// order for every other name.
    pub upstreams: Vec<SocketAddr>,
    /// How long a forwarded query may take in all before the client gets
    /// SERVFAIL (2 s is what the agent uses).
    pub upstream_timeout: Duration,
    /// A NAT64 /96 prefix (RFC 6052, e.g. `64:ff9b::`): names outside the
    /// cluster with only IPv4 addresses get AAAA records synthesized from
    /// their A records (DNS64), so IPv6-only pods reach them through the
    /// operator's NAT64. `None`: no synthesis.
    pub dns64_prefix: Option<std::net::Ipv6Addr>,
}

impl DnsConfig {
    /// `cluster.local`-style config with the usual 2 s upstream timeout.
    pub fn new(domain: impl Into<String>, upstreams: Vec<SocketAddr>) -> Self {
        DnsConfig {
            domain: domain.into(),
            upstreams,
            upstream_timeout: Duration::from_secs(2),
            dns64_prefix: None,
        }
    }
}

/// Why the server did not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The configured cluster domain is not a DNS name.
    #[error("cluster domain {domain:?} is not a valid DNS name: {source}")]
    InvalidDomain {
        /// The domain as configured.
        domain: String,
        /// The parser's complaint.
        #[source]
        source: hickory_proto::ProtoError,
    },
    /// A listener failed.
    #[error("DNS server failed: {0}")]
    Server(#[from] hickory_server::net::NetError),
    /// The server task panicked or was cancelled.
    #[error("DNS server task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The snapshot queries are answered from: records and the SOA whose serial
/// counts the updates.
#[derive(Debug)]
struct Zone {
    records: Records,
    soa: Record,
}

struct Shared {
    domain: LowerName,
    domain_name: Name,
    upstreams: Vec<SocketAddr>,
    upstream_timeout: Duration,
    dns64_prefix: Option<std::net::Ipv6Addr>,
    zone: RwLock<Arc<Zone>>,
}

impl Shared {
    fn current(&self) -> Arc<Zone> {
        // A poisoned lock still holds a whole Arc: writers only swap it.
        self.zone
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Pushes new records into a running server; cheap to clone.
#[derive(Clone)]
pub struct DnsHandle {
    shared: Arc<Shared>,
}

impl DnsHandle {
    /// Replaces the records every later query is answered from. Queries in
    /// flight finish with the records they started with.
    pub fn update(&self, records: Records) {
        let mut zone = self
            .shared
            .zone
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let serial = match &zone.soa.data {
            RData::SOA(soa) => soa.serial.wrapping_add(1),
            _ => initial_serial(),
        };
        let soa = soa_record(&self.shared.domain_name, serial);
        *zone = Arc::new(Zone { records, soa });
    }
}

impl std::fmt::Debug for DnsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsHandle")
            .field("domain", &self.shared.domain_name)
            .finish_non_exhaustive()
    }
}

/// The running server: stop it with [`DnsServer::shutdown`], or wait for it
/// to end with [`DnsServer::join`]. Dropping it leaves the server running
/// (its task is detached), as long as the runtime runs.
#[derive(Debug)]
pub struct DnsServer {
    task: JoinHandle<Result<(), hickory_server::net::NetError>>,
    shutdown: CancellationToken,
}

impl DnsServer {
    /// Stops accepting queries and waits for the listeners to end.
    pub async fn shutdown(self) -> Result<(), DnsError> {
        self.shutdown.cancel();
        self.join().await
    }

    /// Waits until the server ends (only after a shutdown or a socket
    /// failure).
    pub async fn join(self) -> Result<(), DnsError> {
        self.task.await??;
        Ok(())
    }
}

/// Starts answering on `udp` and `tcp` (the agent binds both on the cluster
/// DNS address, `[fd01::a]:53`), with no records until the first
/// [`DnsHandle::update`]: cluster names answer NXDOMAIN until then, other
/// names are forwarded from the start.
pub async fn serve(
    cfg: DnsConfig,
    udp: UdpSocket,
    tcp: TcpListener,
) -> Result<(DnsHandle, DnsServer), DnsError> {
    let domain_name = fqdn(&cfg.domain).map_err(|source| DnsError::InvalidDomain {
        domain: cfg.domain.clone(),
        source,
    })?;
    // Forwarding to ourselves would send every outside query round in a
    // loop until its deadline, each turn a new query: never do it.
    let own = [udp.local_addr().ok(), tcp.local_addr().ok()];
    let upstreams: Vec<SocketAddr> = cfg
        .upstreams
        .into_iter()
        .filter(|upstream| {
            let looped = own.contains(&Some(*upstream));
            if looped {
                tracing::warn!(%upstream, "upstream resolver is this DNS server; skipped");
            }
            !looped
        })
        .collect();
    let soa = soa_record(&domain_name, initial_serial());
    let shared = Arc::new(Shared {
        domain: LowerName::new(&domain_name),
        domain_name,
        upstreams,
        upstream_timeout: cfg.upstream_timeout,
        dns64_prefix: cfg.dns64_prefix,
        zone: RwLock::new(Arc::new(Zone {
            records: Records::default(),
            soa,
        })),
    });
    let mut server = Server::new(Handler {
        shared: shared.clone(),
    });
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
    let shutdown = server.shutdown_token().clone();
    let task = tokio::spawn(async move { server.block_until_done().await });
    Ok((DnsHandle { shared }, DnsServer { task, shutdown }))
}

/// Serials start from the clock so they keep rising across agent restarts.
fn initial_serial() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(secs & u64::from(u32::MAX)).unwrap_or(1)
}

fn soa_record(domain: &Name, serial: u32) -> Record {
    let label = |l: &str| domain.prepend_label(l).unwrap_or_else(|_| domain.clone());
    let mname = label("dns")
        .prepend_label("ns")
        .unwrap_or_else(|_| domain.clone());
    let rname = label("hostmaster");
    Record::from_rdata(
        domain.clone(),
        TTL,
        RData::SOA(SOA::new(mname, rname, serial, 7200, 1800, 86400, TTL)),
    )
}

struct Handler {
    shared: Arc<Shared>,
}

/// An authoritative answer, before encoding.
struct Authoritative<'a> {
    code: ResponseCode,
    answers: Vec<Record>,
    soa: Option<&'a Record>,
    additionals: Vec<&'a Record>,
}

impl Handler {
    /// The answer from our records, or None when the name is not ours (to
    /// be forwarded).
    fn authoritative<'z>(&self, zone: &'z Zone, query: &Query) -> Option<Authoritative<'z>> {
        let name = LowerName::new(query.name());
        let in_domain = self.shared.domain.zone_of(&name);
        if !in_domain && !zone.records.contains(&name) {
            return None;
        }
        let negative = |code| Authoritative {
            code,
            answers: Vec::new(),
            soa: in_domain.then_some(&zone.soa),
            additionals: Vec::new(),
        };
        if query.query_class() != DNSClass::IN && query.query_class() != DNSClass::ANY {
            return Some(negative(ResponseCode::Refused));
        }
        let qtype = query.query_type();
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            // No zone transfers: the records come from the agent's cache.
            return Some(negative(ResponseCode::Refused));
        }
        if name == self.shared.domain {
            return Some(match qtype {
                RecordType::SOA | RecordType::ANY => Authoritative {
                    code: ResponseCode::NoError,
                    answers: vec![zone.soa.clone()],
                    soa: None,
                    additionals: Vec::new(),
                },
                _ => negative(ResponseCode::NoError),
            });
        }
        Some(match zone.records.lookup(&name, qtype) {
            Lookup::Found {
                answers,
                additionals,
            } => Authoritative {
                code: ResponseCode::NoError,
                // Owner names as the client spelled them: resolvers that
                // randomise case (0x20) check that the answer matches.
                answers: answers
                    .into_iter()
                    .map(|r| {
                        let mut r = r.clone();
                        if LowerName::new(&r.name) == name {
                            r.name = query.name().clone();
                        }
                        r
                    })
                    .collect(),
                soa: None,
                additionals,
            },
            Lookup::NoData => negative(ResponseCode::NoError),
            Lookup::Unknown => negative(ResponseCode::NXDomain),
        })
    }
}

fn edns_for(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|theirs| {
        let mut ours = Edns::new();
        ours.set_max_payload(theirs.max_payload().clamp(512, MAX_UDP_PAYLOAD));
        ours.set_version(0);
        ours
    })
}

fn failed(request: &Request, code: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    mut response_handle: R,
    code: ResponseCode,
    edns: Option<&Edns>,
) -> ResponseInfo {
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(edns) = edns {
        builder.edns(edns);
    }
    let mut response = builder.error_msg(&request.metadata, code);
    response.metadata_mut().recursion_available = true;
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, "sending DNS error response failed");
            failed(request, code)
        }
    }
}

impl Handler {
    /// DNS64 (RFC 6147): an AAAA question answered without AAAA records
    /// (and no error) is asked again as A, and each A record becomes an
    /// AAAA record `prefix::a.b.c.d` with the same name and TTL.
    async fn synthesize_aaaa(
        &self,
        prefix: std::net::Ipv6Addr,
        query: &Query,
        answer: &mut hickory_proto::op::Message,
        left: Duration,
    ) {
        if query.query_type() != RecordType::AAAA
            || answer.metadata.response_code != ResponseCode::NoError
            || answer
                .answers
                .iter()
                .any(|r| r.record_type() == RecordType::AAAA)
            || left.is_zero()
        {
            return;
        }
        let a_query = Query::query(query.name().clone(), RecordType::A);
        let mut msg = hickory_proto::op::Message::query();
        msg.metadata.id = 0;
        msg.metadata.recursion_desired = true;
        msg.add_query(a_query.clone());
        let Ok(bytes) = msg.to_vec() else {
            return;
        };
        let Ok(a_answer) = forward(&self.shared.upstreams, &bytes, &[a_query], left).await else {
            return;
        };
        for r in &a_answer.answers {
            if let RData::A(a) = &r.data {
                let ip = dns64_address(prefix, a.0);
                answer.answers.push(Record::from_rdata(
                    r.name.clone(),
                    r.ttl,
                    RData::AAAA(hickory_proto::rr::rdata::AAAA(ip)),
                ));
            }
        }
    }
}

/// The IPv6 address of `v4` under a /96 NAT64 prefix.
pub fn dns64_address(prefix: std::net::Ipv6Addr, v4: std::net::Ipv4Addr) -> std::net::Ipv6Addr {
    let p = u128::from(prefix) & !0xffff_ffffu128;
    std::net::Ipv6Addr::from(p | u128::from(u32::from(v4)))
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let edns = edns_for(request);
        if request.metadata.op_code != OpCode::Query {
            return send_error(
                request,
                response_handle,
                ResponseCode::NotImp,
                edns.as_ref(),
            )
            .await;
        }
        let [query] = request.queries.queries() else {
            return send_error(
                request,
                response_handle,
                ResponseCode::FormErr,
                edns.as_ref(),
            )
            .await;
        };
        let query = query.original();
        let zone = self.shared.current();

        if let Some(answer) = self.authoritative(&zone, query) {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.authoritative = answer.code != ResponseCode::Refused;
            metadata.recursion_available = true;
            metadata.response_code = answer.code;
            let mut builder = MessageResponseBuilder::from_message_request(request);
            if let Some(edns) = &edns {
                builder.edns(edns);
            }
            let response = builder.build(
                metadata,
                answer.answers.iter(),
                std::iter::empty(),
                answer.soa,
                answer.additionals,
            );
            return match response_handle.send_response(response).await {
                Ok(info) => info,
                Err(error) => {
                    tracing::debug!(%error, "sending DNS response failed");
                    failed(request, answer.code)
                }
            };
        }

        let questions = [query.clone()];
        let started = std::time::Instant::now();
        let upstream = forward(
            &self.shared.upstreams,
            request.as_slice(),
            &questions,
            self.shared.upstream_timeout,
        )
        .await;
        let answer = match upstream {
            Ok(answer) => answer,
            Err(error) => {
                tracing::debug!(name = %query.name(), %error, "forwarding failed");
                return send_error(
                    request,
                    response_handle,
                    ResponseCode::ServFail,
                    edns.as_ref(),
                )
                .await;
            }
        };
        let mut answer = answer;
        if let Some(prefix) = self.shared.dns64_prefix {
            let left = self
                .shared
                .upstream_timeout
                .saturating_sub(started.elapsed());
            self.synthesize_aaaa(prefix, query, &mut answer, left).await;
        }
        let mut metadata = answer.metadata;
        metadata.id = request.metadata.id;
        metadata.authoritative = false;
        metadata.recursion_desired = request.metadata.recursion_desired;
        metadata.checking_disabled = request.metadata.checking_disabled;
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let response = builder.build(
            metadata,
            answer.answers.iter(),
            answer.authorities.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "sending forwarded DNS response failed");
                failed(request, answer.metadata.response_code)
            }
        }
    }
}
