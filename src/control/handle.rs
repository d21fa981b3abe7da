//! The control plane's handle: how the API, adapters and timers reach the single writer. Every
//! call is a message to the writer's loop and an answer back; nothing here touches state.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::command::{
    ApplyError, Command, Outcome, Query, QueryReply, ReloadReport, ReloadStatus, Request,
};
use super::replica::{self, Replica};
use super::store::{Store, StoreError};
use super::writer::{Writer, WriterConfig};
use crate::metrics::Metrics;
use crate::policy::{FeedDb, FileError, PolicyErrors, PolicySet, Published};

/// A handle for sending commands to the writer.
#[derive(Clone)]
pub struct Control {
    tx: mpsc::Sender<Command>,
    status: Arc<Mutex<ReloadStatus>>,
    replica: Arc<Replica>,
}

impl Control {
    /// Starts the writer with the state loaded from `store`; the snapshot built from them is
    /// published in `published` before this returns. With a shared store, the node also
    /// follows what other nodes commit (`replica.rs`); `node` names it there.
    pub async fn start(
        config: WriterConfig,
        store: Store,
        set: PolicySet,
        published: Arc<Published>,
        metrics: Arc<Metrics>,
        node: String,
    ) -> Result<Control, StoreError> {
        let shared = store.shared().cloned();
        // The one node of an embedded store leads; shared nodes wait for the lock.
        let replica = Replica::new(shared.is_some());
        metrics.leader.set(i64::from(shared.is_none()));
        let writer = Writer::new(
            config,
            store,
            set,
            published,
            metrics.clone(),
            replica.clone(),
        )
        .await?;
        let status = writer.status();
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(writer.run(rx));
        let control = Control {
            tx,
            status,
            replica,
        };
        control.spawn_ticker();
        if let Some(settings) = shared {
            let waker = control.clone();
            let wake = move || waker.sync_soon();
            replica::spawn(settings, control.replica.clone(), metrics, node, wake);
        }
        Ok(control)
    }

    fn spawn_ticker(&self) {
        let tx = self.tx.clone();
        let replica = self.replica.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                // Fleet-wide: one node runs it.
                if !replica.is_leader() {
                    continue;
                }
                if tx.send(Command::Tick { reply: None }).await.is_err() {
                    return;
                }
            }
        });
    }

    /// Asks the writer to apply what other nodes committed; a no-op while one such request
    /// is already queued.
    pub(super) fn sync_soon(&self) {
        if self.replica.queue_sync() && self.tx.try_send(Command::Sync).is_err() {
            // The queue is full of work; that work syncs when it writes. Try next time.
            self.replica.sync_taken();
        }
    }

    /// This node's place among others: shared store or not, leader or not, log position.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Runs the periodic duties now (the writer runs them every minute by itself).
    pub async fn tick(&self) -> Result<(), ApplyError> {
        let (reply, rx) = oneshot::channel();
        let reply = Some(reply);
        self.tx
            .send(Command::Tick { reply })
            .await
            .map_err(|_| ApplyError::Stopped)?;
        rx.await.map_err(|_| ApplyError::Stopped)
    }

    /// Reloads policies and lists; on any error the snapshot in force stays (contract 4).
    pub async fn reload(&self) -> Result<ReloadReport, PolicyErrors> {
        let (reply, rx) = oneshot::channel();
        let stopped = || {
            PolicyErrors(vec![FileError {
                file: PathBuf::new(),
                line: None,
                message: "the control plane has stopped".into(),
            }])
        };
        self.tx
            .send(Command::Reload { reply })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Applies a change request; the reply comes once it is durable and in force.
    pub async fn apply(&self, request: Request) -> Result<Outcome, ApplyError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Apply {
                request: Box::new(request),
                reply,
            })
            .await
            .map_err(|_| ApplyError::Stopped)?;
        rx.await.map_err(|_| ApplyError::Stopped)?
    }

    /// Puts the feeds' new DB in force; returns once a snapshot holding it is published.
    pub async fn set_feeds(&self, db: Arc<FeedDb>) -> Result<(), ApplyError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Feeds { db, reply })
            .await
            .map_err(|_| ApplyError::Stopped)?;
        rx.await.map_err(|_| ApplyError::Stopped)
    }

    /// Answers a read-only question about devices.
    pub async fn query(&self, query: Query) -> Result<QueryReply, ApplyError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Query { query, reply })
            .await
            .map_err(|_| ApplyError::Stopped)?;
        rx.await.map_err(|_| ApplyError::Stopped)?
    }

    pub fn status(&self) -> ReloadStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}
