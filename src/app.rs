//! Starting a server: load policies, publish the first snapshot, then open the listeners.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::api::{self, AppState};
use crate::config::{Config, Invalid};
use crate::conn::http::HttpListener;
use crate::conn::{Listener, Tracker};
use crate::control::store::{Store, StoreError};
use crate::control::SystemClock;
use crate::control::{ApplyError, Control, Request};
use crate::dns::cache::Cache;
use crate::dns::guard::Guard;
use crate::dns::handler::Handler;
use crate::dns::record::{Observers, Tap};
use crate::dns::recursive::{Recursive, Source};
use crate::dns::tripwire::{Trip, TripSink, Tripwires};
use crate::dns::udp::UdpThreads;
use crate::dns::upstream::Upstreams;
use crate::dns::{doh, doq, dot, server};
use crate::feeds::FeedTask;
use crate::jamf::sync::JamfSync;
use crate::jamf::webhook::Webhooks;
use crate::lists::ListTask;
use crate::metrics::Metrics;
use crate::policy::build::PolicyParts;
use crate::policy::cidr::PrefixTable;
use crate::policy::snapshot::Devices;
use crate::policy::{PolicyErrors, PolicySet, Published};
use crate::tls::{CertStore, TlsError};
use crate::trail::Trail;
use quinn::crypto::rustls::QuicServerConfig;
use tokio_rustls::TlsAcceptor;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] Invalid),
    #[error("policy loader failed: {0}")]
    Loader(#[from] tokio::task::JoinError),
    #[error("policies rejected:\n{0}")]
    Policies(PolicyErrors),
    #[error("cannot open the store")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{0}")]
    Lists(String),
    #[error(transparent)]
    Feeds(#[from] crate::feeds::FeedConfigError),
    #[error(transparent)]
    Events(#[from] crate::events::EventsConfigError),
    #[error(transparent)]
    QueryLog(#[from] crate::querylog::QueryLogError),
    #[error("ssf: {0}")]
    Ssf(String),
    #[error("cannot start the trail's writer: {0}")]
    Trail(std::io::Error),
    #[error("DoQ: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// A started server; dropping it stops every listener.
pub struct Running {
    /// Stopped and joined when this is dropped.
    _udp_threads: UdpThreads,
    pub dns_addrs: Vec<SocketAddr>,
    /// DoT, DoH and DoQ listeners, as bound.
    pub encrypted: EncryptedAddrs,
    pub http_addr: Option<SocketAddr>,
    pub control: Control,
    pub handler: Arc<Handler>,
    pub published: Arc<Published>,
    tasks: JoinSet<()>,
    /// Fetches the lists named by URL; stopped when this is dropped.
    _lists: ListTask,
    /// Follows the RPZ feeds; stopped when this is dropped.
    _feeds: Option<FeedTask>,
    /// Delivers events to the SOC's sinks; stopped when this is dropped.
    _events: Option<crate::events::EventTasks>,
    /// Writes the trail to the store; stopped when this is dropped.
    _trail: Option<crate::trail::TrailTask>,
    /// Writes the query log; stopped (after it wrote what was queued) when this is dropped.
    _query_log: Option<crate::querylog::QueryLogTask>,
}

impl Running {
    /// Waits until a listener stops (which only happens on a fatal error).
    pub async fn wait(&mut self) {
        self.tasks.join_next().await;
    }
}

/// Starts a server for `config`. The first snapshot is in force before any listener opens.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::new());
    let limits = &config.limits;
    let files = crate::conn::raise_fd_limit();
    let wanted =
        limits.max_connections + limits.http_max_connections + limits.upstream_max_in_flight + 64;
    if files < wanted as u64 {
        tracing::warn!(
            "the open-file limit ({files}) is below what [limits] allows ({wanted}): \
             raise it (LimitNOFILE=) or lower the caps"
        );
    }
    let dir = config.policies_dir();
    let cache = config.lists_cache();
    let set = tokio::task::spawn_blocking(move || PolicySet::load_with(&dir, Some(&cache)))
        .await?
        .map_err(StartError::Policies)?;
    for w in &set.warnings {
        tracing::warn!("{w}");
    }
    let feeds = crate::feeds::feeds(&config.feeds, &config.base_dir, &set.taxonomy)?;
    let sinks = crate::events::sinks(&config.events, &config.base_dir)?;
    crate::alloc::release_free_memory();
    // Version 0 holds no devices; the writer publishes version 1, with every device in the
    // store, before any listener opens.
    let empty =
        PolicyParts::new(set.clone()).snapshot(Devices::default(), Arc::new(PrefixTable::new()), 0);
    let cache = Cache::new(config.cache);
    let upstreams: Source = if config.upstream.mode == "recursive" {
        Recursive::new(config.recursive()?, &metrics)
            .await
            .map_err(Invalid::from)?
            .with_max_in_flight(limits.upstream_max_in_flight)
            .into()
    } else {
        let servers = config.upstream_servers()?;
        let mut upstreams = Upstreams::new(
            servers,
            Duration::from_millis(config.upstream.timeout_ms),
            &metrics,
        )
        .with_max_in_flight(limits.upstream_max_in_flight);
        if upstreams.any_encrypted() {
            let ca_file = config.upstream_ca_file();
            let tls = crate::tls::client_config(ca_file.as_deref())?;
            upstreams = upstreams.with_tls(Arc::new(tls));
        }
        upstreams.into()
    };
    let published = Arc::new(Published::new(empty));
    let guard = Guard::new(&config.guard()?, &metrics);
    let handler = Arc::new(Handler::new(
        published.clone(),
        cache,
        upstreams,
        config.identity_rules()?,
        metrics.clone(),
        guard,
    ));
    warn_public_listeners(&config);
    let mut observers = Observers::default();
    let target = config.store_target()?;
    let store = Store::open(&target).await?;
    let writer = config.writer(Arc::new(SystemClock))?;
    let node = config.node_name();
    // Syslog's HOSTNAME and dnstap's identity: the node's name without the process id it may
    // end with.
    let host = node
        .rsplit_once('/')
        .map_or(node.as_str(), |(host, _)| host);
    let control = Control::start(
        writer,
        store,
        set,
        published.clone(),
        metrics.clone(),
        node.clone(),
    )
    .await?;
    // The sinks read the audit log through a store connection of their own: the writer never
    // waits for them.
    let events = match sinks.is_empty() {
        true => None,
        false => {
            let store = Store::open(&target).await?;
            let (control, metrics) = (control.clone(), metrics.clone());
            Some(crate::events::spawn(sinks, store, control, metrics, host.to_string()).await)
        }
    };
    // The trail: records of traced devices' queries reach the store through a tap of their own,
    // read back (the API) through another connection.
    let (trail_task, trail) = match config.trail.enabled {
        true => {
            let tap = Tap::new(config.trail.queue, metrics.trail_dropped.clone());
            let writer = Store::open(&target).await?;
            let task = crate::trail::spawn(
                &config.trail,
                tap.clone(),
                writer,
                metrics.clone(),
                node.clone(),
            )
            .map_err(StartError::Trail)?;
            observers.trail = Some(tap);
            (Some(task), Some(Trail::new(Store::open(&target).await?)))
        }
        false => (None, None),
    };
    let snapshot = published.get();
    // Lists named by URL start from their cached copies (in the snapshot already); the task
    // fetches those due and reloads when one changes.
    let lists = crate::lists::spawn(
        config.lists(),
        config.policies_dir(),
        control.clone(),
        metrics.clone(),
    )
    .map_err(StartError::Lists)?;
    // RPZ feeds start empty and are transferred in the background: DNS does not wait for a
    // primary that may be down.
    let feeds = (!feeds.is_empty()).then(|| {
        let (task, primaries) = crate::feeds::spawn(feeds, control.clone(), metrics.clone());
        handler.set_primaries(primaries);
        task
    });
    // Shared Signals: JWKS files read and URLs fetched before the webhook takes a token.
    let ssf = if config.ssf.enabled() {
        let resolve = |p: &std::path::Path| config.resolve(p);
        let receiver = crate::ssf::start(
            &config.ssf,
            resolve,
            control.clone(),
            &metrics,
            Arc::new(SystemClock),
        )
        .await
        .map_err(StartError::Ssf)?;
        Some(Arc::new(receiver))
    } else {
        None
    };
    // The query log: the handler offers it records; its thread writes them off the query path.
    let (log, query_log) =
        crate::querylog::start(&config.query_log, &config.base_dir, host, &metrics)?.unzip();
    observers.log = log;
    handler.set_observers(observers);
    if let Some(settings) = config.tripwire.settings() {
        let sink = Arc::new(ControlTrips(control.clone()));
        handler.set_tripwires(Tripwires::new(sink, settings, &metrics));
    }
    let jamf = config.jamf.enabled().then(|| {
        let sync = JamfSync::new(config.jamf.clone(), control.clone(), metrics.clone());
        sync.spawn_periodic(config.jamf.reconcile_interval());
        sync
    });

    let mut tasks = JoinSet::new();
    let sockets = match config.dns.udp_sockets {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let udp_threads = UdpThreads::default();
    // One tracker for every DNS stream listener: one global cap, one per-client cap.
    let streams = Tracker::new(
        limits.max_connections,
        limits.max_connections_per_client,
        &metrics,
    );
    let mut dns_addrs = Vec::new();
    for &addr in &config.dns.listen {
        let bound = server::listen(
            addr,
            sockets,
            handler.clone(),
            &mut tasks,
            &udp_threads,
            (streams.clone(), limits.dns_timeouts()),
        )
        .map_err(|error| StartError::Bind { addr, error })?;
        dns_addrs.push(bound);
    }
    let encrypted = start_encrypted(&config, &handler, &streams, &metrics, &mut tasks).await?;
    let ports = |addrs: &[SocketAddr]| addrs.iter().map(SocketAddr::port).collect::<Vec<_>>();
    let (doh, dot) = (ports(&encrypted.doh), ports(&encrypted.dot));
    if let Some(ddr) = crate::dns::answer::Ddr::new(&config.dns.server_name, &doh, &dot) {
        handler.set_ddr(ddr);
    }
    let ready = Arc::new(AtomicBool::new(false));
    let http_addr = match config.http_listen() {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|error| StartError::Bind { addr, error })?;
            let bound = listener
                .local_addr()
                .map_err(|error| StartError::Bind { addr, error })?;
            let state = AppState {
                control: control.clone(),
                published: published.clone(),
                handler: handler.clone(),
                jamf: Webhooks::new(control.clone(), metrics.clone(), jamf.clone()),
                ssf,
                metrics,
                ready: ready.clone(),
                admins: Arc::new(config.auth.admin.clone()),
                webhook_tokens: Arc::new(config.auth.webhook_tokens.clone()),
                body_timeout: Duration::from_millis(limits.http_body_timeout_ms),
                trail: trail.clone(),
                console: Arc::default(),
            };
            tasks.spawn(api::console::BlockHistory::run(
                state.console.clone(),
                state.metrics.clone(),
            ));
            let tracker = Tracker::new(
                limits.http_max_connections,
                limits.http_max_connections_per_client,
                &state.metrics,
            );
            let responses = state.metrics.http_responses.clone();
            let app = api::router(state);
            let listener = HttpListener {
                listener,
                tls: None,
                kind: Listener::Http,
                tracker,
                timeouts: limits.http_timeouts(),
                json_errors: Some(responses),
            };
            tasks.spawn(crate::conn::http::serve(listener, app));
            Some(bound)
        }
        None => None,
    };
    ready.store(true, Ordering::Release);
    let mut dns: Vec<String> = dns_addrs.iter().map(|a| format!("udp+tcp {a}")).collect();
    dns.extend(encrypted.dot.iter().map(|a| format!("dot {a}")));
    dns.extend(encrypted.doh.iter().map(|a| format!("doh {a}")));
    dns.extend(encrypted.doq.iter().map(|a| format!("doq {a}")));
    let http = http_addr.map(|a| format!(", http {a}")).unwrap_or_default();
    tracing::info!(
        "cordon listening: {}{http}; snapshot 1 with {} groups and {} listed domains",
        dns.join(", "),
        snapshot.groups.len(),
        snapshot.categories.len()
    );
    Ok(Running {
        _udp_threads: udp_threads,
        dns_addrs,
        encrypted,
        http_addr,
        control,
        handler,
        published,
        tasks,
        _lists: lists,
        _feeds: feeds,
        _events: events,
        _trail: trail_task,
        _query_log: query_log,
    })
}

/// Trips go to the control plane as requests: the query path knows no control plane.
struct ControlTrips(Control);

impl TripSink for ControlTrips {
    fn trip(&self, trip: Trip) -> Pin<Box<dyn Future<Output = bool> + Send>> {
        let control = self.0.clone();
        Box::pin(async move {
            let device = trip.device;
            let request = Request::Tripped {
                device,
                name: trip.name,
                why: trip.why,
            };
            match control.apply(request).await {
                Ok(_) => true,
                // The approval is requested; the device stays where it is until it is granted.
                Err(ApplyError::NeedsApproval(_)) => false,
                Err(e) => {
                    tracing::error!("a tripwire could not hold {device}: {e}");
                    false
                }
            }
        })
    }
}

/// The bound addresses of the encrypted listeners.
#[derive(Debug, Clone, Default)]
pub struct EncryptedAddrs {
    pub dot: Vec<SocketAddr>,
    pub doh: Vec<SocketAddr>,
    pub doq: Vec<SocketAddr>,
}

/// How often the certificate files are checked for a renewal.
const CERT_POLL: Duration = Duration::from_secs(5);

/// Opens the DoT, DoH and DoQ listeners, all on the one certificate store.
async fn start_encrypted(
    config: &Config,
    handler: &Arc<Handler>,
    streams: &Arc<Tracker>,
    metrics: &Metrics,
    tasks: &mut JoinSet<()>,
) -> Result<EncryptedAddrs, StartError> {
    let timeouts = config.limits.dns_timeouts();
    let mut addrs = EncryptedAddrs::default();
    if !config.encrypted() {
        return Ok(addrs);
    }
    let certs = CertStore::load(
        &config.resolve(&config.dns.tls_cert),
        &config.resolve(&config.dns.tls_key),
    )?;
    certs.export_expiry(metrics.tls_cert_expiry.with_label_values::<&str>(&[]));
    certs.watch(CERT_POLL);
    let name: Arc<str> = config
        .dns
        .server_name
        .trim_matches('.')
        .to_ascii_lowercase()
        .into();
    let bind_tcp = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| StartError::Bind { addr, error })
    };
    for &addr in &config.dns.tls_listen {
        let listener = bind_tcp(addr).await?;
        addrs.dot.push(
            listener
                .local_addr()
                .map_err(|error| StartError::Bind { addr, error })?,
        );
        let acceptor = TlsAcceptor::from(certs.server_config(&[b"dot"]));
        tasks.spawn(dot::serve_dot(
            listener,
            acceptor,
            name.clone(),
            handler.clone(),
            streams.clone(),
            timeouts,
        ));
    }
    for &addr in &config.dns.https_listen {
        let listener = bind_tcp(addr).await?;
        addrs.doh.push(
            listener
                .local_addr()
                .map_err(|error| StartError::Bind { addr, error })?,
        );
        let acceptor = TlsAcceptor::from(certs.server_config(&[b"h2", b"http/1.1"]));
        tasks.spawn(doh::serve_doh(
            listener,
            acceptor,
            handler.clone(),
            streams.clone(),
            timeouts,
        ));
    }
    for &addr in &config.dns.quic_listen {
        let crypto = QuicServerConfig::try_from(certs.quic_server_config())?;
        let endpoint =
            quinn::Endpoint::server(quinn::ServerConfig::with_crypto(Arc::new(crypto)), addr)
                .map_err(|error| StartError::Bind { addr, error })?;
        addrs.doq.push(
            endpoint
                .local_addr()
                .map_err(|error| StartError::Bind { addr, error })?,
        );
        tasks.spawn(doq::serve_doq(
            endpoint,
            name.clone(),
            handler.clone(),
            streams.clone(),
            timeouts,
        ));
    }
    Ok(addrs)
}

/// A listener on a public address is reachable by anyone: say so, and who may query.
fn warn_public_listeners(config: &Config) {
    let dns = &config.dns;
    let listeners = [
        &dns.listen,
        &dns.tls_listen,
        &dns.https_listen,
        &dns.quic_listen,
    ];
    for addr in listeners.into_iter().flatten() {
        if crate::dns::guard::is_public(addr.ip()) {
            tracing::warn!(
                "DNS listener {addr} is on a public address: only dns.allow may query ({})",
                dns.allow.join(", ")
            );
        }
    }
}
