//! Differential: Cordon's query parser against hickory-proto's `Message`, and Cordon's answers
//! read back by hickory-proto.
//!
//! 1. Every packet hickory-proto decodes as a query (QR clear) Cordon parses the same way (same
//!    id, qtype, qclass, lowercased name, EDNS presence) or refuses for one of the reasons
//!    allowed below, each checked against the packet.
//! 2. Every answer Cordon builds for a query it parsed (`dns::answer::blocked` in each response
//!    mode, with and without an EDE text, `dns::answer::error` for each rcode, and the
//!    truncated form) decodes with hickory-proto as a response with the query's id, and names
//!    the same question.
//!
//! Reasons Cordon may refuse a query hickory-proto decodes (the allow-list):
//! - NOTIMP: the opcode is not QUERY (Cordon answers standard queries only).
//! - FORMERR, `QuestionCount`: QDCOUNT is not 1 (hickory reads any number of questions).
//! - FORMERR, `AnswersInQuery`: ANCOUNT is not 0 (RFC 1035 queries carry no answers).
//! - FORMERR, `CompressedQuestion`: the question's name uses a compression pointer (Cordon
//!   reads the question in place and allows none; no resolver sends one).
//! - FORMERR, `OptNotRoot`: the OPT record's owner is not the root (RFC 6891 §6.1.2: MUST be 0).
//! - BADVERS: EDNS version is not 0 (RFC 6891 §6.1.3).
//!
//! Cordon never drops (answers nothing to) a packet hickory decodes as a query.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use cordon::dns::answer;
use cordon::dns::wire::{self, rcode, rtype, QueryError, HEADER_LEN};
use cordon::policy::rules::RuleSet;
use cordon::policy::snapshot::DefaultAction;
use cordon::policy::{CategorySet, Policy, ResponseMode};
use hickory_proto::op::{Message, MessageType, OpCode};
use libfuzzer_sys::fuzz_target;

/// Why Cordon refused a query hickory decoded; each must hold for the packet.
#[derive(Debug)]
enum Reason {
    OpcodeNotQuery,
    QuestionCount,
    AnswersInQuery,
    CompressedQuestion,
    OptNotRoot,
    EdnsVersion,
}

/// The reasons that hold for `packet` (which hickory decoded into `m`), in the order Cordon
/// checks them.
fn reasons(packet: &[u8], m: &Message) -> Vec<Reason> {
    let mut found = Vec::new();
    if m.metadata.op_code != OpCode::Query {
        found.push(Reason::OpcodeNotQuery);
    }
    if m.queries.len() != 1 {
        found.push(Reason::QuestionCount);
    }
    if !m.answers.is_empty() {
        found.push(Reason::AnswersInQuery);
    }
    if question_compressed(packet) {
        found.push(Reason::CompressedQuestion);
    }
    if opt_owner_not_root(packet) {
        found.push(Reason::OptNotRoot);
    }
    if m.edns.as_ref().is_some_and(|e| e.version() != 0) {
        found.push(Reason::EdnsVersion);
    }
    found
}

/// Whether the first question's name, as it stands in the packet, has a compression pointer.
fn question_compressed(packet: &[u8]) -> bool {
    let mut at = HEADER_LEN;
    while let Some(&len) = packet.get(at) {
        match len {
            0 => return false,
            l if l & 0xC0 == 0xC0 => return true,
            l => at += 1 + usize::from(l & 0x3F),
        }
    }
    false
}

/// Whether an OPT record among the additional records has a non-root owner. Walks the packet
/// the way a decoder would; hickory decoded it, so the walk succeeds.
fn opt_owner_not_root(packet: &[u8]) -> bool {
    let counts: Vec<usize> = [4, 6, 8, 10]
        .iter()
        .map(|&at| usize::from(wire::read_u16(packet, at)))
        .collect();
    let mut at = HEADER_LEN;
    let skip_name = |at: &mut usize| -> Option<()> {
        loop {
            let len = *packet.get(*at)?;
            match len {
                0 => {
                    *at += 1;
                    return Some(());
                }
                l if l & 0xC0 == 0xC0 => {
                    *at += 2;
                    return Some(());
                }
                l => *at += 1 + usize::from(l),
            }
        }
    };
    for _ in 0..counts[0] {
        if skip_name(&mut at).is_none() {
            return false;
        }
        at += 4;
    }
    for i in 0..counts[1] + counts[2] + counts[3] {
        let owner = at;
        if skip_name(&mut at).is_none() || at + 10 > packet.len() {
            return false;
        }
        let rt = wire::read_u16(packet, at);
        let rdlen = usize::from(wire::read_u16(packet, at + 8));
        at += 10 + rdlen;
        if rt == rtype::OPT && i >= counts[1] + counts[2] && packet[owner] != 0 {
            return true;
        }
    }
    false
}

/// A name's labels as lowercase wire form.
fn hickory_wire(name: &hickory_proto::rr::Name) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

fn policy(response: ResponseMode, blocked_ttl: u32) -> Policy {
    Policy {
        name: "fuzz".into(),
        default: DefaultAction::Block,
        rules: RuleSet::default(),
        services: Vec::new(),
        block_categories: CategorySet::default(),
        target_categories: CategorySet::default(),
        block_uncategorised: false,
        response,
        sinkhole_v4: Ipv4Addr::new(0, 0, 0, 0),
        sinkhole_v6: Ipv6Addr::UNSPECIFIED,
        blocked_ttl,
        max_ttl: 86_400,
        tripwire_categories: CategorySet::default(),
        tripwires: RuleSet::default(),
        probation_s: 0,
    }
}

/// Hickory decodes `out` as a response to `q`'s question.
fn check_answer(out: &[u8], q: &wire::Query<'_>, what: &str) {
    let m = Message::from_vec(out)
        .unwrap_or_else(|e| panic!("{what}: hickory cannot decode our answer: {e}\n{out:02x?}"));
    assert_eq!(m.metadata.message_type, MessageType::Response, "{what}");
    assert_eq!(m.metadata.id, q.id, "{what}");
    assert_eq!(m.queries.len(), 1, "{what}: one question");
    let hq = &m.queries[0];
    assert_eq!(
        hickory_wire(hq.name()),
        q.name.wire(),
        "{what}: the question's name"
    );
    assert_eq!(u16::from(hq.query_type()), q.qtype, "{what}: qtype");
    assert_eq!(u16::from(hq.query_class()), q.qclass, "{what}: qclass");
    assert_eq!(m.edns.is_some(), q.edns.is_some(), "{what}: EDNS echoed");
}

const EDE_TEXT: &str = "category malware (policy isolation, group restricted)";

fuzz_target!(|packet: &[u8]| {
    let ours = wire::parse_query(packet);
    let Ok(m) = Message::from_vec(packet) else {
        // Hickory refuses it; Cordon may do anything but panic, and its answers must still be
        // well-formed (below).
        if let Ok(q) = &ours {
            answers(q);
        }
        return;
    };
    if m.metadata.message_type != MessageType::Query {
        return;
    }
    match &ours {
        Ok(q) => {
            assert_eq!(q.id, m.metadata.id);
            assert_eq!(
                m.queries.len(),
                1,
                "Cordon parsed a query with {} questions",
                m.queries.len()
            );
            let hq = &m.queries[0];
            assert_eq!(q.qtype, u16::from(hq.query_type()));
            assert_eq!(q.qclass, u16::from(hq.query_class()));
            assert_eq!(q.name.wire(), &hickory_wire(hq.name())[..]);
            assert_eq!(q.edns.is_some(), m.edns.is_some());
            if let (Some(ours), Some(theirs)) = (q.edns, &m.edns) {
                assert_eq!(ours.udp_size.max(512), theirs.max_payload().max(512));
                assert_eq!(ours.dnssec_ok, theirs.flags().dnssec_ok);
            }
            answers(q);
        }
        Err(QueryError::Drop) => panic!("Cordon drops a query hickory decodes: {m:?}"),
        Err(QueryError::Reply {
            id, rcode: code, ..
        }) => {
            assert_eq!(*id, m.metadata.id);
            let why = reasons(packet, &m);
            let allowed = match *code {
                c if c == u16::from(rcode::NOTIMP) => {
                    why.iter().any(|r| matches!(r, Reason::OpcodeNotQuery))
                }
                c if c == u16::from(rcode::FORMERR) => why.iter().any(|r| {
                    matches!(
                        r,
                        Reason::QuestionCount
                            | Reason::AnswersInQuery
                            | Reason::CompressedQuestion
                            | Reason::OptNotRoot
                    )
                }),
                rcode::BADVERS => why.iter().any(|r| matches!(r, Reason::EdnsVersion)),
                _ => false,
            };
            assert!(
                allowed,
                "Cordon refuses with rcode {code}, reasons found {why:?}: {m:?}"
            );
        }
    }
});

/// Every answer Cordon writes for `q` decodes with hickory and names `q`'s question.
fn answers(q: &wire::Query<'_>) {
    let mut out = Vec::new();
    for mode in [
        ResponseMode::Nxdomain,
        ResponseMode::Refused,
        ResponseMode::Nodata,
        ResponseMode::Sinkhole,
    ] {
        let p = policy(mode, 300);
        for text in ["", EDE_TEXT] {
            answer::blocked(&mut out, q, &p, (answer::EDE_BLOCKED, text), 7);
            check_answer(&out, q, &format!("blocked {mode:?} {text:?}"));
            let limit = 512.min(out.len().saturating_sub(1));
            if answer::truncate_if_needed(&mut out, q, limit) {
                check_answer(&out, q, &format!("truncated blocked {mode:?}"));
            }
        }
    }
    for code in [
        u16::from(rcode::FORMERR),
        u16::from(rcode::SERVFAIL),
        u16::from(rcode::NOTIMP),
        u16::from(rcode::REFUSED),
        rcode::BADVERS,
    ] {
        answer::error_for(&mut out, q, code, Some((answer::EDE_BLOCKED, EDE_TEXT)));
        let m = Message::from_vec(&out)
            .unwrap_or_else(|e| panic!("error {code}: hickory cannot decode our answer: {e}"));
        assert_eq!(m.metadata.id, q.id);
        assert_eq!(
            u16::from(m.metadata.response_code),
            code,
            "error {code}: the rcode"
        );
        assert_eq!(m.queries.len(), 1);
        assert_eq!(hickory_wire(m.queries[0].name()), q.name.wire());
        answer::error(&mut out, q.id, q.flags, code, &[], None, None);
        Message::from_vec(&out).unwrap_or_else(|e| panic!("error {code} without a question: {e}"));
    }
}
