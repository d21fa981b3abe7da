//! The snapshot in force: the control plane publishes into it, the query path loads from it.
//!
//! It lives with the policy model so that neither side depends on the other: the writer knows
//! nothing of DNS, and a listener knows nothing of the writer. A load is wait-free (arc-swap),
//! so a publish never holds up a query (contract 1).

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::snapshot::Snapshot;

pub struct Published {
    current: ArcSwap<Snapshot>,
}

impl Published {
    pub fn new(first: Snapshot) -> Published {
        Published {
            current: ArcSwap::from_pointee(first),
        }
    }

    /// The snapshot in force, for one query: no reference count is taken.
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The snapshot in force, to keep.
    pub fn get(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Puts `snapshot` in force: the next query decides with it.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        self.current.store(snapshot);
    }
}
