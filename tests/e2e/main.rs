//! End-to-end tests: the real `apig` binary (control plane and gateway as separate processes),
//! a real echo backend, and signed management calls over loopback.

mod support;

mod backends;
mod certificates;
mod credentials;
mod foundation;
mod lifecycle;
mod management;
mod observability;
mod operations;
mod protocols;
mod traffic;
