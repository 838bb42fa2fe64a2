//! `engine_apply`: the deterministic core alone (capture + positions), one core, no I/O.
//! 80% new, 10% amend, 10% cancel over 10,000 accounts x 50 instruments.
//! `state_pass`: what a background state pass costs over the same tenant after the 1M
//! commands: the state hash (encoding streamed through BLAKE3) and the encoding alone, with
//! the serde path's hash as the reference.
//! `apply_during_pass`: 200,000 more commands (amends and cancels of trades from anywhere in
//! the history) applied while another thread hashes an image taken after the 1M, the image
//! held to the end of the pass (`state_hash`) or let go as it is encoded (`into_state_hash`):
//! what the shard pays in copy-on-write copies during a state pass.
//! `house_position`: amends and cancels of old fills in one long net position (100,000 fills,
//! sides at random so it hovers around flat), the case a reversal's cost grows with.
//! Run: `cargo bench --bench engine_apply`. Figures: docs/benchmarks.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use keel_domain::{Multiplier, PositionEffect, PositionMode, Price, Quantity, Side};
use keel_position_keeping::{Booking, BookingId, Position, Terms};

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

/// The state pass's work on a tenant of 1M mixed commands: bytes per second of the encoding.
fn state_pass(c: &mut Criterion) {
    let mut engine = support::engine(ACCOUNTS, INSTRUMENTS);
    let first = engine.last_sequence() + 1;
    for envelope in &support::mixed_stream(STREAM, ACCOUNTS, INSTRUMENTS, 80, first) {
        let _ = engine.apply(envelope);
    }
    let bytes = engine.snapshot().len() as u64;
    let mut group = c.benchmark_group("state_pass");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    let mut buffer = Vec::with_capacity(bytes as usize);
    group.bench_function("encode_1M_mixed", |bencher| {
        bencher.iter(|| {
            buffer.clear();
            engine.write_snapshot_to(&mut buffer).expect("in memory");
            black_box(buffer.len())
        })
    });
    group.bench_function("encode_1M_mixed_to_sink", |bencher| {
        bencher.iter(|| engine.write_snapshot_to(&mut std::io::sink()).expect("a sink"))
    });
    group.bench_function("state_hash_1M_mixed", |bencher| bencher.iter(|| engine.state_hash()));
    // The reference: the same hash through serde and bincode (how it was computed before the
    // hand-written encoding, `keel_domain::canon`).
    group.bench_function("state_hash_1M_mixed_serde", |bencher| {
        bencher.iter(|| {
            let mut hasher = blake3::Hasher::new();
            let mut buffered = std::io::BufWriter::with_capacity(64 << 10, &mut hasher);
            engine.write_snapshot_serde(&mut buffered).expect("a hasher");
            drop(buffered);
            hasher.finalize()
        })
    });
    group.finish();
}

/// Applies the 200,000 commands after the 1M while a thread hashes an image of the 1M; only
/// the applying is timed (the engine is rebuilt for each sample, untimed).
fn apply_during_pass(c: &mut Criterion) {
    const TAIL: usize = 200_000;
    let mut base = support::engine(ACCOUNTS, INSTRUMENTS);
    let first = base.last_sequence() + 1;
    let stream = support::mixed_stream(STREAM + TAIL, ACCOUNTS, INSTRUMENTS, 80, first);
    for envelope in &stream[..STREAM] {
        let _ = base.apply(envelope);
    }
    let tail = &stream[STREAM..];
    let mut group = c.benchmark_group("apply_during_pass");
    group.throughput(Throughput::Elements(TAIL as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    // (name, image taken, let go as encoded)
    let cases = [
        ("200k_no_pass", false, false),
        ("200k_image_held", true, false),
        ("200k_image_drained", true, true),
        ("200k_image_held_idle_100ms", true, false),
    ];
    for (name, imaged, drained) in cases {
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|iterations| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iterations {
                    let mut engine = base.clone();
                    let image = imaged.then(|| engine.image());
                    let pass = std::thread::spawn(move || {
                        image.map(|image| {
                            if name.ends_with("idle_100ms") {
                                std::thread::sleep(Duration::from_millis(100));
                                return keel_engine::StateHash([0; 32]);
                            }
                            if drained {
                                image.into_state_hash()
                            } else {
                                image.state_hash()
                            }
                        })
                    });
                    let started = Instant::now();
                    for envelope in tail {
                        let _ = black_box(engine.apply(envelope));
                    }
                    elapsed += started.elapsed();
                    black_box(pass.join().expect("the pass"));
                }
                elapsed
            })
        });
    }
    group.finish();
}

/// A house account's position in one contract: `HOUSE_FILLS` fills of 1 to 5 lots, buy or sell
/// at random, so that it closes lots all day and rarely stands exactly flat.
const HOUSE_FILLS: u64 = 100_000;
const REVERSALS: u64 = 100;

fn house_position(c: &mut Criterion) {
    let terms = Terms {
        mode: PositionMode::Net,
        multiplier: Multiplier::new_checked(50).expect("multiplier"),
    };
    let mut position = Position::new();
    for n in 1..=HOUSE_FILLS {
        let booking = Booking {
            id: BookingId(n),
            side: if n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 63 == 0 {
                Side::Buy
            } else {
                Side::Sell
            },
            quantity: Quantity::new(1 + (n % 5) as i64),
            price: Price::from_nanos(25 * (400_000_000_000 + (n % 200) as i64 * 250_000_000)),
            effect: PositionEffect::Open,
        };
        position.book(terms, booking).expect("a valid fill");
    }
    let mut group = c.benchmark_group("house_position");
    group.throughput(Throughput::Elements(REVERSALS));
    group.sample_size(20);
    // Reverses `REVERSALS` fills spread over the whole day, on a fresh copy each time (the copy
    // is not timed).
    group.bench_function("reverse_old_fills_net_100k", |bencher| {
        bencher.iter_batched_ref(
            || position.clone(),
            |position| {
                for k in 0..REVERSALS {
                    let id = BookingId(1 + k * (HOUSE_FILLS / REVERSALS) + k % 7);
                    black_box(position.reverse(terms, id).expect("a live fill"));
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, engine_apply, state_pass, apply_during_pass, house_position);
criterion_main!(benches);
