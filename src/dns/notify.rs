//! NOTIFY from the RPZ feeds' primaries (RFC 1996): a zone changed, so its feed asks for the
//! changes now rather than at its refresh timer. Only the feed's own primary is heard; anyone
//! else is refused and counted. A NOTIFY only makes Cordon ask that primary, over a transfer
//! that is itself checked (TSIG), so a forged one costs one SOA-sized exchange at most.

use std::net::IpAddr;

use prometheus::IntCounter;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::policy::QName;

/// The zones the feeds follow, each with its primary, and where to say that one changed.
pub struct Primaries {
    /// Zone and primary address, in the feeds' order: the index names the feed.
    zones: Vec<(QName, IpAddr)>,
    changed: mpsc::Sender<usize>,
    accepted: IntCounter,
    refused: IntCounter,
}

impl Primaries {
    pub fn new(zones: Vec<(QName, IpAddr)>, changed: mpsc::Sender<usize>, m: &Metrics) -> Self {
        Primaries {
            zones,
            changed,
            accepted: m.feed_notifies.with_label_values(&["accepted"]),
            refused: m.feed_notifies.with_label_values(&["refused"]),
        }
    }

    /// Whether `from` is the primary of `zone`; if so, that zone's feed is told.
    pub fn heard(&self, zone: &QName, from: IpAddr) -> bool {
        let mut heard = false;
        for (i, (z, primary)) in self.zones.iter().enumerate() {
            if z.wire() == zone.wire() && *primary == from {
                // A full queue means a transfer is already due: nothing is lost.
                let _ = self.changed.try_send(i);
                heard = true;
            }
        }
        match heard {
            true => self.accepted.inc(),
            false => self.refused.inc(),
        }
        heard
    }
}
