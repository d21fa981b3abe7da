//! Connection limits shared by every connection-oriented listener (TCP, DoT, DoH, DoQ and the
//! HTTP API): the `[limits]` config section, and the tracker that enforces its caps and timeouts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::metrics::Metrics;

pub mod http;

/// `[limits]`: caps and timeouts of connections and upstream exchanges.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open DNS connections (TCP, DoT, DoH and DoQ together) at most; past it, the idlest is shed.
    pub max_connections: usize,
    /// Open DNS connections of one client address at most; past it, its idlest is shed.
    pub max_connections_per_client: usize,
    /// How long a TLS or QUIC handshake may take.
    pub handshake_timeout_ms: u64,
    /// How long a DoH client may take to send an HTTP/1 request head.
    pub header_timeout_ms: u64,
    /// How long a DNS connection may stay without a query in progress.
    pub idle_timeout_ms: u64,
    /// How long a write to any connection may stay blocked (a client that does not read).
    pub write_timeout_ms: u64,
    /// Open connections of the HTTP API listener at most; past it, the idlest is shed.
    pub http_max_connections: usize,
    /// Open HTTP API connections of one client address at most.
    pub http_max_connections_per_client: usize,
    /// How long an HTTP API client may take to send a request head.
    pub http_header_timeout_ms: u64,
    /// How long an HTTP API client may take to send a request body.
    pub http_body_timeout_ms: u64,
    /// How long an HTTP API connection may stay without a request in progress.
    pub http_idle_timeout_ms: u64,
    /// Upstream exchanges in flight at most; a query past it gets SERVFAIL at once.
    pub upstream_max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_connections_per_client: 256,
            handshake_timeout_ms: 5_000,
            header_timeout_ms: 5_000,
            idle_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            http_max_connections: 512,
            http_max_connections_per_client: 64,
            http_header_timeout_ms: 10_000,
            http_body_timeout_ms: 30_000,
            http_idle_timeout_ms: 60_000,
            upstream_max_in_flight: 1024,
        }
    }
}

impl Limits {
    /// The first key that must be above 0 and is not.
    pub fn zero_key(&self) -> Option<&'static str> {
        let keys: [(&'static str, u64); 12] = [
            ("limits.max_connections", self.max_connections as u64),
            (
                "limits.max_connections_per_client",
                self.max_connections_per_client as u64,
            ),
            ("limits.handshake_timeout_ms", self.handshake_timeout_ms),
            ("limits.header_timeout_ms", self.header_timeout_ms),
            ("limits.idle_timeout_ms", self.idle_timeout_ms),
            ("limits.write_timeout_ms", self.write_timeout_ms),
            (
                "limits.http_max_connections",
                self.http_max_connections as u64,
            ),
            (
                "limits.http_max_connections_per_client",
                self.http_max_connections_per_client as u64,
            ),
            ("limits.http_header_timeout_ms", self.http_header_timeout_ms),
            ("limits.http_body_timeout_ms", self.http_body_timeout_ms),
            ("limits.http_idle_timeout_ms", self.http_idle_timeout_ms),
            (
                "limits.upstream_max_in_flight",
                self.upstream_max_in_flight as u64,
            ),
        ];
        keys.iter().find(|(_, v)| *v == 0).map(|(k, _)| *k)
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The listeners a tracker counts connections of (the `listener` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Tcp,
    Dot,
    Doh,
    Doq,
    Http,
}

impl Listener {
    pub const ALL: [Listener; 5] = [
        Listener::Tcp,
        Listener::Dot,
        Listener::Doh,
        Listener::Doq,
        Listener::Http,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Tcp => "tcp",
            Listener::Dot => "dot",
            Listener::Doh => "doh",
            Listener::Doq => "doq",
            Listener::Http => "http",
        }
    }
}

/// Why a connection was closed by a limit (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Shed to make room under the global cap.
    GlobalCap,
    /// Shed to keep its client under the per-client cap.
    ClientCap,
    Handshake,
    Header,
    Idle,
    Write,
    /// An HTTP request body that did not arrive in time (answered 408).
    Body,
}

impl Closed {
    const ALL: [Closed; 7] = [
        Closed::GlobalCap,
        Closed::ClientCap,
        Closed::Handshake,
        Closed::Header,
        Closed::Idle,
        Closed::Write,
        Closed::Body,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Closed::GlobalCap => "global_cap",
            Closed::ClientCap => "client_cap",
            Closed::Handshake => "handshake",
            Closed::Header => "header",
            Closed::Idle => "idle",
            Closed::Write => "write",
            Closed::Body => "body",
        }
    }
}

/// The series of one listener, bound once.
struct Series {
    open: IntGauge,
    /// By [`Closed`].
    closed: [IntCounter; 7],
}

/// The timeouts a connection is watched with.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub handshake: Duration,
    pub header: Duration,
    pub idle: Duration,
    pub write: Duration,
}

impl Limits {
    /// The DNS listeners' timeouts.
    pub fn dns_timeouts(&self) -> Timeouts {
        Timeouts {
            handshake: ms(self.handshake_timeout_ms),
            header: ms(self.header_timeout_ms),
            idle: ms(self.idle_timeout_ms),
            write: ms(self.write_timeout_ms),
        }
    }

    /// The HTTP API listener's timeouts.
    pub fn http_timeouts(&self) -> Timeouts {
        Timeouts {
            handshake: ms(self.handshake_timeout_ms),
            header: ms(self.http_header_timeout_ms),
            idle: ms(self.http_idle_timeout_ms),
            write: ms(self.write_timeout_ms),
        }
    }
}

/// Counts open connections against a global and a per-client cap, and sheds the idlest one
/// when a new connection would pass either. One tracker serves every DNS stream listener (TCP,
/// DoT, DoH, DoQ); the HTTP API has its own. Its lock is taken when a connection opens or
/// closes, never per query: a connection marks its activity with atomics.
pub struct Tracker {
    table: Mutex<Table>,
    max: usize,
    per_client: usize,
    epoch: Instant,
    series: Vec<Series>,
}

#[derive(Default)]
struct Table {
    conns: HashMap<u64, Arc<ConnState>>,
    /// Connections not yet shed, per client address.
    clients: HashMap<IpAddr, usize>,
    /// Connections not yet shed.
    live: usize,
    next_id: u64,
}

/// What a connection shows of itself: when it was last active, whether a request is in
/// progress, whether a write is blocked, and the signal that sheds it.
pub struct ConnState {
    listener: Listener,
    client: IpAddr,
    epoch: Instant,
    /// Milliseconds since the tracker's epoch.
    last_active: AtomicU64,
    /// Queries or requests being answered.
    busy: AtomicU32,
    /// Whether it has asked anything yet: silent connections are shed first.
    proven: AtomicBool,
    /// Milliseconds since the epoch plus one at which a write started to wait; 0: none waits.
    write_blocked: AtomicU64,
    shed: AtomicBool,
    wake: Notify,
}

impl ConnState {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A query or request begins: the connection is not idle until the guard drops.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.proven.store(true, Ordering::Relaxed);
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.last_active.store(self.now(), Ordering::Relaxed);
        Busy(self.clone())
    }

    /// (class, last active): the smaller, the sooner it is shed. Silent connections first,
    /// then idle ones, then busy ones; the longest unused first within each.
    fn shed_order(&self) -> (u8, u64) {
        let class = if !self.proven.load(Ordering::Relaxed) {
            0
        } else if self.busy.load(Ordering::Relaxed) == 0 {
            1
        } else {
            2
        };
        (class, self.last_active.load(Ordering::Relaxed))
    }

    fn blocked_write(&self, pending: bool) {
        if pending {
            if self.write_blocked.load(Ordering::Relaxed) == 0 {
                self.write_blocked.store(self.now() + 1, Ordering::Relaxed);
            }
        } else if self.write_blocked.load(Ordering::Relaxed) != 0 {
            self.write_blocked.store(0, Ordering::Relaxed);
        }
    }
}

/// A query or request in progress; dropped, the connection's idle time starts again.
pub struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.last_active.store(self.0.now(), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Tracker {
    pub fn new(max: usize, per_client: usize, metrics: &Metrics) -> Arc<Tracker> {
        let series = Listener::ALL
            .iter()
            .map(|l| Series {
                open: metrics.connections_open.with_label_values(&[l.as_str()]),
                closed: Closed::ALL.map(|c| {
                    let family = match c {
                        Closed::GlobalCap | Closed::ClientCap => &metrics.connections_shed,
                        _ => &metrics.connections_timed_out,
                    };
                    family.with_label_values(&[l.as_str(), c.as_str()])
                }),
            })
            .collect();
        Arc::new(Tracker {
            table: Mutex::new(Table::default()),
            max: max.max(1),
            per_client: per_client.max(1),
            epoch: Instant::now(),
            series,
        })
    }

    fn series(&self, listener: Listener) -> &Series {
        &self.series[listener as usize]
    }

    /// Counts a connection closed by a limit.
    pub fn count(&self, listener: Listener, why: Closed) {
        self.series(listener).closed[why as usize].inc();
    }

    /// Takes a new connection in, shedding the idlest one of its client, or of all, when it
    /// would pass a cap. New connections are never refused.
    pub fn admit(self: &Arc<Self>, listener: Listener, client: IpAddr) -> Conn {
        let state = Arc::new(ConnState {
            listener,
            client,
            epoch: self.epoch,
            last_active: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            busy: AtomicU32::new(0),
            proven: AtomicBool::new(false),
            write_blocked: AtomicU64::new(0),
            shed: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let of_client = table.clients.get(&client).copied().unwrap_or(0);
        if of_client >= self.per_client {
            self.shed_one(&mut table, Some(client), Closed::ClientCap);
        } else if table.live >= self.max {
            self.shed_one(&mut table, None, Closed::GlobalCap);
        }
        let id = table.next_id;
        table.next_id += 1;
        table.conns.insert(id, state.clone());
        *table.clients.entry(client).or_insert(0) += 1;
        table.live += 1;
        drop(table);
        self.series(listener).open.inc();
        Conn {
            tracker: self.clone(),
            id,
            state,
        }
    }

    fn shed_one(&self, table: &mut Table, client: Option<IpAddr>, why: Closed) {
        // Ties (the same millisecond) go to the older connection.
        let victim = table
            .conns
            .iter()
            .filter(|(_, c)| !c.shed.load(Ordering::Relaxed))
            .filter(|(_, c)| client.is_none_or(|ip| c.client == ip))
            .min_by_key(|(id, c)| (c.shed_order(), **id))
            .map(|(_, c)| c.clone());
        let Some(victim) = victim else {
            return;
        };
        victim.shed.store(true, Ordering::Relaxed);
        victim.wake.notify_one();
        table.live -= 1;
        if let Some(n) = table.clients.get_mut(&victim.client) {
            *n -= 1;
            if *n == 0 {
                table.clients.remove(&victim.client);
            }
        }
        self.count(victim.listener, why);
    }

    fn remove(&self, id: u64) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(state) = table.conns.remove(&id) else {
            return;
        };
        if !state.shed.load(Ordering::Relaxed) {
            table.live -= 1;
            if let Some(n) = table.clients.get_mut(&state.client) {
                *n -= 1;
                if *n == 0 {
                    table.clients.remove(&state.client);
                }
            }
        }
        drop(table);
        self.series(state.listener).open.dec();
    }
}

/// A connection's place under the caps; dropping it frees the place.
pub struct Conn {
    tracker: Arc<Tracker>,
    id: u64,
    pub state: Arc<ConnState>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.tracker.remove(self.id);
    }
}

impl Conn {
    /// Wraps the connection's socket so that a blocked write shows.
    pub fn track<S>(&self, io: S) -> Tracked<S> {
        Tracked {
            io,
            state: self.state.clone(),
        }
    }

    /// Resolves when the connection has been shed.
    pub async fn shed(&self) {
        while !self.state.shed.load(Ordering::Relaxed) {
            self.state.wake.notified().await;
        }
    }

    /// Runs `handshake` within the handshake timeout; None (counted) when it took too long or
    /// the connection was shed meanwhile.
    pub async fn handshake<F: std::future::Future>(
        &self,
        timeout: Duration,
        handshake: F,
    ) -> Option<F::Output> {
        tokio::select! {
            done = tokio::time::timeout(timeout, handshake) => match done {
                Ok(done) => Some(done),
                Err(_) => {
                    self.tracker.count(self.state.listener, Closed::Handshake);
                    None
                }
            },
            _ = self.shed() => None,
        }
    }

    /// Resolves when the connection must close: shed, idle (no query or request in progress)
    /// for `t.idle`, or a write blocked for `t.write`. Timeouts are counted here.
    pub async fn watch(&self, t: Timeouts) {
        let s = &self.state;
        loop {
            if s.shed.load(Ordering::Relaxed) {
                return;
            }
            let now = s.now();
            let idle = t.idle.as_millis() as u64;
            let write = t.write.as_millis() as u64;
            let mut next = now + idle;
            if s.busy.load(Ordering::Relaxed) == 0 {
                let due = s.last_active.load(Ordering::Relaxed) + idle;
                if now >= due {
                    self.tracker.count(s.listener, Closed::Idle);
                    return;
                }
                next = next.min(due);
            }
            let blocked = s.write_blocked.load(Ordering::Relaxed);
            if blocked != 0 {
                let due = blocked - 1 + write;
                if now >= due {
                    self.tracker.count(s.listener, Closed::Write);
                    return;
                }
                next = next.min(due);
            } else {
                // A write may block meanwhile: look again within the write timeout.
                next = next.min(now + write);
            }
            let wait = Duration::from_millis(next.saturating_sub(now).max(10));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = s.wake.notified() => {}
            }
        }
    }

    pub fn count(&self, why: Closed) {
        self.tracker.count(self.state.listener, why);
    }
}

/// A socket whose blocked writes are marked on its connection's state.
pub struct Tracked<S> {
    io: S,
    state: Arc<ConnState>,
}

impl<S> Tracked<S> {
    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.state.blocked_write(polled.is_pending());
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.state.blocked_write(polled.is_pending());
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.state.blocked_write(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Raises the soft limit on open files to the hard limit; returns the limit in force.
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn shed(c: &Conn) -> bool {
        c.state.shed.load(Ordering::Relaxed)
    }

    #[test]
    fn a_silent_connection_is_shed_before_an_older_one_that_asked() {
        let metrics = Metrics::new();
        let tracker = Tracker::new(2, 10, &metrics);
        let asked = tracker.admit(Listener::Tcp, ip(1));
        drop(asked.state.begin());
        let silent = tracker.admit(Listener::Dot, ip(2));
        let new = tracker.admit(Listener::Doh, ip(3));
        assert!(shed(&silent));
        assert!(!shed(&asked) && !shed(&new));
        let counted = metrics
            .connections_shed
            .with_label_values(&["dot", "global_cap"])
            .get();
        assert_eq!(counted, 1);
        assert_eq!(
            metrics.connections_open.with_label_values(&["dot"]).get(),
            1
        );
        drop(silent);
        assert_eq!(
            metrics.connections_open.with_label_values(&["dot"]).get(),
            0
        );
    }

    #[test]
    fn a_busy_connection_is_shed_last_and_ties_go_to_the_oldest() {
        let metrics = Metrics::new();
        let tracker = Tracker::new(2, 10, &metrics);
        let busy = tracker.admit(Listener::Tcp, ip(1));
        let _working = busy.state.begin();
        let idle = tracker.admit(Listener::Tcp, ip(2));
        drop(idle.state.begin());
        let third = tracker.admit(Listener::Tcp, ip(3));
        assert!(shed(&idle) && !shed(&busy) && !shed(&third));
        // Then a silent one, before a busy one.
        let fourth = tracker.admit(Listener::Tcp, ip(4));
        assert!(shed(&third) && !shed(&busy) && !shed(&fourth));
        // Silent ones admitted in the same millisecond or not: the older goes first.
        let tracker = Tracker::new(2, 10, &metrics);
        let older = tracker.admit(Listener::Tcp, ip(1));
        let newer = tracker.admit(Listener::Tcp, ip(2));
        let _new = tracker.admit(Listener::Tcp, ip(3));
        assert!(shed(&older) && !shed(&newer));
    }

    #[test]
    fn the_per_client_cap_sheds_only_that_clients_connections() {
        let metrics = Metrics::new();
        let tracker = Tracker::new(10, 2, &metrics);
        let first = tracker.admit(Listener::Tcp, ip(1));
        let other = tracker.admit(Listener::Tcp, ip(2));
        let second = tracker.admit(Listener::Tcp, ip(1));
        let third = tracker.admit(Listener::Tcp, ip(1));
        assert!(shed(&first));
        assert!(!shed(&other) && !shed(&second) && !shed(&third));
        let counted = metrics
            .connections_shed
            .with_label_values(&["tcp", "client_cap"])
            .get();
        assert_eq!(counted, 1);
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let raised = raise_fd_limit();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes only the struct we pass.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(limit.rlim_cur, limit.rlim_max);
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
        let current = limit.rlim_cur as u64;
        assert_eq!(raised, current);
    }
}
