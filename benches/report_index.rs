//! `report_index`: building a tenant's report-id index, off the shard
//! (`IndexJob::build`, run when the index is half full and the next one, twice its capacity,
//! is built from the records so far) and on recovery (`ReportTable::reindex`, after a
//! snapshot is read). Ids shaped like `keel load`'s (`L0-` and a number, here zero-padded to 12
//! digits); one record a report.
//! Run: `cargo bench --bench report_index`. Figures: docs/benchmarks.md.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use keel_trade_capture::{ReportKind, ReportRecord, ReportTable, TradeKey};

fn table(records: u64) -> ReportTable {
    let mut table = ReportTable::default();
    for n in 0..records {
        table.insert(ReportRecord {
            id: format!("L0-{n:012}").parse().expect("a valid report id"),
            kind: ReportKind::New,
            trade: TradeKey(n as u32),
            fingerprint: [n, !n],
            sequence: n,
        });
    }
    // An index of exactly the records' capacity: half full or more, so a job is due.
    table.reindex();
    table
}

fn report_index(c: &mut Criterion) {
    let mut group = c.benchmark_group("report_index");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    for records in [1_000_000_u64, 4_000_000] {
        let base = table(records);
        group.throughput(Throughput::Elements(records));
        group.bench_function(format!("job_build_{}M", records / 1_000_000), |bencher| {
            bencher.iter_batched(
                || base.clone().index_job().expect("a job is due at half full"),
                |job| job.build(),
                BatchSize::PerIteration,
            )
        });
        group.bench_function(format!("reindex_{}M", records / 1_000_000), |bencher| {
            bencher.iter_batched(
                || base.clone(),
                |mut table| table.reindex(),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, report_index);
criterion_main!(benches);
