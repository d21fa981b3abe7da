//! Test fixtures: an authoritative upstream (hickory-server, in-memory zone), Cordon started on
//! ephemeral ports with policies written to a temp dir, and a small DNS client over real sockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use hickory_server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use cordon::app::Running;
use cordon::config::{AdminToken, Config, Role, StaticEntry};

pub const ADMIN: &str = "test-admin-token";
pub const VIEWER: &str = "test-viewer-token";
pub const ADMIN2: &str = "test-second-admin-token";
pub const RESPONDER: &str = "test-responder-token";
pub const WEBHOOK: &str = "test-webhook-token";

/// An authoritative server for `test.` on 127.0.0.1 (UDP and TCP, same port).
pub struct Upstream {
    pub addr: SocketAddr,
    _server: Server<Catalog>,
}

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A(Ipv4Addr::from(ip))))
}

fn cname(owner: &str, target: &str) -> Record {
    Record::from_rdata(name(owner), 3600, RData::CNAME(CNAME(name(target))))
}

/// The zone every test resolves against.
pub fn test_zone() -> Vec<Record> {
    let mut records = vec![
        soa_record(60, 60),
        a("www.allowed.test.", 3600, [192, 0, 2, 1]),
        a("short.allowed.test.", 1, [192, 0, 2, 2]),
        a("evil.test.", 3600, [192, 0, 2, 66]),
        a("sub.evil.test.", 3600, [192, 0, 2, 67]),
        a("c2.test.", 3600, [192, 0, 2, 68]),
        a("tracker.ads.test.", 3600, [192, 0, 2, 16]),
        a("allowed-ad.ads.test.", 3600, [192, 0, 2, 17]),
        a("both.test.", 3600, [192, 0, 2, 18]),
        a("social.test.", 3600, [192, 0, 2, 40]),
        a("x.mdm.test.", 3600, [192, 0, 2, 50]),
        a("api.vendor.test.", 3600, [192, 0, 2, 51]),
        a("edge.cdnprovider.test.", 3600, [192, 0, 2, 52]),
        cname("cname.allowed.test.", "tracker.ads.test."),
        cname("cdn.mdm.test.", "edge.cdnprovider.test."),
        // allowed names of the isolation policy whose chains reach security categories: one hop
        // and two hops into malware, one hop into phishing (which only isolation checks)
        cname("one-hop.mdm.test.", "evil.test."),
        cname("two-hops.mdm.test.", "relay.cdnprovider.test."),
        cname("relay.cdnprovider.test.", "sub.evil.test."),
        cname("lure.mdm.test.", "login.phish.test."),
        a("login.phish.test.", 3600, [192, 0, 2, 70]),
    ];
    for i in 0..40 {
        let text = format!("record number {i:02} with some padding text");
        records.push(Record::from_rdata(
            name("big.allowed.test."),
            3600,
            RData::TXT(TXT::new(vec![text])),
        ));
    }
    records
}

pub async fn start_upstream() -> Upstream {
    start_upstream_with(test_zone()).await
}

/// A UDP socket and a TCP listener on the same free port. The port the kernel picks for UDP may
/// be taken for TCP (another test's connection), so try again until both bind.
async fn udp_and_tcp_on_one_port() -> (UdpSocket, TcpListener, SocketAddr) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp, addr);
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// Policies used by most tests, written into `dir`.
pub fn write_policies(dir: &Path) {
    let files: &[(&str, &str)] = &[
        (
            "categories.toml",
            r#"
[[category]]
id = 0
name = "malware"
lists = ["lists/malware.txt"]

[[category]]
id = 1
name = "phishing"
lists = ["lists/phishing.txt"]

[[category]]
id = 16
name = "ads"
lists = ["lists/ads.txt"]

[[category]]
id = 40
name = "social_networks"
lists = ["lists/social.txt"]
"#,
        ),
        (
            "lists/malware.txt",
            "# a hosts file and an adblock line\n0.0.0.0 evil.test\n||c2.test^\n",
        ),
        ("lists/phishing.txt", "phish.test\n"),
        ("lists/ads.txt", "||ads.test^\n"),
        ("lists/social.txt", "social.test\n"),
        (
            "services.toml",
            "[[service]]\nname = \"vendor\"\ndomains = [\"vendor.test\"]\n",
        ),
        (
            "groups.toml",
            r#"
default_group = "standard"

[[group]]
name = "restricted"
priority = 100
policy = "isolation"
uem_groups = ["jamf:computer-group:42"]
devices = ["C02ISOLATED"]

[[group]]
name = "kids"
priority = 10
policy = "limited"
clients = ["127.0.0.5/32"]

[[group]]
name = "standard"
priority = 0
policy = "standard"
"#,
        ),
        (
            "standard.toml",
            r#"
default = "allow"
allow = ["allowed-ad.ads.test", "both.test"]
deny = ["both.test", "*.denied.test"]
block_categories = ["malware", "ads"]
blocked_ttl = 7
max_ttl = 300
"#,
        ),
        (
            "isolation.toml",
            r#"
default = "block"
allow = ["*.mdm.test"]
allow_services = ["vendor"]
blocked_ttl = 5
max_ttl = 60
"#,
        ),
        (
            "limited.toml",
            r#"
block_categories = ["malware", "social_networks"]
response = "refused"
"#,
        ),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// A running Cordon with its temp dir.
pub struct Cordon {
    /// Kept so that the server runs as long as the test holds it.
    pub _running: Running,
    pub config: Config,
    pub dir: tempfile::TempDir,
    pub dns: SocketAddr,
    pub http: SocketAddr,
}

impl Cordon {
    pub fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    /// Stops this server and starts a new one on the same config and store.
    pub async fn restart(self) -> Cordon {
        let Cordon {
            _running,
            config,
            dir,
            ..
        } = self;
        drop(_running);
        start_cordon_with(dir, config).await
    }
}

/// A config for `upstreams`, with the test policies in a fresh temp dir.
pub fn config(dir: &Path, upstreams: &[SocketAddr]) -> Config {
    let policies = dir.join("policies");
    write_policies(&policies);
    let mut config = Config::default();
    config.dns.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.dns.udp_sockets = 2;
    config.http.listen = "127.0.0.1:0".into();
    config.upstream.servers = upstreams.iter().map(|a| format!("udp://{a}")).collect();
    config.upstream.timeout_ms = 1000;
    config.policies.dir = policies;
    config.store.path = dir.join("cordon.db");
    let token = |token: &str, role, name: &str| AdminToken {
        token: token.into(),
        role,
        name: Some(name.into()),
    };
    config.auth.admin = vec![
        token(ADMIN, Role::Admin, "admin"),
        token(ADMIN2, Role::Admin, "second-admin"),
        token(RESPONDER, Role::Responder, "responder"),
        token(VIEWER, Role::Viewer, "viewer"),
    ];
    config.auth.webhook_tokens = vec!["old-webhook-token".into(), WEBHOOK.into()];
    config.identity.static_bindings = vec![StaticEntry {
        cidr: "127.0.0.3/32".into(),
        device: "C02ISOLATED".into(),
    }];
    config
}

pub async fn start_cordon_with(dir: tempfile::TempDir, config: Config) -> Cordon {
    let running = cordon::app::start(config.clone())
        .await
        .expect("cordon starts");
    Cordon {
        config,
        dns: running.dns_addrs[0],
        http: running.http_addr.unwrap(),
        _running: running,
        dir,
    }
}

pub async fn start_cordon(upstream: &Upstream) -> Cordon {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[upstream.addr]);
    start_cordon_with(dir, config).await
}

/// How to ask.
#[derive(Clone, Copy)]
pub struct Ask {
    pub from: Ipv4Addr,
    pub tcp: bool,
    pub edns: bool,
}

impl Default for Ask {
    fn default() -> Self {
        Ask {
            from: Ipv4Addr::LOCALHOST,
            tcp: false,
            edns: true,
        }
    }
}

pub fn query_message(qname: &str, qtype: RecordType, edns: bool) -> Message {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(qname).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

/// Sends `packet` and returns the raw answer (None when nothing came within 2 s).
pub async fn exchange_raw(server: SocketAddr, packet: &[u8], ask: Ask) -> Option<Vec<u8>> {
    let from = SocketAddr::new(IpAddr::V4(ask.from), 0);
    if ask.tcp {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(from).unwrap();
        let mut stream: TcpStream = socket.connect(server).await.unwrap();
        let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(packet);
        stream.write_all(&framed).await.unwrap();
        let read = async {
            let len = stream.read_u16().await.ok()? as usize;
            let mut buf = vec![0; len];
            stream.read_exact(&mut buf).await.ok()?;
            Some(buf)
        };
        tokio::time::timeout(Duration::from_secs(2), read)
            .await
            .ok()
            .flatten()
    } else {
        let socket = UdpSocket::bind(from).await.unwrap();
        socket.send_to(packet, server).await.unwrap();
        let mut buf = vec![0; 65535];
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        buf.truncate(n);
        Some(buf)
    }
}

/// Asks `qname` and returns the decoded answer.
pub async fn ask_with(server: SocketAddr, qname: &str, qtype: RecordType, ask: Ask) -> Message {
    let query = query_message(qname, qtype, ask.edns);
    let raw = exchange_raw(server, &query.to_vec().unwrap(), ask)
        .await
        .expect("an answer");
    let answer = Message::from_vec(&raw).expect("a well-formed answer");
    assert_eq!(
        answer.metadata.id, query.metadata.id,
        "the answer keeps the query's id"
    );
    answer
}

pub async fn ask(server: SocketAddr, qname: &str) -> Message {
    ask_with(server, qname, RecordType::A, Ask::default()).await
}

pub async fn ask_from(server: SocketAddr, from: [u8; 4], qname: &str) -> Message {
    ask_with(
        server,
        qname,
        RecordType::A,
        Ask {
            from: Ipv4Addr::from(from),
            ..Ask::default()
        },
    )
    .await
}

pub fn rcode(m: &Message) -> ResponseCode {
    m.metadata.response_code
}

/// The A addresses of an answer.
pub fn addresses(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// The Extended DNS Error of an answer: (info code, text).
pub fn ede(m: &Message) -> Option<(u16, String)> {
    let edns = m.edns.as_ref()?;
    let (_, option) = edns
        .options()
        .as_ref()
        .iter()
        .find(|(code, _)| u16::from(*code) == 15)?;
    let bytes: Vec<u8> = Vec::try_from(option).ok()?;
    let code = u16::from_be_bytes([bytes[0], bytes[1]]);
    Some((code, String::from_utf8_lossy(&bytes[2..]).into_owned()))
}

/// An HTTP request over a real socket; returns (status, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    send_http(
        addr,
        method,
        path,
        token.map(|t| format!("Bearer {t}")).as_deref(),
        None,
        "",
    )
    .await
}

/// An HTTP request with a JSON body.
pub async fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    send_http(
        addr,
        method,
        path,
        token.map(|t| format!("Bearer {t}")).as_deref(),
        Some("application/json"),
        body,
    )
    .await
}

/// The check-in fixture, reporting `ip` as the Mac's own address (the binding's source).
pub fn checkin(ip: &str) -> String {
    fixture(
        "computer-checkin.json",
        &[(
            "\"reportedIpAddress\":\"10.20.30.142\"",
            &format!("\"reportedIpAddress\":\"{ip}\""),
        )],
    )
}

/// True when `www.allowed.test`, asked of `dns` from `from`, is blocked (NXDOMAIN).
pub async fn blocked_from(dns: SocketAddr, from: [u8; 4]) -> bool {
    rcode(&ask_from(dns, from, "www.allowed.test.").await) == ResponseCode::NXDomain
}

/// Posts a Jamf webhook body with the test's webhook token.
pub async fn webhook(addr: SocketAddr, body: &str) -> (u16, String) {
    send_http(
        addr,
        "POST",
        "/webhooks/jamf",
        Some(&format!("Bearer {WEBHOOK}")),
        Some("application/json"),
        body,
    )
    .await
}

pub async fn send_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> (u16, String) {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let ctype = content_type
        .map(|c| format!("Content-Type: {c}\r\n"))
        .unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}{ctype}");
    let (status, text) = send_raw(addr, &head, body).await;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, dechunk(&body))
}

/// Sends `head` (the request line and headers, each ending in CRLF), then `Content-Length`,
/// `Connection: close` and `body`; returns the status and the whole answer as text (0 and
/// nothing when the connection is refused).
pub async fn send_raw(addr: SocketAddr, head: &str, body: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let request = format!(
        "{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // The server may answer (413) before reading a large body, and close.
    let _ = stream.write_all(body.as_bytes()).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Asserts an API answer has `expected` status and a JSON body with a non-empty "error".
pub fn assert_json_error(status: u16, answer: &str, expected: u16) {
    assert_eq!(status, expected, "{answer}");
    let error: serde_json::Value =
        serde_json::from_str(answer).unwrap_or_else(|_| panic!("a JSON error body: {answer}"));
    assert!(
        error["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{answer}"
    );
}

/// A fixture from tests/fixtures/jamf, with `edits` applied as (from, to) replacements.
pub fn fixture(name: &str, edits: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jamf")
        .join(name);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (from, to) in edits {
        assert!(text.contains(from), "{name} has no {from}");
        text = text.replace(from, to);
    }
    text
}

/// Polls `check` every 20 ms until it holds or `deadline` passes.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    while tokio::time::Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check().await
}

/// Undoes chunked transfer encoding, if the body uses it.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_string();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// An upstream that counts the queries it gets and answers each after `delay` with one A
/// record (198.51.100.7), or never answers when `delay` is None.
pub struct SlowUpstream {
    pub addr: SocketAddr,
    count: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowUpstream {
    pub async fn start(delay: Duration) -> SlowUpstream {
        Self::start_with(Some(delay)).await
    }

    pub async fn black_hole() -> SlowUpstream {
        Self::start_with(None).await
    }

    async fn start_with(delay: Option<Duration>) -> SlowUpstream {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = socket.local_addr().unwrap();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = count.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0; 65535];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(delay) = delay else { continue };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let socket = socket.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let mut answer =
                        Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
                    answer.metadata.recursion_desired = query.metadata.recursion_desired;
                    answer.metadata.recursion_available = true;
                    answer.add_query(query.queries[0].clone());
                    answer.answers.push(Record::from_rdata(
                        query.queries[0].name().clone(),
                        60,
                        RData::A(A(Ipv4Addr::new(198, 51, 100, 7))),
                    ));
                    let _ = socket.send_to(&answer.to_vec().unwrap(), peer).await;
                });
            }
        });
        SlowUpstream { addr, count, task }
    }

    pub fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for SlowUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The value of one metric series from `/metrics`, e.g. `cordon_cache_hits_total` or
/// `cordon_config_reload_total{result="success"}` (labels as Prometheus prints them); 0 when the
/// series has not been written yet.
pub async fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (status, text) = http(addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            Some(value.trim().parse::<f64>().expect("a metric value"))
        })
        .unwrap_or(0.0)
}

/// `GET /v1/devices/{id}` as JSON; `None` when the device is unknown (404).
pub async fn device_info(addr: SocketAddr, id: &str) -> Option<serde_json::Value> {
    let (status, body) = http(addr, "GET", &format!("/v1/devices/{id}"), Some(VIEWER)).await;
    match status {
        200 => Some(serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))),
        404 => None,
        _ => panic!("GET /v1/devices/{id}: {status} {body}"),
    }
}

/// `GET /v1/isolations` as the list of device ids (`device#N`) it names.
pub async fn isolated_ids(addr: SocketAddr) -> Vec<String> {
    let (status, body) = http(addr, "GET", "/v1/isolations", Some(VIEWER)).await;
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    list.as_array()
        .unwrap_or_else(|| panic!("a JSON list: {body}"))
        .iter()
        .map(|d| {
            d["id"]
                .as_str()
                .unwrap_or_else(|| panic!("an id: {body}"))
                .to_string()
        })
        .collect()
}

/// Rewrites the test policies' groups.toml so that `restricted` maps these UEM groups (instead
/// of `jamf:computer-group:42` alone).
pub fn map_to_restricted(policies: &Path, uem_groups: &[&str]) {
    let path = policies.join("groups.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let from = "uem_groups = [\"jamf:computer-group:42\"]";
    assert!(text.contains(from), "{text}");
    let keys: Vec<String> = uem_groups.iter().map(|k| format!("\"{k}\"")).collect();
    let text = text.replace(from, &format!("uem_groups = [{}]", keys.join(", ")));
    std::fs::write(path, text).unwrap();
}

/// A free TCP port on 127.0.0.1 (for the real binary, which is given fixed ports).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real `cordon` binary, run with a config file in a temp dir (the test policies, a store
/// `cordon.db`, the test's API and webhook tokens). Killed when dropped.
pub struct Binary {
    pub dir: tempfile::TempDir,
    pub http: SocketAddr,
    pub dns: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    child: Option<std::process::Child>,
}

impl Binary {
    /// Starts the binary forwarding to `upstream`, with `extra` TOML appended to its config,
    /// and waits until it is ready.
    pub async fn start(upstream: SocketAddr, extra: &str) -> Binary {
        Binary::start_on(upstream, "path = \"cordon.db\"", extra).await
    }

    /// As [`Binary::start`], with `store` as the body of its `[store]` section.
    pub async fn start_on(upstream: SocketAddr, store: &str, extra: &str) -> Binary {
        let dir = tempfile::tempdir().unwrap();
        write_policies(&dir.path().join("policies"));
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let dns: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.path().join("cordon.toml");
        let mut text = format!(
            "[dns]\nlisten = [\"{dns}\"]\nudp_sockets = 1\n\
             [upstream]\nservers = [\"udp://{upstream}\"]\ntimeout_ms = 1000\n\
             [http]\nlisten = \"{http}\"\n[store]\n{store}\n[policies]\ndir = \"policies\"\n\
             [auth]\nwebhook_tokens = [\"{WEBHOOK}\"]\n"
        );
        for (token, role, name) in [
            (ADMIN, "admin", "admin"),
            (ADMIN2, "admin", "second-admin"),
            (RESPONDER, "responder", "responder"),
            (VIEWER, "viewer", "viewer"),
        ] {
            text.push_str(&format!(
                "[[auth.admin]]\ntoken = \"{token}\"\nrole = \"{role}\"\nname = \"{name}\"\n"
            ));
        }
        text.push_str(extra);
        std::fs::write(&config, text).unwrap();
        let log = dir.path().join("cordon.log");
        let mut binary = Binary {
            dir,
            http,
            dns,
            config,
            log,
            child: None,
        };
        binary.spawn().await;
        binary
    }

    /// Starts the binary again on the same config and store (after [`Binary::kill_9`]). A port
    /// picked free may be taken by another test before the binary binds it: then it moves to
    /// other free ports and tries again.
    pub async fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        for _ in 0..3 {
            let logged = self.log_text().len();
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
                .args(["run", "--config"])
                .arg(&self.config)
                .stdout(std::process::Stdio::null())
                .stderr(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.log)
                        .unwrap(),
                )
                .spawn()
                .expect("the cordon binary starts");
            self.child = Some(child);
            if self.ready().await {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            let log = self.log_text();
            if exited.is_none() || !log[logged..].contains("Address already in use") {
                break;
            }
            self.child = None;
            self.move_ports();
        }
        panic!("not ready: {}", self.log_text());
    }

    /// Waits until it answers /readyz, or stops.
    async fn ready(&mut self) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if http_ready(self.http).await {
                return true;
            }
            let child = self.child.as_mut().expect("spawned");
            if child.try_wait().ok().flatten().is_some() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// New free ports for DNS and HTTP, written into the config.
    fn move_ports(&mut self) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let dns: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let text = text
            .replace(&format!("\"{}\"", self.http), &format!("\"{http}\""))
            .replace(&format!("\"{}\"", self.dns), &format!("\"{dns}\""));
        std::fs::write(&self.config, text).unwrap();
        (self.http, self.dns) = (http, dns);
    }

    /// SIGKILL: no shutdown, no flush; waits until the process is gone.
    pub fn kill_9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends `signal` (libc::SIGHUP, ...) to the running process.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn http_ready(addr: SocketAddr) -> bool {
    http(addr, "GET", "/readyz", None).await.0 == 200
}

/// Adds a group to the test policies' groups.toml: `watched`, priority 5 (between `kids` and
/// `standard`), policy `standard`, for members of `jamf:computer-group:7`.
pub fn add_watched_group(policies: &Path) {
    let path = policies.join("groups.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        "\n[[group]]\nname = \"watched\"\npriority = 5\npolicy = \"standard\"\nuem_groups = [\"jamf:computer-group:7\"]\n",
    );
    std::fs::write(path, text).unwrap();
}

/// What a [`Scripted`] upstream answers: the query's bytes and whether it came over TCP, to the
/// answer's bytes (None: no answer).
pub type Script = Arc<dyn Fn(&[u8], bool) -> Option<Vec<u8>> + Send + Sync>;

/// An upstream on UDP and TCP (one port) that answers as its script says: for answers
/// hickory-server will not give (TC with no question, AD set, oversized additional sections).
pub struct Scripted {
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Scripted {
    pub async fn start(script: Script) -> Scripted {
        let (udp, tcp, addr) = udp_and_tcp_on_one_port().await;
        let udp = Arc::new(udp);
        let s = script.clone();
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0; 65535];
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                if let Some(answer) = s(&buf[..n], false) {
                    let _ = udp.send_to(&answer, peer).await;
                }
            }
        });
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = tcp.accept().await else {
                    return;
                };
                let s = script.clone();
                tokio::spawn(async move {
                    let Ok(len) = stream.read_u16().await else {
                        return;
                    };
                    let mut buf = vec![0; len as usize];
                    if stream.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    if let Some(answer) = s(&buf, true) {
                        let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&answer);
                        let _ = stream.write_all(&framed).await;
                    }
                });
            }
        });
        Scripted {
            addr,
            tasks: vec![udp_task, tcp_task],
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The answer to `query` (decoded) with `answers` and `additionals`, as an upstream makes it:
/// the query's id, question and RD bit, RA set.
pub fn reply_to(query: &[u8], answers: Vec<Record>, additionals: Vec<Record>) -> Message {
    let q = Message::from_vec(query).expect("a query");
    let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_query(q.queries[0].clone());
    m.answers = answers;
    m.additionals = additionals;
    if let Some(e) = q.edns {
        m.set_edns(e);
    }
    m
}

/// An A record, for scripted answers.
pub fn a_record(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
    a(owner, ttl, ip)
}

/// A CNAME record, for scripted answers.
pub fn cname_record(owner: &str, ttl: u32, target: &str) -> Record {
    Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
}

/// The SOA of `test.` with this TTL and MINIMUM: the test zone's, and scripted negative answers'.
pub fn soa_record(ttl: u32, minimum: u32) -> Record {
    let soa = SOA::new(
        name("ns.test."),
        name("hostmaster.test."),
        1,
        3600,
        600,
        86400,
        minimum,
    );
    Record::from_rdata(name("test."), ttl, RData::SOA(soa))
}

/// Starts the authoritative upstream with `records` (a zone `test.` whose SOA is among them).
pub async fn start_upstream_with(records: Vec<Record>) -> Upstream {
    let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        name("test."),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    for r in records {
        zone.upsert_mut(r, 1);
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::from(name("test.")), vec![Arc::new(zone)]);
    let (udp, tcp, addr) = udp_and_tcp_on_one_port().await;
    let mut server = Server::new(catalog);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 65535);
    Upstream {
        addr,
        _server: server,
    }
}
