//! Cordon: a filtering DNS resolver for automated endpoint isolation.
//!
//! The query path ([`dns`], [`identity`], [`policy`]) reads one immutable snapshot per query;
//! the control plane ([`control`]) is the single writer that builds and publishes snapshots;
//! the HTTP [`api`] only reads snapshots and sends the control plane commands.

pub mod alloc;
pub mod api;
pub mod app;
pub mod config;
pub mod conn;
pub mod control;
pub mod dns;
pub mod events;
pub mod explain;
pub mod feeds;
pub mod identity;
pub mod jamf;
pub mod lists;
pub mod metrics;
pub mod policy;
pub mod querylog;
pub mod ssf;
pub mod time;
pub mod tls;
pub mod token;
pub mod trail;
