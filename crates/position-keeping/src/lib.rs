//! Positions per account x instrument: net and gross quantities, FIFO open lots, average open
//! price and realized P&L in the instrument's currency. Pure: no I/O, no clock.
//!
//! # Layout
//! - `position`: `Position`, the `Booking`s it is made of, `Lot`s, and `PositionError`.
//! - `entries`: how a position stores its bookings (inline, heap, or copy-on-write chunks).
//!
//! A position is the fold of its active bookings in booking order. Booking one more is
//! incremental; reversing one (an amend or a cancel) removes it and folds the rest again, so
//! that a reversal is exact whatever FIFO matching the reversed booking took part in.

mod entries;
pub mod position;

pub use position::{Booking, BookingId, EntryHint, Lot, Position, PositionError, Search, Terms};
