//! Forwarding: our own query for the client's question to the configured servers, UDP with TCP
//! on truncation, failover between servers, and one deadline that always ends in an answer.
//!
//! Each UDP exchange uses a fresh socket on a random port with a random id, and an answer must
//! repeat our question: an off-path attacker has to guess both to poison the cache.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::answer::OUR_UDP_SIZE;
use super::wire::{self, flag, rcode, rtype, AnswerInfo, HEADER_LEN};
use crate::metrics::Metrics;

/// How to reach an upstream server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Udp,
    Tcp,
}

/// One configured upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub addr: SocketAddr,
    pub protocol: Protocol,
}

/// An upstream server address that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerAddrError {
    #[error("\"{text}\": {scheme}:// upstreams are not supported yet; use udp:// or tcp://")]
    NotYet { text: String, scheme: String },
    #[error("\"{text}\": unknown scheme {scheme}://")]
    Scheme { text: String, scheme: String },
    #[error("\"{0}\": expected IP:PORT (names are not resolved, to avoid a loop)")]
    Address(String),
}

impl ServerAddr {
    /// Parses `udp://1.2.3.4:53`, `tcp://[::1]:53` or a bare `1.2.3.4[:53]`.
    pub fn parse(text: &str) -> Result<ServerAddr, ServerAddrError> {
        let (text, scheme) = (text.to_string(), |s: &str| s.to_string());
        let (protocol, rest) = match text.split_once("://") {
            Some(("udp", rest)) => (Protocol::Udp, rest),
            Some(("tcp", rest)) => (Protocol::Tcp, rest),
            Some((s @ ("tls" | "https"), _)) => {
                let scheme = scheme(s);
                return Err(ServerAddrError::NotYet { text, scheme });
            }
            Some((s, _)) => {
                let scheme = scheme(s);
                return Err(ServerAddrError::Scheme { text, scheme });
            }
            None => (Protocol::Udp, text.as_str()),
        };
        let addr = rest
            .parse::<SocketAddr>()
            .or_else(|_| {
                rest.parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
            .map_err(|_| ServerAddrError::Address(text.clone()))?;
        Ok(ServerAddr { addr, protocol })
    }

    fn label(&self) -> String {
        let scheme = match self.protocol {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        };
        format!("{scheme}://{}", self.addr)
    }
}

/// Why no usable answer came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("no upstream answered within the timeout")]
    Timeout,
    #[error("every upstream failed")]
    Failed,
    #[error("too many upstream exchanges in flight")]
    Busy,
}

struct Server {
    addr: ServerAddr,
    ok: IntCounter,
    rcode_error: IntCounter,
    timeout: IntCounter,
    error: IntCounter,
    duration: Histogram,
}

/// The configured upstream servers.
pub struct Upstreams {
    servers: Vec<Server>,
    timeout: Duration,
    /// The server that answered last: tried first next time.
    preferred: AtomicUsize,
    /// Exchanges in flight, and at most how many (`limits.upstream_max_in_flight`); a query past
    /// the cap fails at once and is counted in `shed`.
    in_flight: AtomicUsize,
    max_in_flight: usize,
    shed: IntCounter,
}

/// A usable upstream answer.
pub struct Answer {
    pub bytes: Vec<u8>,
    pub info: AnswerInfo,
}

enum Attempt {
    Good(Answer),
    /// SERVFAIL or REFUSED: kept in case no server does better.
    Poor(Answer),
    Failed,
    TimedOut,
}

impl Upstreams {
    pub fn new(addrs: Vec<ServerAddr>, timeout: Duration, metrics: &Metrics) -> Self {
        let servers = addrs
            .into_iter()
            .map(|addr| {
                let label = addr.label();
                let result = |r: &str| metrics.upstream_requests.with_label_values(&[&label, r]);
                Server {
                    ok: result("ok"),
                    rcode_error: result("rcode_error"),
                    timeout: result("timeout"),
                    error: result("error"),
                    duration: metrics.upstream_duration.with_label_values(&[&label]),
                    addr,
                }
            })
            .collect();
        Upstreams {
            servers,
            timeout,
            preferred: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: usize::MAX,
            shed: metrics.upstream_shed.clone(),
        }
    }

    /// At most `max` exchanges in flight.
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// Asks the servers, preferred first, for `question` (name, type, class as the client sent
    /// them), within the one deadline.
    pub async fn resolve(
        &self,
        question: &[u8],
        query_flags: u16,
        dnssec_ok: bool,
    ) -> Result<Answer, UpstreamError> {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.shed.inc();
            return Err(UpstreamError::Busy);
        }
        let _slot = InFlight(&self.in_flight);
        let deadline = Instant::now() + self.timeout;
        let n = self.servers.len();
        let first = self.preferred.load(Ordering::Relaxed) % n.max(1);
        let mut fallback = None;
        let mut timed_out = false;
        for k in 0..n {
            let i = (first + k) % n;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                timed_out = true;
                break;
            }
            // Leave the servers still to try a fair share of what is left.
            let budget = left / (n - k) as u32;
            match self
                .attempt(&self.servers[i], question, query_flags, dnssec_ok, budget)
                .await
            {
                Attempt::Good(answer) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(answer);
                }
                Attempt::Poor(answer) => fallback = Some(answer),
                Attempt::TimedOut => timed_out = true,
                Attempt::Failed => {}
            }
        }
        match fallback {
            Some(answer) => Ok(answer),
            None if timed_out => Err(UpstreamError::Timeout),
            None => Err(UpstreamError::Failed),
        }
    }

    async fn attempt(
        &self,
        server: &Server,
        question: &[u8],
        flags: u16,
        dnssec_ok: bool,
        budget: Duration,
    ) -> Attempt {
        let started = Instant::now();
        let id = rand::random::<u16>();
        let query = build_query(id, question, flags, dnssec_ok);
        let exchange = async {
            match server.addr.protocol {
                Protocol::Udp => match exchange_udp(server.addr.addr, &query, id, question).await {
                    Ok(a) if a.info.truncated => {
                        exchange_tcp(server.addr.addr, &query, id, question).await
                    }
                    other => other,
                },
                Protocol::Tcp => exchange_tcp(server.addr.addr, &query, id, question).await,
            }
        };
        let result = tokio::time::timeout(budget, exchange).await;
        server.duration.observe(started.elapsed().as_secs_f64());
        match result {
            Err(_) => {
                server.timeout.inc();
                Attempt::TimedOut
            }
            Ok(Err(e)) => {
                tracing::debug!(upstream = %server.addr.label(), "upstream exchange failed: {e}");
                server.error.inc();
                Attempt::Failed
            }
            Ok(Ok(answer)) if matches!(answer.info.rcode, rcode::SERVFAIL | rcode::REFUSED) => {
                server.rcode_error.inc();
                Attempt::Poor(answer)
            }
            Ok(Ok(answer)) => {
                server.ok.inc();
                Attempt::Good(answer)
            }
        }
    }
}

/// One exchange's place under the in-flight cap, given back when it is dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Our query: a new id, RD, AD (so that a validating upstream says whether it validated, RFC
/// 6840 §5.7; the answer's AD reaches a client only when it asked) and the client's CD bit, the
/// client's question, and an OPT record with our UDP size and the client's DO bit.
fn build_query(id: u16, question: &[u8], client_flags: u16, dnssec_ok: bool) -> Vec<u8> {
    let mut q = Vec::with_capacity(HEADER_LEN + question.len() + 11);
    q.extend_from_slice(&id.to_be_bytes());
    let flags = flag::RD | flag::AD | (client_flags & flag::CD);
    q.extend_from_slice(&flags.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
    q.extend_from_slice(question);
    q.push(0);
    q.extend_from_slice(&rtype::OPT.to_be_bytes());
    q.extend_from_slice(&OUR_UDP_SIZE.to_be_bytes());
    q.extend_from_slice(&(if dnssec_ok { 0x8000u32 } else { 0 }).to_be_bytes());
    q.extend_from_slice(&0u16.to_be_bytes());
    q
}

async fn exchange_udp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    question: &[u8],
) -> std::io::Result<Answer> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    // We offer OUR_UDP_SIZE, so a larger datagram is not an answer to us; a small buffer per
    // exchange keeps hundreds of exchanges in flight cheap.
    let mut buf = [0u8; OUR_UDP_SIZE as usize + 1];
    loop {
        let n = socket.recv(&mut buf).await?;
        // A truncated answer may carry no question at all (RFC 2181 §9 lets a server drop
        // every section): our id, QR and TC are enough to know TCP must follow.
        if wire::truncated_without_question(&buf[..n], id) {
            return Ok(Answer {
                bytes: buf[..n].to_vec(),
                info: AnswerInfo {
                    truncated: true,
                    ..AnswerInfo::default()
                },
            });
        }
        // Anything that is not the answer to our question (late, spoofed) is ignored.
        if let Ok(info) = wire::inspect_answer(&buf[..n], id, question) {
            return Ok(Answer {
                bytes: buf[..n].to_vec(),
                info,
            });
        }
    }
}

async fn exchange_tcp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    question: &[u8],
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    let info = wire::inspect_answer(&buf, id, question)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(Answer { bytes: buf, info })
}
