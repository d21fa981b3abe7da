//! Upstreams against real servers: Unbound serving a local zone over DoT (`tls-port`) and DoH
//! (`https-port`) with a certificate made here; failover from dead encrypted upstreams within the
//! deadline; a certificate that does not verify refused, logged and counted. Over UDP, a small
//! responder made here: many queries at once over a few reused sockets, spoofed answers ignored.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

/// The name Unbound's certificate is made for.
const NAME: &str = "unbound.test";

/// Unbound on 127.0.0.1 with DoT and DoH, answering `test.` from local data. Killed when dropped.
pub struct Unbound {
    pub dot: SocketAddr,
    pub doh: SocketAddr,
    /// The PEM certificate (self-signed, so also the CA file that trusts it).
    pub cert: PathBuf,
    dir: tempfile::TempDir,
    child: Child,
}

impl Unbound {
    pub async fn start() -> Unbound {
        Unbound::start_with("").await
    }

    /// With `extra` lines in its `server:` section.
    pub async fn start_with(extra: &str) -> Unbound {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::generate_simple_self_signed(vec![NAME.into()]).unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, key.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.signing_key.serialize_pem()).unwrap();
        // A port picked free may be taken before Unbound binds it: then pick others.
        for _ in 0..3 {
            let (dot, doh) = (free_port(), free_port());
            let conf = dir.path().join("unbound.conf");
            std::fs::write(&conf, unbound_conf(dir.path(), dot, doh, extra)).unwrap();
            let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
            let mut child = Command::new(unbound_binary())
                .arg("-d")
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("unbound starts (apt-get install unbound)");
            let dot = SocketAddr::from(([127, 0, 0, 1], dot));
            let doh = SocketAddr::from(([127, 0, 0, 1], doh));
            if ready(&mut child, [dot, doh]).await {
                return Unbound {
                    dot,
                    doh,
                    cert,
                    dir,
                    child,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = unbound_log(dir.path());
            assert!(
                log.contains("bind") || log.contains("in use"),
                "unbound did not start:\n{log}"
            );
        }
        panic!("unbound found no free ports");
    }

    fn log(&self) -> String {
        unbound_log(self.dir.path())
    }
    /// `tls://` for this Unbound, its certificate checked for `name`.
    pub fn tls(&self, name: &str) -> String {
        format!("tls://{}#{name}", self.dot)
    }

    /// `https://` for this Unbound, its certificate checked for `name`.
    pub fn https(&self, name: &str) -> String {
        format!("https://{}/dns-query#{name}", self.doh)
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until every port accepts connections, or the process exits.
async fn ready(child: &mut Child, ports: [SocketAddr; 2]) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        let mut up = true;
        for port in ports {
            up &= tokio::net::TcpStream::connect(port).await.is_ok();
        }
        if up {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn unbound_log(dir: &Path) -> String {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    read("stderr.log") + &read("unbound.log")
}

fn unbound_binary() -> &'static str {
    ["/usr/sbin/unbound", "/usr/local/sbin/unbound"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("unbound")
}

/// DoT on `dot` and DoH on `doh` (`/dns-query`), no plain port, no recursion: the answers come
/// from local data, so no network is needed.
fn unbound_conf(dir: &Path, dot: u16, doh: u16, extra: &str) -> String {
    let dir = dir.display();
    format!(
        r#"server:
    directory: "{dir}"
    chroot: ""
    username: ""
    pidfile: ""
    use-syslog: no
    logfile: "{dir}/unbound.log"
    verbosity: 1
    do-ip6: no
    interface: 127.0.0.1@{dot}
    interface: 127.0.0.1@{doh}
    tls-port: {dot}
    https-port: {doh}
    tls-service-key: "{dir}/key.pem"
    tls-service-pem: "{dir}/cert.pem"
    http-endpoint: "/dns-query"
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    local-zone: "test." static
    local-data: "test. 3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60"
    local-data: "www.allowed.test. 3600 IN A 192.0.2.1"
    local-data: "doh.allowed.test. 3600 IN A 192.0.2.2"
    local-data: "dot.allowed.test. 3600 IN A 192.0.2.3"
{extra}
remote-control:
    control-enable: no
"#
    )
}

/// Cordon forwarding to `servers`, certificates verified against `ca_file`.
async fn cordon_with(servers: Vec<String>, ca_file: Option<&Path>) -> Cordon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[]);
    config.upstream.servers = servers;
    config.upstream.timeout_ms = 1000;
    if let Some(ca) = ca_file {
        config.upstream.ca_file = ca.to_path_buf();
    }
    start_cordon_with(dir, config).await
}

/// The value of `cordon_upstream_requests_total` for `upstream` and `result`.
async fn upstream_requests(cordon: &Cordon, upstream: &str, result: &str) -> f64 {
    let (status, text) = http(cordon.http, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    let labels = [
        format!("upstream=\"{upstream}\""),
        format!("result=\"{result}\""),
    ];
    text.lines()
        .filter(|l| l.starts_with("cordon_upstream_requests_total{"))
        .find(|l| labels.iter().all(|label| l.contains(label.as_str())))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// What every test of this binary logs, from the first call of [`Logs::capture`] on: one
/// process-wide subscriber (a scoped one per test misses events while other tests' come and go),
/// so a test looks for the lines that name its own upstream (each has its own port).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> Logs {
        static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let writer = logs.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_env_filter(tracing_subscriber::EnvFilter::new("warn,cordon=debug"))
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
            logs
        })
        .clone()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn upstreams_a_name_resolves_through_unbound_over_dot_and_over_doh() {
    let unbound = Unbound::start().await;
    for (upstream, name, ip) in [
        (unbound.tls(NAME), "dot.allowed.test.", [192u8, 0, 2, 3]),
        (unbound.https(NAME), "doh.allowed.test.", [192, 0, 2, 2]),
    ] {
        let cordon = cordon_with(vec![upstream.clone()], Some(&unbound.cert)).await;
        let answer = ask(cordon.dns, name).await;
        assert_eq!(
            rcode(&answer),
            ResponseCode::NoError,
            "{upstream}: {answer:?}"
        );
        assert_eq!(addresses(&answer), vec![Ipv4Addr::from(ip)], "{upstream}");
        // NXDOMAIN from the local zone, over TCP too, on the connection already open
        let tcp = Ask {
            tcp: true,
            ..Ask::default()
        };
        let answer = ask_with(cordon.dns, "nothing.test.", RecordType::A, tcp).await;
        assert_eq!(rcode(&answer), ResponseCode::NXDomain, "{upstream}");
        // counted in the same upstream metrics as UDP and TCP
        assert_eq!(upstream_requests(&cordon, &upstream, "ok").await, 2.0);
        assert_eq!(
            upstream_requests(&cordon, &upstream, "error").await,
            0.0,
            "{upstream}: {}",
            unbound.log()
        );
    }
}

#[tokio::test]
async fn upstreams_three_hundred_queries_at_once_share_one_connection() {
    let unbound = Unbound::start().await;
    let logs = Logs::capture();
    for upstream in [unbound.tls(NAME), unbound.https(NAME)] {
        let cordon = cordon_with(vec![upstream.clone()], Some(&unbound.cert)).await;
        // more at once than hickory's queues hold by default (32)
        let asks = (0..300).map(|i| {
            let dns = cordon.dns;
            async move { ask(dns, &format!("n{i}.allowed.test.")).await }
        });
        for answer in futures_util::future::join_all(asks).await {
            assert_eq!(rcode(&answer), ResponseCode::NXDomain, "{upstream}");
        }
        assert_eq!(upstream_requests(&cordon, &upstream, "ok").await, 300.0);
        assert_eq!(upstream_requests(&cordon, &upstream, "error").await, 0.0);
        let text = logs.text();
        let connected = |l: &&str| l.contains("connected upstream=") && l.contains(&upstream);
        assert_eq!(text.lines().filter(connected).count(), 1, "{upstream}");
    }
}

#[tokio::test]
async fn upstreams_a_connection_the_server_closed_is_made_again_within_the_query() {
    // Unbound closes a connection idle for 200 ms
    let unbound = Unbound::start_with("    tcp-idle-timeout: 200").await;
    let logs = Logs::capture();
    for upstream in [unbound.tls(NAME), unbound.https(NAME)] {
        let cordon = cordon_with(vec![upstream.clone()], Some(&unbound.cert)).await;
        for name in [
            "www.allowed.test.",
            "dot.allowed.test.",
            "doh.allowed.test.",
        ] {
            let answer = ask(cordon.dns, name).await;
            assert_eq!(rcode(&answer), ResponseCode::NoError, "{upstream} {name}");
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        assert_eq!(upstream_requests(&cordon, &upstream, "ok").await, 3.0);
        assert_eq!(upstream_requests(&cordon, &upstream, "error").await, 0.0);
        let text = logs.text();
        let connected = |l: &&str| l.contains("connected upstream=") && l.contains(&upstream);
        assert_eq!(
            text.lines().filter(connected).count(),
            3,
            "{upstream}: {text}"
        );
    }
}

#[tokio::test]
async fn upstreams_a_dead_encrypted_upstream_fails_over_within_the_deadline() {
    let unbound = Unbound::start().await;
    // nothing listens on one; the other accepts TCP and never says a word
    let refused = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    for (dead, live) in [
        (format!("tls://{refused}#{NAME}"), unbound.https(NAME)),
        (
            format!("https://{silent_addr}/dns-query#{NAME}"),
            unbound.tls(NAME),
        ),
        (format!("tls://{silent_addr}#{NAME}"), unbound.https(NAME)),
    ] {
        let cordon = cordon_with(vec![dead.clone(), live.clone()], Some(&unbound.cert)).await;
        let started = Instant::now();
        let answer = ask(cordon.dns, "www.allowed.test.").await;
        let took = started.elapsed();
        assert_eq!(rcode(&answer), ResponseCode::NoError, "{dead} then {live}");
        assert_eq!(addresses(&answer), vec![Ipv4Addr::new(192, 0, 2, 1)]);
        // one deadline of 1 s for both: the dead one gets half of it at most
        assert!(took < Duration::from_millis(1000), "{dead}: {took:?}");
        assert_eq!(upstream_requests(&cordon, &live, "ok").await, 1.0);
        let failed = upstream_requests(&cordon, &dead, "error").await
            + upstream_requests(&cordon, &dead, "timeout").await;
        assert_eq!(failed, 1.0, "{dead} is counted");
        // the live one answered, so it is asked first from now on
        let started = Instant::now();
        let answer = ask(cordon.dns, "dot.allowed.test.").await;
        assert_eq!(rcode(&answer), ResponseCode::NoError);
        assert!(started.elapsed() < Duration::from_millis(400), "{dead}");
    }
}

#[tokio::test]
async fn upstreams_a_certificate_that_does_not_verify_is_refused_logged_and_counted() {
    let unbound = Unbound::start().await;
    let logs = Logs::capture();
    // a CA that did not sign Unbound's certificate
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("other.pem");
    let mut params = rcgen::CertificateParams::new(vec!["other-ca.test".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Some other CA");
    let cert = params
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    std::fs::write(&other_ca, cert.pem()).unwrap();
    for (upstream, ca, why) in [
        (
            unbound.tls("wrong.test"),
            &unbound.cert,
            "not valid for name",
        ),
        (
            unbound.https("wrong.test"),
            &unbound.cert,
            "not valid for name",
        ),
        (unbound.tls(NAME), &other_ca, "UnknownIssuer"),
        (unbound.https(NAME), &other_ca, "UnknownIssuer"),
    ] {
        let cordon = cordon_with(vec![upstream.clone()], Some(ca)).await;
        let answer = ask(cordon.dns, "www.allowed.test.").await;
        assert_eq!(rcode(&answer), ResponseCode::ServFail, "{upstream}");
        assert_eq!(
            upstream_requests(&cordon, &upstream, "error").await,
            1.0,
            "{upstream}"
        );
        let logged = logs.text();
        let line = logged
            .lines()
            .find(|l| l.contains(&upstream) && l.contains("cannot connect to upstream"))
            .unwrap_or_else(|| panic!("{upstream}: no log line in\n{logged}"));
        assert!(line.contains("WARN") && line.contains(why), "{line}");
    }
    // a wrong name first, the right one behind it: the query fails over
    for (bad, good) in [
        (unbound.tls("wrong.test"), unbound.https(NAME)),
        (unbound.https("wrong.test"), unbound.tls(NAME)),
    ] {
        let cordon = cordon_with(vec![bad.clone(), good.clone()], Some(&unbound.cert)).await;
        let answer = ask(cordon.dns, "www.allowed.test.").await;
        assert_eq!(rcode(&answer), ResponseCode::NoError, "{bad}");
        assert_eq!(upstream_requests(&cordon, &bad, "error").await, 1.0);
        assert_eq!(upstream_requests(&cordon, &good, "ok").await, 1.0);
    }
}

/// A UDP upstream on 127.0.0.1 that answers each query with an A record whose last byte is the
/// number in the name's first label (`n17.allowed.test` → 192.0.2.17), after sending what
/// `decoys` makes for it (spoofed or late datagrams), and records each query's source port and id.
struct UdpResponder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(u16, u16)>>>,
    task: tokio::task::JoinHandle<()>,
}

type Decoys = fn(&[u8]) -> Vec<Vec<u8>>;

impl UdpResponder {
    async fn start(decoys: Decoys) -> UdpResponder {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0; 65535];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let query = &buf[..n];
                log.lock()
                    .unwrap()
                    .push((peer.port(), u16::from_be_bytes([query[0], query[1]])));
                for decoy in decoys(query) {
                    let _ = socket.send_to(&decoy, peer).await;
                }
                let _ = socket.send_to(&numbered_answer(query), peer).await;
            }
        });
        UdpResponder { addr, seen, task }
    }

    fn seen(&self) -> Vec<(u16, u16)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for UdpResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The right answer to `query`, as [`UdpResponder`] makes it.
fn numbered_answer(query: &[u8]) -> Vec<u8> {
    let q = hickory_proto::op::Message::from_vec(query).unwrap();
    let qname = q.queries[0].name().to_string();
    let n: u8 = qname[1..qname.find('.').unwrap()].parse().unwrap_or(0);
    reply_to(query, vec![a_record(&qname, 60, [192, 0, 2, n])], vec![])
        .to_vec()
        .unwrap()
}

/// Cordon forwarding over UDP to `upstream`.
async fn cordon_over_udp(upstream: SocketAddr) -> Cordon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream]);
    config.upstream.timeout_ms = 2000;
    start_cordon_with(dir, config).await
}

#[tokio::test]
async fn upstreams_many_queries_at_once_over_udp_each_get_their_own_answer_from_spread_ports() {
    let upstream = UdpResponder::start(|_| Vec::new()).await;
    let cordon = cordon_over_udp(upstream.addr).await;
    let asks = (1..=200u8).map(|i| {
        let dns = cordon.dns;
        tokio::spawn(async move { (i, ask(dns, &format!("n{i}.allowed.test.")).await) })
    });
    for done in futures_util::future::join_all(asks).await {
        let (i, answer) = done.unwrap();
        assert_eq!(rcode(&answer), ResponseCode::NoError, "n{i}");
        assert_eq!(
            addresses(&answer),
            vec![Ipv4Addr::new(192, 0, 2, i)],
            "n{i}"
        );
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 200, "one upstream query a name");
    let ports: std::collections::HashSet<u16> = seen.iter().map(|s| s.0).collect();
    let ids: std::collections::HashSet<u16> = seen.iter().map(|s| s.1).collect();
    // Source ports spread over several sockets, each reused (not a socket a query).
    assert!(ports.len() > 1, "source ports spread: {ports:?}");
    assert!(ports.len() < 100, "sockets reused: {} ports", ports.len());
    assert!(ids.len() > 150, "random ids: {} distinct of 200", ids.len());
}

/// Datagrams an attacker (or a slow server) might send before the answer: our question with
/// another id, our id with another question, both claiming 6.6.6.6.
fn spoofs(query: &[u8]) -> Vec<Vec<u8>> {
    let q = hickory_proto::op::Message::from_vec(query).unwrap();
    let qname = q.queries[0].name().to_string();
    let evil = |owner: &str| vec![a_record(owner, 60, [6, 6, 6, 6])];
    let mut wrong_id = reply_to(query, evil(&qname), vec![]).to_vec().unwrap();
    wrong_id[0] ^= 0x5a;
    let mut other = q.clone();
    other.queries[0].set_name(hickory_proto::rr::Name::from_ascii("other.allowed.test.").unwrap());
    let other = other.to_vec().unwrap();
    let wrong_question = reply_to(&other, evil("other.allowed.test."), vec![])
        .to_vec()
        .unwrap();
    vec![wrong_id, wrong_question]
}

#[tokio::test]
async fn upstreams_a_udp_answer_with_the_wrong_id_or_question_is_ignored_and_the_right_one_taken() {
    let upstream = UdpResponder::start(spoofs).await;
    let cordon = cordon_over_udp(upstream.addr).await;
    for i in [7u8, 8, 9] {
        let answer = ask(cordon.dns, &format!("n{i}.allowed.test.")).await;
        assert_eq!(rcode(&answer), ResponseCode::NoError);
        assert_eq!(addresses(&answer), vec![Ipv4Addr::new(192, 0, 2, i)]);
    }
    // Two decoys a query, each counted as an answer to nothing.
    assert!(
        eventually(Duration::from_secs(2), || async {
            metric(cordon.http, "cordon_upstream_unmatched_total").await >= 6.0
        })
        .await
    );
}
