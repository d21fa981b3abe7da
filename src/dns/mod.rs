//! The query path's DNS side: wire format, listeners, the handler, cache and upstreams.

pub mod answer;
pub mod cache;
mod cache_lines;
pub mod doh;
pub mod doq;
pub mod dot;
pub mod edns;
mod first_poll;
pub mod guard;
pub mod handler;
pub mod notify;
pub mod record;
pub mod recursive;
pub mod server;
pub mod tripwire;
pub mod udp;
pub mod upstream;
mod upstream_udp;
pub mod wire;
