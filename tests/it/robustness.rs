//! Bad input and failing upstreams: clear answers, and the server keeps serving.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::support::*;

async fn still_serving(cordon: &Cordon) {
    assert_eq!(
        addresses(&ask(cordon.dns, "www.allowed.test.").await),
        vec![Ipv4Addr::new(192, 0, 2, 1)]
    );
}

fn header(flags: u16, qd: u16, an: u16) -> Vec<u8> {
    let mut p = vec![0xAB, 0xCD];
    p.extend_from_slice(&flags.to_be_bytes());
    for c in [qd, an, 0, 0] {
        p.extend_from_slice(&c.to_be_bytes());
    }
    p
}

#[tokio::test]
async fn malformed_packets_get_formerr_or_are_dropped() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    for tcp in [false, true] {
        let ask = Ask {
            tcp,
            ..Ask::default()
        };
        // not even a header: dropped
        assert!(exchange_raw(cordon.dns, &[1, 2, 3], ask).await.is_none());
        // a response sent to us: dropped (answering would make us a reflector)
        assert!(exchange_raw(cordon.dns, &header(0x8000, 1, 0), ask)
            .await
            .is_none());
        // no question, two questions, a question that runs off the end, a pointer in the question
        let mut cut = header(0x0100, 1, 0);
        cut.extend_from_slice(b"\x07exam");
        let mut pointer = header(0x0100, 1, 0);
        pointer.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01");
        // ... and a NOTIFY (opcode 4) without its question
        let notify = header(0x2000, 1, 0);
        for packet in [
            header(0x0100, 0, 0),
            header(0x0100, 2, 0),
            cut,
            pointer,
            notify,
        ] {
            let raw = exchange_raw(cordon.dns, &packet, ask)
                .await
                .expect("an answer");
            let answer = Message::from_vec(&raw).unwrap();
            assert_eq!(answer.metadata.id, 0xABCD);
            assert_eq!(rcode(&answer), ResponseCode::FormErr);
        }
        // an opcode we do not serve: UPDATE
        let raw = exchange_raw(cordon.dns, &header(0x2900, 1, 0), ask)
            .await
            .expect("an answer");
        assert_eq!(
            rcode(&Message::from_vec(&raw).unwrap()),
            ResponseCode::NotImp
        );
    }
    still_serving(&cordon).await;
    let (_, metrics) = http(cordon.http, "GET", "/metrics", None).await;
    assert!(
        metrics.contains("cordon_dns_malformed_total 16"),
        "{metrics}"
    );
}

#[tokio::test]
async fn random_bytes_never_stop_the_server() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..2000u32 {
        let len = (i * 7919) as usize % 300;
        let packet: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
        socket.send_to(&packet, cordon.dns).await.unwrap();
    }
    still_serving(&cordon).await;
}

#[tokio::test]
async fn a_dead_upstream_gives_servfail_within_the_timeout() {
    let black_hole = SlowUpstream::black_hole().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[black_hole.addr]);
    let cordon = start_cordon_with(dir, config).await;
    let started = Instant::now();
    let answer = ask(cordon.dns, "www.allowed.test.").await;
    assert_eq!(rcode(&answer), ResponseCode::ServFail);
    assert_eq!(ede(&answer).unwrap().0, 23);
    // the configured timeout is 1 s; the answer must not wait for the client to give up
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert!(black_hole.count() >= 1);
    // blocked names need no upstream at all
    assert_eq!(
        rcode(&ask(cordon.dns, "evil.test.").await),
        ResponseCode::NXDomain
    );
}

#[tokio::test]
async fn a_second_upstream_takes_over_when_the_first_is_down() {
    let upstream = start_upstream().await;
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[closed, upstream.addr]);
    let cordon = start_cordon_with(dir, config).await;
    still_serving(&cordon).await;
}

#[tokio::test]
async fn a_stale_answer_is_served_when_upstream_dies() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let fresh = ask(cordon.dns, "short.allowed.test.").await;
    assert_eq!(addresses(&fresh), vec![Ipv4Addr::new(192, 0, 2, 2)]);
    drop(upstream);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = ask(cordon.dns, "short.allowed.test.").await;
    assert_eq!(rcode(&stale), ResponseCode::NoError);
    assert_eq!(addresses(&stale), vec![Ipv4Addr::new(192, 0, 2, 2)]);
    assert_eq!(
        stale.answers[0].ttl, 30,
        "RFC 8767: stale answers carry a 30 s TTL"
    );
    // a name never cached has nothing stale to give
    assert_eq!(
        rcode(&ask(cordon.dns, "www.allowed.test.").await),
        ResponseCode::ServFail
    );
}

#[tokio::test]
async fn a_stopped_server_lets_go_of_its_udp_port_at_once() {
    let black_hole = SlowUpstream::black_hole().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[black_hole.addr]);
    let cordon = start_cordon_with(dir, config).await;
    let port = cordon.dns;
    assert_eq!(
        rcode(&ask(cordon.dns, "evil.test.").await),
        ResponseCode::NXDomain
    );
    // A query left waiting on the silent upstream when the server stops.
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let packet = query_message("www.allowed.test.", RecordType::A, false)
        .to_vec()
        .unwrap();
    client.send_to(&packet, port).await.unwrap();
    assert!(eventually(Duration::from_secs(2), || async { black_hole.count() >= 1 }).await);
    let Cordon { _running, dir, .. } = cordon;
    drop(_running);
    // Every UDP thread has ended and closed its socket: a socket without SO_REUSEPORT can
    // only bind the port when no other socket holds it.
    let taken = std::net::UdpSocket::bind(port);
    assert!(taken.is_ok(), "port still held: {taken:?}");
    drop(dir);
}

#[tokio::test]
async fn a_server_that_fails_to_start_leaves_no_listener_behind() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    let free = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // The first address binds; the second is not this host's, so the start fails there.
    config.dns.listen = vec![free, "192.0.2.1:53".parse().unwrap()];
    assert!(cordon::app::start(config).await.is_err());
    let taken = std::net::UdpSocket::bind(free);
    assert!(taken.is_ok(), "port still held: {taken:?}");
}
