//! The per-API metric handles of one runtime, made on each API's first answer.
//!
//! Making them when a snapshot is applied cost two histograms (16 buckets each) and a usage
//! counter for every published API, called or not: most of a replica's memory per API at 100k
//! APIs. Now a slot stays empty until its API answers; the handles made so far carry over to
//! the next runtime (so the series of an API that stays are never lost), and the series of APIs
//! that leave the snapshot are removed, so the exposition never grows with APIs long gone.
//!
//! One race is accepted: a request still running on the old runtime that answers the very
//! first call of an API removed by that same swap recreates its series, which then stay until
//! the API is published and removed again. It needs a first call and a removal in the same
//! instant, and costs one API's series.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::metrics::{ApiMetrics, Metrics};
use crate::runtime::Runtime;
use crate::usage::UsageRecorder;

/// Metric handles of a runtime's APIs, indexed like `runtime.apis`.
pub(crate) struct ApiMetricSlots {
    slots: Box<[OnceLock<Arc<ApiMetrics>>]>,
    runtime: Arc<Runtime>,
    metrics: Metrics,
    usage: Arc<UsageRecorder>,
}

impl ApiMetricSlots {
    /// Slots for `runtime`'s APIs. The handles `previous` made carry over for the APIs (id and
    /// environment) still served; the series of the others are removed.
    pub(crate) fn build(
        runtime: Arc<Runtime>,
        previous: Option<&ApiMetricSlots>,
        metrics: &Metrics,
        usage: &Arc<UsageRecorder>,
    ) -> Self {
        let mut made: HashMap<(&str, &str), &Arc<ApiMetrics>> = previous
            .map(|p| p.made().map(|m| ((m.api_id(), m.env()), m)).collect())
            .unwrap_or_default();
        let slots = runtime
            .apis
            .iter()
            .map(|a| match made.remove(&(a.id.as_str(), a.stage.as_str())) {
                Some(m) => OnceLock::from(Arc::clone(m)),
                None => OnceLock::new(),
            })
            .collect();
        for gone in made.values() {
            metrics.forget(gone);
        }
        Self {
            slots,
            runtime,
            metrics: Arc::clone(metrics),
            usage: Arc::clone(usage),
        }
    }

    /// The handles of the API at `index`, made on first use.
    pub(crate) fn get(&self, index: usize) -> Option<&Arc<ApiMetrics>> {
        let slot = self.slots.get(index)?;
        let api = self.runtime.apis.get(index)?;
        Some(slot.get_or_init(|| {
            Arc::new(
                self.metrics
                    .api(&api.id, &api.stage, self.usage.counter(&api.id)),
            )
        }))
    }

    /// The handles made so far.
    fn made(&self) -> impl Iterator<Item = &Arc<ApiMetrics>> {
        self.slots.iter().filter_map(OnceLock::get)
    }
}
