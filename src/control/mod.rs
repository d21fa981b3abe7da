//! The control plane: the single writer that turns inputs into durable state and new snapshots.

mod alias;
pub mod commands;
mod queries;
mod requests;
pub mod state;
pub mod store;
pub mod view;
pub mod writer;

pub use commands::{ApplyError, DeviceInfo, Outcome, Query, QueryReply, Request};
pub use writer::{Control, ReloadReport, WriterConfig};
