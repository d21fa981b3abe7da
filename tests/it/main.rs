//! Integration tests: Cordon over real sockets against an authoritative upstream the test starts.

mod answers;
mod crash;
mod encrypted;
mod fake_jamf;
mod layout;
mod limits;
mod policy;
mod reload;
mod resolve;
mod robustness;
mod store;
mod support;
mod sync;
