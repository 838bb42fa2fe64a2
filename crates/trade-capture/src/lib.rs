//! Trade capture: turns client instructions into bookings, or into a rejection naming the rule
//! broken. Pure and deterministic: every input (business date, sequence numbers, reference
//! data) arrives as an argument.
//!
//! # Layout
//! - `reference`: instrument and account masters and the open business date, with dense keys.
//! - `record`: what capture remembers per trade and average-price group.
//! - `reports`: the table of accepted report ids (idempotency), an arena with a hash index.
//! - `validate`: checks on one trade's details, returning the resolved (keyed) trade.
//! - `capture`: `Capture`, the state machine: new / amend / cancel, give-up, allocation,
//!   average price, idempotency; it emits `Effect`s for position keeping.
//!
//! Capture decides *what* is booked where; `keel-position-keeping` decides what a booking does to
//! a position. The engine applies the effects in order.

pub mod capture;
pub mod record;
pub mod reference;
pub mod reports;
pub mod validate;

pub use capture::{Accepted, Capture, Effect};
pub use record::{GroupKey, Placement, ReportKind, TradeKey, TradeRecord, TradeStatus};
pub use reference::{AccountKey, FirmKey, InstrumentKey, Reference, VenueKey};
pub use reports::{BuiltIndex, IndexJob, Install, ReportRecord, ReportTable};
