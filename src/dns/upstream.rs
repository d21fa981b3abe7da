//! Forwarding: our own query for the client's question to the configured servers, UDP with TCP
//! on truncation, DoT or DoH, failover between servers, and one deadline that always ends in an
//! answer.
//!
//! UDP exchanges go over a few long-lived sockets a server ([`UdpPool`], `upstream_udp.rs`), each
//! on a random port and replaced after a random number of uses, with a random id unique on its
//! socket, and an answer must repeat our id and question: an off-path attacker has to guess the
//! port, the id and the question to poison the cache.
//!
//! A DoT or DoH server (`tls://`, `https://`) is reached through hickory-net's client streams
//! over one long-lived connection per server ([`Link`]), made on the first query and made again
//! after it fails. Our query bytes become hickory's `Message` only there, and the answer comes
//! back as the bytes the server sent.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use hickory_net::runtime::iocompat::{AsyncIoStdAsTokio, AsyncIoTokioAsStd};
use hickory_net::runtime::{RuntimeProvider, Spawn, TokioRuntimeProvider};
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::{BufDnsStreamHandle, DnsExchange, DnsHandle, DnsMultiplexer};
use hickory_net::NetError;
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Message};
use prometheus::{Histogram, IntCounter};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::answer::OUR_UDP_SIZE;
use super::upstream_udp::UdpPool;
use super::wire::{self, flag, rcode, rtype, AnswerInfo, HEADER_LEN};
use crate::metrics::Metrics;

/// How to reach an upstream server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Udp,
    Tcp,
    /// DNS over TLS (RFC 7858).
    Tls,
    /// DNS over HTTPS (RFC 8484), HTTP/2.
    Https,
}

/// The DoH path when an `https://` server names none.
pub const DEFAULT_DOH_PATH: &str = "/dns-query";

/// One configured upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    /// `tls://`, `https://`: the name the server's certificate must be valid for (what follows
    /// `#`, else the address). Empty for UDP and TCP.
    pub tls_name: String,
    /// `https://`: the DoH path. Empty for the others.
    pub path: String,
}

/// An upstream server address that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerAddrError {
    #[error("\"{text}\": unknown scheme {scheme}:// (use udp://, tcp://, tls:// or https://)")]
    Scheme { text: String, scheme: String },
    #[error("\"{0}\": expected IP:PORT (names are not resolved, to avoid a loop)")]
    Address(String),
    #[error(
        "\"{0}\": expected an IP address (names are not resolved, to avoid a loop) and the \
         certificate's name after #, as in {1}"
    )]
    EncryptedAddress(String, &'static str),
    #[error("\"{text}\": \"{name}\" is not a valid TLS server name")]
    Name { text: String, name: String },
    #[error("\"{0}\": only tls:// and https:// servers take a name after #")]
    NameNotUsed(String),
    #[error(
        "\"{0}\": a DoH path starts with / and has no query string (https://IP/dns-query#NAME)"
    )]
    Path(String),
}

impl ServerAddr {
    /// Parses `udp://1.2.3.4:53`, `tcp://[::1]:53`, a bare `1.2.3.4[:53]`,
    /// `tls://1.2.3.4[:853][#name]` or `https://1.2.3.4[:443][/dns-query][#name]`.
    pub fn parse(text: &str) -> Result<ServerAddr, ServerAddrError> {
        let (protocol, rest) = match text.split_once("://") {
            Some(("udp", rest)) => (Protocol::Udp, rest),
            Some(("tcp", rest)) => (Protocol::Tcp, rest),
            Some(("tls", rest)) => (Protocol::Tls, rest),
            Some(("https", rest)) => (Protocol::Https, rest),
            Some((s, _)) => {
                return Err(ServerAddrError::Scheme {
                    text: text.to_string(),
                    scheme: s.to_string(),
                });
            }
            None => (Protocol::Udp, text),
        };
        let (rest, name) = match rest.split_once('#') {
            Some((rest, name)) => (rest, Some(name)),
            None => (rest, None),
        };
        let (host, path) = match (protocol, rest.find('/')) {
            (Protocol::Https, Some(at)) => (&rest[..at], &rest[at..]),
            (Protocol::Https, None) => (rest, DEFAULT_DOH_PATH),
            _ => (rest, ""),
        };
        let (port, example) = match protocol {
            Protocol::Udp | Protocol::Tcp => (53, ""),
            Protocol::Tls => (853, "tls://9.9.9.9:853#dns.quad9.net"),
            Protocol::Https => (443, "https://9.9.9.9/dns-query#dns.quad9.net"),
        };
        let encrypted = !example.is_empty();
        if name.is_some() && !encrypted {
            return Err(ServerAddrError::NameNotUsed(text.to_string()));
        }
        if path.contains(['?', ' ', '#']) {
            return Err(ServerAddrError::Path(text.to_string()));
        }
        let addr = host
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| {
                let ip = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
                let ip = ip.unwrap_or(host).parse::<IpAddr>().ok()?;
                Some(SocketAddr::new(ip, port))
            })
            .ok_or_else(|| {
                if encrypted {
                    ServerAddrError::EncryptedAddress(text.to_string(), example)
                } else {
                    ServerAddrError::Address(text.to_string())
                }
            })?;
        let tls_name = match name {
            Some(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if name.is_empty() || ServerName::try_from(name.as_str()).is_err() {
                    return Err(ServerAddrError::Name {
                        text: text.to_string(),
                        name,
                    });
                }
                name
            }
            None if encrypted => addr.ip().to_string(),
            None => String::new(),
        };
        Ok(ServerAddr {
            addr,
            protocol,
            tls_name,
            path: path.to_string(),
        })
    }

    /// How metrics and logs name the server: `udp://1.2.3.4:53`, `tls://1.2.3.4:853#name`,
    /// `https://1.2.3.4:443/dns-query#name`.
    pub fn label(&self) -> String {
        match self.protocol {
            Protocol::Udp => format!("udp://{}", self.addr),
            Protocol::Tcp => format!("tcp://{}", self.addr),
            Protocol::Tls => format!("tls://{}#{}", self.addr, self.tls_name),
            Protocol::Https => format!("https://{}{}#{}", self.addr, self.path, self.tls_name),
        }
    }

    /// Whether the server is reached over TLS (DoT, DoH).
    pub fn encrypted(&self) -> bool {
        matches!(self.protocol, Protocol::Tls | Protocol::Https)
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
    /// `addr.label()`, for logs.
    label: String,
    ok: IntCounter,
    rcode_error: IntCounter,
    timeout: IntCounter,
    error: IntCounter,
    duration: Histogram,
    /// DoT and DoH: the connection, kept between queries.
    link: Option<Link>,
    /// UDP: the sockets, kept between queries.
    udp: Option<UdpPool>,
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
    /// What DoT and DoH servers' certificates are verified against ([`Upstreams::with_tls`]);
    /// the system's roots when unset.
    tls: OnceLock<Arc<rustls::ClientConfig>>,
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
                    link: addr.encrypted().then(Link::default),
                    udp: (addr.protocol == Protocol::Udp)
                        .then(|| UdpPool::new(addr.addr, metrics.upstream_unmatched.clone())),
                    label,
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
            tls: OnceLock::new(),
        }
    }

    /// Verifies DoT and DoH servers' certificates with `config` (its roots; ALPN is set here).
    pub fn with_tls(self, config: Arc<rustls::ClientConfig>) -> Self {
        let _ = self.tls.set(config);
        self
    }

    /// Whether any server is reached over TLS.
    pub fn any_encrypted(&self) -> bool {
        self.servers.iter().any(|s| s.link.is_some())
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
        let mut query = build_query(id, question, flags, dnssec_ok);
        if let Some(link) = &server.link {
            return self
                .attempt_encrypted(server, link, &query, question, budget)
                .await;
        }
        let exchange = async {
            match &server.udp {
                // The pool picks the id; TCP after truncation asks again with the same query.
                Some(pool) => match pool.exchange(&mut query, question).await {
                    Ok((_, info)) if info.truncated => {
                        let id = wire::read_u16(&query, 0);
                        exchange_tcp(server.addr.addr, &query, id, question).await
                    }
                    Ok((bytes, info)) => Ok(Answer { bytes, info }),
                    Err(e) => Err(e),
                },
                // (DoT and DoH went through their link above)
                None => exchange_tcp(server.addr.addr, &query, id, question).await,
            }
        };
        let result = tokio::time::timeout(budget, exchange).await;
        server.duration.observe(started.elapsed().as_secs_f64());
        Self::judge(server, result)
    }

    /// Counts an exchange's outcome and says what it is worth.
    fn judge(
        server: &Server,
        result: Result<std::io::Result<Answer>, tokio::time::error::Elapsed>,
    ) -> Attempt {
        match result {
            Err(_) => {
                server.timeout.inc();
                Attempt::TimedOut
            }
            Ok(Err(e)) => {
                tracing::debug!(upstream = %server.label, "upstream exchange failed: {e}");
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

impl Upstreams {
    /// One DoT or DoH exchange within `budget`, over the server's connection (made now if
    /// there is none). A connection that was already open and fails is made again once within
    /// the budget: servers close idle connections.
    async fn attempt_encrypted(
        &self,
        server: &Server,
        link: &Link,
        query: &[u8],
        question: &[u8],
        budget: Duration,
    ) -> Attempt {
        let started = Instant::now();
        let sent_at = millis();
        let exchange = async {
            for again in [false, true] {
                let (conn, fresh) = self.connection(server, link).await?;
                match conn.exchange(query, question).await {
                    Ok(answer) => return Ok(answer),
                    Err(e) => {
                        link.forget(&conn);
                        if fresh || again {
                            return Err(e);
                        }
                        tracing::debug!(upstream = %server.label, "connection failed, making it again: {e}");
                    }
                }
            }
            unreachable!("the second try returns")
        };
        let result = tokio::time::timeout(budget, exchange).await;
        server.duration.observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            link.forget_if_silent(sent_at);
        }
        Self::judge(server, result)
    }

    /// The server's connection, and whether it was made for this query. Queries that find none
    /// wait for one connection attempt; after a failed attempt the server is skipped (an error
    /// at once) for [`RECONNECT_BACKOFF`], so a server that is down or whose certificate is
    /// wrong costs one handshake and one log line a second, not one per query.
    async fn connection(&self, server: &Server, link: &Link) -> std::io::Result<(Arc<Conn>, bool)> {
        if let Some(conn) = link.conn.load_full() {
            return Ok((conn, false));
        }
        let _turn = link.connecting.lock().await;
        if let Some(conn) = link.conn.load_full() {
            return Ok((conn, false));
        }
        if millis() < link.retry_at.load(Ordering::Relaxed) {
            return Err(std::io::Error::other(
                "connection failed less than a second ago",
            ));
        }
        match self.connect(&server.addr).await {
            Ok((exchange, runtime)) => {
                let conn = Arc::new(Conn {
                    exchange,
                    _runtime: runtime,
                    answered_at: AtomicU64::new(millis()),
                });
                link.conn.store(Some(conn.clone()));
                tracing::debug!(upstream = %server.label, "connected");
                Ok((conn, true))
            }
            Err(e) => {
                link.retry_at.store(
                    millis() + RECONNECT_BACKOFF.as_millis() as u64,
                    Ordering::Relaxed,
                );
                tracing::warn!(upstream = %server.label, "cannot connect to upstream: {e}");
                Err(std::io::Error::other(e.to_string()))
            }
        }
    }

    /// A new TLS connection (and for DoH, HTTP/2 on it) to `addr`, its certificate verified for
    /// `addr.tls_name`, and the runtime handle whose tasks drive it (they end when it is
    /// dropped).
    async fn connect(
        &self,
        addr: &ServerAddr,
    ) -> Result<(DnsExchange<TokioRuntimeProvider>, TokioRuntimeProvider), NetError> {
        let roots = self.tls.get_or_init(|| {
            let roots = crate::tls::system_roots();
            Arc::new(crate::tls::client_config_with(roots))
        });
        let mut config = rustls::ClientConfig::clone(roots);
        let provider = TokioRuntimeProvider::default();
        let runtime = provider.clone();
        match addr.protocol {
            Protocol::Https => {
                config.alpn_protocols = vec![b"h2".to_vec()];
                hickory_net::h2::HttpsClientStream::builder(Arc::new(config), provider)
                    .exchange(
                        addr.addr,
                        addr.tls_name.as_str().into(),
                        addr.path.as_str().into(),
                    )
                    .await
                    .map(|exchange| (exchange, runtime))
            }
            _ => {
                config.alpn_protocols = vec![b"dot".to_vec()];
                let name = ServerName::try_from(addr.tls_name.clone())
                    .map_err(|e| NetError::from(e.to_string()))?;
                // hickory's tls_exchange, with queues as deep as our in-flight cap: its own
                // (32) overflow under load, and a write that does not fit fails the query.
                let depth = self.max_in_flight.clamp(32, 16_384);
                let tcp = provider
                    .connect_tcp(addr.addr, None, Some(self.timeout))
                    .await?;
                let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(name, AsyncIoStdAsTokio(tcp))
                    .await?;
                let (handle, outbound) = BufDnsStreamHandle::with_buffer_size(addr.addr, depth);
                let stream = hickory_net::tcp::TcpStream::from_stream_with_receiver(
                    AsyncIoTokioAsStd(tls),
                    addr.addr,
                    outbound,
                );
                let multiplexer = DnsMultiplexer::new(TcpClientStream::from_stream(stream), handle)
                    .with_timeout(self.timeout)
                    .with_max_active_requests(depth);
                let (exchange, background) = DnsExchange::from_stream(multiplexer);
                provider.create_handle().spawn_bg(background);
                Ok((exchange, runtime))
            }
        }
    }
}

/// How long a DoT or DoH server is skipped after a connection attempt failed.
const RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// A DoT or DoH server's connection, kept between queries.
#[derive(Default)]
struct Link {
    conn: ArcSwapOption<Conn>,
    /// Held while a connection is being made, so that queries arriving meanwhile wait for it.
    connecting: tokio::sync::Mutex<()>,
    /// [`millis`] before which no new connection is attempted.
    retry_at: AtomicU64,
}

impl Link {
    /// Drops `conn` unless another query has replaced it already. Exchanges in flight on it
    /// finish; the next query makes a new connection.
    fn forget(&self, conn: &Arc<Conn>) {
        let current = self.conn.load();
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            self.conn.compare_and_swap(&*current, None);
        }
    }

    /// After a timeout: drops the connection if it has answered nothing since `sent_at` (a
    /// server gone silent); a server that is only slow to answer one question keeps it.
    fn forget_if_silent(&self, sent_at: u64) {
        if let Some(conn) = self.conn.load_full() {
            if conn.answered_at.load(Ordering::Relaxed) < sent_at {
                self.forget(&conn);
            }
        }
    }
}

/// One open DoT or DoH connection: hickory's exchange, which multiplexes queries on it.
struct Conn {
    exchange: DnsExchange<TokioRuntimeProvider>,
    /// Holds the tasks that drive the connection: dropping it ends them.
    _runtime: TokioRuntimeProvider,
    /// [`millis`] of the last answer (or of the connection).
    answered_at: AtomicU64,
}

impl Conn {
    /// Sends our query and reads the answer's bytes as the server sent them. DoH's id is 0
    /// (RFC 8484 §4.1) and hickory's DoT multiplexer sets its own and matches the answer to it,
    /// so the answer is checked against its own id and our question.
    async fn exchange(&self, query: &[u8], question: &[u8]) -> std::io::Result<Answer> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let message = Message::from_vec(query).map_err(|e| invalid(e.to_string()))?;
        let request = DnsRequest::new(message, DnsRequestOptions::default());
        let response = match self.exchange.send(request).next().await {
            Some(Ok(response)) => response,
            Some(Err(e)) => return Err(std::io::Error::other(e.to_string())),
            None => return Err(std::io::Error::other("the connection gave no answer")),
        };
        self.answered_at.store(millis(), Ordering::Relaxed);
        let bytes = response.into_buffer();
        let id = wire::read_u16(&bytes, 0);
        let info =
            wire::inspect_answer(&bytes, id, question).map_err(|e| invalid(e.to_string()))?;
        Ok(Answer { bytes, info })
    }
}

/// Milliseconds since the first call: the clock of [`Link`] and [`Conn`].
fn millis() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
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

#[cfg(test)]
mod tests {
    use super::{Protocol, ServerAddr, ServerAddrError};

    fn parse(text: &str) -> ServerAddr {
        ServerAddr::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn encrypted_servers_parse_with_their_defaults_and_labels() {
        let dot = parse("tls://192.0.2.53#DNS.Example.");
        assert_eq!(dot.protocol, Protocol::Tls);
        assert_eq!(dot.addr, "192.0.2.53:853".parse().unwrap());
        assert_eq!(dot.tls_name, "dns.example");
        assert_eq!(dot.label(), "tls://192.0.2.53:853#dns.example");
        // no name: the certificate must be valid for the address
        let dot = parse("tls://[2001:db8::53]:8853");
        assert_eq!(dot.addr, "[2001:db8::53]:8853".parse().unwrap());
        assert_eq!(dot.tls_name, "2001:db8::53");
        let doh = parse("https://192.0.2.53#dns.example");
        assert_eq!(doh.protocol, Protocol::Https);
        assert_eq!(doh.addr, "192.0.2.53:443".parse().unwrap());
        assert_eq!(doh.path, "/dns-query");
        assert_eq!(doh.label(), "https://192.0.2.53:443/dns-query#dns.example");
        let doh = parse("https://[::1]:8443/resolve#dns.example");
        assert_eq!(doh.addr, "[::1]:8443".parse().unwrap());
        assert_eq!(doh.path, "/resolve");
        assert!(doh.encrypted() && !parse("192.0.2.53").encrypted());
        assert_eq!(parse("tcp://[::1]").addr, "[::1]:53".parse().unwrap());
    }

    #[test]
    fn malformed_encrypted_servers_say_what_is_wrong() {
        let err = |text: &str| ServerAddr::parse(text).unwrap_err();
        assert!(matches!(
            err("tls://dns.example:853"),
            ServerAddrError::EncryptedAddress(..)
        ));
        assert!(matches!(
            err("https://dns.example/dns-query"),
            ServerAddrError::EncryptedAddress(..)
        ));
        assert!(matches!(
            err("https://192.0.2.1/dns-query{?dns}#x.example"),
            ServerAddrError::Path(_)
        ));
        assert!(matches!(
            err("https://192.0.2.1/q?dns=1#x.example"),
            ServerAddrError::Path(_)
        ));
        assert!(matches!(
            err("tcp://192.0.2.1#x.example"),
            ServerAddrError::NameNotUsed(_)
        ));
        assert!(matches!(
            err("tls://192.0.2.1#a..b"),
            ServerAddrError::Name { .. }
        ));
        assert!(matches!(
            err("doq://192.0.2.1"),
            ServerAddrError::Scheme { .. }
        ));
    }
}
