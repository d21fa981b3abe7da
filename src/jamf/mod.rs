//! Jamf Pro: the webhooks it sends, the API reconciliation reads, and the sync that uses both.

pub mod api;
pub mod events;
pub mod json;
pub mod sync;
