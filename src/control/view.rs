//! The device part of a snapshot, kept in step with the writer's state change by change, so
//! that a publish touches only what changed.

use std::sync::Arc;

use super::state::{Alias, Change, State};
use crate::policy::build::{PolicyParts, StaticBinding};
use crate::policy::cidr::PrefixTable;
use crate::policy::snapshot::{alias_key, DeviceId, Devices, GroupIdx};

/// The device view and the static bindings resolved against it.
#[derive(Clone)]
pub struct View {
    pub devices: Devices,
    pub statics: Arc<PrefixTable<DeviceId>>,
}

impl View {
    /// Builds the whole view: at start and after a reload.
    pub fn build(parts: &PolicyParts, state: &State, statics: &[StaticBinding]) -> View {
        let mut view = View {
            devices: Devices::default(),
            statics: Arc::new(PrefixTable::new()),
        };
        for id in state.devices.keys() {
            view.refresh_group(parts, state, id);
            view.refresh_watch(state, id);
        }
        // The big maps are built whole, as the shared base of every snapshot until they fold.
        let presentable = || state.all_aliases().filter(|(a, _)| a.kind.is_presentable());
        view.devices.aliases = presentable()
            .map(|(a, id)| (alias_key(a.value), id))
            .collect();
        view.devices.digests = presentable()
            .filter(|(a, _)| a.value.len() > crate::token::MAX_INLINE_ALIAS)
            .map(|(a, id)| (crate::token::alias_digest(a.value), id))
            .collect();
        view.devices.bindings = state
            .bindings
            .iter()
            .map(|(addr, b)| (addr, b.device.number()))
            .collect();
        let mut table = PrefixTable::new();
        for s in statics {
            if let Some(id) = state.find(&s.device) {
                table.insert_with(s.net, id, |old, new| *old = new);
            }
        }
        view.statics = Arc::new(table);
        view
    }

    /// Follows one change already applied to `state`; a device it moved into or out of
    /// isolation goes to `crossed`.
    pub fn apply(
        &mut self,
        parts: &PolicyParts,
        state: &State,
        change: &Change,
        crossed: &mut Vec<Crossing>,
    ) {
        match change {
            Change::DeviceAdded { device, label } | Change::LabelSet { device, label } => {
                if self.devices.groups.contains_key(device) {
                    self.devices.labels.insert(*device, label.as_str().into());
                }
            }
            Change::AliasSeen { alias, device } => {
                self.add_alias(alias, *device);
                // A placement in groups.toml may name the new alias.
                crossed.extend(self.refresh_group(parts, state, *device));
            }
            Change::MembershipSet { device, .. }
            | Change::MembershipUnset { device, .. }
            | Change::HoldPlaced { device, .. }
            | Change::HoldReleased { device } => {
                crossed.extend(self.refresh_group(parts, state, *device));
            }
            Change::GroupNamed { group, .. } => {
                let members: Vec<DeviceId> = state
                    .devices
                    .iter()
                    .filter(|(_, d)| d.memberships.contains(group))
                    .map(|(id, _)| id)
                    .collect();
                for id in members {
                    // A mapping by name takes effect now: its members may cross.
                    crossed.extend(self.refresh_group(parts, state, id));
                }
            }
            Change::BindingSeen { addr, device, .. } => {
                self.devices.bind(*addr, *device);
            }
            Change::BindingLapsed { addr } => {
                self.devices.bindings.remove(addr);
            }
            Change::ProbationStarted { device, .. }
            | Change::ProbationEnded { device }
            | Change::WatchSet { device, .. }
            | Change::WatchEnded { device } => self.refresh_watch(state, *device),
            Change::CriticalSet { .. }
            | Change::ApprovalRequested { .. }
            | Change::ApprovalGranted { .. }
            | Change::ApprovalRefused { .. }
            | Change::HoldWaiting { .. }
            | Change::HoldWaitingEnded { .. }
            | Change::TokenSeen { .. } => {}
        }
    }

    /// Marks the device for the trail while it is on probation or watched.
    fn refresh_watch(&mut self, state: &State, id: DeviceId) {
        match state.devices.get(&id).is_some_and(|d| d.watched()) {
            true => self.devices.watched.insert(id, ()),
            false => self.devices.watched.remove(&id),
        };
    }

    /// Makes a presentable alias findable by DNS tokens, as itself and, when too long to sign
    /// whole, by its digest.
    fn add_alias(&mut self, alias: &Alias, device: DeviceId) {
        if !alias.kind.is_presentable() {
            return;
        }
        self.devices.aliases.insert(alias_key(&alias.value), device);
        if alias.value.len() > crate::token::MAX_INLINE_ALIAS {
            self.devices
                .digests
                .insert(crate::token::alias_digest(&alias.value), device);
        }
    }

    fn refresh_group(
        &mut self,
        parts: &PolicyParts,
        state: &State,
        id: DeviceId,
    ) -> Option<Crossing> {
        let isolating = |g: Option<&GroupIdx>| g.is_some_and(|g| *g <= parts.isolation_group);
        let was = isolating(self.devices.groups.get(&id));
        match group_of(parts, state, id) {
            Some(g) if g != parts.default_group => {
                self.devices.groups.insert(id, g);
                if let Some(d) = state.devices.get(&id) {
                    self.devices.labels.insert(id, d.label.as_str().into());
                }
            }
            _ => {
                self.devices.groups.remove(&id);
                self.devices.labels.remove(&id);
            }
        }
        let now = self.devices.groups.get(&id).copied();
        match (was, isolating(now.as_ref())) {
            (false, true) => now.map(|group| Crossing::Into(id, group)),
            (true, false) => Some(Crossing::OutOf(id)),
            _ => None,
        }
    }
}

/// A device a change moved into isolation (`isolation_group` or a stricter one, whatever put
/// it there: a hold, an MDM group, a placement) or out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    Into(DeviceId, GroupIdx),
    OutOf(DeviceId),
}

/// A snapshot made without a writer (for `cordon explain` and benches): the store's state, plus
/// the devices config names, in memory only.
pub fn offline_snapshot(
    set: crate::policy::PolicySet,
    mut state: State,
    statics: &[StaticBinding],
    critical: &[String],
) -> crate::policy::Snapshot {
    let parts = PolicyParts::new(set);
    let names = config_device_names(&parts, statics, critical);
    state.create_named(names.iter().map(String::as_str));
    let view = View::build(&parts, &state, statics);
    parts.snapshot(view.devices, view.statics, 1)
}

/// Every device name config uses: groups.toml placements, identity.static, devices.critical.
pub fn config_device_names(
    parts: &PolicyParts,
    statics: &[StaticBinding],
    critical: &[String],
) -> Vec<String> {
    let mut names: Vec<String> = parts
        .set
        .groups
        .iter()
        .flat_map(|g| g.devices.iter().cloned())
        .collect();
    names.extend(statics.iter().map(|s| s.device.clone()));
    names.extend(critical.iter().cloned());
    names
}

/// The group a device is in: the stricter of what its memberships, its placement in
/// groups.toml and a responder's hold say; `None` when nothing says anything (default group).
pub fn group_of(parts: &PolicyParts, state: &State, id: DeviceId) -> Option<GroupIdx> {
    let device = state.devices.get(&id)?;
    let memberships = device
        .memberships
        .iter()
        .map(|k| (k.as_str(), state.group_names.get(k).map(String::as_str)));
    let by_mdm = parts.group_for_memberships(memberships);
    let by_config = parts.group_for_placement(device.aliases.iter().map(|a| a.value));
    let by_hold = device.hold.as_ref().map(|_| parts.isolation_group);
    [by_mdm, by_config, by_hold].into_iter().flatten().min()
}
