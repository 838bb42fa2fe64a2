//! Synthetic tenants for the benches: N accounts x M instruments and a seeded command stream.
#![allow(dead_code, reason = "each bench uses a different subset")]

use keel_domain::{
    Account, AccountId, AccountKind, Date, Instrument, InstrumentId, InstrumentKind, Multiplier,
    PositionEffect, PositionMode, Price, Quantity, ReportId, Side, TradeAction, TradeDetails,
    TradeReport,
};
use keel_engine::{Command, Engine, Envelope};

pub const BUSINESS_DATE: &str = "2026-11-27";

fn date(text: &str) -> Date {
    Date::parse(text).expect("bench date")
}

fn ident<T: std::str::FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    text.parse().expect("bench identifier")
}

pub fn instrument_id(index: usize) -> InstrumentId {
    ident(&format!("FUT{index:03}"))
}

pub fn account_id(index: usize) -> AccountId {
    ident(&format!("ACC{index:06}"))
}

/// An engine with `accounts` net customer accounts and `instruments` futures, date open.
pub fn engine(accounts: usize, instruments: usize) -> Engine {
    let mut engine = Engine::new(ident("bench"));
    for (index, command) in setup_commands(accounts, instruments).into_iter().enumerate() {
        let envelope = Envelope { sequence: index as u64 + 1, timestamp_ns: 0, command };
        let outcome = engine.apply(&envelope).expect("setup");
        assert!(outcome.is_accepted(), "setup: {outcome:?}");
    }
    engine
}

/// Reference data and the business date of the synthetic tenant, as commands.
pub fn setup_commands(accounts: usize, instruments: usize) -> Vec<Command> {
    let mut commands = Vec::with_capacity(accounts + instruments + 1);
    for index in 0..instruments {
        commands.push(Command::DefineInstrument(Instrument {
            id: instrument_id(index),
            exchange: ident("CME"),
            product: ident(&format!("P{index}")),
            currency: keel_domain::Currency::USD,
            multiplier: Multiplier::new_checked(50).expect("multiplier"),
            tick_size: Price::parse("0.25").expect("tick"),
            price_decimals: 4,
            maturity: 202_612,
            last_trade_date: date("2026-12-18"),
            settlement: keel_domain::instrument::SettlementType::Cash,
            kind: InstrumentKind::Future,
        }));
    }
    for index in 0..accounts {
        commands.push(Command::DefineAccount(Account {
            id: account_id(index),
            firm: ident("FIRM"),
            kind: AccountKind::Customer,
            position_mode: PositionMode::Net,
        }));
    }
    commands.push(Command::OpenBusinessDate(date(BUSINESS_DATE)));
    commands
}

/// xorshift64*: a fast, seeded, dependency-free generator for reproducible streams.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize) % bound
    }
}

pub fn details(rng: &mut Rng, accounts: usize, instruments: usize) -> TradeDetails {
    TradeDetails {
        account: account_id(rng.below(accounts)),
        instrument: instrument_id(rng.below(instruments)),
        side: if rng.below(2) == 0 { Side::Buy } else { Side::Sell },
        quantity: Quantity::new(1 + rng.below(10) as i64),
        price: Price::from_nanos(6_000_000_000_000 + (rng.below(200) as i64 - 100) * 250_000_000),
        trade_date: date(BUSINESS_DATE),
        venue: None,
        executing_firm: ident("FIRM"),
        clearing_firm: ident("FIRM"),
        give_up_to: None,
        position_effect: PositionEffect::Open,
        average_price_group: None,
        allocations: Vec::new(),
    }
}

/// `count` envelopes, sequences from `first_sequence`: `new_percent`% new trades, the rest
/// split evenly between amends and cancels of random live trades.
pub fn mixed_stream(
    count: usize,
    accounts: usize,
    instruments: usize,
    new_percent: usize,
    first_sequence: u64,
) -> Vec<Envelope> {
    let mut rng = Rng::new(0x6b65_656c);
    let mut live: Vec<ReportId> = Vec::new();
    let mut envelopes = Vec::with_capacity(count);
    for n in 0..count {
        let roll = rng.below(100);
        let report_id: ReportId = ident(&format!("R{n}"));
        let action = if roll < new_percent || live.len() < 2 {
            live.push(report_id);
            TradeAction::New(details(&mut rng, accounts, instruments))
        } else if roll < new_percent + (100 - new_percent) / 2 {
            let target = live[rng.below(live.len())];
            TradeAction::Amend { target, details: details(&mut rng, accounts, instruments) }
        } else {
            let target = live.swap_remove(rng.below(live.len()));
            TradeAction::Cancel { target }
        };
        envelopes.push(Envelope {
            sequence: first_sequence + n as u64,
            timestamp_ns: n as i64,
            command: Command::Trade(TradeReport { report_id, action }),
        });
    }
    envelopes
}
