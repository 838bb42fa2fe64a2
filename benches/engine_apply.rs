//! `engine_apply`: the deterministic core alone (capture + positions), one core, no I/O.
//! 80% new, 10% amend, 10% cancel over 10,000 accounts x 50 instruments.
//! Run: `cargo bench --bench engine_apply`. Figures: docs/benchmarks.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod support;

const ACCOUNTS: usize = 10_000;
const INSTRUMENTS: usize = 50;
const STREAM: usize = 1_000_000;

fn engine_apply(c: &mut Criterion) {
    let base = support::engine(ACCOUNTS, INSTRUMENTS);
    let first = base.last_sequence() + 1;
    let mut group = c.benchmark_group("engine_apply");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(20));
    for (name, new_percent) in [("mixed_80_new_10_amend_10_cancel", 80), ("new_only", 100)] {
        let stream = support::mixed_stream(STREAM, ACCOUNTS, INSTRUMENTS, new_percent, first);
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|n| apply_prefix(&base, &stream, n))
        });
    }
    // The same mix on a tenant whose whole state stays in cache (100 accounts x 10 instruments,
    // 100,000 commands): the difference to the case above is the cost of memory, not of logic.
    let small = support::engine(100, 10);
    let stream = support::mixed_stream(100_000, 100, 10, 80, small.last_sequence() + 1);
    group.bench_function("mixed_small_tenant_in_cache", |bencher| {
        bencher.iter_custom(|n| apply_prefix(&small, &stream, n))
    });
    group.finish();
}

/// Applies `iterations` commands of `stream`, each run on a fresh copy of `base`, so the state
/// grows as in production (tables resize, lots accumulate, new memory is faulted in) and
/// nothing is applied twice. Copying the tenant is not timed.
fn apply_prefix(
    base: &keel_engine::Engine,
    stream: &[keel_engine::Envelope],
    iterations: u64,
) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut remaining = iterations as usize;
    while remaining > 0 {
        let count = remaining.min(stream.len());
        let mut engine = base.clone();
        let start = Instant::now();
        for envelope in &stream[..count] {
            let _ = black_box(engine.apply(black_box(envelope)));
        }
        elapsed += start.elapsed();
        remaining -= count;
    }
    elapsed
}

criterion_group!(benches, engine_apply);
criterion_main!(benches);
