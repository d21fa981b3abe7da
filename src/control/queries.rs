//! Read-only questions about devices, answered from the writer's state and the store.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::alias::shown_key;
use super::command::{ApplyError, ApprovalInfo, DeviceInfo, Query, QueryReply};
use super::state::{Hold, APPROVAL_LIFETIME};
use super::view::group_of;
use super::writer::Writer;
use crate::policy::build::names_group;
use crate::policy::DeviceId;

impl Writer {
    pub(super) async fn answer(&mut self, query: Query) -> Result<QueryReply, ApplyError> {
        // A state that may hold what failed to commit answers nothing.
        self.recover().await?;
        match query {
            Query::Device(text) => Ok(QueryReply::Device(Box::new(self.info(self.device(&text)?)))),
            Query::Timeline(text, limit) => {
                let device = self.device(&text)?;
                let events = self
                    .store
                    .timeline(device, limit)
                    .await
                    .map_err(|e| self.store_failed(&e))?;
                Ok(QueryReply::Timeline(events))
            }
            Query::Isolations => {
                let iso = self.parts.isolation_group;
                let list = self
                    .view
                    .devices
                    .groups
                    .iter()
                    .filter(|(_, g)| **g <= iso)
                    .map(|(d, _)| self.info(*d))
                    .chain(self.state.waiting.iter().map(|(k, h)| self.waiting(k, h)))
                    .collect();
                Ok(QueryReply::Devices(list))
            }
            Query::Traced => {
                let iso = self.parts.isolation_group;
                let list = self
                    .view
                    .devices
                    .watched
                    .keys()
                    .filter(|d| self.view.devices.groups.get(*d).is_none_or(|g| *g > iso))
                    .map(|d| self.info(*d))
                    .collect();
                Ok(QueryReply::Devices(list))
            }
            Query::Search(text, limit) => Ok(QueryReply::Devices(
                self.search(&text, limit)
                    .into_iter()
                    .map(|d| self.info(d))
                    .collect(),
            )),
            Query::Approvals => Ok(QueryReply::Approvals(self.approvals())),
            Query::MappedGroups => {
                let mut keys = BTreeSet::new();
                for mapped in self.parts.groups.iter().flat_map(|g| &g.uem_groups) {
                    match self.named(mapped) {
                        Some(key) => keys.insert(key.to_string()),
                        None => keys.insert(mapped.clone()),
                    };
                }
                Ok(QueryReply::Groups(keys.into_iter().collect()))
            }
        }
    }

    /// The devices `text` names exactly (an alias, `device#N`, a bound address), then those
    /// whose label holds it, ASCII case aside: a scan, which a million devices take in
    /// milliseconds.
    fn search(&self, text: &str, limit: usize) -> Vec<DeviceId> {
        let text = text.trim();
        let mut found: Vec<DeviceId> = Vec::new();
        let exact = self.state.find(text).or_else(|| {
            let addr = text.parse::<IpAddr>().ok()?;
            Some(self.state.bindings.get(&addr)?.device)
        });
        found.extend(exact);
        let needle = text.as_bytes();
        if needle.is_empty() {
            return found;
        }
        // ASCII case folding, without an allocation per device.
        let holds = |label: &str| {
            label
                .as_bytes()
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle))
        };
        for (id, device) in self.state.devices.iter() {
            if found.len() >= limit {
                break;
            }
            if Some(id) != exact && holds(&device.label) {
                found.push(id);
            }
        }
        found.truncate(limit);
        found
    }

    /// The approvals pending and not lapsed, oldest first.
    fn approvals(&self) -> Vec<ApprovalInfo> {
        let now = self.now();
        let mut list: Vec<ApprovalInfo> = self
            .state
            .approvals
            .iter()
            .filter(|(_, p)| now - p.hold.at < APPROVAL_LIFETIME)
            .map(|(id, p)| ApprovalInfo {
                id: *id,
                device: p.device.to_string(),
                label: self
                    .state
                    .devices
                    .get(&p.device)
                    .map_or_else(String::new, |d| d.label.to_string()),
                hold: p.hold.clone(),
                lapses: p.hold.at + APPROVAL_LIFETIME,
            })
            .collect();
        list.sort_by_key(|a| a.hold.at);
        list
    }

    /// The key of the UEM group that `mapped` names by name, when the MDM has told its name.
    fn named(&self, mapped: &str) -> Option<&str> {
        self.state
            .group_names
            .iter()
            .find(|(key, name)| names_group(mapped, key, name))
            .map(|(key, _)| key.as_str())
    }

    fn info(&self, device: DeviceId) -> DeviceInfo {
        let d = &self.state.devices[&device];
        let group = group_of(&self.parts, &self.state, device).unwrap_or(self.parts.default_group);
        let g = &self.parts.groups[group.index()];
        DeviceInfo {
            id: device.to_string(),
            label: d.label.to_string(),
            aliases: d.aliases.iter().map(|a| a.shown()).collect(),
            uem_groups: d
                .memberships
                .iter()
                .map(|k| match self.state.group_names.get(k) {
                    Some(n) => format!("{k} ({n})"),
                    None => k.clone(),
                })
                .collect(),
            group: g.name.clone(),
            policy: g.policy.name.clone(),
            bindings: self
                .state
                .addresses_of(device)
                .iter()
                .map(IpAddr::to_string)
                .collect(),
            critical: d.critical,
            isolated: group <= self.parts.isolation_group,
            isolation: d.hold.as_deref().cloned(),
            probation_until: d.probation,
            watch: d.watch.as_deref().cloned(),
            traced: d.watched() || group <= self.parts.isolation_group,
            status: None,
        }
    }

    /// A hold waiting for a device not seen yet, as the isolations list shows it.
    fn waiting(&self, key: &str, hold: &Hold) -> DeviceInfo {
        let g = &self.parts.groups[self.parts.isolation_group.index()];
        let shown = shown_key(key);
        DeviceInfo {
            id: shown.clone(),
            label: shown.clone(),
            aliases: vec![shown],
            uem_groups: Vec::new(),
            group: g.name.clone(),
            policy: g.policy.name.clone(),
            bindings: Vec::new(),
            critical: false,
            isolated: false,
            isolation: Some(hold.clone()),
            probation_until: None,
            watch: None,
            traced: false,
            status: Some("waiting for device"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::command::{DeviceReport, Query, QueryReply, Request, Source, UemGroup};
    use super::super::state::{Alias, AliasKind};
    use super::super::testing::{computer, Harness};

    async fn mapped(h: &Harness) -> Vec<String> {
        match h.control.query(Query::MappedGroups).await.unwrap() {
            QueryReply::Groups(keys) => keys,
            other => panic!("{other:?}"),
        }
    }

    async fn search(h: &Harness, text: &str) -> Vec<String> {
        match h
            .control
            .query(Query::Search(text.into(), 10))
            .await
            .unwrap()
        {
            QueryReply::Devices(list) => list.into_iter().map(|d| d.label).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_search_finds_by_alias_address_or_part_of_the_name_in_any_case() {
        let h = Harness::start().await;
        for (id, name, serial, ip) in [
            (1, "FIN-MBP-0142", "C02AAA", "10.0.0.1"),
            (2, "fin-mbp-0007", "C02BBB", "10.0.0.2"),
            (3, "HR-iMac", "C02CCC", "10.0.0.3"),
        ] {
            let report = Request::Report {
                report: DeviceReport {
                    device: computer(id),
                    name: Some(name.into()),
                    aliases: vec![Alias::new(AliasKind::Serial, serial)],
                    address: Some(ip.parse().unwrap()),
                },
                source: Source::new("test", "check-in"),
            };
            h.control.apply(report).await.unwrap();
        }
        assert_eq!(search(&h, "c02ccc").await, ["HR-iMac"]);
        assert_eq!(search(&h, "10.0.0.2").await, ["fin-mbp-0007"]);
        assert_eq!(search(&h, "3").await, ["HR-iMac"], "jamf id 3 first");
        assert_eq!(
            search(&h, "Fin-MBP").await,
            ["FIN-MBP-0142", "fin-mbp-0007"]
        );
        assert!(search(&h, "nothing-like-it").await.is_empty());
    }

    #[tokio::test]
    async fn a_group_mapped_by_name_is_named_by_its_key_once_its_name_is_known() {
        let h = Harness::start().await;
        let before = mapped(&h).await;
        assert!(
            before.contains(&"jamf:computer-group:42".to_string()),
            "{before:?}"
        );
        let by_name = "jamf:computer-group-name:Jamf Protect - High".to_string();
        assert!(before.contains(&by_name), "{before:?}");
        let group = UemGroup {
            key: "jamf:computer-group:77".into(),
            name: Some("Jamf Protect - High".into()),
        };
        h.members(group, vec![computer(1)], vec![]).await;
        let after = mapped(&h).await;
        assert!(
            after.contains(&"jamf:computer-group:77".to_string()),
            "{after:?}"
        );
        assert!(!after.contains(&by_name), "{after:?}");
        // And its members are in the group it maps to.
        let device = h.published.get().devices.groups.len();
        assert_eq!(device, 1);
    }
}
