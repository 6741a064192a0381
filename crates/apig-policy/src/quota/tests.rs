use super::*;

const HOUR: u64 = 3_600_000;
const DAY: u64 = 86_400_000;
/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200_000;

fn proto(id: &str, limit: u64, window_ms: u64, anchor: i64) -> apig_proto::AppQuota {
    apig_proto::AppQuota {
        quota_id: id.into(),
        limit,
        window_ms,
        anchor_unix_ms: anchor,
    }
}

fn spec(id: &str, limit: u64, window_ms: u64, anchor: i64) -> QuotaSpec {
    QuotaSpec::prepare(&proto(id, limit, window_ms, anchor)).unwrap()
}

fn set_of(specs: &[(&str, Option<&QuotaSpec>)], share: Share, now: i64) -> QuotaSet {
    QuotaSet::build(specs.iter().copied(), share, None, None, now)
}

/// Calls app `index` at `now` until refused (at most 1000); the number admitted.
fn admitted(set: &QuotaSet, index: usize, now: i64) -> u64 {
    let q = set.app(index).unwrap();
    (0..1000).take_while(|_| q.check(now).allowed).count() as u64
}

#[test]
fn specs_are_checked() {
    assert!(QuotaSpec::prepare(&proto("", 1, 1000, 0)).is_err());
    let e = QuotaSpec::prepare(&proto("q", 0, 1000, 0)).unwrap_err();
    assert!(e.to_string().contains("limit is 0"), "{e}");
    let e = QuotaSpec::prepare(&proto("q", 1, 0, 0)).unwrap_err();
    assert!(e.to_string().contains("window is 0"), "{e}");
    let ok = spec("q", 5, HOUR, -7);
    assert_eq!(ok.limit, 5);
    assert_eq!(ok.anchor_unix_ms, -7);
}

#[test]
fn windows_are_aligned_to_the_anchor() {
    // Effective 05:05:00 with a 1 h window: 05:05–06:05, 06:05–07:05, …
    let anchor = T0 + 5 * HOUR as i64 + 5 * 60_000;
    let at = |h: i64, m: i64| T0 + h * HOUR as i64 + m * 60_000;
    assert_eq!(window_index(at(5, 5), anchor, HOUR), 0);
    assert_eq!(window_index(at(6, 4), anchor, HOUR), 0);
    assert_eq!(window_index(at(6, 5) - 1, anchor, HOUR), 0);
    assert_eq!(window_index(at(6, 5), anchor, HOUR), 1);
    assert_eq!(window_index(at(30, 5), anchor, HOUR), 25);
    // Before the anchor (an anchor in the future): negative windows with the same phase.
    assert_eq!(window_index(at(5, 5) - 1, anchor, HOUR), -1);
    assert_eq!(window_index(at(4, 5), anchor, HOUR), -1);
    assert_eq!(window_index(at(4, 5) - 1, anchor, HOUR), -2);
    assert_eq!(window_start(-1, anchor, HOUR), at(4, 5));
    assert_eq!(window_start(1, anchor, HOUR), at(6, 5));
    // Negative instants and anchors.
    assert_eq!(window_index(-1, 0, 1000), -1);
    assert_eq!(window_index(-1000, 0, 1000), -1);
    assert_eq!(window_index(-1001, 0, 1000), -2);
    assert_eq!(window_index(0, -500, 1000), 0);
    assert_eq!(window_index(499, -500, 1000), 0);
    assert_eq!(window_index(500, -500, 1000), 1);
    // Extremes do not overflow.
    assert_eq!(window_index(i64::MAX, i64::MIN, 1), i64::MAX);
    assert_eq!(window_index(i64::MIN, i64::MAX, 1), i64::MIN);
    assert_eq!(window_index(i64::MAX, i64::MIN, u64::MAX), 1);
    assert_eq!(window_index(i64::MAX - 1, i64::MIN, u64::MAX), 0);
    assert_eq!(window_index(5, 0, 0), 5, "a window of 0 is taken as 1 ms");
}

#[test]
fn the_limit_plus_first_call_is_refused_and_a_new_window_starts_from_zero() {
    let anchor = T0 + 17; // an odd phase
    let q = spec("q", 3, HOUR, anchor);
    let set = set_of(&[("app-1", Some(&q))], Share::ALONE, anchor);
    let app = set.app(0).unwrap();
    let remains: Vec<_> = (0..3).map(|_| app.check(anchor + 10)).collect();
    assert!(remains.iter().all(|d| d.allowed));
    assert_eq!(
        remains.iter().map(|d| d.remaining).collect::<Vec<_>>(),
        [2, 1, 0]
    );
    let fourth = app.check(anchor + 20);
    assert!(!fourth.allowed);
    assert_eq!(fourth.remaining, 0);
    assert_eq!(fourth.quota.limit, 3);
    assert_eq!(fourth.quota.window, Duration::from_millis(HOUR));
    // Still the same window one millisecond before its end.
    assert!(!app.check(anchor + HOUR as i64 - 1).allowed);
    // The next window: the whole limit again, exactly.
    assert_eq!(admitted(&set, 0, anchor + HOUR as i64), 3);
    // Skipping windows is fine too.
    assert_eq!(admitted(&set, 0, anchor + 50 * HOUR as i64 + 3), 3);
}

#[test]
fn an_anchor_in_the_future_still_fixes_the_windows() {
    // Anchor tomorrow; calls today fall in negative windows and reset at the aligned edges.
    let anchor = T0 + DAY as i64;
    let q = spec("q", 2, HOUR, anchor);
    let now = T0 + 30 * 60_000; // 00:30, window -24
    assert_eq!(q.window_index(now), -24);
    let set = set_of(&[("a", Some(&q))], Share::ALONE, now);
    assert_eq!(admitted(&set, 0, now), 2);
    assert_eq!(admitted(&set, 0, T0 + HOUR as i64 - 1), 0);
    assert_eq!(admitted(&set, 0, T0 + HOUR as i64), 2);
    // Crossing the anchor itself is an ordinary boundary.
    assert_eq!(admitted(&set, 0, anchor - 1), 2);
    assert_eq!(admitted(&set, 0, anchor), 2);
}

#[test]
fn windows_never_go_backwards() {
    let q = spec("q", 2, HOUR, T0);
    let set = set_of(&[("a", Some(&q))], Share::ALONE, T0);
    assert_eq!(admitted(&set, 0, T0 + 2 * HOUR as i64), 2);
    // The wall clock steps back an hour: no fresh quota.
    assert_eq!(admitted(&set, 0, T0 + HOUR as i64), 0);
    // Even before the counter was made.
    assert_eq!(admitted(&set, 0, T0 - 10 * HOUR as i64), 0);
    assert_eq!(admitted(&set, 0, T0 + 3 * HOUR as i64), 2);
}

#[test]
fn a_request_from_just_before_a_boundary_counts_in_its_own_window() {
    let q = spec("q", 1, HOUR, T0);
    // The set is made just after a boundary; a request that arrived just before it is checked.
    let set = set_of(&[("a", Some(&q))], Share::ALONE, T0 + HOUR as i64);
    assert!(set.app(0).unwrap().check(T0 + HOUR as i64 - 1).allowed);
    assert!(set.app(0).unwrap().check(T0 + HOUR as i64).allowed);
    assert!(!set.app(0).unwrap().check(T0 + HOUR as i64).allowed);
}

#[test]
fn three_replicas_split_a_limit_of_ten_four_three_three() {
    let q = spec("q", 10, DAY, T0);
    let admitted_by: Vec<u64> = (0..3)
        .map(|i| {
            let set = set_of(&[("a", Some(&q))], Share::new(i, 3).unwrap(), T0);
            admitted(&set, 0, T0 + 5)
        })
        .collect();
    assert_eq!(admitted_by, vec![4, 3, 3]);
    // Limit 2 over 3 replicas: the third refuses everything.
    let q2 = spec("q2", 2, DAY, T0);
    let set = set_of(&[("a", Some(&q2))], Share::new(2, 3).unwrap(), T0);
    let d = set.app(0).unwrap().check(T0);
    assert!(!d.allowed);
    assert_eq!(d.quota.limit, 0);
}

#[test]
fn a_share_change_keeps_the_count_of_the_window() {
    let q = spec("q", 10, DAY, T0);
    let alone = set_of(&[("a", Some(&q))], Share::ALONE, T0);
    assert_eq!(admitted(&alone, 0, T0), 10);
    // Now one of three: its share is 4, already used up; no fresh quota from re-numbering.
    let third = QuotaSet::build(
        [("a", Some(&q))],
        Share::new(0, 3).unwrap(),
        Some(&alone),
        None,
        T0,
    );
    assert_eq!(third.shares_counter_with(&alone, 0), Some(true));
    assert_eq!(admitted(&third, 0, T0), 0);
    assert_eq!(admitted(&third, 0, T0 + DAY as i64), 4);
}

#[test]
fn counters_are_per_app_and_survive_rebuilds_while_the_numbers_hold() {
    let q = spec("q", 2, DAY, T0);
    let other = spec("other", 5, DAY, T0);
    let first = set_of(
        &[("a", Some(&q)), ("b", Some(&q)), ("c", None)],
        Share::ALONE,
        T0,
    );
    assert_eq!(first.len(), 2);
    assert!(first.app(2).is_none());
    assert!(first.app(7).is_none());
    assert_eq!(admitted(&first, 0, T0), 2);
    assert_eq!(admitted(&first, 1, T0), 2, "each app has its own count");

    // Same quota in a new snapshot (apps reordered, one added, one removed): counts kept.
    let same = spec("q", 2, DAY, T0);
    let second = QuotaSet::build(
        [
            ("new", Some(&other)),
            ("b", Some(&same)),
            ("a", Some(&same)),
        ],
        Share::ALONE,
        Some(&first),
        None,
        T0,
    );
    assert_eq!(second.len(), 3);
    assert_eq!(admitted(&second, 2, T0), 0, "a: still used up");
    assert_eq!(admitted(&second, 1, T0), 0, "b: still used up");
    assert_eq!(admitted(&second, 0, T0), 5);

    // Any number changed: a fresh counter.
    for changed in [
        spec("q", 3, DAY, T0),
        spec("q", 2, HOUR, T0),
        spec("q", 2, DAY, T0 + 1),
        spec("q-renamed", 2, DAY, T0),
    ] {
        let third = QuotaSet::build(
            [("a", Some(&changed))],
            Share::ALONE,
            Some(&second),
            None,
            T0,
        );
        assert_eq!(third.shares_counter_with(&second, 0), Some(false));
        assert_eq!(admitted(&third, 0, T0), changed.limit, "{changed:?}");
    }

    // Unbinding drops the counter: the set never holds more counters than apps.
    let none = QuotaSet::build(
        [("a", None), ("b", None)],
        Share::ALONE,
        Some(&second),
        None,
        T0,
    );
    assert!(none.is_empty());
    assert!(QuotaSet::empty().is_empty());
}

#[test]
fn usage_reports_current_windows_and_restores_into_matching_counters() {
    let q = spec("q", 5, HOUR, T0);
    let set = set_of(&[("a", Some(&q)), ("b", Some(&q))], Share::ALONE, T0);
    assert!(set.usage(T0).is_empty(), "nothing counted, nothing to save");
    for _ in 0..3 {
        assert!(set.app(0).unwrap().check(T0 + 10).allowed);
    }
    let usage = set.usage(T0 + 20);
    assert_eq!(usage.len(), 1);
    let (key, used) = usage[0].clone();
    assert_eq!(&*key.app_id, "a");
    assert_eq!(&*key.quota_id, "q");
    assert_eq!(
        (key.limit, key.window_ms, key.anchor_unix_ms),
        (5, HOUR, T0)
    );
    assert_eq!(
        used,
        Usage {
            window: 0,
            count: 3
        }
    );
    // Once the window is over there is nothing worth saving.
    assert!(set.usage(T0 + HOUR as i64).is_empty());

    // A restart in the same window: the count comes back.
    let restored: HashMap<QuotaKey, Usage> = usage.into_iter().collect();
    let back = QuotaSet::build(
        [("a", Some(&q)), ("b", Some(&q))],
        Share::ALONE,
        None,
        Some(&restored),
        T0 + 30,
    );
    assert_eq!(admitted(&back, 0, T0 + 40), 2);
    assert_eq!(admitted(&back, 1, T0 + 40), 5);
    assert_eq!(
        back.usage(T0 + 50)[0].1,
        Usage {
            window: 0,
            count: 5
        }
    );

    // In a later window: stale, ignored.
    let later = QuotaSet::build(
        [("a", Some(&q))],
        Share::ALONE,
        None,
        Some(&restored),
        T0 + HOUR as i64,
    );
    assert_eq!(admitted(&later, 0, T0 + HOUR as i64), 5);

    // Changed numbers: ignored.
    let changed = spec("q", 6, HOUR, T0);
    let other = QuotaSet::build(
        [("a", Some(&changed))],
        Share::ALONE,
        None,
        Some(&restored),
        T0 + 30,
    );
    assert_eq!(admitted(&other, 0, T0 + 40), 6);

    // A counter kept from the previous set wins over the saved count.
    let kept = QuotaSet::build(
        [("a", Some(&q))],
        Share::ALONE,
        Some(&back),
        Some(&restored),
        T0 + 30,
    );
    assert_eq!(admitted(&kept, 0, T0 + 40), 0);

    // A saved count above the counter's range is clamped, not wrapped.
    let mut huge = HashMap::new();
    huge.insert(
        spec("q", 5, HOUR, T0).key("a"),
        Usage {
            window: 0,
            count: u64::MAX,
        },
    );
    let clamped = QuotaSet::build([("a", Some(&q))], Share::ALONE, None, Some(&huge), T0 + 30);
    assert_eq!(admitted(&clamped, 0, T0 + 40), 0);
}

#[test]
fn huge_limits_and_long_spans_do_not_wrap() {
    // Limit beyond 32 bits: clamped to u32::MAX, the count still never wraps to 0.
    let q = spec("q", u64::MAX, 1, 0);
    let set = set_of(&[("a", Some(&q))], Share::ALONE, 0);
    let c = &set.app(0).unwrap().counter;
    assert_eq!(c.count_bits, 32);
    c.state
        .store(c.pack(1, u64::from(u32::MAX) - 1), Ordering::Relaxed);
    assert!(set.app(0).unwrap().check(0).allowed);
    assert!(!set.app(0).unwrap().check(0).allowed);
    // A million 1 ms windows later, a fresh window.
    assert!(set.app(0).unwrap().check(1_000_000).allowed);
    // A small limit leaves room for a vast number of windows (1 ms windows for 500+ years).
    let small = spec("s", 1000, 1, 0);
    let set = set_of(&[("a", Some(&small))], Share::ALONE, 0);
    let far = 500 * 365 * DAY as i64;
    assert_eq!(admitted(&set, 0, far), 1000);
    assert_eq!(set.usage(far)[0].1.window, far);
}

#[test]
fn concurrent_calls_admit_exactly_the_limit() {
    let q = spec("q", 1000, DAY, T0);
    let set = Arc::new(set_of(&[("a", Some(&q))], Share::ALONE, T0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let set = Arc::clone(&set);
            std::thread::spawn(move || {
                (0..600)
                    .filter(|_| set.app(0).unwrap().check(T0 + 1).allowed)
                    .count()
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 1000);
    assert_eq!(set.usage(T0 + 2)[0].1.count, 1000);
}
