//! The query path: parse, identify, decide, then answer from the block page, the cache or
//! upstream. Every transport calls it; it knows nothing of sockets, HTTP or storage.
//!
//! It is split in two so that UDP listeners answer blocked and cached names without spawning a
//! task: [`Handler::answer_now`] does all that needs no waiting and hands back a [`Pending`]
//! for the rest, which [`Handler::answer_later`] completes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::{ArcSwap, Guard};
use dashmap::mapref::entry::Entry;
use prometheus::IntCounter;
use tokio::sync::oneshot;

use super::answer;
use super::cache::{self, Cache, CachedAnswer, KeyBuf, Lookup};
use super::edns::read_identity_options;
use super::guard::{self, Verdict};
use super::notify::Primaries;
use super::record::{Observers, QueryRecord, Wire};
use super::recursive::Source;
use super::tripwire::{Trip, Tripwires};
use super::upstream::UpstreamError;
use super::wire::{self, flag, rcode, rtype, Query, QueryError};
use crate::identity::{identify, Client, Forwarded, IdentityRules, TokenOutcome, Transport};
use crate::metrics::{Metrics, Outcome, QueryCounters};
use crate::policy::snapshot::Group;
use crate::policy::{
    check_target, decide, decide_and_tripwire, Decision, DeviceId, Published, QName, Reason,
    Snapshot,
};

/// RFC 8914 info codes for our own failures.
const EDE_NETWORK_ERROR: u16 = 23;
const EDE_NOT_SUPPORTED: u16 = 21;
const EDE_NOT_AUTHORITATIVE: u16 = 20;
const EDE_PROHIBITED: u16 = 18;
/// RFC 8482 does not say; an hour, capped by the policy's `max_ttl` like any answer.
const ANY_TTL: u32 = 3600;

/// The metric series of one set of groups. Bound on the first query after a policy reload and
/// shared by every snapshot with the same groups, so that a membership change binds nothing.
struct Series {
    /// The groups these series were bound for.
    groups: Arc<[Group]>,
    counters: QueryCounters,
    /// Per group: `cordon_dns_blocked_total` by category id, then the non-category reasons.
    blocked: Vec<Vec<Option<IntCounter>>>,
}

const RULE_SLOT: usize = 64;
const UNCATEGORISED_SLOT: usize = 65;
const DEFAULT_SLOT: usize = 66;

impl Series {
    fn bind(snapshot: &Snapshot, metrics: &Metrics) -> Series {
        let names: Vec<&str> = snapshot.groups.iter().map(|g| g.name.as_str()).collect();
        let counters = QueryCounters::bind(metrics, &names);
        let blocked = snapshot
            .groups
            .iter()
            .map(|g| {
                let bind =
                    |label: &str| Some(metrics.dns_blocked.with_label_values(&[&g.name, label]));
                let mut slots: Vec<Option<IntCounter>> = vec![None; DEFAULT_SLOT + 1];
                // target_categories holds block_categories, and what only CNAME targets meet
                for id in g.policy.target_categories.iter() {
                    slots[id.get() as usize] = bind(snapshot.taxonomy.name(id));
                }
                slots[RULE_SLOT] = bind("deny_rule");
                slots[UNCATEGORISED_SLOT] = bind("uncategorised");
                slots[DEFAULT_SLOT] = bind("default");
                slots
            })
            .collect();
        Series {
            groups: snapshot.groups.clone(),
            counters,
            blocked,
        }
    }

    fn fits(&self, snapshot: &Snapshot) -> bool {
        Arc::ptr_eq(&self.groups, &snapshot.groups)
    }
}

/// What one query decides and counts with: one snapshot and the series bound for its groups.
#[derive(Clone, Copy)]
struct Live<'a> {
    snapshot: &'a Arc<Snapshot>,
    series: &'a Series,
}

impl Live<'_> {
    fn counters(&self) -> &QueryCounters {
        &self.series.counters
    }

    fn count_block(&self, d: &Decision) {
        let slot = match d.reason {
            Reason::Category(c) => c.get() as usize,
            Reason::Rule(_) => RULE_SLOT,
            Reason::Uncategorised => UNCATEGORISED_SLOT,
            Reason::Default => DEFAULT_SLOT,
        };
        if let Some(Some(c)) = self
            .series
            .blocked
            .get(d.group.index())
            .and_then(|g| g.get(slot))
        {
            c.inc();
        }
    }
}

/// What [`Handler::answer_now`] leaves to do.
// Returned by value once per query and never stored: boxing `Pending` would cost an allocation
// per cache miss to save a few bytes of stack.
#[allow(clippy::large_enum_variant)]
pub enum Step {
    /// `out` holds the answer.
    Reply,
    /// Nothing to send.
    Drop,
    /// The answer needs upstream.
    Later(Pending),
}

/// How a query came in: what every answer path needs to finish it.
#[derive(Clone, Copy)]
struct Asked {
    client: Client,
    started: Instant,
    udp: bool,
    /// The device identified, if any.
    device: Option<DeviceId>,
    /// The client subnet a trusted forwarder sent, echoed in the answer so that a caching
    /// forwarder keeps it for that subnet only (RFC 7871 §7.2.1).
    subnet: Option<(IpAddr, u8)>,
}

/// A query waiting for upstream (or for the hold its tripwire asked for), with everything it
/// had decided already.
pub struct Pending {
    packet: Vec<u8>,
    asked: Asked,
    snapshot: Arc<Snapshot>,
    series: Arc<Series>,
    decision: Decision,
    stale: Option<CachedAnswer>,
    /// Boxed: trips are rare, and every pending query carries the field.
    trip: Option<Box<Trip>>,
}

/// A concurrent map keyed by question (cache key bytes). Clients choose the names, so the hasher
/// is keyed per process (foldhash): fast, and no one can aim a flood of names at one shard.
type QuestionMap<V> = dashmap::DashMap<Box<[u8]>, V, foldhash::fast::RandomState>;

type Waiters = Vec<oneshot::Sender<Result<CachedAnswer, UpstreamError>>>;

pub struct Handler {
    published: Arc<Published>,
    series: ArcSwap<Series>,
    cache: Cache,
    /// Where a cache miss is answered from: the forwarder or the recursor.
    upstreams: Source,
    inflight: QuestionMap<Waiters>,
    rules: IdentityRules,
    /// `cordon_identity_tokens_total`, by [`TokenOutcome`].
    tokens: [IntCounter; 5],
    metrics: Arc<Metrics>,
    guard: guard::Guard,
    /// DDR's answer (RFC 9462), set once the DoH and DoT listeners are bound.
    ddr: std::sync::OnceLock<answer::Ddr>,
    /// The RPZ feeds' primaries, whose NOTIFYs are heard; none without feeds.
    primaries: std::sync::OnceLock<Primaries>,
    /// Tripwires, when `[tripwire] enabled`.
    tripwires: std::sync::OnceLock<Tripwires>,
    /// Where answered queries are reported: the trail and the query log.
    observers: std::sync::OnceLock<Observers>,
}

impl Handler {
    pub fn new(
        published: Arc<Published>,
        cache: Cache,
        upstreams: impl Into<Source>,
        rules: IdentityRules,
        metrics: Arc<Metrics>,
        guard: guard::Guard,
    ) -> Self {
        let tokens =
            TokenOutcome::ALL.map(|t| metrics.identity_tokens.with_label_values(&[t.as_str()]));
        Handler {
            series: ArcSwap::from_pointee(Series::bind(&published.load(), &metrics)),
            published,
            cache,
            upstreams: upstreams.into(),
            inflight: QuestionMap::default(),
            rules,
            tokens,
            metrics,
            guard,
            ddr: std::sync::OnceLock::new(),
            primaries: std::sync::OnceLock::new(),
            tripwires: std::sync::OnceLock::new(),
            observers: std::sync::OnceLock::new(),
        }
    }

    /// Reports answered queries to `observers` from now on (set once; later calls are ignored).
    pub fn set_observers(&self, observers: Observers) {
        let _ = self.observers.set(observers);
    }

    /// Sets off tripwires from now on (set once; later calls are ignored).
    pub fn set_tripwires(&self, tripwires: Tripwires) {
        let _ = self.tripwires.set(tripwires);
    }

    /// Hears NOTIFYs from these primaries from now on (set once; later calls are ignored).
    pub fn set_primaries(&self, primaries: Primaries) {
        let _ = self.primaries.set(primaries);
    }

    /// A NOTIFY: acknowledged when it comes from the zone's primary, refused from anyone else;
    /// a malformed one is FORMERR, or nothing from outside `dns.allow`, as a malformed query.
    fn notify(&self, packet: &[u8], client: &Client, allowed: bool, out: &mut Vec<u8>) -> Step {
        let Some(n) = wire::parse_notify(packet) else {
            if !allowed {
                return Step::Drop;
            }
            self.metrics.dns_malformed.inc();
            let (id, flags) = (wire::read_u16(packet, 0), wire::read_u16(packet, 2));
            answer::error(out, id, flags, rcode::FORMERR as u16, &[], None, None);
            return Step::Reply;
        };
        let heard = self
            .primaries
            .get()
            .is_some_and(|p| p.heard(&n.zone, client.addr));
        let code = if heard {
            rcode::NOERROR
        } else {
            rcode::REFUSED
        };
        let question = &packet[wire::HEADER_LEN..n.question_end];
        answer::error(out, n.id, n.flags, code as u16, question, None, None);
        Step::Reply
    }

    /// Answers `_dns.resolver.arpa` SVCB with `ddr` from now on (set once; later calls are
    /// ignored).
    pub fn set_ddr(&self, ddr: answer::Ddr) {
        let _ = self.ddr.set(ddr);
    }

    /// What a trusted forwarder says about the client behind it; an error is a malformed
    /// option, which RFC 7871 answers with FORMERR.
    fn forwarded(&self, q: &Query<'_>, client: &Client) -> Result<Forwarded, ()> {
        if !self.rules.trusts(client.addr) {
            return Ok(Forwarded::default());
        }
        let options =
            read_identity_options(q.edns_options(), self.rules.text_option).map_err(|_| ())?;
        Ok(Forwarded {
            subnet: options
                .subnet
                .filter(|_| self.rules.client_subnet)
                .map(|s| s.client()),
            sent_subnet: options
                .subnet
                .filter(|_| self.rules.client_subnet)
                .map(|s| s.addr),
            subnet_prefix: options.subnet.map_or(0, |s| s.source_prefix),
            device: options
                .device
                .filter(|_| self.rules.device_option)
                .map(|d| d.alias()),
        })
    }

    /// The series for `snapshot`'s groups, bound anew only after a reload changed them.
    fn series_for(&self, snapshot: &Snapshot) -> arc_swap::Guard<Arc<Series>> {
        let series = self.series.load();
        if series.fits(snapshot) {
            return series;
        }
        self.series
            .store(Arc::new(Series::bind(snapshot, &self.metrics)));
        self.series.load()
    }

    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Answers `packet` completely, waiting for upstream if need be. Returns false when there
    /// is nothing to send.
    pub async fn answer(
        &self,
        packet: &[u8],
        client: Client,
        udp: bool,
        out: &mut Vec<u8>,
    ) -> bool {
        match self.answer_now(packet, client, udp, out) {
            Step::Reply => true,
            Step::Drop => false,
            Step::Later(pending) => self.answer_later(pending, out).await,
        }
    }

    /// Everything that needs no waiting: malformed packets, blocked names, fresh cache hits.
    pub fn answer_now(&self, packet: &[u8], client: Client, udp: bool, out: &mut Vec<u8>) -> Step {
        let started = Instant::now();
        // Every listener's peer goes through here: a mapped IPv4 peer is its IPv4 address.
        let client = client.canonical();
        let snapshot = self.published.load();
        let series = self.series_for(&snapshot);
        let live = Live {
            snapshot: &snapshot,
            series: &series,
        };
        // Not an open resolver: plain DNS from outside `dns.allow` is refused (encrypted
        // transports also serve roaming devices, which a valid token lets in), and UDP answers
        // are rate-limited per client prefix. Junk from outside gets nothing at all.
        let plain = matches!(client.transport, Transport::Udp | Transport::Tcp);
        let allowed = self.guard.allows(client.addr);
        let verdict = if udp {
            self.guard.limit(client.addr, cache::now_secs() as u32)
        } else {
            Verdict::Pass
        };
        if verdict == Verdict::Drop {
            return Step::Drop;
        }
        if wire::is_notify(packet) {
            return self.notify(packet, &client, allowed, out);
        }
        let q = match wire::parse_query(packet) {
            Ok(q) => q,
            Err(_) if !allowed || verdict == Verdict::Slip => return Step::Drop,
            Err(e) => return self.malformed(packet, e, live, client, started, out),
        };
        if verdict == Verdict::Slip {
            answer::truncated(out, &q, rcode::NOERROR as u16);
            return Step::Reply;
        }
        if !allowed && plain {
            return self.refuse_client(live, &q, &client, started, out);
        }
        if q.qclass != 1 || matches!(q.qtype, rtype::AXFR | rtype::IXFR) {
            let why = Some((EDE_NOT_SUPPORTED, "only class IN queries are served"));
            return self.error_reply(live, &q, &client, started, (rcode::REFUSED, why), out);
        }
        if wire::is_meta_type(q.qtype) {
            // OPT, TSIG, TKEY, MAILA, MAILB and the rest of the meta range are no question for
            // a cache or an upstream (RFC 6895 §3.1): FORMERR, as Unbound answers them.
            return self.error_reply(live, &q, &client, started, (rcode::FORMERR, None), out);
        }
        let Ok(forwarded) = self.forwarded(&q, &client) else {
            answer::error_for(out, &q, rcode::FORMERR as u16, None);
            self.metrics.dns_malformed.inc();
            return Step::Reply;
        };
        let identity = identify(&snapshot, &client, &self.rules, &forwarded);
        let asked = Asked {
            client,
            started,
            udp,
            device: identity.device,
            subnet: forwarded.sent_subnet.map(|a| (a, forwarded.subnet_prefix)),
        };
        if identity.token != TokenOutcome::Absent {
            self.tokens[identity.token as usize].inc();
        }
        if !allowed && identity.token != TokenOutcome::Valid {
            return self.refuse_client(live, &q, &client, started, out);
        }
        let mut key: KeyBuf = [0u8; 260];
        let key = cache::key(&q, &mut key);
        let probe = self.cache.probe(key);
        let tripwires = self.tripwires.get().zip(identity.device);
        let (decision, hit) = match tripwires {
            Some(_) => decide_and_tripwire(&snapshot, identity.group, &q.name),
            None => (decide(&snapshot, identity.group, &q.name), None),
        };
        if let (Some((trips, device)), Some(hit)) = (tripwires, hit) {
            if let Some(trip) = trips.check(&snapshot, hit, device, &q.name) {
                return Step::Later(Pending {
                    packet: packet.to_vec(),
                    asked,
                    snapshot: Guard::into_inner(snapshot),
                    series: Guard::into_inner(series),
                    decision,
                    stale: None,
                    trip: Some(Box::new(trip)),
                });
            }
        }
        if decision.blocked {
            self.write_blocked(live, &q, &decision, None, out);
            self.finish(live, &q, &asked, Outcome::Blocked, &decision, out);
            return Step::Reply;
        }
        if q.qtype == rtype::ANY {
            // RFC 8482: one synthesised HINFO, never every RRset of the name.
            let policy = &snapshot.group(decision.group).policy;
            answer::any_hinfo(out, &q, ANY_TTL.min(policy.max_ttl));
            self.finish(live, &q, &asked, Outcome::Allowed, &decision, out);
            return Step::Reply;
        }
        if q.qtype == rtype::SVCB && q.name.wire() == answer::DDR_NAME {
            if let Some(ddr) = self.ddr.get() {
                // RFC 9462: Cordon designates its own DoH and DoT listeners.
                let policy = &snapshot.group(decision.group).policy;
                answer::ddr(out, &q, ddr, policy.max_ttl);
                self.finish(live, &q, &asked, Outcome::Allowed, &decision, out);
                return Step::Reply;
            }
        }
        let lookup = self.cache.get(probe, key);
        let stale = match lookup {
            Lookup::Fresh(entry) => {
                self.metrics.cache_hits.inc();
                let (outcome, stands) = self.write_cached(live, &q, &decision, &entry, false, out);
                self.finish(live, &q, &asked, outcome, &stands, out);
                return Step::Reply;
            }
            Lookup::Stale(entry) => Some(entry),
            Lookup::Miss => None,
        };
        if q.flags & flag::RD == 0 {
            // No recursion asked: what the cache holds fresh, or nothing (RFC 1035 §4.3.1).
            answer::error_for(
                out,
                &q,
                rcode::REFUSED as u16,
                Some((
                    EDE_NOT_AUTHORITATIVE,
                    "recursion not desired and not cached",
                )),
            );
            self.finish(live, &q, &asked, Outcome::Error, &decision, out);
            return Step::Reply;
        }
        self.metrics.cache_misses.inc();
        Step::Later(Pending {
            packet: packet.to_vec(),
            asked,
            snapshot: Guard::into_inner(snapshot),
            series: Guard::into_inner(series),
            decision,
            stale,
            trip: None,
        })
    }

    /// Completes a query that needed upstream, or set off a tripwire.
    pub async fn answer_later(&self, mut p: Pending, out: &mut Vec<u8>) -> bool {
        if let Some(trip) = p.trip.take() {
            if self.after_trip(&mut p, *trip, out).await {
                return true;
            }
        }
        let Ok(q) = wire::parse_query(&p.packet) else {
            return false;
        };
        let mut key: KeyBuf = [0u8; 260];
        let key = cache::key(&q, &mut key);
        let live = Live {
            snapshot: &p.snapshot,
            series: &p.series,
        };
        let (outcome, stands) = match self.fetch(key, &q).await {
            Ok(entry) => self.write_cached(live, &q, &p.decision, &entry, false, out),
            Err(e) => match &p.stale {
                Some(stale) => {
                    self.metrics.cache_stale.inc();
                    self.write_cached(live, &q, &p.decision, stale, true, out)
                }
                None => {
                    answer::error_for(
                        out,
                        &q,
                        rcode::SERVFAIL as u16,
                        Some((EDE_NETWORK_ERROR, &e.to_string())),
                    );
                    (Outcome::Error, p.decision)
                }
            },
        };
        self.finish(live, &q, &p.asked, outcome, &stands, out);
        true
    }

    /// Fires the trip, then decides the query again as the device now stands: held, it is in
    /// the isolation group (or a stricter one) before it hears this answer. True when the answer
    /// is written (blocked); false when the name is still allowed and goes upstream.
    async fn after_trip(&self, p: &mut Pending, trip: Trip, out: &mut Vec<u8>) -> bool {
        let held = match self.tripwires.get() {
            Some(trips) => trips.fire(trip).await,
            None => false,
        };
        let Ok(q) = wire::parse_query(&p.packet) else {
            return false;
        };
        if held {
            let snapshot = self.published.get();
            let group = snapshot.isolation_group.stricter(p.decision.group);
            p.decision = decide(&snapshot, group, &q.name);
            p.series = Guard::into_inner(self.series_for(&snapshot));
            p.snapshot = snapshot;
        }
        if !p.decision.blocked {
            return false;
        }
        let live = Live {
            snapshot: &p.snapshot,
            series: &p.series,
        };
        self.write_blocked(live, &q, &p.decision, None, out);
        self.finish(live, &q, &p.asked, Outcome::Blocked, &p.decision, out);
        true
    }

    /// REFUSED with EDE 18 for a client outside `dns.allow`.
    fn refuse_client(
        &self,
        live: Live<'_>,
        q: &Query<'_>,
        client: &Client,
        started: Instant,
        out: &mut Vec<u8>,
    ) -> Step {
        self.guard.count_refused();
        let why = Some((EDE_PROHIBITED, "not allowed to query this resolver"));
        self.error_reply(live, q, client, started, (rcode::REFUSED, why), out)
    }

    /// An error answer to a question that goes no further, counted as an error.
    fn error_reply(
        &self,
        live: Live<'_>,
        q: &Query<'_>,
        client: &Client,
        started: Instant,
        (code, ede): (u8, Option<(u16, &str)>),
        out: &mut Vec<u8>,
    ) -> Step {
        answer::error_for(out, q, u16::from(code), ede);
        live.counters().count(
            client.transport,
            q.qtype,
            Outcome::Error,
            live.snapshot.default_group.index(),
            secs(started),
        );
        Step::Reply
    }

    #[allow(clippy::too_many_arguments)]
    fn malformed(
        &self,
        packet: &[u8],
        e: QueryError,
        live: Live<'_>,
        client: Client,
        started: Instant,
        out: &mut Vec<u8>,
    ) -> Step {
        self.metrics.dns_malformed.inc();
        let QueryError::Reply {
            id,
            flags,
            rcode,
            question_end,
            edns,
        } = e
        else {
            return Step::Drop;
        };
        let question = packet
            .get(wire::HEADER_LEN..question_end as usize)
            .unwrap_or_default();
        answer::error(out, id, flags, rcode, question, edns, None);
        // No question to read a type from: counted under qtype "other".
        live.counters().count(
            client.transport,
            0,
            Outcome::Error,
            live.snapshot.default_group.index(),
            secs(started),
        );
        Step::Reply
    }

    /// Serves an upstream answer after checking its CNAME targets against the policy; returns
    /// the outcome and the decision that stands (a blocked target's, if one is).
    fn write_cached(
        &self,
        live: Live<'_>,
        q: &Query<'_>,
        decision: &Decision,
        entry: &CachedAnswer,
        stale: bool,
        out: &mut Vec<u8>,
    ) -> (Outcome, Decision) {
        let snapshot = live.snapshot;
        for target in entry.cname_targets() {
            let Ok((name, _)) = QName::from_wire(target) else {
                continue;
            };
            if let Some(block) = check_target(snapshot, decision.group, &name) {
                self.write_blocked(live, q, &block, Some(&name), out);
                return (Outcome::Blocked, block);
            }
        }
        let policy = &snapshot.group(decision.group).policy;
        answer::cached(out, q, entry, entry.age(), policy.max_ttl, stale);
        let outcome = if entry.rcode() == rcode::SERVFAIL {
            Outcome::Error
        } else {
            Outcome::Allowed
        };
        (outcome, *decision)
    }

    fn write_blocked(
        &self,
        live: Live<'_>,
        q: &Query<'_>,
        d: &Decision,
        via: Option<&QName>,
        out: &mut Vec<u8>,
    ) {
        live.count_block(d);
        let snapshot = live.snapshot;
        let policy = &snapshot.group(d.group).policy;
        // The reason travels in an EDE option, which only an EDNS query has room for: the text
        // is not made for the others (most stub resolvers' queries).
        let mut why = String::new();
        if q.edns.is_some() {
            why = d.describe(snapshot, via.unwrap_or(&q.name));
            if let Some(target) = via {
                why = format!("CNAME target {target} is blocked: {why}");
            }
        }
        answer::blocked(out, q, policy, (ede_code(d), &why), snapshot.version as u32);
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        live: Live<'_>,
        q: &Query<'_>,
        asked: &Asked,
        outcome: Outcome,
        d: &Decision,
        out: &mut Vec<u8>,
    ) {
        if let Some((addr, prefix)) = asked.subnet {
            answer::echo_client_subnet(out, addr, prefix);
        }
        // A stream frames an answer with a 16-bit length: an upstream answer of nearly 64 KiB
        // with the client subnet echoed must still fit, losing its extra records if need be.
        let limit = if asked.udp {
            q.udp_limit().min(self.guard.max_udp)
        } else {
            usize::from(u16::MAX)
        };
        answer::truncate_if_needed(out, q, limit);
        live.counters().count(
            asked.client.transport,
            q.qtype,
            outcome,
            d.group.index(),
            secs(asked.started),
        );
        if let Some(observers) = self.observers.get() {
            observe(observers, live, q, asked, outcome, d, out);
        }
    }

    /// Asks upstream once per distinct question in flight; later askers wait for that answer.
    async fn fetch(&self, key: &[u8], q: &Query<'_>) -> Result<CachedAnswer, UpstreamError> {
        let waiter = match self.inflight.entry(key.into()) {
            Entry::Occupied(mut o) => {
                let (tx, rx) = oneshot::channel();
                o.get_mut().push(tx);
                Some(rx)
            }
            Entry::Vacant(v) => {
                v.insert(Vec::new());
                None
            }
        };
        if let Some(rx) = waiter {
            return rx.await.unwrap_or(Err(UpstreamError::Failed));
        }
        let leader = InflightGuard {
            map: &self.inflight,
            key,
        };
        let dnssec_ok = q.edns.is_some_and(|e| e.dnssec_ok);
        let result = self
            .upstreams
            .resolve(q.question_bytes(), q.flags, dnssec_ok)
            .await
            .map(|mut a| {
                if wire::scrub_additional(&mut a.bytes, q.question_bytes()) {
                    let id = wire::read_u16(&a.bytes, 0);
                    if let Ok(info) = wire::inspect_answer(&a.bytes, id, q.question_bytes()) {
                        a.info = info;
                    }
                }
                let lifetime = self.cache.lifetime(&a.info);
                let entry = CachedAnswer::new(key, &a.bytes, a.info, lifetime.unwrap_or(0));
                if lifetime.is_some() {
                    self.cache.insert(entry.clone());
                    self.metrics.cache_entries.set(self.cache.len() as i64);
                }
                entry
            });
        leader.finish(&result);
        result
    }
}

/// Removes the in-flight entry when the leader is done (or dropped), waking the waiters.
struct InflightGuard<'a> {
    map: &'a QuestionMap<Waiters>,
    key: &'a [u8],
}

impl InflightGuard<'_> {
    fn finish(self, result: &Result<CachedAnswer, UpstreamError>) {
        if let Some((_, waiters)) = self.map.remove(self.key) {
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
        std::mem::forget(self);
    }
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.map.remove(self.key);
    }
}

/// Hands the record of an answered query to the trail when its device is traced, and to the
/// query log when its mode wants the outcome; builds nothing when neither does.
fn observe(
    observers: &Observers,
    live: Live<'_>,
    q: &Query<'_>,
    asked: &Asked,
    outcome: Outcome,
    d: &Decision,
    out: &[u8],
) {
    let trail = observers
        .trail
        .as_ref()
        .filter(|_| Observers::traced(live.snapshot, asked.device, d));
    let log = observers.logs(outcome);
    if trail.is_none() && log.is_none() {
        return;
    }
    let took = asked.started.elapsed();
    let at = std::time::SystemTime::now() - took;
    // Each observer's record holds what it needs in one allocation: the name, and for dnstap
    // the query and the answer too (the trail never carries them).
    let record = |messages| QueryRecord {
        at,
        took,
        client: asked.client.addr,
        port: asked.client.port,
        transport: asked.client.transport,
        device: asked.device,
        wire: Wire::new(q.name.wire(), messages),
        qtype: q.qtype,
        rcode: out.get(3).map_or(0, |b| b & 0x0f),
        outcome,
        decision: *d,
        snapshot: live.snapshot.clone(),
    };
    if let Some(trail) = trail {
        trail.offer(record(None));
    }
    if let Some(log) = log {
        log.tap
            .offer(record(log.messages.then_some((q.packet, out))));
    }
}

/// Content categories (ids 16 and up: privacy, restricted and general content) are "Filtered";
/// security categories, rules and an allow-list's default are "Blocked".
fn ede_code(d: &Decision) -> u16 {
    match d.reason {
        Reason::Category(c) if c.get() >= 16 => answer::EDE_FILTERED,
        _ => answer::EDE_BLOCKED,
    }
}

fn secs(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

/// A handler on the shipped policies with no upstream, in which the device bound to
/// 127.0.0.45 is isolated: `example.com` is NXDOMAIN for it, at once (for other modules' tests).
#[cfg(test)]
pub(crate) fn isolating_handler() -> Handler {
    use std::path::Path;
    use std::time::Duration;

    use crate::dns::cache::{Cache, CacheLimits};
    use crate::dns::upstream::Upstreams;
    use crate::identity::IdentityRules;
    use crate::policy::cidr::PrefixTable;
    use crate::policy::snapshot::Devices;
    use crate::policy::{DeviceId, GroupIdx, PolicyParts, PolicySet, Published};

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let parts = PolicyParts::new(PolicySet::load(&dir).unwrap());
    let restricted = parts.groups.iter().position(|g| g.name == "restricted");
    let mut devices = Devices::default();
    let mac = DeviceId(7);
    devices
        .groups
        .insert(mac, GroupIdx(restricted.unwrap() as u16));
    devices.bind("127.0.0.45".parse::<IpAddr>().unwrap(), mac);
    let snapshot = parts.snapshot(devices, Arc::new(PrefixTable::new()), 1);
    let metrics = Arc::new(Metrics::new());
    Handler::new(
        Arc::new(Published::new(snapshot)),
        Cache::new(CacheLimits::default()),
        Upstreams::new(Vec::new(), Duration::from_secs(1), &metrics),
        IdentityRules::source_only(),
        metrics.clone(),
        crate::dns::guard::Guard::new(
            &crate::dns::guard::GuardSettings {
                allow: vec!["127.0.0.0/8".parse().unwrap()],
                max_udp_size: 1232,
                rrl_rate: 0,
                rrl_slip: 2,
                rrl_exempt: Vec::new(),
            },
            &metrics,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::{isolating_handler, Step};
    use crate::identity::{Client, Transport};

    /// An `A` query for example.com, which the shipped isolation policy does not allow.
    fn query() -> Vec<u8> {
        let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        packet.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        packet
    }

    #[test]
    fn a_mapped_socket_peer_is_the_ipv4_client_its_binding_names() {
        let handler = isolating_handler();
        // a dual-stack socket reports the IPv4 peer 127.0.0.45 as ::ffff:127.0.0.45
        for peer in ["127.0.0.45", "::ffff:127.0.0.45"] {
            let client = Client {
                addr: peer.parse().unwrap(),
                port: 5353,
                transport: Transport::Udp,
                token: None,
            };
            let mut out = Vec::new();
            let step = handler.answer_now(&query(), client, true, &mut out);
            assert!(matches!(step, Step::Reply), "{peer}: answered at once");
            assert_eq!(out[3] & 0x0f, 3, "{peer}: NXDOMAIN, not on the allow-list");
        }
    }
}
