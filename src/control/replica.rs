//! A node among equals: it follows the shared change log as other nodes write it, shows how
//! far behind it is, and takes its turn as the leader that runs the fleet-wide jobs.
//!
//! One connection per node LISTENs for commits; each notification, and a heartbeat every
//! second, asks the writer to apply the rows after its position (`Command::Sync`). After a lost
//! connection the next heartbeat catches up the same way. The same connection tries for the
//! leader's session advisory lock: whoever holds it runs reconciliation and binding lapses,
//! and when that node dies its session ends, the lock is free, and another takes it within a
//! heartbeat.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use super::clock::now_ms;
use super::store::postgres::{PgSettings, CHANNEL, LEADER_LOCK};
use super::store::Fault;
use crate::metrics::Metrics;

/// How often a node checks in with the shared store.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// What the writer, the API and the periodic jobs share about this node's place.
#[derive(Debug)]
pub struct Replica {
    /// Other nodes share the store.
    shared: bool,
    leader: AtomicBool,
    /// When the writer last knew it had applied every logged change (ms since the epoch).
    synced_ms: AtomicI64,
    position: AtomicI64,
    sync_queued: AtomicBool,
}

impl Replica {
    /// The node of a store `shared` with others or not; the one node of an embedded store
    /// leads from the start, shared ones when they win the lock.
    pub fn new(shared: bool) -> Arc<Replica> {
        Arc::new(Replica {
            shared,
            leader: AtomicBool::new(!shared),
            synced_ms: AtomicI64::new(now_ms()),
            position: AtomicI64::new(0),
            sync_queued: AtomicBool::new(false),
        })
    }

    /// True when other nodes share the store.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// True on the node that runs the fleet-wide jobs.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// The id of the last logged change this node has applied.
    pub fn position(&self) -> i64 {
        self.position.load(Ordering::Relaxed)
    }

    /// The writer has applied everything up to `position`, which was the log's end.
    pub(super) fn synced(&self, position: i64) {
        self.position.store(position, Ordering::Relaxed);
        self.synced_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Claims the right to queue a sync; false when one is queued already.
    pub(super) fn queue_sync(&self) -> bool {
        !self.sync_queued.swap(true, Ordering::AcqRel)
    }

    /// The writer took the queued sync: the next notification queues another.
    pub(super) fn sync_taken(&self) {
        self.sync_queued.store(false, Ordering::Release);
    }

    fn lag_seconds(&self) -> f64 {
        (now_ms() - self.synced_ms.load(Ordering::Relaxed)).max(0) as f64 / 1000.0
    }

    fn set_leader(&self, leader: bool, metrics: &Metrics) {
        if self.leader.swap(leader, Ordering::AcqRel) != leader {
            tracing::info!(
                "{} the leader for fleet-wide jobs",
                if leader { "now" } else { "no longer" }
            );
        }
        metrics.leader.set(i64::from(leader));
    }
}

/// Follows the shared store for as long as the process runs; `wake` asks the writer to sync.
pub(super) fn spawn(
    settings: PgSettings,
    replica: Arc<Replica>,
    metrics: Arc<Metrics>,
    node: String,
    wake: impl Fn() + Send + Sync + 'static,
) {
    let lag = (replica.clone(), metrics.clone());
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(HEARTBEAT);
        loop {
            beat.tick().await;
            lag.1.replication_lag.set(lag.0.lag_seconds());
        }
    });
    tokio::spawn(async move {
        loop {
            let outcome = follow(&settings, &replica, &metrics, &node, &wake).await;
            replica.set_leader(false, &metrics);
            if let Err(e) = outcome {
                metrics.store_up.set(0);
                tracing::warn!("store {}: {e}; following again shortly", settings.label());
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
    });
}

/// One connection's life: LISTEN, then sync on every notification and heartbeat.
async fn follow(
    settings: &PgSettings,
    replica: &Replica,
    metrics: &Metrics,
    node: &str,
    wake: &(impl Fn() + Send + Sync),
) -> Result<(), Fault> {
    let tls = settings.tls()?;
    let (client, messages) = settings.connect(&tls).await?;
    let (notified, mut notifications) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut messages = pin!(messages);
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(_) = message {
                if notified.send(()).is_err() {
                    return;
                }
            }
        }
    });
    let deadline = settings.timeout;
    let listen = format!("LISTEN {CHANNEL}");
    tokio::time::timeout(deadline, client.batch_execute(&listen))
        .await
        .map_err(|_| Fault::Timeout(deadline))??;
    // Whatever was committed while this node was not listening.
    wake();
    let mut beat = tokio::time::interval(HEARTBEAT);
    let result = loop {
        tokio::select! {
            notice = notifications.recv() => match notice {
                Some(()) => wake(),
                None => break Ok(()),
            },
            _ = beat.tick() => {
                let checked =
                    tokio::time::timeout(deadline, check_in(&client, replica, node)).await;
                match checked {
                    Ok(Ok(leader)) => replica.set_leader(leader, metrics),
                    Ok(Err(e)) => break Err(e),
                    Err(_) => break Err(Fault::Timeout(deadline)),
                }
                wake();
            }
        }
    };
    reader.abort();
    result
}

/// The heartbeat: records this node's position and claims (or keeps) the leader's lock.
async fn check_in(
    client: &tokio_postgres::Client,
    replica: &Replica,
    node: &str,
) -> Result<bool, Fault> {
    client
        .execute(
            "INSERT INTO nodes (name, position, seen) VALUES ($1, $2, now())
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, seen = excluded.seen",
            &[&node, &replica.position()],
        )
        .await?;
    if replica.is_leader() {
        // The session still holds it: a session lock lasts as long as the connection.
        return Ok(true);
    }
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
        .await?;
    Ok(row.get(0))
}
