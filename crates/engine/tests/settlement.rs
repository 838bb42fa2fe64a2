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

/// A state pass's image holds the settlement state as of when it was taken: the accrued
/// amounts, prices, expiries and ledger balances are shared with the engine until an end of
/// day changes them, and that change must not reach the image.
#[test]
fn an_image_is_frozen_across_an_end_of_day() {
    let day_one = vec![
        new_trade("T1", details("A1", 0, Side::Buy, 2, 0)),
        new_trade("T2", details("A2", 1, Side::Sell, 3, 4)),
        prices("2026-11-27", "5001.25", "70.00"),
        Command::RunEndOfDay(date("2026-11-27")),
    ];
    let day_two = vec![
        Command::OpenBusinessDate(date("2026-11-30")),
        new_trade("T3", details("A1", 1, Side::Buy, 1, 2)),
        prices("2026-11-30", "4990.50", "70.10"),
        Command::RunEndOfDay(date("2026-11-30")),
    ];
    let mut engine = engine_with(&day_one);
    let image = engine.image();
    let outcomes = run(&mut engine, &day_two);
    assert!(outcomes.iter().all(Outcome::is_accepted), "{outcomes:?}");
    // The image is still day one's state; the engine is both days'.
    assert_eq!(image.state_hash(), engine_with(&day_one).state_hash());
    let both: Vec<_> = day_one.iter().chain(&day_two).cloned().collect();
    assert_eq!(engine.state_hash(), engine_with(&both).state_hash());
    assert_ne!(image.state_hash(), engine.state_hash());
    engine.settlement().ledger().check().unwrap();
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
        assert_canonical(&engine);
    }
}

fn define(csv_row: &str) -> Command {
    let header = "id,kind,exchange,product,currency,multiplier,tick_size,price_decimals,maturity,last_trade_date,settlement,underlying,put_call,strike,exercise_style,premium_style\n";
    let master = format!(
        "{header}CLF7,future,NYMEX,CL,USD,1000,0.01,4,202701,2026-12-17,physical,,,,,\n{csv_row}\n"
    );
    Command::DefineInstrument(
        *keel_domain::instrument::load_instruments(master.as_bytes()).unwrap().last().unwrap(),
    )
}

fn trade_in(
    report: &str,
    account: &str,
    instrument: &str,
    side: Side,
    quantity: i64,
    price: &str,
) -> Command {
    let mut d = details(account, 0, side, quantity, 0);
    d.instrument = instrument.parse().unwrap();
    d.price = Price::parse(price).unwrap();
    new_trade(report, d)
}

fn priced(day: &str, prices: &[(&str, &str)]) -> Command {
    Command::LoadSettlementPrices(SettlementPrices {
        date: date(day),
        prices: prices
            .iter()
            .map(|(i, p)| (i.parse().unwrap(), Price::parse(p).unwrap()))
            .collect(),
    })
}

/// Expiry worked example: an in-the-money call exercised (long) and assigned (short) into the
/// underlying future at the strike, an out-of-the-money put abandoned, a cash-settled future
/// closed at its final price, a physical one flagged for delivery; then end of day balances.
#[test]
fn expiry_exercises_assigns_abandons_settles_and_flags_delivery() {
    let expiry = "2026-12-16";
    let mut commands = vec![
        define("LOF7-C70,option,NYMEX,LO,USD,1000,0.01,4,202701,2026-12-16,physical,CLF7,call,70,american,upfront"),
        define("LOF7-P65,option,NYMEX,LO,USD,1000,0.01,4,202701,2026-12-16,physical,CLF7,put,65,american,upfront"),
        define("CSZ6,future,CME,CS,USD,100,0.25,4,202612,2026-12-16,cash,,,,,"),
        define("PHZ6,future,CME,PH,USD,100,0.01,4,202612,2026-12-16,physical,,,,,"),
        trade_in("T1", "A1", "LOF7-C70", Side::Buy, 3, "1.20"),
        trade_in("T2", "A2", "LOF7-C70", Side::Sell, 2, "1.25"),
        trade_in("T3", "A3", "LOF7-P65", Side::Buy, 1, "0.40"),
        trade_in("T4", "A1", "CSZ6", Side::Buy, 4, "50"),
        trade_in("T5", "G1", "PHZ6", Side::Buy, 2, "100"),
        Command::OpenBusinessDate(date(expiry)),
        priced(expiry, &[("CSZ6", "50.25"), ("PHZ6", "101")]),
        Command::ProcessExpiries { date: date(expiry), threshold: Price::ZERO }, // refused: no CLF7 price
    ];
    let mut engine = engine_with(&[]);
    let outcomes = run(&mut engine, &commands);
    assert!(outcomes[..11].iter().all(Outcome::is_accepted), "{outcomes:?}");
    assert!(
        matches!(&outcomes[11], Outcome::Rejected(r) if r.name() == "MISSING_SETTLEMENT_PRICES" && r.to_string().contains("CLF7"))
    );

    commands = vec![
        priced(expiry, &[("CSZ6", "50.25"), ("PHZ6", "101"), ("CLF7", "71.50")]),
        Command::ProcessExpiries { date: date(expiry), threshold: Price::ZERO },
        Command::ProcessExpiries { date: date(expiry), threshold: Price::ZERO },
        Command::RunEndOfDay(date(expiry)),
    ];
    let outcomes = run(&mut engine, &commands);
    assert!(outcomes[1].is_accepted() && outcomes[3].is_accepted(), "{outcomes:?}");
    assert!(matches!(&outcomes[2], Outcome::Rejected(r) if r.code() == 2011));

    let net = |account: &str, instrument: &str| {
        engine.position(&account.parse().unwrap(), &instrument.parse().unwrap()).map(|p| p.net())
    };
    assert_eq!(net("A1", "LOF7-C70"), Some(0));
    assert_eq!(net("A1", "CLF7"), Some(3), "long call exercised into a long future");
    assert_eq!(net("A2", "CLF7"), Some(-2), "short call assigned into a short future");
    assert_eq!(net("A3", "LOF7-P65"), Some(0));
    assert_eq!(net("A3", "CLF7"), None, "the out-of-the-money put was abandoned");
    assert_eq!(net("A1", "CSZ6"), Some(0), "cash-settled future closed at the final price");
    assert_eq!(net("G1", "PHZ6"), Some(2), "physical future left for delivery");
    let events: Vec<(String, &str, i64)> = engine
        .settlement()
        .expiries(date(expiry))
        .iter()
        .map(|r| (format!("{}/{}", r.account, r.instrument), r.event.name(), r.quantity))
        .collect();
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(events.contains(&("G1/PHZ6".into(), "delivery-due", 2)));
    assert!(events.contains(&("A3/LOF7-P65".into(), "abandoned", 1)));

    // A1: paid 3 x 1.20 x 1,000 premium, gained 3 x (71.50 - 70) x 1,000 on the future, and
    // 4 x 0.25 x 100 on the cash future: 900 + 100 = 1,000 net.
    let ledger = engine.settlement().ledger();
    ledger.check().unwrap();
    assert_eq!(
        ledger.balance(LedgerAccount::Customer("A1".parse().unwrap()), Currency::USD),
        keel_domain::Amount::parse("1000").unwrap()
    );
    // A2: received 2 x 1.25 x 1,000, lost 2 x 1.50 x 1,000 on the assigned future.
    assert_eq!(
        ledger.balance(LedgerAccount::Customer("A2".parse().unwrap()), Currency::USD),
        keel_domain::Amount::parse("-500").unwrap()
    );
    let restored = Engine::restore(engine.tenant(), &engine.snapshot()).unwrap();
    assert_eq!(restored.state_hash(), engine.state_hash());
}
