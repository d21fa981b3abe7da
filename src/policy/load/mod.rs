//! Load time: the policy directory and the block lists it names, read and turned into the parts
//! a snapshot is built from. Nothing here runs on the query path.
//!
//! `dir.rs` reads the directory (categories.toml, services.toml, groups.toml, one file per
//! policy). Each list it names goes through `list.rs`, which detects every line's format and
//! hands the line to `plain.rs` (plain domains, hosts), `adblock.rs`, `dnsmasq.rs` or `zone.rs`
//! (RPZ, Unbound); `ut1.rs` reads UT1 category trees. `entry.rs` is what every format gives, and
//! `names.rs` the form every name is stored in. A list named by URL is read from its last good
//! copy: `source.rs` is how categories.toml names lists, `cache.rs` the copies on disk that the
//! fetcher (`src/lists/`) writes.

mod adblock;
mod cache;
mod dir;
mod dnsmasq;
mod entry;
mod list;
pub mod names;
mod plain;
mod source;
#[cfg(test)]
mod testing;
mod ut1;
mod zone;

pub use cache::{CacheMeta, ListCache};
pub use dir::{FileError, GroupDef, PolicyErrors, PolicySet, UrlListReport};
pub use entry::{ListEntry, ListStats, SkipReason};
pub use list::{parse_list, parse_reader};
pub use source::{fetchable, url_lists, ListSource, UrlList};
pub use ut1::load_ut1_dir;
pub use zone::rpz_policy;
