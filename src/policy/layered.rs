//! A map for a million devices that a snapshot can share: an immutable base, shared by `Arc`
//! between snapshots, under a small persistent overlay of the changes since. A publish copies a
//! path of the overlay, never the base; when the overlay outgrows a sixty-fourth of the base it
//! is merged into a new base, so the copy it costs is spread over as many changes.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::packed::PackedTable;

/// A persistent map with the fast non-keyed hasher: its keys are set by the control plane, and a
/// client can only look them up, not insert them.
pub type Map<K, V> =
    imbl::GenericHashMap<K, V, rustc_hash::FxBuildHasher, imbl::shared_ptr::DefaultSharedPtr>;

/// An overlay this small is never folded: folding a tiny map gains nothing.
const MIN_FOLD: usize = 4096;

/// What a [`LayeredMap`] keeps under its overlay.
pub trait Base<K, V>: Default + FromIterator<(K, V)> {
    fn get(&self, key: &K) -> Option<V>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// This base with `changes` applied in order: `Some` sets a key, `None` removes it.
    fn merged(&self, changes: impl Iterator<Item = (K, Option<V>)>) -> Self;
}

/// The compact base: no empty slots, but a lookup reads where its bucket starts before it reads
/// the bucket (two reads from memory, one after the other).
impl<K: Copy + Hash + Eq, V: Copy> Base<K, V> for PackedTable<K, V> {
    #[inline]
    fn get(&self, key: &K) -> Option<V> {
        PackedTable::get(self, key)
    }
    fn len(&self) -> usize {
        PackedTable::len(self)
    }
    fn merged(&self, changes: impl Iterator<Item = (K, Option<V>)>) -> Self {
        PackedTable::merged(self, changes)
    }
}

/// The fast base: a hash table finds a slot from the hash alone (its reads from memory go out
/// together), at the cost of the empty slots of a power-of-two table.
#[derive(Debug, Clone)]
pub struct Hashed<K, V>(FxHashMap<K, V>);

impl<K, V> Default for Hashed<K, V> {
    fn default() -> Self {
        Hashed(FxHashMap::default())
    }
}

impl<K: Hash + Eq, V> FromIterator<(K, V)> for Hashed<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut map = FxHashMap::default();
        map.extend(entries);
        map.shrink_to_fit();
        Hashed(map)
    }
}

impl<K: Copy + Hash + Eq, V: Copy> Base<K, V> for Hashed<K, V> {
    #[inline]
    fn get(&self, key: &K) -> Option<V> {
        self.0.get(key).copied()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn merged(&self, changes: impl Iterator<Item = (K, Option<V>)>) -> Self {
        let mut map = self.0.clone();
        for (k, v) in changes {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        Hashed(map)
    }
}

#[derive(Debug, Clone)]
pub struct LayeredMap<K: Hash + Eq + Copy, V: Copy, B = PackedTable<K, V>> {
    base: Arc<B>,
    /// Changes since the base: `None` marks a removal.
    overlay: Map<K, Option<V>>,
}

impl<K: Hash + Eq + Copy, V: Copy, B: Base<K, V>> Default for LayeredMap<K, V, B> {
    fn default() -> Self {
        LayeredMap {
            base: Arc::default(),
            overlay: Map::default(),
        }
    }
}

impl<K: Hash + Eq + Copy, V: Copy, B: Base<K, V>> FromIterator<(K, V)> for LayeredMap<K, V, B> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        LayeredMap {
            base: Arc::new(entries.into_iter().collect()),
            overlay: Map::default(),
        }
    }
}

impl<K: Hash + Eq + Copy, V: Copy, B: Base<K, V>> LayeredMap<K, V, B> {
    #[inline]
    pub fn get(&self, key: &K) -> Option<V> {
        if !self.overlay.is_empty() {
            if let Some(v) = self.overlay.get(key) {
                return *v;
            }
        }
        self.base.get(key)
    }

    /// True when nothing was ever put in (removals may leave it empty yet say false).
    pub fn is_empty(&self) -> bool {
        self.base.is_empty() && self.overlay.is_empty()
    }

    pub fn insert(&mut self, key: K, value: V) {
        self.overlay.insert(key, Some(value));
        self.fold_if_large();
    }

    pub fn remove(&mut self, key: &K) {
        if self.get(key).is_some() {
            self.overlay.insert(*key, None);
            self.fold_if_large();
        }
    }

    fn fold_if_large(&mut self) {
        if self.overlay.len() <= MIN_FOLD.max(self.base.len() / 64) {
            return;
        }
        let base = self.base.merged(self.overlay.iter().map(|(k, v)| (*k, *v)));
        self.base = Arc::new(base);
        self.overlay = Map::default();
    }
}

/// Source address -> a device's 32-bit number, for every query from a device bound by its
/// address: IPv4 keyed by its 32 bits, 8 bytes a slot rather than the 32 an `IpAddr` and a
/// 64-bit id take with their padding. A hash-table base, not a packed one: this lookup is on
/// every such query's path.
#[derive(Debug, Clone, Default)]
pub struct AddressMap {
    v4: LayeredMap<u32, u32, Hashed<u32, u32>>,
    v6: LayeredMap<u128, u32, Hashed<u128, u32>>,
}

impl AddressMap {
    #[inline]
    pub fn get(&self, addr: &IpAddr) -> Option<u32> {
        match addr {
            IpAddr::V4(a) => self.v4.get(&u32::from(*a)),
            IpAddr::V6(a) => self.v6.get(&u128::from(*a)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn insert(&mut self, addr: IpAddr, device: u32) {
        match addr {
            IpAddr::V4(a) => self.v4.insert(a.into(), device),
            IpAddr::V6(a) => self.v6.insert(a.into(), device),
        }
    }

    pub fn remove(&mut self, addr: &IpAddr) {
        match addr {
            IpAddr::V4(a) => self.v4.remove(&u32::from(*a)),
            IpAddr::V6(a) => self.v6.remove(&u128::from(*a)),
        }
    }
}

impl FromIterator<(IpAddr, u32)> for AddressMap {
    fn from_iter<I: IntoIterator<Item = (IpAddr, u32)>>(entries: I) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (addr, device) in entries {
            match addr {
                IpAddr::V4(a) => v4.push((u32::from(a), device)),
                IpAddr::V6(a) => v6.push((u128::from(a), device)),
            }
        }
        AddressMap {
            v4: v4.into_iter().collect(),
            v6: v6.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_the_overlay_over_the_base() {
        let mut m: LayeredMap<u64, u32> = [(1, 10), (2, 20)].into_iter().collect();
        m.insert(2, 21);
        m.insert(3, 30);
        m.remove(&1);
        assert_eq!(
            (m.get(&1), m.get(&2), m.get(&3), m.get(&4)),
            (None, Some(21), Some(30), None)
        );
    }

    #[test]
    fn a_clone_keeps_its_view_whatever_changes_after() {
        let mut m: LayeredMap<u64, u32> = (0..10_000).map(|i| (i, i as u32)).collect();
        let before = m.clone();
        for i in 0..20_000 {
            m.insert(i, 7);
        }
        m.remove(&5);
        assert_eq!(before.get(&5), Some(5));
        assert_eq!(before.get(&15_000), None);
        assert_eq!(m.get(&5), None);
        assert_eq!(m.get(&15_000), Some(7));
        assert_eq!(m.get(&9_999), Some(7));
    }

    #[test]
    fn folding_keeps_every_entry() {
        let mut m: LayeredMap<u64, u32> = LayeredMap::default();
        for i in 0..50_000u64 {
            m.insert(i, i as u32);
            if i % 3 == 0 {
                m.remove(&(i / 2));
            }
        }
        let mut expected: std::collections::HashMap<u64, u32> = Default::default();
        for i in 0..50_000u64 {
            expected.insert(i, i as u32);
            if i % 3 == 0 {
                expected.remove(&(i / 2));
            }
        }
        for i in 0..50_000u64 {
            assert_eq!(m.get(&i), expected.get(&i).copied(), "{i}");
        }
    }

    #[test]
    fn addresses_of_both_families_are_kept_apart() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let mut m: AddressMap = [(v4, 1), (v6, 2)].into_iter().collect();
        assert_eq!(
            (m.get(&v4), m.get(&v6), m.get(&mapped)),
            (Some(1), Some(2), None)
        );
        m.insert(mapped, 3);
        m.remove(&v4);
        assert_eq!((m.get(&v4), m.get(&mapped)), (None, Some(3)));
        assert!(!m.is_empty());
    }
}
