//! Integration tests: Cordon over real sockets against an authoritative upstream the test starts.

mod answers;
mod crash;
mod encrypted;
mod events;
mod fake_jamf;
mod feeds;
mod hierarchy;
mod holds;
mod knot;
mod layout;
mod limits;
mod lists;
mod pg;
mod policy;
mod recursive;
mod reload;
mod replicas;
mod resolve;
mod robustness;
mod ssf;
mod store;
mod store_suite;
mod support;
mod sync;
mod tripwire;
mod upstreams;
