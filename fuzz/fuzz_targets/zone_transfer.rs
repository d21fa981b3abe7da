//! A zone transfer's answer as a primary (or anyone on the path, without TSIG) can send it:
//! TCP-framed messages, each decoded by hickory-proto and read record by record by a feed's
//! `Receiver`, then applied to a copy at serial 1 that lists a few domains. Whatever comes, the
//! copy changes all or nothing: on an error its serial and domains are as before.
//!
//! Input: messages, each behind its two-byte length, as they come over TCP.
#![no_main]

use std::str::FromStr;

use cordon::feeds::zone::FeedZone;
use cordon::policy::CategoryId;
use hickory_proto::op::Message;
use hickory_proto::rr::rdata::{CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record};
use hickory_proto::serialize::binary::BinDecodable;
use libfuzzer_sys::fuzz_target;

fn name(text: &str) -> Name {
    Name::from_str(text).expect("a name")
}

/// A copy of `rpz.test.` at serial 1 listing `a.example` and `b.example`.
fn loaded() -> FeedZone {
    let mut zone = FeedZone::new(name("rpz.test."), CategoryId::new(0).expect("id 0"));
    let soa = SOA::new(name("ns.test."), name("admin.test."), 1, 60, 30, 600, 60);
    let soa = Record::from_rdata(name("rpz.test."), 60, RData::SOA(soa));
    let block = |owner: &str| {
        Record::from_rdata(name(owner), 60, RData::CNAME(CNAME(Name::root())))
    };
    let mut r = zone.receiver();
    for record in [soa.clone(), block("a.example.rpz.test."), block("b.example.rpz.test."), soa] {
        r.record(&record).expect("a good zone");
    }
    zone.apply(r.finish().expect("whole")).expect("applies");
    zone
}

fuzz_target!(|data: &[u8]| {
    let mut zone = loaded();
    let mut receiver = zone.receiver();
    let mut rest = data;
    let mut failed = false;
    while rest.len() >= 2 && !receiver.done() {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let Some(bytes) = rest.get(2..2 + len) else {
            break;
        };
        rest = &rest[2 + len..];
        let Ok(message) = Message::from_bytes(bytes) else {
            failed = true;
            break;
        };
        if message.answers.iter().any(|r| receiver.record(r).is_err()) {
            failed = true;
            break;
        }
    }
    let before = (zone.serial(), zone.domains());
    let applied = match failed {
        true => None,
        false => receiver.finish().ok().map(|answer| zone.apply(answer)),
    };
    match applied {
        Some(Ok(_)) => assert!(zone.serial().is_some()),
        _ => assert_eq!((zone.serial(), zone.domains()), before, "a failed answer changed the copy"),
    }
    for (hash, (set, clear)) in zone.listings() {
        assert_eq!(zone.listing(hash), (set, clear));
        assert!(!(set.is_empty() && clear.is_empty()), "a domain listed for nothing");
    }
});
