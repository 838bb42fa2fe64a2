//! keel's vocabulary, shared by every other crate. No I/O, no clocks, and no threads of its own (`stock`
//! only holds a handle to wake one).
//!
//! # Layout
//! - `ident`: validated inline identifiers (`TenantId`, `AccountId`, `InstrumentId`, `ReportId`, ...).
//! - `fixed`: exact fixed-point `Price`, `Quantity`, `Multiplier`, `Amount`, `Currency`, rounding.
//! - `date`: calendar `Date` (trade dates, business dates, expiries).
//! - `instrument`: futures and options and the CSV instrument master loader.
//! - `account`: accounts, their kind and position mode, and the CSV account list loader.
//! - `trade`: trade reports (new / amend / cancel), give-up responses, average-price allocations.
//! - `reject`: `CaptureError`, every rejection with its stable wire code.
//! - `table`: line-numbered CSV reading shared by the loaders.
//! - `cow`: `CowVec`, the chunked copy-on-write arena behind the engine's large tables.
//! - `stock`: chunk buffers for those arenas, faulted in ahead of time by a helper thread.
//! - `index`: `SlotIndex`, the hash index into those arenas, built for batched lookups.
//! - `canon`: the snapshot encoding written by hand for the records that fill those arenas.

pub mod account;
pub mod canon;
pub mod cow;
pub mod date;
pub mod fixed;
pub mod ident;
pub mod index;
pub mod instrument;
pub mod reject;
pub mod stock;
pub mod table;
pub mod trade;

pub use account::{Account, AccountKind, PositionMode};
pub use canon::{Canon, CanonSink};
pub use cow::CowVec;
pub use date::Date;
pub use fixed::{Amount, Currency, Multiplier, Price, Quantity, Rounding};
pub use ident::{
    AccountId, ExchangeId, FirmId, GroupId, IdentError, InstrumentId, ProductId, ReportId, TenantId,
};
pub use instrument::{Instrument, InstrumentKind, OptionTerms, PutCall};
pub use reject::CaptureError;
pub use trade::{
    AveragePriceAllocation, GiveUpDecision, GiveUpResponse, PositionEffect, Side, Split,
    TradeAction, TradeDetails, TradeReport,
};
