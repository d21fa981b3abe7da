//! Connection exhaustion, scaled down through `[limits]`: caps that shed the idlest connection,
//! handshake, header, idle and write timeouts, authentication before a body is read, JSON errors
//! whoever produces them, and the cap on upstream exchanges in flight.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::encrypted::{doh, doq, dot, rcode_of, start, tls_client};
use crate::support::*;

/// Long enough never to fire in a test that is not about it.
const LONG_MS: u64 = 60_000;

/// The sum of every series of `name` whose labels contain each of `labels`.
async fn metric_sum(addr: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    let (status, text) = http(addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A TCP connection from `from` that sends nothing.
async fn silent(to: SocketAddr, from: [u8; 4]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((Ipv4Addr::from(from), 0)))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the server has closed `stream` (EOF or a reset) within `within`; data it sent is
/// read and dropped.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn with_the_cap_filled_by_silent_connections_new_clients_are_still_answered() {
    let e = start(|c| {
        c.limits.max_connections = 6;
        c.limits.handshake_timeout_ms = LONG_MS;
        c.limits.idle_timeout_ms = LONG_MS;
    })
    .await;
    let (dns, http_addr) = (e.cordon.dns, e.cordon.http);
    // Six silent connections, to every stream listener, fill the cap.
    let mut held = Vec::new();
    for to in [e.dot(), e.doh(), dns, e.dot(), e.doh(), dns] {
        held.push(silent(to, [127, 0, 0, 1]).await);
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric_sum(http_addr, "cordon_connections_open", &[]).await >= 6.0
        })
        .await
    );
    // A legitimate client of each kind is answered (and stays connected): the idlest silent
    // connection made room each time.
    let name = "www.allowed.test.";
    let dot_client = dot(&e, [127, 0, 0, 1], "dns.test").await;
    assert_eq!(
        rcode_of(dot_client.clone(), name).await,
        ResponseCode::NoError
    );
    let doh_client = doh(&e, [127, 0, 0, 1], "/dns-query").await;
    assert_eq!(
        rcode_of(doh_client.clone(), name).await,
        ResponseCode::NoError
    );
    let tcp = Ask {
        tcp: true,
        ..Ask::default()
    };
    assert_eq!(
        rcode(&ask_with(dns, name, RecordType::A, tcp).await),
        ResponseCode::NoError
    );
    let shed = metric_sum(
        http_addr,
        "cordon_connections_shed_total",
        &["reason=\"global_cap\""],
    )
    .await;
    assert!(shed >= 3.0, "{shed}");
    // The two clients still hold their connections, the cap holds, and the oldest silent
    // connection was the first to go.
    assert_eq!(rcode_of(dot_client, name).await, ResponseCode::NoError);
    assert_eq!(rcode_of(doh_client, name).await, ResponseCode::NoError);
    let open = metric_sum(http_addr, "cordon_connections_open", &["listener=\"d"]).await
        + metric_sum(http_addr, "cordon_connections_open", &["listener=\"tcp\""]).await;
    assert!(open <= 6.0, "{open}");
    assert!(closed_within(&mut held[0], Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_per_client_cap_sheds_that_clients_idlest_connection() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    config.limits.max_connections_per_client = 3;
    config.limits.idle_timeout_ms = LONG_MS;
    let cordon = start_cordon_with(dir, config).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(silent(cordon.dns, [127, 0, 0, 7]).await);
    }
    let other = silent(cordon.dns, [127, 0, 0, 8]).await;
    // The client's two oldest connections are closed; the others stay.
    for stream in &mut held[..2] {
        assert!(closed_within(stream, Duration::from_secs(5)).await);
    }
    for stream in &mut held[2..] {
        assert!(!closed_within(stream, Duration::from_millis(300)).await);
    }
    let mut other = other;
    assert!(!closed_within(&mut other, Duration::from_millis(300)).await);
    assert!(
        metric_sum(
            cordon.http,
            "cordon_connections_shed_total",
            &["reason=\"client_cap\""]
        )
        .await
            >= 2.0
    );
}

#[tokio::test]
async fn a_silent_tls_connection_is_closed_after_the_handshake_timeout() {
    let e = start(|c| {
        c.limits.handshake_timeout_ms = 1000;
        c.limits.idle_timeout_ms = LONG_MS;
        c.limits.header_timeout_ms = LONG_MS;
    })
    .await;
    for to in [e.dot(), e.doh()] {
        let mut stream = silent(to, [127, 0, 0, 1]).await;
        assert!(
            closed_within(&mut stream, Duration::from_secs(4)).await,
            "{to}"
        );
    }
    assert!(
        metric_sum(
            e.cordon.http,
            "cordon_connections_timed_out_total",
            &["reason=\"handshake\""]
        )
        .await
            >= 2.0
    );
}

#[tokio::test]
async fn a_slow_header_doh_client_is_closed_after_the_header_timeout() {
    let e = start(|c| {
        c.limits.header_timeout_ms = 1000;
        c.limits.idle_timeout_ms = LONG_MS;
    })
    .await;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_client(&e.ca, b"http/1.1")));
    let tcp = TcpStream::connect(e.doh()).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("dns.test").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /dns-query?dns=AAAA HTTP/1.1\r\nHost: dns.test\r\n")
        .await
        .unwrap();
    // One header line every 300 ms: the head never ends.
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    let mut closed = false;
    let mut buf = [0u8; 512];
    while tokio::time::Instant::now() < until {
        if tls.write_all(b"X-Slow: yes\r\n").await.is_err() {
            closed = true;
            break;
        }
        match tokio::time::timeout(Duration::from_millis(300), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            // A 408 or the like before the close is fine.
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    assert!(closed, "the slow client is still connected");
    assert!(
        metric_sum(
            e.cordon.http,
            "cordon_connections_timed_out_total",
            &["listener=\"doh\"", "reason=\"header\""]
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_tcp_client_that_pipelines_and_never_reads_is_closed() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    config.limits.write_timeout_ms = 1000;
    config.limits.idle_timeout_ms = 1000;
    let cordon = start_cordon_with(dir, config).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(cordon.dns).await.unwrap();
    let query = query_message("big.allowed.test.", RecordType::TXT, true)
        .to_vec()
        .unwrap();
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    let batch = framed.repeat(50);
    // Queries keep coming, answers are never read: the server must give up on the client.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut closed = false;
    while tokio::time::Instant::now() < until {
        let wrote =
            tokio::time::timeout(Duration::from_millis(200), stream.write_all(&batch)).await;
        if let Ok(Err(_)) = wrote {
            closed = true;
            break;
        }
    }
    assert!(closed, "the connection that never reads is still open");
    assert!(
        metric_sum(
            cordon.http,
            "cordon_connections_timed_out_total",
            &["listener=\"tcp\""]
        )
        .await
            >= 1.0
    );
}

/// Sends a request head (no body) and reads the answer, or None when nothing came within 3 s.
async fn head_only(addr: SocketAddr, head: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    let read = async {
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&response);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .and_then(|n| n.trim().parse::<usize>().ok())
                });
                if length.is_some_and(|n| body.len() >= n) {
                    break;
                }
            }
        }
        response
    };
    let response = tokio::time::timeout(Duration::from_secs(3), read)
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

#[tokio::test]
async fn an_unauthenticated_body_is_refused_before_it_is_read() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let heads = [
        "POST /webhooks/jamf HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
        "POST /webhooks/jamf HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
        "PUT /v1/devices/serial:X/groups HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
        "POST /v1/devices/serial:X/isolation HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
    ];
    for head in heads {
        let (status, body) = head_only(cordon.http, head.as_bytes())
            .await
            .unwrap_or_else(|| panic!("no answer without the body: {head:.50}"));
        assert_json_error(status, &body, 401);
    }
    // An authenticated body too large to take is refused from its Content-Length, at once.
    let head = format!(
        "POST /webhooks/jamf HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WEBHOOK}\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n"
    );
    let (status, body) = head_only(cordon.http, head.as_bytes())
        .await
        .expect("an answer without the body");
    assert_json_error(status, &body, 413);
    // and DNS is served all along
    assert_eq!(
        rcode(&ask(cordon.dns, "evil.test.").await),
        ResponseCode::NXDomain
    );
}

#[tokio::test]
async fn an_authenticated_body_that_never_comes_times_out_with_a_json_error() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    config.limits.http_body_timeout_ms = 1000;
    let cordon = start_cordon_with(dir, config).await;
    let head = format!(
        "POST /webhooks/jamf HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WEBHOOK}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    let (status, body) = head_only(cordon.http, head.as_bytes())
        .await
        .expect("an answer once the body timed out");
    assert_json_error(status, &body, 408);
}

#[tokio::test]
async fn every_http_error_has_a_json_body() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let long = format!(
        "GET /v1/devices/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(100_000)
    );
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: b\r\n\r\n".to_vec(),
            400,
        ),
        (long.into_bytes(), 414),
        (
            format!(
                "GET /v1/devices/%FF HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {VIEWER}\r\n\r\n"
            )
            .into_bytes(),
            400,
        ),
    ];
    for (request, expected) in cases {
        let (status, body) = head_only(cordon.http, &request)
            .await
            .unwrap_or_else(|| panic!("no answer: {:.40}", String::from_utf8_lossy(&request)));
        assert_json_error(status, &body, expected);
    }
    // the listener still serves, and counted every answer, hyper's own included
    assert_eq!(http(cordon.http, "GET", "/healthz", None).await.0, 200);
    assert_eq!(
        metric(cordon.http, "cordon_http_responses_total{code=\"414\"}").await,
        1.0
    );
    assert_eq!(
        metric(cordon.http, "cordon_http_responses_total{code=\"400\"}").await,
        3.0
    );
}

#[tokio::test]
async fn the_http_listener_sheds_its_idlest_connection_at_its_cap() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    config.limits.http_max_connections = 4;
    config.limits.http_idle_timeout_ms = LONG_MS;
    config.limits.http_header_timeout_ms = LONG_MS;
    let cordon = start_cordon_with(dir, config).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(silent(cordon.http, [127, 0, 0, 1]).await);
    }
    assert_eq!(http(cordon.http, "GET", "/healthz", None).await.0, 200);
    assert!(closed_within(&mut held[0], Duration::from_secs(5)).await);
    assert!(
        metric_sum(
            cordon.http,
            "cordon_connections_shed_total",
            &["listener=\"http\""]
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn the_doq_connection_cap_holds() {
    let e = start(|c| {
        c.limits.max_connections = 2;
        c.limits.idle_timeout_ms = LONG_MS;
    })
    .await;
    let name = "www.allowed.test.";
    let mut clients = Vec::new();
    for _ in 0..4 {
        let client = doq(&e, "dns.test").await;
        assert_eq!(rcode_of(client.clone(), name).await, ResponseCode::NoError);
        clients.push(client);
    }
    let http_addr = e.cordon.http;
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric_sum(http_addr, "cordon_connections_open", &["listener=\"doq\""]).await <= 2.0
        })
        .await
    );
    assert!(
        metric_sum(
            http_addr,
            "cordon_connections_shed_total",
            &["listener=\"doq\""]
        )
        .await
            >= 2.0
    );
}

#[tokio::test]
async fn past_the_in_flight_cap_a_dead_upstream_costs_servfail_at_once() {
    let black_hole = SlowUpstream::black_hole().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[black_hole.addr]);
    config.upstream.timeout_ms = 10_000;
    config.limits.upstream_max_in_flight = 2;
    let cordon = start_cordon_with(dir, config).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..10 {
        let query = query_message(&format!("n{i}.allowed.test."), RecordType::A, true);
        socket
            .send_to(&query.to_vec().unwrap(), cordon.dns)
            .await
            .unwrap();
    }
    // Eight answers come well before the upstream timeout: SERVFAIL with EDE 23.
    let mut buf = vec![0u8; 4096];
    for _ in 0..8 {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("an answer before the upstream timeout")
            .unwrap();
        let answer = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(rcode(&answer), ResponseCode::ServFail);
        assert_eq!(ede(&answer).map(|e| e.0), Some(23));
    }
    assert!(black_hole.count() <= 2, "{}", black_hole.count());
    assert_eq!(
        metric_sum(cordon.http, "cordon_upstream_shed_total", &[]).await,
        8.0
    );
}
