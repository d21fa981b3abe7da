//! Read-only questions about devices, answered from the writer's state and the store.

use std::net::IpAddr;

use super::commands::{ApplyError, DeviceInfo, Query, QueryReply};
use super::view::group_of;
use super::writer::{parse_group_key, Writer};
use crate::jamf::events::DeviceKind;
use crate::policy::DeviceId;

impl Writer {
    pub(super) fn answer(&self, query: Query) -> Result<QueryReply, ApplyError> {
        match query {
            Query::Device(text) => Ok(QueryReply::Device(Box::new(self.info(self.device(&text)?)))),
            Query::Timeline(text, limit) => {
                let device = self.device(&text)?;
                let events = self
                    .store
                    .timeline(device, limit)
                    .map_err(|e| ApplyError::Store(e.to_string()))?;
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
                    .collect();
                Ok(QueryReply::Devices(list))
            }
            Query::MappedGroups => {
                let mut groups = Vec::new();
                for g in self.parts.groups.iter() {
                    for u in &g.uem_groups {
                        groups.extend(parse_group_key(u).or_else(|| self.named_group(u)));
                    }
                }
                groups.sort();
                groups.dedup();
                Ok(QueryReply::Groups(groups))
            }
        }
    }

    /// `jamf:computer-group-name:X` as a group id, when the MDM has told us X's id.
    fn named_group(&self, uem: &str) -> Option<(DeviceKind, i64)> {
        let (prefix, kind) = if let Some(n) = uem.strip_prefix("jamf:computer-group-name:") {
            (n, "jamf:computer-group:")
        } else {
            (
                uem.strip_prefix("jamf:mobile-group-name:")?,
                "jamf:mobile-group:",
            )
        };
        self.state
            .group_names
            .iter()
            .find(|(k, name)| k.starts_with(kind) && name.as_str() == prefix)
            .and_then(|(k, _)| parse_group_key(k))
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
        }
    }
}
