//! Why an end-of-day instruction was refused. Codes are stable (docs/reject-codes.md).

use keel_domain::{Date, InstrumentId, Price};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SettleError {
    #[error("end of day must run for the open business date {open}, not {requested}")]
    NotTheOpenDate { requested: Date, open: Date },
    #[error("end of day already ran for {0}")]
    AlreadyRun(Date),
    #[error("no settlement price for held contracts: {}", .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "))]
    MissingPrices(Vec<InstrumentId>),
    #[error("unknown instrument {0}")]
    UnknownInstrument(InstrumentId),
    #[error("settlement price {price} of {instrument} is not a multiple of the tick {tick}")]
    PriceOffTick { instrument: InstrumentId, price: Price, tick: Price },
    #[error("settlement price for {0} given twice")]
    DuplicatePrice(InstrumentId),
    #[error("fee schedule names unknown {what} {name}")]
    UnknownFeeTarget { what: String, name: String },
    #[error("no business date is open")]
    BusinessDateNotOpen,
    #[error("ledger does not balance in {currency}: {sum} after posting {posting}")]
    LedgerUnbalanced { currency: String, sum: String, posting: u64 },
    #[error("amount overflows: {0}")]
    Overflow(String),
    #[error("expiries for {0} were already processed")]
    ExpiryAlreadyProcessed(Date),
}

impl SettleError {
    pub fn code(&self) -> u16 {
        match self {
            SettleError::NotTheOpenDate { .. } => 2001,
            SettleError::AlreadyRun(_) => 2002,
            SettleError::MissingPrices(_) => 2003,
            SettleError::UnknownInstrument(_) => 2004,
            SettleError::PriceOffTick { .. } => 2005,
            SettleError::DuplicatePrice(_) => 2006,
            SettleError::UnknownFeeTarget { .. } => 2007,
            SettleError::BusinessDateNotOpen => 2008,
            SettleError::LedgerUnbalanced { .. } => 2009,
            SettleError::Overflow(_) => 2010,
            SettleError::ExpiryAlreadyProcessed(_) => 2011,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            SettleError::NotTheOpenDate { .. } => "EOD_NOT_THE_OPEN_DATE",
            SettleError::AlreadyRun(_) => "EOD_ALREADY_RUN",
            SettleError::MissingPrices(_) => "MISSING_SETTLEMENT_PRICES",
            SettleError::UnknownInstrument(_) => "UNKNOWN_INSTRUMENT",
            SettleError::PriceOffTick { .. } => "SETTLEMENT_PRICE_OFF_TICK",
            SettleError::DuplicatePrice(_) => "DUPLICATE_SETTLEMENT_PRICE",
            SettleError::UnknownFeeTarget { .. } => "UNKNOWN_FEE_TARGET",
            SettleError::BusinessDateNotOpen => "BUSINESS_DATE_NOT_OPEN",
            SettleError::LedgerUnbalanced { .. } => "LEDGER_UNBALANCED",
            SettleError::Overflow(_) => "OVERFLOW",
            SettleError::ExpiryAlreadyProcessed(_) => "EXPIRY_ALREADY_PROCESSED",
        }
    }
}
