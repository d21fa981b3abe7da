//! Policy: categories, rules, groups and the snapshot a decision reads; no I/O on the query path.
//!
//! The files here are what a decision reads, and how the snapshot is assembled; reading the
//! policy directory and parsing its lists is load time, in [`load`].

pub mod build;
pub mod categories;
pub mod cidr;
pub mod decide;
pub mod feeds;
pub mod layered;
pub mod load;
pub mod packed;
pub mod published;
pub mod qname;
pub mod rules;
pub mod snapshot;

pub use build::{PolicyParts, StaticBinding};
pub use categories::{CategoryDb, CategoryId, CategorySet, Taxonomy};
pub use decide::{check_target, decide, decide_and_tripwire, Decision, Reason, TripHit};
pub use feeds::FeedDb;
pub use load::{names, FileError, PolicyErrors, PolicySet};
pub use published::Published;
pub use qname::QName;
pub use snapshot::{DeviceId, GroupIdx, Policy, ResponseMode, Snapshot};
