//! Forwarding and caching: what an allowed query gets back.

use std::net::Ipv4Addr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

#[tokio::test]
async fn allowed_answer_equals_the_upstreams_over_udp_and_tcp() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    for tcp in [false, true] {
        let ask = Ask {
            tcp,
            ..Ask::default()
        };
        let direct = ask_with(upstream.addr, "www.allowed.test.", RecordType::A, ask).await;
        let via = ask_with(cordon.dns, "www.allowed.test.", RecordType::A, ask).await;
        assert_eq!(rcode(&via), ResponseCode::NoError);
        assert_eq!(addresses(&via), addresses(&direct));
        assert_eq!(addresses(&via), vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert!(via.metadata.recursion_available);
    }
}

#[tokio::test]
async fn the_clients_id_and_question_case_come_back_from_upstream_and_from_cache() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let hits = || metric(cordon.http, "cordon_cache_hits_total");
    let hits0 = hits().await;
    for (hit, (id, spelling)) in [
        (0x1111u16, b"\x03www\x07allowed\x04test\x00"),
        (0x2222, b"\x03WwW\x07AlLoWeD\x04TeSt\x00"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut packet = id.to_be_bytes().to_vec();
        packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        packet.extend_from_slice(spelling);
        packet.extend_from_slice(&[0, 1, 0, 1]);
        let raw = exchange_raw(cordon.dns, &packet, Ask::default())
            .await
            .expect("an answer");
        assert_eq!(raw[..2], id.to_be_bytes());
        assert_eq!(
            &raw[12..12 + spelling.len()],
            spelling,
            "the question comes back as asked"
        );
        let answer = hickory_proto::op::Message::from_vec(&raw).unwrap();
        assert_eq!(addresses(&answer), vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert_eq!(
            hits().await,
            hits0 + hit as f64,
            "the first answer from upstream, the second from the cache"
        );
    }
}

#[tokio::test]
async fn ttl_is_capped_by_the_policys_max_ttl() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let hits = || metric(cordon.http, "cordon_cache_hits_total");
    let hits0 = hits().await;
    // standard caps at 300 s, the upstream says 3600 s
    let standard = ask(cordon.dns, "x.mdm.test.").await;
    assert_eq!(standard.answers[0].ttl, 300);
    assert_eq!(hits().await, hits0, "from upstream");
    // isolation caps at 60 s: the same cached answer is capped per asker
    let isolated = ask_from(cordon.dns, [127, 0, 0, 3], "x.mdm.test.").await;
    assert_eq!(addresses(&isolated), vec![Ipv4Addr::new(192, 0, 2, 50)]);
    assert_eq!(isolated.answers[0].ttl, 60);
    assert_eq!(hits().await, hits0 + 1.0, "from the cache");
    let again = ask(cordon.dns, "x.mdm.test.").await;
    assert_eq!(again.answers[0].ttl, 300);
    assert_eq!(hits().await, hits0 + 2.0, "from the cache");
}

#[tokio::test]
async fn negative_answers_come_through_with_the_upstreams_soa() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    for _ in 0..2 {
        let answer = ask(cordon.dns, "missing.allowed.test.").await;
        assert_eq!(rcode(&answer), ResponseCode::NXDomain);
        assert_eq!(answer.authorities.len(), 1);
        assert_eq!(answer.authorities[0].name.to_string(), "test.");
    }
}

#[tokio::test]
async fn an_answer_too_big_for_udp_is_truncated_and_whole_over_tcp() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let plain = Ask {
        edns: false,
        ..Ask::default()
    };
    let udp = ask_with(cordon.dns, "big.allowed.test.", RecordType::TXT, plain).await;
    assert!(
        udp.metadata.truncation,
        "no EDNS: 512 bytes at most, so TC is set"
    );
    assert!(udp.answers.is_empty());
    let tcp = ask_with(
        cordon.dns,
        "big.allowed.test.",
        RecordType::TXT,
        Ask { tcp: true, ..plain },
    )
    .await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 40);
    assert!(
        tcp.edns.is_none(),
        "a client without EDNS gets no OPT record back"
    );
}

#[tokio::test]
async fn identical_questions_in_flight_go_upstream_once() {
    let slow = SlowUpstream::start(Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[slow.addr]);
    let cordon = start_cordon_with(dir, config).await;
    let asks = (0..8).map(|_| ask(cordon.dns, "same.allowed.test."));
    let answers = futures_join_all(asks).await;
    for a in &answers {
        assert_eq!(addresses(a), vec![Ipv4Addr::new(198, 51, 100, 7)]);
    }
    assert_eq!(slow.count(), 1, "eight clients asked, upstream heard once");
}

async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
