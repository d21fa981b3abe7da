//! Why the query path reads and writes the DNS wire itself: one blocked query, parsed and
//! answered (NXDOMAIN, the SOA, the EDE reason in OPT), by Cordon's `dns::wire` and
//! `dns::answer`, and the same through hickory-proto's `Message` (decode, build, encode), the
//! types hickory-server's request handler hands a server and takes back.
//!
//! `cargo bench --bench wire`. Figures and the machine are in BENCHMARKS.md.

use std::hint::black_box;
use std::path::Path;
use std::str::FromStr;

use criterion::{criterion_group, criterion_main, Criterion};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use cordon::control::state::State;
use cordon::control::view::offline_snapshot;
use cordon::dns::{answer, wire};
use cordon::policy::PolicySet;

const NAME: &str = "malware.cordon-test.example.";
const WHY: &str = "category malware (policy isolation, group restricted)";

/// The query dig sends: RD, one question, an OPT record with a 1232-byte payload.
fn query() -> Vec<u8> {
    let mut m = Message::new(0x2a2a, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(NAME).unwrap(), RecordType::A));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    m.set_edns(edns);
    m.to_vec().unwrap()
}

/// The blocked answer through hickory-proto's types.
fn hickory_blocked(packet: &[u8]) -> Vec<u8> {
    let q = Message::from_vec(packet).unwrap();
    let mut a = Message::response(q.metadata.id, OpCode::Query);
    a.metadata.recursion_desired = q.metadata.recursion_desired;
    a.metadata.recursion_available = true;
    a.metadata.response_code = ResponseCode::NXDomain;
    a.add_query(q.queries[0].clone());
    let soa = SOA::new(
        Name::from_ascii("cordon.invalid.").unwrap(),
        Name::from_ascii("hostmaster.cordon.invalid.").unwrap(),
        1,
        3600,
        600,
        86400,
        5,
    );
    let apex = Name::from_ascii("example.").unwrap();
    a.add_authority(Record::from_rdata(apex, 5, RData::SOA(soa)));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    let mut ede = 15u16.to_be_bytes().to_vec();
    ede.extend_from_slice(WHY.as_bytes());
    edns.options_mut().insert(EdnsOption::Unknown(15, ede));
    a.set_edns(edns);
    a.to_vec().unwrap()
}

fn bench_wire(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let set = PolicySet::load(&dir).expect("the shipped policies load");
    let snapshot = offline_snapshot(set, State::default(), &[], &[]);
    let policy = &snapshot.group(snapshot.isolation_group).policy;
    let packet = query();
    let mut out = Vec::with_capacity(512);
    // Both answer the same question with the same sections.
    {
        let q = wire::parse_query(&packet).unwrap();
        answer::blocked(&mut out, &q, policy, (15, WHY), 1);
        let ours = Message::from_vec(&out).unwrap();
        let theirs = Message::from_vec(&hickory_blocked(&packet)).unwrap();
        assert_eq!(ours.metadata.response_code, theirs.metadata.response_code);
        assert_eq!(ours.queries, theirs.queries);
        assert_eq!(ours.authorities.len(), theirs.authorities.len());
    }
    let mut group = c.benchmark_group("blocked_answer");
    group.bench_function("cordon_wire", |b| {
        b.iter(|| {
            out.clear();
            let q = wire::parse_query(black_box(&packet)).unwrap();
            answer::blocked(&mut out, &q, policy, (15, WHY), 1);
            black_box(out.len())
        })
    });
    group.bench_function("hickory_message", |b| {
        b.iter(|| black_box(hickory_blocked(black_box(&packet))).len())
    });
    group.finish();
    let mut group = c.benchmark_group("parse_query");
    group.bench_function("cordon_wire", |b| {
        b.iter(|| black_box(wire::parse_query(black_box(&packet)).unwrap().qtype))
    });
    group.bench_function("hickory_message", |b| {
        b.iter(|| black_box(Message::from_vec(black_box(&packet)).unwrap().queries.len()))
    });
    group.finish();
}

criterion_group!(benches, bench_wire);
criterion_main!(benches);
