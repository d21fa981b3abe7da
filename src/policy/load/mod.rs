//! Load time: the policy directory and the block lists it names, read and turned into the parts
//! a snapshot is built from. Nothing here runs on the query path.

mod adblock;
mod dir;
mod dnsmasq;
mod entry;
mod list;
pub mod names;
mod plain;
#[cfg(test)]
mod testing;
mod ut1;
mod zone;

pub use dir::{FileError, GroupDef, PolicyErrors, PolicySet};
pub use entry::{ListEntry, ListStats, SkipReason};
pub use list::{parse_list, parse_reader};
pub use ut1::load_ut1_dir;
