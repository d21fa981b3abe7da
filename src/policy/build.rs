//! Snapshot assembly: the parts only a reload changes (groups, policies, categories, client
//! networks), compiled once and shared, joined with the device view of the moment.

use std::sync::Arc;

use ipnet::IpNet;

use super::cidr::PrefixTable;
use super::load::PolicySet;
use super::snapshot::{DeviceId, Devices, Group, GroupIdx, Snapshot};

/// A source network bound to a device by config (`identity.static`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticBinding {
    pub net: IpNet,
    /// Any alias of the device.
    pub device: String,
}

/// What a policy set contributes to every snapshot until the next reload.
#[derive(Debug, Clone)]
pub struct PolicyParts {
    pub set: PolicySet,
    pub groups: Arc<[Group]>,
    pub default_group: GroupIdx,
    pub isolation_group: GroupIdx,
    pub client_groups: Arc<PrefixTable<GroupIdx>>,
    /// Per group, the device aliases (lowercased) that groups.toml places there.
    pub placements: Vec<Vec<String>>,
}

impl PolicyParts {
    pub fn new(set: PolicySet) -> PolicyParts {
        let index = |name: &str| {
            set.groups
                .iter()
                .position(|g| g.name == name)
                .map(|i| GroupIdx(i as u16))
        };
        let last = GroupIdx(set.groups.len().saturating_sub(1) as u16);
        let default_group = index(&set.default_group).unwrap_or(last);
        let isolation_group = index(&set.isolation_group).unwrap_or(GroupIdx(0));
        let groups: Arc<[Group]> = set
            .groups
            .iter()
            .map(|g| Group {
                name: g.name.clone(),
                priority: g.priority,
                policy: g.policy.clone(),
                uem_groups: g.uem_groups.clone(),
            })
            .collect();
        let mut client_groups = PrefixTable::new();
        for (i, g) in set.groups.iter().enumerate() {
            for net in &g.clients {
                client_groups.insert_with(*net, GroupIdx(i as u16), |old, new| {
                    *old = old.stricter(new)
                });
            }
        }
        let placements = set
            .groups
            .iter()
            .map(|g| {
                g.devices
                    .iter()
                    .map(|d| d.trim().to_ascii_lowercase())
                    .collect()
            })
            .collect();
        PolicyParts {
            groups,
            default_group,
            isolation_group,
            client_groups: Arc::new(client_groups),
            placements,
            set,
        }
    }

    /// The stricter of the groups whose UEM-group list names one of `memberships` (by key, or
    /// by the name the MDM gave that group).
    pub fn group_for_memberships<'a>(
        &self,
        memberships: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Option<GroupIdx> {
        let mut best: Option<GroupIdx> = None;
        for (key, name) in memberships {
            for (i, g) in self.groups.iter().enumerate() {
                let named =
                    name.is_some_and(|n| g.uem_groups.iter().any(|u| names_group(u, key, n)));
                if g.uem_groups.iter().any(|u| u == key) || named {
                    let idx = GroupIdx(i as u16);
                    best = Some(best.map_or(idx, |b| b.stricter(idx)));
                }
            }
        }
        best
    }

    /// The stricter of the groups groups.toml places a device with these alias values in.
    pub fn group_for_placement<'a>(
        &self,
        alias_values: impl Iterator<Item = &'a str> + Clone,
    ) -> Option<GroupIdx> {
        self.placements
            .iter()
            .enumerate()
            .filter(|(_, aliases)| alias_values.clone().any(|v| aliases.iter().any(|a| a == v)))
            .map(|(i, _)| GroupIdx(i as u16))
            .min()
    }

    /// A snapshot of these parts with `devices`, and no feeds (the writer lays its feeds in).
    pub fn snapshot(
        &self,
        devices: Devices,
        static_devices: Arc<PrefixTable<DeviceId>>,
        version: u64,
    ) -> Snapshot {
        Snapshot {
            version,
            groups: self.groups.clone(),
            default_group: self.default_group,
            isolation_group: self.isolation_group,
            taxonomy: self.set.taxonomy.clone(),
            categories: self.set.categories.clone(),
            feeds: Arc::default(),
            devices,
            client_groups: self.client_groups.clone(),
            static_devices,
        }
    }
}

/// Whether `mapped`, an entry of a group's UEM-group list, names the UEM group `key` by the name
/// `name` its MDM gave it: a key `PREFIX:ID` is named as `PREFIX-name:NAME`, so
/// `jamf:computer-group:42` named "Isolate" is `jamf:computer-group-name:Isolate`.
pub fn names_group(mapped: &str, key: &str, name: &str) -> bool {
    let Some((prefix, _)) = key.rsplit_once(':') else {
        return false;
    };
    mapped
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix("-name:"))
        == Some(name)
}

#[cfg(test)]
mod tests {
    use super::names_group;

    #[test]
    fn a_group_is_named_by_its_prefix_and_name() {
        let key = "jamf:computer-group:42";
        assert!(names_group(
            "jamf:computer-group-name:Isolate",
            key,
            "Isolate"
        ));
        assert!(!names_group(
            "jamf:computer-group-name:Isolate",
            key,
            "Other"
        ));
        assert!(!names_group(
            "jamf:mobile-group-name:Isolate",
            key,
            "Isolate"
        ));
        assert!(!names_group("jamf:computer-group:42", key, "Isolate"));
        assert!(!names_group("x-name:Isolate", "nocolon", "Isolate"));
    }
}
