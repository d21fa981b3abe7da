//! UEM group memberships: devices joining and leaving a group as a source reports it, a group's
//! complete member list (reconciliation), and a device's groups set through the API.

use std::collections::BTreeSet;

use super::command::{DeviceRef, DeviceReport, Outcome, Source, UemGroup};
use super::state::{Alias, AliasKind, AliasRef, Change};
use super::writer::{Batch, Writer};
use crate::policy::DeviceId;

impl Writer {
    pub(super) fn members(
        &mut self,
        group: &UemGroup,
        joined: &[DeviceRef],
        left: &[Alias],
        reports: &[DeviceReport],
        source: &Source,
        batch: &mut Batch,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        if let Some(name) = &group.name {
            if self.state.group_names.get(&group.key) != Some(name) {
                let c = Change::GroupNamed {
                    group: group.key.clone(),
                    name: name.clone(),
                };
                self.emit(batch, c);
            }
        }
        for report in reports {
            self.report(report, source, batch, &mut outcome);
        }
        for member in joined {
            let device = self.device_for(member, batch);
            self.set_membership(device, &group.key, true, source, batch, &mut outcome);
            if !self.recognisable(device) {
                outcome.unrecognised.push(member.alias.clone());
            }
        }
        for alias in left {
            if let Some(device) = self.state.device_named(alias) {
                self.set_membership(device, &group.key, false, source, batch, &mut outcome);
            }
        }
        outcome
    }

    /// Whether DNS can tell this device apart: a bound address or an alias a client presents.
    fn recognisable(&self, device: DeviceId) -> bool {
        let d = &self.state.devices[&device];
        d.aliases.iter().any(|a| {
            matches!(
                a.kind,
                AliasKind::Serial | AliasKind::Udid | AliasKind::Token
            )
        }) || !d.addresses.is_empty()
    }

    pub(super) fn replace_members(
        &mut self,
        group: &str,
        members: &[DeviceRef],
        source: &Source,
        batch: &mut Batch,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        for member in members {
            let device = self.device_for(member, batch);
            self.set_membership(device, group, true, source, batch, &mut outcome);
        }
        let listed: BTreeSet<AliasRef<'_>> = members.iter().map(|m| m.alias.as_ref()).collect();
        let stale: Vec<DeviceId> = self
            .state
            .devices
            .iter()
            .filter(|(_, d)| {
                d.memberships.contains(group) && !d.aliases.iter().any(|a| listed.contains(&a))
            })
            .map(|(id, _)| id)
            .collect();
        for device in stale {
            self.set_membership(device, group, false, source, batch, &mut outcome);
        }
        outcome
    }

    pub(super) fn set_groups(
        &mut self,
        text: &str,
        groups: Vec<String>,
        actor: &str,
        batch: &mut Batch,
    ) -> Outcome {
        let source = Source::new(actor, "set by the API");
        let device = match self.state.find(text) {
            Some(d) => d,
            None => self.create(batch, &Alias::parse(text), text),
        };
        let mut outcome = Outcome::of(device);
        let current = self.state.devices[&device].memberships.clone();
        for key in current.iter().filter(|k| !groups.contains(k)) {
            self.set_membership(device, key, false, &source, batch, &mut outcome);
        }
        for key in &groups {
            self.set_membership(device, key, true, &source, batch, &mut outcome);
        }
        outcome
    }

    fn set_membership(
        &mut self,
        device: DeviceId,
        key: &str,
        member: bool,
        source: &Source,
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
        let (device, group) = (device, key.to_string());
        let (change, action) = if member {
            outcome.joined += 1;
            (Change::MembershipSet { device, group }, "membership_added")
        } else {
            outcome.left += 1;
            (
                Change::MembershipUnset { device, group },
                "membership_removed",
            )
        };
        self.emit(batch, change);
        outcome.changes += 1;
        let name = self
            .state
            .group_names
            .get(key)
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let detail = format!("{key}{name}");
        self.audit(batch, device, &source.actor, action, detail, &source.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{computer, Harness};
    use super::*;

    fn key() -> UemGroup {
        UemGroup {
            key: "jamf:computer-group:42".into(),
            name: Some("Isolate".into()),
        }
    }

    #[tokio::test]
    async fn joining_twice_is_one_change_and_leaving_an_unknown_device_is_none() {
        let h = Harness::start().await;
        let joined = vec![computer(7)];
        let first = h.members(key(), joined.clone(), vec![]).await;
        assert_eq!((first.changes, first.joined), (1, 1));
        assert_eq!(first.unrecognised, [computer(7).alias]);
        let again = h.members(key(), joined, vec![]).await;
        assert_eq!(again.changes, 0);
        assert_eq!(again.version, first.version, "nothing to publish");
        let gone = h.members(key(), vec![], vec![computer(8).alias]).await;
        assert_eq!(gone.changes, 0);
    }

    #[tokio::test]
    async fn a_bare_value_names_the_device_that_has_it_under_any_kind() {
        let h = Harness::start().await;
        let set = super::super::Request::SetGroups {
            device: "serial:C02ZK1ABMD6T".into(),
            groups: vec![],
            actor: "admin".into(),
        };
        let device = h.control.apply(set).await.unwrap().device.unwrap();
        let bare = DeviceRef {
            alias: Alias::parse("C02ZK1ABMD6T"),
            label: "C02ZK1ABMD6T".into(),
        };
        let joined = h.members(key(), vec![bare.clone()], vec![]).await;
        assert_eq!(joined.changes, 1, "no second device");
        assert_eq!(h.group_of(device), "restricted");
        let left = h.members(key(), vec![], vec![bare.alias]).await;
        assert_eq!(left.changes, 1);
        assert_eq!(h.group_of(device), "standard");
    }

    #[tokio::test]
    async fn a_once_request_applies_once_also_after_a_restart_until_its_time() {
        use super::super::{ApplyError, Clock, Request};
        let h = Harness::start().await;
        let until = h.clock.now() + 100;
        let once = |id: u32| Request::Once {
            key: "issuer jti-1".into(),
            until,
            then: Some(Box::new(Request::Members {
                group: key(),
                joined: vec![computer(id)],
                left: vec![],
                reports: vec![],
                source: Source::new("test", "once"),
            })),
        };
        let first = h.control.apply(once(1)).await.unwrap();
        assert_eq!(first.changes, 1);
        let again = h.control.apply(once(2)).await;
        assert!(matches!(again, Err(ApplyError::Seen)), "{again:?}");
        assert_eq!(h.members_of(&key().key).await, ["jamf-computer:1"]);
        let alone = Request::Once {
            key: "issuer jti-2".into(),
            until,
            then: None,
        };
        let recorded = h.control.apply(alone).await.unwrap();
        assert_eq!(
            recorded.version, first.version,
            "a key alone publishes nothing"
        );

        let (dir, clock) = (h.dir, h.clock);
        drop(h.control);
        let h = Harness::start_in(dir, clock).await;
        let after_restart = h.control.apply(once(3)).await;
        assert!(
            matches!(after_restart, Err(ApplyError::Seen)),
            "{after_restart:?}"
        );
        h.clock.advance(101);
        h.control.apply(once(4)).await.unwrap();
        assert_eq!(
            h.members_of(&key().key).await,
            ["jamf-computer:1", "jamf-computer:4"]
        );
    }

    #[tokio::test]
    async fn a_complete_list_removes_whoever_it_does_not_name() {
        let h = Harness::start().await;
        h.members(key(), vec![computer(1), computer(2)], vec![])
            .await;
        let request = super::super::Request::ReplaceMembers {
            group: key().key,
            members: vec![computer(2), computer(3)],
            source: Source::new("jamf", "reconcile"),
        };
        let outcome = h.control.apply(request).await.unwrap();
        assert_eq!((outcome.joined, outcome.left), (1, 1));
        let members = h.members_of(&key().key).await;
        assert_eq!(members, ["jamf-computer:2", "jamf-computer:3"]);
    }
}
