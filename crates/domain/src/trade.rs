//! What a brokerage sends: trade reports (new, amend, cancel), give-up responses and
//! average-price allocations. Each carries the client's report id, the idempotency key.

use serde::{Deserialize, Serialize};

use crate::date::Date;
use crate::fixed::{Price, Quantity};
use crate::ident::{AccountId, ExchangeId, FirmId, GroupId, InstrumentId, ReportId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// +1 for a buy, -1 for a sell.
    pub fn sign(self) -> i64 {
        match self {
            Side::Buy => 1,
            Side::Sell => -1,
        }
    }
}

/// FIX PositionEffect (tag 77). Net accounts ignore it; gross accounts open a lot on `Open` and
/// close the opposite side's lots first on `Close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum PositionEffect {
    #[default]
    Open,
    Close,
}

/// One leg of an allocation: `quantity` contracts to `account`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Split {
    pub account: AccountId,
    pub quantity: Quantity,
}

/// The economics of one trade.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TradeDetails {
    pub account: AccountId,
    pub instrument: InstrumentId,
    pub side: Side,
    pub quantity: Quantity,
    pub price: Price,
    pub trade_date: Date,
    pub venue: Option<ExchangeId>,
    pub executing_firm: FirmId,
    /// The firm that clears the trade; must carry `account`.
    pub clearing_firm: FirmId,
    /// Give the trade up to this clearing firm (pending until it accepts or rejects).
    pub give_up_to: Option<FirmId>,
    pub position_effect: PositionEffect,
    /// Fill of an average-price group, booked to a holding account until allocated.
    pub average_price_group: Option<GroupId>,
    /// Allocation of an omnibus or holding-account trade; quantities must sum to `quantity`.
    pub allocations: Vec<Split>,
}

/// New, amend or cancel. Amend and cancel name the trade by its original report id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TradeAction {
    New(TradeDetails),
    Amend { target: ReportId, details: TradeDetails },
    Cancel { target: ReportId },
}

/// A trade report (FIX TradeCaptureReport). `report_id` is unique per tenant: an identical
/// resubmission is a duplicate, a different report under the same id is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TradeReport {
    pub report_id: ReportId,
    pub action: TradeAction,
}

/// The receiving firm's answer to a give-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GiveUpDecision {
    /// Take the trade up into `account`, which `firm` must carry.
    Accept { account: AccountId },
    /// Refuse: the trade stays with the executing side.
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GiveUpResponse {
    pub report_id: ReportId,
    /// The given-up trade's original report id.
    pub trade: ReportId,
    /// The responding firm; must be the trade's give-up target.
    pub firm: FirmId,
    pub decision: GiveUpDecision,
}

/// Allocate an average-price group's fills across accounts at their volume-weighted price.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AveragePriceAllocation {
    pub report_id: ReportId,
    pub group: GroupId,
    pub splits: Vec<Split>,
    /// Receives the rounding residual so that cash still balances.
    pub residual_account: AccountId,
}
