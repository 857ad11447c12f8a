//! How fast ingest decisions are: every file of every pass goes through one.

use benches::{org_registry, paths};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use registry::FixedClock;
use std::hint::black_box;

fn decide(c: &mut Criterion) {
    let reg = org_registry();
    let clock = FixedClock("2026-06-01T00:00:00Z".parse().expect("time"));
    let paths = paths(1000);
    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Elements(paths.len() as u64));
    group.bench_function("decide_ingest_1000_paths", |b| {
        b.iter(|| {
            let policy = reg.policy(&clock);
            let mut allowed = 0usize;
            for (i, p) in paths.iter().enumerate() {
                let source = format!("svc-{}", i % 50);
                allowed += usize::from(policy.decide_ingest(&source, p).is_allowed());
            }
            black_box(allowed)
        })
    });
    group.finish();
    let mut group = c.benchmark_group("registry");
    group.bench_function("parse_example_registry", |b| {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/acme/registry.toml"
        ))
        .expect("example registry");
        b.iter(|| black_box(registry::Registry::parse(&text, std::path::Path::new("/")).is_ok()))
    });
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
