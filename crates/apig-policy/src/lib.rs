//! Pure policy evaluation.
//!
//! Today: IP access-control lists ([`IpAcl`]), as used by app (credential) ACLs
//! (`app_acl_type` PERMIT/DENY with single addresses, `a-b` ranges and CIDR blocks; semantics
//! digest §6.2). API ACL policies (§6.1) and throttle keys will build on the same type.
//!
//! No I/O, no clock, no allocation when evaluating.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod ip_acl;

pub use ip_acl::{AclError, IpAcl};
