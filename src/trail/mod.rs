//! The DNS trail: every query of a device that is isolated, on probation or watched by a
//! responder, kept in the store for the investigation (what did it try to reach?) and for the
//! proof that a released device is clean.
//!
//! The query path hands records to the trail's [`Tap`](crate::dns::record::Tap) and never
//! waits; `writer.rs` drains it into the store in batches and trims what is past the retention
//! or over a device's cap; `reader.rs` is what the API reads pages, exports and summaries
//! through; `cursor.rs` is the opaque page cursor.

mod cursor;
mod reader;
mod row;
mod writer;

use std::time::Duration;

pub use crate::control::store::trail::{NameSummary, TrailFilter, TrailRow};
pub use cursor::{Cursor, CursorError};
pub use reader::Trail;
pub use row::TrailView;
pub use writer::{spawn, TrailTask};

/// `[trail]` of the config file.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrailConfig {
    /// On by default: only devices in isolation, on probation or watched are recorded.
    pub enabled: bool,
    /// How long records are kept, in days (fractions allowed).
    pub retention_days: f64,
    /// The most records kept per device; the oldest go first.
    pub max_per_device: u64,
    /// Records that may wait for the store; more are dropped and counted.
    pub queue: usize,
}

impl Default for TrailConfig {
    fn default() -> Self {
        TrailConfig {
            enabled: true,
            retention_days: 30.0,
            max_per_device: 100_000,
            queue: 65_536,
        }
    }
}

impl TrailConfig {
    /// Checks the values: a retention that is a time, a queue with room.
    pub fn check(&self) -> Result<(), String> {
        if !(self.retention_days.is_finite() && self.retention_days > 0.0) {
            return Err("trail.retention_days must be more than 0".into());
        }
        if self.max_per_device == 0 || self.queue == 0 {
            return Err("trail.max_per_device and trail.queue must be at least 1".into());
        }
        Ok(())
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs_f64(self.retention_days.min(100_000.0) * 86_400.0)
    }
}
