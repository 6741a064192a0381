//! Integration tests of the gateway library: the real `Gateway` on loopback port 0 against a
//! FAKE control plane (an in-test tonic `Discovery` server; the real control plane is tested
//! end to end elsewhere) and an echo backend that reports what it received.
//!
//! One test binary with modules keeps link time down on small machines.

mod harness;

mod authentication;
mod backend_addresses;
mod credential_quotas;
mod limits_and_hostile_input;
mod protocols;
mod proxying;
mod server;
mod snapshot_sync;
mod traffic_control;
mod usage_reports;
