//! Recursive mode (`upstream.mode = "recursive"`): a cache miss is resolved from the root
//! servers with hickory's recursor (hickory-resolver's `recursor` feature) instead of being
//! forwarded. Only that step changes: the question goes in as the client's bytes and the answer
//! comes out as a DNS message with our id and that question, like a forwarder's answer, so the
//! cache, the CNAME checks against policy and the answer code are the same in both modes.
//!
//! [`Source`] is what the handler asks on a cache miss: the forwarder or the recursor, chosen
//! once at start.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::TrustAnchors;
use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::{Record, RecordType};
use hickory_resolver::proto::serialize::binary::BinDecodable;
use hickory_resolver::recursor::{
    DnssecConfig, DnssecPolicy, Recursor, RecursorError, RecursorOptions,
};
use ipnet::IpNet;
use prometheus::{Histogram, IntCounter};
use tokio::net::UdpSocket;

use super::answer::{self, OUR_UDP_SIZE};
use super::upstream::{Answer, UpstreamError, Upstreams};
use super::wire::{self, rcode};
use crate::metrics::Metrics;

/// RFC 8914 "DNSSEC Bogus".
const EDE_DNSSEC_BOGUS: u16 = 6;
/// How long a root hint has to answer the priming query at start.
const PRIMING_TIMEOUT: Duration = Duration::from_secs(1);
/// Answers the recursor keeps itself (delegations, glue, the steps of CNAME chains); the
/// answers clients get are kept in Cordon's own cache.
const RECURSOR_CACHE_ENTRIES: u64 = 65_536;

/// The root servers' addresses (IANA's root hints, named.root of 2024), used when the config
/// names none.
pub const IANA_ROOT_HINTS: [IpAddr; 26] = [
    IpAddr::V4(Ipv4Addr::new(198, 41, 0, 4)),
    IpAddr::V4(Ipv4Addr::new(170, 247, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(192, 33, 4, 12)),
    IpAddr::V4(Ipv4Addr::new(199, 7, 91, 13)),
    IpAddr::V4(Ipv4Addr::new(192, 203, 230, 10)),
    IpAddr::V4(Ipv4Addr::new(192, 5, 5, 241)),
    IpAddr::V4(Ipv4Addr::new(192, 112, 36, 4)),
    IpAddr::V4(Ipv4Addr::new(198, 97, 190, 53)),
    IpAddr::V4(Ipv4Addr::new(192, 36, 148, 17)),
    IpAddr::V4(Ipv4Addr::new(192, 58, 128, 30)),
    IpAddr::V4(Ipv4Addr::new(193, 0, 14, 129)),
    IpAddr::V4(Ipv4Addr::new(199, 7, 83, 42)),
    IpAddr::V4(Ipv4Addr::new(202, 12, 27, 33)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x503, 0xba3e, 0, 0, 0, 0x2, 0x30)),
    IpAddr::V6(Ipv6Addr::new(0x2801, 0x1b8, 0x10, 0, 0, 0, 0, 0xb)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x2, 0, 0, 0, 0, 0xc)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x2d, 0, 0, 0, 0, 0xd)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0xa8, 0, 0, 0, 0, 0xe)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x2f, 0, 0, 0, 0, 0xf)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x12, 0, 0, 0, 0, 0xd0d)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x1, 0, 0, 0, 0, 0x53)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x7fe, 0, 0, 0, 0, 0, 0x53)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x503, 0xc27, 0, 0, 0, 0x2, 0x30)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x7fd, 0, 0, 0, 0, 0, 0x1)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x9f, 0, 0, 0, 0, 0x42)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdc3, 0, 0, 0, 0, 0, 0x35)),
];

/// What recursive mode is configured with (`[upstream]`).
#[derive(Debug, Clone)]
pub struct RecursiveSettings {
    /// The root hints: the servers asked first, on port 53.
    pub roots: Vec<IpAddr>,
    /// Validate DNSSEC from the trust anchor down.
    pub dnssec: bool,
    /// A file of DNSKEY records to trust instead of IANA's root keys.
    pub trust_anchor: Option<PathBuf>,
    /// Networks that may be asked although hickory's defaults refuse them (loopback, private).
    pub allow_servers: Vec<IpNet>,
    /// One deadline for a whole resolution.
    pub timeout: Duration,
}

/// A recursive-mode setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecursiveError {
    #[error("upstream.root_hints: \"{0}\" is not an IP address")]
    RootHint(String),
    #[error("upstream.root_hints_file {path}: {error}")]
    RootHintsFile { path: PathBuf, error: String },
    #[error("upstream.root_hints and upstream.root_hints_file: give one of them, not both")]
    BothHints,
    #[error("upstream.trust_anchor needs upstream.dnssec = true")]
    TrustAnchorWithoutDnssec,
    #[error("upstream.trust_anchor {path}: {error}")]
    TrustAnchor { path: PathBuf, error: String },
    #[error("upstream.{0} applies to recursive mode only (upstream.mode = \"recursive\")")]
    RecursiveOnly(&'static str),
    #[error("upstream.servers: recursive mode asks the root servers; name no servers, or use upstream.mode = \"forward\"")]
    Servers,
    #[error("the recursor cannot start: {0}")]
    Start(String),
}

/// The addresses of a root hints file: every A and AAAA record's address (named.root, or any
/// zone-file text), in order, without repeats. Comments (`;`) are skipped.
pub fn parse_root_hints(text: &str) -> Vec<IpAddr> {
    let mut roots = Vec::new();
    for line in text.lines() {
        let line = line.split(';').next().unwrap_or_default();
        let tokens: Vec<&str> = line.split_whitespace().collect();
        for pair in tokens.windows(2) {
            if pair[0].eq_ignore_ascii_case("A") || pair[0].eq_ignore_ascii_case("AAAA") {
                if let Ok(ip) = pair[1].parse::<IpAddr>() {
                    if !roots.contains(&ip) {
                        roots.push(ip);
                    }
                }
            }
        }
    }
    roots
}

/// Reads a root hints file.
pub fn read_root_hints(path: &Path) -> Result<Vec<IpAddr>, RecursiveError> {
    let error = |error: String| RecursiveError::RootHintsFile {
        path: path.to_path_buf(),
        error,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let roots = parse_root_hints(&text);
    if roots.is_empty() {
        return Err(error("no A or AAAA record".into()));
    }
    Ok(roots)
}

/// Reads a trust anchor: a file of DNSKEY records in zone-file form (`. IN DNSKEY 257 3 ...`).
pub fn read_trust_anchor(path: &Path) -> Result<TrustAnchors, RecursiveError> {
    let error = |error: String| RecursiveError::TrustAnchor {
        path: path.to_path_buf(),
        error,
    };
    let anchors = TrustAnchors::from_file(path).map_err(|e| error(e.to_string()))?;
    if anchors.is_empty() {
        return Err(error("no DNSKEY record".into()));
    }
    Ok(anchors)
}

/// Where a cache miss is answered from, chosen once at start.
pub enum Source {
    Forward(Upstreams),
    Recursive(Recursive),
}

impl From<Upstreams> for Source {
    fn from(upstreams: Upstreams) -> Source {
        Source::Forward(upstreams)
    }
}

impl From<Recursive> for Source {
    fn from(recursive: Recursive) -> Source {
        Source::Recursive(recursive)
    }
}

impl Source {
    /// An answer for `question` (name, type, class as the client sent them).
    pub async fn resolve(
        &self,
        question: &[u8],
        query_flags: u16,
        dnssec_ok: bool,
    ) -> Result<Answer, UpstreamError> {
        match self {
            Source::Forward(upstreams) => upstreams.resolve(question, query_flags, dnssec_ok).await,
            Source::Recursive(recursive) => recursive.resolve(question, dnssec_ok).await,
        }
    }
}

/// The recursor, with the same in-flight cap and metrics as the forwarder (its series are
/// labelled `upstream="recursive"`).
pub struct Recursive {
    recursor: Arc<Recursor<TokioRuntimeProvider>>,
    validating: bool,
    timeout: Duration,
    /// Resolutions in flight, those still running past their deadline included.
    in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
    shed: IntCounter,
    ok: IntCounter,
    rcode_error: IntCounter,
    timed_out: IntCounter,
    error: IntCounter,
    duration: Histogram,
}

/// What one resolution came to.
enum Outcome {
    /// An answer or a negative answer, with whether every answer record was validated.
    Answer {
        code: ResponseCode,
        answers: Vec<Record>,
        authorities: Vec<Record>,
        secure: bool,
    },
    /// Data that failed DNSSEC validation: never served.
    Bogus,
}

impl Recursive {
    /// Primes the root hints (RFC 8109: a hint that does not answer `. NS` is left out until
    /// restart, unless none answers) and builds the recursor.
    pub async fn new(
        settings: RecursiveSettings,
        metrics: &Metrics,
    ) -> Result<Recursive, RecursiveError> {
        let roots = prime(&settings.roots).await;
        let options = RecursorOptions {
            allow_server: settings.allow_servers.clone(),
            response_cache_size: RECURSOR_CACHE_ENTRIES,
            case_randomization: true,
            ..RecursorOptions::default()
        };
        let policy = if settings.dnssec {
            let mut config = DnssecConfig::default();
            if let Some(path) = &settings.trust_anchor {
                config.trust_anchor = Some(Arc::new(read_trust_anchor(path)?));
            }
            DnssecPolicy::ValidateWithStaticKey(config)
        } else {
            DnssecPolicy::SecurityUnaware
        };
        let recursor = Recursor::new(
            &roots,
            policy,
            None,
            options,
            TokioRuntimeProvider::default(),
        )
        .map_err(|e| RecursiveError::Start(e.to_string()))?;
        let result = |r: &str| {
            metrics
                .upstream_requests
                .with_label_values(&["recursive", r])
        };
        Ok(Recursive {
            recursor: Arc::new(recursor),
            validating: settings.dnssec,
            timeout: settings.timeout,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: usize::MAX,
            shed: metrics.upstream_shed.clone(),
            ok: result("ok"),
            rcode_error: result("rcode_error"),
            timed_out: result("timeout"),
            error: result("error"),
            duration: metrics.upstream_duration.with_label_values(&["recursive"]),
        })
    }

    /// At most `max` resolutions in flight.
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// Resolves `question` from the root, within the one deadline.
    pub async fn resolve(&self, question: &[u8], dnssec_ok: bool) -> Result<Answer, UpstreamError> {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.shed.inc();
            return Err(UpstreamError::Busy);
        }
        let slot = Slot(self.in_flight.clone());
        let Ok(query) = Query::from_bytes(question) else {
            self.error.inc();
            return Err(UpstreamError::Failed);
        };
        let started = Instant::now();
        // The recursion runs as a task of its own, holding its place under the cap: past our
        // deadline it goes on to the end, so the recursor still learns which servers failed (a
        // dropped future would not) and keeps what it found for the next asker.
        let recursor = self.recursor.clone();
        let asked = query.clone();
        let task = tokio::spawn(async move {
            let _slot = slot;
            recursor.resolve(asked, Instant::now(), dnssec_ok).await
        });
        let result = tokio::time::timeout(self.timeout, task).await;
        self.duration.observe(started.elapsed().as_secs_f64());
        let outcome = match result {
            Err(_) => {
                self.timed_out.inc();
                return Err(UpstreamError::Timeout);
            }
            Ok(Err(_)) => {
                self.error.inc();
                return Err(UpstreamError::Failed);
            }
            Ok(Ok(result)) => self.outcome(result),
        };
        let id = rand::random::<u16>();
        let bytes = match outcome {
            Some(Outcome::Answer {
                code,
                answers,
                authorities,
                secure,
            }) => encode(id, query, code, secure, answers, authorities, dnssec_ok),
            Some(Outcome::Bogus) => Some(bogus(id, question, dnssec_ok)),
            None => None,
        };
        let Some(bytes) = bytes else {
            self.error.inc();
            return Err(UpstreamError::Failed);
        };
        let Ok(info) = wire::inspect_answer(&bytes, id, question) else {
            self.error.inc();
            return Err(UpstreamError::Failed);
        };
        if matches!(info.rcode, rcode::SERVFAIL | rcode::REFUSED) {
            self.rcode_error.inc();
        } else {
            self.ok.inc();
        }
        Ok(Answer { bytes, info })
    }

    /// What the recursor's result means for the asker; `None` when no server gave an answer.
    fn outcome(&self, result: Result<Message, RecursorError>) -> Option<Outcome> {
        match result {
            Ok(message) => Some(self.checked(message)),
            Err(RecursorError::Net(NetError::Dns(DnsError::Nsec {
                response, proof, ..
            }))) => {
                if proof.is_bogus() {
                    Some(Outcome::Bogus)
                } else {
                    Some(self.checked((*response).into_message()))
                }
            }
            Err(RecursorError::Net(NetError::Dns(DnsError::DnssecBogus))) => Some(Outcome::Bogus),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                let code = if e.is_nx_domain() {
                    ResponseCode::NXDomain
                } else {
                    ResponseCode::NoError
                };
                let authorities = e
                    .into_soa()
                    .map(|soa| vec![soa.into_record_of_rdata()])
                    .unwrap_or_default();
                Some(Outcome::Answer {
                    code,
                    answers: Vec::new(),
                    authorities,
                    secure: false,
                })
            }
            Err(e) => {
                tracing::debug!("recursion failed: {e}");
                None
            }
        }
    }

    /// A message from the recursor, refused when validation found it bogus.
    fn checked(&self, message: Message) -> Outcome {
        let signed = |r: &&Record| r.record_type() != RecordType::RRSIG;
        if self.validating
            && message
                .answers
                .iter()
                .chain(&message.authorities)
                .any(|r| r.proof.is_bogus())
        {
            return Outcome::Bogus;
        }
        let secure = self.validating
            && message.answers.iter().filter(signed).count() > 0
            && message
                .answers
                .iter()
                .filter(signed)
                .all(|r| r.proof.is_secure());
        Outcome::Answer {
            code: message.metadata.response_code,
            answers: message.answers,
            authorities: message.authorities,
            secure,
        }
    }
}

/// One resolution's place under the in-flight cap, given back when it is dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The answer as a forwarder's upstream would send it: our id, QR, RD and RA, AD when every
/// answer record was validated, the question, the answer and authority sections (additional
/// records are never passed on) and an OPT record with our UDP size and the client's DO bit.
fn encode(
    id: u16,
    query: Query,
    code: ResponseCode,
    secure: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    dnssec_ok: bool,
) -> Option<Vec<u8>> {
    let mut message = Message::new(id, MessageType::Response, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.metadata.recursion_available = true;
    message.metadata.authentic_data = secure;
    message.metadata.response_code = code;
    message.add_query(query);
    // Owner names lose the random letter case of our queries (0x20), which servers echo.
    let lower = |mut records: Vec<Record>| {
        for r in &mut records {
            r.name = r.name.to_lowercase();
        }
        records
    };
    message.answers = lower(answers);
    message.authorities = lower(authorities);
    let mut edns = Edns::new();
    edns.set_max_payload(OUR_UDP_SIZE);
    edns.set_dnssec_ok(dnssec_ok);
    message.set_edns(edns);
    message.to_vec().ok()
}

/// SERVFAIL with EDE 6 for data that failed validation.
fn bogus(id: u16, question: &[u8], dnssec_ok: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let edns = wire::Edns {
        udp_size: OUR_UDP_SIZE,
        dnssec_ok,
        version: 0,
        options: (0, 0),
    };
    answer::error(
        &mut out,
        id,
        wire::flag::RD,
        u16::from(rcode::SERVFAIL),
        question,
        Some(edns),
        Some((EDE_DNSSEC_BOGUS, "DNSSEC validation failed")),
    );
    out
}

/// The hints that answer a priming query (`. NS`, RFC 8109) within a second; all of them when
/// none does, so that a resolver started while offline still works once the network is back.
async fn prime(hints: &[IpAddr]) -> Vec<IpAddr> {
    let probes = hints
        .iter()
        .map(|&ip| async move { (ip, answers_priming(ip).await) });
    let results = futures_util::future::join_all(probes).await;
    let alive: Vec<IpAddr> = results
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(ip, _)| *ip)
        .collect();
    for (ip, ok) in &results {
        if !ok {
            tracing::warn!("root hint {ip} did not answer the priming query");
        }
    }
    if alive.is_empty() {
        tracing::warn!("no root hint answered the priming query; keeping them all");
        return hints.to_vec();
    }
    alive
}

async fn answers_priming(ip: IpAddr) -> bool {
    let exchange = async {
        let bind: SocketAddr = if ip.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(bind).await?;
        socket.connect(SocketAddr::new(ip, 53)).await?;
        let id = rand::random::<u16>();
        let mut query = id.to_be_bytes().to_vec();
        // no RD; one question: the root, NS, IN
        query.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1]);
        socket.send(&query).await?;
        let mut buf = [0u8; 512];
        loop {
            let n = socket.recv(&mut buf).await?;
            if n >= wire::HEADER_LEN
                && wire::read_u16(&buf, 0) == id
                && wire::read_u16(&buf, 2) & wire::flag::QR != 0
            {
                return Ok::<bool, std::io::Error>(true);
            }
        }
    };
    matches!(
        tokio::time::timeout(PRIMING_TIMEOUT, exchange).await,
        Ok(Ok(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_hints_file_gives_every_address_once() {
        let text = "; formerly NS.INTERNIC.NET\n\
            .                        3600000      NS    A.ROOT-SERVERS.NET.\n\
            A.ROOT-SERVERS.NET.      3600000      A     198.41.0.4\n\
            A.ROOT-SERVERS.NET.      3600000      AAAA  2001:503:ba3e::2:30\n\
            B.ROOT-SERVERS.NET.      3600000      a     127.0.53.1 ; a comment A 1.2.3.4\n\
            A.ROOT-SERVERS.NET.      3600000      A     198.41.0.4\n";
        assert_eq!(
            parse_root_hints(text),
            vec![
                "198.41.0.4".parse::<IpAddr>().unwrap(),
                "2001:503:ba3e::2:30".parse().unwrap(),
                "127.0.53.1".parse().unwrap(),
            ]
        );
        assert!(parse_root_hints("; nothing\n. NS a.root.\n").is_empty());
    }

    #[test]
    fn the_built_in_hints_are_ianas_thirteen_servers_on_both_families() {
        assert_eq!(IANA_ROOT_HINTS.iter().filter(|ip| ip.is_ipv4()).count(), 13);
        assert_eq!(IANA_ROOT_HINTS.iter().filter(|ip| ip.is_ipv6()).count(), 13);
    }
}
