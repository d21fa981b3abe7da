//! Integration tests: Cordon over real sockets against an authoritative upstream the test starts.

mod policy;
mod reload;
mod resolve;
mod robustness;
mod support;
