//! Jamf Pro, an adapter at the edge: its webhooks and API reads become the control plane's
//! neutral requests, and it runs its own follow-ups (group re-reads, inventory look-ups).

pub mod api;
pub mod events;
pub mod json;
pub mod sync;
pub mod translate;
pub mod webhook;
