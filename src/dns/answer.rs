//! Writing answers: blocked names (contract 5), errors, truncation, and cached answers patched
//! for the client that asked (its id, its question's case, TTLs aged and capped).

use super::cache::CachedAnswer;
use super::wire::{flag, rcode, rtype, write_u16, Edns, Query, HEADER_LEN};
use crate::policy::{Policy, QName, ResponseMode};

/// The UDP payload size we offer in our own OPT records (the DNS flag day 2020 value).
pub const OUR_UDP_SIZE: u16 = 1232;
/// RFC 8914 info codes: Blocked (by the operator's security policy), Filtered (content policy).
pub const EDE_BLOCKED: u16 = 15;
pub const EDE_FILTERED: u16 = 17;
/// RFC 8767 §4: the TTL of a stale answer.
const STALE_TTL: u32 = 30;
const SOA_MNAME: &[u8] = b"\x06cordon\x07invalid\x00";
const SOA_RNAME: &[u8] = b"\x0ahostmaster\x06cordon\x07invalid\x00";

fn header(out: &mut Vec<u8>, id: u16, query_flags: u16, rcode: u16, counts: [u16; 4]) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    let kept = query_flags & (flag::OPCODE | flag::RD | flag::CD);
    let flags = flag::QR | flag::RA | kept | (rcode & 0xF);
    out.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
}

/// An OPT record; the extended rcode's upper bits and an EDE option go in it.
fn opt(out: &mut Vec<u8>, dnssec_ok: bool, ext_rcode: u16, ede: Option<(u16, &str)>) {
    out.push(0);
    out.extend_from_slice(&rtype::OPT.to_be_bytes());
    out.extend_from_slice(&OUR_UDP_SIZE.to_be_bytes());
    let ttl = ((ext_rcode as u32 >> 4) << 24) | if dnssec_ok { 0x8000 } else { 0 };
    out.extend_from_slice(&ttl.to_be_bytes());
    match ede {
        Some((code, text)) => {
            let text = &text.as_bytes()[..text.len().min(400)];
            out.extend_from_slice(&(6 + text.len() as u16).to_be_bytes());
            out.extend_from_slice(&15u16.to_be_bytes());
            out.extend_from_slice(&(2 + text.len() as u16).to_be_bytes());
            out.extend_from_slice(&code.to_be_bytes());
            out.extend_from_slice(text);
        }
        None => out.extend_from_slice(&0u16.to_be_bytes()),
    }
}

/// An answer with no records: FORMERR, NOTIMP, BADVERS, SERVFAIL, REFUSED, with the query's
/// opcode and question (empty when it could not be read) and an OPT record when the query had
/// one (or the rcode needs one).
pub fn error(
    out: &mut Vec<u8>,
    id: u16,
    query_flags: u16,
    code: u16,
    question: &[u8],
    edns: Option<Edns>,
    ede: Option<(u16, &str)>,
) {
    let needs_opt = edns.is_some() || code > 15;
    header(
        out,
        id,
        query_flags,
        code,
        [!question.is_empty() as u16, 0, 0, needs_opt as u16],
    );
    out.extend_from_slice(question);
    if needs_opt {
        opt(out, edns.is_some_and(|e| e.dnssec_ok), code, ede);
    }
}

/// [`error`] for a parsed query.
pub fn error_for(out: &mut Vec<u8>, q: &Query<'_>, code: u16, ede: Option<(u16, &str)>) {
    error(out, q.id, q.flags, code, q.question_bytes(), q.edns, ede);
}

/// The answer for a blocked name, as the policy's response mode says.
pub fn blocked(out: &mut Vec<u8>, q: &Query<'_>, policy: &Policy, ede: (u16, &str), serial: u32) {
    let ttl = policy.blocked_ttl;
    let sinkhole: Option<&[u8]> = match (policy.response, q.qtype) {
        (ResponseMode::Sinkhole, rtype::A) => Some(&policy.sinkhole_v4.octets()),
        (ResponseMode::Sinkhole, rtype::AAAA) => Some(&policy.sinkhole_v6.octets()),
        _ => None,
    };
    let (code, with_soa) = match policy.response {
        ResponseMode::Nxdomain => (rcode::NXDOMAIN, true),
        ResponseMode::Refused => (rcode::REFUSED, false),
        ResponseMode::Nodata => (rcode::NOERROR, true),
        ResponseMode::Sinkhole => (rcode::NOERROR, sinkhole.is_none()),
    };
    let counts = [
        1,
        sinkhole.is_some() as u16,
        with_soa as u16,
        q.edns.is_some() as u16,
    ];
    header(out, q.id, q.flags, code as u16, counts);
    out.extend_from_slice(q.question_bytes());
    if let Some(addr) = sinkhole {
        record_header(
            out,
            0xC000 | HEADER_LEN as u16,
            q.qtype,
            ttl,
            addr.len() as u16,
        );
        out.extend_from_slice(addr);
    }
    if with_soa {
        soa(out, q, ttl, serial);
    }
    if let Some(edns) = q.edns {
        opt(out, edns.dnssec_ok, 0, Some(ede));
    }
}

fn record_header(out: &mut Vec<u8>, name_ptr: u16, rtype: u16, ttl: u32, rdlen: u16) {
    out.extend_from_slice(&name_ptr.to_be_bytes());
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&rdlen.to_be_bytes());
}

/// A synthetic SOA owned by the name's TLD (an ancestor of every name, so it is a plausible
/// zone apex); its MINIMUM, the negative TTL, is the policy's `blocked_ttl`.
fn soa(out: &mut Vec<u8>, q: &Query<'_>, ttl: u32, serial: u32) {
    let name_len = q.name.wire().len();
    let tld_at = HEADER_LEN + name_len - q.name.tld().len();
    let rdlen = SOA_MNAME.len() + SOA_RNAME.len() + 20;
    record_header(out, 0xC000 | tld_at as u16, rtype::SOA, ttl, rdlen as u16);
    out.extend_from_slice(SOA_MNAME);
    out.extend_from_slice(SOA_RNAME);
    for v in [serial, 3600, 600, 86400, ttl] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Fits an answer into the client's UDP limit as Unbound does: first the additional records
/// go (the OPT record stays), then the authority records; TC is set only when the answer
/// section itself does not fit, and then the answer shrinks to a TC=1 header and question
/// (RFC 2181 §9), so that the client retries over TCP. Returns whether TC was set.
pub fn truncate_if_needed(out: &mut Vec<u8>, q: &Query<'_>, limit: usize) -> bool {
    if out.len() <= limit {
        return false;
    }
    let question_end = HEADER_LEN + q.question_bytes().len();
    if let Some(s) = super::wire::sections(out, question_end) {
        for (end, keeps_authority) in [(s.authority_end, true), (s.answer_end, false)] {
            let opt = s.opt.clone().unwrap_or(end..end);
            if end + opt.len() <= limit && opt.start >= end {
                out.copy_within(opt.clone(), end);
                out.truncate(end + opt.len());
                if !keeps_authority {
                    write_u16(out, 8, 0);
                }
                write_u16(out, 10, (!opt.is_empty()) as u16);
                return false;
            }
        }
    }
    let rcode = out[3] as u16 & 0xF;
    truncated(out, q, rcode);
    true
}

/// An empty TC=1 answer with `rcode`: the question, and an OPT record when the query had one.
pub fn truncated(out: &mut Vec<u8>, q: &Query<'_>, rcode: u16) {
    let edns = q.edns.is_some();
    header(out, q.id, q.flags, rcode, [1, 0, 0, edns as u16]);
    out[2] |= (flag::TC >> 8) as u8;
    out.extend_from_slice(q.question_bytes());
    if let Some(e) = q.edns {
        opt(out, e.dnssec_ok, 0, None);
    }
}

/// RFC 8482 §4.2: the answer to an ANY query, one synthesised HINFO record ("RFC8482", "")
/// rather than every RRset of the name.
pub fn any_hinfo(out: &mut Vec<u8>, q: &Query<'_>, ttl: u32) {
    const RDATA: &[u8] = b"\x07RFC8482\x00";
    header(
        out,
        q.id,
        q.flags,
        rcode::NOERROR as u16,
        [1, 1, 0, q.edns.is_some() as u16],
    );
    out.extend_from_slice(q.question_bytes());
    record_header(
        out,
        0xC000 | HEADER_LEN as u16,
        rtype::HINFO,
        ttl,
        RDATA.len() as u16,
    );
    out.extend_from_slice(RDATA);
    if let Some(e) = q.edns {
        opt(out, e.dnssec_ok, 0, None);
    }
}

/// `_dns.resolver.arpa`, the name DDR clients ask (RFC 9462 §4), in wire form.
pub const DDR_NAME: &[u8] = b"\x04_dns\x08resolver\x04arpa\x00";
/// How long a client may keep the designations, capped by the policy's `max_ttl`.
const DDR_TTL: u32 = 300;
/// DoH's URI template (RFC 9461 §5): Cordon answers `/dns-query`, by POST or GET `?dns=`.
const DOH_PATH_TEMPLATE: &[u8] = b"/dns-query{?dns}";

/// Discovery of Designated Resolvers (RFC 9462): the SVCB records that designate Cordon's DoH
/// and DoT listeners, written once per config. Each is owned by the question's name (a
/// pointer to it), so an answer is the header, the question and these bytes.
pub struct Ddr {
    records: Vec<u8>,
    count: u16,
    /// Where each record's TTL stands in `records`.
    ttl_at: Vec<usize>,
}

impl Ddr {
    /// SVCB records for `server_name` (the certificate's name) with DoH on `doh_ports` (alpn
    /// h2, dohpath) first, then DoT on `dot_ports` (alpn dot). `None` when there is neither, or
    /// `server_name` is not a name.
    pub fn new(server_name: &str, doh_ports: &[u16], dot_ports: &[u16]) -> Option<Ddr> {
        let target = QName::from_dotted(server_name.trim_end_matches('.')).ok()?;
        let mut ddr = Ddr {
            records: Vec::new(),
            count: 0,
            ttl_at: Vec::new(),
        };
        let doh = doh_ports.iter().map(|&port| (port, true));
        let mut seen = Vec::new();
        for (port, is_doh) in doh.chain(dot_ports.iter().map(|&port| (port, false))) {
            if seen.contains(&(port, is_doh)) {
                continue;
            }
            seen.push((port, is_doh));
            ddr.count += 1;
            let mut rdata = ddr.count.to_be_bytes().to_vec(); // SvcPriority 1, 2, ...
            rdata.extend_from_slice(target.wire());
            let alpn: &[u8] = if is_doh { b"h2" } else { b"dot" };
            svc_param(&mut rdata, 1, &[&[alpn.len() as u8], alpn]);
            svc_param(&mut rdata, 3, &[&port.to_be_bytes()]);
            if is_doh {
                svc_param(&mut rdata, 7, &[DOH_PATH_TEMPLATE]);
            }
            ddr.ttl_at.push(ddr.records.len() + 6);
            let owner = 0xC000 | HEADER_LEN as u16;
            let rdlen = rdata.len() as u16;
            record_header(&mut ddr.records, owner, rtype::SVCB, DDR_TTL, rdlen);
            ddr.records.extend_from_slice(&rdata);
        }
        (ddr.count > 0).then_some(ddr)
    }
}

/// One SvcParam: its key, its value's length, the value (RFC 9460 §2.2).
fn svc_param(out: &mut Vec<u8>, key: u16, value: &[&[u8]]) {
    out.extend_from_slice(&key.to_be_bytes());
    let len: usize = value.iter().map(|v| v.len()).sum();
    out.extend_from_slice(&(len as u16).to_be_bytes());
    for v in value {
        out.extend_from_slice(v);
    }
}

/// The answer to `_dns.resolver.arpa` SVCB: the designations, their TTL capped at `cap`.
pub fn ddr(out: &mut Vec<u8>, q: &Query<'_>, ddr: &Ddr, cap: u32) {
    let counts = [1, ddr.count, 0, q.edns.is_some() as u16];
    header(out, q.id, q.flags, rcode::NOERROR as u16, counts);
    out.extend_from_slice(q.question_bytes());
    let start = out.len();
    out.extend_from_slice(&ddr.records);
    if cap < DDR_TTL {
        for at in &ddr.ttl_at {
            out[start + at..start + at + 4].copy_from_slice(&cap.to_be_bytes());
        }
    }
    if let Some(e) = q.edns {
        opt(out, e.dnssec_ok, 0, None);
    }
}

/// Writes a cached upstream answer for `q`: the client's id, RD bit and question bytes, every
/// TTL aged by `age` seconds and capped at `cap` (a stale answer gets 30 s, RFC 8767).
pub fn cached(
    out: &mut Vec<u8>,
    q: &Query<'_>,
    entry: &CachedAnswer,
    age: u32,
    cap: u32,
    stale: bool,
) {
    out.clear();
    out.extend_from_slice(entry.answer());
    write_u16(out, 0, q.id);
    // Our answer, not the authority's: RD and CD as the client asked, RA set, AA cleared. AD
    // only when upstream validated the data and the client asked for it with AD or DO
    // (RFC 6840 §5.7-5.8): the cached answer may have been fetched for someone else.
    let upstream_flags = u16::from_be_bytes([out[2], out[3]]);
    let wants_ad = q.flags & flag::AD != 0 || q.edns.is_some_and(|e| e.dnssec_ok);
    let ad = if wants_ad {
        upstream_flags & flag::AD
    } else {
        0
    };
    let flags = (upstream_flags & !(flag::RD | flag::AA | flag::CD | flag::AD))
        | (q.flags & (flag::RD | flag::CD))
        | flag::RA
        | ad;
    write_u16(out, 2, flags);
    let question = q.question_bytes();
    if let Some(dst) = out.get_mut(HEADER_LEN..HEADER_LEN + question.len()) {
        dst.copy_from_slice(question);
    }
    for at in entry.ttl_offsets() {
        let orig = u32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
        let ttl = if stale {
            STALE_TTL
        } else {
            orig.saturating_sub(age)
        };
        out[at..at + 4].copy_from_slice(&ttl.min(cap).to_be_bytes());
    }
    if q.edns.is_none() {
        if let Some(opt) = entry.opt() {
            out.drain(opt);
            let ar = u16::from_be_bytes([out[10], out[11]]).saturating_sub(1);
            write_u16(out, 10, ar);
        }
    }
}

/// Adds an EDNS Client Subnet option to the answer's OPT record, scoped to the source prefix
/// (RFC 7871 §7.2.1): the answer was made for that subnet's device, and a caching forwarder must
/// not hand it to anyone else. Adds an OPT record when the answer has none.
pub fn echo_client_subnet(out: &mut Vec<u8>, addr: std::net::IpAddr, prefix: u8) {
    let (family, bytes): (u16, Vec<u8>) = match addr {
        std::net::IpAddr::V4(a) => (1, a.octets().to_vec()),
        std::net::IpAddr::V6(a) => (2, a.octets().to_vec()),
    };
    let kept = (prefix as usize).div_ceil(8).min(bytes.len());
    let mut option = Vec::with_capacity(8 + kept);
    option.extend_from_slice(&8u16.to_be_bytes());
    option.extend_from_slice(&(4 + kept as u16).to_be_bytes());
    option.extend_from_slice(&family.to_be_bytes());
    option.extend_from_slice(&[prefix, prefix]);
    option.extend_from_slice(&bytes[..kept]);
    match super::wire::find_opt(out) {
        Some((rdlen_at, rdata_end)) => {
            let rdlen =
                u16::from_be_bytes([out[rdlen_at], out[rdlen_at + 1]]) + option.len() as u16;
            write_u16(out, rdlen_at, rdlen);
            out.splice(rdata_end..rdata_end, option);
        }
        None => {
            let ar = u16::from_be_bytes([out[10], out[11]]) + 1;
            write_u16(out, 10, ar);
            opt(out, false, 0, None);
            let rdlen_at = out.len() - 2;
            write_u16(out, rdlen_at, option.len() as u16);
            out.extend_from_slice(&option);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ddr;

    #[test]
    fn ddr_records_are_svcb_for_doh_then_dot_and_none_without_listeners() {
        assert!(Ddr::new("dns.example.com", &[], &[]).is_none());
        let ddr = Ddr::new("dns.example.com.", &[443, 443], &[853]).unwrap();
        assert_eq!(ddr.count, 2, "a port listed twice is designated once");
        let target = b"\x03dns\x07example\x03com\x00";
        let mut doh = vec![0, 1];
        doh.extend_from_slice(target);
        doh.extend_from_slice(b"\x00\x01\x00\x03\x02h2\x00\x03\x00\x02\x01\xbb");
        doh.extend_from_slice(b"\x00\x07\x00\x10/dns-query{?dns}");
        let mut dot = vec![0, 2];
        dot.extend_from_slice(target);
        dot.extend_from_slice(b"\x00\x01\x00\x04\x03dot\x00\x03\x00\x02\x03\x55");
        let mut expected = Vec::new();
        for rdata in [doh, dot] {
            expected.extend_from_slice(&[0xC0, 12, 0, 64, 0, 1, 0, 0, 1, 44]);
            expected.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            expected.extend_from_slice(&rdata);
        }
        assert_eq!(ddr.records, expected);
    }
}
