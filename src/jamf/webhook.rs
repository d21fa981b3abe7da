//! Jamf Pro's webhooks, end to end but for HTTP: parse the body, count the event, send the
//! request it means to the control plane, and run Jamf's own follow-ups (re-reading a group a
//! legacy event names, looking up computers DNS cannot recognise yet).

use std::sync::Arc;

use crate::control::{ApplyError, Control};
use crate::metrics::Metrics;

use super::events::{self, ParseError};
use super::sync::JamfSync;
use super::translate::{computer_id, webhook_request};

/// Why a webhook was not applied.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// The receiver of Jamf Pro's webhooks.
#[derive(Clone)]
pub struct Webhooks {
    control: Control,
    metrics: Arc<Metrics>,
    /// The Jamf Pro API, when configured: for follow-ups.
    sync: Option<Arc<JamfSync>>,
}

impl Webhooks {
    pub fn new(control: Control, metrics: Arc<Metrics>, sync: Option<Arc<JamfSync>>) -> Webhooks {
        Webhooks {
            control,
            metrics,
            sync,
        }
    }

    /// The Jamf Pro API, when configured.
    pub fn sync(&self) -> Option<&Arc<JamfSync>> {
        self.sync.as_ref()
    }

    /// Counts a webhook under `cordon_webhook_events_total{source="jamf"}`.
    pub fn count(&self, event: &str, result: &str) {
        self.metrics
            .webhook_events
            .with_label_values(&["jamf", event, result])
            .inc();
    }

    /// Applies one webhook body; the answer comes once what it says is durable and in force.
    pub async fn receive(&self, body: &[u8]) -> Result<serde_json::Value, WebhookError> {
        let envelope = events::parse(body).inspect_err(|_| self.count("unknown", "bad_request"))?;
        let event = events::known_event(&envelope.name).unwrap_or("other");
        if let events::Event::GroupChange(g) = &envelope.event {
            self.metrics
                .webhook_skipped_entries
                .with_label_values(&["jamf"])
                .inc_by(g.skipped as u64);
        }
        let Some(request) = webhook_request(&envelope) else {
            let (result, text) = if envelope.test {
                ("test", "test event acknowledged, not applied")
            } else {
                ("ignored", "event acknowledged, nothing to do")
            };
            self.count(event, result);
            return Ok(serde_json::json!({ "result": text }));
        };
        let outcome = self
            .control
            .apply(request)
            .await
            .inspect_err(|_| self.count(event, "error"))?;
        self.count(event, "applied");
        let reread = match &envelope.event {
            events::Event::GroupChange(g) if !g.has_id_lists => Some((g.kind, g.group_id)),
            _ => None,
        };
        match &self.sync {
            Some(sync) => {
                if let Some((kind, group)) = reread {
                    sync.reconcile_group_soon(kind, group);
                }
                for id in outcome.unrecognised.iter().filter_map(computer_id) {
                    sync.look_up_soon(id);
                }
            }
            None if reread.is_some() => {
                tracing::warn!("a group event without member ids needs the Jamf Pro API to re-read the group, and [jamf] url is not set")
            }
            None => {}
        }
        Ok(serde_json::json!({
            "result": if outcome.changes > 0 { "applied" } else { "unchanged" },
            "changes": outcome.changes,
            "version": outcome.version,
            "reconcile": reread.is_some(),
        }))
    }
}
