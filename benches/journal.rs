//! Journal benches: append with group commit, read with full verification, replay into the
//! engine, and the durable in-process path (engine + journal + group commit).
//! Run: `cargo bench --bench journal`. Figures: docs/benchmarks.md.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keel_domain::TenantId;
use keel_engine::Engine;
use keel_journal::{read_journal, Journal, JournalError, JournalOptions, NodeKey, Trust};
use keel_pipeline::stock::with_chunk_stock;
use keel_pipeline::store::{replay_into, DataDir, StoreOptions, TenantStore};

mod support;

const BATCH: usize = 1_000;
const RECORD_BYTES: usize = 100;

fn tenant() -> TenantId {
    "bench".parse().expect("tenant")
}

fn key() -> NodeKey {
    NodeKey::from_seed([9; 32])
}

/// A scratch directory on the same disk as the working directory (not a tmpfs).
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("keel-bench-").tempdir_in(".").expect("scratch dir")
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("journal_append");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    let payload = vec![0x5a_u8; RECORD_BYTES];
    group.bench_function("100_byte_records_1000_per_commit", |bencher| {
        bencher.iter_custom(|iterations| {
            let dir = scratch();
            let (mut journal, _) =
                Journal::open(dir.path(), tenant(), JournalOptions::default()).expect("open");
            let start = Instant::now();
            let mut sequence = 0;
            while sequence < iterations {
                let batch_end = (sequence + BATCH as u64).min(iterations);
                while sequence < batch_end {
                    sequence += 1;
                    journal.append_command(sequence, &payload).expect("append");
                }
                black_box(journal.commit().expect("commit"));
            }
            start.elapsed()
        });
    });
    group.finish();
}

/// Writes `records` 100-byte records with a signed checkpoint every 10,000.
fn write_plain_journal(dir: &Path, records: u64) {
    let (mut journal, _) = Journal::open(dir, tenant(), JournalOptions::default()).expect("open");
    let payload = vec![0x5a_u8; RECORD_BYTES];
    for sequence in 1..=records {
        journal.append_command(sequence, &payload).expect("append");
        if sequence % 10_000 == 0 {
            journal.append_checkpoint(&key(), [0; 32]).expect("checkpoint");
        }
        if sequence % BATCH as u64 == 0 {
            journal.commit().expect("commit");
        }
    }
    journal.commit().expect("commit");
}

fn read_verify(c: &mut Criterion) {
    const RECORDS: u64 = 1_000_000;
    let dir = scratch();
    write_plain_journal(dir.path(), RECORDS);
    let mut group = c.benchmark_group("journal_read");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("verify_crc_chain_signatures_1M_records", |bencher| {
        bencher.iter(|| {
            let mut count = 0u64;
            read_journal::<JournalError>(
                dir.path(),
                tenant(),
                Trust::Key(key().verifying_key()),
                None,
                |_| {},
                |_| {
                    count += 1;
                    Ok(())
                },
            )
            .expect("read");
            black_box(count)
        });
    });
    group.finish();
}

const ACCOUNTS: usize = 10_000;
const INSTRUMENTS: usize = 50;

/// A tenant store under `dir` holding reference data and `commands` of the mixed stream.
fn write_tenant(dir: &Path, commands: usize) -> [u8; 32] {
    let data = DataDir::new(dir);
    let options = StoreOptions { snapshot_interval: 0, ..StoreOptions::default() };
    let (mut store, _) = TenantStore::open(&data, tenant(), options).expect("open");
    let setup = support::setup_commands(ACCOUNTS, INSTRUMENTS);
    let first = setup.len() as u64 + 1;
    store.submit(setup.into_iter().map(|c| (c, 0))).expect("setup");
    let stream = support::mixed_stream(commands, ACCOUNTS, INSTRUMENTS, 80, first);
    for chunk in stream.chunks(BATCH) {
        store.submit(chunk.iter().map(|e| (e.command.clone(), e.timestamp_ns))).expect("submit");
    }
    store.close().expect("close").state_hash().0
}

fn replay(c: &mut Criterion) {
    const COMMANDS: usize = 1_000_000;
    let dir = scratch();
    let expected = write_tenant(dir.path(), COMMANDS);
    let data = DataDir::new(dir.path());
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(COMMANDS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("verified_into_engine_1M_mixed_commands", |bencher| {
        bencher.iter(|| {
            let mut engine = Engine::new(tenant());
            let key = NodeKey::load_or_create(&data.node_dir()).expect("key");
            replay_into(
                &mut engine,
                &data.journal_dir(tenant()),
                Trust::Key(key.verifying_key()),
                None,
                |_| {},
                |_, _| {},
            )
            .expect("replay");
            assert_eq!(engine.state_hash().0, expected);
            black_box(engine.last_sequence())
        });
    });
    group.finish();
}

/// P1: capture + positions + journal with group commit, in process, durable before the
/// outcomes are released. `pipelined` is the shard's way (apply the next batch while the writer
/// syncs the previous one; at most 4 batches in flight); `serial` waits for each commit.
/// `two_tenants`: two tenants on two threads (each a shard with its own journal writer), the
/// stream split between them; the figure is commands of both per second of wall time.
fn durable_submit(c: &mut Criterion) {
    let stream_len = 1_000_000;
    let setup = support::setup_commands(ACCOUNTS, INSTRUMENTS);
    let stream =
        support::mixed_stream(stream_len, ACCOUNTS, INSTRUMENTS, 80, setup.len() as u64 + 1);
    let mut group = c.benchmark_group("durable_submit");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    let cases = [
        ("mixed_1000_per_batch_pipelined_reserved", 1, true, true),
        ("two_tenants_mixed_1000_per_batch_pipelined_reserved", 2, true, true),
        ("mixed_1000_per_batch_pipelined", 1, true, false),
        ("mixed_1000_per_commit_serial", 1, false, false),
    ];
    for (name, tenants, pipelined, reserved) in cases {
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|iterations| {
                // At least the whole stream is measured, and the time scaled down to the
                // iterations asked for: each measured stream opens a fresh store, and short
                // ones were all fixed cost (the last commit), which made criterion's warm-up
                // pick streams of 1 to 40 commands and report 20 to 170k/s (twenty-second
                // session; the store's opening, with its first segment's zeros, is not timed
                // but takes most of a short call's wall time).
                // (Not in a debug build: `cargo test`'s run of each bench once, which only
                // checks that it runs, would take a minute over the whole stream.)
                let asked = iterations as usize;
                let whole = if cfg!(debug_assertions) { 0 } else { stream.len() * tenants };
                let mut measured = 0;
                let mut elapsed = Duration::ZERO;
                let mut remaining = asked.max(whole);
                while remaining > 0 {
                    let count = remaining.min(stream.len() * tenants);
                    let share = count.div_ceil(tenants);
                    let wall = std::thread::scope(|scope| {
                        let runs: Vec<_> = (0..tenants)
                            .map(|index| {
                                let slice = &stream[..share.min(count - index * share)];
                                let setup = &setup;
                                // As a shard runs: chunks of state faulted in by a helper.
                                scope.spawn(move || {
                                    with_chunk_stock(tenant(), || {
                                        submit_stream(setup, slice, pipelined, reserved)
                                    })
                                })
                            })
                            .collect();
                        runs.into_iter().map(|run| run.join().expect("tenant")).max()
                    });
                    elapsed += wall.unwrap_or_default();
                    measured += count;
                    remaining -= count;
                }
                elapsed.mul_f64(asked as f64 / measured as f64)
            });
        });
    }
    group.finish();
}

/// One tenant: a fresh store with the setup applied, then `stream` in batches of `BATCH` as
/// the shard submits them. Returns the time for the stream alone.
fn submit_stream(
    setup: &[keel_engine::Command],
    stream: &[keel_engine::Envelope],
    pipelined: bool,
    reserved: bool,
) -> Duration {
    let dir = scratch();
    let data = DataDir::new(dir.path());
    // Reserved: sized as `keel serve` sizes a tenant (see ServerConfig).
    let (trades, positions) = if reserved { (1_000_000, 250_000) } else { (0, 0) };
    let options = StoreOptions {
        snapshot_interval: 0,
        reserve_trades: trades,
        reserve_positions: positions,
        ..StoreOptions::default()
    };
    let (mut store, _) = TenantStore::open(&data, tenant(), options).expect("open");
    store.submit(setup.iter().cloned().map(|c| (c, 0))).expect("setup");
    let mut in_flight = std::collections::VecDeque::new();
    let start = Instant::now();
    for chunk in stream.chunks(BATCH) {
        // As the shard does for each request.
        black_box(store.engine().probe(chunk.iter().filter_map(|e| e.command.trade_report())));
        let outcomes: Vec<_> = chunk
            .iter()
            .map(|e| store.stage(e.command.clone(), e.timestamp_ns).expect("stage"))
            .collect();
        if pipelined {
            in_flight.push_back((store.flush().expect("flush"), outcomes));
            if in_flight.len() > 4 {
                let (sequence, outcomes) = in_flight.pop_front().expect("oldest");
                store.wait_durable(sequence).expect("durable");
                black_box(outcomes);
            }
        } else {
            store.commit().expect("commit");
            black_box(outcomes);
        }
    }
    store.commit().expect("commit");
    black_box(in_flight);
    start.elapsed()
}

criterion_group!(benches, append, read_verify, replay, durable_submit);
criterion_main!(benches);
