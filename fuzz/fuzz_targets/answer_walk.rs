//! The upstream answer walker and what the cache does with an answer: `dns::wire::inspect_answer`
//! on any bytes an upstream can send back to our question, then, for an answer it accepts,
//! `dns::cache::CachedAnswer::new`, its CNAME targets and TTL offsets, `Cache::lifetime`, insert
//! and lookup, and serving it with `dns::answer::cached` (TTLs aged and capped, the OPT record
//! dropped for a client without EDNS), the Client Subnet echo and truncation.
//!
//! Input: 1 byte of knobs (age, cap, stale, the asker's EDNS, case), then the answer. The
//! question we sent is the answer's own question when it has one we could have asked.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use cordon::dns::answer;
use cordon::dns::cache::{key, Cache, CacheLimits, CachedAnswer, KeyBuf, Lookup};
use cordon::dns::wire::{self, rtype, HEADER_LEN};
use cordon::policy::QName;
use libfuzzer_sys::fuzz_target;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| {
        Cache::new(CacheLimits {
            max_entries: 64,
            min_ttl: 0,
            max_ttl: 86_400,
            serve_stale: true,
        })
    })
}

/// The query a client sends for `question` (name, type, class), with or without EDNS.
fn query_for(id: u16, question: &[u8], edns: bool) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, edns as u8]);
    p.extend_from_slice(question);
    if edns {
        p.push(0);
        p.extend_from_slice(&rtype::OPT.to_be_bytes());
        p.extend_from_slice(&1232u16.to_be_bytes());
        p.extend_from_slice(&0x8000u32.to_be_bytes());
        p.extend_from_slice(&0u16.to_be_bytes());
    }
    p
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, msg)) = data.split_first() else {
        return;
    };
    if msg.len() < HEADER_LEN {
        let _ = wire::inspect_answer(msg, 0, b"\0\0\x01\0\x01");
        return;
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    // Our question: the one in the answer if it is a name we could have sent, else a fixed one.
    let question: Vec<u8> = match QName::from_wire(&msg[HEADER_LEN..]) {
        Ok((_, used)) if msg.len() >= HEADER_LEN + used + 4 => {
            msg[HEADER_LEN..HEADER_LEN + used + 4].to_vec()
        }
        _ => b"\x07example\x03com\x00\x00\x01\x00\x01".to_vec(),
    };
    // The client may have asked in another case than the upstream answered.
    let mut asked = question.clone();
    if knobs & 0x40 != 0 {
        for b in asked.iter_mut() {
            b.make_ascii_uppercase();
        }
    }
    let Ok(info) = wire::inspect_answer(msg, id, &question) else {
        let _ = wire::min_ttl(msg);
        let _ = wire::find_opt(msg);
        return;
    };
    let edns = knobs & 0x80 != 0;
    let packet = query_for(id.wrapping_add(1), &asked, edns);
    let q = wire::parse_query(&packet).expect("a question we could send parses");

    let lifetime = cache().lifetime(&info);
    let mut buf: KeyBuf = [0; 260];
    let k = key(&q, &mut buf).to_vec();
    let (offsets, targets, opt) = (
        info.ttl_offsets.clone(),
        info.cname_targets.clone(),
        info.opt.clone(),
    );
    let entry = CachedAnswer::new(&k, msg, info, lifetime.unwrap_or(0));
    assert_eq!(entry.answer(), msg);
    assert_eq!(
        entry.ttl_offsets().collect::<Vec<_>>(),
        offsets.iter().map(|&o| o as usize).collect::<Vec<_>>()
    );
    let stored: Vec<&[u8]> = entry.cname_targets().collect();
    assert_eq!(stored.len(), targets.len());
    for (s, t) in stored.iter().zip(&targets) {
        assert_eq!(*s, &t[..]);
        // The handler re-checks each target as a name.
        QName::from_wire(s).expect("a stored target reads as a name");
    }
    assert_eq!(entry.opt(), opt);
    let _ = entry.rcode();
    if lifetime.is_some() {
        cache().insert(entry.clone());
        let probe = cache().probe(&k);
        match cache().get(probe, &k) {
            Lookup::Fresh(e) | Lookup::Stale(e) => assert_eq!(e.answer(), msg),
            Lookup::Miss => {}
        }
    }

    let age = u32::from(knobs & 0x0F) * 100;
    let cap = [0, 5, 300, u32::MAX][usize::from(knobs >> 4 & 3)];
    let stale = knobs & 0x20 != 0;
    let mut out = Vec::new();
    answer::cached(&mut out, &q, &entry, age, cap, stale);
    assert_eq!(&out[..2], &packet[..2], "the client's id");
    assert_eq!(
        &out[HEADER_LEN..HEADER_LEN + asked.len()],
        &asked[..],
        "the client's question"
    );
    if opt.is_none() || edns {
        assert_eq!(out.len(), msg.len());
        for at in &offsets {
            let at = usize::from(*at);
            let ttl = u32::from_be_bytes(out[at..at + 4].try_into().unwrap());
            assert!(ttl <= cap, "TTL {ttl} above the cap {cap}");
        }
    }
    let _ = wire::min_ttl(&out);
    if edns {
        let (addr, prefix) = match knobs & 3 {
            0 => (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)), 24),
            1 => (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 32),
            2 => (
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)),
                56,
            ),
            _ => (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
        };
        answer::echo_client_subnet(&mut out, addr, prefix);
    }
    answer::truncate_if_needed(&mut out, &q, q.udp_limit());
});
