//! Expiry: what happens to positions in contracts whose last trading day has come.
//!
//! - Options: in the money by at least the threshold (and by more than zero), long positions are
//!   exercised and short positions assigned, in full (the deterministic rule: at expiry every
//!   in-the-money long is exercised market-wide, so every short is assigned); the option
//!   position is closed at zero and a position in the underlying future is opened at the strike
//!   (long call or short put: long future; short call or long put: short future). At or out of
//!   the money, the position is abandoned (closed at zero). Intrinsic value is measured against
//!   the underlying's settlement price of the day.
//! - Cash-settled futures: closed at the day's (final) settlement price.
//! - Physically settled futures: left open and flagged for delivery.
//!
//! Closing at zero keeps the cash right for both premium styles: a flat position's variation
//! margin and premium true-ups equal its realized P&L, and the future opened at the strike
//! carries the intrinsic value into the next end of day.

use std::collections::BTreeMap;

use keel_domain::instrument::SettlementType;
use keel_domain::{
    Account, Date, Instrument, InstrumentId, InstrumentKind, Price, PutCall, Quantity, Side,
};
use serde::{Deserialize, Serialize};

use crate::error::SettleError;

/// A position in an expiring contract.
#[derive(Debug, Clone, Copy)]
pub struct ExpiryInput<'a> {
    pub key: u64,
    pub account: &'a Account,
    pub instrument: &'a Instrument,
    /// For options: the underlying future.
    pub underlying: Option<&'a Instrument>,
    pub long: i64,
    pub short: i64,
}

/// A booking expiry makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryBooking {
    pub instrument: InstrumentId,
    pub side: Side,
    pub quantity: Quantity,
    pub price: Price,
    /// Closes existing lots (true) or opens new ones.
    pub closes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpiryEvent {
    Exercised,
    Assigned,
    Abandoned,
    CashSettled,
    DeliveryDue,
}

impl ExpiryEvent {
    pub fn name(self) -> &'static str {
        match self {
            ExpiryEvent::Exercised => "exercised",
            ExpiryEvent::Assigned => "assigned",
            ExpiryEvent::Abandoned => "abandoned",
            ExpiryEvent::CashSettled => "cash-settled",
            ExpiryEvent::DeliveryDue => "delivery-due",
        }
    }
}

/// What expiry did to one position, and the bookings that do it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryRecord {
    pub date: Date,
    pub key: u64,
    pub account: keel_domain::AccountId,
    pub instrument: InstrumentId,
    pub event: ExpiryEvent,
    pub quantity: i64,
    pub bookings: Vec<ExpiryBooking>,
}

/// Plans expiry for every position given (all must expire on `date`). Needs the day's price
/// of every expiring future and of every expiring option's underlying; missing ones are named.
pub fn plan(
    date: Date,
    inputs: &[ExpiryInput<'_>],
    prices: &BTreeMap<InstrumentId, Price>,
    threshold: Price,
) -> Result<Vec<ExpiryRecord>, SettleError> {
    let priced = |input: &ExpiryInput<'_>| match input.instrument.kind {
        InstrumentKind::Future => input.instrument.id,
        InstrumentKind::Option(terms) => terms.underlying,
    };
    let mut missing: Vec<InstrumentId> =
        inputs.iter().map(priced).filter(|id| !prices.contains_key(id)).collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        missing.dedup();
        return Err(SettleError::MissingPrices(missing));
    }
    let mut records = Vec::new();
    for input in inputs {
        let price = prices[&priced(input)];
        let record = |event, quantity, bookings| ExpiryRecord {
            date,
            key: input.key,
            account: input.account.id,
            instrument: input.instrument.id,
            event,
            quantity,
            bookings,
        };
        let close = |side: Side, quantity: i64, at: Price| ExpiryBooking {
            instrument: input.instrument.id,
            side,
            quantity: Quantity::new(quantity),
            price: at,
            closes: true,
        };
        match input.instrument.kind {
            InstrumentKind::Future => {
                if input.instrument.settlement == SettlementType::Physical {
                    records.push(record(
                        ExpiryEvent::DeliveryDue,
                        input.long - input.short,
                        Vec::new(),
                    ));
                    continue;
                }
                let mut bookings = Vec::new();
                if input.long > 0 {
                    bookings.push(close(Side::Sell, input.long, price));
                }
                if input.short > 0 {
                    bookings.push(close(Side::Buy, input.short, price));
                }
                records.push(record(ExpiryEvent::CashSettled, input.long - input.short, bookings));
            }
            InstrumentKind::Option(terms) => {
                let intrinsic = match terms.put_call {
                    PutCall::Call => price.nanos() - terms.strike.nanos(),
                    PutCall::Put => terms.strike.nanos() - price.nanos(),
                };
                let in_the_money = intrinsic > 0 && intrinsic >= threshold.nanos();
                // The future a long call (or short put) turns into is long; the others short.
                let future_side = |long_option: bool| match (terms.put_call, long_option) {
                    (PutCall::Call, true) | (PutCall::Put, false) => Side::Buy,
                    _ => Side::Sell,
                };
                let future = |side, quantity: i64| ExpiryBooking {
                    instrument: terms.underlying,
                    side,
                    quantity: Quantity::new(quantity),
                    price: terms.strike,
                    closes: false,
                };
                for (long_option, quantity) in [(true, input.long), (false, input.short)] {
                    if quantity == 0 {
                        continue;
                    }
                    let close_side = if long_option { Side::Sell } else { Side::Buy };
                    let mut bookings = vec![close(close_side, quantity, Price::ZERO)];
                    let event = if in_the_money {
                        bookings.push(future(future_side(long_option), quantity));
                        if long_option {
                            ExpiryEvent::Exercised
                        } else {
                            ExpiryEvent::Assigned
                        }
                    } else {
                        ExpiryEvent::Abandoned
                    };
                    records.push(record(
                        event,
                        if long_option { quantity } else { -quantity },
                        bookings,
                    ));
                }
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_domain::{account::load_accounts, instrument::load_instruments};

    const MASTER: &str = "id,kind,exchange,product,currency,multiplier,tick_size,price_decimals,maturity,last_trade_date,settlement,underlying,put_call,strike,exercise_style,premium_style
CLF7,future,NYMEX,CL,USD,1000,0.01,4,202701,2026-12-17,physical,,,,,
C70,option,NYMEX,LO,USD,1000,0.01,4,202701,2026-12-16,physical,CLF7,call,70,american,upfront
P70,option,NYMEX,LO,USD,1000,0.01,4,202701,2026-12-16,physical,CLF7,put,70,american,upfront
";

    /// Calls and puts, long and short, in, at and out of the money, with and without a threshold.
    #[test]
    fn exercise_table() {
        let master = load_instruments(MASTER.as_bytes()).unwrap();
        let account =
            load_accounts("id,firm,kind,position_mode\nA,F,customer,net\n".as_bytes()).unwrap()[0];
        let (call, put) = (&master[1], &master[2]);
        // (option, underlying price, threshold, long, short, expected events, futures opened as (side, qty))
        type Case<'a> =
            (&'a Instrument, &'a str, &'a str, i64, i64, Vec<ExpiryEvent>, Vec<(Side, i64)>);
        let cases: Vec<Case> = vec![
            (call, "71.50", "0", 3, 0, vec![ExpiryEvent::Exercised], vec![(Side::Buy, 3)]),
            (call, "71.50", "0", 0, 2, vec![ExpiryEvent::Assigned], vec![(Side::Sell, 2)]),
            (call, "70.00", "0", 3, 0, vec![ExpiryEvent::Abandoned], vec![]),
            (call, "69.99", "0", 0, 1, vec![ExpiryEvent::Abandoned], vec![]),
            (call, "70.01", "0.05", 1, 0, vec![ExpiryEvent::Abandoned], vec![]),
            (call, "70.05", "0.05", 1, 0, vec![ExpiryEvent::Exercised], vec![(Side::Buy, 1)]),
            (put, "68.00", "0", 4, 0, vec![ExpiryEvent::Exercised], vec![(Side::Sell, 4)]),
            (put, "68.00", "0", 0, 4, vec![ExpiryEvent::Assigned], vec![(Side::Buy, 4)]),
            (put, "70.00", "0", 2, 0, vec![ExpiryEvent::Abandoned], vec![]),
            (put, "75.00", "0", 2, 0, vec![ExpiryEvent::Abandoned], vec![]),
            (
                put,
                "68.00",
                "0",
                2,
                1,
                vec![ExpiryEvent::Exercised, ExpiryEvent::Assigned],
                vec![(Side::Sell, 2), (Side::Buy, 1)],
            ),
        ];
        for (option, underlying, threshold, long, short, events, futures) in cases {
            let input = ExpiryInput {
                key: 1,
                account: &account,
                instrument: option,
                underlying: Some(&master[0]),
                long,
                short,
            };
            let prices = [(master[0].id, Price::parse(underlying).unwrap())].into_iter().collect();
            let date = Date::parse("2026-12-16").unwrap();
            let records = plan(date, &[input], &prices, Price::parse(threshold).unwrap()).unwrap();
            let label = format!(
                "{} at {underlying} (threshold {threshold}), long {long} short {short}",
                option.id
            );
            assert_eq!(records.iter().map(|r| r.event).collect::<Vec<_>>(), events, "{label}");
            let opened: Vec<(Side, i64)> = records
                .iter()
                .flat_map(|r| r.bookings.iter())
                .filter(|b| !b.closes)
                .map(|b| {
                    assert_eq!(
                        (b.instrument, b.price),
                        (master[0].id, Price::parse("70").unwrap()),
                        "{label}: futures at the strike"
                    );
                    (b.side, b.quantity.get())
                })
                .collect();
            assert_eq!(opened, futures, "{label}");
            for booking in records.iter().flat_map(|r| r.bookings.iter()).filter(|b| b.closes) {
                assert_eq!(
                    (booking.instrument, booking.price),
                    (option.id, Price::ZERO),
                    "{label}: options close at zero"
                );
            }
        }
        let no_price = plan(
            Date::parse("2026-12-16").unwrap(),
            &[ExpiryInput {
                key: 1,
                account: &account,
                instrument: call,
                underlying: Some(&master[0]),
                long: 1,
                short: 0,
            }],
            &BTreeMap::new(),
            Price::ZERO,
        );
        assert_eq!(no_price, Err(SettleError::MissingPrices(vec![master[0].id])));
    }
}
