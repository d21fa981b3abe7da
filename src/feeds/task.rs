//! The task that follows every feed: AXFR at start, then IXFR when the refresh timer says or
//! a NOTIFY from the primary does; after a failure, the SOA's retry interval (doubled with each
//! failure, never past the refresh). A changed copy goes into the feeds' DB, a few domains laid
//! over it or, after a full transfer or once the overlay has grown, a new one built on the
//! blocking pool, and the control plane publishes it. A failed transfer changes nothing: the
//! copy in force stays, however old (a blocklist that expired would fail open).

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::settings::Feed;
use super::transfer::{transfer, Primary, TransferError};
use super::zone::{Applied, FeedZone, Received};
use crate::control::Control;
use crate::dns::notify::Primaries;
use crate::lists::retry_after;
use crate::metrics::Metrics;
use crate::policy::feeds::{FeedDb, Listing};
use crate::policy::{CategorySet, QName};

/// How often the task wakes to update `cordon_feed_age_seconds` when nothing is due.
const TICK: Duration = Duration::from_secs(1);
/// The refresh and retry intervals a zone's SOA may ask for, clamped to sense.
const REFRESH_RANGE: (u64, u64) = (1, 86_400);
/// The wait before the first transfer is tried again, when there is no SOA to say.
const FIRST_RETRY: Duration = Duration::from_secs(10);

/// The running task; dropping it stops it.
pub struct FeedTask {
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for FeedTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Starts following `feeds`. The [`Primaries`] go to the DNS handler, which hears their
/// NOTIFYs.
pub fn spawn(feeds: Vec<Feed>, control: Control, metrics: Arc<Metrics>) -> (FeedTask, Primaries) {
    let (tx, rx) = mpsc::channel(64);
    let zones = feeds
        .iter()
        .map(|f| {
            let zone = QName::from_dotted(f.zone.to_ascii().trim_end_matches('.'))
                .unwrap_or_else(|_| QName::root());
            (zone, f.primary.ip())
        })
        .collect();
    let primaries = Primaries::new(zones, tx, &metrics);
    let now = Instant::now();
    let tracked = feeds
        .into_iter()
        .map(|feed| Tracked::new(feed, &metrics, now))
        .collect();
    let mut task = Feeds {
        tracked,
        db: Arc::new(FeedDb::default()),
        control,
        metrics,
    };
    let handle = tokio::spawn(async move { task.run(rx).await });
    (FeedTask { handle }, primaries)
}

/// One feed, its copy and when to ask next.
struct Tracked {
    feed: Feed,
    zone: FeedZone,
    due: Instant,
    failures: u32,
    /// When the primary last confirmed the copy.
    confirmed: Option<Instant>,
    entries: IntGauge,
    serial: IntGauge,
    age: IntGauge,
}

impl Tracked {
    fn new(feed: Feed, m: &Metrics, now: Instant) -> Tracked {
        let label = [feed.name.as_str()];
        Tracked {
            zone: FeedZone::new(feed.zone.clone(), feed.category),
            due: now,
            failures: 0,
            confirmed: None,
            entries: m.feed_entries.with_label_values(&label),
            serial: m.feed_serial.with_label_values(&label),
            age: m.feed_age.with_label_values(&label),
            feed,
        }
    }

    /// The SOA's refresh, or the feed's own.
    fn refresh(&self) -> Duration {
        let soa = self.zone.soa().map(|s| s.refresh.max(0) as u64);
        let secs = self
            .feed
            .refresh
            .map(|r| r.as_secs())
            .or(soa)
            .unwrap_or(3600);
        Duration::from_secs(secs.clamp(REFRESH_RANGE.0, REFRESH_RANGE.1))
    }

    /// The wait after this many failures in a row.
    fn retry(&self) -> Duration {
        let soa = self.zone.soa().map(|s| {
            let secs = (s.retry.max(0) as u64).clamp(REFRESH_RANGE.0, REFRESH_RANGE.1);
            Duration::from_secs(secs)
        });
        let first = soa.unwrap_or(FIRST_RETRY).min(self.refresh());
        retry_after(self.failures, first, self.refresh())
    }

    fn counter(&self, m: &Metrics, kind: &str, result: &str) -> IntCounter {
        m.feed_transfers
            .with_label_values(&[self.feed.name.as_str(), kind, result])
    }
}

struct Feeds {
    tracked: Vec<Tracked>,
    /// The DB last published.
    db: Arc<FeedDb>,
    control: Control,
    metrics: Arc<Metrics>,
}

impl Feeds {
    async fn run(&mut self, mut notified: mpsc::Receiver<usize>) {
        loop {
            let now = Instant::now();
            for i in 0..self.tracked.len() {
                if self.tracked[i].due <= now {
                    self.refresh(i).await;
                }
            }
            self.show_ages();
            let next = self.tracked.iter().map(|t| t.due).min();
            let wake = next.map_or(now + TICK, |due| due.min(Instant::now() + TICK));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                heard = notified.recv() => match heard {
                    Some(i) => {
                        if let Some(t) = self.tracked.get_mut(i) {
                            t.due = Instant::now();
                        }
                    }
                    None => return,
                },
            }
        }
    }

    fn show_ages(&self) {
        for t in &self.tracked {
            if let Some(at) = t.confirmed {
                t.age.set(at.elapsed().as_secs() as i64);
            }
        }
    }

    /// Asks the primary for what changed (everything, the first time) and puts it in force.
    async fn refresh(&mut self, i: usize) {
        let incremental = self.tracked[i].zone.soa().is_some();
        let mut outcome = self.fetch(i, incremental).await;
        if incremental {
            if let Err(e) = &outcome {
                if e.wants_full() {
                    outcome = self.fetch(i, false).await;
                }
            }
        }
        let t = &mut self.tracked[i];
        match outcome {
            Ok(()) => {
                t.failures = 0;
                t.confirmed = Some(Instant::now());
                t.due = Instant::now() + t.refresh();
            }
            Err(_) => {
                t.failures += 1;
                t.due = Instant::now() + t.retry();
            }
        }
    }

    /// One transfer, counted and logged; a good answer is applied and published.
    async fn fetch(&mut self, i: usize, incremental: bool) -> Result<(), TransferError> {
        let kind = if incremental { "ixfr" } else { "axfr" };
        let t = &self.tracked[i];
        let since = incremental.then(|| t.zone.soa().cloned()).flatten();
        let mut receiver = t.zone.receiver();
        let primary = Primary {
            addr: t.feed.primary,
            zone: &t.feed.zone,
            tsig: t.feed.tsig.as_ref(),
            timeout: t.feed.timeout,
        };
        let started = Instant::now();
        let received = match transfer(&primary, since.as_ref(), &mut receiver).await {
            Ok(()) => receiver.finish().map_err(TransferError::from),
            Err(e) => Err(e),
        };
        let result = match received {
            Ok(received) => self.apply(i, received, started).await,
            Err(e) => Err(e),
        };
        let t = &self.tracked[i];
        match &result {
            Ok(label) => t.counter(&self.metrics, kind, label).inc(),
            Err(e) => {
                t.counter(&self.metrics, kind, e.label()).inc();
                tracing::warn!(
                    feed = %t.feed.name,
                    primary = %t.feed.primary,
                    "feed {}: {} failed, the copy in force stays (serial {}): {e}",
                    t.feed.name,
                    kind.to_uppercase(),
                    t.zone.serial().map_or("none".into(), |s| s.to_string()),
                );
            }
        }
        result.map(|_| ())
    }

    /// Applies a checked answer to the feed's copy and publishes the feeds' new DB.
    async fn apply(
        &mut self,
        i: usize,
        received: Received,
        started: Instant,
    ) -> Result<&'static str, TransferError> {
        let answered = Instant::now();
        let (serial, records, full) = (received.serial(), received.records, received.is_full());
        let t = &mut self.tracked[i];
        let skipped_before = t.zone.skipped.clone();
        let applied = t.zone.apply(received)?;
        let changed = match &applied {
            Applied::UpToDate => return Ok("up_to_date"),
            Applied::Full => None,
            Applied::Changed(hashes) => Some(hashes.len()),
        };
        self.count_skipped(i, &skipped_before, full);
        let db = match applied {
            Applied::Changed(hashes) if !self.db.is_empty() || hashes.is_empty() => {
                let db = self
                    .db
                    .with_changes(hashes.iter().map(|&h| (h, self.listing(h))));
                match db.wants_rebuild() {
                    true => self.rebuild().await,
                    false => Ok(db),
                }
            }
            _ => self.rebuild().await,
        };
        let db = db.map_err(|e| TransferError::Malformed(e.to_string()))?;
        self.db = Arc::new(db);
        if self.control.set_feeds(self.db.clone()).await.is_err() {
            return Err(TransferError::Malformed(
                "the control plane has stopped".into(),
            ));
        }
        let published = answered.elapsed();
        self.metrics.feed_apply.observe(published.as_secs_f64());
        let t = &self.tracked[i];
        t.entries.set(t.zone.domains() as i64);
        t.serial.set(i64::from(serial));
        let what = match changed {
            Some(n) => format!("{n} domains changed"),
            None => format!("{} domains", t.zone.domains()),
        };
        tracing::info!(
            feed = %t.feed.name,
            "feed {}: serial {serial} in force ({}, {records} records, {what}; transferred in {} ms, published in {:.1} ms)",
            t.feed.name,
            if full { "full zone" } else { "changes" },
            (answered - started).as_millis(),
            published.as_secs_f64() * 1000.0,
        );
        Ok("ok")
    }

    /// Counts the records of the last answer that are no trigger Cordon honours.
    fn count_skipped(
        &self,
        i: usize,
        before: &std::collections::BTreeMap<crate::policy::load::SkipReason, u64>,
        full: bool,
    ) {
        let t = &self.tracked[i];
        for (reason, &now) in &t.zone.skipped {
            let was = if full {
                0
            } else {
                before.get(reason).copied().unwrap_or(0)
            };
            let new = now.saturating_sub(was);
            if new > 0 {
                self.metrics
                    .feed_skipped
                    .with_label_values(&[t.feed.name.as_str(), reason.as_str()])
                    .inc_by(new);
            }
        }
    }

    /// A domain's listing over every feed.
    fn listing(&self, hash: u64) -> Listing {
        self.tracked.iter().fold(
            (CategorySet::EMPTY, CategorySet::EMPTY),
            |(set, clear), t| {
                let (s, c) = t.zone.listing(hash);
                (set.union(s), clear.union(c))
            },
        )
    }

    /// A new DB from every feed's copy, built on the blocking pool.
    async fn rebuild(&self) -> Result<FeedDb, crate::policy::categories::BuildError> {
        let listings: Vec<(u64, Listing)> = match self.tracked.as_slice() {
            [one] => one.zone.listings().collect(),
            many => {
                let mut merged: FxHashMap<u64, Listing> = FxHashMap::default();
                for t in many {
                    for (h, (s, c)) in t.zone.listings() {
                        let m = merged.entry(h).or_default();
                        *m = (m.0.union(s), m.1.union(c));
                    }
                }
                merged.into_iter().collect()
            }
        };
        tokio::task::spawn_blocking(move || {
            let db = FeedDb::build(listings.into_iter());
            // A full transfer's messages and the listings allocate far more than they leave.
            crate::alloc::release_free_memory();
            db
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}
