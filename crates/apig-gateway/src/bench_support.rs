//! The steps a replica takes with a received snapshot, reachable from the crate's benchmarks
//! (`benches/snapshot.rs`): not an API, hidden from the docs.
//!
//! [`prepare_snapshot`] is what the sync task runs before a swap (decode, then
//! `sync::evaluate`: the digest and `Runtime::prepare`); [`install`] is the swap itself
//! (`Shared::install`: throttle, quota and channel state and the metric handles of the new
//! runtime) into a fresh replica state. Holding their results keeps exactly what a replica keeps
//! for one applied snapshot, so a counting allocator can tell the bytes held per API.

use std::sync::Arc;

use apig_policy::BackendAddressPolicy;
use prost::Message;

use crate::access_log::AccessLog;
use crate::config::Limits;
use crate::metrics::GatewayMetrics;
use crate::runtime::Runtime;
use crate::state::Shared;
use crate::sync::{evaluate, Decision};

/// A prepared runtime, not yet swapped in, and the decoded snapshot a replica frees after the
/// swap.
pub struct Prepared(Arc<Runtime>, Option<Box<apig_proto::Snapshot>>);

/// A replica state serving one snapshot, and the decoded snapshot if not freed yet: held only
/// to be freed with the state, outside a timing.
pub struct Installed(
    Shared,
    #[allow(dead_code)] Option<Box<apig_proto::Snapshot>>,
);

impl Prepared {
    /// The number of APIs the runtime serves.
    pub fn apis(&self) -> usize {
        self.0.apis.len()
    }

    /// Frees the decoded snapshot (a replica does it after the swap).
    pub fn free_snapshot(&mut self) {
        self.1 = None;
    }
}

impl Installed {
    /// Whether the state serves a runtime (it always does once built).
    pub fn is_serving(&self) -> bool {
        self.0.is_ready()
    }
}

/// Decodes `encoded` and prepares it as a replica with nothing applied would.
pub fn prepare_snapshot(encoded: &[u8]) -> Result<Prepared, String> {
    let snapshot = apig_proto::Snapshot::decode(encoded).map_err(|e| format!("decode: {e}"))?;
    let instance = snapshot.instance_id.clone();
    match evaluate(None, &instance, snapshot) {
        Decision::Apply { runtime, spent, .. } => Ok(Prepared(Arc::from(runtime), Some(spent))),
        Decision::AlreadyApplied => Err("already applied".into()),
        Decision::Reject(reason) => Err(reason),
    }
}

/// Swaps `prepared` into a fresh replica state (default limits, metrics on, no access log).
/// The decoded snapshot, if not freed yet, goes with the result (to be freed outside timings).
pub fn install(prepared: Prepared) -> Result<Installed, String> {
    let metrics = Arc::new(GatewayMetrics::new().map_err(|e| e.to_string())?);
    let shared = Shared::new(
        Limits::default(),
        None,
        BackendAddressPolicy::default(),
        String::new(),
        "bench".into(),
        crate::backend_tls::client_config(None)?,
        Arc::clone(&metrics),
        AccessLog::disabled(metrics),
    );
    shared.install(prepared.0);
    Ok(Installed(shared, prepared.1))
}
