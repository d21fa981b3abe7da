//! An immutable hash table with no empty slots, for maps of millions of entries read less than
//! once a query: the device view's aliases and token digests, the writer's alias index. A
//! growable hash table keeps a power of two of slots, so at exactly 1M or 2M entries it is half
//! empty; this one keeps its entries packed, grouped by bucket (about four a bucket), and an
//! array of where each bucket starts. A lookup reads the bucket's start and end (one cache line)
//! and then its entries (usually one more); the second read waits for the first, where a swiss
//! table issues both at once, so the address bindings every query reads stay in a hash table.

use std::hash::{BuildHasher, Hash};

use rustc_hash::FxBuildHasher;

/// Entries a bucket holds on average: a bucket of 16-byte entries fits a cache line.
const BUCKET_LOG2: u32 = 2;

/// A key and its value with no padding between or after them.
#[repr(C, packed)]
#[derive(Clone, Copy)]
struct Entry<K: Copy, V: Copy> {
    key: K,
    value: V,
}

#[derive(Clone)]
pub struct PackedTable<K: Copy, V: Copy> {
    /// Bucket `b` holds `entries[starts[b]..starts[b + 1]]`.
    starts: Box<[u32]>,
    entries: Box<[Entry<K, V>]>,
    /// 64 less the bucket count's log2: a hash's top bits pick its bucket.
    shift: u32,
}

impl<K: Copy, V: Copy> std::fmt::Debug for PackedTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedTable({} entries)", self.entries.len())
    }
}

impl<K: Copy + Hash + Eq, V: Copy> Default for PackedTable<K, V> {
    fn default() -> Self {
        PackedTable::build(Vec::new(), false)
    }
}

impl<K: Copy + Hash + Eq, V: Copy> FromIterator<(K, V)> for PackedTable<K, V> {
    /// A key given twice keeps its last value, as a map's `extend` does.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        PackedTable::build(
            entries.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            false,
        )
    }
}

impl<K: Copy + Hash + Eq, V: Copy> PackedTable<K, V> {
    #[inline]
    pub fn get(&self, key: &K) -> Option<V> {
        self.bucket_entries(key)
            .iter()
            .find(|e| { e.key } == *key)
            .map(|e| e.value)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.entries.iter().map(|e| (e.key, e.value))
    }

    /// This table with `changes` applied in order: `Some` sets a key, `None` removes it.
    pub fn merged(&self, changes: impl IntoIterator<Item = (K, Option<V>)>) -> Self {
        let mut all: Vec<(K, Option<V>)> = self.iter().map(|(k, v)| (k, Some(v))).collect();
        all.extend(changes);
        PackedTable::build(all, false)
    }

    /// A table of every entry given, however many share a key: for keys that are tags of what
    /// the values name, which the caller tells apart.
    pub fn keeping_all(entries: impl IntoIterator<Item = (K, V)>) -> Self {
        PackedTable::build(
            entries.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            true,
        )
    }

    /// The values under `key`, in the order given.
    pub fn values_of(&self, key: &K) -> impl Iterator<Item = V> + '_ {
        let key = *key;
        self.bucket_entries(&key)
            .iter()
            .filter(move |e| { e.key } == key)
            .map(|e| e.value)
    }

    /// Replaces the first value under `key` that `matches`; returns it.
    pub fn replace_first(&mut self, key: &K, matches: impl Fn(V) -> bool, value: V) -> Option<V> {
        let b = bucket(key, self.shift);
        let (start, end) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        let entry = self.entries[start..end]
            .iter_mut()
            .find(|e| { e.key } == *key && matches(e.value))?;
        let old = entry.value;
        entry.value = value;
        Some(old)
    }

    fn bucket_entries(&self, key: &K) -> &[Entry<K, V>] {
        let b = bucket(key, self.shift);
        &self.entries[self.starts[b] as usize..self.starts[b + 1] as usize]
    }

    /// The table of `items`. Unless `keep_all`, later items win over earlier ones of the same
    /// key, and a `None` value removes its key.
    fn build(items: Vec<(K, Option<V>)>, keep_all: bool) -> Self {
        let log2 = items
            .len()
            .next_power_of_two()
            .trailing_zeros()
            .saturating_sub(BUCKET_LOG2)
            .max(1);
        let shift = 64 - log2;
        let buckets = 1usize << log2;
        assert!(
            items.len() < u32::MAX as usize,
            "a packed table holds under 4G entries"
        );
        // Counting sort by bucket, stable, so that a later item follows an earlier one.
        let mut starts = vec![0u32; buckets + 1];
        for (k, _) in &items {
            starts[bucket(k, shift) + 1] += 1;
        }
        for b in 0..buckets {
            starts[b + 1] += starts[b];
        }
        let mut next = starts.clone();
        let mut order = vec![0u32; items.len()];
        for (i, (k, _)) in items.iter().enumerate() {
            let at = &mut next[bucket(k, shift)];
            order[*at as usize] = i as u32;
            *at += 1;
        }
        // Each bucket keeps the last value of each key, and drops removed keys.
        let mut entries: Vec<Entry<K, V>> = Vec::with_capacity(items.len());
        let mut kept: Vec<(K, Option<V>)> = Vec::new();
        for b in 0..buckets {
            kept.clear();
            for &i in &order[starts[b] as usize..starts[b + 1] as usize] {
                let (key, value) = items[i as usize];
                match kept.iter_mut().find(|(k, _)| !keep_all && *k == key) {
                    Some(old) => old.1 = value,
                    None => kept.push((key, value)),
                }
            }
            starts[b] = entries.len() as u32;
            entries.extend(kept.iter().filter_map(|(key, value)| {
                Some(Entry {
                    key: *key,
                    value: (*value)?,
                })
            }));
        }
        starts[buckets] = entries.len() as u32;
        PackedTable {
            starts: starts.into_boxed_slice(),
            entries: entries.into_boxed_slice(),
            shift,
        }
    }
}

/// The bucket of a key: the top bits of its hash, mixed once more since the fast hasher leaves
/// its best bits low.
#[inline]
fn bucket<K: Hash>(key: &K, shift: u32) -> usize {
    let h = FxBuildHasher.hash_one(key);
    ((h ^ (h >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_found_and_no_other() {
        for n in [0u64, 1, 2, 3, 5, 100, 4096, 100_000] {
            let t: PackedTable<u64, u32> = (0..n).map(|i| (i * 7919, i as u32)).collect();
            assert_eq!(t.len(), n as usize);
            for i in 0..n {
                assert_eq!(t.get(&(i * 7919)), Some(i as u32), "n={n} i={i}");
                assert_eq!(t.get(&(i * 7919 + 1)), None, "n={n} i={i}");
            }
        }
    }

    #[test]
    fn a_key_given_twice_keeps_its_last_value() {
        let t: PackedTable<u32, u8> = [(1, 1), (2, 2), (1, 3)].into_iter().collect();
        assert_eq!((t.get(&1), t.get(&2), t.len()), (Some(3), Some(2), 2));
    }

    #[test]
    fn merged_sets_and_removes_in_order() {
        let t: PackedTable<u32, u8> = [(1, 1), (2, 2), (3, 3)].into_iter().collect();
        let m = t.merged([
            (2, None),
            (4, Some(4)),
            (1, Some(9)),
            (4, None),
            (5, Some(5)),
        ]);
        let got: Vec<Option<u8>> = (1..=5).map(|k| m.get(&k)).collect();
        assert_eq!(got, [Some(9), None, Some(3), None, Some(5)]);
        assert_eq!(m.len(), 3);
        assert_eq!(t.get(&2), Some(2), "the table merged from is unchanged");
    }

    #[test]
    fn keeping_all_keeps_entries_of_one_key_apart() {
        let mut t = PackedTable::keeping_all([(7u32, 1u32), (8, 2), (7, 3)]);
        assert_eq!(t.values_of(&7).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(t.replace_first(&7, |v| v == 3, 4), Some(3));
        assert_eq!(t.replace_first(&7, |v| v == 9, 5), None);
        assert_eq!(t.values_of(&7).collect::<Vec<_>>(), [1, 4]);
        assert_eq!((t.values_of(&8).count(), t.values_of(&9).count()), (1, 0));
    }

    #[test]
    fn entries_carry_no_padding() {
        assert_eq!(std::mem::size_of::<Entry<u32, u64>>(), 12);
        assert_eq!(std::mem::size_of::<Entry<[u8; 16], u64>>(), 24);
    }
}
