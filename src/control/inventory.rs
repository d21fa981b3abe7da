//! What sources report about devices: the device a source's reference names (created on first
//! sight), its label, its aliases, the address it was seen at, and the bindings that lapse or go
//! with an unenrolment.

use std::net::IpAddr;

use super::command::{DeviceRef, DeviceReport, Outcome, Source};
use super::state::{Alias, AliasKind, Change};
use super::writer::{Batch, Writer};
use crate::policy::DeviceId;

/// How often an unchanged binding's last-seen time is written.
const BINDING_REFRESH: i64 = 3600;

impl Writer {
    /// Creates a device known by `alias`, labelled `label`.
    pub(super) fn create(&mut self, batch: &mut Batch, alias: &Alias, label: &str) -> DeviceId {
        let device = self.state.allocate();
        let label = label.to_string();
        self.emit(batch, Change::DeviceAdded { device, label });
        let alias = alias.clone();
        self.emit(batch, Change::AliasSeen { alias, device });
        device
    }

    /// The device a source's reference names, created on first sight. A bare value (a
    /// `name:` alias) names whichever device has it under any kind, as the API reads it.
    pub(super) fn device_for(&mut self, reference: &DeviceRef, batch: &mut Batch) -> DeviceId {
        match self.state.device_named(&reference.alias) {
            Some(id) => id,
            None => self.create(batch, &reference.alias, &reference.label),
        }
    }

    pub(super) fn report(
        &mut self,
        report: &DeviceReport,
        source: &Source,
        batch: &mut Batch,
        outcome: &mut Outcome,
    ) {
        let device = self.device_for(&report.device, batch);
        if let Some(name) = &report.name {
            if &*self.state.devices[&device].label != name.as_str() {
                let label = name.clone();
                self.emit(batch, Change::LabelSet { device, label });
            }
        }
        for alias in &report.aliases {
            if alias.value.is_empty() || self.state.device_by_alias(alias) == Some(device) {
                continue;
            }
            if let Some(old) = self.state.device_by_alias(alias) {
                let detail = format!("{} to {device}", alias.key());
                let (actor, reason) = (&source.actor, &source.reason);
                self.audit(batch, old, actor, "alias_moved", detail, reason);
            }
            let alias = alias.clone();
            let value = alias.value.clone();
            self.emit(batch, Change::AliasSeen { alias, device });
            outcome.changes += 1;
            self.adopt_named(&value, device, source, batch);
        }
        if let Some(addr) = report.address {
            self.bind(addr, device, source, batch, outcome);
        }
    }

    /// Config names devices by a bare value (groups.toml, identity.static, devices.critical)
    /// before the MDM reports them, and so may a source that names devices by a bare value (a
    /// Shared Signals subject, the API). When the MDM reports a device with that serial or UDID,
    /// it is the same machine: the name, a responder's hold, the critical mark and the UEM
    /// groups the named device is in move to it, so that one value never names two devices.
    fn adopt_named(&mut self, value: &str, device: DeviceId, source: &Source, batch: &mut Batch) {
        let named = Alias::new(AliasKind::Name, value);
        let Some(old) = self.state.device_by_alias(&named).filter(|&d| d != device) else {
            return;
        };
        let (hold, critical, groups) = {
            let d = &self.state.devices[&old];
            let groups: Vec<String> = d.memberships.iter().cloned().collect();
            (d.hold.as_deref().cloned(), d.critical, groups)
        };
        self.emit(
            batch,
            Change::AliasSeen {
                alias: named,
                device,
            },
        );
        if let Some(hold) = hold.filter(|_| self.state.devices[&device].hold.is_none()) {
            self.emit(batch, Change::HoldPlaced { device, hold });
            self.emit(batch, Change::HoldReleased { device: old });
        }
        if critical {
            self.emit(
                batch,
                Change::CriticalSet {
                    device,
                    critical: true,
                },
            );
        }
        for group in groups {
            if !self.state.devices[&device].memberships.contains(&group) {
                let change = Change::MembershipSet {
                    device,
                    group: group.clone(),
                };
                self.emit(batch, change);
            }
            self.emit(batch, Change::MembershipUnset { device: old, group });
        }
        let detail = format!("into {device}");
        self.audit(batch, old, &source.actor, "merged", detail, &source.reason);
    }

    /// Binds `addr` to `device`, moving it from whichever device had it (DHCP gave it away).
    fn bind(
        &mut self,
        addr: IpAddr,
        device: DeviceId,
        source: &Source,
        batch: &mut Batch,
        outcome: &mut Outcome,
    ) {
        // Bindings are kept in IPv4 form, as queries are looked up: a mapped address from any
        // adapter binds the IPv4 client it names.
        let addr = addr.to_canonical();
        if addr.is_unspecified() || self.shared.longest(addr).is_some() {
            return;
        }
        let at = self.now();
        let previous = self.state.bindings.get(&addr);
        // A check-in that changes nothing refreshes the binding at most hourly, so that routine
        // check-ins do not each commit and publish.
        if previous.is_some_and(|b| b.device == device && at - b.seen < BINDING_REFRESH) {
            return;
        }
        self.emit(batch, Change::BindingSeen { addr, device, at });
        if previous.is_some_and(|b| b.device == device) {
            return;
        }
        outcome.changes += 1;
        let (actor, reason) = (&source.actor, &source.reason);
        if let Some(b) = previous {
            let detail = format!("{addr} to {device}");
            self.audit(batch, b.device, actor, "binding_moved", detail, reason);
        }
        let detail = addr.to_string();
        self.audit(batch, device, actor, "binding_added", detail, reason);
    }

    /// Drops the bindings not refreshed within their lifetime.
    pub(super) fn lapse_bindings(&mut self, batch: &mut Batch) {
        let cutoff = self.now() - self.config.binding_lifetime.as_secs() as i64;
        let lapsed: Vec<(IpAddr, DeviceId)> = self
            .state
            .bindings
            .iter()
            .filter(|(_, b)| b.seen < cutoff)
            .map(|(a, b)| (a, b.device))
            .collect();
        let source = Source::new("cordon", "not refreshed within identity.binding_lifetime_s");
        for (addr, device) in lapsed {
            self.unbind(addr, device, "binding_lapsed", &source, batch);
        }
    }

    /// A device that left management keeps no address: the next holder of it is someone else.
    pub(super) fn unenrolled(
        &mut self,
        alias: &Alias,
        source: &Source,
        batch: &mut Batch,
    ) -> Outcome {
        let Some(device) = self.state.device_by_alias(alias) else {
            return Outcome::default();
        };
        let addresses: Vec<IpAddr> = self.state.devices[&device]
            .addresses
            .iter()
            .copied()
            .collect();
        for &addr in &addresses {
            self.unbind(addr, device, "binding_dropped", source, batch);
        }
        Outcome {
            changes: addresses.len(),
            ..Outcome::of(device)
        }
    }

    fn unbind(
        &mut self,
        addr: IpAddr,
        device: DeviceId,
        action: &str,
        source: &Source,
        batch: &mut Batch,
    ) {
        self.emit(batch, Change::BindingLapsed { addr });
        let detail = addr.to_string();
        self.audit(batch, device, &source.actor, action, detail, &source.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{computer, Harness};
    use super::super::Request;
    use super::*;

    fn check_in(id: u32, addr: &str) -> Request {
        Request::Report {
            report: DeviceReport {
                device: computer(id),
                name: Some(format!("MAC-{id}")),
                aliases: vec![Alias::new(AliasKind::Serial, &format!("C02SER{id}"))],
                address: Some(addr.parse().unwrap()),
            },
            source: Source::new("test", "check-in"),
        }
    }

    fn bound(h: &Harness, addr: &str) -> Option<DeviceId> {
        h.published.get().devices.bound(&addr.parse().unwrap())
    }

    #[tokio::test]
    async fn an_unchanged_binding_is_written_again_only_after_an_hour() {
        let h = Harness::start().await;
        let first = h.control.apply(check_in(1, "10.1.0.1")).await.unwrap();
        assert!(bound(&h, "10.1.0.1").is_some());
        h.clock.advance(3599);
        let again = h.control.apply(check_in(1, "10.1.0.1")).await.unwrap();
        assert_eq!(
            again.version, first.version,
            "a routine check-in publishes nothing"
        );
        h.clock.advance(2);
        let refreshed = h.control.apply(check_in(1, "10.1.0.1")).await.unwrap();
        assert_eq!(refreshed.changes, 0, "a refresh is no change a caller sees");
        assert_eq!(refreshed.version, first.version + 1, "but it is written");
    }

    #[tokio::test]
    async fn a_binding_lapses_after_its_lifetime_unless_refreshed() {
        let h = Harness::start().await;
        h.control.apply(check_in(1, "10.1.0.1")).await.unwrap();
        h.control.apply(check_in(2, "10.1.0.2")).await.unwrap();
        h.clock.advance(23 * 3600);
        h.control.apply(check_in(2, "10.1.0.2")).await.unwrap();
        h.control.tick().await.unwrap();
        assert!(
            bound(&h, "10.1.0.1").is_some(),
            "23 h is within the lifetime"
        );
        h.clock.advance(3600 + 1);
        h.control.tick().await.unwrap();
        assert_eq!(bound(&h, "10.1.0.1"), None, "24 h without a check-in");
        assert!(bound(&h, "10.1.0.2").is_some(), "refreshed an hour later");
    }

    #[tokio::test]
    async fn an_address_in_a_shared_network_is_never_bound_and_an_unenrolled_device_keeps_none() {
        let h = Harness::start().await;
        h.control.apply(check_in(1, "192.0.2.7")).await.unwrap();
        assert_eq!(bound(&h, "192.0.2.7"), None);
        h.control.apply(check_in(1, "10.1.0.1")).await.unwrap();
        let gone = Request::Unenrolled {
            device: computer(1).alias,
            source: Source::new("jamf", "unenrolled"),
        };
        let outcome = h.control.apply(gone).await.unwrap();
        assert_eq!(outcome.changes, 1);
        assert_eq!(bound(&h, "10.1.0.1"), None);
    }

    #[tokio::test]
    async fn a_device_named_by_a_bare_value_brings_its_groups_when_the_mdm_reports_it() {
        let h = Harness::start().await;
        // A source names the Mac by its serial alone, before the MDM knows it.
        let named = DeviceRef {
            alias: Alias::parse("C02SER1"),
            label: "C02SER1".into(),
        };
        let group = super::super::UemGroup {
            key: "jamf:computer-group:42".into(),
            name: None,
        };
        h.members(group, vec![named], vec![]).await;
        h.control.apply(check_in(1, "10.1.0.1")).await.unwrap();
        let mac = bound(&h, "10.1.0.1").unwrap();
        assert_eq!(
            h.group_of(mac),
            "restricted",
            "the membership moved with the name"
        );
        assert_eq!(
            h.members_of("jamf:computer-group:42").await,
            ["jamf-computer:1"]
        );
    }

    #[tokio::test]
    async fn an_address_moves_to_the_device_that_reports_it_last() {
        let h = Harness::start().await;
        h.control.apply(check_in(1, "10.1.0.1")).await.unwrap();
        let one = bound(&h, "10.1.0.1").unwrap();
        h.control.apply(check_in(2, "10.1.0.1")).await.unwrap();
        let two = bound(&h, "10.1.0.1").unwrap();
        assert_ne!(one, two);
    }
}
