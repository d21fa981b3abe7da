//! Applying requests: each turns into changes and audit records in the batch, checked against
//! the writer's state; nothing here touches the store or publishes.

use std::net::IpAddr;

use super::commands::{ApplyError, Outcome, Request};
use super::state::{Alias, AliasKind, AliasRef, AuditEvent, Change, Hold};
use super::writer::{epoch_secs, group_key, Batch, Pending, Writer};
use crate::jamf::events::{DeviceKind, DeviceReport, Envelope, Event, GroupChange};
use crate::policy::DeviceId;

/// A pending approval lapses after an hour: a stale one must not isolate a device later.
const APPROVAL_LIFETIME: i64 = 3600;
/// How often an unchanged binding's last-seen time is written.
const BINDING_REFRESH: i64 = 3600;

impl Writer {
    pub(super) fn request(
        &mut self,
        request: Request,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        match request {
            Request::Jamf(envelope) => Ok(self.jamf(envelope, batch)),
            Request::Inventory { report, actor } => {
                let mut outcome = Outcome::default();
                self.device_report(&report, &actor, "inventory look-up", batch, &mut outcome);
                Ok(outcome)
            }
            Request::Reconcile {
                kind,
                group_id,
                members,
            } => Ok(self.reconcile(kind, group_id, &members, batch)),
            Request::SetGroups {
                device,
                groups,
                actor,
            } => self.set_groups(&device, groups, &actor, batch),
            Request::Isolate {
                device,
                reason,
                ticket,
                actor,
            } => self.isolate(&device, reason, ticket, &actor, batch),
            Request::Release {
                device,
                actor,
                reason,
            } => self.release(&device, &actor, &reason, batch),
            Request::Approve { approval, actor } => self.approve(approval, &actor, batch),
            Request::SetCritical {
                device,
                critical,
                actor,
            } => self.set_critical(&device, critical, &actor, batch),
        }
    }

    fn audit(
        &self,
        batch: &mut Batch,
        device: DeviceId,
        actor: &str,
        action: &str,
        detail: String,
        reason: &str,
    ) {
        batch.audit.push(AuditEvent {
            at: epoch_secs(),
            device: Some(device),
            actor: actor.to_string(),
            action: action.to_string(),
            detail,
            reason: reason.to_string(),
        });
    }

    /// Creates a device known by `alias`, labelled `label`; applied to the state at once so
    /// that the rest of the batch finds it.
    fn create(&mut self, batch: &mut Batch, alias: &Alias, label: &str) -> DeviceId {
        let id = self.state.allocate();
        for c in [
            Change::CreateDevice {
                id,
                label: label.to_string(),
            },
            Change::SetAlias {
                alias: alias.clone(),
                device: id,
            },
        ] {
            self.state.apply(&c);
            batch.changes.push(c);
        }
        id
    }

    /// The device a Jamf id names, created on first sight.
    fn jamf_device(&mut self, kind: DeviceKind, jamf_id: i64, batch: &mut Batch) -> DeviceId {
        let alias = Alias::jamf(kind, jamf_id);
        if let Some(id) = self.state.device_by_alias(&alias) {
            return id;
        }
        let label = match kind {
            DeviceKind::Computer => format!("jamf computer {jamf_id}"),
            DeviceKind::Mobile => format!("jamf mobile device {jamf_id}"),
        };
        self.create(batch, &alias, &label)
    }

    fn jamf(&mut self, envelope: Envelope, batch: &mut Batch) -> Outcome {
        let mut outcome = Outcome::default();
        if envelope.test {
            // Console test events carry sample data: acknowledged, never applied.
            return outcome;
        }
        let reason = format!(
            "jamf webhook {} ({})",
            envelope.name,
            envelope.webhook_name.as_deref().unwrap_or("unnamed")
        );
        match &envelope.event {
            Event::GroupChange(change) => self.group_change(change, &reason, batch, &mut outcome),
            Event::Device(report) => {
                self.device_report(report, "jamf", &reason, batch, &mut outcome)
            }
            Event::Other => {}
        }
        outcome
    }

    fn group_change(
        &mut self,
        change: &GroupChange,
        reason: &str,
        batch: &mut Batch,
        outcome: &mut Outcome,
    ) {
        let key = group_key(change.kind, change.group_id);
        if let Some(name) = &change.group_name {
            if self.state.group_names.get(&key) != Some(name) {
                let c = Change::GroupName {
                    group: key.clone(),
                    name: name.clone(),
                };
                self.state.apply(&c);
                batch.changes.push(c);
            }
        }
        if !change.has_id_lists {
            outcome.reconcile = Some((change.kind, change.group_id));
            return;
        }
        for report in change.added_devices.iter().chain(&change.removed_devices) {
            self.device_report(report, "jamf", reason, batch, outcome);
        }
        for &jamf_id in &change.added {
            let device = self.jamf_device(change.kind, jamf_id, batch);
            self.set_membership(device, &key, true, "jamf", reason, batch, outcome);
            if change.kind == DeviceKind::Computer && !self.reachable(device) {
                outcome.lookups.push(jamf_id);
            }
        }
        for &jamf_id in &change.removed {
            if let Some(device) = self
                .state
                .device_by_alias(&Alias::jamf(change.kind, jamf_id))
            {
                self.set_membership(device, &key, false, "jamf", reason, batch, outcome);
            }
        }
    }

    /// Whether DNS can tell this device apart: a bound address or a presentable alias.
    fn reachable(&self, device: DeviceId) -> bool {
        let d = &self.state.devices[&device];
        d.aliases.iter().any(|a| {
            matches!(
                a.kind,
                AliasKind::Serial | AliasKind::Udid | AliasKind::Token
            )
        }) || !self.state.addresses_of(device).is_empty()
    }

    #[allow(clippy::too_many_arguments)]
    fn set_membership(
        &mut self,
        device: DeviceId,
        key: &str,
        member: bool,
        actor: &str,
        reason: &str,
        batch: &mut Batch,
        outcome: &mut Outcome,
    ) {
        let has = self
            .state
            .devices
            .get(&device)
            .is_some_and(|d| d.memberships.contains(key));
        if has == member {
            return;
        }
        let (change, action) = if member {
            (
                Change::AddMembership {
                    device,
                    group: key.to_string(),
                },
                "membership_added",
            )
        } else {
            (
                Change::RemoveMembership {
                    device,
                    group: key.to_string(),
                },
                "membership_removed",
            )
        };
        batch.changes.push(change);
        outcome.changes += 1;
        let name = self
            .state
            .group_names
            .get(key)
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        self.audit(batch, device, actor, action, format!("{key}{name}"), reason);
    }

    fn device_report(
        &mut self,
        report: &DeviceReport,
        actor: &str,
        reason: &str,
        batch: &mut Batch,
        outcome: &mut Outcome,
    ) {
        let kind = report.kind.unwrap_or(DeviceKind::Computer);
        let device = self.jamf_device(kind, report.jamf_id, batch);
        if let Some(name) = &report.name {
            if &*self.state.devices[&device].label != name.as_str() {
                let c = Change::SetLabel {
                    id: device,
                    label: name.clone(),
                };
                self.state.apply(&c);
                batch.changes.push(c);
            }
        }
        let mut aliases = Vec::new();
        aliases.extend(
            report
                .serial
                .iter()
                .map(|v| Alias::new(AliasKind::Serial, v)),
        );
        aliases.extend(report.udid.iter().map(|v| Alias::new(AliasKind::Udid, v)));
        aliases.extend(
            report
                .management_id
                .iter()
                .map(|v| Alias::new(AliasKind::ManagementId, v)),
        );
        aliases.extend(
            report
                .mac_addresses
                .iter()
                .map(|v| Alias::new(AliasKind::Mac, v)),
        );
        for alias in aliases {
            if alias.value.is_empty() || self.state.device_by_alias(&alias) == Some(device) {
                continue;
            }
            if let Some(old) = self.state.device_by_alias(&alias) {
                self.audit(
                    batch,
                    old,
                    actor,
                    "alias_moved",
                    format!("{} to device#{}", alias.key(), device.0),
                    reason,
                );
            }
            let value = alias.value.clone();
            let c = Change::SetAlias { alias, device };
            self.state.apply(&c);
            batch.changes.push(c);
            outcome.changes += 1;
            self.adopt_named(&value, device, actor, reason, batch);
        }
        if let Some(addr) = report.own_ip {
            self.bind(addr, device, actor, reason, batch, outcome);
        }
    }

    /// Config names devices by a bare value (groups.toml, identity.static, devices.critical)
    /// before the MDM reports them. When the MDM reports a device with that serial or UDID, it
    /// is the same machine: the name, a responder's hold and the critical mark move to it, so
    /// that one value never names two devices.
    fn adopt_named(
        &mut self,
        value: &str,
        device: DeviceId,
        actor: &str,
        reason: &str,
        batch: &mut Batch,
    ) {
        let named = Alias::new(AliasKind::Name, value);
        let Some(old) = self.state.device_by_alias(&named).filter(|&d| d != device) else {
            return;
        };
        let (hold, critical) = {
            let d = &self.state.devices[&old];
            (d.hold.as_deref().cloned(), d.critical)
        };
        let mut changes = vec![Change::SetAlias {
            alias: named,
            device,
        }];
        if hold.is_some() && self.state.devices[&device].hold.is_none() {
            changes.push(Change::SetHold { device, hold });
            changes.push(Change::SetHold {
                device: old,
                hold: None,
            });
        }
        if critical {
            changes.push(Change::SetCritical {
                device,
                critical: true,
            });
        }
        for c in changes {
            self.state.apply(&c);
            batch.changes.push(c);
        }
        self.audit(
            batch,
            old,
            actor,
            "merged",
            format!("into device#{}", device.0),
            reason,
        );
    }

    /// Binds `addr` to `device`, moving it from whichever device had it (DHCP gave it away).
    fn bind(
        &mut self,
        addr: IpAddr,
        device: DeviceId,
        actor: &str,
        reason: &str,
        batch: &mut Batch,
        outcome: &mut Outcome,
    ) {
        if addr.is_unspecified() || self.shared.longest(addr).is_some() {
            return;
        }
        let now = epoch_secs();
        let previous = self.state.bindings.get(&addr).copied();
        // A check-in that changes nothing refreshes the binding at most hourly, so that routine
        // check-ins do not each commit and publish.
        if previous.is_some_and(|b| b.device == device && now - b.seen < BINDING_REFRESH) {
            return;
        }
        let c = Change::Bind {
            addr,
            device,
            seen: now,
        };
        self.state.apply(&c);
        batch.changes.push(c);
        if previous.is_some_and(|b| b.device == device) {
            return;
        }
        outcome.changes += 1;
        if let Some(b) = previous {
            let detail = format!("{addr} to device#{}", device.0);
            self.audit(batch, b.device, actor, "binding_moved", detail, reason);
        }
        self.audit(
            batch,
            device,
            actor,
            "binding_added",
            addr.to_string(),
            reason,
        );
    }

    pub(super) fn lapse_bindings(&mut self, batch: &mut Batch) {
        let cutoff = epoch_secs() - self.config.binding_lifetime.as_secs() as i64;
        let lapsed: Vec<(IpAddr, DeviceId)> = self
            .state
            .bindings
            .iter()
            .filter(|(_, b)| b.seen < cutoff)
            .map(|(a, b)| (a, b.device))
            .collect();
        for (addr, device) in lapsed {
            let c = Change::Unbind { addr };
            self.state.apply(&c);
            self.view.apply(&self.parts, &self.state, &c);
            batch.changes.push(c);
            self.audit(
                batch,
                device,
                "cordon",
                "binding_lapsed",
                addr.to_string(),
                "not refreshed within identity.binding_lifetime_s",
            );
        }
    }

    fn reconcile(
        &mut self,
        kind: DeviceKind,
        group_id: i64,
        members: &[i64],
        batch: &mut Batch,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        let key = group_key(kind, group_id);
        let reason = "reconcile";
        for &jamf_id in members {
            let device = self.jamf_device(kind, jamf_id, batch);
            let before = outcome.changes;
            self.set_membership(device, &key, true, "jamf", reason, batch, &mut outcome);
            outcome.drift_added += outcome.changes - before;
        }
        let listed: std::collections::BTreeSet<Alias> =
            members.iter().map(|m| Alias::jamf(kind, *m)).collect();
        let listed = |a: AliasRef<'_>| {
            listed.contains(&Alias {
                kind: a.kind,
                value: a.value.into(),
            })
        };
        let stale: Vec<DeviceId> = self
            .state
            .devices
            .iter()
            .filter(|(_, d)| d.memberships.contains(&key) && !d.aliases.iter().any(listed))
            .map(|(id, _)| id)
            .collect();
        for device in stale {
            let before = outcome.changes;
            self.set_membership(device, &key, false, "jamf", reason, batch, &mut outcome);
            outcome.drift_removed += outcome.changes - before;
        }
        outcome
    }

    pub(super) fn device(&self, text: &str) -> Result<DeviceId, ApplyError> {
        self.state
            .find(text)
            .ok_or_else(|| ApplyError::UnknownDevice(text.to_string()))
    }

    fn set_groups(
        &mut self,
        text: &str,
        groups: Vec<String>,
        actor: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let mut outcome = Outcome::default();
        let device = match self.state.find(text) {
            Some(d) => d,
            None => self.create(batch, &Alias::parse(text), text),
        };
        let current = self.state.devices[&device].memberships.clone();
        for key in current.iter().filter(|k| !groups.contains(k)) {
            self.set_membership(
                device,
                key,
                false,
                actor,
                "set by the API",
                batch,
                &mut outcome,
            );
        }
        for key in &groups {
            self.set_membership(
                device,
                key,
                true,
                actor,
                "set by the API",
                batch,
                &mut outcome,
            );
        }
        outcome.device = Some(device);
        Ok(outcome)
    }

    fn isolate(
        &mut self,
        text: &str,
        reason: String,
        ticket: String,
        actor: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let device = self.device(text)?;
        let hold = Hold {
            reason,
            ticket,
            by: actor.to_string(),
            at: epoch_secs(),
        };
        if self.state.devices[&device].hold.is_some() {
            return Ok(Outcome {
                device: Some(device),
                ..Outcome::default()
            });
        }
        if self.is_critical(device) {
            self.approvals
                .retain(|_, p| epoch_secs() - p.hold.at < APPROVAL_LIFETIME);
            // Random, so that an id from before a restart never approves a new request.
            let id = rand::random::<u32>() as u64;
            self.approvals.insert(
                id,
                Pending {
                    device,
                    hold: hold.clone(),
                },
            );
            self.audit(
                batch,
                device,
                actor,
                "isolation_requested",
                format!("approval {id}"),
                &hold.reason,
            );
            return Err(ApplyError::NeedsApproval(id));
        }
        Ok(self.hold(device, hold, batch))
    }

    /// Marked critical by the API, or named in `devices.critical` by any of its aliases (config
    /// may name the device by a serial that a Jamf-created device carries).
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
        let mut outcome = Outcome {
            device: Some(device),
            ..Outcome::default()
        };
        if self.state.devices[&device].hold.is_some() {
            return outcome;
        }
        let detail = format!("ticket {}", hold.ticket);
        let (actor, reason) = (hold.by.clone(), hold.reason.clone());
        batch.changes.push(Change::SetHold {
            device,
            hold: Some(hold),
        });
        outcome.changes += 1;
        self.audit(batch, device, &actor, "isolated", detail, &reason);
        outcome
    }

    fn release(
        &mut self,
        text: &str,
        actor: &str,
        reason: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let device = self.device(text)?;
        let mut outcome = Outcome {
            device: Some(device),
            ..Outcome::default()
        };
        if self.state.devices[&device].hold.is_some() {
            batch.changes.push(Change::SetHold { device, hold: None });
            outcome.changes += 1;
            self.audit(batch, device, actor, "released", String::new(), reason);
        }
        Ok(outcome)
    }

    fn approve(
        &mut self,
        approval: u64,
        actor: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let pending = self
            .approvals
            .get(&approval)
            .filter(|p| epoch_secs() - p.hold.at < APPROVAL_LIFETIME)
            .ok_or(ApplyError::UnknownApproval(approval))?;
        if pending.hold.by == actor {
            return Err(ApplyError::SameApprover);
        }
        let pending = self.approvals.remove(&approval).expect("checked above");
        self.audit(
            batch,
            pending.device,
            actor,
            "isolation_approved",
            format!("approval {approval}"),
            &pending.hold.reason,
        );
        Ok(self.hold(pending.device, pending.hold, batch))
    }

    fn set_critical(
        &mut self,
        text: &str,
        critical: bool,
        actor: &str,
        batch: &mut Batch,
    ) -> Result<Outcome, ApplyError> {
        let device = self.device(text)?;
        let mut outcome = Outcome {
            device: Some(device),
            ..Outcome::default()
        };
        if self.state.devices[&device].critical != critical {
            batch.changes.push(Change::SetCritical { device, critical });
            outcome.changes += 1;
            self.audit(
                batch,
                device,
                actor,
                if critical {
                    "marked_critical"
                } else {
                    "unmarked_critical"
                },
                String::new(),
                "set by the API",
            );
        }
        Ok(outcome)
    }
}
