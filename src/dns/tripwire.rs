//! Tripwires on the query path: a device that asks for a name its policy calls a tripwire
//! (`tripwire`, `tripwire_categories`) is isolated before it hears the answer. The check rides
//! on the decision's own lookups (`policy::decide_and_tripwire`), only for identified devices;
//! a hit (rare) hands the query to the control plane through a [`TripSink`] and answers once
//! the hold is in force. A per-device cooldown keeps one beaconing device from queueing a
//! request per query.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use prometheus::IntCounter;

use super::cache::now_secs;
use crate::metrics::Metrics;
use crate::policy::{DeviceId, QName, Snapshot, TripHit};

/// How long a trip may wait for the hold: past it the answer goes out as decided.
const FIRE_DEADLINE: Duration = Duration::from_secs(2);

/// A tripwire that fired: which device asked for what, and why that name is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trip {
    pub device: DeviceId,
    pub name: String,
    pub why: String,
}

/// Where trips go: the control plane, which holds the device. Resolves to whether a hold is
/// in force now (false when a second admin must approve, or the store failed).
pub trait TripSink: Send + Sync + 'static {
    fn trip(&self, trip: Trip) -> Pin<Box<dyn Future<Output = bool> + Send>>;
}

/// `[tripwire]` of the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TripSettings {
    /// Seconds after a trip during which the same device sets off none.
    pub cooldown_s: u64,
}

/// The tripwires in force: where trips go and when each device last set one off.
pub struct Tripwires {
    sink: Arc<dyn TripSink>,
    settings: TripSettings,
    last: DashMap<DeviceId, u64, foldhash::fast::RandomState>,
    fired: IntCounter,
    cooling: IntCounter,
    unheld: IntCounter,
}

impl Tripwires {
    pub fn new(sink: Arc<dyn TripSink>, settings: TripSettings, m: &Metrics) -> Tripwires {
        let counter = |result: &str| m.tripwires.with_label_values(&[result]);
        Tripwires {
            sink,
            settings,
            last: DashMap::default(),
            fired: counter("fired"),
            cooling: counter("cooldown"),
            unheld: counter("not_held"),
        }
    }

    /// The trip a query of `device` for `name` sets off, given the tripwire it hit
    /// ([`crate::policy::decide_and_tripwire`]): none while the device cools down.
    pub fn check(
        &self,
        snapshot: &Snapshot,
        hit: TripHit,
        device: DeviceId,
        name: &QName,
    ) -> Option<Trip> {
        let now = now_secs();
        let mut last = self.last.entry(device).or_insert(0);
        if *last != 0 && now.saturating_sub(*last) < self.settings.cooldown_s {
            self.cooling.inc();
            return None;
        }
        *last = now;
        let why = match hit {
            TripHit::Listed => "a tripwire of the policy".to_string(),
            TripHit::Category(id) => format!("category {}", snapshot.taxonomy.name(id)),
        };
        Some(Trip {
            device,
            name: name.to_dotted(),
            why,
        })
    }

    /// Hands `trip` to the control plane; whether the device is held now.
    pub async fn fire(&self, trip: Trip) -> bool {
        self.fired.inc();
        let device = trip.device;
        let held = tokio::time::timeout(FIRE_DEADLINE, self.sink.trip(trip))
            .await
            .unwrap_or_else(|_| {
                tracing::error!(
                    "a tripwire of {device} waited past {FIRE_DEADLINE:?} for its hold"
                );
                false
            });
        if !held {
            self.unheld.inc();
        }
        held
    }
}
