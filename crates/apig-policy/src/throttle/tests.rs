use super::*;
use governor::clock::FakeRelativeClock;
use std::net::Ipv4Addr;

fn throttle(policy: &str, ty: i32, window_ms: u64) -> apig_proto::Throttle {
    apig_proto::Throttle {
        policy_id: policy.into(),
        r#type: ty,
        window_ms,
        ..Default::default()
    }
}

fn spec(t: &apig_proto::Throttle) -> ThrottleSpec {
    ThrottleSpec::prepare(t).unwrap()
}

fn settings(default_per_sec: u64) -> ThrottleSettings {
    ThrottleSettings {
        default_per_sec,
        max_keys_per_counter: 1000,
        budget: KeyBudget::new(10_000),
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn anon(last: u8) -> CallerKeys<'static> {
    CallerKeys {
        ip: ip(last),
        app: None,
        user: None,
    }
}

/// Calls until refused (at most 100); the number admitted.
fn admitted(set: &ThrottleSet<FakeRelativeClock>, api: usize, who: &CallerKeys<'_>) -> usize {
    let t = set.api(api).unwrap();
    (0..100).take_while(|_| t.check(who).allowed).count()
}

#[test]
fn shares_add_up_to_the_limit() {
    let shares: Vec<u64> = (0..3)
        .map(|i| Share::new(i, 3).unwrap().apply(10))
        .collect();
    assert_eq!(shares, vec![4, 3, 3]);
    for limit in [0u64, 1, 2, 7, 10, 99, 1000, u64::MAX] {
        for count in 1..=7u32 {
            let sum: u128 = (0..count)
                .map(|i| u128::from(Share::new(i, count).unwrap().apply(limit)))
                .sum();
            assert_eq!(sum, u128::from(limit), "{limit} over {count}");
        }
    }
    // Two replicas, limit 1: the second refuses everything.
    assert_eq!(Share::new(0, 2).unwrap().apply(1), 1);
    assert_eq!(Share::new(1, 2).unwrap().apply(1), 0);
    assert_eq!(Share::ALONE.apply(10), 10);
    assert!(Share::new(3, 3).is_none());
    assert!(Share::new(0, 0).is_none());
}

#[test]
fn specs_are_checked() {
    assert!(ThrottleSpec::prepare(&throttle("", 1, 1000)).is_err());
    assert!(ThrottleSpec::prepare(&throttle("p", 3, 1000)).is_err());
    assert!(ThrottleSpec::prepare(&throttle("p", -1, 1000)).is_err());
    assert!(ThrottleSpec::prepare(&throttle("p", 1, 0)).is_err());
    assert!(
        !spec(&throttle("p", 0, 1000)).shared,
        "unset type is APIG's default 1"
    );
    assert!(spec(&throttle("p", 2, 1000)).shared);
    let mut t = throttle("p", 1, 1000);
    t.app_specials.insert("app".into(), 0);
    let e = ThrottleSpec::prepare(&t).unwrap_err();
    assert!(e.to_string().contains("limit of 0"), "{e}");
    let mut t = throttle("p", 1, 1000);
    t.user_specials.insert(String::new(), 3);
    assert!(ThrottleSpec::prepare(&t).is_err());
    let t = throttle("p", 1, u64::MAX);
    assert_eq!(spec(&t).window, MAX_WINDOW);
}

#[test]
fn window_texts() {
    assert_eq!(window_text(Duration::from_secs(10)), "10 second");
    assert_eq!(window_text(Duration::from_secs(60)), "1 minute");
    assert_eq!(window_text(Duration::from_secs(90)), "90 second");
    assert_eq!(window_text(Duration::from_secs(7200)), "2 hour");
    assert_eq!(window_text(Duration::from_secs(86_400)), "1 day");
    assert_eq!(window_text(Duration::from_millis(500)), "500 millisecond");
    let d = Decision {
        allowed: true,
        remaining: 9,
        quota: Quota {
            limit: 10,
            window: Duration::from_secs(10),
        },
    };
    assert_eq!(debug_header_value(&d), "remain:9,limit:10,time:10 second");
    assert_eq!(
        CounterKind::Default.header_name(),
        "x-apig-ratelimit-api-allenv"
    );
}

#[test]
fn type_1_counts_each_api_and_type_2_shares() {
    let clock = FakeRelativeClock::default();
    let mut t1 = throttle("p1", 1, 1000);
    t1.api_limit = 3;
    let mut t2 = throttle("p2", 2, 1000);
    t2.api_limit = 3;
    let (s1, s2) = (spec(&t1), spec(&t2));
    let set = ThrottleSet::build(
        [
            ("a", Some(&s1)),
            ("b", Some(&s1)),
            ("c", Some(&s2)),
            ("d", Some(&s2)),
        ],
        Share::ALONE,
        &settings(0),
        None,
        &clock,
    );
    assert_eq!(admitted(&set, 0, &anon(1)), 3);
    assert_eq!(admitted(&set, 1, &anon(1)), 3, "type 1: its own counter");
    assert_eq!(admitted(&set, 2, &anon(1)), 3);
    assert_eq!(admitted(&set, 3, &anon(1)), 0, "type 2: shared with c");
    assert_eq!(set.counter_count(), 3);
}

#[test]
fn each_counter_kind_and_specials() {
    let clock = FakeRelativeClock::default();
    let mut t = throttle("p", 1, 1000);
    t.api_limit = 100;
    t.user_limit = 6;
    t.app_limit = 2;
    t.ip_limit = 4;
    t.app_specials.insert("vip".into(), 5);
    t.user_specials.insert("big-tenant".into(), 50);
    let s = spec(&t);
    let set = ThrottleSet::build([("a", Some(&s))], Share::ALONE, &settings(0), None, &clock);

    // IP: 4 per client IP.
    assert_eq!(admitted(&set, 0, &anon(1)), 4);
    assert_eq!(admitted(&set, 0, &anon(2)), 4);

    // App: 2 per app; the excluded app gets 5.
    let (app1, app2, vip) = (Arc::from("app1"), Arc::from("app2"), Arc::from("vip"));
    let proj: Arc<str> = Arc::from("proj");
    let keys = |app, last| CallerKeys {
        ip: ip(last),
        app: Some(app),
        user: None,
    };
    assert_eq!(admitted(&set, 0, &keys(&app1, 10)), 2);
    assert_eq!(admitted(&set, 0, &keys(&app2, 11)), 2);
    // IP allows 4, the excluded app 5: the IP counter refuses first.
    assert_eq!(admitted(&set, 0, &keys(&vip, 12)), 4);
    assert_eq!(
        (13..20)
            .map(|last| set.api(0).unwrap().check(&keys(&vip, last)).allowed)
            .filter(|&a| a)
            .count(),
        1,
        "the excluded app had 4 of its 5 left"
    );

    // User: 6 per project (across IPs); the excluded tenant gets 50 (API limit still 100).
    let users = |user, last| CallerKeys {
        ip: ip(last),
        app: None,
        user: Some(user),
    };
    let mut passed = 0;
    for last in 30..40 {
        passed += admitted(&set, 0, &users(&proj, last)).min(100);
        if passed >= 6 {
            break;
        }
    }
    assert_eq!(passed, 6);
    assert!(!set.api(0).unwrap().check(&users(&proj, 41)).allowed);
    let big: Arc<str> = Arc::from("big-tenant");
    let mut big_passed = 0;
    for last in 50..80 {
        big_passed += admitted(&set, 0, &users(&big, last));
    }
    assert_eq!(big_passed, 50);
}

#[test]
fn the_api_limit_still_caps_an_excluded_app() {
    let clock = FakeRelativeClock::default();
    let mut t = throttle("p", 2, 60_000);
    t.api_limit = 3;
    t.app_limit = 1;
    t.app_specials.insert("vip".into(), 3);
    let s = spec(&t);
    let set = ThrottleSet::build([("a", Some(&s))], Share::ALONE, &settings(0), None, &clock);
    let vip: Arc<str> = Arc::from("vip");
    let other: Arc<str> = Arc::from("other");
    let k = |app| CallerKeys {
        ip: ip(1),
        app: Some(app),
        user: None,
    };
    assert_eq!(admitted(&set, 0, &k(&other)), 1);
    assert_eq!(admitted(&set, 0, &k(&vip)), 2, "API counter had 2 left");
}

#[test]
fn verdict_reports_every_checked_counter() {
    let clock = FakeRelativeClock::default();
    let mut t = throttle("p", 1, 10_000);
    t.api_limit = 10;
    t.ip_limit = 5;
    let s = spec(&t);
    let set = ThrottleSet::build([("a", Some(&s))], Share::ALONE, &settings(0), None, &clock);
    let v = set.api(0).unwrap().check(&anon(1));
    assert!(v.allowed);
    let got: Vec<(CounterKind, u64, u64)> = v
        .decisions()
        .map(|(k, d)| (k, d.remaining, d.quota.limit))
        .collect();
    assert_eq!(
        got,
        vec![(CounterKind::Api, 9, 10), (CounterKind::Ip, 4, 5)]
    );
    for _ in 0..4 {
        assert!(set.api(0).unwrap().check(&anon(1)).allowed);
    }
    let v = set.api(0).unwrap().check(&anon(1));
    assert!(!v.allowed);
    // The IP refused; the API counter was not touched.
    let got: Vec<CounterKind> = v.decisions().map(|(k, _)| k).collect();
    assert_eq!(got, vec![CounterKind::Ip]);
    assert_eq!(
        set.api(0)
            .unwrap()
            .check(&anon(2))
            .decisions()
            .next()
            .unwrap()
            .1
            .remaining,
        4
    );
}

#[test]
fn the_default_limit_applies_to_apis_without_policy() {
    let clock = FakeRelativeClock::default();
    let set = ThrottleSet::build(
        [("a", None), ("b", None)],
        Share::ALONE,
        &settings(3),
        None,
        &clock,
    );
    assert_eq!(admitted(&set, 0, &anon(1)), 3);
    assert_eq!(admitted(&set, 1, &anon(1)), 3, "per API");
    let (kind, d) = set
        .api(1)
        .unwrap()
        .check(&anon(1))
        .decisions()
        .next()
        .unwrap();
    assert_eq!(kind, CounterKind::Default);
    assert_eq!(d.quota.window, Duration::from_secs(1));
    clock.advance(Duration::from_secs(1));
    assert_eq!(admitted(&set, 0, &anon(1)), 3);

    // 0: unlimited.
    let set = ThrottleSet::build([("a", None)], Share::ALONE, &settings(0), None, &clock);
    assert!(set.api(0).unwrap().is_unlimited());
    assert_eq!(admitted(&set, 0, &anon(1)), 100);
}

#[test]
fn counters_survive_a_rebuild_with_the_same_numbers() {
    let clock = FakeRelativeClock::default();
    let st = settings(5);
    let mut t = throttle("p", 1, 60_000);
    t.api_limit = 3;
    t.ip_limit = 10;
    let s = spec(&t);
    let v1 = ThrottleSet::build(
        [("a", Some(&s)), ("x", None)],
        Share::ALONE,
        &st,
        None,
        &clock,
    );
    assert_eq!(admitted(&v1, 0, &anon(1)), 3);
    assert_eq!(admitted(&v1, 1, &anon(1)), 5);

    // Republished (same numbers, APIs reordered, one added): nothing resets.
    let s_again = spec(&t);
    let v2 = ThrottleSet::build(
        [("new", None), ("x", None), ("a", Some(&s_again))],
        Share::ALONE,
        &st,
        Some(&v1),
        &clock,
    );
    assert_eq!(admitted(&v2, 2, &anon(2)), 0);
    assert_eq!(admitted(&v2, 1, &anon(2)), 0);
    assert_eq!(admitted(&v2, 0, &anon(2)), 5);
    drop(v1);

    // The policy's API number changes: that counter starts afresh; the IP counter (unchanged)
    // keeps its state.
    let mut changed = t.clone();
    changed.api_limit = 4;
    let s3 = spec(&changed);
    let v3 = ThrottleSet::build([("a", Some(&s3))], Share::ALONE, &st, Some(&v2), &clock);
    // IP 10.0.0.1 used 3 of its 10, 10.0.0.2 used 1 (refused by the API counter).
    assert_eq!(admitted(&v3, 0, &anon(1)), 4);
    // Another policy id: all new.
    let mut other = t.clone();
    other.policy_id = "q".into();
    let s4 = spec(&other);
    let v4 = ThrottleSet::build([("a", Some(&s4))], Share::ALONE, &st, Some(&v3), &clock);
    assert_eq!(admitted(&v4, 0, &anon(1)), 3);
}

#[test]
fn share_changes_rebuild_changed_counters() {
    let clock = FakeRelativeClock::default();
    let st = settings(0);
    let mut t = throttle("p", 2, 60_000);
    t.api_limit = 10;
    let s = spec(&t);
    let alone = ThrottleSet::build([("a", Some(&s))], Share::ALONE, &st, None, &clock);
    assert_eq!(admitted(&alone, 0, &anon(1)), 10);

    let first = ThrottleSet::build(
        [("a", Some(&s))],
        Share::new(0, 3).unwrap(),
        &st,
        Some(&alone),
        &clock,
    );
    assert_eq!(first.share(), Share::new(0, 3).unwrap());
    assert_eq!(admitted(&first, 0, &anon(1)), 4);
    // Index 1 of 3 enforces 3: a different quota, a fresh counter.
    let second = ThrottleSet::build(
        [("a", Some(&s))],
        Share::new(1, 3).unwrap(),
        &st,
        Some(&first),
        &clock,
    );
    assert_eq!(admitted(&second, 0, &anon(1)), 3);
    // Index 2 of 3 also enforces 3: same quota, same counter (already used up).
    let third = ThrottleSet::build(
        [("a", Some(&s))],
        Share::new(2, 3).unwrap(),
        &st,
        Some(&second),
        &clock,
    );
    assert_eq!(third.shares_counter_with(&second, 0), Some(true));
    assert_eq!(admitted(&third, 0, &anon(1)), 0);

    // A share of 0 refuses everything.
    let mut one = throttle("p", 2, 60_000);
    one.api_limit = 1;
    let s1 = spec(&one);
    let zero = ThrottleSet::build(
        [("a", Some(&s1))],
        Share::new(1, 2).unwrap(),
        &st,
        None,
        &clock,
    );
    let v = zero.api(0).unwrap().check(&anon(1));
    assert!(!v.allowed);
    assert_eq!(v.decisions().next().unwrap().1.quota.limit, 0);
}

#[test]
fn idle_keys_are_cleaned_up() {
    let clock = FakeRelativeClock::default();
    let st = ThrottleSettings {
        default_per_sec: 0,
        max_keys_per_counter: 3,
        budget: KeyBudget::new(100),
    };
    let mut t = throttle("p", 1, 1000);
    t.ip_limit = 2;
    let s = spec(&t);
    let set = ThrottleSet::build([("a", Some(&s))], Share::ALONE, &st, None, &clock);
    for last in 1..=3 {
        assert!(set.api(0).unwrap().check(&anon(last)).allowed);
    }
    assert!(!set.api(0).unwrap().check(&anon(4)).allowed, "cap reached");
    assert_eq!(set.retain_recent(), 3);
    clock.advance(Duration::from_secs(2));
    assert_eq!(set.retain_recent(), 0);
    assert_eq!(st.budget.used(), 0);
    assert!(set.api(0).unwrap().check(&anon(4)).allowed);
}
