//! The query log: every answered query (or only the blocked ones) written as a JSON line to a
//! file rotated by size, or sent to a dnstap collector as CLIENT_QUERY and CLIENT_RESPONSE
//! frames. Off by default: it is personal data (who asked for what), and the client can be
//! shown as its address, a keyed hash of it, or not at all.
//!
//! Records come from the query path through the handler's log tap (`dns/record.rs`), a bounded
//! queue that drops and counts what does not fit; one thread drains it, so neither a full disk
//! nor a slow or absent collector ever holds up an answer.
//!
//! `settings.rs` checks `[query_log]`; `client.rs` is how the client is shown; `json.rs` one
//! record as one line and `file.rs` the file and its rotation; `dnstap.rs` the dnstap messages,
//! `framestream.rs` the Frame Streams protocol and `collector.rs` the connection to the
//! collector; `report.rs` counts and logs failures; `task.rs` starts and stops the thread.

mod client;
mod collector;
mod dnstap;
mod file;
mod framestream;
mod json;
mod report;
mod settings;
mod task;

pub use dnstap::{Dnstap, Message, MessageType, SocketFamily, SocketProtocol};
pub use framestream::DNSTAP as DNSTAP_CONTENT_TYPE;
pub use settings::{
    ClientSetting, DnstapConfig, ModeSetting, OutputSetting, QueryLogConfig, QueryLogConfigError,
    Settings,
};
pub use task::{start, QueryLogError, QueryLogTask};
