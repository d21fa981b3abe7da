//! RPZ feeds by zone transfer (`[[feed]]`), off the query path: how protective-DNS feeds are
//! distributed. Each feed's zone is transferred from its primary (AXFR at start, then IXFR on
//! the SOA refresh timer and on the primary's NOTIFY), its QNAME triggers become listings of the
//! feed's category, and the feeds' DB ([`crate::policy::FeedDb`]) goes into every snapshot
//! through the control plane.
//!
//! `settings.rs` checks a `[[feed]]`; `transfer.rs` is one transfer over TCP with TSIG;
//! `zone.rs` is a feed's copy of its zone and how an answer changes it, all or nothing;
//! `task.rs` is the task `app.rs` starts. NOTIFYs arrive on the DNS listeners and reach the
//! task through [`crate::dns::notify::Primaries`].

mod settings;
mod task;
mod transfer;
pub mod zone;

pub use settings::{feeds, Feed, FeedConfig, FeedConfigError, TsigConfig};
pub use task::{spawn, FeedTask};
