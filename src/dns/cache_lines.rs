//! The answer cache's table: set-associative, each set one 64-byte cache line holding three
//! entries and their hash tags. A lookup reads a line and one entry, where a hash map reads
//! its control bytes, a bucket and the entry; the line can be prefetched while the policy
//! decides; and its size is fixed, so eviction is a choice within a set, not a sweep.
//!
//! Each key has two sets to choose from (two-choice hashing) and goes to the emptier one: with
//! one set, a table a third full already lost 2 % of what it was given to full sets (three ways
//! hold a Poisson(1) load only 98 % of the time); with two, none until half full, and at three
//! quarters 2 % (see BENCHMARKS.md). A lookup reads the second line only when the first does not
//! hold the key.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// What the table needs of an entry: the key it is stored under.
pub trait Keyed: Clone {
    fn key(&self) -> &[u8];
}

/// Entries per set: three entries (16 bytes each) and their tags fill one line.
const WAYS: usize = 3;
/// Sets are split over this many locks, so that an insert holds up few readers.
const SHARDS: usize = 64;

#[repr(C, align(64))]
struct Set<E> {
    tags: [u32; WAYS],
    entries: [Option<E>; WAYS],
}

impl<E> Default for Set<E> {
    fn default() -> Self {
        Set {
            tags: [0; WAYS],
            entries: [None, None, None],
        }
    }
}

/// A fixed number of entries, each found by the 64-bit hash of its key.
/// One shard: its sets, behind one lock.
type Shard<E> = RwLock<Box<[Set<E>]>>;

pub struct CacheLines<E> {
    shards: Box<[Shard<E>]>,
    /// Where each shard's sets start, for prefetching only: the boxes are made once and never
    /// replaced, so these addresses hold for the table's life.
    addresses: Box<[usize]>,
    sets_per_shard: usize,
    len: AtomicUsize,
}

/// Where a hash's sets are: its shard, its two sets in the shard (they may be one), and the
/// tag its entry carries.
#[derive(Clone, Copy)]
struct Place {
    shard: usize,
    sets: [usize; 2],
    tag: u32,
}

impl<E: Keyed> CacheLines<E> {
    /// Room for about `capacity` entries (at least one set per shard).
    pub fn new(capacity: usize) -> Self {
        let sets_per_shard = capacity.div_ceil(WAYS * SHARDS).max(1);
        let sets: Vec<Box<[Set<E>]>> = (0..SHARDS)
            .map(|_| (0..sets_per_shard).map(|_| Set::default()).collect())
            .collect();
        let addresses = sets.iter().map(|s| s.as_ptr() as usize).collect();
        CacheLines {
            shards: sets.into_iter().map(RwLock::new).collect(),
            addresses,
            sets_per_shard,
            len: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn place(&self, hash: u64) -> Place {
        // The top bits pick the shard, a multiply-shift of the low half the first set (no power
        // of two needed), of the hash mixed once more the second; the high half is the tag.
        let second = (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32;
        Place {
            shard: (hash >> 58) as usize % SHARDS,
            sets: [self.set_of(hash as u32), self.set_of(second)],
            tag: (hash >> 32) as u32,
        }
    }

    fn set_of(&self, bits: u32) -> usize {
        ((u64::from(bits) * self.sets_per_shard as u64) >> 32) as usize
    }

    /// Asks the CPU to start loading `hash`'s set now, so that a lookup a little later finds it
    /// in cache. Only a hint: it reads nothing and takes no lock.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            let p = self.place(hash);
            for set in p.sets {
                let line = self.addresses[p.shard] + set * std::mem::size_of::<Set<E>>();
                // SAFETY: a prefetch is a hint; it never faults and reads nothing into the
                // program.
                unsafe {
                    std::arch::x86_64::_mm_prefetch(
                        line as *const i8,
                        std::arch::x86_64::_MM_HINT_T0,
                    );
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = hash;
    }

    /// The entry stored for `key` (whose hash is `hash`), if any.
    pub fn get(&self, hash: u64, key: &[u8]) -> Option<E> {
        let p = self.place(hash);
        let sets = self.read(p.shard);
        p.sets.iter().find_map(|&s| {
            let set = &sets[s];
            (0..WAYS).find_map(|w| {
                let entry = set.entries[w].as_ref()?;
                (set.tags[w] == p.tag && entry.key() == key).then(|| entry.clone())
            })
        })
    }

    /// Stores `entry` under `hash`: in place of the same key, else in a free way of the emptier
    /// set (the first when they tie), else in place of the way of either set that
    /// `evict_first` ranks first.
    pub fn insert(&self, hash: u64, entry: E, evict_first: impl Fn(&E) -> u64) {
        let p = self.place(hash);
        let mut sets = self.write(p.shard);
        let same = p.sets.iter().find_map(|&s| {
            let set = &sets[s];
            (0..WAYS)
                .find(|&w| {
                    set.tags[w] == p.tag
                        && set.entries[w]
                            .as_ref()
                            .is_some_and(|e| e.key() == entry.key())
                })
                .map(|w| (s, w))
        });
        let free = |s: usize| (0..WAYS).filter(|&w| sets[s].entries[w].is_none()).count();
        let emptier = match p.sets {
            [a, b] if free(b) > free(a) => b,
            [a, _] => a,
        };
        let (s, way) = same
            .or_else(|| {
                (0..WAYS)
                    .find(|&w| sets[emptier].entries[w].is_none())
                    .map(|w| (emptier, w))
            })
            .unwrap_or_else(|| {
                p.sets
                    .iter()
                    .flat_map(|&s| (0..WAYS).map(move |w| (s, w)))
                    .min_by_key(|&(s, w)| sets[s].entries[w].as_ref().map_or(0, &evict_first))
                    .unwrap_or((p.sets[0], 0))
            });
        let set = &mut sets[s];
        if set.entries[way].is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        set.tags[way] = p.tag;
        set.entries[way] = Some(entry);
    }

    fn read(&self, shard: usize) -> RwLockReadGuard<'_, Box<[Set<E>]>> {
        self.shards[shard]
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self, shard: usize) -> RwLockWriteGuard<'_, Box<[Set<E>]>> {
        self.shards[shard]
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug)]
    struct Entry {
        key: Vec<u8>,
        answer: Vec<u8>,
        lifetime: u32,
    }

    impl Keyed for Entry {
        fn key(&self) -> &[u8] {
            &self.key
        }
    }

    impl Entry {
        fn lifetime(&self) -> u32 {
            self.lifetime
        }
    }

    fn entry(key: &str, lifetime: u32) -> Entry {
        Entry {
            key: key.as_bytes().to_vec(),
            answer: key.as_bytes().to_vec(),
            lifetime,
        }
    }

    /// Hashes that land in one set of a one-set-per-shard table, with distinct tags.
    fn same_set(n: u64) -> impl Iterator<Item = u64> {
        (1..=n).map(|t| t << 32)
    }

    #[test]
    fn a_set_holds_three_and_then_evicts_the_one_ranked_first() {
        let lines = CacheLines::new(1);
        let keys = ["a", "b", "c", "d"];
        let hashes: Vec<u64> = same_set(4).collect();
        for (k, h) in keys.iter().zip(&hashes).take(3) {
            lines.insert(*h, entry(k, 60), |e| u64::from(e.lifetime()));
        }
        assert_eq!(lines.len(), 3);
        // "b" expires first: it gives way to "d".
        lines.insert(hashes[1], entry("b", 5), |e| u64::from(e.lifetime()));
        lines.insert(hashes[3], entry("d", 60), |e| u64::from(e.lifetime()));
        assert_eq!(lines.len(), 3);
        assert!(lines.get(hashes[1], b"b").is_none());
        for i in [0, 2, 3] {
            let found = lines.get(hashes[i], keys[i].as_bytes()).expect("kept");
            assert_eq!(found.key(), keys[i].as_bytes());
        }
    }

    /// SplitMix64: well-spread hashes, the same on every run.
    fn spread(i: u64) -> u64 {
        let mut z = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn a_table_for_n_entries_keeps_what_it_is_given_until_well_past_half_full() {
        const N: usize = 300_000;
        // (share of N given, share of it the table must still hold)
        for (given, kept) in [(1.0 / 3.0, 0.9999), (0.5, 0.998), (0.75, 0.97)] {
            let lines = CacheLines::new(N);
            let n = (N as f64 * given) as u64;
            for i in 0..n {
                lines.insert(spread(i), entry(&i.to_string(), 60), |_| 0);
            }
            let held = lines.len() as f64 / n as f64;
            assert!(held >= kept, "{n} given, {} held", lines.len());
            let found = (0..n)
                .filter(|&i| lines.get(spread(i), i.to_string().as_bytes()).is_some())
                .count();
            assert_eq!(found, lines.len(), "every entry held is found");
        }
    }

    #[test]
    fn the_same_key_is_replaced_in_place() {
        let lines = CacheLines::new(300);
        lines.insert(42, entry("k", 1), |_| 0);
        lines.insert(42, entry("k", 99), |_| 0);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines.get(42, b"k").map(|e| e.lifetime()), Some(99));
        lines.prefetch(42);
        // A probe with another tag does not find it, though the set is the same.
        assert!(lines.get((7 << 32) | 42, b"k").is_none());
    }

    #[test]
    fn readers_and_writers_at_once_only_ever_see_the_entry_for_their_key() {
        let lines = std::sync::Arc::new(CacheLines::new(30));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let lines = lines.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let k = (i * 7 + t) % 97;
                        let key = format!("key-{k}");
                        // A deliberately poor hash: many keys share sets and tags.
                        let hash = (k % 5) << 32 | (k % 11);
                        if i % 3 == 0 {
                            let e = entry(&key, 60);
                            lines.insert(hash, e, |e| u64::from(e.lifetime()));
                        } else if let Some(found) = lines.get(hash, key.as_bytes()) {
                            assert_eq!(found.answer, key.as_bytes());
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(lines.len() <= 64 * WAYS);
    }
}
