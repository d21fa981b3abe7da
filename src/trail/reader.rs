//! What the API reads the trail through: a store connection of the trail's own, so that a
//! long export never waits for, or holds up, the writer or the control plane.

use std::sync::Arc;

use tokio::sync::Mutex;

use super::{NameSummary, TrailFilter, TrailRow};
use crate::control::store::{Store, StoreError};
use crate::policy::DeviceId;

/// A handle on the trail for readers; cheap to clone.
#[derive(Clone)]
pub struct Trail {
    store: Arc<Mutex<Store>>,
}

impl Trail {
    pub fn new(store: Store) -> Trail {
        Trail {
            store: Arc::new(Mutex::new(store)),
        }
    }

    /// A page of rows, oldest first (newest first with `filter.newest_first`).
    pub async fn page(&self, filter: &TrailFilter) -> Result<Vec<TrailRow>, StoreError> {
        self.store.lock().await.queries(filter).await
    }

    /// Deletes the device's trail; returns how many queries went.
    pub async fn erase(&self, device: DeviceId) -> Result<u64, StoreError> {
        self.store.lock().await.erase_queries(device).await
    }

    pub async fn summary(
        &self,
        device: DeviceId,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<NameSummary>, StoreError> {
        self.store
            .lock()
            .await
            .query_summary(device, since_ms, limit)
            .await
    }
}
