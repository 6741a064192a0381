//! Usage counters for the control plane's statistics (`UsageReport` on the discovery stream).
//!
//! The request path adds to one [`ApiUsage`] per API id (all environments together; one more
//! for calls that matched no API) with relaxed atomic adds: no lock, no allocation. The
//! counters are created when a snapshot is installed and carried over across snapshots, so a
//! publish loses nothing.
//!
//! A sampler task ([`run_sampler`]) reads them every `usage_report_interval`, and at every
//! minute boundary, and moves what was added since its previous reading into the
//! [`Outbox`], keyed by (minute, API): the minute is that of the previous reading, so with the
//! readings on minute boundaries every call lands in the minute it was answered in. The sync
//! session ships the outbox as `UsageReport`s, one at a time: a report stays *in flight* until
//! the control plane acknowledges its `seq`, and is re-sent unchanged on the next stream if the
//! stream breaks first (the control plane ignores a `seq` it already applied). What accumulates
//! while the control plane is away waits in the outbox, bounded by [`MAX_PENDING_ENTRIES`]
//! (oldest minutes dropped first) and by age (minutes older than the control plane keeps are
//! dropped). A replica that stops gracefully reads the counters once more after draining and
//! waits briefly ([`flush`]) for the control plane to acknowledge them; one that is killed
//! loses what it had not shipped (at most one interval).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use apig_proto::{UsageEntry, UsageReport};
use tokio::sync::Notify;

use crate::context::unix_millis;
use crate::metrics::Metrics;

/// Entries in one report (the control plane refuses messages over 64 KiB; an entry is under
/// 120 bytes).
pub(crate) const MAX_ENTRIES_PER_REPORT: usize = 400;
/// (minute, API) entries waiting to be shipped; beyond it the oldest minutes are dropped.
pub(crate) const MAX_PENDING_ENTRIES: usize = 50_000;
/// Waiting entries older than this are dropped (the control plane keeps a day of traffic).
const MAX_PENDING_AGE_SECS: i64 = 24 * 3600 - 120;

/// One API's counters since the replica started. Maxima are reset by each reading.
#[derive(Debug, Default)]
pub(crate) struct ApiUsage {
    requests: AtomicU64,
    status_2xx: AtomicU64,
    status_4xx: AtomicU64,
    status_5xx: AtomicU64,
    latency_us_sum: AtomicU64,
    latency_us_max: AtomicU64,
    backend_latency_us_sum: AtomicU64,
    backend_latency_us_max: AtomicU64,
    inner_latency_us_max: AtomicU64,
    client_bytes_in: AtomicU64,
    client_bytes_out: AtomicU64,
    backend_bytes_out: AtomicU64,
    backend_bytes_in: AtomicU64,
}

/// One answered call, as [`ApiUsage::record`] counts it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Call {
    pub status: u16,
    pub latency: Duration,
    /// Time to the backend's response head, when a backend answered.
    pub backend: Option<Duration>,
    /// Body bytes from and to the client (the lengths known at the response head).
    pub bytes_in: u64,
    pub bytes_out: u64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

// === impl ApiUsage ===

impl ApiUsage {
    /// Counts one call: relaxed atomic adds only.
    pub(crate) fn record(&self, call: &Call) {
        const R: Ordering = Ordering::Relaxed;
        match call.status / 100 {
            2 => self.status_2xx.fetch_add(1, R),
            4 => self.status_4xx.fetch_add(1, R),
            5 => self.status_5xx.fetch_add(1, R),
            _ => 0,
        };
        self.requests.fetch_add(1, R);
        let latency = micros(call.latency);
        self.latency_us_sum.fetch_add(latency, R);
        self.latency_us_max.fetch_max(latency, R);
        let backend = call.backend.map_or(0, micros);
        if call.backend.is_some() {
            self.backend_latency_us_sum.fetch_add(backend, R);
            self.backend_latency_us_max.fetch_max(backend, R);
            // What a backend answered went through it: the bodies passed to and from it.
            if call.bytes_in > 0 {
                self.backend_bytes_out.fetch_add(call.bytes_in, R);
            }
            if call.bytes_out > 0 {
                self.backend_bytes_in.fetch_add(call.bytes_out, R);
            }
        }
        self.inner_latency_us_max
            .fetch_max(latency.saturating_sub(backend), R);
        if call.bytes_in > 0 {
            self.client_bytes_in.fetch_add(call.bytes_in, R);
        }
        if call.bytes_out > 0 {
            self.client_bytes_out.fetch_add(call.bytes_out, R);
        }
    }

    /// The running totals (maxima since the previous reading, which this resets).
    fn read(&self) -> Reading {
        const R: Ordering = Ordering::Relaxed;
        Reading {
            requests: self.requests.load(R),
            status_2xx: self.status_2xx.load(R),
            status_4xx: self.status_4xx.load(R),
            status_5xx: self.status_5xx.load(R),
            latency_us_sum: self.latency_us_sum.load(R),
            latency_us_max: self.latency_us_max.swap(0, R),
            backend_latency_us_sum: self.backend_latency_us_sum.load(R),
            backend_latency_us_max: self.backend_latency_us_max.swap(0, R),
            inner_latency_us_max: self.inner_latency_us_max.swap(0, R),
            client_bytes_in: self.client_bytes_in.load(R),
            client_bytes_out: self.client_bytes_out.load(R),
            backend_bytes_out: self.backend_bytes_out.load(R),
            backend_bytes_in: self.backend_bytes_in.load(R),
        }
    }
}

/// Running totals of one API at one reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Reading {
    requests: u64,
    status_2xx: u64,
    status_4xx: u64,
    status_5xx: u64,
    latency_us_sum: u64,
    latency_us_max: u64,
    backend_latency_us_sum: u64,
    backend_latency_us_max: u64,
    inner_latency_us_max: u64,
    client_bytes_in: u64,
    client_bytes_out: u64,
    backend_bytes_out: u64,
    backend_bytes_in: u64,
}

// === impl Reading ===

impl Reading {
    /// What was added since `before` (the maxima are already per reading).
    fn since(&self, before: &Reading) -> Reading {
        Reading {
            requests: self.requests.wrapping_sub(before.requests),
            status_2xx: self.status_2xx.wrapping_sub(before.status_2xx),
            status_4xx: self.status_4xx.wrapping_sub(before.status_4xx),
            status_5xx: self.status_5xx.wrapping_sub(before.status_5xx),
            latency_us_sum: self.latency_us_sum.wrapping_sub(before.latency_us_sum),
            latency_us_max: self.latency_us_max,
            backend_latency_us_sum: self
                .backend_latency_us_sum
                .wrapping_sub(before.backend_latency_us_sum),
            backend_latency_us_max: self.backend_latency_us_max,
            inner_latency_us_max: self.inner_latency_us_max,
            client_bytes_in: self.client_bytes_in.wrapping_sub(before.client_bytes_in),
            client_bytes_out: self.client_bytes_out.wrapping_sub(before.client_bytes_out),
            backend_bytes_out: self
                .backend_bytes_out
                .wrapping_sub(before.backend_bytes_out),
            backend_bytes_in: self.backend_bytes_in.wrapping_sub(before.backend_bytes_in),
        }
    }

    /// Nothing happened: no call and no byte (maxima follow calls).
    fn is_empty(&self) -> bool {
        self.requests == 0
            && self.client_bytes_in == 0
            && self.client_bytes_out == 0
            && self.backend_bytes_out == 0
            && self.backend_bytes_in == 0
    }

    fn add_to(&self, e: &mut UsageEntry) {
        e.requests = e.requests.saturating_add(self.requests);
        e.status_2xx = e.status_2xx.saturating_add(self.status_2xx);
        e.status_4xx = e.status_4xx.saturating_add(self.status_4xx);
        e.status_5xx = e.status_5xx.saturating_add(self.status_5xx);
        e.latency_us_sum = e.latency_us_sum.saturating_add(self.latency_us_sum);
        e.latency_us_max = e.latency_us_max.max(self.latency_us_max);
        e.backend_latency_us_sum = e
            .backend_latency_us_sum
            .saturating_add(self.backend_latency_us_sum);
        e.backend_latency_us_max = e.backend_latency_us_max.max(self.backend_latency_us_max);
        e.inner_latency_us_max = e.inner_latency_us_max.max(self.inner_latency_us_max);
        e.client_bytes_in = e.client_bytes_in.saturating_add(self.client_bytes_in);
        e.client_bytes_out = e.client_bytes_out.saturating_add(self.client_bytes_out);
        e.backend_bytes_out = e.backend_bytes_out.saturating_add(self.backend_bytes_out);
        e.backend_bytes_in = e.backend_bytes_in.saturating_add(self.backend_bytes_in);
    }
}

/// The counters of every API, the sampler's last readings and the outbox.
pub(crate) struct UsageRecorder {
    /// API id → its counters; `""`: calls that matched no API.
    counters: Mutex<HashMap<Arc<str>, Arc<ApiUsage>>>,
    sampler: Mutex<Sampler>,
    outbox: Mutex<Outbox>,
    /// Signalled after each reading that left something to ship.
    pub(crate) ready: Notify,
}

#[derive(Default)]
struct Sampler {
    last: HashMap<Arc<str>, Reading>,
    /// When the previous reading was taken (unix ms); its minute gets what the next finds.
    last_at_ms: i64,
}

/// What waits to be shipped, and the report the control plane has not acknowledged yet.
pub(crate) struct Outbox {
    /// Random per process: with `seq`, it names each report for the control plane.
    epoch: String,
    next_seq: u64,
    pending: BTreeMap<(i64, Arc<str>), UsageEntry>,
    in_flight: Option<UsageReport>,
    dropped: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section leaves its map consistent; a poisoned lock is safe to keep using.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn minute_of(unix_ms: i64) -> i64 {
    let s = unix_ms.div_euclid(1000);
    s - s.rem_euclid(60)
}

// === impl UsageRecorder ===

impl UsageRecorder {
    pub(crate) fn new() -> Self {
        Self::starting_at(unix_millis(SystemTime::now()))
    }

    fn starting_at(now_ms: i64) -> Self {
        Self {
            counters: Mutex::default(),
            sampler: Mutex::new(Sampler {
                last: HashMap::new(),
                last_at_ms: now_ms,
            }),
            outbox: Mutex::new(Outbox {
                epoch: format!("{:032x}", rand::random::<u128>()),
                next_seq: 1,
                pending: BTreeMap::new(),
                in_flight: None,
                dropped: 0,
            }),
            ready: Notify::new(),
        }
    }

    /// The counters of API `id` (`""`: no API), made on first use. Called when a snapshot is
    /// installed, never on the request path.
    pub(crate) fn counter(&self, id: &str) -> Arc<ApiUsage> {
        let mut counters = lock(&self.counters);
        if let Some(c) = counters.get(id) {
            return Arc::clone(c);
        }
        let c = Arc::new(ApiUsage::default());
        counters.insert(Arc::from(id), Arc::clone(&c));
        c
    }

    /// Reads every counter and moves what was added since the previous reading into the
    /// outbox, under the minute of that reading. Counters nothing can reach any more (no
    /// snapshot and no request holds them) are dropped once read. Returns whether something
    /// waits to be shipped.
    pub(crate) fn sample(&self, now_ms: i64) -> bool {
        let mut sampler = lock(&self.sampler);
        let minute = minute_of(sampler.last_at_ms);
        sampler.last_at_ms = now_ms;
        let mut found: Vec<(Arc<str>, Reading)> = Vec::new();
        {
            let mut counters = lock(&self.counters);
            counters.retain(|id, usage| {
                let reading = usage.read();
                let before = sampler.last.get(id).copied().unwrap_or_default();
                let delta = reading.since(&before);
                if !delta.is_empty() {
                    found.push((Arc::clone(id), delta));
                }
                // Only the map holds it: no request can add to it any more.
                let reachable = Arc::strong_count(usage) > 1;
                if reachable {
                    sampler.last.insert(Arc::clone(id), reading);
                } else {
                    sampler.last.remove(id);
                }
                reachable
            });
        }
        drop(sampler);
        let mut outbox = lock(&self.outbox);
        for (id, delta) in found {
            let entry = outbox
                .pending
                .entry((minute, Arc::clone(&id)))
                .or_insert_with(|| UsageEntry {
                    api_id: id.to_string(),
                    minute,
                    ..Default::default()
                });
            delta.add_to(entry);
        }
        outbox.bound(minute_of(now_ms));
        !outbox.pending.is_empty() || outbox.in_flight.is_some()
    }

    /// The report to send now on a fresh stream: the unacknowledged one again, else the next.
    pub(crate) fn on_connect(&self) -> Option<UsageReport> {
        let mut outbox = lock(&self.outbox);
        match &outbox.in_flight {
            Some(r) => Some(r.clone()),
            None => outbox.next_report(),
        }
    }

    /// The next report, unless one is still waiting for its acknowledgement.
    pub(crate) fn next_report(&self) -> Option<UsageReport> {
        lock(&self.outbox).next_report()
    }

    /// The control plane acknowledged `seq`. Returns whether it was the report in flight.
    pub(crate) fn acknowledged(&self, seq: u64) -> bool {
        let mut outbox = lock(&self.outbox);
        if outbox.in_flight.as_ref().is_some_and(|r| r.seq == seq) {
            outbox.in_flight = None;
            true
        } else {
            false
        }
    }

    /// Entries waiting (in flight included), and entries dropped so far.
    pub(crate) fn backlog(&self) -> (usize, u64) {
        let outbox = lock(&self.outbox);
        let in_flight = outbox.in_flight.as_ref().map_or(0, |r| r.entries.len());
        (outbox.pending.len() + in_flight, outbox.dropped)
    }
}

// === impl Outbox ===

impl Outbox {
    fn next_report(&mut self) -> Option<UsageReport> {
        if self.in_flight.is_some() || self.pending.is_empty() {
            return None;
        }
        let mut entries = Vec::with_capacity(self.pending.len().min(MAX_ENTRIES_PER_REPORT));
        while entries.len() < MAX_ENTRIES_PER_REPORT {
            match self.pending.pop_first() {
                Some((_, e)) => entries.push(e),
                None => break,
            }
        }
        let report = UsageReport {
            replica_epoch: self.epoch.clone(),
            seq: self.next_seq,
            entries,
        };
        self.next_seq += 1;
        self.in_flight = Some(report.clone());
        Some(report)
    }

    /// Drops the oldest waiting minutes beyond the bounds.
    fn bound(&mut self, now_minute: i64) {
        let oldest = now_minute - MAX_PENDING_AGE_SECS;
        let before = self.pending.len();
        while self
            .pending
            .first_key_value()
            .is_some_and(|((m, _), _)| *m < oldest)
            || self.pending.len() > MAX_PENDING_ENTRIES
        {
            self.pending.pop_first();
        }
        let dropped = before - self.pending.len();
        if dropped > 0 {
            self.dropped += dropped as u64;
            tracing::warn!(
                dropped,
                "usage statistics not delivered to the control plane in time were dropped"
            );
        }
    }
}

/// Reads the counters every `every` and at every minute boundary, for the replica's life.
pub(crate) async fn run_sampler(usage: Arc<UsageRecorder>, metrics: Metrics, every: Duration) {
    let every = every.max(Duration::from_millis(10));
    let mut dropped_before = 0;
    loop {
        let now = unix_millis(SystemTime::now());
        // A millisecond past the boundary, so the reading falls in the new minute.
        let to_boundary = u64::try_from(60_000 - now.rem_euclid(60_000)).unwrap_or(0) + 1;
        tokio::time::sleep(every.min(Duration::from_millis(to_boundary))).await;
        if usage.sample(unix_millis(SystemTime::now())) {
            usage.ready.notify_one();
        }
        let (waiting, dropped) = usage.backlog();
        metrics
            .usage_backlog
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        metrics.usage_dropped.inc_by(dropped - dropped_before);
        dropped_before = dropped;
    }
}

/// At shutdown, after the drain: reads the counters a last time and, when the stream is up,
/// waits (at most `within`) until the control plane has acknowledged everything.
pub(crate) async fn flush(usage: &UsageRecorder, connected: bool, within: Duration) {
    if !usage.sample(unix_millis(SystemTime::now())) || !connected {
        return;
    }
    usage.ready.notify_one();
    let deadline = tokio::time::Instant::now() + within;
    while usage.backlog().0 > 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                entries = usage.backlog().0,
                "stopping before the control plane acknowledged the last usage statistics"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_040_000; // a minute boundary

    fn call(status: u16, ms: u64, backend_ms: Option<u64>) -> Call {
        Call {
            status,
            latency: Duration::from_millis(ms),
            backend: backend_ms.map(Duration::from_millis),
            bytes_in: 10,
            bytes_out: 100,
        }
    }

    #[test]
    fn readings_land_in_the_minute_of_the_previous_reading() {
        let usage = UsageRecorder::starting_at(T0);
        let a = usage.counter("a");
        assert!(Arc::ptr_eq(&a, &usage.counter("a")));
        a.record(&call(200, 5, Some(3)));
        a.record(&call(404, 2, Some(1)));
        a.record(&call(401, 1, None));
        assert!(usage.sample(T0 + 5_000));
        a.record(&call(502, 9, None));
        // The reading a millisecond past the boundary still belongs to the first minute.
        assert!(usage.sample(T0 + 60_001));
        a.record(&call(200, 1, Some(1)));
        assert!(usage.sample(T0 + 65_000));

        let r = usage.on_connect().unwrap();
        assert_eq!(r.seq, 1);
        let minutes: Vec<(i64, u64)> = r.entries.iter().map(|e| (e.minute, e.requests)).collect();
        assert_eq!(minutes, vec![(T0 / 1000, 4), (T0 / 1000 + 60, 1)]);
        let first = &r.entries[0];
        assert_eq!(
            (first.status_2xx, first.status_4xx, first.status_5xx),
            (1, 2, 1)
        );
        assert_eq!(first.latency_us_sum, 17_000);
        assert_eq!(first.latency_us_max, 9_000);
        assert_eq!(first.backend_latency_us_sum, 4_000);
        assert_eq!(first.backend_latency_us_max, 3_000);
        assert_eq!(first.inner_latency_us_max, 9_000);
        assert_eq!((first.client_bytes_in, first.client_bytes_out), (40, 400));
        assert_eq!((first.backend_bytes_out, first.backend_bytes_in), (20, 200));

        // Until acknowledged, nothing else goes; a reconnect re-sends the same report.
        a.record(&call(200, 1, None));
        usage.sample(T0 + 70_000);
        assert!(usage.next_report().is_none());
        assert_eq!(usage.on_connect(), Some(r.clone()));
        assert!(!usage.acknowledged(7));
        assert!(usage.acknowledged(1));
        let next = usage.next_report().unwrap();
        assert_eq!(next.seq, 2);
        assert_eq!(next.replica_epoch, r.replica_epoch);
        assert_eq!(next.entries.len(), 1);
        assert!(usage.acknowledged(2));
        assert!(usage.next_report().is_none());
        assert!(!usage.sample(T0 + 75_000), "nothing new");
    }

    #[test]
    fn unreachable_counters_go_after_their_last_reading() {
        let usage = UsageRecorder::starting_at(T0);
        let a = usage.counter("gone");
        a.record(&call(200, 1, None));
        drop(a);
        assert!(usage.sample(T0 + 1_000));
        assert_eq!(usage.backlog().0, 1, "its last calls are kept");
        assert!(lock(&usage.counters).is_empty());
        // A new counter for the same id starts from zero and is not confused with the old one.
        let again = usage.counter("gone");
        again.record(&call(200, 1, None));
        usage.sample(T0 + 2_000);
        let r = usage.next_report().unwrap();
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.entries[0].requests, 2);
    }

    #[test]
    fn the_outbox_is_bounded() {
        let usage = UsageRecorder::starting_at(T0);
        let counters: Vec<_> = (0..MAX_PENDING_ENTRIES / 1000 + 1)
            .map(|i| usage.counter(&format!("api{i}")))
            .collect();
        // A long outage: a new minute of every API every reading.
        for m in 0..1000 {
            for c in &counters {
                c.record(&call(200, 1, None));
            }
            usage.sample(T0 + (m + 1) * 60_000);
        }
        let (waiting, dropped) = usage.backlog();
        assert_eq!(waiting, MAX_PENDING_ENTRIES);
        assert_eq!(
            dropped as usize,
            counters.len() * 1000 - MAX_PENDING_ENTRIES
        );
        // The newest minutes are the ones kept (the first 1000 entries, 19.6 minutes of 51
        // APIs, went); reports are bounded.
        let r = usage.next_report().unwrap();
        assert_eq!(r.entries.len(), MAX_ENTRIES_PER_REPORT);
        assert_eq!(r.entries[0].minute, T0 / 1000 + 19 * 60);
        // A day-old minute is dropped even below the entry bound.
        let late = UsageRecorder::starting_at(T0);
        late.counter("x").record(&call(200, 1, None));
        late.sample(T0 + 1);
        late.sample(T0 + 86_400_000);
        assert_eq!(late.backlog(), (0, 1));
    }
}
