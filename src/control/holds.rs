//! Responders' holds: isolating a device by hand, releasing it, the critical mark, and the
//! second admin's approval that isolating a critical device needs.

use super::command::{ApplyError, Outcome};
use super::state::{Change, Hold, APPROVAL_LIFETIME};
use super::writer::{Batch, Writer};
use crate::policy::DeviceId;

impl Writer {
    pub(super) fn isolate(
        &mut self,
        text: &str,
        reason: String,
        ticket: String,
        actor: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let device = self.device(text)?;
        if self.state.devices[&device].hold.is_some() {
            return Ok(Outcome::of(device));
        }
        let hold = Hold {
            reason,
            ticket,
            by: actor.to_string(),
            at: self.now(),
        };
        if !self.is_critical(device) {
            return Ok(self.hold(device, hold, batch));
        }
        // Random, so that no one can guess the number of an approval to come.
        let approval = u64::from(rand::random::<u32>());
        let reason = hold.reason.clone();
        self.emit(
            batch,
            Change::ApprovalRequested {
                approval,
                device,
                hold,
            },
        );
        let detail = format!("approval {approval}");
        self.audit(batch, device, actor, "isolation_requested", detail, &reason);
        Err(ApplyError::NeedsApproval(approval))
    }

    /// Marked critical by the API, or named in `devices.critical` by any of its aliases (config
    /// may name the device by a serial that an MDM-created device carries).
    fn is_critical(&self, device: DeviceId) -> bool {
        let d = &self.state.devices[&device];
        d.critical
            || d.aliases.iter().any(|a| {
                self.config
                    .critical
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(a.value))
            })
    }

    fn hold(&mut self, device: DeviceId, hold: Hold, batch: &mut Batch) -> Outcome {
        let mut outcome = Outcome::of(device);
        if self.state.devices[&device].hold.is_some() {
            return outcome;
        }
        let detail = format!("ticket {}", hold.ticket);
        let (actor, reason) = (hold.by.clone(), hold.reason.clone());
        self.emit(batch, Change::HoldPlaced { device, hold });
        outcome.changes += 1;
        self.audit(batch, device, &actor, "isolated", detail, &reason);
        outcome
    }

    pub(super) fn release(
        &mut self,
        text: &str,
        actor: &str,
        reason: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let device = self.device(text)?;
        let mut outcome = Outcome::of(device);
        if self.state.devices[&device].hold.is_some() {
            self.emit(batch, Change::HoldReleased { device });
            outcome.changes += 1;
            self.audit(batch, device, actor, "released", String::new(), reason);
        }
        Ok(outcome)
    }

    pub(super) fn approve(
        &mut self,
        approval: u64,
        actor: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let now = self.now();
        let pending = self
            .state
            .approvals
            .get(&approval)
            .filter(|p| now - p.hold.at < APPROVAL_LIFETIME)
            .cloned()
            .ok_or(ApplyError::UnknownApproval(approval))?;
        if pending.hold.by == actor {
            return Err(ApplyError::SameApprover);
        }
        self.emit(batch, Change::ApprovalGranted { approval });
        let detail = format!("approval {approval}");
        let reason = &pending.hold.reason;
        self.audit(
            batch,
            pending.device,
            actor,
            "isolation_approved",
            detail,
            reason,
        );
        Ok(self.hold(pending.device, pending.hold, batch))
    }

    pub(super) fn set_critical(
        &mut self,
        text: &str,
        critical: bool,
        actor: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let device = self.device(text)?;
        let mut outcome = Outcome::of(device);
        if self.state.devices[&device].critical != critical {
            self.emit(batch, Change::CriticalSet { device, critical });
            outcome.changes += 1;
            let action = if critical {
                "marked_critical"
            } else {
                "unmarked_critical"
            };
            self.audit(
                batch,
                device,
                actor,
                action,
                String::new(),
                "set by the API",
            );
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Harness;
    use super::super::Request;
    use super::*;

    fn isolate(device: &str, actor: &str) -> Request {
        Request::Isolate {
            device: device.into(),
            reason: "EDR alert".into(),
            ticket: "IR-1".into(),
            actor: actor.into(),
        }
    }

    fn approve(approval: u64, actor: &str) -> Request {
        Request::Approve {
            approval,
            actor: actor.into(),
        }
    }

    async fn request_approval(h: &Harness) -> u64 {
        match h.control.apply(isolate("C02CRITICAL", "alice")).await {
            Err(ApplyError::NeedsApproval(id)) => id,
            other => panic!("an approval is needed: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_critical_device_is_isolated_only_once_another_admin_approves() {
        let h = Harness::start().await;
        let id = request_approval(&h).await;
        let device = DeviceId(1);
        assert_eq!(h.group_of(device), "standard");
        let same = h.control.apply(approve(id, "alice")).await;
        assert!(matches!(same, Err(ApplyError::SameApprover)), "{same:?}");
        let done = h.control.apply(approve(id, "bob")).await.unwrap();
        assert_eq!((done.changes, done.device), (1, Some(device)));
        assert_eq!(h.group_of(device), "restricted");
        let twice = h.control.apply(approve(id, "bob")).await;
        assert!(
            matches!(twice, Err(ApplyError::UnknownApproval(_))),
            "{twice:?}"
        );
    }

    #[tokio::test]
    async fn an_approval_lapses_after_an_hour() {
        let h = Harness::start().await;
        let id = request_approval(&h).await;
        h.clock.advance(APPROVAL_LIFETIME);
        let late = h.control.apply(approve(id, "bob")).await;
        assert!(
            matches!(late, Err(ApplyError::UnknownApproval(_))),
            "{late:?}"
        );
        assert_eq!(h.group_of(DeviceId(1)), "standard");
    }

    #[tokio::test]
    async fn a_pending_approval_survives_a_restart() {
        let h = Harness::start().await;
        let id = request_approval(&h).await;
        let (dir, clock) = (h.dir, h.clock);
        drop(h.control);
        let h = Harness::start_in(dir, clock).await;
        h.control.apply(approve(id, "bob")).await.unwrap();
        assert_eq!(h.group_of(DeviceId(1)), "restricted");
    }

    #[tokio::test]
    async fn a_release_lifts_the_hold_and_a_second_release_changes_nothing() {
        let h = Harness::start().await;
        let set = Request::SetGroups {
            device: "serial:C02PLAIN".into(),
            groups: vec![],
            actor: "admin".into(),
        };
        let device = h.control.apply(set).await.unwrap().device.unwrap();
        let held = h.control.apply(isolate("C02PLAIN", "alice")).await.unwrap();
        assert_eq!(held.changes, 1);
        assert_eq!(h.group_of(device), "restricted");
        let again = h.control.apply(isolate("C02PLAIN", "alice")).await.unwrap();
        assert_eq!((again.changes, again.version), (0, held.version));
        let release = || Request::Release {
            device: "C02PLAIN".into(),
            actor: "alice".into(),
            reason: "fixed".into(),
        };
        assert_eq!(h.control.apply(release()).await.unwrap().changes, 1);
        assert_eq!(h.group_of(device), "standard");
        assert_eq!(h.control.apply(release()).await.unwrap().changes, 0);
    }
}
