//! Joins a checked policy set with the devices and bindings that config names into a Snapshot.

use std::sync::Arc;

use ipnet::IpNet;

use super::cidr::PrefixTable;
use super::file::PolicySet;
use super::snapshot::{DeviceId, Devices, Group, GroupIdx, Snapshot};

/// A source network bound to a device by config (`identity.static`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticBinding {
    pub net: IpNet,
    /// Any alias of the device.
    pub device: String,
}

/// Builds snapshot `version` from `set` and the static bindings.
pub fn build_snapshot(set: &PolicySet, statics: &[StaticBinding], version: u64) -> Snapshot {
    let groups: Vec<Group> = set
        .groups
        .iter()
        .map(|g| Group {
            name: g.name.clone(),
            priority: g.priority,
            policy: g.policy.clone(),
            uem_groups: g.uem_groups.clone(),
        })
        .collect();
    let default_group = set
        .groups
        .iter()
        .position(|g| g.name == set.default_group)
        .map(|i| GroupIdx(i as u16))
        .unwrap_or(GroupIdx(groups.len().saturating_sub(1) as u16));

    let mut devices = Devices::default();
    let mut client_groups = PrefixTable::new();
    for (i, g) in set.groups.iter().enumerate() {
        let idx = GroupIdx(i as u16);
        for net in &g.clients {
            client_groups.insert_with(*net, idx, |old, new| *old = old.stricter(new));
        }
        for alias in &g.devices {
            let id = device_for(&mut devices, alias);
            let group = devices.groups.entry(id).or_insert(idx);
            *group = group.stricter(idx);
        }
    }
    let mut static_devices = PrefixTable::new();
    for s in statics {
        let id = device_for(&mut devices, &s.device);
        static_devices.insert_with(s.net, id, |old, new| *old = new);
    }
    Snapshot {
        version,
        groups,
        default_group,
        taxonomy: set.taxonomy.clone(),
        categories: set.categories.clone(),
        devices: Arc::new(devices),
        client_groups: Arc::new(client_groups),
        static_devices: Arc::new(static_devices),
    }
}

/// The device an alias names, numbered on first sight.
fn device_for(devices: &mut Devices, alias: &str) -> DeviceId {
    let key: Box<str> = alias.to_ascii_lowercase().into();
    let next = DeviceId(devices.aliases.len() as u64 + 1);
    let id = *devices.aliases.entry(key).or_insert(next);
    devices.labels.entry(id).or_insert_with(|| alias.into());
    id
}
