//! Settlement prices for one business date, and the CSV loader (`instrument,price`).

use std::collections::BTreeMap;
use std::io::Read;

use keel_domain::table::{read_table, TableError};
use keel_domain::{Date, Instrument, InstrumentId, Price};
use serde::{Deserialize, Serialize};

use crate::error::SettleError;

/// The prices an exchange published for `date`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SettlementPrices {
    pub date: Date,
    pub prices: Vec<(InstrumentId, Price)>,
}

/// Parses `instrument,price` rows; errors name the line and column.
pub fn load_prices(reader: impl Read) -> Result<Vec<(InstrumentId, Price)>, TableError> {
    let mut prices = Vec::new();
    read_table(reader, &["instrument", "price"], |row| {
        prices.push((
            row.parse("instrument", InstrumentId::new_checked)?,
            row.parse("price", Price::parse)?,
        ));
        Ok(())
    })?;
    Ok(prices)
}

/// Checks prices against the instrument master: known instruments, on tick, each once.
pub fn validate<'a>(
    prices: &[(InstrumentId, Price)],
    instrument: impl Fn(&InstrumentId) -> Option<&'a Instrument>,
) -> Result<BTreeMap<InstrumentId, Price>, SettleError> {
    let mut checked = BTreeMap::new();
    for (id, price) in prices {
        let found = instrument(id).ok_or(SettleError::UnknownInstrument(*id))?;
        if !price.is_on_tick(found.tick_size) {
            return Err(SettleError::PriceOffTick {
                instrument: *id,
                price: *price,
                tick: found.tick_size,
            });
        }
        if checked.insert(*id, *price).is_some() {
            return Err(SettleError::DuplicatePrice(*id));
        }
    }
    Ok(checked)
}
