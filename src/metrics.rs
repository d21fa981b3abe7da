//! Every Prometheus metric Cordon exports (INTERFACE.md), registered once per server instance.
//!
//! The query path never looks a label up: it uses [`QueryCounters`], bound once per snapshot.

use prometheus::{
    exponential_buckets, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::identity::Transport;

pub struct Metrics {
    pub registry: Registry,
    pub dns_queries: IntCounterVec,
    pub dns_blocked: IntCounterVec,
    pub dns_duration: HistogramVec,
    pub dns_malformed: IntCounter,
    // Not an open resolver (dns/guard.rs).
    pub dns_refused_clients: IntCounter,
    pub dns_rate_limited: IntCounterVec,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub cache_stale: IntCounter,
    pub cache_entries: IntGauge,
    pub upstream_requests: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub snapshot_version: IntGauge,
    pub snapshot_publish: IntCounter,
    pub snapshot_publish_duration: Histogram,
    pub devices: IntGaugeVec,
    pub category_domains: IntGaugeVec,
    pub config_reload: IntCounterVec,
    pub policy_errors: IntGauge,
    pub webhook_events: IntCounterVec,
    pub webhook_skipped_entries: IntCounterVec,
    // Shared Signals (ssf/): every SET delivery, by configured issuer (or `unknown`) and result.
    pub ssf_events: IntCounterVec,
    pub membership_changes: IntCounterVec,
    pub reconcile_runs: IntCounterVec,
    pub reconcile_drift: IntCounterVec,
    pub http_responses: IntCounterVec,
    pub identity_tokens: IntCounterVec,
    // Connection and upstream limits (`[limits]`, conn.rs and dns/upstream.rs).
    pub connections_open: IntGaugeVec,
    pub connections_shed: IntCounterVec,
    pub connections_timed_out: IntCounterVec,
    pub upstream_shed: IntCounter,
    pub upstream_unmatched: IntCounter,
    // Replicas (control/replica.rs): the shared store and this node's place in its log.
    pub store_up: IntGauge,
    pub replication_lag: Gauge,
    pub replication_delay: Histogram,
    pub leader: IntGauge,
    // The DoT/DoH/DoQ certificate in force (tls.rs): a vector without labels, so that the
    // metric is absent, not 0, until encrypted listeners load a certificate.
    pub tls_cert_expiry: IntGaugeVec,
    // Lists by URL (lists/): each fetch's result, and the age of each copy in force.
    pub list_fetch: IntCounterVec,
    pub list_age: IntGaugeVec,
    // RPZ feeds (feeds/): transfers, the copy in force, NOTIFYs heard, time to publish.
    pub feed_transfers: IntCounterVec,
    pub feed_entries: IntGaugeVec,
    pub feed_serial: IntGaugeVec,
    pub feed_age: IntGaugeVec,
    pub feed_skipped: IntCounterVec,
    pub feed_notifies: IntCounterVec,
    pub feed_apply: Histogram,
    // Tripwires (dns/tripwire.rs): fired, held back by the cooldown, fired but not held.
    pub tripwires: IntCounterVec,
    // The trail (trail/): records dropped at a full queue, written, store failures, trimmed.
    pub trail_dropped: IntCounter,
    pub trail_recorded: IntCounter,
    pub trail_errors: IntCounter,
    pub trail_trimmed: IntCounter,
    // Events to the SOC (events/): each sink's outbox depth and its deliveries.
    pub events_pending: IntGaugeVec,
    pub events_delivered: IntCounterVec,
    // The query log (querylog/): records written, dropped, failed writes, the dnstap connection.
    pub query_log_written: IntCounterVec,
    pub query_log_dropped: IntCounterVec,
    pub query_log_errors: IntCounterVec,
    // A vector without labels: absent, not 0, unless the query log goes to dnstap.
    pub dnstap_connected: IntGaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let buckets = exponential_buckets(0.000_025, 2.5, 12).expect("valid buckets");
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let store_up = gauge(
            &r,
            "cordon_store_up",
            "1 while the store answers, 0 while it does not (DNS goes on from the last snapshot).",
        );
        store_up.set(1);
        let replication_lag = Gauge::new(
            "cordon_replication_lag_seconds",
            "Seconds since this node last knew it had applied every change in the shared store.",
        )
        .expect("valid metric");
        r.register(Box::new(replication_lag.clone()))
            .expect("registered once");
        let publish = Histogram::with_opts(
            HistogramOpts::new(
                "cordon_snapshot_publish_duration_seconds",
                "Time to build and publish a snapshot.",
            )
            .buckets(exponential_buckets(0.0001, 4.0, 10).expect("valid buckets")),
        )
        .expect("valid metric");
        r.register(Box::new(publish.clone()))
            .expect("registered once");
        Metrics {
            dns_queries: counter_vec(
                &r,
                "cordon_dns_queries_total",
                "DNS queries answered.",
                &["transport", "qtype", "decision", "group"],
            ),
            dns_blocked: counter_vec(
                &r,
                "cordon_dns_blocked_total",
                "DNS queries blocked, by group and category (or rule).",
                &["group", "category"],
            ),
            dns_duration: histogram_vec(
                &r,
                "cordon_dns_request_duration_seconds",
                "Time from query received to answer written.",
                &["transport", "decision"],
            ),
            dns_malformed: counter(
                &r,
                "cordon_dns_malformed_total",
                "Packets that were not a well-formed query.",
            ),
            dns_refused_clients: counter(
                &r,
                "cordon_dns_refused_clients_total",
                "Queries refused because their source is not in dns.allow.",
            ),
            dns_rate_limited: counter_vec(
                &r,
                "cordon_dns_rate_limited_total",
                "UDP answers over the rate limit of their client prefix, dropped or slipped (TC=1).",
                &["action"],
            ),
            cache_hits: counter(
                &r,
                "cordon_cache_hits_total",
                "Answers served from the cache.",
            ),
            cache_misses: counter(
                &r,
                "cordon_cache_misses_total",
                "Allowed queries not in the cache.",
            ),
            cache_stale: counter(
                &r,
                "cordon_cache_stale_served_total",
                "Stale answers served because upstreams failed.",
            ),
            cache_entries: gauge(&r, "cordon_cache_entries", "Answers held in the cache."),
            upstream_requests: counter_vec(
                &r,
                "cordon_upstream_requests_total",
                "Queries sent upstream, by result.",
                &["upstream", "result"],
            ),
            upstream_duration: histogram_vec(
                &r,
                "cordon_upstream_duration_seconds",
                "Upstream round trip time.",
                &["upstream"],
            ),
            snapshot_version: gauge(
                &r,
                "cordon_snapshot_version",
                "Version of the snapshot in force.",
            ),
            snapshot_publish: counter(&r, "cordon_snapshot_publish_total", "Snapshots published."),
            snapshot_publish_duration: publish,
            devices: gauge_vec(
                &r,
                "cordon_devices",
                "Known devices by device group.",
                &["group"],
            ),
            category_domains: gauge_vec(
                &r,
                "cordon_category_domains",
                "Listed domains per category.",
                &["category"],
            ),
            config_reload: counter_vec(
                &r,
                "cordon_config_reload_total",
                "Policy reloads by result.",
                &["result"],
            ),
            policy_errors: gauge(
                &r,
                "cordon_policy_errors",
                "Errors found by the last policy load (0 when it succeeded).",
            ),
            webhook_events: counter_vec(
                &r,
                "cordon_webhook_events_total",
                "Webhook deliveries by source, event and result.",
                &["source", "event", "result"],
            ),
            webhook_skipped_entries: counter_vec(
                &r,
                "cordon_webhook_skipped_entries_total",
                "Device entries of webhooks left out as unusable (the change itself still applied).",
                &["source"],
            ),
            ssf_events: counter_vec(
                &r,
                "cordon_ssf_events_total",
                "Security Event Tokens pushed to /webhooks/ssf, by configured issuer (unknown: none matched) and result.",
                &["issuer", "result"],
            ),
            membership_changes: counter_vec(
                &r,
                "cordon_membership_changes_total",
                "UEM-group membership changes, by the device group the device is in after it.",
                &["group", "direction"],
            ),
            reconcile_runs: counter_vec(
                &r,
                "cordon_reconcile_runs_total",
                "Reconciliation runs against the MDM's API, by result.",
                &["result"],
            ),
            reconcile_drift: counter_vec(
                &r,
                "cordon_reconcile_drift_total",
                "Memberships reconciliation corrected, by direction.",
                &["direction"],
            ),
            http_responses: counter_vec(
                &r,
                "cordon_http_responses_total",
                "HTTP API answers by status code.",
                &["code"],
            ),
            identity_tokens: counter_vec(
                &r,
                "cordon_identity_tokens_total",
                "Tokens presented over DoH, DoT and DoQ, by what they turned out to be.",
                &["result"],
            ),
            connections_open: gauge_vec(
                &r,
                "cordon_connections_open",
                "Open connections (TCP, DoT, DoH, DoQ, HTTP API), handshaking ones included.",
                &["listener"],
            ),
            connections_shed: counter_vec(
                &r,
                "cordon_connections_shed_total",
                "Connections closed to make room for a new one, by the cap it would have passed.",
                &["listener", "reason"],
            ),
            connections_timed_out: counter_vec(
                &r,
                "cordon_connections_timed_out_total",
                "Connections closed by a timeout: handshake, header, idle, write or body.",
                &["listener", "reason"],
            ),
            upstream_shed: counter(
                &r,
                "cordon_upstream_shed_total",
                "Queries answered SERVFAIL at once because upstream exchanges in flight were at their cap.",
            ),
            upstream_unmatched: counter(
                &r,
                "cordon_upstream_unmatched_total",
                "UDP datagrams from upstream servers that answered no query in flight (late or spoofed), ignored.",
            ),
            store_up,
            replication_lag,
            replication_delay: histogram(
                &r,
                "cordon_replication_delay_seconds",
                "Time from a change's commit on another node to its snapshot in force on this one.",
                exponential_buckets(0.001, 2.0, 14).expect("valid buckets"),
            ),
            leader: gauge(
                &r,
                "cordon_leader",
                "1 on the node that runs the fleet-wide jobs (reconciliation, binding lapses).",
            ),
            tls_cert_expiry: gauge_vec(
                &r,
                "cordon_tls_cert_expiry_timestamp_seconds",
                "Unix time of the notAfter of the DoT/DoH/DoQ certificate in force.",
                &[],
            ),
            list_fetch: counter_vec(
                &r,
                "cordon_list_fetch_total",
                "Fetches of lists named by URL, by list and result (updated, not_modified, unreachable, http_error, too_large, malformed, cache_error).",
                &["list", "result"],
            ),
            list_age: gauge_vec(
                &r,
                "cordon_list_age_seconds",
                "Seconds since the server last confirmed the copy in force of a list named by URL (absent while there is no copy).",
                &["list"],
            ),
            feed_transfers: counter_vec(
                &r,
                "cordon_feed_transfers_total",
                "Zone transfers of RPZ feeds, by feed, kind (axfr, ixfr) and result (ok, up_to_date, unreachable, timeout, refused, tsig, gap, malformed).",
                &["feed", "kind", "result"],
            ),
            feed_entries: gauge_vec(
                &r,
                "cordon_feed_entries",
                "Domains the copy in force of an RPZ feed lists.",
                &["feed"],
            ),
            feed_serial: gauge_vec(
                &r,
                "cordon_feed_serial",
                "SOA serial of the copy in force of an RPZ feed.",
                &["feed"],
            ),
            feed_age: gauge_vec(
                &r,
                "cordon_feed_age_seconds",
                "Seconds since the primary last confirmed the copy in force of an RPZ feed (absent while there is no copy).",
                &["feed"],
            ),
            feed_skipped: counter_vec(
                &r,
                "cordon_feed_skipped_records_total",
                "RPZ records transferred that are no trigger Cordon can honour (IP, NSDNAME, NSIP and client-IP triggers, TCP-only, other local data), by feed and reason.",
                &["feed", "reason"],
            ),
            feed_notifies: counter_vec(
                &r,
                "cordon_feed_notifies_total",
                "NOTIFY messages received, by result: accepted (from a feed's primary) or refused.",
                &["result"],
            ),
            feed_apply: histogram(
                &r,
                "cordon_feed_apply_seconds",
                "From the end of a transfer's answer to a snapshot with it in force.",
                exponential_buckets(0.000_1, 2.5, 14).expect("valid buckets"),
            ),
            tripwires: counter_vec(
                &r,
                "cordon_tripwires_total",
                "Queries that hit a tripwire, by result: fired (the device is handed to the control plane), cooldown (the device fired one within tripwire.cooldown_s), not_held (fired, but no hold is in force: a critical device's approval is pending, or the store failed).",
                &["result"],
            ),
            trail_dropped: counter(
                &r,
                "cordon_trail_dropped_total",
                "Trail records dropped because the queue to the store was full (the store is slower than the traced devices' queries); the answers were not delayed.",
            ),
            trail_recorded: counter(
                &r,
                "cordon_trail_recorded_total",
                "Queries of isolated, probation and watched devices written to the trail.",
            ),
            trail_errors: counter(
                &r,
                "cordon_trail_errors_total",
                "Trail writes or trims the store refused; a failed write loses its batch.",
            ),
            trail_trimmed: counter(
                &r,
                "cordon_trail_trimmed_total",
                "Trail records deleted past trail.retention_days or over trail.max_per_device.",
            ),
            events_pending: gauge_vec(
                &r,
                "cordon_events_pending",
                "Events in the outbox (the audit log) not yet delivered to a sink, by sink; the leader reports it, other nodes 0.",
                &["sink"],
            ),
            events_delivered: counter_vec(
                &r,
                "cordon_events_delivered_total",
                "Attempts to deliver an event to a sink, by sink and result (ok, error: retried with backoff, rejected: refused for good by the receiver).",
                &["sink", "result"],
            ),
            query_log_written: counter_vec(
                &r,
                "cordon_query_log_written_total",
                "Query log records written, by output: file (one JSON line each) or dnstap (a CLIENT_QUERY and a CLIENT_RESPONSE frame each).",
                &["output"],
            ),
            query_log_dropped: counter_vec(
                &r,
                "cordon_query_log_dropped_total",
                "Query log records lost, by reason: full (the queue from the query path was full: the disk or collector is slow or away) or failed (their write failed).",
                &["reason"],
            ),
            query_log_errors: counter_vec(
                &r,
                "cordon_query_log_errors_total",
                "Query log failures, by kind: write (a write to the file or the collector failed), rotate (the file could not be rotated), connect (the dnstap collector could not be reached or refused the handshake), closed (the collector closed the connection).",
                &["kind"],
            ),
            dnstap_connected: gauge_vec(
                &r,
                "cordon_dnstap_connected",
                "1 while the query log is connected to its dnstap collector, else 0; absent when the query log does not go to dnstap.",
                &[],
            ),
            registry: r,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let families = self.registry.gather();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Query types with their own label value; the rest count as "other".
pub const QTYPES: [(u16, &str); 12] = [
    (1, "A"),
    (28, "AAAA"),
    (65, "HTTPS"),
    (5, "CNAME"),
    (12, "PTR"),
    (15, "MX"),
    (16, "TXT"),
    (33, "SRV"),
    (2, "NS"),
    (6, "SOA"),
    (64, "SVCB"),
    (255, "ANY"),
];
const QTYPE_SLOTS: usize = QTYPES.len() + 1;

/// The outcome label of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Blocked,
    Error,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Allowed, Outcome::Blocked, Outcome::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Blocked => "blocked",
            Outcome::Error => "error",
        }
    }
}

/// `cordon_dns_queries_total` and the duration histogram with their labels bound for one
/// snapshot's groups, so that counting a query is an index and an atomic add.
pub struct QueryCounters {
    groups: usize,
    queries: Vec<IntCounter>,
    durations: Vec<Histogram>,
}

impl QueryCounters {
    pub fn bind(m: &Metrics, group_names: &[&str]) -> Self {
        let mut queries = Vec::new();
        for t in Transport::ALL {
            for q in 0..QTYPE_SLOTS {
                let qname = QTYPES.get(q).map_or("other", |x| x.1);
                for d in Outcome::ALL {
                    for g in group_names {
                        queries.push(m.dns_queries.with_label_values(&[
                            t.as_str(),
                            qname,
                            d.as_str(),
                            g,
                        ]));
                    }
                }
            }
        }
        let mut durations = Vec::new();
        for t in Transport::ALL {
            for d in Outcome::ALL {
                durations.push(m.dns_duration.with_label_values(&[t.as_str(), d.as_str()]));
            }
        }
        QueryCounters {
            groups: group_names.len(),
            queries,
            durations,
        }
    }

    #[inline]
    pub fn count(
        &self,
        transport: Transport,
        qtype: u16,
        outcome: Outcome,
        group: usize,
        seconds: f64,
    ) {
        let q = QTYPES
            .iter()
            .position(|x| x.0 == qtype)
            .unwrap_or(QTYPES.len());
        let d = outcome as usize;
        let i = ((transport.index() * QTYPE_SLOTS + q) * Outcome::ALL.len() + d) * self.groups
            + group.min(self.groups.saturating_sub(1));
        if let Some(c) = self.queries.get(i) {
            c.inc();
        }
        if let Some(h) = self
            .durations
            .get(transport.index() * Outcome::ALL.len() + d)
        {
            h.observe(seconds);
        }
    }
}
