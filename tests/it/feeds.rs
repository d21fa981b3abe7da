//! RPZ feeds by zone transfer: Knot DNS as the primary (AXFR, IXFR from its journal, NOTIFY,
//! TSIG), and for the one answer Knot never gives, an IXFR with a gap, a small primary of the
//! test's own. Assertions are on DNS answers through Cordon, its `/metrics` and its log.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use crate::knot::{Knot, KnotOptions, Tsig};
use crate::support::*;

const ZONE: &str = "rpz.test";

/// The upstream answers every name the tests ask, so that "not blocked" is NOERROR.
async fn upstream() -> Upstream {
    let mut records = test_zone();
    for n in [
        "bad1", "x.bad2", "ok.bad2", "bad3", "fine", "gapadd", "axfr5", "kept",
    ] {
        records.push(a_record(&format!("{n}.feed.test."), 300, [192, 0, 2, 99]));
    }
    start_upstream_with(records).await
}

/// `[[feed]]` for `primary`, with a key if given.
fn feed_config(
    name: &str,
    zone: &str,
    primary: SocketAddr,
    key: Option<&Tsig>,
    refresh_s: u32,
) -> String {
    let mut text = format!(
        "[[feed]]\nname = \"{name}\"\nprimary = \"{primary}\"\nzone = \"{zone}\"\n\
         category = \"malware\"\nrefresh_s = {refresh_s}\ntimeout_ms = 5000\n"
    );
    if let Some(k) = key {
        text.push_str(&format!(
            "[feed.tsig]\nname = \"{}\"\nsecret = \"{}\"\n",
            k.name, k.secret
        ));
    }
    text
}

async fn blocked(dns: SocketAddr, name: &str) -> bool {
    ask(dns, name).await.metadata.response_code == ResponseCode::NXDomain
}

async fn resolves(dns: SocketAddr, name: &str) -> bool {
    let m = ask(dns, name).await;
    m.metadata.response_code == ResponseCode::NoError && !m.answers.is_empty()
}

fn series(name: &str, labels: &str) -> String {
    format!("{name}{{{labels}}}")
}

#[tokio::test]
async fn a_feed_is_transferred_with_tsig_then_followed_by_notify_and_ixfr() {
    let key = Tsig::random("cordon-xfr");
    let mut knot = KnotOptions::new(ZONE)
        .records(
            "bad1.feed.test CNAME .\n\
             *.bad2.feed.test CNAME .\n\
             ok.bad2.feed.test CNAME rpz-passthru.\n\
             32.1.2.0.192.rpz-ip CNAME .\n\
             ns.evil.test.rpz-nsdname CNAME .\n",
        )
        .tsig(key.clone())
        .start()
        .await;
    let upstream = upstream().await;
    // A refresh far away: only the NOTIFY brings the change in.
    let cordon = Binary::start(
        upstream.addr,
        &feed_config("threats", ZONE, knot.addr, Some(&key), 3600),
    )
    .await;
    let dns = cordon.dns;
    assert!(
        eventually(Duration::from_secs(20), || blocked(dns, "bad1.feed.test")).await,
        "the AXFR never came in force: {}",
        cordon.log_text()
    );
    assert!(blocked(dns, "x.bad2.feed.test").await);
    assert!(blocked(dns, "deep.x.bad2.feed.test").await);
    assert!(
        resolves(dns, "ok.bad2.feed.test").await,
        "rpz-passthru is an exception"
    );
    assert!(resolves(dns, "fine.feed.test").await);
    let m = cordon.http;
    let feed = "feed=\"threats\"";
    assert_eq!(metric(m, &series("cordon_feed_entries", feed)).await, 3.0);
    assert_eq!(
        metric(m, &series("cordon_feed_serial", feed)).await,
        f64::from(knot.serial())
    );
    let axfr_ok = series(
        "cordon_feed_transfers_total",
        "feed=\"threats\",kind=\"axfr\",result=\"ok\"",
    );
    assert_eq!(metric(m, &axfr_ok).await, 1.0);
    let skipped = series(
        "cordon_feed_skipped_records_total",
        "feed=\"threats\",reason=\"unsupported_rule\"",
    );
    assert_eq!(
        metric(m, &skipped).await,
        2.0,
        "the IP and NSDNAME triggers"
    );

    knot.notify_to(dns);
    let serial = knot
        .set_zone(
            "*.bad2.feed.test CNAME .\n\
             ok.bad2.feed.test CNAME rpz-passthru.\n\
             bad3.feed.test CNAME .\n\
             32.1.2.0.192.rpz-ip CNAME .\n",
        )
        .await;
    assert!(
        eventually(Duration::from_secs(10), || blocked(dns, "bad3.feed.test")).await,
        "the NOTIFY and IXFR never came in force: {}",
        cordon.log_text()
    );
    assert!(
        resolves(dns, "bad1.feed.test").await,
        "a deleted trigger is gone"
    );
    assert!(blocked(dns, "x.bad2.feed.test").await);
    assert_eq!(
        metric(m, &series("cordon_feed_serial", feed)).await,
        f64::from(serial)
    );
    let ixfr_ok = series(
        "cordon_feed_transfers_total",
        "feed=\"threats\",kind=\"ixfr\",result=\"ok\"",
    );
    assert_eq!(metric(m, &ixfr_ok).await, 1.0);
    assert_eq!(
        metric(m, &axfr_ok).await,
        1.0,
        "no full transfer for a change"
    );
    assert!(metric(m, "cordon_feed_notifies_total{result=\"accepted\"}").await >= 1.0);
    assert!(
        cordon.log_text().contains("changes, "),
        "{}",
        cordon.log_text()
    );
}

#[tokio::test]
async fn a_wrong_key_and_a_refused_transfer_are_counted_and_change_nothing() {
    let key = Tsig::random("cordon-xfr");
    let signed = KnotOptions::new("signed.test")
        .records("bad1.feed.test CNAME .\n")
        .tsig(key.clone())
        .start()
        .await;
    let closed = KnotOptions::new("closed.test")
        .records("bad3.feed.test CNAME .\n")
        .refuse_transfers()
        .start()
        .await;
    let wrong = Tsig::new(&key.name, &Tsig::random("x").secret);
    let upstream = upstream().await;
    let config = feed_config("signed", "signed.test", signed.addr, Some(&wrong), 1)
        + &feed_config("closed", "closed.test", closed.addr, None, 1);
    let cordon = Binary::start(upstream.addr, &config).await;
    let m = cordon.http;
    let tsig = series(
        "cordon_feed_transfers_total",
        "feed=\"signed\",kind=\"axfr\",result=\"tsig\"",
    );
    let refused = series(
        "cordon_feed_transfers_total",
        "feed=\"closed\",kind=\"axfr\",result=\"refused\"",
    );
    assert!(
        eventually(Duration::from_secs(20), || async {
            metric(m, &tsig).await >= 1.0 && metric(m, &refused).await >= 1.0
        })
        .await,
        "{}",
        cordon.log_text()
    );
    let log = cordon.log_text();
    assert!(
        log.contains("the key or its secret does not match"),
        "{log}"
    );
    assert!(log.contains("the primary refused the transfer"), "{log}");
    assert!(resolves(cordon.dns, "bad1.feed.test").await);
    assert!(resolves(cordon.dns, "bad3.feed.test").await);
    assert_eq!(
        metric(m, &series("cordon_feed_entries", "feed=\"signed\"")).await,
        0.0
    );
}

#[tokio::test]
async fn a_primary_gone_leaves_the_copy_in_force() {
    let knot = Knot::serve(ZONE, "kept.feed.test CNAME .\n").await;
    let upstream = upstream().await;
    let cordon = Binary::start(
        upstream.addr,
        &feed_config("threats", ZONE, knot.addr, None, 1),
    )
    .await;
    let dns = cordon.dns;
    assert!(eventually(Duration::from_secs(20), || blocked(dns, "kept.feed.test")).await);
    drop(knot);
    let unreachable = series(
        "cordon_feed_transfers_total",
        "feed=\"threats\",kind=\"ixfr\",result=\"unreachable\"",
    );
    assert!(
        eventually(Duration::from_secs(20), || async {
            metric(cordon.http, &unreachable).await >= 1.0
        })
        .await,
        "{}",
        cordon.log_text()
    );
    assert!(
        blocked(dns, "kept.feed.test").await,
        "the last good copy stays in force"
    );
    assert!(cordon
        .log_text()
        .contains("the copy in force stays (serial 1)"));
}

#[tokio::test]
async fn a_notify_from_a_stranger_or_for_another_zone_is_refused() {
    let knot = Knot::serve(ZONE, "bad1.feed.test CNAME .\n").await;
    let upstream = upstream().await;
    let cordon = Binary::start(
        upstream.addr,
        &feed_config("threats", ZONE, knot.addr, None, 3600),
    )
    .await;
    let dns = cordon.dns;
    assert!(eventually(Duration::from_secs(20), || blocked(dns, "bad1.feed.test")).await);
    let m = cordon.http;
    let ixfr = "cordon_feed_transfers_total{feed=\"threats\",kind=\"ixfr\",result=\"up_to_date\"}";
    // From 127.0.0.9: not the primary (127.0.0.1).
    assert_eq!(
        notify(dns, [127, 0, 0, 9], ZONE).await,
        ResponseCode::Refused
    );
    // From the primary's address, for a zone no feed follows.
    assert_eq!(
        notify(dns, [127, 0, 0, 1], "other.test").await,
        ResponseCode::Refused
    );
    assert_eq!(
        metric(m, "cordon_feed_notifies_total{result=\"refused\"}").await,
        2.0
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        metric(m, ixfr).await,
        0.0,
        "a refused NOTIFY asks the primary nothing"
    );
    // From the primary, for its zone: acknowledged, and the primary is asked.
    assert_eq!(
        notify(dns, [127, 0, 0, 1], ZONE).await,
        ResponseCode::NoError
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            metric(m, ixfr).await == 1.0
        })
        .await
    );
    assert!(blocked(dns, "bad1.feed.test").await);
}

/// Sends a NOTIFY for `zone` over UDP from `from`; the rcode of the answer.
async fn notify(dns: SocketAddr, from: [u8; 4], zone: &str) -> ResponseCode {
    let socket = UdpSocket::bind((std::net::Ipv4Addr::from(from), 0))
        .await
        .unwrap();
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.metadata.op_code = OpCode::Notify;
    m.metadata.authoritative = true;
    m.add_query(Query::query(
        Name::from_str(&format!("{zone}.")).unwrap(),
        RecordType::SOA,
    ));
    socket.send_to(&m.to_vec().unwrap(), dns).await.unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("an answer to the NOTIFY")
        .unwrap();
    let answer = Message::from_bytes(&buf[..n]).unwrap();
    assert_eq!(answer.metadata.op_code, OpCode::Notify);
    assert_eq!(answer.metadata.id, 4242);
    answer.metadata.response_code
}

/// A primary that answers AXFR with serial `serial` and every IXFR with changes that start
/// from a serial Cordon never had: Knot never sends such an answer.
struct GappyPrimary {
    addr: SocketAddr,
    serial: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GappyPrimary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rr_name(text: &str) -> Name {
    Name::from_str(text).unwrap()
}

fn soa_at(serial: u32) -> Record {
    let soa = SOA::new(
        rr_name("ns.test."),
        rr_name("admin.test."),
        serial,
        1,
        1,
        600,
        60,
    );
    Record::from_rdata(rr_name("rpz.test."), 60, RData::SOA(soa))
}

fn trigger(owner: &str) -> Record {
    Record::from_rdata(
        rr_name(&format!("{owner}.rpz.test.")),
        60,
        RData::CNAME(CNAME(Name::root())),
    )
}

impl GappyPrimary {
    async fn start() -> GappyPrimary {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serial = Arc::new(AtomicU32::new(1));
        let at = serial.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut len = [0u8; 2];
                if tcp.read_exact(&mut len).await.is_err() {
                    continue;
                }
                let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                if tcp.read_exact(&mut buf).await.is_err() {
                    continue;
                }
                let request = Message::from_bytes(&buf).unwrap();
                let serial = at.load(Ordering::SeqCst);
                let answers = match request.queries[0].query_type() {
                    RecordType::AXFR if serial == 1 => {
                        vec![soa_at(1), trigger("bad1.feed.test"), soa_at(1)]
                    }
                    RecordType::AXFR => {
                        vec![soa_at(serial), trigger("axfr5.feed.test"), soa_at(serial)]
                    }
                    _ if serial == 1 => vec![soa_at(1)],
                    // From 3, while Cordon is at 1: a gap. Its addition must never apply.
                    _ => vec![
                        soa_at(serial),
                        soa_at(3),
                        soa_at(serial),
                        trigger("gapadd.feed.test"),
                        soa_at(serial),
                    ],
                };
                let mut m = Message::response(request.metadata.id, OpCode::Query);
                m.metadata.message_type = MessageType::Response;
                m.metadata.authoritative = true;
                m.add_query(request.queries[0].clone());
                m.answers = answers;
                let bytes = m.to_vec().unwrap();
                let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&bytes);
                let _ = tcp.write_all(&framed).await;
            }
        });
        GappyPrimary { addr, serial, task }
    }
}

#[tokio::test]
async fn an_ixfr_with_a_gap_is_refused_whole_and_a_full_transfer_follows() {
    let primary = GappyPrimary::start().await;
    let upstream = upstream().await;
    let cordon = Binary::start(
        upstream.addr,
        &feed_config("threats", ZONE, primary.addr, None, 1),
    )
    .await;
    let (dns, m) = (cordon.dns, cordon.http);
    assert!(
        eventually(Duration::from_secs(20), || blocked(dns, "bad1.feed.test")).await,
        "{}",
        cordon.log_text()
    );
    primary.serial.store(5, Ordering::SeqCst);
    let gap = "cordon_feed_transfers_total{feed=\"threats\",kind=\"ixfr\",result=\"gap\"}";
    assert!(
        eventually(Duration::from_secs(20), || blocked(dns, "axfr5.feed.test")).await,
        "{}",
        cordon.log_text()
    );
    assert!(metric(m, gap).await >= 1.0);
    assert!(
        cordon.log_text().contains("IXFR gap"),
        "{}",
        cordon.log_text()
    );
    assert!(
        resolves(dns, "gapadd.feed.test").await,
        "nothing of the gapped answer applied"
    );
    assert!(
        resolves(dns, "bad1.feed.test").await,
        "the full transfer replaced the copy"
    );
    assert_eq!(metric(m, "cordon_feed_serial{feed=\"threats\"}").await, 5.0);
}
