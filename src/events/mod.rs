//! Events to the SOC: an adapter at the edge, beside `jamf/`, that tells a SOC's receivers
//! about every isolation placed or released, tripwire fired, approval requested or granted,
//! hold waiting or applied, and probation started or ended.
//!
//! The audit log is the outbox. Every such change is already written, in the same store
//! transaction as the change itself, as an audit row with an increasing id; each sink keeps a
//! cursor in the store (the last audit id it has passed) and its task delivers the rows after it,
//! at least once, whatever restarts or receivers that are down in between. The control plane
//! knows no sink.
//!
//! `settings.rs` checks `[[events.sink]]`; `event.rs` is which audit actions are events and the
//! JSON each becomes; `http.rs` the webhook (HMAC-signed JSON) and the Shared Signals push,
//! `ssf.rs` the signed SET (CAEP `device-compliance-change`), `syslog.rs` RFC 5424 over UDP or
//! TCP; `task.rs` the delivery tasks `app.rs` starts.

mod event;
mod http;
mod settings;
mod ssf;
mod syslog;
mod task;

pub use event::{rfc3339, Device, Event, TYPES};
pub use http::signature;
pub use settings::{sinks, EventsConfig, EventsConfigError, Sink, SinkConfig};
pub use ssf::DEVICE_COMPLIANCE_CHANGE;
pub use task::{spawn, EventTasks};
