//! Traffic statistics: what the replicas report over the discovery stream (`UsageReport`),
//! aggregated per instance in memory, for APIG's statistics operations
//! (`routes/statistics.rs`).
//!
//! What is kept, per instance:
//!
//! - per API, one [`Counts`] per minute for the last [`UsageLimits::api_minutes`] minutes (the
//!   `statistics/api/latest` and `statistics/group/latest` answers; an API's group is taken from
//!   the snapshot when its calls are reported);
//! - the instance's [`Traffic`] (body bytes to and from clients and backends, every call,
//!   including those that matched no API) per minute for the last
//!   [`UsageLimits::traffic_minutes`] minutes (`metric-data`);
//! - per replica epoch, the last report sequence number applied, so a report re-sent after a
//!   reconnect is acknowledged without being counted again.
//!
//! Everything is bounded: reports name only APIs of the instance's current snapshot, at most
//! [`UsageLimits::max_apis`] APIs per instance have minutes, minutes outside the retention (or
//! more than [`CLOCK_SKEW_SECS`] in the future) are ignored, at most
//! [`UsageLimits::max_replicas`] replica epochs are remembered per instance (the least recently
//! seen is forgotten first), and a report has at most [`MAX_ENTRIES_PER_REPORT`] entries. Counts
//! add with saturation. The statistics live in memory only: a control-plane restart starts
//! them afresh.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use apig_proto::{UsageEntry, UsageReport};

/// Entries of one report beyond this are ignored (a replica sends at most 500).
pub const MAX_ENTRIES_PER_REPORT: usize = 2_000;
/// How far ahead of the control plane's clock a replica's minute may be.
pub const CLOCK_SKEW_SECS: i64 = 120;
/// Longest replica epoch accepted.
const MAX_EPOCH_LEN: usize = 64;
/// A replica epoch not heard of for this long is forgotten.
const REPLICA_IDLE_SECS: i64 = 2 * 3600;

/// Bounds of the store; [`Default`] is what the control plane uses.
#[derive(Clone, Copy, Debug)]
pub struct UsageLimits {
    /// Minutes of per-API counts kept (the current minute included).
    pub api_minutes: i64,
    /// Minutes of instance traffic kept.
    pub traffic_minutes: i64,
    /// APIs with counts per instance; calls of further APIs count only in the traffic.
    pub max_apis: usize,
    /// Replica epochs remembered per instance.
    pub max_replicas: usize,
}

impl Default for UsageLimits {
    fn default() -> Self {
        Self {
            api_minutes: 61,
            traffic_minutes: 24 * 60,
            max_apis: 5_000,
            max_replicas: 1_024,
        }
    }
}

/// Calls of one API (or a group of them) in one minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub status_2xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub latency_us_sum: u64,
    pub latency_us_max: u64,
    pub backend_latency_us_sum: u64,
    pub backend_latency_us_max: u64,
    pub inner_latency_us_max: u64,
    /// Body bytes from clients.
    pub bytes_in: u64,
    /// Body bytes to clients.
    pub bytes_out: u64,
    /// When a report last added to these counts (unix ms, control plane clock).
    pub updated_ms: i64,
}

/// Body bytes of all calls of an instance in one minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub client_in: u64,
    pub client_out: u64,
    pub backend_out: u64,
    pub backend_in: u64,
}

/// What became of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// Counted: `entries` entries applied; `ignored` entries (or their per-API part) not
    /// (unknown API, out of the retention, over the API cap, beyond the per-report bound).
    Applied { entries: usize, ignored: usize },
    /// This epoch's report `seq` (or a later one) was applied before: nothing counted again.
    Duplicate,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("the replica epoch must be 1 to {MAX_EPOCH_LEN} printable characters")]
    BadEpoch,
    #[error("the report sequence number must be positive")]
    BadSeq,
}

#[derive(Default)]
pub struct UsageStore {
    limits: UsageLimits,
    instances: Mutex<HashMap<String, InstanceUsage>>,
}

#[derive(Default)]
struct InstanceUsage {
    apis: HashMap<String, ApiSeries>,
    traffic: BTreeMap<i64, Traffic>,
    /// Replica epoch → (last applied seq, when last heard of, unix s).
    replicas: HashMap<String, (u64, i64)>,
    /// The first minute anything was reported (this process): minutes since without traffic
    /// are known to be zero.
    since_minute: Option<i64>,
    last_sweep: i64,
}

struct ApiSeries {
    group_id: String,
    minutes: BTreeMap<i64, Counts>,
}

// === impl Counts ===

impl Counts {
    fn add(&mut self, e: &UsageEntry) {
        self.requests = self.requests.saturating_add(e.requests);
        self.status_2xx = self.status_2xx.saturating_add(e.status_2xx);
        self.status_4xx = self.status_4xx.saturating_add(e.status_4xx);
        self.status_5xx = self.status_5xx.saturating_add(e.status_5xx);
        self.latency_us_sum = self.latency_us_sum.saturating_add(e.latency_us_sum);
        self.latency_us_max = self.latency_us_max.max(e.latency_us_max);
        self.backend_latency_us_sum = self
            .backend_latency_us_sum
            .saturating_add(e.backend_latency_us_sum);
        self.backend_latency_us_max = self.backend_latency_us_max.max(e.backend_latency_us_max);
        self.inner_latency_us_max = self.inner_latency_us_max.max(e.inner_latency_us_max);
        self.bytes_in = self.bytes_in.saturating_add(e.client_bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(e.client_bytes_out);
    }

    /// Adds another minute's (or API's) counts: sums add, maxima take the larger.
    pub fn merge(&mut self, o: &Counts) {
        self.requests = self.requests.saturating_add(o.requests);
        self.status_2xx = self.status_2xx.saturating_add(o.status_2xx);
        self.status_4xx = self.status_4xx.saturating_add(o.status_4xx);
        self.status_5xx = self.status_5xx.saturating_add(o.status_5xx);
        self.latency_us_sum = self.latency_us_sum.saturating_add(o.latency_us_sum);
        self.latency_us_max = self.latency_us_max.max(o.latency_us_max);
        self.backend_latency_us_sum = self
            .backend_latency_us_sum
            .saturating_add(o.backend_latency_us_sum);
        self.backend_latency_us_max = self.backend_latency_us_max.max(o.backend_latency_us_max);
        self.inner_latency_us_max = self.inner_latency_us_max.max(o.inner_latency_us_max);
        self.bytes_in = self.bytes_in.saturating_add(o.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(o.bytes_out);
        self.updated_ms = self.updated_ms.max(o.updated_ms);
    }
}

// === impl Traffic ===

impl Traffic {
    fn add(&mut self, e: &UsageEntry) {
        self.client_in = self.client_in.saturating_add(e.client_bytes_in);
        self.client_out = self.client_out.saturating_add(e.client_bytes_out);
        self.backend_out = self.backend_out.saturating_add(e.backend_bytes_out);
        self.backend_in = self.backend_in.saturating_add(e.backend_bytes_in);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every operation leaves the maps consistent (inserts, removes, saturating adds), so a
    // poisoned lock is safe to keep using.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The start of the minute of `unix_s`.
pub fn minute_of(unix_s: i64) -> i64 {
    unix_s - unix_s.rem_euclid(60)
}

// === impl UsageStore ===

impl UsageStore {
    pub fn new(limits: UsageLimits) -> Self {
        Self {
            limits,
            instances: Mutex::default(),
        }
    }

    pub fn limits(&self) -> UsageLimits {
        self.limits
    }

    /// Applies one replica report for `instance`. `groups` maps the ids of the APIs in the
    /// instance's current snapshot to their group ids; entries of other APIs are ignored.
    /// `now_ms` is the control plane's clock.
    pub fn ingest(
        &self,
        instance: &str,
        report: &UsageReport,
        groups: &HashMap<&str, &str>,
        now_ms: i64,
    ) -> Result<Ingested, UsageError> {
        let epoch = report.replica_epoch.as_str();
        if epoch.is_empty() || epoch.len() > MAX_EPOCH_LEN || epoch.chars().any(char::is_control) {
            return Err(UsageError::BadEpoch);
        }
        if report.seq == 0 {
            return Err(UsageError::BadSeq);
        }
        let now_s = now_ms.div_euclid(1000);
        let now_minute = minute_of(now_s);
        let limits = self.limits;
        let mut instances = lock(&self.instances);
        let usage = instances.entry(instance.to_owned()).or_default();
        if now_s - usage.last_sweep >= 60 {
            usage.sweep(&limits, now_s);
        }

        match usage.replicas.get_mut(epoch) {
            Some((seq, seen)) => {
                *seen = now_s;
                if report.seq <= *seq {
                    return Ok(Ingested::Duplicate);
                }
                *seq = report.seq;
            }
            None => {
                if usage.replicas.len() >= limits.max_replicas {
                    // Forget the replica heard of least recently.
                    if let Some(oldest) = usage
                        .replicas
                        .iter()
                        .min_by_key(|(_, (_, seen))| *seen)
                        .map(|(k, _)| k.clone())
                    {
                        usage.replicas.remove(&oldest);
                    }
                }
                usage.replicas.insert(epoch.to_owned(), (report.seq, now_s));
            }
        }

        let newest = now_minute + CLOCK_SKEW_SECS;
        let oldest_traffic = now_minute - (limits.traffic_minutes - 1) * 60;
        let oldest_api = now_minute - (limits.api_minutes - 1) * 60;
        let (mut applied, mut ignored) = (0, 0);
        ignored += report.entries.len().saturating_sub(MAX_ENTRIES_PER_REPORT);
        for e in report.entries.iter().take(MAX_ENTRIES_PER_REPORT) {
            if e.minute.rem_euclid(60) != 0 || e.minute > newest || e.minute < oldest_traffic {
                ignored += 1;
                continue;
            }
            let group = if e.api_id.is_empty() {
                None
            } else {
                match groups.get(e.api_id.as_str()) {
                    Some(g) => Some(*g),
                    None => {
                        ignored += 1;
                        continue;
                    }
                }
            };
            usage.traffic.entry(e.minute).or_default().add(e);
            usage.since_minute = Some(usage.since_minute.map_or(e.minute, |s| s.min(e.minute)));
            applied += 1;
            let Some(group) = group else { continue };
            if e.minute < oldest_api {
                continue;
            }
            if !usage.apis.contains_key(&e.api_id) && usage.apis.len() >= limits.max_apis {
                ignored += 1;
                continue;
            }
            let series = usage
                .apis
                .entry(e.api_id.clone())
                .or_insert_with(|| ApiSeries {
                    group_id: String::new(),
                    minutes: BTreeMap::new(),
                });
            if series.group_id != group {
                group.clone_into(&mut series.group_id);
            }
            let counts = series.minutes.entry(e.minute).or_default();
            counts.add(e);
            counts.updated_ms = now_ms;
        }
        Ok(Ingested::Applied {
            entries: applied,
            ignored,
        })
    }

    /// The minutes in `[from, to]` (unix s, minute starts) with calls of `api`, in order.
    pub fn api_minutes(&self, instance: &str, api: &str, from: i64, to: i64) -> Vec<(i64, Counts)> {
        if from > to {
            return Vec::new();
        }
        let instances = lock(&self.instances);
        instances
            .get(instance)
            .and_then(|u| u.apis.get(api))
            .map(|s| s.minutes.range(from..=to).map(|(m, c)| (*m, *c)).collect())
            .unwrap_or_default()
    }

    /// The minutes in `[from, to]` with calls of the APIs of `group`, summed over them.
    pub fn group_minutes(
        &self,
        instance: &str,
        group: &str,
        from: i64,
        to: i64,
    ) -> Vec<(i64, Counts)> {
        let mut out: BTreeMap<i64, Counts> = BTreeMap::new();
        if from > to {
            return Vec::new();
        }
        let instances = lock(&self.instances);
        if let Some(u) = instances.get(instance) {
            for series in u.apis.values().filter(|s| s.group_id == group) {
                for (m, c) in series.minutes.range(from..=to) {
                    out.entry(*m).or_default().merge(c);
                }
            }
        }
        out.into_iter().collect()
    }

    /// The instance's traffic per minute in `[from, to]` (minutes without calls left out), and
    /// the first minute reported since the control plane started (`None`: nothing yet).
    pub fn traffic(
        &self,
        instance: &str,
        from: i64,
        to: i64,
    ) -> (Option<i64>, Vec<(i64, Traffic)>) {
        let instances = lock(&self.instances);
        match instances.get(instance) {
            Some(u) if from > to => (u.since_minute, Vec::new()),
            Some(u) => (
                u.since_minute,
                u.traffic.range(from..=to).map(|(m, t)| (*m, *t)).collect(),
            ),
            None => (None, Vec::new()),
        }
    }

    /// Drops everything of a deleted instance.
    pub fn forget_instance(&self, instance: &str) {
        lock(&self.instances).remove(instance);
    }

    /// (APIs with counts, minutes held over all of them, replica epochs) of an instance.
    pub fn footprint(&self, instance: &str) -> (usize, usize, usize) {
        let instances = lock(&self.instances);
        instances.get(instance).map_or((0, 0, 0), |u| {
            (
                u.apis.len(),
                u.apis.values().map(|s| s.minutes.len()).sum(),
                u.replicas.len(),
            )
        })
    }
}

// === impl InstanceUsage ===

impl InstanceUsage {
    /// Drops minutes past the retention, APIs left without any, and idle replica epochs.
    fn sweep(&mut self, limits: &UsageLimits, now_s: i64) {
        let now_minute = minute_of(now_s);
        let oldest_api = now_minute - (limits.api_minutes - 1) * 60;
        let oldest_traffic = now_minute - (limits.traffic_minutes - 1) * 60;
        self.apis.retain(|_, s| {
            s.minutes = s.minutes.split_off(&oldest_api);
            !s.minutes.is_empty()
        });
        self.traffic = self.traffic.split_off(&oldest_traffic);
        if self.since_minute.is_some_and(|m| m < oldest_traffic) {
            self.since_minute = Some(oldest_traffic);
        }
        self.replicas
            .retain(|_, (_, seen)| now_s - *seen < REPLICA_IDLE_SECS);
        self.last_sweep = now_s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_700_000_000_000;
    const NOW_MIN: i64 = 1_700_000_000 - 1_700_000_000 % 60;

    fn entry(api: &str, minute: i64, requests: u64) -> UsageEntry {
        UsageEntry {
            api_id: api.into(),
            minute,
            requests,
            status_2xx: requests,
            latency_us_sum: requests * 1000,
            latency_us_max: 1500,
            client_bytes_in: 10 * requests,
            client_bytes_out: 100 * requests,
            backend_bytes_out: 10 * requests,
            backend_bytes_in: 100 * requests,
            ..Default::default()
        }
    }

    fn report(epoch: &str, seq: u64, entries: Vec<UsageEntry>) -> UsageReport {
        UsageReport {
            replica_epoch: epoch.into(),
            seq,
            entries,
        }
    }

    fn groups() -> HashMap<&'static str, &'static str> {
        HashMap::from([("a1", "g1"), ("a2", "g1"), ("b1", "g2")])
    }

    fn total(store: &UsageStore, api: &str) -> u64 {
        store
            .api_minutes("i", api, 0, i64::MAX)
            .iter()
            .map(|(_, c)| c.requests)
            .sum()
    }

    #[test]
    fn a_resent_report_counts_once_and_replicas_add_up() {
        let store = UsageStore::default();
        let g = groups();
        let r1 = report("rep-a", 1, vec![entry("a1", NOW_MIN, 3)]);
        assert_eq!(
            store.ingest("i", &r1, &g, NOW_MS),
            Ok(Ingested::Applied {
                entries: 1,
                ignored: 0
            })
        );
        // The same report after a reconnect (its ack was lost), and an older one: ignored.
        assert_eq!(store.ingest("i", &r1, &g, NOW_MS), Ok(Ingested::Duplicate));
        assert_eq!(
            store.ingest(
                "i",
                &report("rep-a", 1, vec![entry("a1", NOW_MIN, 99)]),
                &g,
                NOW_MS
            ),
            Ok(Ingested::Duplicate)
        );
        // Another replica, and the next report of the first.
        store
            .ingest(
                "i",
                &report("rep-b", 1, vec![entry("a1", NOW_MIN, 4)]),
                &g,
                NOW_MS,
            )
            .unwrap();
        store
            .ingest(
                "i",
                &report(
                    "rep-a",
                    2,
                    vec![entry("a1", NOW_MIN - 60, 5), entry("a2", NOW_MIN, 1)],
                ),
                &g,
                NOW_MS,
            )
            .unwrap();
        assert_eq!(total(&store, "a1"), 12);
        let minutes = store.api_minutes("i", "a1", 0, i64::MAX);
        assert_eq!(
            minutes
                .iter()
                .map(|(m, c)| (*m, c.requests))
                .collect::<Vec<_>>(),
            vec![(NOW_MIN - 60, 5), (NOW_MIN, 7)]
        );
        let now = minutes[1].1;
        assert_eq!(now.latency_us_sum, 7000);
        assert_eq!(now.latency_us_max, 1500);
        assert_eq!(now.bytes_out, 700);
        // A restarted replica (new epoch) starts at seq 1 again and counts.
        store
            .ingest(
                "i",
                &report("rep-a2", 1, vec![entry("a1", NOW_MIN, 2)]),
                &g,
                NOW_MS,
            )
            .unwrap();
        assert_eq!(total(&store, "a1"), 14);

        // The group sums its APIs; other groups' APIs stay out.
        store
            .ingest(
                "i",
                &report("rep-b", 2, vec![entry("b1", NOW_MIN, 50)]),
                &g,
                NOW_MS,
            )
            .unwrap();
        let group: u64 = store
            .group_minutes("i", "g1", 0, i64::MAX)
            .iter()
            .map(|(_, c)| c.requests)
            .sum();
        assert_eq!(group, 15);
        // The instance's traffic has every call.
        let (since, traffic) = store.traffic("i", 0, i64::MAX);
        assert_eq!(since, Some(NOW_MIN - 60));
        assert_eq!(traffic.iter().map(|(_, t)| t.client_out).sum::<u64>(), 6500);
        // Other instances see nothing; an empty range is empty (not a panic).
        assert!(store.api_minutes("other", "a1", 0, i64::MAX).is_empty());
        assert!(store.api_minutes("i", "a1", 10, 0).is_empty());
        assert!(store.group_minutes("i", "g1", 10, 0).is_empty());
        assert!(store.traffic("i", 10, 0).1.is_empty());
    }

    #[test]
    fn unknown_apis_odd_minutes_and_bad_reports_are_refused() {
        let store = UsageStore::default();
        let g = groups();
        assert_eq!(
            store.ingest("i", &report("", 1, vec![]), &g, NOW_MS),
            Err(UsageError::BadEpoch)
        );
        assert_eq!(
            store.ingest("i", &report(&"x".repeat(65), 1, vec![]), &g, NOW_MS),
            Err(UsageError::BadEpoch)
        );
        assert_eq!(
            store.ingest("i", &report("r", 0, vec![]), &g, NOW_MS),
            Err(UsageError::BadSeq)
        );
        let got = store
            .ingest(
                "i",
                &report(
                    "r",
                    1,
                    vec![
                        entry("not-in-snapshot", NOW_MIN, 1),
                        entry("a1", NOW_MIN + 7, 1),
                        entry("a1", NOW_MIN + 3600, 1),
                        entry("a1", NOW_MIN - 2 * 86_400, 1),
                        // Older than the API retention, within the traffic one.
                        entry("a1", NOW_MIN - 7200, 1),
                        // No API: traffic only.
                        entry("", NOW_MIN, 1),
                        entry("a1", NOW_MIN, 1),
                    ],
                ),
                &g,
                NOW_MS,
            )
            .unwrap();
        assert_eq!(
            got,
            Ingested::Applied {
                entries: 3,
                ignored: 4
            }
        );
        assert_eq!(total(&store, "a1"), 1);
        assert!(store
            .api_minutes("i", "not-in-snapshot", 0, i64::MAX)
            .is_empty());
        let (_, traffic) = store.traffic("i", 0, i64::MAX);
        assert_eq!(traffic.iter().map(|(_, t)| t.client_out).sum::<u64>(), 300);
    }

    #[test]
    fn memory_stays_bounded() {
        let store = UsageStore::new(UsageLimits {
            api_minutes: 3,
            traffic_minutes: 5,
            max_apis: 2,
            max_replicas: 3,
        });
        let ids: Vec<String> = (0..10).map(|i| format!("api{i}")).collect();
        let g: HashMap<&str, &str> = ids.iter().map(|i| (i.as_str(), "g")).collect();
        // Ten APIs, but only two get counts; the rest are ignored.
        let entries = ids.iter().map(|i| entry(i, NOW_MIN, 1)).collect();
        let got = store
            .ingest("i", &report("r0", 1, entries), &g, NOW_MS)
            .unwrap();
        assert_eq!(
            got,
            Ingested::Applied {
                entries: 10,
                ignored: 8
            }
        );
        assert_eq!(store.footprint("i").0, 2);
        // A flood of replica epochs keeps only the most recent few.
        for n in 1..20 {
            store
                .ingest("i", &report(&format!("r{n}"), 1, vec![]), &g, NOW_MS + n)
                .unwrap();
        }
        assert_eq!(store.footprint("i").2, 3);
        // Per-report entry bound.
        let many = (0..MAX_ENTRIES_PER_REPORT + 5)
            .map(|_| entry("api0", NOW_MIN, 1))
            .collect();
        let got = store
            .ingest("i", &report("big", 1, many), &g, NOW_MS)
            .unwrap();
        assert_eq!(
            got,
            Ingested::Applied {
                entries: MAX_ENTRIES_PER_REPORT,
                ignored: 5
            }
        );
        // Minutes past the retention go at the next sweep, and APIs left empty with them.
        let later = NOW_MS + 10 * 60_000;
        store
            .ingest(
                "i",
                &report("late", 1, vec![entry("api1", NOW_MIN + 600, 1)]),
                &g,
                later,
            )
            .unwrap();
        let (apis, minutes, _) = store.footprint("i");
        assert_eq!((apis, minutes), (1, 1));
        let (since, traffic) = store.traffic("i", 0, i64::MAX);
        assert_eq!(traffic.len(), 1);
        assert_eq!(since, Some(NOW_MIN + 600 - 4 * 60));
        store.forget_instance("i");
        assert_eq!(store.footprint("i"), (0, 0, 0));
    }
}
