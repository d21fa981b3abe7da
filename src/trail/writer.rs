//! The trail's writer: drains the tap into the store in batches, a few times a second, and
//! trims what is past the retention or over a device's cap. A store that fails costs the batch
//! (counted), never an answer: the query path only ever sees the tap.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::row::EntryMaker;
use super::TrailConfig;
use crate::control::store::trail::chunk::{Chunk, ChunkBuilder};
use crate::control::store::Store;
use crate::dns::record::{lower_thread_priority, QueryRecord, Tap};
use crate::metrics::Metrics;
use crate::policy::DeviceId;

/// How often the tap is drained when it has little in it.
const FLUSH: Duration = Duration::from_millis(200);

/// The most records one store write carries (a chunk holds one device's of them).
const BATCH: usize = 5_000;
/// Chunk bodies kept for the next flush.
const SPARE_BUFFERS: usize = 64;

const _: () = assert!(BATCH <= crate::control::store::trail::chunk::MAX_ENTRIES);

/// The running writer; dropping this stops it (within one flush interval).
pub struct TrailTask {
    stop: Arc<AtomicBool>,
}

impl Drop for TrailTask {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts the writer on `store`, a connection of the trail's own; `node` names this node in
/// the rows it writes. It runs on a thread of its own at a lower priority than the query path's
/// threads: on a busy core, answers come first and the trail catches up in the gaps (its queue
/// holds what waits).
pub fn spawn(
    config: &TrailConfig,
    tap: Arc<Tap>,
    store: Store,
    metrics: Arc<Metrics>,
    node: String,
) -> std::io::Result<TrailTask> {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = Writer {
        entries: EntryMaker::default(),
        node,
        buffers: Vec::new(),
        tap,
        store,
        metrics,
        retention: config.retention(),
        cap: config.max_per_device,
        touched: HashSet::new(),
        last_trim: Instant::now(),
        stop: stop.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("cordon-trail".into())
        .spawn(move || {
            lower_thread_priority();
            runtime.block_on(writer.run());
        })?;
    Ok(TrailTask { stop })
}

struct Writer {
    tap: Arc<Tap>,
    store: Store,
    metrics: Arc<Metrics>,
    entries: EntryMaker,
    /// This node's name, in the chunks it writes.
    node: String,
    /// Bodies of chunks written, encoded into again.
    buffers: Vec<Vec<u8>>,
    retention: Duration,
    cap: u64,
    /// Devices written since the last trim: the ones whose cap is checked.
    touched: HashSet<DeviceId>,
    last_trim: Instant,
    stop: Arc<AtomicBool>,
}

impl Writer {
    async fn run(mut self) {
        // A short retention (tests, privacy) is trimmed often; a long one once a minute.
        let trim_every =
            (self.retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut records = Vec::with_capacity(BATCH);
        while !self.stop.load(Ordering::Relaxed) {
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

    /// Writes `records` as a chunk for each device they are of.
    async fn write(&mut self, records: &[QueryRecord]) {
        let mut builders: HashMap<DeviceId, ChunkBuilder> = HashMap::new();
        for record in records {
            let device = record.device.unwrap_or(DeviceId(0));
            let builder = builders.entry(device).or_insert_with(|| {
                let buffer = self.buffers.pop().unwrap_or_default();
                ChunkBuilder::with_buffer(device, &self.node, buffer)
            });
            self.entries.add(record, builder);
        }
        let chunks: Vec<Chunk> = builders.into_values().map(ChunkBuilder::finish).collect();
        let written = self.store.record_trail(&chunks).await;
        let devices = chunks.iter().map(|c| c.device);
        match written {
            Ok(()) => {
                self.metrics.trail_recorded.inc_by(records.len() as u64);
                self.touched.extend(devices);
            }
            Err(e) => {
                self.metrics.trail_errors.inc();
                tracing::warn!(
                    "trail: {} records lost, the store failed: {e}",
                    records.len()
                );
            }
        }
        let room = SPARE_BUFFERS.saturating_sub(self.buffers.len());
        self.buffers
            .extend(chunks.into_iter().take(room).map(|c| c.body));
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
