//! The writer's model of devices: aliases, UEM-group memberships, address bindings, isolation
//! holds, pending approvals. Every mutation is a [`Change`], so that the same list is committed
//! to the store and then applied here: what is in memory is exactly what is durable, and a
//! replay of the changes rebuilds it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use super::alias::{Alias, AliasIndex, AliasKind, AliasList, AliasRef};
pub use super::change::{AuditEvent, Change, Hold};
use crate::policy::DeviceId;

/// A pending approval lapses after an hour: a stale one must not isolate a device later.
pub const APPROVAL_LIFETIME: i64 = 3600;

/// A manual isolation of a critical device, waiting for a second admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub device: DeviceId,
    pub hold: Hold,
}

/// A set for the handful of UEM groups and addresses a device has, changed rarely: one item is
/// kept inline (most devices have one address), more as a sorted boxed slice. A `BTreeSet` would
/// allocate a node for eleven, a `Vec` room for four; a boxed slice of one address costs a
/// 32-byte allocation for 17 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallSet<T>(Items<T>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Items<T> {
    One(T),
    /// Sorted; empty or two and more.
    Many(Box<[T]>),
}

impl<T> Default for SmallSet<T> {
    fn default() -> Self {
        SmallSet(Items::Many(Box::new([])))
    }
}

impl<T: Ord> SmallSet<T> {
    pub fn insert(&mut self, value: T) -> bool {
        match self.as_slice().binary_search(&value) {
            Ok(_) => false,
            Err(at) => {
                let mut items = self.take();
                items.insert(at, value);
                self.set(items);
                true
            }
        }
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, value: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
    {
        match self.as_slice().binary_search_by(|t| t.borrow().cmp(value)) {
            Ok(at) => {
                let mut items = self.take();
                items.remove(at);
                self.set(items);
                true
            }
            Err(_) => false,
        }
    }

    pub fn contains<Q: Ord + ?Sized>(&self, value: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
    {
        self.as_slice()
            .binary_search_by(|t| t.borrow().cmp(value))
            .is_ok()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.as_slice().iter()
    }

    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    fn as_slice(&self) -> &[T] {
        match &self.0 {
            Items::One(item) => std::slice::from_ref(item),
            Items::Many(items) => items,
        }
    }

    fn take(&mut self) -> Vec<T> {
        match std::mem::take(self).0 {
            Items::One(item) => vec![item],
            Items::Many(items) => items.into_vec(),
        }
    }

    fn set(&mut self, mut items: Vec<T>) {
        self.0 = match items.len() {
            1 => Items::One(items.pop().expect("one item")),
            _ => Items::Many(items.into_boxed_slice()),
        };
    }
}

/// One device as the writer knows it.
#[derive(Debug, Clone, Default)]
pub struct Device {
    /// Inline up to 24 bytes: a computer name mostly is, and a million small allocations cost
    /// 32 bytes each besides the pointer.
    pub label: compact_str::CompactString,
    pub aliases: AliasList,
    /// UEM group keys (`jamf:computer-group:42`).
    pub memberships: SmallSet<String>,
    pub critical: bool,
    /// Boxed: most devices have none, and the box keeps a device small.
    pub hold: Option<Box<Hold>>,
    /// The addresses bound to it (the reverse of [`State::bindings`]).
    pub addresses: SmallSet<IpAddr>,
    /// On probation after its isolation ended, until then (seconds since the epoch).
    pub probation: Option<i64>,
    /// Watched by a responder: who asked, why, until when. Boxed as the hold is.
    pub watch: Option<Box<Hold>>,
}

impl Device {
    /// Whether its queries go to the trail though it is not isolated.
    pub fn watched(&self) -> bool {
        self.probation.is_some() || self.watch.is_some()
    }
}

/// A source address bound to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub device: DeviceId,
    /// Seconds since the epoch of the last report.
    pub seen: i64,
}

/// Address -> binding, IPv4 keyed by its 32 bits and each binding packed in 8 bytes: a tree
/// entry of 12 bytes rather than the 33 an `IpAddr` and a [`Binding`] make, for a million bound
/// Macs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bindings {
    v4: BTreeMap<u32, Packed>,
    v6: BTreeMap<u128, Packed>,
}

/// A [`Binding`] as the tree keeps it: the device's number and the second it was seen, which
/// fits 32 bits until 2106.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packed {
    device: u32,
    seen: u32,
}

impl From<Binding> for Packed {
    fn from(b: Binding) -> Packed {
        Packed {
            device: b.device.number(),
            seen: b.seen.clamp(0, i64::from(u32::MAX)) as u32,
        }
    }
}

impl From<Packed> for Binding {
    fn from(p: Packed) -> Binding {
        Binding {
            device: DeviceId(p.device.into()),
            seen: p.seen.into(),
        }
    }
}

impl Bindings {
    pub fn get(&self, addr: &IpAddr) -> Option<Binding> {
        match addr {
            IpAddr::V4(a) => self.v4.get(&u32::from(*a)),
            IpAddr::V6(a) => self.v6.get(&u128::from(*a)),
        }
        .map(|p| Binding::from(*p))
    }

    pub fn insert(&mut self, addr: IpAddr, binding: Binding) -> Option<Binding> {
        match addr {
            IpAddr::V4(a) => self.v4.insert(a.into(), binding.into()),
            IpAddr::V6(a) => self.v6.insert(a.into(), binding.into()),
        }
        .map(Binding::from)
    }

    pub fn remove(&mut self, addr: &IpAddr) -> Option<Binding> {
        match addr {
            IpAddr::V4(a) => self.v4.remove(&u32::from(*a)),
            IpAddr::V6(a) => self.v6.remove(&u128::from(*a)),
        }
        .map(Binding::from)
    }

    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, Binding)> + '_ {
        let v4 = self
            .v4
            .iter()
            .map(|(a, p)| (IpAddr::from(Ipv4Addr::from(*a)), Binding::from(*p)));
        let v6 = self
            .v6
            .iter()
            .map(|(a, p)| (IpAddr::from(Ipv6Addr::from(*a)), Binding::from(*p)));
        v4.chain(v6)
    }
}

/// Devices by id in a vector: the writer allocates ids densely from 1 and never frees one, so
/// a slot per id costs less than any map (a `BTreeMap` of devices filled in id order leaves its
/// nodes half empty: twice the bytes).
#[derive(Debug, Clone, Default)]
pub struct DeviceTable {
    slots: Vec<Option<Device>>,
    len: usize,
}

impl DeviceTable {
    pub fn get(&self, id: &DeviceId) -> Option<&Device> {
        self.slots.get(usize::try_from(id.0).ok()?)?.as_ref()
    }

    pub fn get_mut(&mut self, id: &DeviceId) -> Option<&mut Device> {
        self.slots.get_mut(usize::try_from(id.0).ok()?)?.as_mut()
    }

    pub fn contains_key(&self, id: &DeviceId) -> bool {
        self.get(id).is_some()
    }

    /// The device `id`, made empty if it was not there.
    pub fn get_or_insert(&mut self, id: DeviceId) -> &mut Device {
        let at = id.number() as usize;
        if at >= self.slots.len() {
            self.slots.resize_with(at + 1, || None);
        }
        let slot = &mut self.slots[at];
        if slot.is_none() {
            self.len += 1;
        }
        slot.get_or_insert_with(Device::default)
    }

    /// Room for ids up to `max` without growing by doubling.
    pub fn reserve_ids(&mut self, max: DeviceId) {
        let want = usize::try_from(max.0).unwrap_or(0).saturating_add(1);
        self.slots
            .reserve_exact(want.saturating_sub(self.slots.len()));
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (DeviceId, &Device)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(at, d)| Some((DeviceId(at as u64), d.as_ref()?)))
    }

    pub fn keys(&self) -> impl Iterator<Item = DeviceId> + '_ {
        self.iter().map(|(id, _)| id)
    }
}

impl std::ops::Index<&DeviceId> for DeviceTable {
    type Output = Device;

    fn index(&self, id: &DeviceId) -> &Device {
        self.get(id).expect("a device the writer knows")
    }
}

/// One-time keys in use, each until a moment (seconds since the epoch): a request under a key
/// seen here is refused until then. Indexed by time too, so that forgetting lapsed keys costs
/// only the keys forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenTokens {
    by_key: HashMap<String, i64>,
    by_until: BTreeSet<(i64, String)>,
}

impl SeenTokens {
    /// Whether `key` is in use at `now`.
    pub fn contains(&self, key: &str, now: i64) -> bool {
        self.by_key.get(key).is_some_and(|&until| until >= now)
    }

    pub fn insert(&mut self, key: &str, until: i64) {
        if let Some(old) = self.by_key.insert(key.to_string(), until) {
            self.by_until.remove(&(old, key.to_string()));
        }
        self.by_until.insert((until, key.to_string()));
    }

    /// Forgets the keys in use only until before `at`.
    pub fn lapse(&mut self, at: i64) {
        while let Some((until, _)) = self.by_until.first() {
            if *until >= at {
                break;
            }
            if let Some((_, key)) = self.by_until.pop_first() {
                self.by_key.remove(&key);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// Everything the writer knows about devices.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub devices: DeviceTable,
    /// Alias -> device, over the text in each device's [`AliasList`].
    pub aliases: AliasIndex,
    pub bindings: Bindings,

    /// UEM group key -> its name, as the MDM last told.
    pub group_names: BTreeMap<String, String>,
    /// Isolations of critical devices waiting for a second admin, by approval number.
    pub approvals: BTreeMap<u64, Pending>,
    /// One-time keys in use (`Request::Once`).
    pub seen: SeenTokens,
    /// Holds asked for devices not seen yet, by the alias they wait for ([`Change::HoldWaiting`]).
    pub waiting: BTreeMap<String, Hold>,
    pub next_id: u64,
}

impl State {
    pub fn device_by_alias(&self, alias: &Alias) -> Option<DeviceId> {
        self.aliases.get(alias.as_ref(), |id| {
            self.devices.get(&id).map(|d| &d.aliases)
        })
    }

    /// Every alias of every device.
    pub fn all_aliases(&self) -> impl Iterator<Item = (AliasRef<'_>, DeviceId)> {
        self.devices
            .iter()
            .flat_map(|(id, d)| d.aliases.iter().map(move |a| (a, id)))
    }

    /// Finds a device by any spelling the API accepts: `kind:value`, a bare value of any kind,
    /// or `device#N`.
    pub fn find(&self, text: &str) -> Option<DeviceId> {
        if let Some(n) = text.strip_prefix("device#").and_then(|n| n.parse().ok()) {
            let id = DeviceId(n);
            return self.devices.contains_key(&id).then_some(id);
        }
        self.device_named(&Alias::parse(text))
    }

    /// The device an alias names. A bare value (kind [`AliasKind::Name`]) names a device that
    /// has it as an alias of any kind, in the order of [`AliasKind::ALL`], as the API reads it.
    pub fn device_named(&self, alias: &Alias) -> Option<DeviceId> {
        if alias.kind != AliasKind::Name {
            return self.device_by_alias(alias);
        }
        AliasKind::ALL.into_iter().find_map(|kind| {
            let candidate = AliasRef {
                kind,
                value: &alias.value,
            };
            self.aliases
                .get(candidate, |id| self.devices.get(&id).map(|d| &d.aliases))
        })
    }

    /// Creates (and applies) a device for each name no device answers to yet; returns the
    /// changes, for the caller to commit.
    pub fn create_named<'a>(&mut self, names: impl Iterator<Item = &'a str>) -> Vec<Change> {
        let mut changes = Vec::new();
        for name in names {
            if self.find(name).is_some() {
                continue;
            }
            let id = self.allocate();
            for c in [
                Change::DeviceAdded {
                    device: id,
                    label: name.to_string(),
                },
                Change::AliasSeen {
                    alias: Alias::parse(name),
                    device: id,
                },
            ] {
                self.apply(&c);
                changes.push(c);
            }
        }
        changes
    }

    /// A fresh device id (the writer is the only caller, so no race).
    pub fn allocate(&mut self) -> DeviceId {
        self.next_id += 1;
        DeviceId(self.next_id)
    }

    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::DeviceAdded { device, label } => {
                self.next_id = self.next_id.max(device.0);
                self.devices.get_or_insert(*device).label = label.as_str().into();
            }
            Change::LabelSet { device, label } => {
                if let Some(d) = self.devices.get_mut(device) {
                    d.label = label.as_str().into();
                }
            }
            Change::AliasSeen { alias, device } => {
                let alias = alias.as_ref();
                let devices = &self.devices;
                let old = self
                    .aliases
                    .set(alias, *device, |id| devices.get(&id).map(|d| &d.aliases));
                if let Some(d) = old.and_then(|old| self.devices.get_mut(&old)) {
                    d.aliases.remove(alias);
                }
                self.devices.get_or_insert(*device).aliases.insert(alias);
            }
            Change::MembershipSet { device, group } => {
                self.devices
                    .get_or_insert(*device)
                    .memberships
                    .insert(group.clone());
            }
            Change::MembershipUnset { device, group } => {
                if let Some(d) = self.devices.get_mut(device) {
                    d.memberships.remove(group);
                }
            }
            Change::GroupNamed { group, name } => {
                self.group_names.insert(group.clone(), name.clone());
            }
            Change::BindingSeen { addr, device, at } => {
                self.unbind(addr);
                self.bindings.insert(
                    *addr,
                    Binding {
                        device: *device,
                        seen: *at,
                    },
                );
                self.devices.get_or_insert(*device).addresses.insert(*addr);
            }
            Change::BindingLapsed { addr } => self.unbind(addr),
            Change::HoldPlaced { device, hold } => {
                if let Some(d) = self.devices.get_mut(device) {
                    d.hold = Some(Box::new(hold.clone()));
                }
            }
            Change::HoldReleased { device } => {
                if let Some(d) = self.devices.get_mut(device) {
                    d.hold = None;
                }
            }
            Change::CriticalSet { device, critical } => {
                if let Some(d) = self.devices.get_mut(device) {
                    d.critical = *critical;
                }
            }
            Change::ApprovalRequested {
                approval,
                device,
                hold,
            } => {
                // Lapsed requests go as a new one comes: by its time, so a replay drops the same.
                self.approvals
                    .retain(|_, p| hold.at - p.hold.at < APPROVAL_LIFETIME);
                let pending = Pending {
                    device: *device,
                    hold: hold.clone(),
                };
                self.approvals.insert(*approval, pending);
            }
            Change::ApprovalGranted { approval } | Change::ApprovalRefused { approval } => {
                self.approvals.remove(approval);
            }
            Change::TokenSeen { key, until, at } => {
                self.seen.lapse(*at);
                self.seen.insert(key, *until);
            }
            Change::ProbationStarted { device, until } => {
                if let Some(d) = self.devices.get_mut(device) {
                    d.probation = Some(*until);
                }
            }
            Change::ProbationEnded { device } => {
                if let Some(d) = self.devices.get_mut(device) {
                    d.probation = None;
                }
            }
            Change::WatchSet { device, watch } => {
                if let Some(d) = self.devices.get_mut(device) {
                    d.watch = Some(Box::new(watch.clone()));
                }
            }
            Change::WatchEnded { device } => {
                if let Some(d) = self.devices.get_mut(device) {
                    d.watch = None;
                }
            }
            Change::HoldWaiting { key, hold } => {
                self.waiting.insert(key.clone(), hold.clone());
            }
            Change::HoldWaitingEnded { key } => {
                self.waiting.remove(key);
            }
        }
    }

    /// The waiting hold that `alias` answers, if any: asked by `kind:value` or by the bare value.
    pub fn waiting_for(&self, alias: &Alias) -> Option<(&String, &Hold)> {
        if self.waiting.is_empty() {
            return None;
        }
        self.waiting
            .get_key_value(&alias.key())
            .or_else(|| self.waiting.get_key_value(&*alias.value))
    }

    fn unbind(&mut self, addr: &IpAddr) {
        if let Some(old) = self.bindings.remove(addr) {
            if let Some(d) = self.devices.get_mut(&old.device) {
                d.addresses.remove(addr);
            }
        }
    }

    /// The addresses bound to `device`.
    pub fn addresses_of(&self, device: DeviceId) -> Vec<IpAddr> {
        self.devices
            .get(&device)
            .map(|d| d.addresses.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_tokens_lapse_in_time_order_and_a_renewed_key_keeps_its_new_time() {
        let mut seen = SeenTokens::default();
        seen.insert("a", 10);
        seen.insert("b", 20);
        seen.insert("a", 30);
        assert!(seen.contains("a", 25) && seen.contains("b", 20));
        assert!(!seen.contains("b", 21), "past its time");
        seen.lapse(21);
        assert_eq!(seen.len(), 1);
        assert!(seen.contains("a", 30) && !seen.contains("a", 31));
        seen.lapse(31);
        assert!(seen.is_empty());
    }

    #[test]
    fn bindings_of_both_families_come_back_in_address_order() {
        let mut b = Bindings::default();
        let at = |device| Binding {
            device: DeviceId(device),
            seen: 0,
        };
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let (v4, v4b): (IpAddr, IpAddr) =
            ("10.0.0.9".parse().unwrap(), "10.0.0.2".parse().unwrap());
        b.insert(v6, at(1));
        b.insert(v4, at(2));
        assert_eq!(b.insert(v4b, at(3)), None);
        assert_eq!(b.insert(v4b, at(4)).map(|b| b.device), Some(DeviceId(3)));
        let order: Vec<IpAddr> = b.iter().map(|(a, _)| a).collect();
        assert_eq!(order, [v4b, v4, v6]);
        assert_eq!(b.remove(&v4).map(|b| b.device), Some(DeviceId(2)));
        assert_eq!(b.get(&v4), None);
        assert_eq!(b.get(&v6).map(|b| b.device), Some(DeviceId(1)));
    }
}
