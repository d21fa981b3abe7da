//! The control plane: the single writer that turns inputs into new snapshots.

pub mod writer;

pub use writer::{Control, ReloadReport};
