//! dnstap's messages (the public `dnstap.proto`, proto2, the fields Cordon fills), and one query
//! log record as the two payloads every DNS server sends for a client's query: CLIENT_QUERY and
//! CLIENT_RESPONSE, with Cordon's decision and reason in `extra`.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message as _;

use super::client::ClientShown;
use super::framestream::data_frame_by;
use crate::dns::record::{QueryRecord, Words};
use crate::identity::Transport;

/// `dnstap.Dnstap`, the payload of every frame.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dnstap {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub identity: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub version: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub extra: Option<Vec<u8>>,
    #[prost(message, optional, tag = "14")]
    pub message: Option<Message>,
    #[prost(enumeration = "DnstapType", required, tag = "15")]
    pub r#type: i32,
}

/// `Dnstap.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DnstapType {
    Message = 1,
}

/// `dnstap.Message`: a DNS message and where and when it went.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    #[prost(enumeration = "MessageType", required, tag = "1")]
    pub r#type: i32,
    #[prost(enumeration = "SocketFamily", optional, tag = "2")]
    pub socket_family: Option<i32>,
    #[prost(enumeration = "SocketProtocol", optional, tag = "3")]
    pub socket_protocol: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub query_address: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub response_address: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "6")]
    pub query_port: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    pub response_port: Option<u32>,
    #[prost(uint64, optional, tag = "8")]
    pub query_time_sec: Option<u64>,
    #[prost(fixed32, optional, tag = "9")]
    pub query_time_nsec: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "10")]
    pub query_message: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "11")]
    pub query_zone: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "12")]
    pub response_time_sec: Option<u64>,
    #[prost(fixed32, optional, tag = "13")]
    pub response_time_nsec: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "14")]
    pub response_message: Option<Vec<u8>>,
}

/// `Message.Type` (the two a resolver sends about its clients; the schema has more).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MessageType {
    ClientQuery = 5,
    ClientResponse = 6,
}

/// `SocketFamily`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SocketFamily {
    Inet = 1,
    Inet6 = 2,
}

/// `SocketProtocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SocketProtocol {
    Udp = 1,
    Tcp = 2,
    Dot = 3,
    Doh = 4,
    DnsCryptUdp = 5,
    DnsCryptTcp = 6,
    Doq = 7,
}

impl From<Transport> for SocketProtocol {
    fn from(t: Transport) -> Self {
        match t {
            Transport::Udp => SocketProtocol::Udp,
            Transport::Tcp => SocketProtocol::Tcp,
            Transport::Dot => SocketProtocol::Dot,
            Transport::Doh => SocketProtocol::Doh,
            Transport::Doq => SocketProtocol::Doq,
        }
    }
}

/// Turns records into dnstap payloads, with this server's identity and version in each.
pub struct Encoder {
    pub client: ClientShown,
    /// The decisions' words, made once each (the sender's thread alone uses the encoder).
    pub words: RefCell<Words>,
    /// The message encoded last, kept so that its buffers (identity, version, extra, the DNS
    /// messages) are filled again rather than allocated for each record.
    pub scratch: RefCell<Dnstap>,
}

impl Encoder {
    pub fn new(identity: Vec<u8>, version: Vec<u8>, client: ClientShown) -> Encoder {
        let scratch = Dnstap {
            identity: Some(identity),
            version: Some(version),
            extra: Some(Vec::new()),
            message: Some(Message::default()),
            r#type: DnstapType::Message as i32,
        };
        Encoder {
            client,
            words: RefCell::default(),
            scratch: RefCell::new(scratch),
        }
    }

    /// Appends `record`'s CLIENT_QUERY and CLIENT_RESPONSE, in that order, to `out` as Frame
    /// Streams data frames (a 4-byte big-endian length, then the payload).
    pub fn frames(&self, record: &QueryRecord, out: &mut Vec<u8>) {
        let mut scratch = self.scratch.borrow_mut();
        let d = &mut *scratch;
        let extra = d.extra.get_or_insert_with(Vec::new);
        extra.clear();
        self.write_extra(record, extra);
        let m = d.message.get_or_insert_with(Message::default);
        let (query_sec, query_nsec) = unix(record.at);
        let (response_sec, response_nsec) = unix(record.at + record.took);
        let family = match record.client {
            IpAddr::V4(_) => SocketFamily::Inet,
            IpAddr::V6(_) => SocketFamily::Inet6,
        };
        m.socket_family = Some(family as i32);
        m.socket_protocol = Some(SocketProtocol::from(record.transport) as i32);
        m.query_address = match (&self.client, record.client) {
            (ClientShown::Address, IpAddr::V4(v4)) => Some(v4.octets().to_vec()),
            (ClientShown::Address, IpAddr::V6(v6)) => Some(v6.octets().to_vec()),
            _ => None,
        };
        m.query_port = match self.client {
            ClientShown::Address => Some(u32::from(record.port)),
            _ => None,
        };
        m.query_time_sec = Some(query_sec);
        m.query_time_nsec = Some(query_nsec);
        // The query's frame carries the query, the response's the response: each buffer is
        // taken out while the other frame is encoded, and kept for the next record.
        let mut query = m.query_message.take().unwrap_or_default();
        let mut response = m.response_message.take().unwrap_or_default();
        query.clear();
        response.clear();
        if let Some((q, r)) = record.wire.messages() {
            query.extend_from_slice(q);
            response.extend_from_slice(r);
        }
        let with_messages = record.wire.messages().is_some();
        m.r#type = MessageType::ClientQuery as i32;
        m.query_message = Some(query);
        m.response_time_sec = None;
        m.response_time_nsec = None;
        frame(d, with_messages, out);
        let m = d.message.get_or_insert_with(Message::default);
        let query = m.query_message.take();
        m.r#type = MessageType::ClientResponse as i32;
        m.response_time_sec = Some(response_sec);
        m.response_time_nsec = Some(response_nsec);
        m.response_message = Some(response);
        frame(d, with_messages, out);
        if let Some(m) = d.message.as_mut() {
            m.query_message = query;
        }
    }

    /// The CLIENT_QUERY and CLIENT_RESPONSE payloads of `record`, in that order: what
    /// [`Encoder::frames`] frames.
    #[cfg(test)]
    pub fn payloads(&self, record: &QueryRecord) -> [Vec<u8>; 2] {
        let mut out = Vec::new();
        self.frames(record, &mut out);
        let first = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        let second = out.split_off(4 + first);
        [out[4..].to_vec(), second[4..].to_vec()]
    }

    /// Writes `cordon decision=blocked reason="category malware (policy standard, group
    /// default)" device=device#7`, and `client_hash=...` when the client is hashed.
    fn write_extra(&self, record: &QueryRecord, out: &mut Vec<u8>) {
        let mut words = self.words.borrow_mut();
        let reason = words.of(record);
        out.extend_from_slice(b"cordon decision=");
        out.extend_from_slice(record.outcome.as_str().as_bytes());
        out.extend_from_slice(b" reason=\"");
        for b in reason.bytes() {
            if b == b'\\' || b == b'"' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
        // Writing into a Vec cannot fail.
        if let Some(device) = record.device {
            let _ = write!(out, " device={device}");
        }
        if let ClientShown::Hash(key) = &self.client {
            let _ = write!(out, " client_hash={}", key.hash(record.client));
        }
    }
}

/// Appends `d` as one data frame; an empty DNS message buffer (a record without its messages)
/// is left out of the payload, as a field never set.
fn frame(d: &mut Dnstap, with_messages: bool, out: &mut Vec<u8>) {
    let (query, response) = match d.message.as_mut() {
        Some(m) if !with_messages => (m.query_message.take(), m.response_message.take()),
        _ => (None, None),
    };
    // A Vec grows as it is written: encoding into one cannot fail.
    data_frame_by(d.encoded_len(), out, |out| {
        let _ = d.encode(out);
    });
    if let Some(m) = d.message.as_mut() {
        if query.is_some() {
            m.query_message = query;
        }
        if response.is_some() {
            m.response_message = response;
        }
    }
}

/// Seconds and nanoseconds since the epoch.
fn unix(at: SystemTime) -> (u64, u32) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_secs(), since.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::dns::record::Wire;
    use crate::querylog::client::HashKey;
    use crate::querylog::json::tests::record;

    fn encoder(client: ClientShown) -> Encoder {
        Encoder::new(b"node-a".to_vec(), b"cordon 0.6.0".to_vec(), client)
    }

    #[test]
    fn each_record_is_encoded_afresh_though_the_buffers_are_reused() {
        let encoder = encoder(ClientShown::Address);
        let mut with = record();
        let name = with.wire.name().to_vec();
        with.wire = Wire::new(&name, Some((b"query bytes", b"response bytes")));
        let first = encoder.payloads(&with);
        // A record without messages, from another address, with another decision.
        let mut without = record();
        without.client = "2001:db8::7".parse().unwrap();
        without.device = None;
        let [cq, cr] = encoder
            .payloads(&without)
            .map(|p| Dnstap::decode(&p[..]).unwrap());
        let (q, r) = (cq.message.unwrap(), cr.message.unwrap());
        assert_eq!((q.query_message, r.response_message), (None, None));
        assert_eq!((q.response_message, r.query_message), (None, None));
        assert_eq!(q.query_address.unwrap().len(), 16);
        let extra = String::from_utf8(cq.extra.unwrap()).unwrap();
        assert!(!extra.contains("device="), "{extra}");
        // The first record again: the same bytes as the first time.
        assert_eq!(encoder.payloads(&with), first);
        let [cq, cr] = first.map(|p| Dnstap::decode(&p[..]).unwrap());
        let (q, r) = (cq.message.unwrap(), cr.message.unwrap());
        assert_eq!(q.query_message.as_deref(), Some(&b"query bytes"[..]));
        assert_eq!(q.response_message, None);
        assert_eq!(r.response_message.as_deref(), Some(&b"response bytes"[..]));
        assert_eq!(r.query_message, None);
    }

    #[test]
    fn a_record_is_a_client_query_and_a_client_response() {
        let mut record = record();
        let name = record.wire.name().to_vec();
        record.wire = Wire::new(&name, Some((b"query bytes", b"response bytes")));
        let [cq, cr] = encoder(ClientShown::Address).payloads(&record);
        let (cq, cr) = (
            Dnstap::decode(&cq[..]).unwrap(),
            Dnstap::decode(&cr[..]).unwrap(),
        );
        for d in [&cq, &cr] {
            assert_eq!(d.r#type, DnstapType::Message as i32);
            assert_eq!(d.identity.as_deref(), Some(&b"node-a"[..]));
            assert_eq!(d.version.as_deref(), Some(&b"cordon 0.6.0"[..]));
            let extra = String::from_utf8(d.extra.clone().unwrap()).unwrap();
            assert!(
                extra.starts_with("cordon decision=blocked reason=\"category malware (policy "),
                "{extra}"
            );
            assert!(extra.ends_with(" device=device#7"), "{extra}");
            let m = d.message.as_ref().unwrap();
            assert_eq!(m.socket_family, Some(SocketFamily::Inet as i32));
            assert_eq!(m.socket_protocol, Some(SocketProtocol::Udp as i32));
            assert_eq!(m.query_address.as_deref(), Some(&[192, 0, 2, 1][..]));
            assert_eq!(m.query_port, Some(49_152));
            assert_eq!(m.query_time_sec, Some(1_796_000_523));
            assert_eq!(m.query_time_nsec, Some(456_000_000));
        }
        let (q, r) = (cq.message.unwrap(), cr.message.unwrap());
        assert_eq!(q.r#type, MessageType::ClientQuery as i32);
        assert_eq!(q.query_message.as_deref(), Some(&b"query bytes"[..]));
        assert_eq!((q.response_message, q.response_time_sec), (None, None));
        assert_eq!(r.r#type, MessageType::ClientResponse as i32);
        assert_eq!(r.response_message.as_deref(), Some(&b"response bytes"[..]));
        assert_eq!(r.response_time_sec, Some(1_796_000_523));
        assert_eq!(r.response_time_nsec, Some(457_250_000), "at + took");
        assert_eq!(r.query_message, None);
    }

    /// The top-level fields of a protobuf message: (tag, wire type, value or bytes).
    fn fields(mut buf: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
        fn varint(buf: &mut &[u8]) -> u64 {
            let (mut value, mut shift) = (0, 0);
            loop {
                let b = buf[0];
                *buf = &buf[1..];
                value |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    return value;
                }
            }
        }
        let mut out = Vec::new();
        while !buf.is_empty() {
            let key = varint(&mut buf);
            let (tag, wire) = (key >> 3, key & 7);
            let value = match wire {
                0 => varint(&mut buf).to_le_bytes().to_vec(),
                2 => {
                    let n = varint(&mut buf) as usize;
                    let (v, rest) = buf.split_at(n);
                    buf = rest;
                    v.to_vec()
                }
                5 => {
                    let (v, rest) = buf.split_at(4);
                    buf = rest;
                    v.to_vec()
                }
                other => panic!("wire type {other}"),
            };
            out.push((tag, wire, value));
        }
        out
    }

    #[test]
    fn the_wire_form_has_the_schema_s_field_numbers_and_types() {
        let [cq, _] = encoder(ClientShown::Address).payloads(&record());
        let top = fields(&cq);
        let tags: Vec<(u64, u64)> = top.iter().map(|(t, w, _)| (*t, *w)).collect();
        // identity, version, extra (bytes), message (14), type (15, varint)
        assert_eq!(tags, [(1, 2), (2, 2), (3, 2), (14, 2), (15, 0)]);
        assert_eq!(top[4].2[0], 1, "Dnstap.Type MESSAGE");
        let message = fields(&top[3].2);
        let tags: Vec<(u64, u64)> = message.iter().map(|(t, w, _)| (*t, *w)).collect();
        // type, socket_family, socket_protocol, query_address, query_port, query_time_sec,
        // query_time_nsec (fixed32: wire type 5)
        assert_eq!(
            tags,
            [(1, 0), (2, 0), (3, 0), (4, 2), (6, 0), (8, 0), (9, 5)]
        );
        assert_eq!(message[0].2[0], 5, "CLIENT_QUERY");
        assert_eq!(message[6].2, 456_000_000u32.to_le_bytes());
    }

    #[test]
    fn a_hidden_or_hashed_client_has_no_address() {
        let mut record = record();
        record.client = "2001:db8::1".parse().unwrap();
        record.transport = Transport::Doh;
        let key = HashKey::new(b"0123456789abcdef");
        let hash = key.hash(record.client);
        let [cq, _] = encoder(ClientShown::Hash(key)).payloads(&record);
        let d = Dnstap::decode(&cq[..]).unwrap();
        let m = d.message.unwrap();
        assert_eq!((m.query_address, m.query_port), (None, None));
        assert_eq!(m.socket_family, Some(SocketFamily::Inet6 as i32));
        assert_eq!(m.socket_protocol, Some(SocketProtocol::Doh as i32));
        let extra = String::from_utf8(d.extra.unwrap()).unwrap();
        assert!(extra.ends_with(&format!(" client_hash={hash}")), "{extra}");
        let [cq, _] = encoder(ClientShown::Hidden).payloads(&record);
        let d = Dnstap::decode(&cq[..]).unwrap();
        assert_eq!(d.message.unwrap().query_address, None);
        assert!(!String::from_utf8(d.extra.unwrap())
            .unwrap()
            .contains("client"));
    }
}
