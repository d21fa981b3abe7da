//! The snapshot: one immutable value holding everything a decision needs, with a version.
//!
//! The control plane builds it and publishes it through `arc_swap`; the query path loads one per
//! query and decides with it alone (contract 1). Big parts that rarely change (category DB,
//! compiled policies) sit behind `Arc`s so that a new snapshot shares them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::categories::{CategoryDb, CategorySet, Matches, Taxonomy};
use super::cidr::PrefixTable;
use super::feeds::FeedDb;
pub use super::layered::Map;
use super::layered::{AddressMap, LayeredMap};
use super::qname::QName;
use super::rules::RuleSet;

/// A device group's place in [`Snapshot::groups`], which is ordered by priority, highest first:
/// the smaller index is the stricter group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupIdx(pub u16);

impl GroupIdx {
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The stricter of two groups (contract 8).
    pub fn stricter(self, other: GroupIdx) -> GroupIdx {
        self.min(other)
    }
}

/// A managed device, as Cordon numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub u64);

impl DeviceId {
    /// The id in 32 bits, as the compact maps keep it. Ids are dense from 1 (the writer
    /// allocates them), and the store refuses any beyond `u32::MAX` when it loads.
    pub fn number(self) -> u32 {
        u32::try_from(self.0).expect("device ids fit in 32 bits")
    }
}

/// As the API spells it everywhere: `device#N`.
impl serde::Serialize for DeviceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Reads what [`Serialize`](serde::Serialize) writes: `device#N`.
impl<'de> serde::Deserialize<'de> for DeviceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.strip_prefix("device#")
            .and_then(|n| n.parse().ok())
            .map(DeviceId)
            .ok_or_else(|| serde::de::Error::custom(format!("\"{text}\" is not device#N")))
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device#{}", self.0)
    }
}

/// What a policy does with a name no rule or category decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAction {
    Allow,
    Block,
}

/// How a blocked name is answered (contract 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    Nxdomain,
    Refused,
    Nodata,
    Sinkhole,
}

/// A compiled policy.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    pub default: DefaultAction,
    pub rules: RuleSet,
    /// Names of the allowed service bundles, indexed by [`super::rules::RuleHit::service`].
    pub services: Vec<String>,
    pub block_categories: CategorySet,
    /// What a CNAME target met in an allowed answer is checked against: `block_categories` and
    /// `block_cname_categories` (absent from a default-block policy: every security category).
    pub target_categories: CategorySet,
    pub block_uncategorised: bool,
    pub response: ResponseMode,
    pub sinkhole_v4: Ipv4Addr,
    pub sinkhole_v6: Ipv6Addr,
    /// TTL (and SOA minimum) of blocked answers, seconds.
    pub blocked_ttl: u32,
    /// Cap on the TTL of answers this policy lets through, seconds (contract 6).
    pub max_ttl: u32,
    /// Categories whose names isolate the device that asks for one (with `[tripwire]` on).
    pub tripwire_categories: CategorySet,
    /// Names (and the names below them) an incident added that isolate the device that asks.
    pub tripwires: RuleSet,
    /// How long a device of this policy is on probation after its isolation ends, seconds.
    pub probation_s: u32,
}

impl Policy {
    /// Whether this policy names any tripwire at all (most do not: nothing to check).
    pub fn has_tripwires(&self) -> bool {
        !self.tripwire_categories.is_empty() || !self.tripwires.is_empty()
    }
}

/// A device group.
#[derive(Debug)]
pub struct Group {
    pub name: String,
    pub priority: i64,
    pub policy: Arc<Policy>,
    /// UEM groups (`jamf:computer-group:42`, ...) whose members land here.
    pub uem_groups: Vec<String>,
}

/// Devices and where each one stands, in persistent maps: a new snapshot shares all but the
/// path to what changed, so publishing one membership change costs O(log n), not a copy.
#[derive(Debug, Default, Clone)]
pub struct Devices {
    /// Presentable alias value (serial, UDID, token, name), by its keyed hash ([`alias_key`])
    /// -> device. A hash, not the string: with a million devices the strings would cost more
    /// than the map, and a 64-bit keyed hash does not collide by accident or by design.
    pub aliases: LayeredMap<u64, DeviceId>,
    /// SHA-256 digest (16 bytes) of long presentable aliases -> device: what a `c2` signed token
    /// names (see `token.rs`).
    pub digests: LayeredMap<[u8; 16], DeviceId>,
    /// Device -> its group, for devices outside the default group only.
    pub groups: Map<DeviceId, GroupIdx>,
    /// Source address -> the number of the device the MDM last saw there ([`Devices::bound`]).
    pub bindings: AddressMap,
    /// A name to show for each device outside the default group (the ones explanations name
    /// most); the others show as `device#N`.
    pub labels: Map<DeviceId, Box<str>>,
    /// Devices whose queries go to the trail though they are not isolated: on probation, or
    /// watched by a responder.
    pub watched: Map<DeviceId, ()>,
}

impl Devices {
    /// The device the MDM last saw at `addr`.
    #[inline]
    pub fn bound(&self, addr: &IpAddr) -> Option<DeviceId> {
        self.bindings.get(addr).map(|n| DeviceId(n.into()))
    }

    pub fn bind(&mut self, addr: IpAddr, device: DeviceId) {
        self.bindings.insert(addr, device.number());
    }

    pub fn by_alias(&self, alias: &str) -> Option<DeviceId> {
        self.aliases.get(&alias_key(alias))
    }

    pub fn label(&self, id: DeviceId) -> String {
        self.labels
            .get(&id)
            .map(|l| l.to_string())
            .unwrap_or_else(|| id.to_string())
    }
}

/// The key of an alias value in [`Devices::aliases`]: the per-process keyed name hash of its
/// trimmed, lowercased text.
pub fn alias_key(alias: &str) -> u64 {
    let alias = alias.trim();
    if alias.bytes().any(|b| b.is_ascii_uppercase()) {
        super::qname::hash_dotted(&alias.to_ascii_lowercase())
    } else {
        super::qname::hash_dotted(alias)
    }
}

/// Everything a decision reads.
#[derive(Debug)]
pub struct Snapshot {
    pub version: u64,
    /// Ordered by priority, highest first.
    pub groups: Arc<[Group]>,
    pub default_group: GroupIdx,
    /// Where a manual isolation puts a device.
    pub isolation_group: GroupIdx,
    pub taxonomy: Arc<Taxonomy>,
    /// The lists' category DB (categories.toml), rebuilt by a reload.
    pub categories: Arc<CategoryDb>,
    /// The RPZ feeds' category DB, changed by their transfers.
    pub feeds: Arc<FeedDb>,
    pub devices: Devices,
    /// `clients` networks of each group: queries from there are in that group at least.
    pub client_groups: Arc<PrefixTable<GroupIdx>>,
    /// `identity.static`: source networks bound to a device (longest prefix wins).
    pub static_devices: Arc<PrefixTable<DeviceId>>,
}

impl Snapshot {
    pub fn group(&self, idx: GroupIdx) -> &Group {
        &self.groups[idx.index()]
    }

    /// The categories of `name`, from the lists and the feeds alike.
    #[inline]
    pub fn categorise(&self, name: &QName) -> CategorySet {
        let mut found = Matches::default();
        self.categories.gather(name, &mut found);
        self.feeds.gather(name, &mut found);
        found.done().categories
    }
}
