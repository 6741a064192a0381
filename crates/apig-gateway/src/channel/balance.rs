//! Member selection for one channel, lock-free: the strategy picks among the members a caller
//! deems usable (healthy, not yet tried by this request).
//!
//! - Members with weight 0 get nothing. Backups are considered only when no primary member is
//!   usable.
//! - WRR: a smooth weighted round-robin schedule (nginx's interleaving, so a heavy member is not
//!   hit in bursts) computed once per snapshot; a shared atomic cursor walks it, skipping
//!   unusable entries. Weights are reduced by their GCD and, past [`MAX_SCHEDULE`] slots,
//!   scaled down (never below 1), so the schedule stays small.
//! - WLC: the usable member with the fewest in-flight requests per unit of weight; ties go
//!   round-robin.
//! - Source-IP and URI hash: weighted rendezvous hashing (highest random weight) of the key with
//!   each member's id. A key keeps its member while that member is usable, and when one member
//!   goes down only its keys move. Member ids are the same on every replica, so every replica
//!   sends a key to the same member. URI hashing ignores weights, as APIG does.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Slots of a WRR schedule at most.
pub(crate) const MAX_SCHEDULE: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    RoundRobin,
    LeastRequests,
    SourceIpHash,
    UriHash,
}

/// What a hash strategy hashes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HashKey<'a> {
    Bytes(&'a [u8]),
}

#[derive(Debug)]
pub(crate) struct Balancer {
    strategy: Strategy,
    weights: Box<[u32]>,
    /// Member indexes of each tier (primaries, then backups) with weight > 0.
    tiers: [Box<[usize]>; 2],
    /// WRR schedules per tier (member indexes).
    schedules: [Box<[usize]>; 2],
    /// Per-member seeds for rendezvous hashing (from the member ids).
    seeds: Box<[u64]>,
    cursor: AtomicUsize,
}

/// One member as the balancer sees it.
#[derive(Debug, Clone)]
pub(crate) struct Slot<'a> {
    pub id: &'a str,
    pub weight: u32,
    pub backup: bool,
}

impl Balancer {
    pub(crate) fn new(strategy: Strategy, members: &[Slot<'_>]) -> Self {
        let weights: Box<[u32]> = members
            .iter()
            .map(|m| {
                if strategy == Strategy::UriHash {
                    u32::from(m.weight > 0)
                } else {
                    m.weight
                }
            })
            .collect();
        let tier = |backup: bool| -> Box<[usize]> {
            members
                .iter()
                .enumerate()
                .filter(|(i, m)| m.backup == backup && weights.get(*i).is_some_and(|w| *w > 0))
                .map(|(i, _)| i)
                .collect()
        };
        let tiers = [tier(false), tier(true)];
        let schedules = [schedule(&tiers[0], &weights), schedule(&tiers[1], &weights)];
        let seeds = members
            .iter()
            .map(|m| stable_hash(m.id.as_bytes(), 0))
            .collect();
        Self {
            strategy,
            weights,
            tiers,
            schedules,
            seeds,
            cursor: AtomicUsize::new(0),
        }
    }

    /// Picks a member index. `usable(i)` says whether member `i` may be picked now;
    /// `in_flight(i)` is its current load (WLC). `None`: no usable member with weight.
    pub(crate) fn pick(
        &self,
        key: HashKey<'_>,
        usable: impl Fn(usize) -> bool,
        in_flight: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        for (tier, schedule) in self.tiers.iter().zip(&self.schedules) {
            if !tier.iter().any(|&i| usable(i)) {
                continue;
            }
            return match self.strategy {
                Strategy::RoundRobin => self.round_robin(schedule, &usable),
                Strategy::LeastRequests => self.least_requests(tier, &usable, &in_flight),
                Strategy::SourceIpHash | Strategy::UriHash => self.rendezvous(tier, &usable, key),
            };
        }
        None
    }

    fn round_robin(&self, schedule: &[usize], usable: &impl Fn(usize) -> bool) -> Option<usize> {
        let len = schedule.len();
        if len == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % len;
        (0..len)
            .filter_map(|k| schedule.get((start + k) % len).copied())
            .find(|&i| usable(i))
    }

    fn least_requests(
        &self,
        tier: &[usize],
        usable: &impl Fn(usize) -> bool,
        in_flight: &impl Fn(usize) -> u64,
    ) -> Option<usize> {
        let len = tier.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % len.max(1);
        let mut best: Option<(usize, u64, u64)> = None;
        for k in 0..len {
            let Some(&i) = tier.get((start + k) % len) else {
                continue;
            };
            if !usable(i) {
                continue;
            }
            let weight = u64::from(self.weights.get(i).copied().unwrap_or(1).max(1));
            let load = in_flight(i).saturating_add(1);
            // load / weight < best_load / best_weight, without division.
            let better = best.is_none_or(|(_, bl, bw)| {
                u128::from(load) * u128::from(bw) < u128::from(bl) * u128::from(weight)
            });
            if better {
                best = Some((i, load, weight));
            }
        }
        best.map(|(i, _, _)| i)
    }

    fn rendezvous(
        &self,
        tier: &[usize],
        usable: &impl Fn(usize) -> bool,
        key: HashKey<'_>,
    ) -> Option<usize> {
        let HashKey::Bytes(bytes) = key;
        let mut best: Option<(usize, f64)> = None;
        for &i in tier {
            if !usable(i) {
                continue;
            }
            let seed = self.seeds.get(i).copied().unwrap_or(0);
            let weight = f64::from(self.weights.get(i).copied().unwrap_or(1));
            // A uniform draw in (0, 1) per (key, member); the score -w / ln(u) makes each
            // member win with probability proportional to its weight.
            let h = stable_hash(bytes, seed);
            let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let score = -weight / u.ln();
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// Smooth weighted round robin over `members`: each slot goes to the member with the highest
/// running credit, which then pays the total.
fn schedule(members: &[usize], weights: &[u32]) -> Box<[usize]> {
    let w: Vec<u64> = members
        .iter()
        .map(|&i| u64::from(weights.get(i).copied().unwrap_or(0)))
        .collect();
    let g = w.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<u64> = w.iter().map(|x| x / g).collect();
    let total: u64 = w.iter().sum();
    if total > MAX_SCHEDULE {
        for x in &mut w {
            *x = (*x * MAX_SCHEDULE / total).max(1);
        }
    }
    let total: u64 = w.iter().sum();
    let mut credit = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (k, c) in credit.iter_mut().enumerate() {
            *c += i64::try_from(w.get(k).copied().unwrap_or(0)).unwrap_or(0);
        }
        for (k, c) in credit.iter().enumerate() {
            if *c > credit.get(best).copied().unwrap_or(i64::MIN) {
                best = k;
            }
        }
        if let Some(c) = credit.get_mut(best) {
            *c -= i64::try_from(total).unwrap_or(0);
        }
        if let Some(&m) = members.get(best) {
            out.push(m);
        }
    }
    out.into_boxed_slice()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A hash that is the same in every replica process and build: FNV-1a over the bytes, started
/// from the seed, then the SplitMix64 finaliser so nearby inputs land far apart.
fn stable_hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn slots(spec: &[(&'static str, u32, bool)]) -> Vec<Slot<'static>> {
        spec.iter()
            .map(|&(id, weight, backup)| Slot { id, weight, backup })
            .collect()
    }

    fn counts(
        b: &Balancer,
        n: usize,
        usable: impl Fn(usize) -> bool + Copy,
    ) -> HashMap<usize, usize> {
        let mut out = HashMap::new();
        for _ in 0..n {
            if let Some(i) = b.pick(HashKey::Bytes(b"k"), usable, |_| 0) {
                *out.entry(i).or_default() += 1;
            }
        }
        out
    }

    #[test]
    fn wrr_follows_weights_exactly_per_cycle_and_interleaves() {
        let b = Balancer::new(
            Strategy::RoundRobin,
            &slots(&[
                ("a", 5, false),
                ("b", 1, false),
                ("c", 1, false),
                ("z", 0, false),
            ]),
        );
        let c = counts(&b, 700, |_| true);
        assert_eq!((c[&0], c[&1], c[&2]), (500, 100, 100));
        assert!(!c.contains_key(&3), "weight 0 gets nothing");
        // Smooth: the heavy member never takes the whole cycle in one burst.
        let seq: Vec<usize> = (0..7)
            .map(|_| b.pick(HashKey::Bytes(b""), |_| true, |_| 0).unwrap())
            .collect();
        assert!(seq.windows(5).all(|w| w.iter().any(|&i| i != 0)), "{seq:?}");
    }

    #[test]
    fn unusable_members_are_skipped_and_backups_only_serve_when_needed() {
        let b = Balancer::new(
            Strategy::RoundRobin,
            &slots(&[("a", 1, false), ("b", 1, false), ("spare", 1, true)]),
        );
        let c = counts(&b, 100, |i| i != 0);
        assert_eq!(c.get(&1), Some(&100));
        assert!(!c.contains_key(&2));
        let c = counts(&b, 10, |i| i == 2);
        assert_eq!(c.get(&2), Some(&10));
        assert_eq!(b.pick(HashKey::Bytes(b""), |_| false, |_| 0), None);
    }

    #[test]
    fn large_weights_are_scaled_into_a_small_schedule() {
        let b = Balancer::new(
            Strategy::RoundRobin,
            &slots(&[("a", 10_000, false), ("b", 3, false), ("c", 9_999, false)]),
        );
        assert!(b.schedules[0].len() as u64 <= MAX_SCHEDULE + 3);
        let c = counts(&b, 20_000, |_| true);
        assert!(c[&1] >= 1, "a small weight still gets traffic");
        let ratio = c[&0] as f64 / c[&2] as f64;
        assert!((0.98..1.02).contains(&ratio), "{ratio}");
    }

    #[test]
    fn least_requests_prefers_the_least_loaded_per_weight() {
        let b = Balancer::new(
            Strategy::LeastRequests,
            &slots(&[("a", 1, false), ("b", 2, false)]),
        );
        // a: 3 in flight (load 4/1), b: 5 in flight (load 6/2 = 3): b wins.
        let load = |i: usize| if i == 0 { 3 } else { 5 };
        assert_eq!(b.pick(HashKey::Bytes(b""), |_| true, load), Some(1));
        let load = |i: usize| if i == 0 { 1 } else { 5 };
        assert_eq!(b.pick(HashKey::Bytes(b""), |_| true, load), Some(0));
        // Equal loads alternate.
        let picks: Vec<_> = (0..4)
            .map(|_| {
                b.pick(
                    HashKey::Bytes(b""),
                    |_| true,
                    |i| if i == 0 { 0 } else { 1 },
                )
            })
            .collect();
        assert!(
            picks.contains(&Some(0)) && picks.contains(&Some(1)),
            "{picks:?}"
        );
    }

    #[test]
    fn hashing_is_sticky_weighted_and_moves_only_the_lost_members_keys() {
        let members = slots(&[("m1", 1, false), ("m2", 1, false), ("m3", 2, false)]);
        let b = Balancer::new(Strategy::SourceIpHash, &members);
        let keys: Vec<String> = (0..4000)
            .map(|i| format!("10.0.{}.{}", i / 250, i % 250))
            .collect();
        let pick = |k: &str, usable: &dyn Fn(usize) -> bool| {
            b.pick(HashKey::Bytes(k.as_bytes()), usable, |_| 0).unwrap()
        };
        let before: Vec<usize> = keys.iter().map(|k| pick(k, &|_| true)).collect();
        // Sticky: the same key, the same member.
        for (k, &m) in keys.iter().zip(&before).take(50) {
            assert_eq!(pick(k, &|_| true), m);
        }
        let share = |m: usize| before.iter().filter(|&&x| x == m).count() as f64 / 4000.0;
        assert!((share(2) - 0.5).abs() < 0.04, "{}", share(2));
        assert!((share(0) - 0.25).abs() < 0.04, "{}", share(0));
        // m2 goes down: only its keys move.
        for (k, &m) in keys.iter().zip(&before) {
            let now = pick(k, &|i| i != 1);
            if m != 1 {
                assert_eq!(now, m, "{k} moved although its member is up");
            } else {
                assert_ne!(now, 1);
            }
        }
        // Another balancer over the same members (another replica) agrees.
        let other = Balancer::new(Strategy::SourceIpHash, &members);
        assert!(keys.iter().zip(&before).all(|(k, &m)| other.pick(
            HashKey::Bytes(k.as_bytes()),
            |_| true,
            |_| 0
        ) == Some(m)));
    }

    #[test]
    fn uri_hash_ignores_weights() {
        let b = Balancer::new(
            Strategy::UriHash,
            &slots(&[("a", 100, false), ("b", 1, false)]),
        );
        let mut n = [0usize; 2];
        for i in 0..2000 {
            let path = format!("/items/{i}");
            if let Some(m) = b.pick(HashKey::Bytes(path.as_bytes()), |_| true, |_| 0) {
                n[m] += 1;
            }
        }
        let share = n[0] as f64 / 2000.0;
        assert!((share - 0.5).abs() < 0.05, "{share}");
    }
}
