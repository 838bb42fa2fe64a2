//! What capture remembers: one record per trade, one entry per accepted report id, one record
//! per average-price group.

use keel_domain::{Date, GroupId, PositionEffect, Price, Quantity, Side};
use keel_position_keeping::BookingId;
use serde::{Deserialize, Serialize};

use crate::reference::{AccountKey, FirmKey, InstrumentKey, VenueKey};

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

/// Where a trade is booked: one booking in the trade's account, or split across allocation
/// accounts (the splits live in `Capture`'s split table, keyed by trade, to keep this small).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    None,
    Single(BookingId),
    Split,
}

/// Trade lifecycle. Transitions (capture.rs): new -> Active or PendingGiveUp; PendingGiveUp ->
/// Active (accepted, moved; or rejected, stays); Active -> Active (amend); Active -> Cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TradeStatus {
    Active,
    PendingGiveUp {
        to: FirmKey,
    },
    /// Taken up by another firm: final for the executing side.
    GivenUp {
        from: AccountKey,
    },
    Cancelled,
}

/// A trade as booked now (after any amendments). Its trade id (the report id of the `New`
/// that created it) is the key that finds it in `Capture`'s report table. Kept to 80 bytes:
/// firms and venues are interned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeRecord {
    /// Account on the report (the allocating account for split trades).
    pub account: AccountKey,
    pub instrument: InstrumentKey,
    pub side: Side,
    pub quantity: Quantity,
    pub price: Price,
    pub trade_date: Date,
    pub effect: PositionEffect,
    pub executing_firm: FirmKey,
    pub venue: Option<VenueKey>,
    pub group: Option<GroupKey>,
    /// 1 for the original, +1 per amendment.
    pub version: u32,
    pub status: TradeStatus,
    pub placement: Placement,
}

/// What kind of instruction a report id was accepted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportKind {
    New,
    Amend,
    Cancel,
    GiveUp,
    AveragePrice,
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
