//! Not an open resolver: who may query (`dns.allow`), how large a UDP answer may be
//! (`dns.max_udp_size`), and response rate limiting per client prefix with slip, as BIND, Knot
//! and NSD do it. Every check is lock-free and allocation-free: a prefix table read, and atomics
//! in a table of fixed size.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::IpNet;
use prometheus::IntCounter;

use crate::metrics::Metrics;
use crate::policy::cidr::PrefixTable;

/// Who may query by default: loopback and the private ranges.
pub const DEFAULT_ALLOW: &[&str] = &[
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// The DNS Flag Day 2020 value: the largest UDP answer by default.
pub const DEFAULT_MAX_UDP_SIZE: u16 = 1232;

/// What `[dns]` says about who may ask and how much they get.
#[derive(Debug, Clone)]
pub struct GuardSettings {
    pub allow: Vec<IpNet>,
    pub max_udp_size: u16,
    /// Answers per second per client prefix over UDP; 0: no limit.
    pub rrl_rate: u32,
    /// Every `rrl_slip`-th limited answer goes out truncated (TC=1); 0: all are dropped.
    pub rrl_slip: u32,
    /// Sources never limited (by default loopback, which no one can spoof from outside).
    pub rrl_exempt: Vec<IpNet>,
}

/// Who the rate limit spares by default: loopback.
pub const DEFAULT_RRL_EXEMPT: &[&str] = &["127.0.0.0/8", "::1/128"];

/// What the rate limiter says of one UDP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Over the rate: send an empty TC=1 answer, so that a real client retries over TCP.
    Slip,
    /// Over the rate: send nothing.
    Drop,
}

/// Slots in the rate limiter's table (8 bytes each): prefixes that share a slot share a rate.
const SLOTS: usize = 1 << 16;

pub struct Guard {
    allow: PrefixTable<()>,
    exempt: PrefixTable<()>,
    pub max_udp: usize,
    rate: u32,
    slip: u32,
    /// Per slot: the second it counts (upper 32 bits) and the answers in it (lower 32 bits).
    slots: Box<[AtomicU64]>,
    /// Keyed per process, so that no one can aim prefixes at one slot.
    hasher: foldhash::fast::RandomState,
    refused: IntCounter,
    dropped: IntCounter,
    slipped: IntCounter,
}

impl Guard {
    pub fn new(settings: &GuardSettings, metrics: &Metrics) -> Guard {
        let mut allow = PrefixTable::new();
        for net in &settings.allow {
            allow.insert_with(*net, (), |_, _| {});
        }
        let mut exempt = PrefixTable::new();
        for net in &settings.rrl_exempt {
            exempt.insert_with(*net, (), |_, _| {});
        }
        let slots = if settings.rrl_rate == 0 { 0 } else { SLOTS };
        Guard {
            allow,
            exempt,
            max_udp: settings.max_udp_size.max(512) as usize,
            rate: settings.rrl_rate,
            slip: settings.rrl_slip,
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            hasher: Default::default(),
            refused: metrics.dns_refused_clients.clone(),
            dropped: metrics.dns_rate_limited.with_label_values(&["dropped"]),
            slipped: metrics.dns_rate_limited.with_label_values(&["slipped"]),
        }
    }

    /// Whether `addr` is in `dns.allow`.
    pub fn allows(&self, addr: IpAddr) -> bool {
        self.allow.longest(addr).is_some()
    }

    /// Counts a query refused for its source address.
    pub fn count_refused(&self) {
        self.refused.inc();
    }

    /// Counts one UDP answer to `addr` at second `now` against its prefix's rate.
    pub fn limit(&self, addr: IpAddr, now: u32) -> Verdict {
        if self.rate == 0 || self.exempt.longest(addr).is_some() {
            return Verdict::Pass;
        }
        let slot = &self.slots[self.hasher.hash_one(prefix(addr)) as usize % SLOTS];
        let mut current = slot.load(Ordering::Relaxed);
        let count = loop {
            let (second, count) = ((current >> 32) as u32, current as u32);
            let count = if second == now {
                count.saturating_add(1)
            } else {
                1
            };
            let next = (u64::from(now) << 32) | u64::from(count);
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break count,
                Err(seen) => current = seen,
            }
        };
        if count <= self.rate {
            return Verdict::Pass;
        }
        let excess = count - self.rate;
        if self.slip > 0 && excess.is_multiple_of(self.slip) {
            self.slipped.inc();
            Verdict::Slip
        } else {
            self.dropped.inc();
            Verdict::Drop
        }
    }
}

/// The prefix a client is limited by: its /24 (IPv4) or /56 (IPv6), and its family.
fn prefix(addr: IpAddr) -> (bool, u128) {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    };
    match addr {
        IpAddr::V4(a) => (false, u128::from(u32::from(a) & 0xFFFF_FF00)),
        IpAddr::V6(a) => (true, u128::from(a) & !((1u128 << 72) - 1)),
    }
}

/// Whether a listener on `ip` can be reached from public addresses: a global address, or the
/// unspecified one (every interface).
pub fn is_public(ip: IpAddr) -> bool {
    if ip.is_unspecified() {
        return true;
    }
    let private: PrefixTable<()> = {
        let mut t = PrefixTable::new();
        for net in DEFAULT_ALLOW {
            t.insert_with(net.parse().expect("literal"), (), |_, _| {});
        }
        t
    };
    private.longest(ip).is_none() && !ip.is_multicast()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(rate: u32, slip: u32) -> Guard {
        let settings = GuardSettings {
            allow: DEFAULT_ALLOW.iter().map(|n| n.parse().unwrap()).collect(),
            max_udp_size: DEFAULT_MAX_UDP_SIZE,
            rrl_rate: rate,
            rrl_slip: slip,
            rrl_exempt: vec!["127.0.0.0/8".parse().unwrap()],
        };
        Guard::new(&settings, &Metrics::new())
    }

    #[test]
    fn the_default_allows_loopback_and_private_ranges_only() {
        let g = guard(0, 0);
        for ok in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
        ] {
            assert!(g.allows(ok.parse().unwrap()), "{ok}");
        }
        for ok in ["fd00::1", "fe80::1", "::ffff:10.0.0.1"] {
            assert!(g.allows(ok.parse().unwrap()), "{ok}");
        }
        for no in ["8.8.8.8", "172.32.0.1", "2001:db8::1", "100.128.0.1"] {
            assert!(!g.allows(no.parse().unwrap()), "{no}");
        }
        assert!(is_public("0.0.0.0".parse().unwrap()));
        assert!(is_public("198.51.100.1".parse().unwrap()));
        assert!(!is_public("127.0.0.1".parse().unwrap()));
        assert!(!is_public("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_prefix_over_its_rate_is_dropped_and_every_nth_answer_slips() {
        let g = guard(3, 2);
        let a = "192.0.2.1".parse().unwrap();
        let same_24 = "192.0.2.200".parse().unwrap();
        let verdicts: Vec<Verdict> = (0..7)
            .map(|i| g.limit(if i % 2 == 0 { a } else { same_24 }, 100))
            .collect();
        use Verdict::*;
        assert_eq!(verdicts, [Pass, Pass, Pass, Drop, Slip, Drop, Slip]);
        assert_eq!(g.limit(a, 101), Pass, "a new second, a new count");
        assert_eq!(g.limit("198.51.100.1".parse().unwrap(), 101), Pass);
        let v6 = |s: &str| g.limit(s.parse().unwrap(), 102);
        let four: Vec<Verdict> = (0..4).map(|_| v6("2001:db8:0:1::1")).collect();
        assert_eq!(four, [Pass, Pass, Pass, Drop], "one /56");
        assert_eq!(v6("2001:db8:0:ff::1"), Slip, "the same /56");
        assert_eq!(v6("2001:db8:0:100::1"), Pass, "another /56");
        assert_eq!(guard(0, 2).limit(a, 100), Pass, "rate 0: no limit");
        let local = "127.0.0.1".parse().unwrap();
        assert!((0..10).all(|_| g.limit(local, 103) == Pass), "exempt");
    }
}
