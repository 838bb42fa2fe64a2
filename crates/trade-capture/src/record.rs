//! What capture remembers: one record per trade, one entry per accepted report id, one record
//! per average-price group.

use keel_domain::{
    Date, ExchangeId, FirmId, GroupId, PositionEffect, Price, Quantity, ReportId, Side,
};
use keel_position_keeping::BookingId;
use serde::{Deserialize, Serialize};

use crate::reference::{AccountKey, InstrumentKey};

/// Index of a trade in booking order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TradeKey(pub u32);

/// Index of an average-price group in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupKey(pub u32);

/// One booking a trade holds: which account's position it sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub account: AccountKey,
    pub booking: BookingId,
    pub quantity: Quantity,
}

/// Where a trade is booked: one account, or split across allocation accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    None,
    Single(Placed),
    Split(Box<[Placed]>),
}

impl Placement {
    pub fn as_slice(&self) -> &[Placed] {
        match self {
            Placement::None => &[],
            Placement::Single(placed) => std::slice::from_ref(placed),
            Placement::Split(all) => all,
        }
    }
}

/// Trade lifecycle. Transitions (capture.rs): new -> Active or PendingGiveUp; PendingGiveUp ->
/// Active (accepted, moved; or rejected, stays); Active -> Active (amend); Active -> Cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TradeStatus {
    Active,
    PendingGiveUp {
        to: FirmId,
    },
    /// Taken up by another firm: final for the executing side.
    GivenUp {
        from: AccountKey,
    },
    Cancelled,
}

/// A trade as booked now (after any amendments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeRecord {
    /// The report id of the `New` that created the trade: its trade id.
    pub trade_id: ReportId,
    /// Account on the report (the allocating account for split trades).
    pub account: AccountKey,
    pub instrument: InstrumentKey,
    pub side: Side,
    pub quantity: Quantity,
    pub price: Price,
    pub trade_date: Date,
    pub effect: PositionEffect,
    pub executing_firm: FirmId,
    pub venue: Option<ExchangeId>,
    pub group: Option<GroupKey>,
    /// 1 for the original, +1 per amendment.
    pub version: u32,
    pub status: TradeStatus,
    pub placement: Placement,
}

/// Remembered per accepted report id: enough to answer a resubmission with the original result
/// and to spot a different report under the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportEntry {
    /// xxh3-128 of the report's content.
    pub fingerprint: u128,
    /// Tenant sequence of the command that accepted it.
    pub sequence: u64,
}

/// Fills booked to a holding account under one group id, until allocated at their average price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub id: GroupId,
    pub account: AccountKey,
    pub instrument: InstrumentKey,
    pub side: Side,
    /// Active fills in booking order.
    pub fills: Vec<TradeKey>,
    pub allocation: Option<GroupAllocation>,
}

/// The result of allocating a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupAllocation {
    pub average_price: Price,
    pub quantity: Quantity,
    /// Booking that takes the fills out of the holding account.
    pub holding: Placed,
    pub splits: Vec<Placed>,
    pub residual_account: AccountKey,
    pub residual: keel_domain::Amount,
}
