//! What a replica does with a large snapshot: decode + prepare (the route table, credentials
//! and every API pre-parsed), timed by criterion at 10k and 100k APIs (the target: the
//! whole compile + swap within 1 s at 100k), and the bytes a replica holds per API once the
//! snapshot is prepared and installed, counted by this binary's global allocator.
//!
//! `cargo bench -p apig-gateway --bench snapshot`
//!
//! The timings stop when the new state is ready, as the swap does; the decoded snapshot and the
//! replaced state are freed outside them (a replica frees them after the swap).
//!
//! The APIs look like the scale benchmark's (`cargo xtask bench scale`): `/v1/svc{i}/items/{id}`
//! with its path parameter declared, round robin over 8 groups, RELEASE, an HTTP backend.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

use apig_gateway::bench_support::{install, prepare_snapshot};
use apig_proto::{api, Api, Environment, Group, HttpBackend, RequestParam, Snapshot};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use prost::Message;

/// Counts the bytes currently allocated (all threads).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const GROUPS: usize = 8;

/// A 32-hex-digit id, as the control plane makes them.
fn id(kind: u8, i: usize) -> String {
    format!("{kind:02x}{i:08x}0123456789abcdef012345")
}

fn snapshot(apis: usize) -> Vec<u8> {
    let release = id(0xe0, 0);
    Snapshot {
        instance_id: id(0x1a, 0),
        epoch: id(0xe9, 0),
        version: 1,
        project_id: id(0x9c, 0),
        groups: (0..GROUPS)
            .map(|g| Group {
                id: id(0x6c, g),
                name: format!("scale_g{g}"),
                domains: vec![format!("{}.apig.example.com", id(0x6c, g))],
            })
            .collect(),
        environments: vec![Environment {
            id: release.clone(),
            name: "RELEASE".into(),
        }],
        apis: (0..apis)
            .map(|i| Api {
                id: id(0xa1, i),
                name: format!("scale_api_{i}"),
                group_id: id(0x6c, i % GROUPS),
                env_id: release.clone(),
                publish_id: id(0xb0, i),
                version_id: id(0xf0, i),
                req_method: "GET".into(),
                req_uri: format!("/v1/svc{i}/items/{{id}}"),
                app_code_auth_type: "DISABLE".into(),
                req_protocol: "HTTP".into(),
                req_params: vec![RequestParam {
                    name: "id".into(),
                    r#type: "STRING".into(),
                    required: true,
                    ..Default::default()
                }],
                backend: Some(api::Backend::Http(HttpBackend {
                    scheme: "http".into(),
                    host: "127.0.0.1".into(),
                    port: 8080,
                    method: "GET".into(),
                    path: "/echo".into(),
                    timeout_ms: 5000,
                    ..Default::default()
                })),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Bytes held after preparing, and after also installing, `encoded`.
fn held(encoded: &[u8]) -> (isize, isize) {
    let before = LIVE.load(Ordering::SeqCst);
    let mut prepared = prepare_snapshot(encoded).expect("prepares");
    // What a replica keeps: the decoded snapshot is freed after the swap.
    prepared.free_snapshot();
    let prepared_bytes = LIVE.load(Ordering::SeqCst) - before;
    let installed = install(prepared).expect("installs");
    assert!(installed.is_serving());
    let installed_bytes = LIVE.load(Ordering::SeqCst) - before;
    drop(installed);
    (prepared_bytes, installed_bytes)
}

fn bytes_per_api() {
    let one = snapshot(1);
    let (one_prepared, one_installed) = held(&one);
    for n in [10_000, 100_000] {
        let encoded = snapshot(n);
        let (prepared, installed) = held(&encoded);
        let per = |bytes: isize, base: isize| (bytes - base) as f64 / (n - 1) as f64;
        println!(
            "snapshot/{n}: {} encoded bytes per API; held per API: {:.0} bytes prepared, \
             {:.0} bytes prepared + installed (target <= 2048)",
            encoded.len() / n,
            per(prepared, one_prepared),
            per(installed, one_installed),
        );
    }
}

fn bench_prepare(c: &mut Criterion) {
    // Some parts of the replica state expect to live inside a Tokio runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _enter = rt.enter();
    bytes_per_api();
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);
    for n in [10_000, 100_000] {
        let encoded = snapshot(n);
        assert_eq!(prepare_snapshot(&encoded).expect("prepares").apis(), n);
        group.bench_with_input(
            BenchmarkId::new("decode+prepare", n),
            &encoded,
            |b, encoded| b.iter_with_large_drop(|| prepare_snapshot(black_box(encoded))),
        );
        group.bench_with_input(
            BenchmarkId::new("decode+prepare+install", n),
            &encoded,
            |b, encoded| {
                // The replaced state is dropped outside the timing, as a replica drops the old
                // runtime after the swap, when its last request ends.
                b.iter_with_large_drop(|| {
                    let prepared = prepare_snapshot(black_box(encoded)).expect("prepares");
                    install(prepared)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_prepare);
criterion_main!(benches);
