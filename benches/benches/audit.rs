//! Audit log costs: a durable append (fsync included) and a full verify.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use registry::audit::{AuditLog, Event};
use std::hint::black_box;

fn audit(c: &mut Criterion) {
    let now = "2026-06-01T00:00:00Z".parse().expect("time");
    let mut group = c.benchmark_group("audit");
    group.sample_size(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path().join("audit"));
    group.bench_function("append_fsync_one", |b| {
        b.iter(|| {
            log.append(
                now,
                vec![Event::new("bench", "source.approve", "svc-1").detail("reason", "bench")],
            )
            .expect("append")
        })
    });
    // Eight threads recording at once, as a busy server does: appends that
    // arrive together share one fdatasync (group commit).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit");
    group.throughput(Throughput::Elements(8 * 16));
    group.bench_function("append_fsync_8_threads_x16", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                for t in 0..8 {
                    let path = path.clone();
                    s.spawn(move || {
                        let log = AuditLog::open(path);
                        for i in 0..16 {
                            log.append(now, vec![Event::new("bench", "query", &format!("t{t}-{i}"))])
                                .expect("append");
                        }
                    });
                }
            })
        })
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path().join("audit"));
    let n = 10_000u64;
    for chunk in 0..(n / 500) {
        let events = (0..500)
            .map(|i| Event::new("bench", "policy.decide", &format!("svc-{chunk}-{i}")).detail("allowed", i))
            .collect();
        log.append(now, events).expect("append");
    }
    group.throughput(Throughput::Elements(n));
    group.bench_function("verify_10k_entries", |b| {
        b.iter(|| {
            let r = log.verify().expect("verify");
            assert!(r.intact);
            black_box(r.entries)
        })
    });
    group.finish();
}

criterion_group!(benches, audit);
criterion_main!(benches);
