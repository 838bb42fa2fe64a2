//! End of day over 1,000,000 positions (20,000 accounts x 50 futures, one trade each):
//! variation margin and fees for every position, postings, the zero-sum check; and the
//! engine image a state pass takes once that has run.
//! Run: `cargo bench --bench settlement`. Figures: docs/benchmarks.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use keel_engine::{Command, Envelope};
use keel_settlement::{FeeRule, FeeSchedule, SettlementPrices};

mod support;

fn eod(c: &mut Criterion) {
    let (accounts, instruments) = (20_000, 50);
    let mut engine = support::engine(accounts, instruments);
    let mut sequence = engine.last_sequence();
    let mut rng = support::Rng::new(11);
    let mut apply = |engine: &mut keel_engine::Engine, command: Command| {
        sequence += 1;
        let outcome =
            engine.apply(&Envelope { sequence, timestamp_ns: 0, command }).expect("apply");
        assert!(outcome.is_accepted(), "{outcome:?}");
    };
    for account in 0..accounts {
        for instrument in 0..instruments {
            let mut details = support::details(&mut rng, accounts, instruments);
            details.account = support::account_id(account);
            details.instrument = support::instrument_id(instrument);
            let report_id = format!("E{account}-{instrument}").parse().expect("id");
            apply(
                &mut engine,
                Command::Trade(keel_domain::TradeReport {
                    report_id,
                    action: keel_domain::TradeAction::New(details),
                }),
            );
        }
    }
    let date = keel_domain::Date::parse(support::BUSINESS_DATE).expect("date");
    let prices = (0..instruments)
        .map(|i| (support::instrument_id(i), keel_domain::Price::parse("6001.25").expect("price")))
        .collect();
    apply(&mut engine, Command::LoadSettlementPrices(SettlementPrices { date, prices }));
    let fee = FeeRule {
        exchange: "CME".parse().expect("exchange"),
        product: None,
        account_kind: None,
        per_contract: keel_domain::Amount::parse("0.55").expect("fee"),
        currency: keel_domain::Currency::USD,
    };
    apply(&mut engine, Command::LoadFeeSchedule(FeeSchedule { rules: vec![fee] }));
    let next = sequence + 1;
    let mut group = c.benchmark_group("settlement");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("end_of_day_1M_positions", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let mut copy = engine.clone();
                let start = Instant::now();
                let outcome = copy
                    .apply(&Envelope {
                        sequence: next,
                        timestamp_ns: 0,
                        command: Command::RunEndOfDay(date),
                    })
                    .expect("eod");
                elapsed += start.elapsed();
                assert!(outcome.is_accepted(), "{outcome:?}");
                black_box(copy.settlement().ledger().postings().len());
            }
            elapsed
        });
    });
    // The shard's pause for a state pass's image once end of day has run: every image after
    // the first end of day carries the settlement state (accrued amounts per position, the
    // ledger's postings) along with the arenas.
    let mut settled = engine.clone();
    let outcome = settled
        .apply(&Envelope { sequence: next, timestamp_ns: 0, command: Command::RunEndOfDay(date) })
        .expect("eod");
    assert!(outcome.is_accepted(), "{outcome:?}");
    group.bench_function("image_after_end_of_day_1M_positions", |bencher| {
        bencher.iter_with_large_drop(|| settled.image());
    });
    group.finish();
}

criterion_group!(benches, eod);
criterion_main!(benches);
