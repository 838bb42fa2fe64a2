//! End of day. Pure: positions, settlement prices and a fee schedule in; balanced postings and
//! netted payment instructions out.
//!
//! # Layout
//! - `error`: `SettleError`, every refusal with its stable code.
//! - `prices`: settlement prices for a business date, and their CSV loader.
//! - `fees`: the fee schedule (per contract, by exchange, product and account kind) and loader.
//! - `ledger`: double-entry postings and balances; the zero-sum check.
//! - `eod`: `Settlement`, the end-of-day run: variation margin, premium, fees, true-ups.
//! - `calendar`: value dates (the next weekday).
//! - `reconcile`: breaks against a clearing house's position file.
//! - `expiry`: exercise, assignment and abandonment of options; final settlement and delivery.
//!
//! Every amount is a true-up: what a position is owed to date, minus what was already posted for
//! it. For futures that is the clearing house's variation margin (yesterday's position marked
//! from the previous settlement price to today's, plus today's trades from their price to
//! today's), and it also settles corrections to earlier days' trades and the previous days'
//! rounding on the next run.

pub mod calendar;
pub mod eod;
pub mod error;
pub mod expiry;
pub mod fees;
pub mod ledger;
pub mod prices;
pub mod reconcile;

pub use eod::{EodInput, EodReport, Settlement};
pub use error::SettleError;
pub use expiry::{ExpiryBooking, ExpiryEvent, ExpiryInput, ExpiryRecord};
pub use fees::{FeeRule, FeeSchedule};
pub use ledger::{Ledger, LedgerAccount, PaymentInstruction, Posting, PostingKind};
pub use prices::SettlementPrices;
