//! The query log: every answered query (or only the blocked ones) written as a JSON line to a
//! file rotated by size. Off by default: it is personal data (who asked for what), and the client can be
//! shown as its address, a keyed hash of it, or not at all.
//!
//! Records come from the query path through the handler's log tap (`dns/record.rs`), a bounded
//! queue that drops and counts what does not fit; one thread drains it, so a full or slow disk
//! never holds up an answer.
//!
//! `settings.rs` checks `[query_log]`; `client.rs` is how the client is shown; `json.rs` one
//! record as one line and `file.rs` the file and its rotation; `report.rs` counts and logs
//! failures; `task.rs` starts and stops the thread.

mod client;
mod file;
mod json;
mod report;
mod settings;
mod task;

pub use settings::{ClientSetting, ModeSetting, QueryLogConfig, QueryLogConfigError, Settings};
pub use task::{start, QueryLogError, QueryLogTask};
