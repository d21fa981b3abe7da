//! The writer's model of devices: aliases, UEM-group memberships, address bindings, isolation
//! holds. Every mutation is a [`Change`], so that the same list is committed to the store and
//! then applied here: what is in memory is exactly what is durable.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::policy::DeviceId;

/// What an alias says about a device: the key is `kind:value`, lowercased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AliasKind {
    JamfComputer,
    JamfMobile,
    Serial,
    Udid,
    ManagementId,
    Mac,
    Token,
    /// Named by config or the API, kind unknown.
    Name,
}

impl AliasKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AliasKind::JamfComputer => "jamf-computer",
            AliasKind::JamfMobile => "jamf-mobile",
            AliasKind::Serial => "serial",
            AliasKind::Udid => "udid",
            AliasKind::ManagementId => "management-id",
            AliasKind::Mac => "mac",
            AliasKind::Token => "token",
            AliasKind::Name => "name",
        }
    }

    pub fn parse(s: &str) -> Option<AliasKind> {
        [
            AliasKind::JamfComputer,
            AliasKind::JamfMobile,
            AliasKind::Serial,
            AliasKind::Udid,
            AliasKind::ManagementId,
            AliasKind::Mac,
            AliasKind::Token,
            AliasKind::Name,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// Whether a DNS client may present this alias as its identity (issue 4 tokens); Jamf ids,
    /// MACs and management ids are not secrets a device proves, and jamf ids are guessable.
    pub fn is_presentable(self) -> bool {
        matches!(
            self,
            AliasKind::Serial | AliasKind::Udid | AliasKind::Token | AliasKind::Name
        )
    }
}

/// An alias: its kind and its normalised value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Alias {
    pub kind: AliasKind,
    /// Shared: the same alias sits in its device's record and in the alias index.
    pub value: Arc<str>,
}

impl Alias {
    pub fn new(kind: AliasKind, value: &str) -> Alias {
        Alias {
            kind,
            value: value.trim().to_ascii_lowercase().into(),
        }
    }

    pub fn jamf(kind: crate::jamf::events::DeviceKind, id: i64) -> Alias {
        match kind {
            crate::jamf::events::DeviceKind::Computer => {
                Alias::new(AliasKind::JamfComputer, &id.to_string())
            }
            crate::jamf::events::DeviceKind::Mobile => {
                Alias::new(AliasKind::JamfMobile, &id.to_string())
            }
        }
    }

    /// `kind:value`, as stored and as the API accepts it.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.value)
    }

    /// Parses `kind:value`, or a bare value as a [`AliasKind::Name`].
    pub fn parse(text: &str) -> Alias {
        match text
            .split_once(':')
            .and_then(|(k, v)| Some((AliasKind::parse(k)?, v)))
        {
            Some((kind, value)) => Alias::new(kind, value),
            None => Alias::new(AliasKind::Name, text),
        }
    }
}

/// A manual isolation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hold {
    pub reason: String,
    pub ticket: String,
    pub by: String,
    pub at: i64,
}

/// A set kept as a sorted boxed slice: a device has a handful of aliases, groups and
/// addresses, changed rarely. A `BTreeSet` would allocate a node for eleven, a `Vec` room for
/// four; this holds exactly what is in it, in 16 bytes plus the items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallSet<T>(Box<[T]>);

impl<T> Default for SmallSet<T> {
    fn default() -> Self {
        SmallSet(Box::new([]))
    }
}

impl<T: Ord> SmallSet<T> {
    pub fn insert(&mut self, value: T) -> bool {
        match self.0.binary_search(&value) {
            Ok(_) => false,
            Err(at) => {
                let mut items = std::mem::take(&mut self.0).into_vec();
                items.reserve_exact(1);
                items.insert(at, value);
                self.0 = items.into_boxed_slice();
                true
            }
        }
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, value: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
    {
        match self.0.binary_search_by(|t| t.borrow().cmp(value)) {
            Ok(at) => {
                let mut items = std::mem::take(&mut self.0).into_vec();
                items.remove(at);
                self.0 = items.into_boxed_slice();
                true
            }
            Err(_) => false,
        }
    }

    pub fn contains<Q: Ord + ?Sized>(&self, value: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
    {
        self.0.binary_search_by(|t| t.borrow().cmp(value)).is_ok()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One device as the writer knows it.
#[derive(Debug, Clone, Default)]
pub struct Device {
    pub label: Box<str>,
    pub aliases: SmallSet<Alias>,
    /// UEM group keys (`jamf:computer-group:42`).
    pub memberships: SmallSet<String>,
    pub critical: bool,
    /// Boxed: most devices have none, and the box keeps a device small.
    pub hold: Option<Box<Hold>>,
    /// The addresses bound to it (the reverse of [`State::bindings`]).
    pub addresses: SmallSet<IpAddr>,
}

/// A source address bound to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub device: DeviceId,
    /// Seconds since the epoch of the last report.
    pub seen: i64,
}

/// One durable mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    CreateDevice {
        id: DeviceId,
        label: String,
    },
    SetLabel {
        id: DeviceId,
        label: String,
    },
    /// Attaches an alias, taking it from any other device that had it.
    SetAlias {
        alias: Alias,
        device: DeviceId,
    },
    AddMembership {
        device: DeviceId,
        group: String,
    },
    RemoveMembership {
        device: DeviceId,
        group: String,
    },
    GroupName {
        group: String,
        name: String,
    },
    Bind {
        addr: IpAddr,
        device: DeviceId,
        seen: i64,
    },
    Unbind {
        addr: IpAddr,
    },
    SetHold {
        device: DeviceId,
        hold: Option<Hold>,
    },
    SetCritical {
        device: DeviceId,
        critical: bool,
    },
}

/// An audit record: who changed what on which device, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEvent {
    pub at: i64,
    pub device: Option<DeviceId>,
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub reason: String,
}

/// Everything the writer knows about devices.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub devices: BTreeMap<DeviceId, Device>,
    pub aliases: BTreeMap<Alias, DeviceId>,
    pub bindings: BTreeMap<IpAddr, Binding>,

    /// UEM group key -> its name, as the MDM last told.
    pub group_names: BTreeMap<String, String>,
    pub next_id: u64,
}

impl State {
    pub fn device_by_alias(&self, alias: &Alias) -> Option<DeviceId> {
        self.aliases.get(alias).copied()
    }

    /// Finds a device by any spelling the API accepts: `kind:value`, a bare value of any kind,
    /// or `device#N`.
    pub fn find(&self, text: &str) -> Option<DeviceId> {
        if let Some(n) = text.strip_prefix("device#").and_then(|n| n.parse().ok()) {
            let id = DeviceId(n);
            return self.devices.contains_key(&id).then_some(id);
        }
        let alias = Alias::parse(text);
        if alias.kind != AliasKind::Name {
            return self.device_by_alias(&alias);
        }
        self.aliases
            .iter()
            .find(|(a, _)| a.value == alias.value)
            .map(|(_, d)| *d)
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
                Change::CreateDevice {
                    id,
                    label: name.to_string(),
                },
                Change::SetAlias {
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
            Change::CreateDevice { id, label } => {
                self.next_id = self.next_id.max(id.0);
                self.devices.entry(*id).or_default().label = label.as_str().into();
            }
            Change::SetLabel { id, label } => {
                if let Some(d) = self.devices.get_mut(id) {
                    d.label = label.as_str().into();
                }
            }
            Change::SetAlias { alias, device } => {
                if let Some(old) = self.aliases.insert(alias.clone(), *device) {
                    if let Some(d) = self.devices.get_mut(&old) {
                        d.aliases.remove(alias);
                    }
                }
                self.devices
                    .entry(*device)
                    .or_default()
                    .aliases
                    .insert(alias.clone());
            }
            Change::AddMembership { device, group } => {
                self.devices
                    .entry(*device)
                    .or_default()
                    .memberships
                    .insert(group.clone());
            }
            Change::RemoveMembership { device, group } => {
                if let Some(d) = self.devices.get_mut(device) {
                    d.memberships.remove(group);
                }
            }
            Change::GroupName { group, name } => {
                self.group_names.insert(group.clone(), name.clone());
            }
            Change::Bind { addr, device, seen } => {
                self.unbind(addr);
                self.bindings.insert(
                    *addr,
                    Binding {
                        device: *device,
                        seen: *seen,
                    },
                );
                self.devices
                    .entry(*device)
                    .or_default()
                    .addresses
                    .insert(*addr);
            }
            Change::Unbind { addr } => self.unbind(addr),
            Change::SetHold { device, hold } => {
                if let Some(d) = self.devices.get_mut(device) {
                    d.hold = hold.clone().map(Box::new);
                }
            }
            Change::SetCritical { device, critical } => {
                if let Some(d) = self.devices.get_mut(device) {
                    d.critical = *critical;
                }
            }
        }
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
