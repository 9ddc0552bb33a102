//! Forwarding names outside the cluster to the node's resolvers.
//!
//! The client's query goes out as it came (same question, same EDNS), under
//! a fresh random id from a fresh ephemeral port, to each upstream in order
//! until one gives a usable answer; a truncated UDP answer is asked again
//! over TCP. The whole exchange is bounded by one deadline, so a client
//! gets SERVFAIL in time when every upstream is down or silent.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::LowerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

/// Why no upstream gave an answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No upstream resolvers are configured.
    #[error("no upstream resolvers")]
    NoUpstreams,
    /// The deadline passed before any upstream answered.
    #[error("no upstream answered within {0:?}")]
    Timeout(Duration),
    /// Talking to one upstream failed (the last one tried).
    #[error("upstream {upstream}: {source}")]
    Io {
        /// The upstream's address.
        upstream: SocketAddr,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// An upstream's answer did not decode.
    #[error("upstream {upstream} sent an undecodable answer: {reason}")]
    Decode {
        /// The upstream's address.
        upstream: SocketAddr,
        /// The decoder's message.
        reason: String,
    },
    /// The query is too short to carry a DNS header.
    #[error("query shorter than a DNS header")]
    ShortQuery,
}

/// Sends `query` (a client's query as received) to `upstreams` in order and
/// returns the first usable answer, its id set back to the client's.
///
/// SERVFAIL and REFUSED answers move on to the next upstream; the last such
/// answer is returned when no upstream does better. Gives up at `timeout`
/// after the call, whatever the number of upstreams: each upstream gets an
/// equal share of the time left when its turn comes, so one blackholed
/// resolver does not eat the time of the others.
pub async fn forward(
    upstreams: &[SocketAddr],
    query: &[u8],
    questions: &[Query],
    timeout: Duration,
) -> Result<Message, ForwardError> {
    if query.len() < 12 {
        return Err(ForwardError::ShortQuery);
    }
    if upstreams.is_empty() {
        return Err(ForwardError::NoUpstreams);
    }
    let client_id = u16::from_be_bytes([query[0], query[1]]);
    let deadline = Instant::now() + timeout;
    let mut last_answer = None;
    let mut last_error = ForwardError::Timeout(timeout);
    for (i, &upstream) in upstreams.iter().enumerate() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let left = u32::try_from(upstreams.len() - i).unwrap_or(u32::MAX);
        let turn_deadline = now + (deadline - now) / left;
        let id = random_id();
        let mut outgoing = query.to_vec();
        outgoing[..2].copy_from_slice(&id.to_be_bytes());
        let asked = timeout_at(
            turn_deadline,
            exchange(upstream, &outgoing, id, questions, deadline),
        )
        .await;
        match asked {
            Ok(Ok(mut answer)) => {
                answer.metadata.id = client_id;
                match answer.metadata.response_code {
                    ResponseCode::ServFail | ResponseCode::Refused => {
                        last_answer = Some(answer);
                    }
                    _ => return Ok(answer),
                }
            }
            Ok(Err(error)) => {
                tracing::debug!(%upstream, %error, "upstream failed");
                last_error = error;
            }
            Err(_) => {
                tracing::debug!(%upstream, "upstream did not answer in time");
                last_error = ForwardError::Timeout(timeout);
            }
        }
    }
    last_answer.ok_or(last_error)
}

/// One upstream: UDP, then TCP if the UDP answer was truncated (the TCP
/// try may use the time up to `deadline`, the whole exchange's, since a
/// truncated answer shows the upstream is alive).
async fn exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    questions: &[Query],
    deadline: Instant,
) -> Result<Message, ForwardError> {
    let answer = udp(upstream, query, id, questions).await?;
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    match timeout_at(deadline, tcp(upstream, query, id, questions)).await {
        Ok(Ok(full)) => Ok(full),
        Ok(Err(error)) => {
            tracing::debug!(%upstream, %error, "TCP retry after truncation failed");
            Ok(answer)
        }
        Err(_) => Ok(answer),
    }
}

async fn udp(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    questions: &[Query],
) -> Result<Message, ForwardError> {
    let io_error = |source| ForwardError::Io { upstream, source };
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(io_error)?;
    socket.connect(upstream).await.map_err(io_error)?;
    socket.send(query).await.map_err(io_error)?;
    let mut buf = vec![0u8; 65_535];
    loop {
        // A connected socket only hears from the upstream; a closed port
        // comes back as ConnectionRefused at once.
        let n = socket.recv(&mut buf).await.map_err(io_error)?;
        let Ok(answer) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if answers(&answer, id, questions) {
            return Ok(answer);
        }
    }
}

async fn tcp(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    questions: &[Query],
) -> Result<Message, ForwardError> {
    let io_error = |source| ForwardError::Io { upstream, source };
    let length = u16::try_from(query.len())
        .map_err(|_| io_error(io::Error::other("query longer than 65535 bytes")))?;
    let mut stream = TcpStream::connect(upstream).await.map_err(io_error)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(io_error)?;
    loop {
        let length = stream.read_u16().await.map_err(io_error)?;
        let mut buf = vec![0u8; usize::from(length)];
        stream.read_exact(&mut buf).await.map_err(io_error)?;
        let answer = Message::from_vec(&buf).map_err(|e| ForwardError::Decode {
            upstream,
            reason: e.to_string(),
        })?;
        if answers(&answer, id, questions) {
            return Ok(answer);
        }
    }
}

/// Whether `answer` is the response to our query: same id, same question.
fn answers(answer: &Message, id: u16, questions: &[Query]) -> bool {
    answer.metadata.id == id
        && answer.metadata.message_type == MessageType::Response
        && answer.queries.len() == questions.len()
        && answer.queries.iter().zip(questions).all(|(a, q)| {
            LowerName::new(a.name()) == LowerName::new(q.name())
                && a.query_type() == q.query_type()
                && a.query_class() == q.query_class()
        })
}

/// A random query id: std's hasher keys are random per `RandomState`, which
/// is enough against off-path guessing here without a random-number crate.
fn random_id() -> u16 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x5e1u64);
    let bits = hasher.finish();
    (bits ^ (bits >> 16) ^ (bits >> 32) ^ (bits >> 48)) as u16
}
