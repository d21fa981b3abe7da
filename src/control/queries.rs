//! Read-only questions about devices, answered from the writer's state and the store.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::command::{ApplyError, DeviceInfo, Query, QueryReply};
use super::state::Hold;
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
            aliases: d.aliases.iter().map(|a| a.key()).collect(),
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
        DeviceInfo {
            id: key.to_string(),
            label: key.to_string(),
            aliases: vec![key.to_string()],
            uem_groups: Vec::new(),
            group: g.name.clone(),
            policy: g.policy.name.clone(),
            bindings: Vec::new(),
            critical: false,
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
    use super::super::command::{Query, QueryReply, UemGroup};
    use super::super::testing::{computer, Harness};

    async fn mapped(h: &Harness) -> Vec<String> {
        match h.control.query(Query::MappedGroups).await.unwrap() {
            QueryReply::Groups(keys) => keys,
            other => panic!("{other:?}"),
        }
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
