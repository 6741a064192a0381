//! Pure policy evaluation.
//!
//! - [`IpAcl`]: IP access-control lists (PERMIT/DENY over single addresses, `a-b` ranges and CIDR
//!   blocks), as used by app (credential) ACLs (semantics digest §6.2) and API ACLs.
//! - [`ApiAcl`]: the access-control policies bound to an API (§6.1): IP and DOMAIN_ID.
//! - [`BackendAddressPolicy`]: which resolved backend addresses the gateway may connect to
//!   (SSRF protection: the built-in refusals, the operator's deny and allow lists).
//! - [`throttle`]: request throttling (§5): per-API counters (API, user, app, source IP, excluded
//!   apps and tenants), their stable ids, the replica's [`Share`] of cluster-wide limits, and the
//!   [`ThrottleSet`] of live counters that survives snapshot swaps.
//! - [`limiter`]: the counters themselves, governor GCRA buckets, keyed ones in maps with a hard
//!   cap on their keys.
//! - [`quota`]: credential quotas (§5.4): per (quota, app) fixed-window counters aligned to the
//!   quota's anchor, lock-free, scaled by the replica's [`Share`], kept across snapshot swaps
//!   while the quota is unchanged, and the data the gateway saves across restarts.
//!
//! No I/O. ACL evaluation allocates nothing; a throttle check allocates nothing either (a new key
//! of a keyed counter is one map insert), nor does a quota check (one compare-and-swap). The
//! throttle counters read a monotonic clock (governor's; tests inject a fake one); quota counters
//! are given the wall-clock time by the caller (their windows are aligned to a calendar instant).

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
pub mod backend_address;
mod ip_acl;
pub mod limiter;
pub mod quota;
pub mod throttle;

/// The clock the counters read (governor's default: a monotonic TSC-based clock).
pub use governor::clock::DefaultClock;

pub use api_acl::{ApiAcl, ApiAclError};
pub use backend_address::{always_refused, BackendAddressPolicy, BackendNetworkError, Refusal};
pub use ip_acl::{AclError, IpAcl};
pub use limiter::{Decision, KeyBudget, Quota};
pub use quota::{AppQuota, QuotaError, QuotaKey, QuotaSet, QuotaSpec, Usage};
pub use throttle::{
    ApiThrottle, CallerKeys, CounterKind, Share, ThrottleError, ThrottleSet, ThrottleSettings,
    ThrottleSpec, Verdict,
};
