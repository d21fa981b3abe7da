//! The answer cache: upstream answers as they came, before any policy (contract 3), shared by
//! every client, bounded, honouring TTLs (RFC 2308 for negative answers) and able to serve stale
//! answers when upstreams fail (RFC 8767).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use dashmap::DashMap;

use super::wire::{flag, rcode, AnswerInfo, Query};

/// Seconds since the process started: a cheap, monotonic clock for TTL arithmetic.
pub fn now_secs() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs()
}

/// How long past expiry a stale answer may still be served (RFC 8767 suggests 1 to 3 days).
const STALE_WINDOW: u64 = 86_400;

/// One cached upstream answer and what is patched into it when it is served.
#[derive(Debug)]
pub struct CachedAnswer {
    pub bytes: Box<[u8]>,
    pub ttl_offsets: Box<[u16]>,
    pub opt: Option<Range<usize>>,
    /// CNAME targets, lowercase wire form, checked against the policy on every serve.
    pub cname_targets: Box<[Box<[u8]>]>,
    stored: u64,
    lifetime: u32,
}

impl CachedAnswer {
    /// Wraps an answer that is not to be cached (or not yet): its TTLs are served as they are.
    pub fn new(bytes: Vec<u8>, info: AnswerInfo, lifetime: u32) -> Self {
        CachedAnswer {
            bytes: bytes.into_boxed_slice(),
            ttl_offsets: info.ttl_offsets.into_boxed_slice(),
            opt: info.opt,
            cname_targets: info.cname_targets.into_boxed_slice(),
            stored: now_secs(),
            lifetime,
        }
    }

    /// Seconds since it was stored.
    pub fn age(&self) -> u32 {
        now_secs().saturating_sub(self.stored) as u32
    }

    pub fn rcode(&self) -> u8 {
        self.bytes.get(3).map_or(rcode::SERVFAIL, |b| b & 0xF)
    }
}

/// A concurrent map keyed by question (cache key bytes). Clients choose the names, so the hasher
/// is keyed per process (foldhash): fast, and no one can aim a flood of names at one shard.
pub type QuestionMap<V> = DashMap<Box<[u8]>, V, foldhash::fast::RandomState>;

/// What a lookup found.
pub enum Lookup {
    Fresh(Arc<CachedAnswer>),
    /// Expired, but within the stale window: serve it only if upstreams fail.
    Stale(Arc<CachedAnswer>),
    Miss,
}

/// Cache bounds, from config.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    pub max_entries: usize,
    pub min_ttl: u32,
    pub max_ttl: u32,
    pub serve_stale: bool,
}

pub struct Cache {
    map: QuestionMap<Arc<CachedAnswer>>,
    limits: CacheLimits,
    sweeping: AtomicBool,
}

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
            map: DashMap::with_capacity_and_hasher(
                limits.max_entries.min(1 << 16),
                Default::default(),
            ),
            limits,
            sweeping: AtomicBool::new(false),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, key: &[u8]) -> Lookup {
        let Some(entry) = self.map.get(key).map(|e| e.value().clone()) else {
            return Lookup::Miss;
        };
        let age = entry.age() as u64;
        if age < entry.lifetime as u64 {
            Lookup::Fresh(entry)
        } else if self.limits.serve_stale && age < entry.lifetime as u64 + STALE_WINDOW {
            Lookup::Stale(entry)
        } else {
            Lookup::Miss
        }
    }

    /// How long an answer may be cached: the smallest answer TTL, or for a negative answer the
    /// SOA's negative TTL; nothing for errors or for negative answers without an SOA.
    pub fn lifetime(&self, info: &AnswerInfo) -> Option<u32> {
        let ttl = match info.rcode {
            rcode::NOERROR if info.answers > 0 => info.min_answer_ttl?,
            rcode::NOERROR | rcode::NXDOMAIN => info.negative_ttl?,
            _ => return None,
        };
        let ttl = ttl.clamp(
            self.limits.min_ttl,
            self.limits.max_ttl.max(self.limits.min_ttl),
        );
        (ttl > 0 && !info.truncated).then_some(ttl)
    }

    pub fn insert(&self, key: &[u8], answer: Arc<CachedAnswer>) {
        if self.limits.max_entries == 0 {
            return;
        }
        if self.map.len() >= self.limits.max_entries {
            self.sweep();
        }
        self.map.insert(key.into(), answer);
    }

    /// Drops what has outlived the stale window, then arbitrary entries until a tenth of the
    /// room is free. One sweep at a time; the others carry on inserting.
    fn sweep(&self) {
        if self.sweeping.swap(true, Ordering::Acquire) {
            return;
        }
        let now = now_secs();
        self.map
            .retain(|_, e| now.saturating_sub(e.stored) < e.lifetime as u64 + STALE_WINDOW);
        let target = self.limits.max_entries - self.limits.max_entries / 10;
        let excess = self.map.len().saturating_sub(target);
        if excess > 0 {
            let victims: Vec<Box<[u8]>> = self
                .map
                .iter()
                .take(excess)
                .map(|e| e.key().clone())
                .collect();
            for k in victims {
                self.map.remove(&k);
            }
        }
        self.sweeping.store(false, Ordering::Release);
    }
}
