//! Shared fixtures for the engine's tests: a small master, accounts and command builders.
#![allow(dead_code, reason = "each test file uses a different subset")]
#![allow(clippy::unwrap_used, reason = "test fixtures: a bad fixture should fail loudly")]

use keel_domain::{
    account::load_accounts, instrument::load_instruments, Date, PositionEffect, Price, Quantity,
    Side, TradeAction, TradeDetails, TradeReport,
};
use keel_engine::{Command, Engine, Envelope, Outcome};

pub const MASTER: &str = "id,kind,exchange,product,currency,multiplier,tick_size,price_decimals,maturity,last_trade_date,settlement,underlying,put_call,strike,exercise_style,premium_style
ESZ6,future,CME,ES,USD,50,0.25,4,202612,2026-12-18,cash,,,,,
CLF7,future,NYMEX,CL,USD,1000,0.01,4,202701,2026-12-17,physical,,,,,
ESZ6-C6000,option,CME,ES,USD,50,0.05,4,202612,2026-12-18,physical,ESZ6,call,6000,american,upfront
";

pub const ACCOUNTS: &str = "id,firm,kind,position_mode
A1,FIRMA,customer,net
A2,FIRMA,customer,net
A3,FIRMA,house,net
G1,FIRMA,customer,gross
OMNI,FIRMA,omnibus,net
HOLD,FIRMA,holding,net
RES,FIRMA,residual,net
B1,FIRMB,customer,net
";

pub const ACCOUNT_IDS: [&str; 4] = ["A1", "A2", "A3", "G1"];
pub const INSTRUMENT_IDS: [&str; 3] = ["ESZ6", "CLF7", "ESZ6-C6000"];
pub const TICKS: [&str; 3] = ["0.25", "0.01", "0.05"];
pub const BASES: [i64; 3] = [5000, 70, 25];

pub fn date(text: &str) -> Date {
    Date::parse(text).unwrap()
}

/// Reference data and the business date, as commands.
pub fn setup_commands() -> Vec<Command> {
    let mut commands: Vec<Command> = load_instruments(MASTER.as_bytes())
        .unwrap()
        .into_iter()
        .map(Command::DefineInstrument)
        .collect();
    commands.extend(
        load_accounts(ACCOUNTS.as_bytes()).unwrap().into_iter().map(Command::DefineAccount),
    );
    commands.push(Command::OpenBusinessDate(date("2026-11-27")));
    commands
}

pub fn details(
    account: &str,
    instrument: usize,
    side: Side,
    quantity: i64,
    ticks: i64,
) -> TradeDetails {
    let tick = Price::parse(TICKS[instrument]).unwrap().nanos();
    TradeDetails {
        account: account.parse().unwrap(),
        instrument: INSTRUMENT_IDS[instrument].parse().unwrap(),
        side,
        quantity: Quantity::new(quantity),
        price: Price::from_nanos(BASES[instrument] * 1_000_000_000 + ticks * tick),
        trade_date: date("2026-11-27"),
        venue: None,
        executing_firm: "FIRMA".parse().unwrap(),
        clearing_firm: "FIRMA".parse().unwrap(),
        give_up_to: None,
        position_effect: if ticks % 2 == 0 { PositionEffect::Open } else { PositionEffect::Close },
        average_price_group: None,
        allocations: Vec::new(),
    }
}

pub fn new_trade(report: &str, details: TradeDetails) -> Command {
    Command::Trade(TradeReport {
        report_id: report.parse().unwrap(),
        action: TradeAction::New(details),
    })
}

pub fn amend(report: &str, target: &str, details: TradeDetails) -> Command {
    Command::Trade(TradeReport {
        report_id: report.parse().unwrap(),
        action: TradeAction::Amend { target: target.parse().unwrap(), details },
    })
}

pub fn cancel(report: &str, target: &str) -> Command {
    Command::Trade(TradeReport {
        report_id: report.parse().unwrap(),
        action: TradeAction::Cancel { target: target.parse().unwrap() },
    })
}

/// Applies commands in order with consecutive sequences; returns the outcomes.
pub fn run(engine: &mut Engine, commands: &[Command]) -> Vec<Outcome> {
    commands
        .iter()
        .map(|command| {
            let sequence = engine.last_sequence() + 1;
            let envelope = Envelope {
                sequence,
                timestamp_ns: sequence as i64 * 1_000,
                command: command.clone(),
            };
            engine.apply(&envelope).unwrap()
        })
        .collect()
}

pub fn engine_with(commands: &[Command]) -> Engine {
    let mut engine = Engine::new("demo".parse().unwrap());
    run(&mut engine, &setup_commands());
    run(&mut engine, commands);
    engine
}

/// The snapshot as written (large arenas encoded by hand) is byte for byte the serde
/// encoding that defines it, and restores to an engine with the same state hash.
pub fn assert_canonical(engine: &Engine) {
    let (mut fast, mut serde) = (Vec::new(), Vec::new());
    engine.write_snapshot_to(&mut fast).unwrap();
    engine.write_snapshot_serde(&mut serde).unwrap();
    assert!(fast == serde, "hand-written snapshot bytes differ from serde's ({} vs {} bytes, first difference at {:?})",
        fast.len(), serde.len(), fast.iter().zip(&serde).position(|(a, b)| a != b));
    let restored = Engine::restore(engine.tenant(), &fast).unwrap();
    assert_eq!(restored.state_hash(), engine.state_hash());
}

/// Positions as plain values, without booking ids: (account, instrument, long, short,
/// realized nanos, lots as (signed quantity, price)).
pub type Summary = Vec<(String, String, i64, i64, i128, Vec<(i64, i64)>)>;

pub fn summary(engine: &Engine) -> Summary {
    engine
        .positions()
        .into_iter()
        .map(|view| {
            let p = view.position;
            let lots = p
                .lots(Side::Buy)
                .map(|l| (l.quantity, l.price.nanos()))
                .chain(p.lots(Side::Sell).map(|l| (-l.quantity, l.price.nanos())))
                .collect();
            (
                view.account.id.to_string(),
                view.instrument.id.to_string(),
                p.long(),
                p.short(),
                p.realized().nanos(),
                lots,
            )
        })
        .collect()
}
