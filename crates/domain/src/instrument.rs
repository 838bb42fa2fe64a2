//! Listed contracts: futures and options, and the CSV instrument master.

use std::collections::HashMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::date::Date;
use crate::fixed::{Currency, Multiplier, Price};
use crate::ident::{ExchangeId, InstrumentId, ProductId};
use crate::table::{read_table, Row, TableError};

/// Cash-settled contracts pay the difference to the final settlement price; physically settled
/// ones go to delivery (futures) or turn into the underlying (options on futures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SettlementType {
    Cash,
    Physical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PutCall {
    Put,
    Call,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExerciseStyle {
    American,
    European,
}

/// Premium style: paid in full at the trade (equity-style, CME) or margined daily like a
/// future (futures-style, Eurex options on Bund futures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PremiumStyle {
    Upfront,
    FuturesStyle,
}

/// Terms of an option on a listed future.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OptionTerms {
    pub underlying: InstrumentId,
    pub put_call: PutCall,
    pub strike: Price,
    pub exercise_style: ExerciseStyle,
    pub premium_style: PremiumStyle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InstrumentKind {
    Future,
    Option(OptionTerms),
}

/// One listed contract. `last_trade_date` is the expiry for options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Instrument {
    pub id: InstrumentId,
    pub exchange: ExchangeId,
    pub product: ProductId,
    pub currency: Currency,
    pub multiplier: Multiplier,
    pub tick_size: Price,
    /// Decimal places of average prices (at least those of the tick).
    pub price_decimals: u8,
    /// Contract month as YYYYMM.
    pub maturity: u32,
    pub last_trade_date: Date,
    pub settlement: SettlementType,
    pub kind: InstrumentKind,
}

impl Instrument {
    pub fn is_option(&self) -> bool {
        matches!(self.kind, InstrumentKind::Option(_))
    }

    /// True when the contract can no longer trade on `date`.
    pub fn is_expired_on(&self, date: Date) -> bool {
        date > self.last_trade_date
    }
}

/// Columns of the instrument master CSV; see docs/instrument-master.md.
pub const MASTER_COLUMNS: &[&str] = &[
    "id",
    "kind",
    "exchange",
    "product",
    "currency",
    "multiplier",
    "tick_size",
    "price_decimals",
    "maturity",
    "last_trade_date",
    "settlement",
];

/// Parses an instrument master. Options must name a future of the same file as underlying.
pub fn load_instruments(reader: impl Read) -> Result<Vec<Instrument>, TableError> {
    let mut instruments: Vec<Instrument> = Vec::new();
    let mut lines: HashMap<InstrumentId, u64> = HashMap::new();
    let mut options: Vec<(u64, InstrumentId, InstrumentId)> = Vec::new();
    read_table(reader, MASTER_COLUMNS, |row| {
        let instrument = parse_instrument(row)?;
        if let Some(first) = lines.insert(instrument.id, row.line) {
            return Err(row.row_error(format!(
                "instrument {} already defined on line {first}",
                instrument.id
            )));
        }
        if let InstrumentKind::Option(terms) = instrument.kind {
            options.push((row.line, instrument.id, terms.underlying));
        }
        instruments.push(instrument);
        Ok(())
    })?;
    for (line, option, underlying) in options {
        let is_future =
            instruments.iter().any(|i| i.id == underlying && i.kind == InstrumentKind::Future);
        if !is_future {
            return Err(TableError::Field {
                line,
                column: "underlying",
                message: format!(
                    "option {option}: underlying {underlying} is not a future in this master"
                ),
            });
        }
    }
    Ok(instruments)
}

fn parse_instrument(row: &Row<'_>) -> Result<Instrument, TableError> {
    let id = row.parse("id", InstrumentId::new_checked)?;
    let tick_size = row.parse("tick_size", Price::parse)?;
    if tick_size <= Price::ZERO {
        return Err(row.field_error("tick_size", "must be positive"));
    }
    let price_decimals = row.parse("price_decimals", str::parse::<u8>)?;
    let tick_decimals = decimals_of(tick_size);
    if u32::from(price_decimals) < tick_decimals
        || u32::from(price_decimals) > crate::fixed::SCALE_DECIMALS
    {
        return Err(row.field_error(
            "price_decimals",
            &format!("must be between the tick's {tick_decimals} and 9"),
        ));
    }
    let maturity = row.parse("maturity", str::parse::<u32>)?;
    if !(190_001..=219_912).contains(&maturity) || !(1..=12).contains(&(maturity % 100)) {
        return Err(row.field_error("maturity", "must be YYYYMM"));
    }
    let kind = match row.required("kind")? {
        "future" => InstrumentKind::Future,
        "option" => InstrumentKind::Option(parse_option_terms(row)?),
        other => return Err(row.field_error("kind", &format!("{other:?} is not future or option"))),
    };
    Ok(Instrument {
        id,
        exchange: row.parse("exchange", ExchangeId::new_checked)?,
        product: row.parse("product", ProductId::new_checked)?,
        currency: row
            .parse("currency", |c| Currency::new_checked(c).ok_or("not an ISO 4217 code"))?,
        multiplier: row.parse("multiplier", |m| {
            m.parse::<i64>()
                .ok()
                .and_then(Multiplier::new_checked)
                .ok_or("must be a whole number from 1 to 100000000")
        })?,
        tick_size,
        price_decimals,
        maturity,
        last_trade_date: row.parse("last_trade_date", Date::parse)?,
        settlement: row.parse("settlement", |s| match s {
            "cash" => Ok(SettlementType::Cash),
            "physical" => Ok(SettlementType::Physical),
            _ => Err("must be cash or physical"),
        })?,
        kind,
    })
}

fn parse_option_terms(row: &Row<'_>) -> Result<OptionTerms, TableError> {
    Ok(OptionTerms {
        underlying: row.parse("underlying", InstrumentId::new_checked)?,
        put_call: row.parse("put_call", |s| match s {
            "put" | "P" => Ok(PutCall::Put),
            "call" | "C" => Ok(PutCall::Call),
            _ => Err("must be put or call"),
        })?,
        strike: row.parse("strike", Price::parse)?,
        exercise_style: row.parse("exercise_style", |s| match s {
            "american" => Ok(ExerciseStyle::American),
            "european" => Ok(ExerciseStyle::European),
            _ => Err("must be american or european"),
        })?,
        premium_style: row.parse("premium_style", |s| match s {
            "upfront" => Ok(PremiumStyle::Upfront),
            "futures" => Ok(PremiumStyle::FuturesStyle),
            _ => Err("must be upfront or futures"),
        })?,
    })
}

/// Number of decimal places needed to write `price` exactly.
pub fn decimals_of(price: Price) -> u32 {
    let mut nanos = price.nanos().unsigned_abs();
    let mut decimals = crate::fixed::SCALE_DECIMALS;
    while decimals > 0 && nanos.is_multiple_of(10) {
        nanos /= 10;
        decimals -= 1;
    }
    decimals
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "id,kind,exchange,product,currency,multiplier,tick_size,price_decimals,maturity,last_trade_date,settlement,underlying,put_call,strike,exercise_style,premium_style\n";
    const FUTURE: &str = "ESZ6,future,CME,ES,USD,50,0.25,4,202612,2026-12-18,cash,,,,,\n";

    #[test]
    fn loads_futures_and_options() {
        let text = format!("{HEADER}{FUTURE}ESZ6-C6000,option,CME,ES,USD,50,0.05,4,202612,2026-12-18,physical,ESZ6,call,6000,american,upfront\n");
        let instruments = load_instruments(text.as_bytes()).unwrap();
        assert_eq!(instruments.len(), 2);
        assert_eq!(instruments[0].tick_size, Price::parse("0.25").unwrap());
        match instruments[1].kind {
            InstrumentKind::Option(terms) => {
                assert_eq!(terms.strike, Price::parse("6000").unwrap());
                assert_eq!(terms.put_call, PutCall::Call);
            }
            InstrumentKind::Future => panic!("expected an option"),
        }
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let cases: &[(&str, &str)] = &[
            ("ESZ6,future,CME,ES,USD,50,0,4,202612,2026-12-18,cash,,,,,\n", "line 2, column \"tick_size\": must be positive"),
            ("ESZ6,future,CME,ES,usd,50,0.25,4,202612,2026-12-18,cash,,,,,\n", "column \"currency\""),
            ("ESZ6,future,CME,ES,USD,0,0.25,4,202612,2026-12-18,cash,,,,,\n", "column \"multiplier\""),
            ("ESZ6,future,CME,ES,USD,50,0.25,1,202612,2026-12-18,cash,,,,,\n", "column \"price_decimals\""),
            ("ESZ6,future,CME,ES,USD,50,0.25,4,202613,2026-12-18,cash,,,,,\n", "column \"maturity\""),
            ("ESZ6,future,CME,ES,USD,50,0.25,4,202612,2026-12-32,cash,,,,,\n", "column \"last_trade_date\""),
            ("ESZ6,swap,CME,ES,USD,50,0.25,4,202612,2026-12-18,cash,,,,,\n", "column \"kind\""),
            ("ESZ6,future,CME,ES,USD,50,0.25,4,202612,2026-12-18,cash,,,,,\nESZ6,future,CME,ES,USD,50,0.25,4,202612,2026-12-18,cash,,,,,\n", "line 3: instrument ESZ6 already defined on line 2"),
            ("X-C1,option,CME,ES,USD,50,0.25,4,202612,2026-12-18,cash,ESZ6,call,1,american,upfront\n", "line 2, column \"underlying\""),
            ("X-C1,option,CME,ES,USD,50,0.25,4,202612,2026-12-18,cash,ESZ6,straddle,1,american,upfront\n", "column \"put_call\""),
            ("ESZ6,future,CME\n", "line 2"),
        ];
        for (body, expected) in cases {
            let text = format!("{HEADER}{body}");
            let error = load_instruments(text.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(expected), "{body}: {error}");
        }
    }

    #[test]
    fn missing_column_is_named() {
        let error = load_instruments("id,kind\n".as_bytes()).unwrap_err();
        assert_eq!(error, TableError::MissingColumn { column: "exchange" });
    }
}
