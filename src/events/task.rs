//! The delivery tasks `app.rs` starts: one per sink, each with its own cursor in the store.
//! Once a second a task reads the audit rows that are events after its cursor, delivers them in
//! order, and moves the cursor past each only once the receiver has it (at least once: a crash
//! between the two sends it again, with the same id). A failure is tried again after a backoff
//! that doubles from 1 s to 5 min; the sink waits meanwhile, and nothing else does: the writer
//! and the query path never see a sink. With a shared store only the leader delivers, and a new
//! leader starts from the cursors in the store.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::event::{actions, Event};
use super::http::{Delivery, Poster};
use super::settings::{Sink, Target};
use super::syslog::Syslog;
use crate::control::store::Store;
use crate::control::Control;
use crate::metrics::Metrics;

/// How often a task looks for new events.
const POLL: Duration = Duration::from_secs(1);

/// How many events one read brings at most.
const PAGE: usize = 500;

/// The backoff after failures: from the first to the cap, doubling.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(300);

/// The running tasks; dropping this stops them.
pub struct EventTasks {
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for EventTasks {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// Starts one task per sink. `store` is a connection of the events' own (not the writer's);
/// `hostname` names this node in syslog messages. A sink new to the store gets its cursor here,
/// at the newest audit row, before the API opens: every change made through it is sent.
pub async fn spawn(
    sinks: Vec<Sink>,
    mut store: Store,
    control: Control,
    metrics: Arc<Metrics>,
    hostname: String,
) -> EventTasks {
    for sink in &sinks {
        if let Err(e) = store.sink_cursor(&sink.name).await {
            tracing::warn!(sink = %sink.name, "events: cannot read the sink's cursor yet: {e}");
        }
    }
    let store = Arc::new(Mutex::new(store));
    let handles = sinks
        .into_iter()
        .map(|sink| {
            let courier = Courier {
                name: sink.name.clone(),
                sender: Sender::new(sink, &hostname),
                store: store.clone(),
                control: control.clone(),
                metrics: metrics.clone(),
                cursor: None,
            };
            tokio::spawn(courier.run())
        })
        .collect();
    EventTasks { handles }
}

/// How one sink sends.
enum Sender {
    Webhook {
        poster: Poster,
        secret: Vec<u8>,
    },
    Syslog(Syslog),
    Ssf {
        poster: Poster,
        signer: Arc<super::ssf::SetSigner>,
    },
}

impl Sender {
    fn new(sink: Sink, hostname: &str) -> Sender {
        match sink.target {
            Target::Webhook {
                url,
                secret,
                authorization,
                tls,
            } => Sender::Webhook {
                poster: Poster::new(url, authorization, tls, sink.timeout),
                secret,
            },
            Target::Syslog {
                transport,
                addr,
                facility,
            } => Sender::Syslog(Syslog::new(
                transport,
                addr,
                facility,
                hostname.to_string(),
                sink.timeout,
            )),
            Target::Ssf {
                url,
                signer,
                authorization,
                tls,
            } => Sender::Ssf {
                poster: Poster::new(url, authorization, tls, sink.timeout),
                signer,
            },
        }
    }

    async fn send(&mut self, event: &Event) -> Delivery {
        match self {
            Sender::Webhook { poster, secret } => poster.webhook(event, &secret[..]).await,
            Sender::Syslog(syslog) => match syslog.send(event).await {
                Ok(()) => Delivery::Delivered,
                Err(e) => Delivery::Failed(e),
            },
            Sender::Ssf { poster, signer } => {
                let now = crate::control::clock::now_ms() / 1000;
                poster.set(event, signer, now).await
            }
        }
    }
}

/// One sink's task.
struct Courier {
    name: String,
    sender: Sender,
    store: Arc<Mutex<Store>>,
    control: Control,
    metrics: Arc<Metrics>,
    /// The last audit id passed, as this node knows it while it leads; read from the store
    /// when it starts leading.
    cursor: Option<i64>,
}

/// Why a round stopped early.
enum Stop {
    /// This node no longer leads.
    Deposed,
    /// The store did not answer.
    Store,
}

impl Courier {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !self.leads() {
                continue;
            }
            // A round that stopped (the store, or the lead, lost) starts over at the next tick.
            let _ = self.round().await;
        }
    }

    /// True while this node leads. A node that does not forgets its cursor: another node may
    /// deliver meanwhile, so it reads the cursor from the store when it leads again.
    fn leads(&mut self) -> bool {
        let leads = self.control.replica().is_leader();
        if !leads {
            self.cursor = None;
            self.pending(0);
        }
        leads
    }

    fn pending(&self, n: i64) {
        self.metrics
            .events_pending
            .with_label_values(&[&self.name])
            .set(n);
    }

    fn count(&self, result: &str) {
        self.metrics
            .events_delivered
            .with_label_values(&[&self.name, result])
            .inc();
    }

    /// Delivers what the outbox holds after the cursor, a page at a time.
    async fn round(&mut self) -> Result<(), Stop> {
        loop {
            let cursor = match self.cursor {
                Some(c) => c,
                None => {
                    let read = self.store.lock().await.sink_cursor(&self.name).await;
                    let c = read.map_err(|e| self.store_failed(e))?;
                    self.cursor = Some(c);
                    c
                }
            };
            let read = self
                .store
                .lock()
                .await
                .outbox(cursor, &actions(), PAGE)
                .await;
            let outbox = read.map_err(|e| self.store_failed(e))?;
            let mut pending = outbox.pending;
            self.pending(pending);
            let whole = outbox.rows.len() as i64 >= outbox.pending;
            for row in &outbox.rows {
                if let Some(event) = Event::of(row) {
                    self.deliver(&event).await?;
                }
                self.advance(row.id).await;
                pending -= 1;
                self.pending(pending.max(0));
            }
            if whole {
                // Every event up to the end is passed: rows of other actions need not be read
                // again.
                self.advance(outbox.end).await;
                return Ok(());
            }
        }
    }

    /// Sends `event` until the receiver has it (or refuses it for good).
    async fn deliver(&mut self, event: &Event) -> Result<(), Stop> {
        let mut wait = FIRST_RETRY;
        loop {
            match self.sender.send(event).await {
                Delivery::Delivered => {
                    self.count("ok");
                    return Ok(());
                }
                Delivery::Skipped => return Ok(()),
                Delivery::Rejected(why) => {
                    self.count("rejected");
                    tracing::error!(
                        sink = %self.name,
                        event = event.id,
                        "events: the receiver refused event {} for good, passing it: {why}",
                        event.id
                    );
                    return Ok(());
                }
                Delivery::Failed(why) => {
                    self.count("error");
                    tracing::warn!(
                        sink = %self.name,
                        event = event.id,
                        "events: delivering event {} failed, trying again in {wait:?}: {why}",
                        event.id
                    );
                }
            }
            tokio::time::sleep(jittered(wait)).await;
            wait = (wait * 2).min(MAX_RETRY);
            if !self.leads() {
                return Err(Stop::Deposed);
            }
        }
    }

    /// Moves the cursor to `id` (never back), in memory at once and in the store as it can:
    /// a cursor the store missed only means the events after it are sent again.
    async fn advance(&mut self, id: i64) {
        if self.cursor.is_some_and(|c| c >= id) {
            return;
        }
        self.cursor = Some(id);
        let written = self
            .store
            .lock()
            .await
            .set_sink_cursor(&self.name, id)
            .await;
        if let Err(e) = written {
            tracing::warn!(sink = %self.name, "events: cannot record the sink's cursor: {e}");
        }
    }

    fn store_failed(&self, e: crate::control::store::StoreError) -> Stop {
        tracing::warn!(sink = %self.name, "events: cannot read the outbox: {e}");
        Stop::Store
    }
}

/// `wait`, give or take a tenth, so that sinks failing together do not retry in step.
fn jittered(wait: Duration) -> Duration {
    let tenth = wait.as_millis() as u64 / 10;
    let offset = rand::random_range(0..=2 * tenth);
    Duration::from_millis(wait.as_millis() as u64 - tenth + offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_retries_wait_about_as_long_as_asked() {
        for _ in 0..100 {
            let w = jittered(Duration::from_secs(10));
            assert!(
                w >= Duration::from_secs(9) && w <= Duration::from_secs(11),
                "{w:?}"
            );
        }
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }
}
