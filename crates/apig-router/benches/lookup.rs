//! Route lookup throughput: 10k and 100k routes with path parameters across several groups.
//!
//! `cargo bench -p apig-router`; the target is at least 3M lookups/s per core at 100k routes.
//!
//! 1024 requests rotate over services spread across the table, so most lookups walk cold
//! parts of it; a third use an upper-case host that only a wildcard domain matches; one in six
//! misses (a path under a service with no such route).

use std::hint::black_box;

use apig_proto::{Api, Environment, Group, MatchMode, Snapshot};
use apig_router::{canonicalize, CanonicalPath, RouteTable};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const GROUPS: usize = 8;

/// Routes per service: five templates mixing literals, `{param}`, `{param+}` and SWA.
const TEMPLATES: &[(&str, &str, MatchMode)] = &[
    ("GET", "/v1/svc{s}/items/{id}", MatchMode::Normal),
    (
        "POST",
        "/v1/svc{s}/items/{id}/tags/{tag}",
        MatchMode::Normal,
    ),
    (
        "GET",
        "/v1/svc{s}/users/{uid}/orders/{oid}",
        MatchMode::Normal,
    ),
    ("ANY", "/v1/svc{s}/static", MatchMode::Swa),
    ("GET", "/v1/svc{s}/files/{path+}", MatchMode::Normal),
];

/// One service in eight is published in TEST, the rest in RELEASE.
fn env_of(svc: usize) -> &'static str {
    if (svc / GROUPS) % 8 == 7 {
        "TEST"
    } else {
        "RELEASE"
    }
}

fn snapshot(routes: usize) -> Snapshot {
    let envs = ["RELEASE", "TEST"];
    let mut apis = Vec::with_capacity(routes);
    for i in 0..routes {
        let svc = i / TEMPLATES.len();
        let (method, tpl, mode) = TEMPLATES[i % TEMPLATES.len()];
        apis.push(Api {
            id: format!("api{i}"),
            group_id: format!("g{}", svc % GROUPS),
            env_id: format!("env-{}", env_of(svc)),
            req_method: method.into(),
            req_uri: tpl.replace("{s}", &svc.to_string()),
            match_mode: mode as i32,
            ..Default::default()
        });
    }
    Snapshot {
        groups: (0..GROUPS)
            .map(|g| Group {
                id: format!("g{g}"),
                name: format!("g{g}"),
                domains: vec![format!("g{g}.example.com"), format!("*.g{g}.example.net")],
            })
            .collect(),
        environments: envs
            .iter()
            .map(|e| Environment {
                id: format!("env-{e}"),
                name: (*e).into(),
            })
            .collect(),
        apis,
        ..Default::default()
    }
}

struct Request {
    host: String,
    stage: Option<&'static str>,
    method: &'static str,
    raw: String,
    path: CanonicalPath,
}

/// Requests spread over the services, hitting every template kind, plus a few misses.
fn requests(routes: usize) -> Vec<Request> {
    let services = routes / TEMPLATES.len();
    (0..1024)
        .map(|i| {
            let svc = (i * 7919) % services;
            let stage = (env_of(svc) == "TEST").then_some("TEST");
            let host = if i % 3 == 0 {
                format!("edge.G{}.example.NET", svc % GROUPS)
            } else {
                format!("g{}.example.com", svc % GROUPS)
            };
            let (method, raw) = match i % 6 {
                0 => ("GET", format!("/v1/svc{svc}/items/{i}")),
                1 => ("POST", format!("/v1/svc{svc}/items/{i}/tags/t%20{i}")),
                2 => ("GET", format!("/v1/svc{svc}/users/u{i}/orders/o{i}")),
                3 => ("DELETE", format!("/v1/svc{svc}/static/css/site.css")),
                4 => ("GET", format!("/v1/svc{svc}/files/a/b/c{i}.txt")),
                _ => ("GET", format!("/v1/svc{svc}/nothing/{i}")),
            };
            let path = canonicalize(&raw).expect("valid path");
            Request {
                host,
                stage,
                method,
                raw,
                path,
            }
        })
        .collect()
}

fn bench_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    for routes in [10_000, 100_000] {
        let table = RouteTable::compile(&snapshot(routes)).expect("compiles");
        let reqs = requests(routes);
        let hits = reqs
            .iter()
            .filter(|r| table.lookup(&r.host, r.stage, r.method, &r.path).is_ok())
            .count();
        assert!(hits >= reqs.len() * 5 / 6, "{hits} of {}", reqs.len());
        group.bench_with_input(BenchmarkId::new("route", routes), &reqs, |b, reqs| {
            let mut i = 0;
            b.iter(|| {
                let r = &reqs[i % reqs.len()];
                i += 1;
                let m = table.lookup(black_box(&r.host), r.stage, r.method, black_box(&r.path));
                black_box(m.map(|m| m.api_index).ok())
            })
        });
        group.bench_with_input(
            BenchmarkId::new("canonicalize+route", routes),
            &reqs,
            |b, reqs| {
                let mut i = 0;
                b.iter(|| {
                    let r = &reqs[i % reqs.len()];
                    i += 1;
                    let path = canonicalize(black_box(&r.raw)).expect("valid");
                    let m = table.lookup(black_box(&r.host), r.stage, r.method, &path);
                    black_box(m.map(|m| m.api_index).ok())
                })
            },
        );
    }
    group.finish();
}

fn bench_canonicalize(c: &mut Criterion) {
    let paths = [
        "/v1/svc123/items/42",
        "/v1/svc123/items/42/tags/t%20x",
        "//v1/./svc123/files/a/../b/c.txt",
        "/v1/svc123/users/J%C3%BCrgen/orders/o-1/",
    ];
    let mut group = c.benchmark_group("canonicalize");
    group.throughput(Throughput::Elements(1));
    for (i, p) in paths.iter().enumerate() {
        group.bench_with_input(BenchmarkId::from_parameter(i), p, |b, p| {
            b.iter(|| canonicalize(black_box(p)).map(|c| c.as_str().len()))
        });
    }
    group.finish();
}

fn bench_compile(c: &mut Criterion) {
    let snap = snapshot(10_000);
    c.bench_function("compile/10000", |b| {
        b.iter(|| {
            RouteTable::compile(black_box(&snap))
                .expect("compiles")
                .len()
        })
    });
}

criterion_group!(benches, bench_lookup, bench_canonicalize, bench_compile);
criterion_main!(benches);
