//! The trail's writer: drains the tap into the store in batches, a few times a second, and
//! trims what is past the retention or over a device's cap. A store that fails costs the batch
//! (counted), never an answer: the query path only ever sees the tap.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::row::row_of;
use super::TrailConfig;
use crate::control::store::Store;
use crate::dns::record::Tap;
use crate::metrics::Metrics;
use crate::policy::DeviceId;

/// How often the tap is drained when it has little in it.
const FLUSH: Duration = Duration::from_millis(200);

/// The most records one store write carries.
const BATCH: usize = 5_000;

/// The running writer; dropping this stops it.
pub struct TrailTask {
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for TrailTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Starts the writer on `store`, a connection of the trail's own; `node` names this node in
/// the rows it writes.
pub fn spawn(
    config: &TrailConfig,
    tap: Arc<Tap>,
    store: Store,
    metrics: Arc<Metrics>,
    node: String,
) -> TrailTask {
    let writer = Writer {
        tap,
        store,
        metrics,
        node,
        retention: config.retention(),
        cap: config.max_per_device,
        touched: HashSet::new(),
        last_trim: Instant::now(),
    };
    TrailTask {
        handle: tokio::spawn(writer.run()),
    }
}

struct Writer {
    tap: Arc<Tap>,
    store: Store,
    metrics: Arc<Metrics>,
    node: String,
    retention: Duration,
    cap: u64,
    /// Devices written since the last trim: the ones whose cap is checked.
    touched: HashSet<DeviceId>,
    last_trim: Instant,
}

impl Writer {
    async fn run(mut self) {
        // A short retention (tests, privacy) is trimmed often; a long one once a minute.
        let trim_every =
            (self.retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut records = Vec::with_capacity(BATCH);
        loop {
            records.clear();
            let taken = self.tap.take(BATCH, &mut records);
            if taken > 0 {
                self.write(&records).await;
            }
            if self.last_trim.elapsed() >= trim_every {
                self.trim().await;
            }
            if taken < BATCH {
                tokio::time::sleep(FLUSH).await;
            }
        }
    }

    async fn write(&mut self, records: &[crate::dns::record::QueryRecord]) {
        let rows: Vec<_> = records.iter().map(|r| row_of(r, &self.node)).collect();
        match self.store.record_queries(&rows).await {
            Ok(()) => {
                self.metrics.trail_recorded.inc_by(rows.len() as u64);
                self.touched.extend(rows.iter().map(|r| r.device));
            }
            Err(e) => {
                self.metrics.trail_errors.inc();
                tracing::warn!("trail: {} records lost, the store failed: {e}", rows.len());
            }
        }
    }

    async fn trim(&mut self) {
        self.last_trim = Instant::now();
        let before = SystemTime::now()
            .checked_sub(self.retention)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        let devices: Vec<DeviceId> = self.touched.drain().collect();
        match self.store.trim_queries(before, &devices, self.cap).await {
            Ok(gone) => self.metrics.trail_trimmed.inc_by(gone),
            Err(e) => {
                self.metrics.trail_errors.inc();
                tracing::warn!("trail: trimming failed, tried again later: {e}");
                self.touched.extend(devices);
            }
        }
    }
}
