//! The control plane: the single writer that turns requests into durable changes and new
//! snapshots.
//!
//! A request ([`Request`], in no vendor's terms) reaches the writer through the [`Control`]
//! handle; the writer turns it into [`Change`]s, commits them to the [`store`], applies them to
//! its [`state`] and the device [`view`], publishes a snapshot, and only then answers.

mod alias;
pub mod change;
pub mod clock;
mod command;
mod handle;
mod holds;
mod inventory;
mod membership;
mod queries;
mod reload;
mod replica;
pub mod state;
pub mod store;
#[cfg(test)]
mod testing;
pub mod view;
mod watches;
mod writer;

pub use alias::shown_key;
pub use change::{AuditEvent, Change, Hold};
pub use clock::{Clock, ManualClock, SystemClock};
pub use command::{
    ApplyError, ApprovalInfo, DeviceInfo, DeviceRef, DeviceReport, Outcome, Query, QueryReply,
    ReloadReport, ReloadStatus, Request, Source, UemGroup,
};
pub use handle::Control;
pub use replica::Replica;
pub use state::{Alias, AliasKind};
pub use writer::WriterConfig;
