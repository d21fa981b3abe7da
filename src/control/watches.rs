//! Responders' watches: a device that is not isolated, but whose queries go to the trail
//! (`PUT /v1/devices/{id}/watch`), for a time if asked. Probation traces a device the same way
//! by itself; a watch is the responder's own say.

use super::command::{ApplyError, HoldRequest, Outcome};
use super::state::Change;
use super::writer::{Batch, Writer};
use crate::policy::DeviceId;

impl Writer {
    /// Watches a known device; a watch in place is replaced (a new reason, ticket or end).
    pub(super) fn watch(
        &mut self,
        text: &str,
        asked: HoldRequest,
        actor: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let device = self.device(text)?;
        let watch = self.record_of(asked, actor);
        let mut outcome = Outcome::of(device);
        if self.state.devices[&device].watch.as_deref() == Some(&watch) {
            return Ok(outcome);
        }
        let detail = match watch.expires {
            Some(end) if watch.ticket.is_empty() => format!("until {end}"),
            Some(end) => format!("until {end}; {}", watch.ticket_note()),
            None => watch.ticket_note(),
        };
        let reason = watch.reason.clone();
        self.emit(batch, Change::WatchSet { device, watch });
        outcome.changes += 1;
        self.audit(batch, device, actor, "watch_started", detail, &reason);
        Ok(outcome)
    }

    pub(super) fn unwatch(
        &mut self,
        text: &str,
        actor: &str,
        reason: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let device = self.device(text)?;
        let mut outcome = Outcome::of(device);
        if self.state.devices[&device].watch.is_some() {
            self.end_watch(device, actor, reason, batch);
            outcome.changes += 1;
        }
        Ok(outcome)
    }

    /// Ends every watch whose time has run out (the leader's tick).
    pub(super) fn expire_watches(&mut self, batch: &mut Batch) {
        let now = self.now();
        let due: Vec<DeviceId> = self
            .state
            .devices
            .iter()
            .filter(|(_, d)| {
                d.watch
                    .as_deref()
                    .is_some_and(|w| w.expires.is_some_and(|end| end <= now))
            })
            .map(|(id, _)| id)
            .collect();
        for device in due {
            self.end_watch(device, "expiry", "the watch's time ran out", batch);
        }
    }

    /// Audits an erasure of the device's trail.
    pub(super) fn trail_erased(
        &mut self,
        device: DeviceId,
        queries: u64,
        actor: &str,
        reason: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let detail = format!("{queries} queries");
        self.audit(batch, device, actor, "trail_erased", detail, reason);
        Ok(Outcome::of(device))
    }

    fn end_watch(&mut self, device: DeviceId, actor: &str, reason: &str, batch: &mut Batch) {
        self.emit(batch, Change::WatchEnded { device });
        self.audit(batch, device, actor, "watch_ended", String::new(), reason);
    }
}
