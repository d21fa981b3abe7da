//! Keeping Cordon in step with Jamf Pro when webhooks are not enough: Jamf Pro does not retry a
//! failed delivery, so a periodic reconciliation re-reads every mapped group's members, and a
//! device that DNS cannot recognise yet gets its inventory looked up at once.

use std::sync::Arc;
use std::time::Duration;

use super::api::{ComputerRecord, JamfApiError, JamfClient, JamfConfig};
use super::events::DeviceKind;
use super::translate::{device, group_key, parse_group_key, report};
use crate::control::{ApplyError, Control, Query, QueryReply, Request, Source};
use crate::metrics::Metrics;

/// Why a reconciliation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Control(#[from] ApplyError),
    #[error("{kind:?} group {group}: {error}")]
    Api {
        kind: DeviceKind,
        group: i64,
        error: JamfApiError,
    },
    #[error("the Jamf Pro API call failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the control plane gave an unexpected reply")]
    Reply,
}

/// What one reconciliation run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReconcileReport {
    pub groups: usize,
    pub added: usize,
    pub removed: usize,
    pub errors: Vec<String>,
}

pub struct JamfSync {
    client: Arc<JamfClient>,
    control: Control,
    metrics: Arc<Metrics>,
}

impl JamfSync {
    pub fn new(config: JamfConfig, control: Control, metrics: Arc<Metrics>) -> Arc<JamfSync> {
        Arc::new(JamfSync {
            client: Arc::new(JamfClient::new(config)),
            control,
            metrics,
        })
    }

    /// Reconciles every `every`, the first time after one interval.
    pub fn spawn_periodic(self: &Arc<Self>, every: Duration) {
        if every.is_zero() {
            return;
        }
        let sync = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                // A fleet-wide job: of several nodes sharing a store, only the leader runs it.
                if !sync.control.replica().is_leader() {
                    continue;
                }
                match sync.reconcile_all().await {
                    Ok(r) if r.added + r.removed > 0 => tracing::warn!(
                        added = r.added,
                        removed = r.removed,
                        "reconciliation healed drift from Jamf Pro"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::error!("reconciliation failed: {e}"),
                }
            }
        });
    }

    /// Reads every mapped group's members and heals drift in both directions.
    pub async fn reconcile_all(&self) -> Result<ReconcileReport, SyncError> {
        let QueryReply::Groups(keys) = self.control.query(Query::MappedGroups).await? else {
            return Err(SyncError::Reply);
        };
        let mut report = ReconcileReport::default();
        for (kind, id) in keys.iter().filter_map(|k| parse_group_key(k)) {
            match self.reconcile_group(kind, id).await {
                Ok((added, removed)) => {
                    report.groups += 1;
                    report.added += added;
                    report.removed += removed;
                }
                Err(e) => report.errors.push(e.to_string()),
            }
        }
        let result = if report.errors.is_empty() {
            "ok"
        } else {
            "error"
        };
        self.metrics
            .reconcile_runs
            .with_label_values(&[result])
            .inc();
        Ok(report)
    }

    /// Reconciles one group; returns the memberships added and removed.
    pub async fn reconcile_group(
        &self,
        kind: DeviceKind,
        group_id: i64,
    ) -> Result<(usize, usize), SyncError> {
        let client = self.client.clone();
        let members = tokio::task::spawn_blocking(move || match kind {
            DeviceKind::Computer => client.computer_group_members(group_id),
            DeviceKind::Mobile => client.mobile_group_members(group_id),
        })
        .await?
        .map_err(|error| SyncError::Api {
            kind,
            group: group_id,
            error,
        })?;
        let request = Request::ReplaceMembers {
            group: group_key(kind, group_id),
            members: members.iter().map(|&id| device(kind, id)).collect(),
            source: Source::new("jamf", "reconcile"),
        };
        let outcome = self.control.apply(request).await?;
        self.metrics
            .reconcile_drift
            .with_label_values(&["added"])
            .inc_by(outcome.joined as u64);
        self.metrics
            .reconcile_drift
            .with_label_values(&["removed"])
            .inc_by(outcome.left as u64);
        Ok((outcome.joined, outcome.left))
    }

    /// Reconciles one group in the background (a legacy group event named it).
    pub fn reconcile_group_soon(self: &Arc<Self>, kind: DeviceKind, group_id: i64) {
        let sync = self.clone();
        tokio::spawn(async move {
            if let Err(e) = sync.reconcile_group(kind, group_id).await {
                sync.metrics
                    .reconcile_runs
                    .with_label_values(&["error"])
                    .inc();
                tracing::error!("reconciling after a legacy group event: {e}");
            }
        });
    }

    /// Looks a computer's inventory up in the background and records what it says.
    pub fn look_up_soon(self: &Arc<Self>, jamf_id: i64) {
        self.record_soon(format!("computer {jamf_id}"), move |client| {
            client.computer(jamf_id)
        });
    }

    /// Looks a serial number up in the background (a hold waits for it) and records the
    /// computer that has it, which places the hold.
    pub fn look_up_serial_soon(self: &Arc<Self>, serial: String) {
        self.record_soon(format!("serial {serial}"), move |client| {
            client.computer_by_serial(&serial)
        });
    }

    /// Runs `look_up` on the blocking pool and records the computer it finds.
    fn record_soon(
        self: &Arc<Self>,
        what: String,
        look_up: impl FnOnce(&JamfClient) -> Result<Option<ComputerRecord>, JamfApiError>
            + Send
            + 'static,
    ) {
        let sync = self.clone();
        tokio::spawn(async move {
            let client = sync.client.clone();
            let record = tokio::task::spawn_blocking(move || look_up(&client)).await;
            match record {
                Ok(Ok(Some(record))) => {
                    let request = Request::Report {
                        report: report(&record.device),
                        source: Source::new("jamf-api", "inventory look-up"),
                    };
                    if let Err(e) = sync.control.apply(request).await {
                        tracing::error!("recording the inventory of {what}: {e}");
                    }
                }
                Ok(Ok(None)) => tracing::warn!("Jamf Pro has no computer with {what}"),
                Ok(Err(e)) => tracing::error!("looking up {what}: {e}"),
                Err(e) => tracing::error!("looking up {what}: {e}"),
            }
        });
    }
}
