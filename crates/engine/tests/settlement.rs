//! End of day through the engine: journaled like trades, replayable, always balanced.
#![allow(clippy::unwrap_used, reason = "tests: a failed setup should fail loudly")]

mod support;

use keel_domain::{Currency, Price, Side};
use keel_engine::{Command, Engine, Outcome};
use keel_settlement::{LedgerAccount, SettlementPrices};
use proptest::prelude::*;
use support::*;

fn prices(day: &str, es: &str, cl: &str) -> Command {
    Command::LoadSettlementPrices(SettlementPrices {
        date: date(day),
        prices: vec![
            ("ESZ6".parse().unwrap(), Price::parse(es).unwrap()),
            ("CLF7".parse().unwrap(), Price::parse(cl).unwrap()),
        ],
    })
}

#[test]
fn end_of_day_is_a_command_and_replays() {
    let commands = vec![
        new_trade("T1", details("A1", 0, Side::Buy, 2, 0)), // ESZ6 2 @ 5000
        new_trade("T2", details("A2", 1, Side::Sell, 3, 4)), // CLF7 -3 @ 70.04
        Command::RunEndOfDay(date("2026-11-27")),           // refused: no prices
        prices("2026-11-27", "5001.25", "70.00"),
        Command::RunEndOfDay(date("2026-11-27")),
        Command::RunEndOfDay(date("2026-11-27")), // refused: already run
    ];
    let mut engine = engine_with(&[]);
    let outcomes = run(&mut engine, &commands);
    assert!(
        matches!(&outcomes[2], Outcome::Rejected(r) if r.name() == "MISSING_SETTLEMENT_PRICES" && r.to_string().contains("CLF7, ESZ6")),
        "{:?}",
        outcomes[2]
    );
    assert!(outcomes[4].is_accepted());
    assert!(matches!(&outcomes[5], Outcome::Rejected(r) if r.code() == 2002));
    let ledger = engine.settlement().ledger();
    // ES: 2 x 1.25 x 50 = +125 to A1; CL: -3 x (70.00 - 70.04) x 1000 = +120 to A2.
    assert_eq!(
        ledger.balance(LedgerAccount::Customer("A1".parse().unwrap()), Currency::USD),
        keel_domain::Amount::parse("125").unwrap()
    );
    assert_eq!(
        ledger.balance(LedgerAccount::Customer("A2".parse().unwrap()), Currency::USD),
        keel_domain::Amount::parse("120").unwrap()
    );
    ledger.check().unwrap();
    // The ledger is part of the state: restore and replay agree.
    let restored = Engine::restore(engine.tenant(), &engine.snapshot()).unwrap();
    assert_eq!(restored.settlement().ledger(), ledger);
    assert_eq!(engine_with(&commands).state_hash(), engine.state_hash());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// After any sequence of trades, amends, cancels and end-of-day runs, the ledger sums to
    /// zero per currency, and replaying the same commands gives the same ledger and hash.
    #[test]
    fn ledger_sums_to_zero_and_replays(days in prop::collection::vec((prop::collection::vec((0..4usize, 0..2usize, any::<bool>(), 1i64..20, -40i64..40), 0..12), -40i64..40, -40i64..40, any::<bool>()), 1..6)) {
        let mut commands = Vec::new();
        let mut day = date("2026-11-27");
        let mut n = 0;
        for (trades, es, cl, cancel_first) in &days {
            for &(account, instrument, buy, quantity, ticks) in trades {
                n += 1;
                commands.push(new_trade(&format!("T{n}"), details(ACCOUNT_IDS[account], instrument, if buy { Side::Buy } else { Side::Sell }, quantity, ticks)));
            }
            if *cancel_first && n > 0 {
                commands.push(cancel(&format!("X{n}"), "T1"));
            }
            let es = Price::from_nanos(5_000_000_000_000 + es * 250_000_000).to_string();
            let cl = Price::from_nanos(70_000_000_000 + cl * 10_000_000).to_string();
            commands.push(prices(&day.to_string(), &es, &cl));
            commands.push(Command::RunEndOfDay(day));
            day = keel_settlement::calendar::next_weekday(day);
            commands.push(Command::OpenBusinessDate(day));
        }
        let engine = engine_with(&commands);
        engine.settlement().ledger().check().unwrap();
        let again = engine_with(&commands);
        prop_assert_eq!(again.settlement().ledger(), engine.settlement().ledger());
        prop_assert_eq!(again.state_hash(), engine.state_hash());
    }
}
