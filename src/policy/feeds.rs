//! The feeds' part of the category DB: what RPZ zones transferred from their primaries list,
//! changed a few names at a time without rebuilding a million-entry table.
//!
//! A `FeedDb` is a compact [`CategoryDb`] built at the last full load (the base) and an overlay
//! of the domains changed since, each with its whole new (categories, exceptions) pair: an
//! overlay entry replaces the base's, so an empty pair takes a domain out. An IXFR of a thousand
//! changes copies the overlay and adds a thousand entries; once the overlay grows past a share
//! of the base, the feeds task builds a new base off the query path.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::categories::{BuildError, CategoryDb, CategoryDbBuilder, CategorySet, Matches};
use super::qname::{QName, MAX_LABELS};

/// A domain's categories from the feeds, and the categories its exceptions clear.
pub type Listing = (CategorySet, CategorySet);

/// The overlay size past which a new base is cheaper than copying the overlay on every change.
const OVERLAY_MIN: usize = 8192;
const OVERLAY_SHARE: usize = 16;

/// The immutable feed DB a snapshot holds.
#[derive(Debug)]
pub struct FeedDb {
    /// Shared by every DB changes were laid over since the last build.
    base: Arc<CategoryDb>,
    overlay: FxHashMap<u64, Listing>,
}

impl Default for FeedDb {
    fn default() -> Self {
        FeedDb {
            base: Arc::new(CategoryDb::empty()),
            overlay: FxHashMap::default(),
        }
    }
}

impl FeedDb {
    /// A DB with `listings` as its base (domain hashes from [`super::qname::hash_dotted`]).
    pub fn build(listings: impl Iterator<Item = (u64, Listing)>) -> Result<FeedDb, BuildError> {
        let mut builder = CategoryDbBuilder::new();
        for (hash, (set, clear)) in listings {
            for id in set.iter() {
                builder.add(hash, id, false);
            }
            for id in clear.iter() {
                builder.add(hash, id, true);
            }
        }
        Ok(FeedDb {
            base: Arc::new(builder.build()?),
            overlay: FxHashMap::default(),
        })
    }

    /// This DB with `changes` laid over it: each domain's listing replaced by the one given.
    pub fn with_changes(&self, changes: impl Iterator<Item = (u64, Listing)>) -> FeedDb {
        let mut overlay = self.overlay.clone();
        overlay.extend(changes);
        FeedDb {
            base: self.base.clone(),
            overlay,
        }
    }

    /// Whether the overlay has grown enough that a new base should be built.
    pub fn wants_rebuild(&self) -> bool {
        self.overlay.len() > OVERLAY_MIN.max(self.base.len() / OVERLAY_SHARE)
    }

    pub fn is_empty(&self) -> bool {
        self.base.is_empty() && self.overlay.is_empty()
    }

    /// Domains changed since the base was built.
    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    /// Heap bytes of the base and the overlay.
    pub fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(u64, Listing)>() + 1;
        self.base.heap_bytes() + self.overlay.capacity() * entry
    }

    /// Adds what the feeds list for `name` to `found`.
    #[inline]
    pub fn gather(&self, name: &QName, found: &mut Matches) {
        if self.overlay.is_empty() {
            return self.base.gather(name, found);
        }
        let mut hashes = [0u64; MAX_LABELS];
        let n = name.suffix_hashes(&mut hashes);
        for h in &hashes[..n] {
            match self.overlay.get(h) {
                Some(&listing) => found.add(Some(listing)),
                None => found.add(self.base.probe(*h)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::categories::CategoryId;
    use super::super::qname::hash_dotted;
    use super::*;

    fn set(ids: &[u8]) -> CategorySet {
        let mut s = CategorySet::EMPTY;
        for &id in ids {
            s.insert(CategoryId::new(id).unwrap());
        }
        s
    }

    fn cats(db: &FeedDb, name: &str) -> CategorySet {
        let mut found = Matches::default();
        db.gather(&QName::from_dotted(name).unwrap(), &mut found);
        found.done().categories
    }

    #[test]
    fn changes_add_replace_and_remove_domains_of_the_base() {
        let base = FeedDb::build(
            [
                (hash_dotted("evil.example"), (set(&[0]), set(&[]))),
                (hash_dotted("gone.example"), (set(&[0]), set(&[]))),
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(cats(&base, "a.evil.example"), set(&[0]));
        let changed = base.with_changes(
            [
                (hash_dotted("gone.example"), (set(&[]), set(&[]))),
                (hash_dotted("new.example"), (set(&[2]), set(&[]))),
                (hash_dotted("ok.evil.example"), (set(&[]), set(&[0]))),
            ]
            .into_iter(),
        );
        assert_eq!(cats(&changed, "x.gone.example"), set(&[]));
        assert_eq!(cats(&changed, "new.example"), set(&[2]));
        assert_eq!(cats(&changed, "a.evil.example"), set(&[0]));
        assert_eq!(cats(&changed, "a.ok.evil.example"), set(&[]));
        // The DB changes were laid over is untouched: snapshots holding it answer as before.
        assert_eq!(cats(&base, "x.gone.example"), set(&[0]));
        assert_eq!(changed.overlay_len(), 3);
    }

    #[test]
    fn a_large_overlay_asks_for_a_new_base() {
        let db = FeedDb::default();
        let few = db.with_changes((0..100u64).map(|h| (h, (set(&[1]), set(&[])))));
        assert!(!few.wants_rebuild());
        let many = db.with_changes((0..10_000u64).map(|h| (h, (set(&[1]), set(&[])))));
        assert!(many.wants_rebuild());
    }
}
