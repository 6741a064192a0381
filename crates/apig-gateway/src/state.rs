//! State shared by the listeners, the request pipeline and the sync loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::config::Limits;
use crate::proxy::Upstream;
use crate::runtime::Runtime;

/// Everything a request or the sync loop reaches. The only mutable parts are the runtime slot
/// (swapped whole, read without locks) and a connected flag.
pub(crate) struct Shared {
    /// The applied snapshot; `None` until one is applied (not ready).
    runtime: ArcSwapOption<Runtime>,
    pub limits: Limits,
    pub upstream: Upstream,
    pub instance_id: String,
    pub node_id: String,
    connected: AtomicBool,
}

// === impl Shared ===

impl Shared {
    pub(crate) fn new(limits: Limits, instance_id: String, node_id: String) -> Self {
        Self {
            runtime: ArcSwapOption::empty(),
            limits,
            upstream: Upstream::new(),
            instance_id,
            node_id,
            connected: AtomicBool::new(false),
        }
    }

    /// The runtime a request uses from start to end (later swaps do not affect it).
    pub(crate) fn runtime(&self) -> Option<Arc<Runtime>> {
        self.runtime.load_full()
    }

    /// Swaps in a new runtime. Requests that loaded the old one finish with it.
    pub(crate) fn install(&self, runtime: Arc<Runtime>) {
        self.runtime.store(Some(runtime));
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.runtime.load().is_some()
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}
