//! `dns::wire::parse_query` on any packet a client can send (UDP, TCP, DoT, DoH, DoQ all hand
//! it the raw bytes), and what the handler reads from a parsed query next: the question, the
//! EDNS options' slice, the UDP limit and the cache key; and `parse_notify`, which the handler
//! tries first on a packet whose opcode is NOTIFY.
#![no_main]

use cordon::dns::cache::{key, KeyBuf};
use cordon::dns::wire::{self, QueryError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|packet: &[u8]| {
    if let Some(n) = wire::parse_notify(packet) {
        assert!(wire::is_notify(packet));
        assert!(n.question_end <= packet.len());
        assert_eq!(n.id, u16::from_be_bytes([packet[0], packet[1]]));
    }
    match wire::parse_query(packet) {
        Ok(q) => {
            let question = q.question_bytes();
            assert!(question.len() >= q.name.wire().len() + 4);
            assert!(question[..q.name.wire().len()].eq_ignore_ascii_case(q.name.wire()));
            let _ = q.edns_options();
            let limit = q.udp_limit();
            assert!((512..=4096).contains(&limit));
            let mut buf: KeyBuf = [0; 260];
            let k = key(&q, &mut buf);
            assert!(k.starts_with(q.name.wire()));
            let _ = q.name.to_dotted();
            let _ = q.name.tld();
        }
        Err(QueryError::Drop) => {}
        Err(QueryError::Reply { id, rcode, .. }) => {
            assert_eq!(id, u16::from_be_bytes([packet[0], packet[1]]));
            assert!(matches!(rcode, 1 | 4 | 16), "rcode {rcode}");
        }
    }
});
