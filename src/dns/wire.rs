//! The parts of the DNS wire format the query path reads, checked, without building a message.
//!
//! Queries are parsed into a stack value; upstream answers are walked once, when they enter the
//! cache, to find what later gets patched in place (TTLs, the OPT record) or checked (CNAMEs).

use std::ops::Range;

use crate::policy::qname::{QName, QNameError};

pub const HEADER_LEN: usize = 12;

pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
    /// Extended rcode 16: the upper 8 bits travel in the OPT record.
    pub const BADVERS: u16 = 16;
}

pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const HINFO: u16 = 13;
    pub const SVCB: u16 = 64;
    pub const AAAA: u16 = 28;
    pub const OPT: u16 = 41;
    pub const AXFR: u16 = 252;
    pub const IXFR: u16 = 251;
    pub const ANY: u16 = 255;
}

/// Whether `qtype` is a meta type no cache or upstream answers: OPT (41), and 128-254 but for
/// ANY (255); AXFR and IXFR (251, 252) are among them.
pub fn is_meta_type(qtype: u16) -> bool {
    qtype == rtype::OPT || (128..=254).contains(&qtype)
}

/// Header flag bits (the 16-bit word after the id).
pub mod flag {
    pub const QR: u16 = 0x8000;
    pub const OPCODE: u16 = 0x7800;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const AD: u16 = 0x0020;
    pub const CD: u16 = 0x0010;
    pub const RCODE: u16 = 0x000F;
}

/// The NOTIFY opcode (RFC 1996) as it stands in the header's flag word.
pub const OPCODE_NOTIFY: u16 = 4 << 11;

/// A primary's NOTIFY: a zone changed, ask for it.
#[derive(Debug, Clone)]
pub struct Notify {
    pub id: u16,
    pub flags: u16,
    /// The zone, from the question.
    pub zone: QName,
    /// Where the question ends: a reply repeats it.
    pub question_end: usize,
}

/// Whether `packet` is a NOTIFY request, by its header alone.
pub fn is_notify(packet: &[u8]) -> bool {
    packet.len() >= HEADER_LEN && read_u16(packet, 2) & (flag::QR | flag::OPCODE) == OPCODE_NOTIFY
}

/// Reads a NOTIFY request: one SOA question. The rest (the new SOA, a TSIG) is not read: a
/// NOTIFY only makes Cordon ask the zone's primary, over a transfer that is itself checked.
pub fn parse_notify(packet: &[u8]) -> Option<Notify> {
    if !is_notify(packet) || read_u16(packet, 4) != 1 {
        return None;
    }
    let (zone, used) = QName::from_wire(&packet[HEADER_LEN..]).ok()?;
    let mut r = Reader {
        msg: packet,
        pos: HEADER_LEN + used,
    };
    let (qtype, qclass) = (r.u16()?, r.u16()?);
    (qtype == rtype::SOA && qclass == 1).then(|| Notify {
        id: read_u16(packet, 0),
        flags: read_u16(packet, 2),
        zone,
        question_end: r.pos,
    })
}

/// The EDNS(0) part of a query (RFC 6891).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub dnssec_ok: bool,
    pub version: u8,
    /// Where the OPT record's options (its RDATA) stand in the packet.
    pub options: (u16, u16),
}

/// A parsed query. The question bytes are the client's own, case and all.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub packet: &'a [u8],
    pub id: u16,
    pub flags: u16,
    pub name: QName,
    pub qtype: u16,
    pub qclass: u16,
    /// The question as it stands in the packet: name, type, class.
    pub question: Range<usize>,
    pub edns: Option<Edns>,
}

impl Query<'_> {
    pub fn question_bytes(&self) -> &[u8] {
        &self.packet[self.question.clone()]
    }

    /// The OPT record's options, empty without EDNS.
    pub fn edns_options(&self) -> &[u8] {
        match self.edns {
            Some(e) => &self.packet[e.options.0 as usize..e.options.1 as usize],
            None => &[],
        }
    }

    /// The largest answer the client can take over UDP (RFC 6891 §6.2.5: at least 512).
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => (e.udp_size as usize).clamp(512, 4096),
            None => 512,
        }
    }
}

/// Why a packet is not a query we answer normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    /// Not even a query header: nothing to answer (RFC 1035 leaves it to us; answering junk
    /// would make us a reflector).
    Drop,
    /// A header we can answer with this rcode (FORMERR, NOTIMP, BADVERS). `question_end` is
    /// where the question ends when it could be read (0 when not: it starts at
    /// [`HEADER_LEN`]), and `edns` the query's OPT record when it could be read: the answer
    /// echoes both, as RFC 6891 §7 and RFC 1035 §4.1.1 ask.
    Reply {
        id: u16,
        flags: u16,
        rcode: u16,
        question_end: u16,
        edns: Option<Edns>,
    },
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let v = *self.msg.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.msg.get(self.pos..self.pos + 2)?;
        self.pos += 2;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.msg.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        (self.pos + n <= self.msg.len()).then(|| self.pos += n)
    }

    /// Steps over a possibly compressed name.
    fn skip_name(&mut self) -> Option<()> {
        loop {
            let len = self.u8()?;
            match len {
                0 => return Some(()),
                l if l & 0xC0 == 0xC0 => return self.skip(1),
                l if l & 0xC0 == 0 => self.skip(l as usize)?,
                _ => return None,
            }
        }
    }
}

pub fn read_u16(msg: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([msg[at], msg[at + 1]])
}

pub fn write_u16(msg: &mut [u8], at: usize, v: u16) {
    msg[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Parses a query: one question, no compression in it, at most one OPT record. Another opcode
/// than QUERY is NOTIMP, an EDNS version other than 0 BADVERS; both keep the question.
pub fn parse_query(packet: &[u8]) -> Result<Query<'_>, QueryError> {
    if packet.len() < HEADER_LEN {
        return Err(QueryError::Drop);
    }
    let id = read_u16(packet, 0);
    let flags = read_u16(packet, 2);
    if flags & flag::QR != 0 {
        return Err(QueryError::Drop);
    }
    let reply = |rcode: u16, q: Option<&Query<'_>>| QueryError::Reply {
        id,
        flags,
        rcode,
        question_end: q.map_or(0, |q| q.question.end as u16),
        edns: q.and_then(|q| q.edns),
    };
    let opcode_known = flags & flag::OPCODE == 0;
    match parse_body(packet, id, flags) {
        Some(q) if !opcode_known => Err(reply(rcode::NOTIMP as u16, Some(&q))),
        Some(q) if q.edns.is_some_and(|e| e.version != 0) => Err(reply(rcode::BADVERS, Some(&q))),
        Some(q) => Ok(q),
        None if !opcode_known => Err(reply(rcode::NOTIMP as u16, None)),
        None => Err(reply(rcode::FORMERR as u16, None)),
    }
}

/// The question and OPT record of a query whose header is read; `None` when they are malformed.
fn parse_body(packet: &[u8], id: u16, flags: u16) -> Option<Query<'_>> {
    let counts = [4, 6, 8, 10].map(|at| read_u16(packet, at));
    if counts[0] != 1 || counts[1] != 0 {
        return None;
    }
    let (name, used) = QName::from_wire(&packet[HEADER_LEN..])
        .map_err(|_: QNameError| ())
        .ok()?;
    let mut r = Reader {
        msg: packet,
        pos: HEADER_LEN + used,
    };
    let (qtype, qclass) = (r.u16()?, r.u16()?);
    let question = HEADER_LEN..r.pos;
    let edns = read_edns(&mut r, counts[2], counts[3])?;
    Some(Query {
        packet,
        id,
        flags,
        name,
        qtype,
        qclass,
        question,
        edns,
    })
}

/// Finds the OPT record among the authority and additional records; `None` when they are
/// malformed or hold two OPTs.
fn read_edns(r: &mut Reader<'_>, nscount: u16, arcount: u16) -> Option<Option<Edns>> {
    let mut edns = None;
    for i in 0..(nscount as usize + arcount as usize) {
        let name_at = r.pos;
        r.skip_name()?;
        let rtype = r.u16()?;
        let class = r.u16()?;
        let ttl = r.u32()?;
        let rdlen = r.u16()?;
        let rdata = r.pos;
        r.skip(rdlen as usize)?;
        if rtype == rtype::OPT {
            let root = r.msg[name_at] == 0;
            if edns.is_some() || !root || i < nscount as usize {
                return None;
            }
            edns = Some(Edns {
                udp_size: class,
                dnssec_ok: ttl & 0x8000 != 0,
                version: (ttl >> 16) as u8,
                options: (rdata as u16, r.pos as u16),
            });
        }
    }
    Some(edns)
}

/// What the cache needs to know about an upstream answer.
#[derive(Debug, Clone, Default)]
pub struct AnswerInfo {
    pub rcode: u8,
    pub truncated: bool,
    /// Offsets of every record's TTL field, OPT excluded.
    pub ttl_offsets: Vec<u16>,
    /// The OPT record's bytes, to drop for a client that sent no EDNS.
    pub opt: Option<Range<usize>>,
    /// Smallest TTL in the answer section.
    pub min_answer_ttl: Option<u32>,
    /// RFC 2308 §5: min(SOA TTL, SOA MINIMUM) of an SOA in the authority section.
    pub negative_ttl: Option<u32>,
    /// Targets of CNAME records in the answer section, lowercase wire form.
    pub cname_targets: Vec<Box<[u8]>>,
    pub answers: u16,
}

/// Why an upstream answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("malformed answer")]
    Malformed,
    #[error("answer is for another question")]
    Mismatch,
}

/// Whether `msg` is a truncated answer with our `id` and no question section: only TCP can
/// tell more.
pub fn truncated_without_question(msg: &[u8], id: u16) -> bool {
    msg.len() >= HEADER_LEN
        && read_u16(msg, 0) == id
        && read_u16(msg, 2) & (flag::QR | flag::TC) == flag::QR | flag::TC
        && read_u16(msg, 4) == 0
}

/// Walks an upstream answer to `question` (our query's question bytes, sent with `id`).
pub fn inspect_answer(msg: &[u8], id: u16, question: &[u8]) -> Result<AnswerInfo, AnswerError> {
    if msg.len() < HEADER_LEN || msg.len() > u16::MAX as usize {
        return Err(AnswerError::Malformed);
    }
    let flags = read_u16(msg, 2);
    if read_u16(msg, 0) != id || flags & flag::QR == 0 || read_u16(msg, 4) != 1 {
        return Err(AnswerError::Mismatch);
    }
    let qend = HEADER_LEN + question.len();
    let same_question = msg
        .get(HEADER_LEN..qend)
        .is_some_and(|q| q.eq_ignore_ascii_case(question));
    if !same_question {
        return Err(AnswerError::Mismatch);
    }
    let mut info = AnswerInfo {
        rcode: (flags & flag::RCODE) as u8,
        truncated: flags & flag::TC != 0,
        answers: read_u16(msg, 6),
        ..AnswerInfo::default()
    };
    let mut malformed = false;
    for_each_record(msg, |rec| {
        malformed = read_record(msg, rec, &mut info).is_none();
        !malformed
    })
    .ok_or(AnswerError::Malformed)?;
    if malformed {
        return Err(AnswerError::Malformed);
    }
    Ok(info)
}

fn read_record(msg: &[u8], rec: &Record, info: &mut AnswerInfo) -> Option<()> {
    if rec.rtype == rtype::OPT {
        info.opt = Some(rec.start..rec.end);
        return Some(());
    }
    info.ttl_offsets.push(u16::try_from(rec.ttl_at).ok()?);
    let ttl = rec.ttl.min(i32::MAX as u32);
    let lower = |m: Option<u32>| Some(m.map_or(ttl, |m| m.min(ttl)));
    match (rec.section, rec.rtype) {
        (0, rtype::CNAME) => {
            let (target, _) = read_name(msg, rec.rdata)?;
            info.cname_targets.push(target.wire().into());
            info.min_answer_ttl = lower(info.min_answer_ttl);
        }
        (0, _) => info.min_answer_ttl = lower(info.min_answer_ttl),
        (1, rtype::SOA) if rec.end - rec.rdata >= 22 => {
            let minimum = u32::from_be_bytes(msg[rec.end - 4..rec.end].try_into().ok()?);
            info.negative_ttl = Some(ttl.min(minimum));
        }
        _ => {}
    }
    Some(())
}

/// Where one resource record stands in a message.
struct Record {
    start: usize,
    /// 0 answer, 1 authority, 2 additional.
    section: usize,
    rtype: u16,
    ttl_at: usize,
    ttl: u32,
    rdata: usize,
    end: usize,
}

/// Calls `f` with every record after the question section, in order, until it returns false.
/// `None` when the message is malformed before `f` said stop.
fn for_each_record(msg: &[u8], mut f: impl FnMut(&Record) -> bool) -> Option<()> {
    if msg.len() < HEADER_LEN {
        return None;
    }
    let mut r = Reader {
        msg,
        pos: HEADER_LEN,
    };
    for _ in 0..read_u16(msg, 4) {
        r.skip_name()?;
        r.skip(4)?;
    }
    for (section, at) in [6, 8, 10].into_iter().enumerate() {
        for _ in 0..read_u16(msg, at) {
            let start = r.pos;
            r.skip_name()?;
            let rtype = r.u16()?;
            r.skip(2)?;
            let ttl_at = r.pos;
            let ttl = r.u32()?;
            let rdlen = r.u16()? as usize;
            let rdata = r.pos;
            r.skip(rdlen)?;
            let rec = Record {
                start,
                section,
                rtype,
                ttl_at,
                ttl,
                rdata,
                end: r.pos,
            };
            if !f(&rec) {
                return Some(());
            }
        }
    }
    Some(())
}

/// The smallest TTL of the records of a message (OPT excepted): how long an HTTP cache may keep
/// a DoH answer (RFC 8484 §5.1).
pub fn min_ttl(msg: &[u8]) -> Option<u32> {
    let mut min: Option<u32> = None;
    for_each_record(msg, |rec| {
        if rec.rtype != rtype::OPT {
            min = Some(min.map_or(rec.ttl, |m| m.min(rec.ttl)));
        }
        true
    })?;
    min
}

/// Where the sections of a message end, for dropping the ones that do not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sections {
    pub answer_end: usize,
    pub authority_end: usize,
    /// The OPT record, wherever it stands in the additional section.
    pub opt: Option<Range<usize>>,
}

/// The sections of `msg`, whose question section ends at `question_end`.
pub fn sections(msg: &[u8], question_end: usize) -> Option<Sections> {
    let mut s = Sections {
        answer_end: question_end,
        authority_end: question_end,
        opt: None,
    };
    for_each_record(msg, |rec| {
        if rec.section == 0 {
            s.answer_end = rec.end;
        }
        if rec.section <= 1 {
            s.authority_end = rec.end;
        }
        if rec.rtype == rtype::OPT && rec.section == 2 {
            s.opt = Some(rec.start..rec.end);
        }
        true
    })?;
    Some(s)
}

/// Scrubs an upstream answer to `question` as Unbound does before it is cached: the additional
/// section loses every record but the OPT record. Its records name other owners than the
/// question and its chain (glue, "helpful" addresses), which no client needs from a forwarder
/// and which would hand out, unchecked, addresses of names the policy blocks. Returns whether
/// anything was dropped.
pub fn scrub_additional(msg: &mut Vec<u8>, question: &[u8]) -> bool {
    let Some(s) = sections(msg, HEADER_LEN + question.len()) else {
        return false;
    };
    let arcount = read_u16(msg, 10);
    if arcount <= s.opt.is_some() as u16 {
        return false;
    }
    let end = s.authority_end;
    let opt = s.opt.unwrap_or(end..end);
    msg.copy_within(opt.clone(), end);
    msg.truncate(end + opt.len());
    write_u16(msg, 10, (!opt.is_empty()) as u16);
    true
}

/// Where the OPT record of a message keeps its RDLENGTH, and where its RDATA ends.
pub fn find_opt(msg: &[u8]) -> Option<(usize, usize)> {
    let mut found = None;
    for_each_record(msg, |rec| {
        if rec.rtype == rtype::OPT {
            found = Some((rec.rdata - 2, rec.end));
        }
        found.is_none()
    })?;
    found
}

/// Reads a possibly compressed name at `at`. Pointers must point backwards, so a loop cannot
/// be built. Returns the name and the offset after it.
pub fn read_name(msg: &[u8], at: usize) -> Option<(QName, usize)> {
    let mut name = QName::root();
    let mut pos = at;
    let mut end = None;
    loop {
        let len = *msg.get(pos)?;
        match len {
            0 => return Some((name, end.unwrap_or(pos + 1))),
            l if l & 0xC0 == 0xC0 => {
                let target = (((l & 0x3F) as usize) << 8) | *msg.get(pos + 1)? as usize;
                if target >= pos {
                    return None;
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            l if l & 0xC0 == 0 => {
                name.push_label(msg.get(pos + 1..pos + 1 + l as usize)?)
                    .ok()?;
                pos += 1 + l as usize;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16, opt: Option<(u16, u32)>) -> Vec<u8> {
        let mut p = vec![
            0x12,
            0x34,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            opt.is_some() as u8,
        ];
        p.extend_from_slice(name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        if let Some((size, ttl)) = opt {
            p.push(0);
            p.extend_from_slice(&rtype::OPT.to_be_bytes());
            p.extend_from_slice(&size.to_be_bytes());
            p.extend_from_slice(&ttl.to_be_bytes());
            p.extend_from_slice(&0u16.to_be_bytes());
        }
        p
    }

    #[test]
    fn parses_a_query_with_edns() {
        let p = query(
            b"\x03WWW\x07example\x03com\x00",
            rtype::A,
            Some((1232, 0x8000)),
        );
        let q = parse_query(&p).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.name.to_dotted(), "www.example.com");
        assert_eq!(q.qtype, rtype::A);
        assert_eq!(
            q.edns,
            Some(Edns {
                udp_size: 1232,
                dnssec_ok: true,
                version: 0,
                options: (p.len() as u16, p.len() as u16),
            })
        );
        assert_eq!(q.question_bytes(), &p[12..p.len() - 11]);
        assert_eq!(q.udp_limit(), 1232);
    }

    #[test]
    fn reads_a_notify_with_its_soa_and_nothing_else() {
        let mut p = query(b"\x03rpz\x04Test\x00", rtype::SOA, None);
        assert!(!is_notify(&p) && parse_notify(&p).is_none());
        p[2] |= (OPCODE_NOTIFY >> 8) as u8;
        // A NOTIFY may carry the new SOA in its answer section: it is not read.
        p[7] = 1;
        p.extend_from_slice(b"\xc0\x0c\x00\x06\x00\x01\x00\x00\x00\x3c\x00\x00");
        let n = parse_notify(&p).unwrap();
        assert_eq!(n.zone.to_dotted(), "rpz.test");
        assert_eq!(n.question_end, 12 + 10 + 4);
        let mut a = p.clone();
        a[23] = 1; // qtype A instead of SOA
        assert!(parse_notify(&a).is_none());
        let mut response = p.clone();
        response[2] |= 0x80;
        assert!(!is_notify(&response));
        assert!(parse_notify(&p[..20]).is_none());
    }

    #[test]
    fn refuses_what_is_not_a_plain_query() {
        assert_eq!(parse_query(&[0; 5]).unwrap_err(), QueryError::Drop);
        let mut p = query(b"\x01a\x00", 1, None);
        p[2] |= 0x80;
        assert_eq!(parse_query(&p).unwrap_err(), QueryError::Drop);
        let mut p = query(b"\x01a\x00", 1, None);
        p[5] = 2;
        assert!(matches!(
            parse_query(&p),
            Err(QueryError::Reply { rcode: 1, .. })
        ));
        let p = query(b"\x01a\x00", 1, Some((1232, 1 << 16)));
        assert!(matches!(
            parse_query(&p),
            Err(QueryError::Reply { rcode: 16, .. })
        ));
        let p = query(b"\x05a\x00", 1, None);
        assert!(matches!(
            parse_query(&p),
            Err(QueryError::Reply { rcode: 1, .. })
        ));
    }

    #[test]
    fn reads_compressed_names_and_refuses_loops() {
        let msg = b"\x00\x00\x03www\x07example\x03com\x00\x03cdn\xc0\x06";
        let (name, next) = read_name(msg, 19).unwrap();
        assert_eq!(name.to_dotted(), "cdn.example.com");
        assert_eq!(next, 25);
        assert!(read_name(b"\xc0\x00", 0).is_none());
    }
}
