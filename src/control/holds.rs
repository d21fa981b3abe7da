//! Responders' holds: isolating a device by hand (for a time, if asked), releasing it, the
//! critical mark, and the second admin's approval that isolating a critical device needs. A
//! hold asked for a device not seen yet waits against the alias it named and is placed on the
//! first device that comes with that alias.

use super::command::{ApplyError, HoldRequest, Outcome};
use super::state::{Alias, AliasKind, Change, Hold, Pending, APPROVAL_LIFETIME};
use super::view::group_of;
use super::writer::{Batch, Writer};
use crate::policy::DeviceId;

/// The actor of holds a tripwire places.
const TRIPWIRE: &str = "tripwire";

impl Writer {
    pub(super) fn isolate(
        &mut self,
        text: &str,
        asked: HoldRequest,
        actor: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let hold = self.record_of(asked, actor);
        let Some(device) = self.state.find(text) else {
            return self.wait(text, hold, batch);
        };
        if self.state.devices[&device].hold.is_some() {
            return Ok(Outcome::of(device));
        }
        if !self.is_critical(device) {
            return Ok(self.hold(device, hold, batch));
        }
        Err(ApplyError::NeedsApproval(
            self.request_approval(device, hold, batch),
        ))
    }

    /// Who asked, why, and until when: a hold's record, or a watch's, made now.
    pub(super) fn record_of(&self, asked: HoldRequest, actor: &str) -> Hold {
        let at = self.now();
        Hold {
            reason: asked.reason,
            ticket: asked.ticket,
            by: actor.to_string(),
            at,
            expires: asked
                .expires_in
                .map(|s| at.saturating_add(s.min(i64::MAX as u64) as i64)),
        }
    }

    /// Asks a second admin to approve `hold` on a critical device; the approval's number.
    fn request_approval(&mut self, device: DeviceId, hold: Hold, batch: &mut Batch) -> u64 {
        // Random, so that no one can guess the number of an approval to come.
        let approval = u64::from(rand::random::<u32>());
        let (by, reason) = (hold.by.clone(), hold.reason.clone());
        self.emit(
            batch,
            Change::ApprovalRequested {
                approval,
                device,
                hold,
            },
        );
        let detail = format!("approval {approval}");
        self.audit(batch, device, &by, "isolation_requested", detail, &reason);
        approval
    }

    /// A tripwire fired: recorded as such, then the device is held as a responder would hold it.
    pub(super) fn tripped(
        &mut self,
        device: DeviceId,
        name: &str,
        why: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        if !self.state.devices.contains_key(&device) {
            return Err(ApplyError::UnknownDevice(device.to_string()));
        }
        let reason = format!("tripwire: asked for {name} ({why})");
        self.audit(
            batch,
            device,
            TRIPWIRE,
            "tripwire_fired",
            name.to_string(),
            why,
        );
        let asked = HoldRequest {
            reason,
            ticket: String::new(),
            expires_in: None,
        };
        self.isolate(&device.to_string(), asked, TRIPWIRE, batch)
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

    /// A hold for a device no device answers to yet: recorded against the alias at once, and
    /// placed by [`Writer::place_waiting`] when a device comes with it. `device#N` names a
    /// device Cordon numbered, so an unknown one is only an error.
    fn wait(&mut self, text: &str, hold: Hold, batch: &mut Batch) -> Result<Outcome, ApplyError> {
        let key = waiting_key(text).ok_or_else(|| ApplyError::UnknownDevice(text.to_string()))?;
        let mut outcome = Outcome {
            waiting: Some(key.clone()),
            ..Outcome::default()
        };
        if self.state.waiting.contains_key(&key) {
            return Ok(outcome);
        }
        let detail = format!("waiting for a device with {key}; ticket {}", hold.ticket);
        let (actor, reason) = (hold.by.clone(), hold.reason.clone());
        self.emit(batch, Change::HoldWaiting { key, hold });
        outcome.changes += 1;
        self.audit(batch, None, &actor, "isolation_waiting", detail, &reason);
        Ok(outcome)
    }

    /// Places the hold waiting for `alias`, now that `device` has it: as asked, or as an
    /// approval request for a critical device. Called for every alias a device gains.
    pub(super) fn place_waiting(&mut self, alias: &Alias, device: DeviceId, batch: &mut Batch) {
        let Some((key, hold)) = self
            .state
            .waiting_for(alias)
            .map(|(k, h)| (k.clone(), h.clone()))
        else {
            return;
        };
        self.emit(batch, Change::HoldWaitingEnded { key: key.clone() });
        if hold.expires.is_some_and(|end| end <= self.now()) {
            // Ran out before the device came; the next tick would have ended it.
            return;
        }
        let detail = format!("{key} seen; waiting since {}", hold.at);
        self.audit(
            batch,
            device,
            &hold.by,
            "isolation_applied",
            detail,
            &hold.reason,
        );
        if self.state.devices[&device].hold.is_some() {
            return;
        }
        if self.is_critical(device) {
            self.request_approval(device, hold, batch);
            return;
        }
        self.hold(device, hold, batch);
    }

    /// Ends every hold whose time has run out, waiting ones included (the leader's tick).
    pub(super) fn expire_holds(&mut self, batch: &mut Batch) {
        let now = self.now();
        let ran_out = |h: &Hold| h.expires.is_some_and(|end| end <= now);
        let due: Vec<DeviceId> = self
            .state
            .devices
            .iter()
            .filter(|(_, d)| d.hold.as_deref().is_some_and(ran_out))
            .map(|(id, _)| id)
            .collect();
        let reason = "the isolation's time ran out";
        for device in due {
            self.emit(batch, Change::HoldReleased { device });
            self.audit(batch, device, "expiry", "released", String::new(), reason);
        }
        let waiting: Vec<String> = self
            .state
            .waiting
            .iter()
            .filter(|(_, h)| ran_out(h))
            .map(|(k, _)| k.clone())
            .collect();
        for key in waiting {
            let detail = format!("no device came with {key}");
            self.emit(batch, Change::HoldWaitingEnded { key });
            self.audit(
                batch,
                None,
                "expiry",
                "isolation_waiting_ended",
                detail,
                reason,
            );
        }
    }

    /// Puts a device just taken out of isolation on probation, for its policy's `probation_s`
    /// (none at 0): its next tripwire isolates it again, and its view and timeline say so.
    pub(super) fn start_probation(&mut self, device: DeviceId, batch: &mut Batch) {
        let group = group_of(&self.parts, &self.state, device).unwrap_or(self.parts.default_group);
        let seconds = self.parts.groups[group.index()].policy.probation_s;
        if seconds == 0 {
            return;
        }
        let until = self.now() + i64::from(seconds);
        self.emit(batch, Change::ProbationStarted { device, until });
        let detail = format!("until {until}");
        let reason = format!("isolation ended; probation_s {seconds}");
        self.audit(
            batch,
            device,
            "cordon",
            "probation_started",
            detail,
            &reason,
        );
    }

    /// Ends every probation whose time has come (the leader's tick).
    pub(super) fn end_probations(&mut self, batch: &mut Batch) {
        let now = self.now();
        let due: Vec<DeviceId> = self
            .state
            .devices
            .iter()
            .filter(|(_, d)| d.probation.is_some_and(|until| until <= now))
            .map(|(id, _)| id)
            .collect();
        for device in due {
            self.emit(batch, Change::ProbationEnded { device });
            let reason = "probation_s ran out with no tripwire";
            self.audit(
                batch,
                device,
                "cordon",
                "probation_ended",
                String::new(),
                reason,
            );
        }
    }

    fn hold(&mut self, device: DeviceId, hold: Hold, batch: &mut Batch) -> Outcome {
        let mut outcome = Outcome::of(device);
        if self.state.devices[&device].hold.is_some() {
            return outcome;
        }
        if self.state.devices[&device].probation.is_some() {
            // Back in isolation: a probation after this one starts at its release.
            self.emit(batch, Change::ProbationEnded { device });
            let why = "isolated again";
            self.audit(
                batch,
                device,
                &hold.by,
                "probation_ended",
                String::new(),
                why,
            );
        }
        let detail = hold.ticket_note();
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
        let waiting = waiting_key(text).filter(|k| self.state.waiting.contains_key(k));
        if let (None, Some(key)) = (self.state.find(text), waiting) {
            let detail = format!("no longer waiting for {key}");
            self.emit(batch, Change::HoldWaitingEnded { key: key.clone() });
            self.audit(
                batch,
                None,
                actor,
                "isolation_waiting_ended",
                detail,
                reason,
            );
            return Ok(Outcome {
                changes: 1,
                waiting: Some(key),
                ..Outcome::default()
            });
        }
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
        let pending = self.pending(approval)?;
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

    /// Turns a pending isolation down: the approval goes, audited, and the device stays free.
    pub(super) fn refuse(
        &mut self,
        approval: u64,
        actor: &str,
        reason: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let pending = self.pending(approval)?;
        self.emit(batch, Change::ApprovalRefused { approval });
        let detail = format!("approval {approval}");
        self.audit(
            batch,
            pending.device,
            actor,
            "isolation_refused",
            detail,
            reason,
        );
        let mut outcome = Outcome::of(pending.device);
        outcome.changes = 1;
        Ok(outcome)
    }

    /// The approval `approval`, if it is pending and has not lapsed.
    fn pending(&self, approval: u64) -> Result<Pending, ApplyError> {
        let now = self.now();
        self.state
            .approvals
            .get(&approval)
            .filter(|p| now - p.hold.at < APPROVAL_LIFETIME)
            .cloned()
            .ok_or(ApplyError::UnknownApproval(approval))
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

/// The alias a waiting hold is kept under: `kind:value` as written, or a bare value (which any
/// kind of alias with that value answers); `None` for `device#N` and empty text.
pub(super) fn waiting_key(text: &str) -> Option<String> {
    let alias = Alias::parse(text);
    if alias.value.is_empty() || text.starts_with("device#") {
        return None;
    }
    Some(match alias.kind {
        AliasKind::Name => alias.value.to_string(),
        _ => alias.key(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::command::{DeviceReport, Query, QueryReply, Source};
    use super::super::testing::{computer, Harness};
    use super::super::Request;
    use super::*;

    fn isolate_for(device: &str, expires_in: Option<u64>) -> Request {
        Request::Isolate {
            device: device.into(),
            reason: "playbook: C2 beacon".into(),
            ticket: "IR-42".into(),
            expires_in,
            actor: "edr-playbook".into(),
        }
    }

    /// Jamf computer `id` checks in with serial `serial`.
    fn check_in(id: u32, serial: &str) -> Request {
        Request::Report {
            report: DeviceReport {
                device: computer(id),
                name: None,
                aliases: vec![Alias::new(AliasKind::Serial, serial)],
                address: None,
            },
            source: Source::new("test", "check-in"),
        }
    }

    /// Checks Jamf computer `id` in with `serial`; the device it is.
    async fn seen(h: &Harness, id: u32, serial: &str) -> DeviceId {
        h.control.apply(check_in(id, serial)).await.unwrap();
        match h
            .control
            .query(Query::Device(format!("jamf-computer:{id}")))
            .await
            .unwrap()
        {
            QueryReply::Device(d) => {
                d.id.strip_prefix("device#")
                    .unwrap()
                    .parse()
                    .map(DeviceId)
                    .unwrap()
            }
            other => panic!("{other:?}"),
        }
    }

    async fn isolations(h: &Harness) -> Vec<(String, Option<&'static str>)> {
        match h.control.query(Query::Isolations).await.unwrap() {
            QueryReply::Devices(list) => list.into_iter().map(|d| (d.id, d.status)).collect(),
            other => panic!("{other:?}"),
        }
    }

    async fn actions(h: &Harness, device: &str) -> Vec<String> {
        match h
            .control
            .query(Query::Timeline(device.into(), 50))
            .await
            .unwrap()
        {
            QueryReply::Timeline(events) => events.into_iter().map(|e| e.action).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_hold_for_a_serial_not_seen_yet_waits_and_is_placed_when_it_comes() {
        let h = Harness::start().await;
        let asked = h
            .control
            .apply(isolate_for("C02NEWMAC", None))
            .await
            .unwrap();
        assert_eq!(asked.waiting.as_deref(), Some("c02newmac"));
        assert_eq!((asked.changes, asked.device), (1, None));
        let again = h
            .control
            .apply(isolate_for("C02NEWMAC", None))
            .await
            .unwrap();
        assert_eq!(again.changes, 0, "asked twice, recorded once");
        assert_eq!(
            isolations(&h).await,
            [("c02newmac".to_string(), Some("waiting for device"))]
        );
        // `device#N` names a device Cordon numbered: an unknown one cannot wait.
        let numbered = h.control.apply(isolate_for("device#99", None)).await;
        assert!(
            matches!(numbered, Err(ApplyError::UnknownDevice(_))),
            "{numbered:?}"
        );

        let device = seen(&h, 7, "C02NEWMAC").await;
        assert_eq!(h.group_of(device), "restricted");
        assert_eq!(isolations(&h).await, [(device.to_string(), None)]);
        let timeline = actions(&h, &device.to_string()).await;
        assert!(
            timeline.contains(&"isolation_applied".to_string()),
            "{timeline:?}"
        );
        assert!(timeline.contains(&"isolated".to_string()), "{timeline:?}");
    }

    #[tokio::test]
    async fn a_waiting_hold_survives_a_restart_and_a_typed_alias_waits_for_that_kind_only() {
        let h = Harness::start().await;
        h.control
            .apply(isolate_for("serial:C02TYPED", None))
            .await
            .unwrap();
        let (dir, clock) = (h.dir, h.clock);
        drop(h.control);
        let h = Harness::start_in(dir, clock).await;
        // A Jamf computer id with the same text is not the serial asked for.
        let other = Request::Report {
            report: DeviceReport {
                device: computer(8),
                name: None,
                aliases: vec![Alias::new(AliasKind::Udid, "C02TYPED")],
                address: None,
            },
            source: Source::new("test", "check-in"),
        };
        h.control.apply(other).await.unwrap();
        let d = h
            .control
            .query(Query::Device("udid:C02TYPED".into()))
            .await
            .unwrap();
        let QueryReply::Device(d) = d else { panic!() };
        assert_eq!(d.group, "standard");
        let d = seen(&h, 9, "C02TYPED").await;
        assert_eq!(h.group_of(d), "restricted");
    }

    #[tokio::test]
    async fn a_waiting_hold_is_released_or_runs_out() {
        let h = Harness::start().await;
        h.control
            .apply(isolate_for("C02CANCEL", None))
            .await
            .unwrap();
        let release = Request::Release {
            device: "C02CANCEL".into(),
            actor: "alice".into(),
            reason: "false positive".into(),
        };
        let done = h.control.apply(release).await.unwrap();
        assert_eq!(
            (done.changes, done.waiting.as_deref()),
            (1, Some("c02cancel"))
        );
        assert!(isolations(&h).await.is_empty());

        h.control
            .apply(isolate_for("C02SHORT", Some(60)))
            .await
            .unwrap();
        h.clock.advance(61);
        h.control.tick().await.unwrap();
        assert!(isolations(&h).await.is_empty());
        let d = seen(&h, 3, "C02SHORT").await;
        assert_eq!(
            h.group_of(d),
            "standard",
            "a hold that ran out places nothing"
        );
    }

    #[tokio::test]
    async fn a_tripwire_holds_the_device_and_a_critical_one_waits_for_approval() {
        let h = Harness::start().await;
        let d = seen(&h, 4, "C02TRIP").await;
        let trip = |device| Request::Tripped {
            device,
            name: "evil.test".into(),
            why: "category malware".into(),
        };
        assert_eq!(h.control.apply(trip(d)).await.unwrap().changes, 1);
        assert_eq!(h.group_of(d), "restricted");
        let timeline = actions(&h, &d.to_string()).await;
        assert_eq!(
            timeline[..3],
            ["isolation_entered", "isolated", "tripwire_fired"],
            "newest first"
        );
        let critical = DeviceId(1);
        let asked = h.control.apply(trip(critical)).await;
        assert!(
            matches!(asked, Err(ApplyError::NeedsApproval(_))),
            "{asked:?}"
        );
        assert_eq!(h.group_of(critical), "standard");
        let unknown = h.control.apply(trip(DeviceId(999))).await;
        assert!(
            matches!(unknown, Err(ApplyError::UnknownDevice(_))),
            "{unknown:?}"
        );
    }

    #[tokio::test]
    async fn a_release_puts_the_device_on_probation_until_the_tick_after_its_end() {
        let h = Harness::start_with_own_policies().await;
        let standard = h.policies().join("standard.toml");
        let text = std::fs::read_to_string(&standard).unwrap() + "probation_s = 600\n";
        std::fs::write(&standard, text).unwrap();
        h.control.reload().await.unwrap();
        let d = seen(&h, 6, "C02PROBE").await;
        h.control
            .apply(isolate_for("C02PROBE", None))
            .await
            .unwrap();
        let release = Request::Release {
            device: "C02PROBE".into(),
            actor: "alice".into(),
            reason: "reimaged".into(),
        };
        h.control.apply(release).await.unwrap();
        let probation = |h: &Harness| {
            let h = h.control.clone();
            async move {
                match h.query(Query::Device("C02PROBE".into())).await.unwrap() {
                    QueryReply::Device(d) => d.probation_until,
                    other => panic!("{other:?}"),
                }
            }
        };
        let until = probation(&h).await.unwrap();
        assert_eq!(until, super::super::clock::Clock::now(&h.clock) + 600);
        h.clock.advance(599);
        h.control.tick().await.unwrap();
        assert_eq!(probation(&h).await, Some(until));
        h.clock.advance(2);
        h.control.tick().await.unwrap();
        assert_eq!(probation(&h).await, None);
        let timeline = actions(&h, &d.to_string()).await;
        assert_eq!(timeline[..2], ["probation_ended", "probation_started"]);
    }

    #[tokio::test]
    async fn a_time_boxed_hold_ends_at_the_tick_after_its_time() {
        let h = Harness::start().await;
        let d = seen(&h, 5, "C02BOXED").await;
        let held = h
            .control
            .apply(isolate_for("C02BOXED", Some(3600)))
            .await
            .unwrap();
        assert_eq!(held.changes, 1);
        h.clock.advance(3599);
        h.control.tick().await.unwrap();
        assert_eq!(h.group_of(d), "restricted");
        h.clock.advance(2);
        h.control.tick().await.unwrap();
        assert_eq!(h.group_of(d), "standard");
        let timeline = actions(&h, &d.to_string()).await;
        assert_eq!(
            timeline[..2],
            ["isolation_left", "released"],
            "newest first"
        );
    }

    fn isolate(device: &str, actor: &str) -> Request {
        Request::Isolate {
            device: device.into(),
            reason: "EDR alert".into(),
            ticket: "IR-1".into(),
            expires_in: None,
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
    async fn a_refused_approval_leaves_the_device_free_and_is_listed_no_more() {
        let h = Harness::start().await;
        let id = request_approval(&h).await;
        let listed = match h.control.query(Query::Approvals).await.unwrap() {
            QueryReply::Approvals(list) => list,
            other => panic!("{other:?}"),
        };
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].id, listed[0].hold.by.as_str()), (id, "alice"));
        let refuse = Request::Refuse {
            approval: id,
            actor: "bob".into(),
            reason: "a false positive".into(),
        };
        h.control.apply(refuse.clone()).await.unwrap();
        assert_eq!(h.group_of(DeviceId(1)), "standard");
        let again = h.control.apply(refuse).await;
        assert!(
            matches!(again, Err(ApplyError::UnknownApproval(_))),
            "{again:?}"
        );
        let late = h.control.apply(approve(id, "bob")).await;
        assert!(
            matches!(late, Err(ApplyError::UnknownApproval(_))),
            "{late:?}"
        );
        assert!(actions(&h, "device#1")
            .await
            .contains(&"isolation_refused".to_string()));
        match h.control.query(Query::Approvals).await.unwrap() {
            QueryReply::Approvals(list) => assert!(list.is_empty(), "{list:?}"),
            other => panic!("{other:?}"),
        }
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
