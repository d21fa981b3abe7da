//! Answers as exact as Unbound's: each test reproduces a difference found by asking Cordon and
//! Unbound the same questions about the same zones.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

/// Starts Cordon forwarding to `upstream`.
async fn cordon_for(upstream: std::net::SocketAddr) -> Cordon {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[upstream]);
    start_cordon_with(dir, config).await
}

/// What some servers send over UDP for a big answer: the header alone, TC set, no question.
fn truncated_header_alone(query: &[u8]) -> Vec<u8> {
    let mut header = query[..12].to_vec();
    header[2] = 0x80 | 0x02 | (query[2] & 0x01);
    header[3] = 0x80;
    header[4..12].fill(0);
    header
}

#[tokio::test]
async fn a_truncated_udp_answer_without_a_question_is_retried_over_tcp() {
    let upstream = Scripted::start(Arc::new(|query: &[u8], tcp| {
        if tcp {
            let a = a_record("trunc.allowed.test.", 60, [192, 0, 2, 9]);
            return Some(reply_to(query, vec![a], vec![]).to_vec().unwrap());
        }
        Some(truncated_header_alone(query))
    }))
    .await;
    // Retried over TCP at once, not when the upstream deadline ends: with a deadline far past
    // the client's patience (2 s), only an immediate retry answers the client at all.
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    config.upstream.timeout_ms = 30_000;
    let cordon = start_cordon_with(dir, config).await;
    let answer = ask(cordon.dns, "trunc.allowed.test.").await;
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    assert_eq!(addresses(&answer), vec![Ipv4Addr::new(192, 0, 2, 9)]);
}

#[tokio::test]
async fn a_nodata_behind_a_cname_is_cached_for_the_soas_negative_ttl() {
    // A NODATA behind a CNAME: the CNAME says 3600 s, the SOA's negative TTL is 1 s.
    let upstream = Scripted::start(Arc::new(|query: &[u8], _| {
        let chain = cname_record("nodata.test.", 3600, "www.allowed.test.");
        let mut m = reply_to(query, vec![chain], vec![]);
        m.authorities.push(soa_record(1, 1));
        Some(m.to_vec().unwrap())
    }))
    .await;
    let cordon = cordon_for(upstream.addr).await;
    let first = ask_with(cordon.dns, "nodata.test.", RecordType::TXT, Ask::default()).await;
    assert_eq!(rcode(&first), ResponseCode::NoError);
    assert_eq!(first.answers.len(), 1, "the CNAME");
    assert_eq!(first.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(first.authorities.len(), 1, "the SOA");
    assert!(first.authorities[0].ttl <= 1);
    let misses = || metric(cordon.http, "cordon_cache_misses_total");
    let misses0 = misses().await;
    let refetched = eventually(Duration::from_secs(4), || async {
        ask_with(cordon.dns, "nodata.test.", RecordType::TXT, Ask::default()).await;
        misses().await > misses0
    })
    .await;
    assert!(
        refetched,
        "the NODATA expires with the SOA's negative TTL, not the CNAME's TTL"
    );
}

/// A raw query: `flags` as the header's second word, one question, an OPT record when `edns`.
fn raw_query(id: u16, flags: u16, qname: &[u8], qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&flags.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, edns.is_some() as u8]);
    p.extend_from_slice(qname);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    if let Some(size) = edns {
        p.extend_from_slice(&[0, 0, 41]);
        p.extend_from_slice(&size.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    p
}

const WWW_ALLOWED: &[u8] = b"\x03www\x07allowed\x04test\x00";

#[tokio::test]
async fn an_unsupported_opcode_gets_notimp_with_its_opcode_question_and_opt() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    // dig +opcode=status: opcode 2, RD, EDNS.
    let packet = raw_query(0x4242, 0x1100, WWW_ALLOWED, 1, Some(1232));
    let raw = exchange_raw(cordon.dns, &packet, Ask::default())
        .await
        .expect("an answer");
    let m = hickory_proto::op::Message::from_vec(&raw).expect("a well-formed answer");
    assert_eq!(m.metadata.id, 0x4242);
    assert_eq!(rcode(&m), ResponseCode::NotImp);
    assert_eq!(m.metadata.op_code, hickory_proto::op::OpCode::Status);
    assert_eq!(m.queries.len(), 1, "the question comes back");
    assert_eq!(&raw[12..12 + WWW_ALLOWED.len()], WWW_ALLOWED);
    assert!(
        m.edns.is_some(),
        "the query had an OPT record, so has the answer"
    );
}

#[tokio::test]
async fn cd_comes_from_the_query_and_ad_only_when_asked_for() {
    // An upstream that validated: AD set, and CD cleared whatever the query said.
    let upstream = Scripted::start(Arc::new(|query: &[u8], _| {
        let name = hickory_proto::op::Message::from_vec(query).unwrap().queries[0]
            .name()
            .to_string();
        let a = a_record(&name, 60, [192, 0, 2, 77]);
        let mut m = reply_to(query, vec![a], vec![]);
        m.metadata.authentic_data = true;
        m.metadata.checking_disabled = false;
        Some(m.to_vec().unwrap())
    }))
    .await;
    let cordon = cordon_for(upstream.addr).await;
    let flags = |raw: &[u8]| {
        let m = hickory_proto::op::Message::from_vec(raw).unwrap();
        assert_eq!(addresses(&m), vec![Ipv4Addr::new(192, 0, 2, 77)]);
        (m.metadata.checking_disabled, m.metadata.authentic_data)
    };
    let name = b"\x02ad\x07allowed\x04test\x00";
    // Twice each: from upstream, then from the cache.
    for _ in 0..2 {
        let cd = raw_query(1, 0x0110, name, 1, Some(1232));
        let raw = exchange_raw(cordon.dns, &cd, Ask::default()).await.unwrap();
        assert_eq!(flags(&raw), (true, false), "CD as asked; no AD unasked");
        let plain = raw_query(2, 0x0100, name, 1, Some(1232));
        let raw = exchange_raw(cordon.dns, &plain, Ask::default())
            .await
            .unwrap();
        assert_eq!(flags(&raw), (false, false), "no CD, no AD unasked");
        let ad = raw_query(3, 0x0120, name, 1, Some(1232));
        let raw = exchange_raw(cordon.dns, &ad, Ask::default()).await.unwrap();
        assert_eq!(
            flags(&raw),
            (false, true),
            "AD asked for, upstream validated"
        );
    }
}

#[tokio::test]
async fn an_answer_that_fits_without_its_additional_records_is_not_truncated() {
    // 20 A records (about 340 bytes), then 12 NS records in the authority section and 12
    // additional records that take it past 512.
    let upstream = Scripted::start(Arc::new(|query: &[u8], _| {
        let answers = (0..20)
            .map(|i| a_record("many.allowed.test.", 60, [192, 0, 2, i]))
            .collect();
        let server = |i| format!("ns{i}.some-long-name-server.allowed.test.");
        let additionals = (0..12)
            .map(|i| a_record(&server(i), 60, [198, 51, 100, i]))
            .collect();
        let mut m = reply_to(query, answers, additionals);
        for i in 0..12 {
            let ns = hickory_proto::rr::rdata::NS(server(i).parse().unwrap());
            m.authorities.push(hickory_proto::rr::Record::from_rdata(
                "allowed.test.".parse().unwrap(),
                60,
                hickory_proto::rr::RData::NS(ns),
            ));
        }
        Some(m.to_vec().unwrap())
    }))
    .await;
    let cordon = cordon_for(upstream.addr).await;
    let plain = Ask {
        edns: false,
        ..Ask::default()
    };
    for _ in 0..2 {
        let m = ask_with(cordon.dns, "many.allowed.test.", RecordType::A, plain).await;
        assert!(!m.metadata.truncation, "the answer section fits in 512");
        assert_eq!(m.answers.len(), 20);
        assert!(
            m.authorities.is_empty(),
            "the authority section did not fit"
        );
        assert!(m.additionals.is_empty());
    }
}

#[tokio::test]
async fn meta_query_types_are_refused_and_never_forwarded() {
    let slow = SlowUpstream::start(Duration::from_millis(0)).await;
    let cordon = cordon_for(slow.addr).await;
    for qtype in [41u16, 128, 200, 249, 250, 253, 254] {
        let packet = raw_query(7, 0x0100, WWW_ALLOWED, qtype, Some(1232));
        let raw = exchange_raw(cordon.dns, &packet, Ask::default())
            .await
            .expect("an answer");
        let m = hickory_proto::op::Message::from_vec(&raw).unwrap();
        assert!(
            matches!(rcode(&m), ResponseCode::FormErr | ResponseCode::NotImp),
            "qtype {qtype}: {:?}",
            rcode(&m)
        );
        assert_eq!(m.queries.len(), 1, "qtype {qtype}: the question comes back");
    }
    assert_eq!(slow.count(), 0, "no meta query went upstream");
}

#[tokio::test]
async fn a_query_without_rd_is_answered_from_the_cache_or_refused() {
    let slow = SlowUpstream::start(Duration::from_millis(0)).await;
    let cordon = cordon_for(slow.addr).await;
    let no_rd = raw_query(8, 0x0000, WWW_ALLOWED, 1, Some(1232));
    let raw = exchange_raw(cordon.dns, &no_rd, Ask::default())
        .await
        .unwrap();
    let m = hickory_proto::op::Message::from_vec(&raw).unwrap();
    assert_eq!(rcode(&m), ResponseCode::Refused, "not cached: no recursion");
    assert!(!m.metadata.recursion_desired);
    assert_eq!(slow.count(), 0);
    let cached = ask(cordon.dns, "www.allowed.test.").await;
    assert_eq!(addresses(&cached), vec![Ipv4Addr::new(198, 51, 100, 7)]);
    assert_eq!(slow.count(), 1);
    let raw = exchange_raw(cordon.dns, &no_rd, Ask::default())
        .await
        .unwrap();
    let m = hickory_proto::op::Message::from_vec(&raw).unwrap();
    assert_eq!(rcode(&m), ResponseCode::NoError, "cached: answered");
    assert_eq!(addresses(&m), vec![Ipv4Addr::new(198, 51, 100, 7)]);
    assert_eq!(slow.count(), 1);
}

#[tokio::test]
async fn additional_records_for_names_outside_the_answer_are_dropped() {
    // An allowed answer carrying an A record for a blocked name (evil.test) and an unrelated one.
    let upstream = Scripted::start(Arc::new(|query: &[u8], _| {
        let a = a_record("www.allowed.test.", 60, [192, 0, 2, 1]);
        let extra = vec![
            a_record("evil.test.", 3600, [192, 0, 2, 66]),
            a_record("elsewhere.test.", 3600, [192, 0, 2, 99]),
        ];
        Some(reply_to(query, vec![a], extra).to_vec().unwrap())
    }))
    .await;
    let cordon = cordon_for(upstream.addr).await;
    for _ in 0..2 {
        let m = ask(cordon.dns, "www.allowed.test.").await;
        assert_eq!(addresses(&m), vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert!(m.additionals.is_empty(), "{:?}", m.additionals);
        assert!(m.edns.is_some(), "the OPT record stays");
    }
}

#[tokio::test]
async fn a_client_outside_dns_allow_is_refused_with_ede_and_counted() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    config.dns.allow = vec!["10.0.0.0/8".into(), "127.0.0.2/32".into()];
    let cordon = start_cordon_with(dir, config).await;
    for tcp in [false, true] {
        let ask = Ask {
            tcp,
            ..Ask::default()
        };
        let m = ask_with(cordon.dns, "www.allowed.test.", RecordType::A, ask).await;
        assert_eq!(rcode(&m), ResponseCode::Refused, "tcp: {tcp}");
        assert!(m.answers.is_empty());
        assert_eq!(ede(&m).map(|e| e.0), Some(18), "EDE Prohibited");
    }
    let inside = ask_from(cordon.dns, [127, 0, 0, 2], "www.allowed.test.").await;
    assert_eq!(addresses(&inside), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(
        metric(cordon.http, "cordon_dns_refused_clients_total").await,
        2.0
    );
}

#[tokio::test]
async fn udp_answers_are_capped_at_max_udp_size_whatever_the_clients_edns_size() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    // About 2,100 bytes of TXT records; the client offers 4096, Cordon's cap is 1232.
    let name = b"\x03big\x07allowed\x04test\x00";
    let raw = exchange_raw(
        cordon.dns,
        &raw_query(9, 0x0100, name, 16, Some(4096)),
        Ask::default(),
    )
    .await
    .unwrap();
    let m = hickory_proto::op::Message::from_vec(&raw).unwrap();
    assert!(raw.len() <= 1232, "{} bytes", raw.len());
    assert!(m.metadata.truncation, "too big for 1232: TC");
    let tcp = Ask {
        tcp: true,
        ..Ask::default()
    };
    let whole = ask_with(cordon.dns, "big.allowed.test.", RecordType::TXT, tcp).await;
    assert_eq!(whole.answers.len(), 40);
}

#[tokio::test]
async fn any_is_answered_with_one_synthesised_hinfo() {
    let slow = SlowUpstream::start(Duration::from_millis(0)).await;
    let cordon = cordon_for(slow.addr).await;
    let m = ask_with(
        cordon.dns,
        "www.allowed.test.",
        RecordType::ANY,
        Ask::default(),
    )
    .await;
    assert_eq!(rcode(&m), ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1);
    match &m.answers[0].data {
        hickory_proto::rr::RData::HINFO(h) => {
            assert_eq!(&h.cpu[..], b"RFC8482");
            assert!(h.os.is_empty());
        }
        other => panic!("not a HINFO: {other:?}"),
    }
    assert_eq!(m.answers[0].ttl, 300, "capped by the policy's max_ttl");
    assert_eq!(slow.count(), 0, "ANY is not forwarded");
    let blocked = ask_with(cordon.dns, "evil.test.", RecordType::ANY, Ask::default()).await;
    assert_eq!(
        rcode(&blocked),
        ResponseCode::NXDomain,
        "a blocked name stays blocked"
    );
}

#[tokio::test]
async fn answers_over_the_rate_are_dropped_or_slipped_per_client_prefix() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    config.dns.rrl_responses_per_second = 5;
    config.dns.rrl_slip = 2;
    config.dns.rrl_exempt = vec![];
    let cordon = start_cordon_with(dir, config).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let name = b"\x04evil\x04test\x00";
    for id in 0..20u16 {
        let q = raw_query(id, 0x0100, name, 1, Some(1232));
        socket.send_to(&q, cordon.dns).await.unwrap();
    }
    let (mut full, mut slipped) = (0, 0);
    let mut buf = vec![0; 2048];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf)).await
    {
        let m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
        if m.metadata.truncation {
            assert!(m.answers.is_empty() && m.authorities.is_empty());
            slipped += 1;
        } else {
            assert_eq!(rcode(&m), ResponseCode::NXDomain);
            full += 1;
        }
    }
    // 5 a second; the 20 may straddle a second's end.
    assert!((5..=10).contains(&full), "{full} full answers");
    assert!(slipped >= 1, "every second limited answer slips");
    assert!(full + slipped < 20, "the rest are dropped");
    let limited = metric(
        cordon.http,
        "cordon_dns_rate_limited_total{action=\"dropped\"}",
    )
    .await
        + metric(
            cordon.http,
            "cordon_dns_rate_limited_total{action=\"slipped\"}",
        )
        .await;
    assert_eq!(limited as usize, 20 - full);
    // TCP is not limited: a client that got TC retries there.
    let tcp = Ask {
        tcp: true,
        ..Ask::default()
    };
    let m = ask_with(cordon.dns, "evil.test.", RecordType::A, tcp).await;
    assert_eq!(rcode(&m), ResponseCode::NXDomain);
}

/// An upstream answer of exactly 65,535 bytes (the most a stream can frame) to any query: the
/// header, the question and TXT records filling the rest, written by hand (hickory's encoder
/// stops short of the limit).
fn answer_of_65535_bytes(query: &[u8]) -> Vec<u8> {
    let mut m = reply_to(query, vec![], vec![]);
    m.edns = None;
    let mut answer = m.to_vec().unwrap();
    let mut count = 0u16;
    // One TXT record owned by the question's name (pointer 0xC00C) with `text` bytes of text.
    let mut push = |answer: &mut Vec<u8>, text: usize| {
        answer.extend_from_slice(&[0xC0, 0x0C, 0, 16, 0, 1, 0, 0, 0, 60]);
        answer.extend_from_slice(&((text + 1) as u16).to_be_bytes());
        answer.push(text as u8);
        answer.extend(std::iter::repeat_n(b'x', text));
        count += 1;
    };
    while 65_535 - answer.len() >= 268 + 14 {
        push(&mut answer, 255);
    }
    let rest = 65_535 - answer.len() - 13;
    push(&mut answer, rest);
    answer[6..8].copy_from_slice(&count.to_be_bytes());
    assert_eq!(answer.len(), 65_535);
    answer
}

#[tokio::test]
async fn a_stream_answer_that_the_client_subnet_echo_would_push_past_64_kib_still_frames() {
    // Upstream: a TC header over UDP, the biggest possible answer over TCP.
    let upstream = Scripted::start(Arc::new(|query: &[u8], tcp| {
        if tcp {
            return Some(answer_of_65535_bytes(query));
        }
        Some(truncated_header_alone(query))
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    config.identity.trusted_forwarders = vec!["127.0.0.0/8".into()];
    config.identity.accept.push("edns-client-subnet".into());
    let cordon = start_cordon_with(dir, config).await;
    // A trusted forwarder asks over TCP with a client subnet, which the answer must echo.
    use hickory_proto::op::{Edns, Message};
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
    let mut q = query_message("big.allowed.test.", RecordType::TXT, false);
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    let subnet = ClientSubnet::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 9, 8, 0)), 24, 0);
    edns.options_mut().insert(EdnsOption::Subnet(subnet));
    q.set_edns(edns);
    let tcp = Ask {
        tcp: true,
        ..Ask::default()
    };
    let raw = exchange_raw(cordon.dns, &q.to_vec().unwrap(), tcp)
        .await
        .expect("an answer over TCP");
    assert!(raw.len() <= 65_535, "{} bytes", raw.len());
    let answer = Message::from_vec(&raw).expect("a whole DNS message, framed right");
    assert_eq!(answer.metadata.id, q.metadata.id);
    assert_eq!(answer.queries, q.queries);
}
