//! Checks on one trade's economics, in the documented order of precedence. Pure functions of
//! the reference data; capture's state (existing trades, groups) is checked in `capture`.

use keel_domain::{CaptureError, Date, InstrumentKind, Price, Quantity, TradeDetails};

use crate::reference::{AccountKey, InstrumentKey, Reference};

/// A trade whose identifiers resolved and whose economics passed the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub business_date: Date,
    pub account: AccountKey,
    pub instrument: InstrumentKey,
}

/// Validates `details` against the reference data: business date open; instrument known and
/// live on the trade date; quantity in range; price on tick (and not negative for options);
/// account known and carried by the clearing firm; trade date not after the business date.
#[inline]
pub fn resolve(reference: &Reference, details: &TradeDetails) -> Result<Resolved, CaptureError> {
    let business_date = reference.business_date().ok_or(CaptureError::BusinessDateNotOpen)?;
    reference.check_intern_capacity()?;
    let instrument_key = reference
        .instrument_key(&details.instrument)
        .ok_or(CaptureError::UnknownInstrument(details.instrument))?;
    let instrument = reference.instrument(instrument_key);
    if instrument.is_expired_on(details.trade_date) {
        return Err(CaptureError::InstrumentExpired {
            instrument: instrument.id,
            last_trade_date: instrument.last_trade_date,
        });
    }
    check_quantity(details.quantity)?;
    if !details.price.is_on_tick(instrument.tick_size) {
        return Err(CaptureError::PriceOffTick {
            price: details.price,
            tick: instrument.tick_size,
        });
    }
    if matches!(instrument.kind, InstrumentKind::Option(_)) && details.price < Price::ZERO {
        return Err(CaptureError::PremiumMustNotBeNegative(details.price));
    }
    let account = resolve_account(reference, details)?;
    if details.trade_date > business_date {
        return Err(CaptureError::TradeDateAfterBusinessDate {
            trade_date: details.trade_date,
            business_date,
        });
    }
    Ok(Resolved { business_date, account, instrument: instrument_key })
}

pub fn check_quantity(quantity: Quantity) -> Result<(), CaptureError> {
    if quantity <= Quantity::ZERO {
        return Err(CaptureError::QuantityMustBePositive(quantity));
    }
    if quantity > Quantity::TRADE_MAX {
        return Err(CaptureError::QuantityTooLarge(quantity));
    }
    Ok(())
}

fn resolve_account(
    reference: &Reference,
    details: &TradeDetails,
) -> Result<AccountKey, CaptureError> {
    let key = reference
        .account_key(&details.account)
        .ok_or(CaptureError::UnknownAccount(details.account))?;
    let account = reference.account(key);
    if account.firm != details.clearing_firm {
        return Err(CaptureError::AccountNotCarriedByFirm {
            account: account.id,
            firm: details.clearing_firm,
        });
    }
    Ok(key)
}
