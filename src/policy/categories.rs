//! The category DB: listed domain -> set of categories, compact enough for millions of domains.
//!
//! Each listed domain is one 8-byte slot in an open-addressing table: 48 bits of the domain's
//! keyed hash as a fingerprint and 16 bits naming an entry in a small palette of distinct
//! (categories, exceptions) pairs. A lookup hashes every suffix of the name once and probes one
//! slot per suffix. A fingerprint can collide with probability about 2^-48 per probe, which
//! would put a name in a category it does not belong to: never out of one.

use std::fmt;

use rustc_hash::FxHashMap;

use super::qname::{QName, MAX_LABELS};

/// A stable category id, 0..=63 (CATEGORIES.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CategoryId(u8);

impl CategoryId {
    pub const MAX: u8 = 63;

    pub fn new(id: u8) -> Option<Self> {
        (id <= Self::MAX).then_some(CategoryId(id))
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// Ids 0..=15 are the security categories (malware, phishing, command and control, ...):
    /// what an isolated device must never reach, directly or through a CNAME chain.
    pub fn is_security(self) -> bool {
        CategorySet::SECURITY.contains(self)
    }
}

/// A set of categories as one bitmask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CategorySet(u64);

impl CategorySet {
    pub const EMPTY: CategorySet = CategorySet(0);
    /// Every security category id, 0..=15 (`categories.toml`: "security (0-15)").
    pub const SECURITY: CategorySet = CategorySet(0xffff);

    pub fn insert(&mut self, id: CategoryId) {
        self.0 |= 1 << id.0;
    }

    pub fn contains(self, id: CategoryId) -> bool {
        self.0 & (1 << id.0) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn intersection(self, other: CategorySet) -> CategorySet {
        CategorySet(self.0 & other.0)
    }

    /// The lowest id in the set: security categories have the lowest ids, so this names the
    /// most serious reason first.
    pub fn first(self) -> Option<CategoryId> {
        (self.0 != 0).then(|| CategoryId(self.0.trailing_zeros() as u8))
    }

    pub fn iter(self) -> impl Iterator<Item = CategoryId> {
        (0..=CategoryId::MAX)
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(CategoryId)
    }

    pub fn without(self, other: CategorySet) -> CategorySet {
        CategorySet(self.0 & !other.0)
    }

    pub fn union(self, other: CategorySet) -> CategorySet {
        CategorySet(self.0 | other.0)
    }
}

/// The names of the categories, by id.
#[derive(Debug, Clone, Default)]
pub struct Taxonomy {
    names: Vec<Option<Box<str>>>,
}

impl Taxonomy {
    pub fn new() -> Self {
        Taxonomy {
            names: vec![None; CategoryId::MAX as usize + 1],
        }
    }

    pub fn insert(&mut self, id: CategoryId, name: &str) {
        self.names[id.0 as usize] = Some(name.into());
    }

    pub fn name(&self, id: CategoryId) -> &str {
        self.names
            .get(id.0 as usize)
            .and_then(|n| n.as_deref())
            .unwrap_or("unnamed")
    }

    pub fn id(&self, name: &str) -> Option<CategoryId> {
        self.names
            .iter()
            .position(|n| n.as_deref() == Some(name))
            .map(|i| CategoryId(i as u8))
    }

    pub fn iter(&self) -> impl Iterator<Item = (CategoryId, &str)> {
        self.names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_deref().map(|n| (CategoryId(i as u8), n)))
    }
}

/// What the DB says about one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Categorised {
    /// Categories of the name and of every listed domain above it, less exceptions.
    pub categories: CategorySet,
}

/// What a lookup gathers over a name's suffixes, from one DB or several (the lists' and the
/// feeds'): an exception in any of them clears its category for entries from all of them, as
/// if every source were one list.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Matches {
    set: CategorySet,
    clear: CategorySet,
}

impl Matches {
    #[inline]
    pub fn add(&mut self, entry: Option<(CategorySet, CategorySet)>) {
        if let Some((s, c)) = entry {
            self.set = self.set.union(s);
            self.clear = self.clear.union(c);
        }
    }

    #[inline]
    pub fn done(self) -> Categorised {
        Categorised {
            categories: self.set.without(self.clear),
        }
    }
}

/// Why a DB could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("more than 65535 distinct combinations of categories")]
    TooManyCombinations,
}

/// The built, immutable category DB.
pub struct CategoryDb {
    /// Four bits per listed domain, one set per domain hash: small enough to stay in cache, so
    /// that the suffixes no list names (most of them: `com`, `example.com`) are turned away
    /// without touching the big table.
    filter: Box<[u64]>,
    slots: Box<[u64]>,
    palette: Box<[(CategorySet, CategorySet)]>,
    domains: usize,
    per_category: [u32; 64],
}

const EMPTY: u64 = 0;
const FP_SHIFT: u32 = 16;
const PALETTE_MASK: u64 = 0xFFFF;
/// Slots per entry: 1 / 0.8 load factor keeps linear probes short.
const LOAD_NUM: usize = 5;
const LOAD_DEN: usize = 4;

impl CategoryDb {
    pub fn empty() -> Self {
        CategoryDb {
            filter: vec![0; 1].into_boxed_slice(),
            slots: vec![EMPTY; 1].into_boxed_slice(),
            palette: Box::new([]),
            domains: 0,
            per_category: [0; 64],
        }
    }

    /// Number of distinct listed domains.
    pub fn len(&self) -> usize {
        self.domains
    }

    pub fn is_empty(&self) -> bool {
        self.domains == 0
    }

    /// Listed domains per category (a domain in two categories counts in both).
    pub fn domains_in(&self, id: CategoryId) -> usize {
        self.per_category[id.0 as usize] as usize
    }

    /// Heap bytes the table holds.
    pub fn heap_bytes(&self) -> usize {
        self.filter.len() * 8 + self.slots.len() * 8 + self.palette.len() * 16
    }

    /// Categories of `name`.
    #[inline]
    pub fn lookup(&self, name: &QName) -> Categorised {
        let mut found = Matches::default();
        self.gather(name, &mut found);
        found.done()
    }

    /// Adds what the DB holds for `name` to `found`. The names of 2 to 16 labels that nearly all
    /// queries have take the fast path, which reads the first slot of every suffix before looking at any, so that the
    /// cache misses overlap instead of queueing behind each other.
    #[inline]
    pub fn gather(&self, name: &QName, found: &mut Matches) {
        const FAST: usize = 16;
        let n = name.label_count();
        if self.domains == 0 {
            return;
        }
        if n > FAST {
            let mut hashes = [0u64; MAX_LABELS];
            let n = name.suffix_hashes(&mut hashes);
            for &h in &hashes[..n] {
                found.add(self.probe(h));
            }
            return;
        }
        let mut hashes = [0u64; FAST];
        name.suffix_hashes(&mut hashes);
        let len = self.slots.len();
        let mut first = [EMPTY; FAST];
        for i in 0..n {
            let (word, bit) = filter_bit(hashes[i], self.filter.len());
            if self.filter[word] & bit != 0 {
                first[i] = self.slots[slot_index(hashes[i], len)];
            }
        }
        for i in 0..n {
            // Most suffixes are not listed and land on an empty slot: no second read.
            if first[i] != EMPTY {
                found.add(self.probe(hashes[i]));
            }
        }
    }

    /// The (categories, exceptions) of the domain whose hash is `h`, if listed.
    #[inline]
    pub fn probe(&self, h: u64) -> Option<(CategorySet, CategorySet)> {
        if self.domains == 0 {
            return None;
        }
        let fp = fingerprint(h);
        let len = self.slots.len();
        let mut i = slot_index(h, len);
        loop {
            let slot = self.slots[i];
            if slot == EMPTY {
                return None;
            }
            if slot >> FP_SHIFT == fp {
                return self.palette.get((slot & PALETTE_MASK) as usize).copied();
            }
            i += 1;
            if i == len {
                i = 0;
            }
        }
    }
}

impl fmt::Debug for CategoryDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CategoryDb")
            .field("domains", &self.domains)
            .field("slots", &self.slots.len())
            .field("palette", &self.palette.len())
            .finish()
    }
}

/// Collects (domain hash, category, exception) triples, then builds the table in one go.
#[derive(Default)]
pub struct CategoryDbBuilder {
    entries: Vec<(u64, u8, bool)>,
}

impl CategoryDbBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }

    /// Adds a listed domain by the hash of its name ([`super::qname::hash_dotted`]).
    pub fn add(&mut self, domain_hash: u64, category: CategoryId, exception: bool) {
        self.entries.push((domain_hash, category.0, exception));
    }

    pub fn build(mut self) -> Result<CategoryDb, BuildError> {
        self.entries.sort_unstable_by_key(|e| e.0);
        let merged = merge_runs(&self.entries);
        drop(self.entries);

        let mut palette_ids: FxHashMap<(CategorySet, CategorySet), u16> = FxHashMap::default();
        let mut palette = Vec::new();
        // At least one slot stays empty, so that every probe ends.
        let len = merged.len() * LOAD_NUM / LOAD_DEN + 1;
        let mut slots = vec![EMPTY; len].into_boxed_slice();
        let mut per_category = [0u32; 64];
        for &(h, set, clear) in &merged {
            for id in set.iter() {
                per_category[id.0 as usize] += 1;
            }
            let next = palette.len();
            let p = *palette_ids.entry((set, clear)).or_insert_with(|| {
                palette.push((set, clear));
                next as u16
            });
            if palette.len() > PALETTE_MASK as usize + 1 {
                return Err(BuildError::TooManyCombinations);
            }
            insert(&mut slots, h, p);
        }
        let mut filter = vec![0u64; filter_words(merged.len())].into_boxed_slice();
        for &(h, _, _) in &merged {
            let (word, bit) = filter_bit(h, filter.len());
            filter[word] |= bit;
        }
        Ok(CategoryDb {
            filter,
            slots,
            palette: palette.into_boxed_slice(),
            domains: merged.len(),
            per_category,
        })
    }
}

/// Folds the sorted triples into one (categories, exceptions) pair per distinct hash.
fn merge_runs(entries: &[(u64, u8, bool)]) -> Vec<(u64, CategorySet, CategorySet)> {
    let mut merged: Vec<(u64, CategorySet, CategorySet)> = Vec::with_capacity(entries.len());
    for &(h, cat, exception) in entries {
        if merged.last().map(|m| m.0) != Some(h) {
            merged.push((h, CategorySet::EMPTY, CategorySet::EMPTY));
        }
        let last = merged.last_mut().expect("pushed above");
        let target = if exception { &mut last.2 } else { &mut last.1 };
        target.insert(CategoryId(cat));
    }
    merged
}

fn insert(slots: &mut [u64], h: u64, palette: u16) {
    let len = slots.len();
    let mut i = slot_index(h, len);
    while slots[i] != EMPTY {
        i += 1;
        if i == len {
            i = 0;
        }
    }
    slots[i] = (fingerprint(h) << FP_SHIFT) | palette as u64;
}

/// Words of the prefilter for `domains` listed domains: at least four bits each, a power of two.
fn filter_words(domains: usize) -> usize {
    (domains * 4).div_ceil(64).next_power_of_two()
}

/// The prefilter bit of a hash: taken from bits the slot index and fingerprint weigh least.
#[inline]
fn filter_bit(h: u64, words: usize) -> (usize, u64) {
    let x = h.rotate_right(24);
    ((x >> 6) as usize & (words - 1), 1 << (x & 63))
}

/// The low 48 bits of the hash, never zero, so that zero can mark an empty slot.
#[inline]
fn fingerprint(h: u64) -> u64 {
    (h & 0xFFFF_FFFF_FFFF).max(1)
}

/// Maps the high bits of the hash onto 0..len without a division (Lemire's fast range).
#[inline]
fn slot_index(h: u64, len: usize) -> usize {
    ((h as u128 * len as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::super::qname::hash_dotted;
    use super::*;

    fn cat(id: u8) -> CategoryId {
        CategoryId::new(id).unwrap()
    }

    fn db(entries: &[(&str, u8, bool)]) -> CategoryDb {
        let mut b = CategoryDbBuilder::new();
        for &(d, c, e) in entries {
            b.add(hash_dotted(d), cat(c), e);
        }
        b.build().unwrap()
    }

    fn cats(db: &CategoryDb, name: &str) -> Vec<u8> {
        let q = QName::from_dotted(name).unwrap();
        db.lookup(&q).categories.iter().map(|c| c.get()).collect()
    }

    #[test]
    fn a_name_inherits_the_categories_of_listed_domains_above_it() {
        let db = db(&[("evil.example", 0, false), ("cdn.evil.example", 16, false)]);
        assert_eq!(cats(&db, "evil.example"), vec![0]);
        assert_eq!(cats(&db, "a.cdn.evil.example"), vec![0, 16]);
        assert_eq!(cats(&db, "example"), Vec::<u8>::new());
        assert_eq!(cats(&db, "notevil.example"), Vec::<u8>::new());
        assert_eq!(db.len(), 2);
        assert_eq!(db.domains_in(cat(0)), 1);
    }

    #[test]
    fn exceptions_clear_their_category_below_them() {
        let db = db(&[("ads.example", 16, false), ("good.ads.example", 16, true)]);
        assert_eq!(cats(&db, "x.ads.example"), vec![16]);
        assert_eq!(cats(&db, "good.ads.example"), Vec::<u8>::new());
        assert_eq!(cats(&db, "a.good.ads.example"), Vec::<u8>::new());
    }

    #[test]
    fn a_domain_listed_twice_merges_its_categories() {
        let db = db(&[
            ("x.test", 1, false),
            ("x.test", 2, false),
            ("x.test", 1, false),
        ]);
        assert_eq!(cats(&db, "x.test"), vec![1, 2]);
        assert_eq!(db.len(), 1);
    }

    #[test]
    fn every_inserted_domain_is_found_in_a_large_table() {
        let names: Vec<String> = (0..50_000)
            .map(|i| format!("host{i}.zone{}.test", i % 97))
            .collect();
        let mut b = CategoryDbBuilder::new();
        for (i, n) in names.iter().enumerate() {
            b.add(hash_dotted(n), cat((i % 64) as u8), false);
        }
        let db = b.build().unwrap();
        for (i, n) in names.iter().enumerate() {
            assert_eq!(cats(&db, n), vec![(i % 64) as u8], "{n}");
        }
        assert_eq!(cats(&db, "host1.zone2.test"), Vec::<u8>::new());
    }

    #[test]
    fn empty_db_finds_nothing() {
        let db = CategoryDb::empty();
        assert!(db
            .lookup(&QName::from_dotted("a.b").unwrap())
            .categories
            .is_empty());
    }
}
