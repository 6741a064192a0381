//! End-to-end tests: the real `apig` binary (control plane and gateway as separate processes),
//! a real echo backend, and signed management calls over loopback.

mod support;

mod authorizers;
mod backends;
mod certificates;
mod cluster_tls;
mod config;
mod credentials;
mod foundation;
mod hostile;
mod lifecycle;
mod management;
mod observability;
mod openapi;
mod operations;
mod protocols;
mod resilience;
mod statistics;
mod tracing;
mod traffic;
