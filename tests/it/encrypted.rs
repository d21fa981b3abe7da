//! DoH, DoT and DoQ with hickory's clients, per-device tokens in the DoH path and the SNI, and
//! identity through trusted forwarders.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use hickory_net::client::{Client as DnsClient, ClientHandle};
use hickory_net::h2::HttpsClientStream;
use hickory_net::quic::QuicClientStream;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tls::tls_client_connect_with_bind_addr;
use hickory_net::NetError;
use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const SECRET: &str = "an-integration-test-token-secret";
const FREE: &str = "C02FREE0001";

/// A Cordon with DoT, DoH and DoQ on a certificate made for `dns.test` and `*.dns.test`.
pub struct Encrypted {
    pub cordon: Cordon,
    pub ca: CertificateDer<'static>,
    _upstream: Upstream,
}

impl Encrypted {
    pub fn dot(&self) -> SocketAddr {
        self.cordon._running.encrypted.dot[0]
    }
    pub fn doh(&self) -> SocketAddr {
        self.cordon._running.encrypted.doh[0]
    }
    pub fn doq(&self) -> SocketAddr {
        self.cordon._running.encrypted.doq[0]
    }
}

pub async fn start(configure: impl FnOnce(&mut cordon::config::Config)) -> Encrypted {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let key =
        rcgen::generate_simple_self_signed(vec!["dns.test".into(), "*.dns.test".into()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), key.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.signing_key.serialize_pem()).unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    config.dns.tls_listen = vec![any];
    config.dns.https_listen = vec![any];
    config.dns.quic_listen = vec![any];
    config.dns.tls_cert = dir.path().join("cert.pem");
    config.dns.tls_key = dir.path().join("key.pem");
    config.dns.server_name = "dns.test".into();
    config.auth.token_secret = SECRET.into();
    configure(&mut config);
    let cordon = start_cordon_with(dir, config).await;
    // a free device, known by its serial
    let (status, body) = http_json(
        cordon.http,
        "PUT",
        &format!("/v1/devices/serial:{FREE}/groups"),
        Some(ADMIN),
        r#"{"groups":[]}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    Encrypted {
        cordon,
        ca: key.cert.der().clone(),
        _upstream: upstream,
    }
}

pub fn tls_client(ca: &CertificateDer<'static>, alpn: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

fn signed(alias: &str) -> String {
    cordon::token::TokenKey::new(SECRET).unwrap().sign(alias)
}

fn local(from: [u8; 4]) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(from)), 0)
}

/// The rcode of an answer, whether hickory hands it back as a response or as "no records".
pub async fn rcode_of(mut client: DnsClient<TokioRuntimeProvider>, name: &str) -> ResponseCode {
    match client
        .query(Name::from_str(name).unwrap(), DNSClass::IN, RecordType::A)
        .await
    {
        Ok(response) => response.metadata.response_code,
        Err(NetError::Dns(hickory_net::DnsError::NoRecordsFound(no))) => no.response_code,
        Err(NetError::Dns(hickory_net::DnsError::ResponseCode(code))) => code,
        Err(e) => panic!("{name}: {e}"),
    }
}

pub async fn doh(e: &Encrypted, from: [u8; 4], path: &str) -> DnsClient<TokioRuntimeProvider> {
    let mut builder = HttpsClientStream::builder(
        Arc::new(tls_client(&e.ca, b"h2")),
        TokioRuntimeProvider::default(),
    );
    builder.bind_addr(local(from));
    let stream = builder
        .build(e.doh(), "dns.test".into(), path.into())
        .await
        .expect("DoH connects");
    let (client, bg) = DnsClient::<TokioRuntimeProvider>::from_sender(stream);
    tokio::spawn(bg);
    client
}

pub async fn dot(
    e: &Encrypted,
    from: [u8; 4],
    server_name: &str,
) -> DnsClient<TokioRuntimeProvider> {
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let config = Arc::new(tls_client(&e.ca, b"dot"));
    let (stream, handle) = tls_client_connect_with_bind_addr(
        e.dot(),
        Some(local(from)),
        name,
        config,
        TokioRuntimeProvider::default(),
    );
    let stream = stream.await.expect("DoT connects");
    let (client, bg) = DnsClient::<TokioRuntimeProvider>::new(stream, handle);
    tokio::spawn(bg);
    client
}

pub async fn doq(e: &Encrypted, server_name: &str) -> DnsClient<TokioRuntimeProvider> {
    let stream = QuicClientStream::builder()
        .crypto_config(tls_client(&e.ca, b"doq"))
        .build(e.doq(), server_name.into())
        .await
        .expect("DoQ connects");
    let (client, bg) = DnsClient::<TokioRuntimeProvider>::from_sender(stream);
    tokio::spawn(bg);
    client
}

#[tokio::test]
async fn a_token_in_the_doh_path_selects_the_device_and_its_policy() {
    let e = start(|_| {}).await;
    let name = "www.allowed.test.";
    assert_eq!(
        rcode_of(doh(&e, [127, 0, 0, 1], "/dns-query").await, name).await,
        ResponseCode::NoError
    );
    // a plain alias (as an MDM profile's $SERIALNUMBER gives it) and a signed token
    assert_eq!(
        rcode_of(
            doh(&e, [127, 0, 0, 1], "/dns-query/C02ISOLATED").await,
            name
        )
        .await,
        ResponseCode::NXDomain
    );
    let isolated = signed("C02ISOLATED");
    assert_eq!(
        rcode_of(
            doh(&e, [127, 0, 0, 1], &format!("/dns-query/{isolated}")).await,
            name
        )
        .await,
        ResponseCode::NXDomain
    );
    let free = signed(FREE);
    assert_eq!(
        rcode_of(
            doh(&e, [127, 0, 0, 1], &format!("/dns-query/{free}")).await,
            name
        )
        .await,
        ResponseCode::NoError
    );
    // a forged signed token names nobody: default group, and counted
    let forged = format!(
        "{}{}",
        &isolated[..isolated.len() - 1],
        if isolated.ends_with('a') { 'b' } else { 'a' }
    );
    assert_eq!(
        rcode_of(
            doh(&e, [127, 0, 0, 1], &format!("/dns-query/{forged}")).await,
            name
        )
        .await,
        ResponseCode::NoError
    );
    let (_, metrics) = http(e.cordon.http, "GET", "/metrics", None).await;
    assert!(
        metrics.contains("cordon_identity_tokens_total{result=\"forged\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cordon_identity_tokens_total{result=\"valid\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_token_in_the_sni_selects_the_device_over_dot_and_doq() {
    let e = start(|_| {}).await;
    let name = "www.allowed.test.";
    assert_eq!(
        rcode_of(dot(&e, [127, 0, 0, 1], "c02isolated.dns.test").await, name).await,
        ResponseCode::NXDomain
    );
    let free = signed(FREE);
    assert_eq!(
        rcode_of(
            dot(&e, [127, 0, 0, 1], &format!("{free}.dns.test")).await,
            name
        )
        .await,
        ResponseCode::NoError
    );
    assert_eq!(
        rcode_of(dot(&e, [127, 0, 0, 1], "dns.test").await, name).await,
        ResponseCode::NoError
    );
    assert_eq!(
        rcode_of(doq(&e, "c02isolated.dns.test").await, name).await,
        ResponseCode::NXDomain
    );
    assert_eq!(
        rcode_of(doq(&e, &format!("{free}.dns.test")).await, name).await,
        ResponseCode::NoError
    );
    // many queries on one DoT connection
    let client = dot(&e, [127, 0, 0, 1], &format!("{free}.dns.test")).await;
    let asks = (0..20).map(|_| {
        let client = client.clone();
        tokio::spawn(rcode_of(client, "www.allowed.test."))
    });
    for a in asks {
        assert_eq!(a.await.unwrap(), ResponseCode::NoError);
    }
}

#[tokio::test]
async fn isolation_cannot_be_escaped_by_presenting_another_devices_alias() {
    let e = start(|_| {}).await;
    // 127.0.0.3 is C02ISOLATED's address (identity.static); it presents the free device's tokens
    let free = signed(FREE);
    let name = "www.allowed.test.";
    assert_eq!(
        rcode_of(
            doh(&e, [127, 0, 0, 3], &format!("/dns-query/{free}")).await,
            name
        )
        .await,
        ResponseCode::NXDomain
    );
    assert_eq!(
        rcode_of(
            doh(&e, [127, 0, 0, 3], &format!("/dns-query/{FREE}")).await,
            name
        )
        .await,
        ResponseCode::NXDomain
    );
    assert_eq!(
        rcode_of(
            dot(&e, [127, 0, 0, 3], &format!("{free}.dns.test")).await,
            name
        )
        .await,
        ResponseCode::NXDomain
    );
}

/// A TLS connection to the DoH listener that speaks HTTP/1.1.
async fn doh_http1(e: &Encrypted) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_client(&e.ca, b"http/1.1")));
    let tcp = tokio::net::TcpStream::connect(e.doh()).await.unwrap();
    connector
        .connect(ServerName::try_from("dns.test").unwrap(), tcp)
        .await
        .unwrap()
}

/// A raw HTTP/1.1 exchange over TLS: (status, content type, body).
async fn https(e: &Encrypted, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut tls = doh_http1(e).await;
    tls.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, ctype, response[split + 4..].to_vec())
}

fn doh_query(id: u16) -> Vec<u8> {
    let mut q = query_message("www.allowed.test.", RecordType::A, true);
    q.metadata.id = id;
    q.to_vec().unwrap()
}

#[tokio::test]
async fn get_and_post_give_the_same_answer_and_bad_requests_get_4xx() {
    use base64::Engine;
    let e = start(|_| {}).await;
    let query = doh_query(0);
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&query);
    let get = format!("GET /dns-query?dns={encoded} HTTP/1.1\r\nHost: dns.test\r\nAccept: application/dns-message\r\nConnection: close\r\n\r\n");
    let (status, ctype, from_get) = https(&e, get.as_bytes()).await;
    assert_eq!((status, ctype.as_str()), (200, "application/dns-message"));
    let mut post = format!("POST /dns-query HTTP/1.1\r\nHost: dns.test\r\nContent-Type: application/dns-message\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", query.len()).into_bytes();
    post.extend_from_slice(&query);
    let (status, _, from_post) = https(&e, &post).await;
    assert_eq!(status, 200);
    assert_eq!(from_get, from_post, "GET and POST answer alike");
    let answer = Message::from_vec(&from_get).unwrap();
    assert_eq!(addresses(&answer), vec![Ipv4Addr::new(192, 0, 2, 1)]);

    let bad: Vec<(String, u16)> = vec![
        ("PUT /dns-query HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(), 405),
        ("GET /dns-query HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), 400),
        ("GET /dns-query?dns=%%% HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), 400),
        ("POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".into(), 415),
        ("POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Type: application/dns-message\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc".into(), 400),
        ("POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Type: application/dns-message\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(), 400),
        (format!("POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Type: application/dns-message\r\nContent-Length: 70000\r\nConnection: close\r\n\r\n{}", "x".repeat(70000)), 413),
        ("GET /elsewhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), 404),
    ];
    for (request, expected) in bad {
        let (status, _, body) = https(&e, request.as_bytes()).await;
        assert_eq!(
            status,
            expected,
            "{request:.60}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // and it still serves
    let (status, _, _) = https(&e, get.as_bytes()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn doh_answers_carry_a_cache_lifetime() {
    let e = start(|_| {}).await;
    let query = doh_query(0);
    let mut post = format!("POST /dns-query/C02ISOLATED HTTP/1.1\r\nHost: dns.test\r\nContent-Type: application/dns-message\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", query.len()).into_bytes();
    post.extend_from_slice(&query);
    let mut tls = doh_http1(&e).await;
    tls.write_all(&post).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
    // blocked for the isolated device: the SOA's TTL is the isolation policy's blocked_ttl (5)
    assert!(text.contains("cache-control: max-age=5"), "{text}");
}

#[tokio::test]
async fn a_post_body_that_comes_in_pieces_is_answered_whole() {
    let e = start(|_| {}).await;
    let query = doh_query(7);
    let head = format!("POST /dns-query HTTP/1.1\r\nHost: dns.test\r\nContent-Type: application/dns-message\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", query.len());
    let mut tls = doh_http1(&e).await;
    // The head and half the query, then the rest a moment later: the service has read the
    // first half before the rest is there.
    let (first, rest) = query.split_at(query.len() / 2);
    tls.write_all(&[head.as_bytes(), first].concat())
        .await
        .unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    tls.write_all(rest).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    let answer = Message::from_vec(&response[split + 4..]).unwrap();
    assert_eq!(answer.metadata.id, 7);
    assert_eq!(addresses(&answer), vec![Ipv4Addr::new(192, 0, 2, 1)]);
}

/// A UDP query from `from` with `options` in its OPT record.
async fn with_options(e: &Encrypted, from: [u8; 4], options: Vec<EdnsOption>) -> Message {
    let mut q = query_message("www.allowed.test.", RecordType::A, false);
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    for o in options {
        edns.options_mut().insert(o);
    }
    q.set_edns(edns);
    let ask = Ask {
        from: Ipv4Addr::from(from),
        ..Ask::default()
    };
    let raw = exchange_raw(e.cordon.dns, &q.to_vec().unwrap(), ask)
        .await
        .expect("an answer");
    Message::from_vec(&raw).unwrap()
}

#[tokio::test]
async fn a_trusted_forwarder_speaks_for_its_clients_and_nobody_else_does() {
    let e = start(|c| {
        c.identity.trusted_forwarders = vec!["127.0.0.60/32".into()];
        c.identity.accept.extend([
            "edns-client-subnet".to_string(),
            "edns-device-id".to_string(),
        ]);
    })
    .await;
    // the client behind the forwarder is 127.0.0.3, which C02ISOLATED holds
    let subnet = || {
        vec![EdnsOption::Subnet(ClientSubnet::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
            32,
            0,
        ))]
    };
    let answer = with_options(&e, [127, 0, 0, 60], subnet()).await;
    assert_eq!(rcode(&answer), ResponseCode::NXDomain);
    let echoed = answer
        .edns
        .as_ref()
        .and_then(|o| o.option(EdnsCode::Subnet).cloned());
    let Some(EdnsOption::Subnet(echoed)) = echoed else {
        panic!("the subnet is echoed: {answer:?}")
    };
    assert_eq!(
        echoed.scope_prefix(),
        32,
        "scoped to the client's subnet, so a forwarder's cache keeps it apart"
    );
    // an allowed answer for another client behind the forwarder is scoped too
    let other = vec![EdnsOption::Subnet(ClientSubnet::new(
        IpAddr::V4(Ipv4Addr::new(10, 9, 8, 0)),
        24,
        0,
    ))];
    let answer = with_options(&e, [127, 0, 0, 60], other).await;
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    let Some(EdnsOption::Subnet(echoed)) = answer
        .edns
        .as_ref()
        .and_then(|o| o.option(EdnsCode::Subnet).cloned())
    else {
        panic!("echoed: {answer:?}")
    };
    assert_eq!((echoed.source_prefix(), echoed.scope_prefix()), (24, 24));
    assert_eq!(
        rcode(&with_options(&e, [127, 0, 0, 61], subnet()).await),
        ResponseCode::NoError,
        "untrusted: ignored"
    );
    // the Umbrella device-id option: "OpenDNS" then 8 bytes; the device is known by that id
    let id = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
    let (status, body) = http_json(
        e.cordon.http,
        "PUT",
        "/v1/devices/name:0011223344556677/groups",
        Some(ADMIN),
        r#"{"groups":["jamf:computer-group:42"]}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let umbrella = || {
        vec![EdnsOption::Unknown(
            u16::from(EdnsCode::Unknown(26946)),
            [b"OpenDNS".as_slice(), &id].concat(),
        )]
    };
    assert_eq!(
        rcode(&with_options(&e, [127, 0, 0, 60], umbrella()).await),
        ResponseCode::NXDomain
    );
    assert_eq!(
        rcode(&with_options(&e, [127, 0, 0, 61], umbrella()).await),
        ResponseCode::NoError,
        "untrusted: ignored"
    );
    // a malformed subnet option from a trusted forwarder is a FORMERR (RFC 7871 §7.1.1)
    let bad = vec![EdnsOption::Unknown(8, vec![0, 1, 40, 0, 127])];
    assert_eq!(
        rcode(&with_options(&e, [127, 0, 0, 60], bad).await),
        ResponseCode::FormErr
    );
}

#[tokio::test]
async fn a_serial_named_in_config_and_reported_by_the_mdm_is_one_device_across_restarts() {
    let mut e = start(|c| c.devices.critical = vec!["C02ZK1ABMD6T".into()]).await;
    let checkin = fixture("computer-checkin.json", &[]);
    assert_eq!(webhook(e.cordon.http, &checkin).await.0, 200);
    assert_eq!(
        webhook(
            e.cordon.http,
            &fixture("smart-group-computer-added.json", &[])
        )
        .await
        .0,
        200
    );
    let name = "www.allowed.test.";
    let path = "/dns-query/C02ZK1ABMD6T";
    assert_eq!(
        rcode_of(doh(&e, [127, 0, 0, 1], path).await, name).await,
        ResponseCode::NXDomain
    );
    e.cordon = e.cordon.restart().await;
    assert_eq!(
        rcode_of(doh(&e, [127, 0, 0, 1], path).await, name).await,
        ResponseCode::NXDomain,
        "still isolated after a restart"
    );
    let (_, info) = http(
        e.cordon.http,
        "GET",
        "/v1/devices/C02ZK1ABMD6T",
        Some(VIEWER),
    )
    .await;
    assert!(
        info.contains("\"critical\":true") && info.contains("jamf-computer:1042"),
        "{info}"
    );
}

#[tokio::test]
async fn a_token_naming_an_isolated_device_wins_over_a_free_source_address() {
    let e = start(|c| {
        c.identity
            .static_bindings
            .push(cordon::config::StaticEntry {
                cidr: "127.0.0.13/32".into(),
                device: "C02FREESRC".into(),
            })
    })
    .await;
    let name = "www.allowed.test.";
    // config binds 127.0.0.13 to a free device: without a token it resolves
    let free_address = [127, 0, 0, 13];
    assert_eq!(
        rcode_of(doh(&e, free_address, "/dns-query").await, name).await,
        ResponseCode::NoError
    );
    assert_eq!(
        rcode_of(dot(&e, free_address, "dns.test").await, name).await,
        ResponseCode::NoError
    );
    // the token names C02ISOLATED (in `restricted` by config): plain alias, signed, DoH and DoT
    let isolated = signed("C02ISOLATED");
    for path in [
        "/dns-query/C02ISOLATED".to_string(),
        format!("/dns-query/{isolated}"),
    ] {
        assert_eq!(
            rcode_of(doh(&e, free_address, &path).await, name).await,
            ResponseCode::NXDomain,
            "{path}"
        );
    }
    for server_name in [
        "c02isolated.dns.test".to_string(),
        format!("{isolated}.dns.test"),
    ] {
        assert_eq!(
            rcode_of(dot(&e, free_address, &server_name).await, name).await,
            ResponseCode::NXDomain,
            "{server_name}"
        );
    }

    // the same with the MDM on both sides: a free Mac bound to 127.0.0.14 by its check-in, and
    // a token naming a Mac that the MDM's group 42 isolates
    let checkin = checkin("127.0.0.14");
    assert_eq!(webhook(e.cordon.http, &checkin).await.0, 200);
    let (status, body) = http_json(
        e.cordon.http,
        "PUT",
        "/v1/devices/serial:C02MDMISO01/groups",
        Some(ADMIN),
        r#"{"groups":["jamf:computer-group:42"]}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let bound = [127, 0, 0, 14];
    assert_eq!(
        rcode_of(doh(&e, bound, "/dns-query").await, name).await,
        ResponseCode::NoError
    );
    assert_eq!(
        rcode_of(doh(&e, bound, "/dns-query/C02MDMISO01").await, name).await,
        ResponseCode::NXDomain
    );
    assert_eq!(
        rcode_of(dot(&e, bound, "c02mdmiso01.dns.test").await, name).await,
        ResponseCode::NXDomain
    );
}

#[tokio::test]
async fn between_a_token_and_a_client_network_the_stricter_group_wins() {
    let e = start(|c| add_watched_group(&c.policies.dir)).await;
    // 127.0.0.5 is the `kids` network (priority 10); C02ISOLATED is in `restricted` (100)
    let kids = [127, 0, 0, 5];
    let name = "www.allowed.test.";
    assert_eq!(
        rcode_of(doh(&e, kids, "/dns-query").await, name).await,
        ResponseCode::NoError
    );
    assert_eq!(
        rcode_of(doh(&e, kids, "/dns-query/C02ISOLATED").await, name).await,
        ResponseCode::NXDomain
    );
    // the token of a device in `watched` (priority 5, policy standard) or of a free one, from
    // that network: the network's group, the stricter
    let (status, body) = http_json(
        e.cordon.http,
        "PUT",
        "/v1/devices/serial:C02WATCHED1/groups",
        Some(ADMIN),
        r#"{"groups":["jamf:computer-group:7"]}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for device in ["C02WATCHED1", FREE] {
        let path = format!("/dns-query/{}", signed(device));
        assert_eq!(
            rcode_of(doh(&e, kids, &path).await, "social.test.").await,
            ResponseCode::Refused,
            "{device}: kids refuses social networks"
        );
        assert_eq!(
            rcode_of(doh(&e, [127, 0, 0, 1], &path).await, "social.test.").await,
            ResponseCode::NoError,
            "{device}: elsewhere its own group resolves them"
        );
    }
}

#[tokio::test]
async fn a_mobile_device_isolated_by_its_smart_group_is_isolated_by_its_token() {
    let e = start(|c| {
        map_to_restricted(
            &c.policies.dir,
            &["jamf:computer-group:42", "jamf:mobile-group:77"],
        )
    })
    .await;
    let name = "www.allowed.test.";
    let path = "/dns-query/F9FXK2Q4LQ";
    assert_eq!(
        rcode_of(doh(&e, [127, 0, 0, 1], path).await, name).await,
        ResponseCode::NoError,
        "nobody has that serial yet"
    );
    let (status, body) = webhook(
        e.cordon.http,
        &fixture("smart-group-mobile-added.json", &[]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"result\":\"applied\""), "{body}");
    assert_eq!(
        rcode_of(doh(&e, [127, 0, 0, 1], path).await, name).await,
        ResponseCode::NXDomain
    );
    assert_eq!(
        rcode_of(dot(&e, [127, 0, 0, 1], "f9fxk2q4lq.dns.test").await, name).await,
        ResponseCode::NXDomain
    );
    let udid = "/dns-query/00008101-000A1D2E3F40001E";
    assert_eq!(
        rcode_of(doh(&e, [127, 0, 0, 1], udid).await, name).await,
        ResponseCode::NXDomain
    );
}

#[tokio::test]
async fn a_forwarded_client_subnet_in_mapped_form_names_the_ipv4_device() {
    let e = start(|c| {
        c.identity.trusted_forwarders = vec!["127.0.0.60/32".into()];
        c.identity.accept.extend(["edns-client-subnet".to_string()]);
    })
    .await;
    // the Mac checks in from 127.0.0.46 (bound by the MDM, not by config) and is isolated
    let checkin = checkin("127.0.0.46");
    assert_eq!(webhook(e.cordon.http, &checkin).await.0, 200);
    let added = fixture("smart-group-computer-added.json", &[]);
    assert_eq!(webhook(e.cordon.http, &added).await.0, 200);
    let subnet = |addr: &str| {
        vec![EdnsOption::Subnet(ClientSubnet::new(
            addr.parse::<IpAddr>().unwrap(),
            128,
            0,
        ))]
    };
    let answer = with_options(&e, [127, 0, 0, 60], subnet("::ffff:127.0.0.46")).await;
    assert_eq!(rcode(&answer), ResponseCode::NXDomain);
    assert!(ede(&answer).unwrap().1.contains("group restricted"));
    // the echo is the subnet as the forwarder sent it (RFC 7871 §7.2.1)
    let Some(EdnsOption::Subnet(echoed)) = answer
        .edns
        .as_ref()
        .and_then(|o| o.option(EdnsCode::Subnet).cloned())
    else {
        panic!("echoed: {answer:?}")
    };
    assert_eq!(echoed.source_prefix(), 128);
    assert_eq!(
        echoed.addr(),
        "::ffff:127.0.0.46".parse::<IpAddr>().unwrap()
    );
}

/// `_dns.resolver.arpa` SVCB over plain DNS, as a DDR client asks it: the answer, and its bytes.
async fn ddr_answer(dns: SocketAddr) -> (Message, Vec<u8>) {
    let query = query_message("_dns.resolver.arpa.", RecordType::SVCB, true);
    let raw = exchange_raw(dns, &query.to_vec().unwrap(), Ask::default())
        .await
        .expect("an answer");
    (Message::from_vec(&raw).unwrap(), raw)
}

#[tokio::test]
async fn ddr_designates_the_doh_and_dot_listeners_when_they_are_on() {
    use hickory_proto::rr::rdata::svcb::SvcParamValue;
    use hickory_proto::rr::RData;
    let e = start(|_| {}).await;
    let (answer, raw) = ddr_answer(e.cordon.dns).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    let designated: Vec<(u16, String, Vec<String>, Option<u16>)> = answer
        .answers
        .iter()
        .map(|r| {
            let RData::SVCB(svcb) = &r.data else {
                panic!("not SVCB: {r:?}");
            };
            let alpn = svcb.svc_params.iter().find_map(|(_, v)| match v {
                SvcParamValue::Alpn(a) => Some(a.0.clone()),
                _ => None,
            });
            let port = svcb.svc_params.iter().find_map(|(_, v)| match v {
                SvcParamValue::Port(p) => Some(*p),
                _ => None,
            });
            let target = svcb.target_name.to_string();
            (svcb.svc_priority, target, alpn.unwrap_or_default(), port)
        })
        .collect();
    assert_eq!(
        designated,
        vec![
            (
                1,
                "dns.test.".into(),
                vec!["h2".into()],
                Some(e.doh().port())
            ),
            (
                2,
                "dns.test.".into(),
                vec!["dot".into()],
                Some(e.dot().port())
            ),
        ]
    );
    let dohpath = b"/dns-query{?dns}";
    let paths = raw.windows(dohpath.len()).filter(|w| w == dohpath).count();
    assert_eq!(paths, 1, "the DoH record carries the dohpath");
    // the same over TCP, in any case the client writes the name
    let query = query_message("_DNS.Resolver.ARPA.", RecordType::SVCB, false);
    let tcp = Ask {
        tcp: true,
        ..Ask::default()
    };
    let packet = query.to_vec().unwrap();
    let raw = exchange_raw(e.cordon.dns, &packet, tcp)
        .await
        .expect("an answer");
    let answer = Message::from_vec(&raw).unwrap();
    assert_eq!(answer.answers.len(), 2);
    assert!(
        answer.edns.is_none(),
        "no OPT record for a query without one"
    );
    let question = 12..12 + "_DNS.Resolver.ARPA.".len() + 1 + 4;
    assert_eq!(
        raw[question.clone()],
        packet[question],
        "the question as asked"
    );
}

#[tokio::test]
async fn ddr_is_not_answered_without_encrypted_listeners() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let (answer, _) = ddr_answer(cordon.dns).await;
    assert!(
        answer
            .answers
            .iter()
            .all(|r| r.record_type() != RecordType::SVCB),
        "{answer:?}"
    );
}
