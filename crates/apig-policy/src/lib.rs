//! Pure policy evaluation.
//!
//! - [`IpAcl`]: IP access-control lists (PERMIT/DENY over single addresses, `a-b` ranges and CIDR
//!   blocks), as used by app (credential) ACLs (semantics digest §6.2) and API ACLs.
//! - [`ApiAcl`]: the access-control policies bound to an API (§6.1): IP and DOMAIN_ID.
//! - [`throttle`]: request throttling (§5): per-API counters (API, user, app, source IP, excluded
//!   apps and tenants), their stable ids, the replica's [`Share`] of cluster-wide limits, and the
//!   [`ThrottleSet`] of live counters that survives snapshot swaps.
//! - [`limiter`]: the counters themselves, governor GCRA buckets, keyed ones in maps with a hard
//!   cap on their keys.
//!
//! No I/O. ACL evaluation allocates nothing; a throttle check allocates nothing either (a new key
//! of a keyed counter is one map insert). The counters read a monotonic clock (governor's; tests
//! inject a fake one).

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

mod api_acl;
mod ip_acl;
pub mod limiter;
pub mod throttle;

/// The clock the counters read (governor's default: a monotonic TSC-based clock).
pub use governor::clock::DefaultClock;

pub use api_acl::{ApiAcl, ApiAclError};
pub use ip_acl::{AclError, IpAcl};
pub use limiter::{Decision, KeyBudget, Quota};
pub use throttle::{
    ApiThrottle, CallerKeys, CounterKind, Share, ThrottleError, ThrottleSet, ThrottleSettings,
    ThrottleSpec, Verdict,
};
