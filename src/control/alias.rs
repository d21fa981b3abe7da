//! Device aliases as the writer holds them, compactly enough for a million devices with five or
//! six each: a device keeps its aliases packed in one allocation ([`AliasList`]), and the index
//! from alias to device ([`AliasIndex`]) holds no text at all, only a hash tag and a device
//! number, checked against the device's own list on every lookup.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::policy::packed::PackedTable;

use crate::policy::DeviceId;

/// What an alias says about a device: the key is `kind:value`, lowercased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
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

/// Every kind, in the order a bare value is tried against them.
const KINDS: [AliasKind; 8] = [
    AliasKind::JamfComputer,
    AliasKind::JamfMobile,
    AliasKind::Serial,
    AliasKind::Udid,
    AliasKind::ManagementId,
    AliasKind::Mac,
    AliasKind::Token,
    AliasKind::Name,
];

impl AliasKind {
    pub const ALL: [AliasKind; 8] = KINDS;

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
        KINDS.into_iter().find(|k| k.as_str() == s)
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
    pub value: Box<str>,
}

impl Alias {
    pub fn new(kind: AliasKind, value: &str) -> Alias {
        Alias {
            kind,
            value: value.trim().to_ascii_lowercase().into(),
        }
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

    pub fn as_ref(&self) -> AliasRef<'_> {
        AliasRef {
            kind: self.kind,
            value: &self.value,
        }
    }

    /// `kind:value`, as stored and as the API accepts it.
    pub fn key(&self) -> String {
        self.as_ref().key()
    }
}

/// Written as its key, `kind:value`.
impl serde::Serialize for Alias {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}:{}", self.kind.as_str(), self.value))
    }
}

/// Read back strictly: a known kind, a colon, the value.
impl<'de> serde::Deserialize<'de> for Alias {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.split_once(':')
            .and_then(|(kind, value)| Some(Alias::new(AliasKind::parse(kind)?, value)))
            .ok_or_else(|| serde::de::Error::custom(format!("\"{text}\" is not kind:value")))
    }
}

/// A stored key (`kind:value`, or a bare value) as people read it ([`AliasRef::shown`]).
pub fn shown_key(key: &str) -> String {
    match key
        .split_once(':')
        .and_then(|(k, v)| Some((AliasKind::parse(k)?, v)))
    {
        Some((kind, value)) => AliasRef { kind, value }.shown(),
        None => key.to_string(),
    }
}

/// An alias borrowed from where it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AliasRef<'a> {
    pub kind: AliasKind,
    pub value: &'a str,
}

impl AliasRef<'_> {
    /// `kind:value`, as stored and as the API accepts it.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.value)
    }

    /// `kind:value` as people read it: serials and UDIDs in capitals, as Apple and the MDMs
    /// write them (`serial:C02ZK1ABMD6T`). Values are kept lowercased, for matching without
    /// regard to case, and any case is accepted back.
    pub fn shown(&self) -> String {
        match self.kind {
            AliasKind::Serial | AliasKind::Udid => {
                format!("{}:{}", self.kind.as_str(), self.value.to_ascii_uppercase())
            }
            _ => self.key(),
        }
    }
}

/// One device's aliases in a single allocation, each as its kind byte, its length (LEB128) and
/// its text, sorted so that equal sets are equal bytes. A `Vec<Alias>` would cost an allocation
/// per alias plus 24 bytes a slot; this costs the text and two or three bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AliasList(Box<[u8]>);

impl AliasList {
    pub fn iter(&self) -> AliasIter<'_> {
        AliasIter(&self.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, alias: AliasRef<'_>) -> bool {
        self.iter().any(|a| a == alias)
    }

    /// Adds `alias`; false when it was there already.
    pub fn insert(&mut self, alias: AliasRef<'_>) -> bool {
        if self.contains(alias) {
            return false;
        }
        let mut all: Vec<AliasRef<'_>> = self.iter().collect();
        all.push(alias);
        all.sort_by(|a, b| (a.kind, a.value).cmp(&(b.kind, b.value)));
        self.0 = pack(&all);
        true
    }

    /// Takes `alias` out; false when it was not there.
    pub fn remove(&mut self, alias: AliasRef<'_>) -> bool {
        if !self.contains(alias) {
            return false;
        }
        let rest: Vec<AliasRef<'_>> = self.iter().filter(|a| *a != alias).collect();
        self.0 = pack(&rest);
        true
    }
}

fn pack(aliases: &[AliasRef<'_>]) -> Box<[u8]> {
    let mut bytes = Vec::with_capacity(aliases.iter().map(|a| a.value.len() + 6).sum());
    for a in aliases {
        bytes.push(a.kind as u8);
        let mut len = a.value.len();
        while len >= 0x80 {
            bytes.push((len as u8) | 0x80);
            len >>= 7;
        }
        bytes.push(len as u8);
        bytes.extend_from_slice(a.value.as_bytes());
    }
    bytes.into_boxed_slice()
}

#[derive(Clone)]
pub struct AliasIter<'a>(&'a [u8]);

impl<'a> Iterator for AliasIter<'a> {
    type Item = AliasRef<'a>;

    fn next(&mut self) -> Option<AliasRef<'a>> {
        let (&kind, mut rest) = self.0.split_first()?;
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let (&b, tail) = rest.split_first()?;
            rest = tail;
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        let (text, tail) = rest.split_at_checked(len)?;
        self.0 = tail;
        Some(AliasRef {
            kind: *KINDS.get(usize::from(kind))?,
            // Only `pack` writes these bytes, from `&str`s, cut at their own lengths.
            value: std::str::from_utf8(text).unwrap_or_default(),
        })
    }
}

/// Alias -> device, with no alias text: each entry holds 32 bits of the alias's hash and the
/// device number, and a lookup confirms a candidate against that device's [`AliasList`], so a
/// hash collision costs a comparison, never a wrong answer. Most entries sit packed in a table
/// with no empty slots (8 bytes each); the ones added since it was built sit in a small hash
/// table beside it, merged into it when they pass a quarter of it.
#[derive(Debug, Clone, Default)]
pub struct AliasIndex {
    packed: PackedTable<u32, u32>,
    recent: HashTable<Slot>,
    hasher: foldhash::fast::RandomState,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    tag: u32,
    device: u32,
}

/// Recent entries this few are never merged: merging a tiny table gains nothing.
const MIN_MERGE: usize = 4096;

impl AliasIndex {
    fn tag(&self, alias: AliasRef<'_>) -> u32 {
        (self.hasher.hash_one((alias.kind, alias.value)) >> 32) as u32
    }

    /// The table's hash of a slot, rebuilt from its tag alone when the table grows.
    fn spread(tag: u32) -> u64 {
        u64::from(tag).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// The device holding `alias`, given how to read a device's aliases.
    pub fn get<'d>(
        &self,
        alias: AliasRef<'_>,
        aliases_of: impl Fn(DeviceId) -> Option<&'d AliasList>,
    ) -> Option<DeviceId> {
        let tag = self.tag(alias);
        let holder = |device: u32| holds(&aliases_of, device, alias);
        self.recent
            .find(Self::spread(tag), |s| s.tag == tag && holder(s.device))
            .map(|s| s.device)
            .or_else(|| self.packed.values_of(&tag).find(|d| holder(*d)))
            .map(|d| DeviceId(d.into()))
    }

    /// Points `alias` at `device`; returns the device it pointed at before, if another.
    pub fn set<'d>(
        &mut self,
        alias: AliasRef<'_>,
        device: DeviceId,
        aliases_of: impl Fn(DeviceId) -> Option<&'d AliasList>,
    ) -> Option<DeviceId> {
        let tag = self.tag(alias);
        let number = device.number();
        let holder = |device: u32| holds(&aliases_of, device, alias);
        let hash = Self::spread(tag);
        let old = match self
            .recent
            .find_mut(hash, |s| s.tag == tag && holder(s.device))
        {
            Some(slot) => Some(std::mem::replace(&mut slot.device, number)),
            None => self.packed.replace_first(&tag, holder, number),
        };
        match old {
            Some(old) => (old != number).then_some(DeviceId(old.into())),
            None => {
                let slot = Slot {
                    tag,
                    device: number,
                };
                self.recent
                    .insert_unique(hash, slot, |s| Self::spread(s.tag));
                if self.recent.len() > MIN_MERGE.max(self.packed.len() / 4) {
                    self.merge();
                }
                None
            }
        }
    }

    /// Moves the recent entries into the packed table: after a load, and when they grow.
    pub fn merge(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        let recent = std::mem::take(&mut self.recent);
        let all = self
            .packed
            .iter()
            .chain(recent.iter().map(|s| (s.tag, s.device)));
        self.packed = PackedTable::keeping_all(all);
    }
}

fn holds<'d>(
    aliases_of: &impl Fn(DeviceId) -> Option<&'d AliasList>,
    device: u32,
    alias: AliasRef<'_>,
) -> bool {
    aliases_of(DeviceId(device.into())).is_some_and(|list| list.contains(alias))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(kind: AliasKind, value: &str) -> Alias {
        Alias::new(kind, value)
    }

    #[test]
    fn a_list_keeps_each_alias_once_in_order() {
        let mut list = AliasList::default();
        let serial = alias(AliasKind::Serial, "C02XYZ");
        let long = alias(AliasKind::Name, &"x".repeat(300));
        assert!(list.insert(serial.as_ref()));
        assert!(list.insert(long.as_ref()));
        assert!(list.insert(alias(AliasKind::JamfComputer, "42").as_ref()));
        assert!(!list.insert(serial.as_ref()));
        let kinds: Vec<AliasKind> = list.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            [AliasKind::JamfComputer, AliasKind::Serial, AliasKind::Name]
        );
        assert!(list.contains(long.as_ref()));
        assert_eq!(list.iter().last().unwrap().value.len(), 300);
        assert!(list.remove(serial.as_ref()));
        assert!(!list.remove(serial.as_ref()));
        assert!(!list.contains(serial.as_ref()));
        assert_eq!(list.iter().count(), 2);
    }

    #[test]
    fn same_aliases_in_any_order_are_equal_lists() {
        let (a, b) = (alias(AliasKind::Udid, "u-1"), alias(AliasKind::Mac, "aa"));
        let (mut one, mut two) = (AliasList::default(), AliasList::default());
        one.insert(a.as_ref());
        one.insert(b.as_ref());
        two.insert(b.as_ref());
        two.insert(a.as_ref());
        assert_eq!(one, two);
    }

    #[test]
    fn the_index_finds_moves_and_survives_colliding_tags() {
        let mut lists: Vec<AliasList> = vec![AliasList::default(); 3];
        let mut index = AliasIndex::default();
        let serial = alias(AliasKind::Serial, "c02abc");
        // Device 1 gets the serial.
        lists[1].insert(serial.as_ref());
        assert_eq!(
            index.set(serial.as_ref(), DeviceId(1), |id| lists.get(id.0 as usize)),
            None
        );
        assert_eq!(
            index.get(serial.as_ref(), |id| lists.get(id.0 as usize)),
            Some(DeviceId(1))
        );
        // It moves to device 2: the index says who had it.
        assert_eq!(
            index.set(serial.as_ref(), DeviceId(2), |id| lists.get(id.0 as usize)),
            Some(DeviceId(1))
        );
        lists[1].remove(serial.as_ref());
        lists[2].insert(serial.as_ref());
        assert_eq!(
            index.get(serial.as_ref(), |id| lists.get(id.0 as usize)),
            Some(DeviceId(2))
        );
        // A slot whose tag matches but whose device lacks the alias is not an answer.
        let other = alias(AliasKind::Serial, "c02zzz");
        let forged = Slot {
            tag: index.tag(other.as_ref()),
            device: 2,
        };
        index
            .recent
            .insert_unique(AliasIndex::spread(forged.tag), forged, |s: &Slot| {
                AliasIndex::spread(s.tag)
            });
        for merged in [false, true] {
            if merged {
                // The same, once packed.
                index.merge();
                assert!(index.recent.is_empty());
            }
            assert_eq!(
                index.get(other.as_ref(), |id| lists.get(id.0 as usize)),
                None
            );
            assert_eq!(
                index.get(serial.as_ref(), |id| lists.get(id.0 as usize)),
                Some(DeviceId(2))
            );
        }
        // A packed entry moves in place.
        assert_eq!(
            index.set(serial.as_ref(), DeviceId(1), |id| lists.get(id.0 as usize)),
            Some(DeviceId(2))
        );
        assert!(index.recent.is_empty());
        lists[2].remove(serial.as_ref());
        lists[1].insert(serial.as_ref());
        assert_eq!(
            index.get(serial.as_ref(), |id| lists.get(id.0 as usize)),
            Some(DeviceId(1))
        );
    }

    #[test]
    fn the_index_finds_every_alias_across_merges() {
        let n = 3 * MIN_MERGE;
        let aliases: Vec<Alias> = (0..n)
            .map(|i| alias(AliasKind::Serial, &format!("c{i}")))
            .collect();
        let mut lists = vec![AliasList::default(); n + 1];
        let mut index = AliasIndex::default();
        for (i, a) in aliases.iter().enumerate() {
            lists[i + 1].insert(a.as_ref());
            index.set(a.as_ref(), DeviceId(i as u64 + 1), |id| {
                lists.get(id.0 as usize)
            });
        }
        assert!(index.packed.len() > MIN_MERGE, "some were merged");
        for (i, a) in aliases.iter().enumerate() {
            let found = index.get(a.as_ref(), |id| lists.get(id.0 as usize));
            assert_eq!(found, Some(DeviceId(i as u64 + 1)), "{i}");
        }
    }
}
