//! The answer cache: upstream answers as they came, before any policy (contract 3), shared by
//! every client, bounded, honouring TTLs (RFC 2308 for negative answers) and able to serve stale
//! answers when upstreams fail (RFC 8767).

use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::Arc;

use super::cache_lines::{CacheLines, Keyed};
use super::wire::{flag, rcode, AnswerInfo, Query};

/// Seconds on the coarse monotonic clock: TTLs count whole seconds, and the coarse clock is read
/// without the time-stamp counter, which costs more than the lookup it serves.
pub fn now_secs() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call writes nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64
}

/// How long past expiry a stale answer may still be served (RFC 8767 suggests 1 to 3 days).
const STALE_WINDOW: u64 = 86_400;

/// One cached upstream answer and what is patched into it when it is served: a small header,
/// its cache key, the answer as upstream sent it, the offsets of its TTLs and its CNAME targets,
/// all in one shared allocation, so that serving it reads one run of memory rather than a
/// struct and the three buffers it would point to. Clones share it.
#[derive(Debug, Clone)]
pub struct CachedAnswer(Arc<[u8]>);

/// Header fields (little-endian): when stored (coarse seconds), lifetime, then u16s: key length,
/// answer length, TTL count, OPT record start and length (0: none).
const STORED: usize = 0;
const LIFETIME: usize = 4;
const KEY_LEN: usize = 8;
const ANSWER_LEN: usize = 10;
const TTL_COUNT: usize = 12;
const OPT_START: usize = 14;
const OPT_LEN: usize = 16;
const HEADER: usize = 18;

impl CachedAnswer {
    /// Wraps the answer to the question `key` (see [`key`]); for an answer that is not to be
    /// cached, `lifetime` is 0 and its TTLs are served as they are.
    pub fn new(key: &[u8], answer: &[u8], info: AnswerInfo, lifetime: u32) -> Self {
        let targets: usize = info.cname_targets.iter().map(|t| t.len()).sum();
        let size = HEADER + key.len() + answer.len() + 2 * info.ttl_offsets.len() + targets;
        let mut body = Vec::with_capacity(size);
        let opt = info.opt.unwrap_or(0..0);
        body.extend_from_slice(&(now_secs() as u32).to_le_bytes());
        body.extend_from_slice(&lifetime.to_le_bytes());
        // Keys are at most 260 bytes and DNS messages at most 65,535.
        for n in [
            key.len(),
            answer.len(),
            info.ttl_offsets.len(),
            opt.start,
            opt.len(),
        ] {
            body.extend_from_slice(&(n as u16).to_le_bytes());
        }
        body.extend_from_slice(key);
        body.extend_from_slice(answer);
        for at in &info.ttl_offsets {
            body.extend_from_slice(&at.to_le_bytes());
        }
        for target in &info.cname_targets {
            body.extend_from_slice(target);
        }
        CachedAnswer(body.into())
    }

    fn u16_at(&self, at: usize) -> usize {
        u16::from_le_bytes([self.0[at], self.0[at + 1]]) as usize
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]])
    }

    /// The answer's bytes, as upstream sent them.
    pub fn answer(&self) -> &[u8] {
        let start = HEADER + self.u16_at(KEY_LEN);
        &self.0[start..start + self.u16_at(ANSWER_LEN)]
    }

    fn ttls_start(&self) -> usize {
        HEADER + self.u16_at(KEY_LEN) + self.u16_at(ANSWER_LEN)
    }

    /// Where in [`CachedAnswer::answer`] each TTL sits.
    pub fn ttl_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        let start = self.ttls_start();
        self.0[start..start + 2 * self.u16_at(TTL_COUNT)]
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    }

    /// Where in the answer its OPT record is, to drop for a client that sent no EDNS.
    pub fn opt(&self) -> Option<Range<usize>> {
        let (start, len) = (self.u16_at(OPT_START), self.u16_at(OPT_LEN));
        (len > 0).then_some(start..start + len)
    }

    /// The answer's CNAME targets, lowercase wire form, checked against the policy on every
    /// serve.
    pub fn cname_targets(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut rest = &self.0[self.ttls_start() + 2 * self.u16_at(TTL_COUNT)..];
        std::iter::from_fn(move || {
            let end = wire_name_len(rest)?;
            let (name, tail) = rest.split_at(end);
            rest = tail;
            Some(name)
        })
    }

    /// Seconds since it was stored.
    pub fn age(&self) -> u32 {
        self.age_at(now_secs() as u32)
    }

    fn age_at(&self, now: u32) -> u32 {
        now.saturating_sub(self.u32_at(STORED))
    }

    pub(super) fn lifetime(&self) -> u32 {
        self.u32_at(LIFETIME)
    }

    pub fn rcode(&self) -> u8 {
        self.answer().get(3).map_or(rcode::SERVFAIL, |b| b & 0xF)
    }
}

/// The length of the uncompressed wire name at the start of `bytes`, its root label included.
impl Keyed for CachedAnswer {
    fn key(&self) -> &[u8] {
        &self.0[HEADER..HEADER + self.u16_at(KEY_LEN)]
    }
}

fn wire_name_len(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let len = *bytes.get(at)? as usize;
        at += 1 + len;
        if len == 0 {
            return Some(at);
        }
    }
}

/// What a lookup found.
pub enum Lookup {
    Fresh(CachedAnswer),
    /// Expired, but within the stale window: serve it only if upstreams fail.
    Stale(CachedAnswer),
    Miss,
}

/// `[cache]` in the config: the cache's bounds.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheLimits {
    pub max_entries: usize,
    pub min_ttl: u32,
    pub max_ttl: u32,
    pub serve_stale: bool,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_entries: 200_000,
            min_ttl: 0,
            max_ttl: 86_400,
            serve_stale: true,
        }
    }
}

pub struct Cache {
    lines: CacheLines<CachedAnswer>,
    /// Keyed per process: no one can aim names at one set or make two questions collide.
    hasher: foldhash::fast::RandomState,
    limits: CacheLimits,
}

/// A question's hash, its set already on its way into the CPU cache: taken before the policy
/// decides, used after.
#[derive(Clone, Copy)]
pub struct Probe(u64);

/// Room for the longest cache key: name, type, class and a flags byte.
pub type KeyBuf = [u8; 260];

/// The cache key of a query, built into `buf`: its lowercase name, type, class, and the bits that
/// change what an upstream returns (DO, CD).
pub fn key<'b>(q: &Query<'_>, buf: &'b mut KeyBuf) -> &'b [u8] {
    let name = q.name.wire();
    let n = name.len();
    buf[..n].copy_from_slice(name);
    buf[n..n + 2].copy_from_slice(&q.qtype.to_be_bytes());
    buf[n + 2..n + 4].copy_from_slice(&q.qclass.to_be_bytes());
    let dnssec_ok = q.edns.is_some_and(|e| e.dnssec_ok) as u8;
    let checking_disabled = (q.flags & flag::CD != 0) as u8;
    buf[n + 4] = dnssec_ok | checking_disabled << 1;
    &buf[..n + 5]
}

impl Cache {
    pub fn new(limits: CacheLimits) -> Self {
        Cache {
            lines: CacheLines::new(limits.max_entries),
            hasher: Default::default(),
            limits,
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts loading the set that holds `key`, if anything does.
    pub fn probe(&self, key: &[u8]) -> Probe {
        let hash = self.hasher.hash_one(key);
        self.lines.prefetch(hash);
        Probe(hash)
    }

    /// The answer stored for `key`, whose probe is `probe`.
    pub fn get(&self, probe: Probe, key: &[u8]) -> Lookup {
        let Some(entry) = self.lines.get(probe.0, key) else {
            return Lookup::Miss;
        };
        let age = entry.age() as u64;
        if age < entry.lifetime() as u64 {
            Lookup::Fresh(entry)
        } else if self.limits.serve_stale && age < entry.lifetime() as u64 + STALE_WINDOW {
            Lookup::Stale(entry)
        } else {
            Lookup::Miss
        }
    }

    /// How long an answer may be cached: the smallest answer TTL, or for a negative answer the
    /// SOA's negative TTL; nothing for errors or for negative answers without an SOA. A NODATA
    /// or NXDOMAIN behind a CNAME chain (an answer section and an SOA in the authority section)
    /// lasts as long as the shorter of the two (RFC 2308 §5): the chain's TTL must not stretch
    /// the negative answer at its end.
    pub fn lifetime(&self, info: &AnswerInfo) -> Option<u32> {
        let ttl = match (info.rcode, info.min_answer_ttl, info.negative_ttl) {
            (rcode::NOERROR | rcode::NXDOMAIN, Some(chain), Some(negative)) => chain.min(negative),
            (rcode::NOERROR, Some(ttl), None) if info.answers > 0 => ttl,
            (rcode::NOERROR | rcode::NXDOMAIN, None, Some(negative)) => negative,
            _ => return None,
        };
        let ttl = ttl.clamp(
            self.limits.min_ttl,
            self.limits.max_ttl.max(self.limits.min_ttl),
        );
        (ttl > 0 && !info.truncated).then_some(ttl)
    }

    /// Keeps `answer` under its own key. When its set is full, the entry that expires first
    /// gives way (an entry past its stale window first of all).
    pub fn insert(&self, answer: CachedAnswer) {
        if self.limits.max_entries == 0 {
            return;
        }
        let hash = self.hasher.hash_one(answer.key());
        let now = now_secs() as u32;
        self.lines.insert(hash, answer, |e| {
            let (age, lifetime) = (u64::from(e.age_at(now)), u64::from(e.lifetime()));
            if age >= lifetime + STALE_WINDOW {
                0
            } else {
                lifetime.saturating_sub(age) + 1
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Cache {
        Cache::new(CacheLimits {
            max_entries: 100,
            min_ttl: 0,
            max_ttl: 3600,
            serve_stale: false,
        })
    }

    fn entry(key: &[u8], answer: &[u8], ttl_offsets: Vec<u16>) -> CachedAnswer {
        let info = AnswerInfo {
            ttl_offsets,
            ..AnswerInfo::default()
        };
        CachedAnswer::new(key, answer, info, 60)
    }

    #[test]
    fn an_entry_keeps_its_answer_and_ttl_offsets_apart_from_its_key() {
        let e = entry(b"\x03www\x00key", b"answer bytes", vec![7, 300]);
        assert_eq!(e.answer(), b"answer bytes");
        assert_eq!(e.ttl_offsets().collect::<Vec<_>>(), [7, 300]);
        assert_eq!(e.key(), b"\x03www\x00key");
        assert_eq!(e.opt(), None);
        assert_eq!(e.cname_targets().count(), 0);
        assert_eq!(e.lifetime(), 60);
        assert_eq!(e.age(), 0);
    }

    #[test]
    fn an_entry_keeps_its_opt_record_and_cname_targets() {
        let info = AnswerInfo {
            ttl_offsets: vec![40],
            opt: Some(50..61),
            cname_targets: vec![
                b"\x03cdn\x04test\x00".as_slice().into(),
                b"\x01x\x00".as_slice().into(),
            ],
            ..AnswerInfo::default()
        };
        let e = CachedAnswer::new(b"k", &[7u8; 61], info, 0);
        assert_eq!(e.answer(), [7u8; 61]);
        assert_eq!(e.opt(), Some(50..61));
        assert_eq!(e.ttl_offsets().collect::<Vec<_>>(), [40]);
        let targets: Vec<&[u8]> = e.cname_targets().collect();
        assert_eq!(targets, [b"\x03cdn\x04test\x00".as_slice(), b"\x01x\x00"]);
    }

    #[test]
    fn a_negative_answer_behind_a_cname_lives_as_long_as_the_soas_negative_ttl() {
        let c = cache();
        let info = |rcode: u8, min_answer_ttl: Option<u32>, negative_ttl: Option<u32>| AnswerInfo {
            rcode,
            answers: min_answer_ttl.is_some() as u16,
            min_answer_ttl,
            negative_ttl,
            ..AnswerInfo::default()
        };
        assert_eq!(c.lifetime(&info(0, Some(3600), Some(30))), Some(30));
        assert_eq!(c.lifetime(&info(3, Some(3600), Some(30))), Some(30));
        assert_eq!(c.lifetime(&info(0, Some(20), Some(30))), Some(20));
        assert_eq!(c.lifetime(&info(0, Some(3600), None)), Some(3600));
        assert_eq!(c.lifetime(&info(3, None, Some(30))), Some(30));
        assert_eq!(c.lifetime(&info(3, None, None)), None);
        assert_eq!(c.lifetime(&info(2, Some(60), None)), None);
    }

    #[test]
    fn a_lookup_answers_only_the_question_the_entry_was_stored_for() {
        let c = cache();
        c.insert(entry(b"question-a", b"answer-a", vec![]));
        c.insert(entry(b"question-b", b"answer-b", vec![]));
        let get = |key: &[u8]| c.get(c.probe(key), key);
        let Lookup::Fresh(a) = get(b"question-a") else {
            panic!("a is cached")
        };
        assert_eq!(a.answer(), b"answer-a");
        assert!(matches!(get(b"question-c"), Lookup::Miss));
        // An entry found under another question's hash (a collision) is not that answer.
        c.lines.insert(
            c.hasher.hash_one(b"question-c".as_slice()),
            a.clone(),
            |_| 0,
        );
        assert!(matches!(get(b"question-c"), Lookup::Miss));
    }
}
