//! Why a trade report or instruction was rejected. The numeric codes cross the wire and are
//! stable: never renumber, only add. Documented in docs/reject-codes.md.

use serde::{Deserialize, Serialize};

use crate::date::Date;
use crate::fixed::{Price, Quantity};
use crate::ident::{AccountId, FirmId, GroupId, InstrumentId, ReportId};

/// A rejection, named for the rule broken. Variants are listed in the order the rules are
/// checked, so a report that breaks several rules gets the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CaptureError {
    #[error("report id {0} was already used for different content")]
    ReportIdReused(ReportId),
    #[error("no business date is open")]
    BusinessDateNotOpen,
    #[error("unknown instrument {0}")]
    UnknownInstrument(InstrumentId),
    #[error("instrument {instrument} expired on {last_trade_date}")]
    InstrumentExpired { instrument: InstrumentId, last_trade_date: Date },
    #[error("quantity {0} must be positive")]
    QuantityMustBePositive(Quantity),
    #[error("quantity {0} is above the per-trade limit")]
    QuantityTooLarge(Quantity),
    #[error("price {price} is not a multiple of the tick {tick}")]
    PriceOffTick { price: Price, tick: Price },
    #[error("option premium {0} must not be negative")]
    PremiumMustNotBeNegative(Price),
    #[error("unknown account {0}")]
    UnknownAccount(AccountId),
    #[error("account {account} is not carried by clearing firm {firm}")]
    AccountNotCarriedByFirm { account: AccountId, firm: FirmId },
    #[error("trade date {trade_date} is after the clearing business date {business_date}")]
    TradeDateAfterBusinessDate { trade_date: Date, business_date: Date },
    #[error("no trade with report id {0}")]
    UnknownTrade(ReportId),
    #[error("trade {0} is already cancelled")]
    TradeAlreadyCancelled(ReportId),
    #[error("trade {0} has a pending give-up: answer it before amending or cancelling")]
    TradePendingGiveUp(ReportId),
    #[error("trade {trade} belongs to average-price group {group}, which is already allocated")]
    GroupAlreadyAllocated { trade: ReportId, group: GroupId },
    #[error("allocations sum to {allocated}, not the trade quantity {quantity}")]
    AllocationQuantityMismatch { allocated: Quantity, quantity: Quantity },
    #[error("account {0} is not an omnibus or holding account and cannot allocate")]
    AccountCannotAllocate(AccountId),
    #[error("a trade cannot be both given up and allocated or average-priced")]
    ConflictingInstructions,
    #[error("give-up target {0} is the trade's own clearing firm")]
    GiveUpToSelf(FirmId),
    #[error("trade {0} has no pending give-up")]
    NoPendingGiveUp(ReportId),
    #[error("firm {responder} is not the give-up target {target}")]
    GiveUpWrongFirm { responder: FirmId, target: FirmId },
    #[error("unknown average-price group {0}")]
    UnknownGroup(GroupId),
    #[error(
        "fill does not match average-price group {0} (account, instrument and side must agree)"
    )]
    GroupMismatch(GroupId),
    #[error("average-price group {0} has no open quantity")]
    GroupEmpty(GroupId),
    #[error("account {0} is not a residual account")]
    NotAResidualAccount(AccountId),
    #[error("business date {requested} is before the open business date {open}")]
    BusinessDateBackwards { requested: Date, open: Date },
    #[error("{0} is already defined with different terms")]
    DefinitionConflict(String),
    #[error("amount overflows: {0}")]
    Overflow(String),
    #[error(
        "trade {0} was given up to another firm and can no longer be amended or cancelled here"
    )]
    TradeGivenUp(ReportId),
}

impl CaptureError {
    /// The stable numeric code sent to clients.
    pub fn code(&self) -> u16 {
        match self {
            CaptureError::ReportIdReused(_) => 1001,
            CaptureError::BusinessDateNotOpen => 1002,
            CaptureError::UnknownInstrument(_) => 1003,
            CaptureError::InstrumentExpired { .. } => 1004,
            CaptureError::QuantityMustBePositive(_) => 1005,
            CaptureError::QuantityTooLarge(_) => 1006,
            CaptureError::PriceOffTick { .. } => 1007,
            CaptureError::PremiumMustNotBeNegative(_) => 1008,
            CaptureError::UnknownAccount(_) => 1009,
            CaptureError::AccountNotCarriedByFirm { .. } => 1010,
            CaptureError::TradeDateAfterBusinessDate { .. } => 1011,
            CaptureError::UnknownTrade(_) => 1012,
            CaptureError::TradeAlreadyCancelled(_) => 1013,
            CaptureError::TradePendingGiveUp(_) => 1014,
            CaptureError::GroupAlreadyAllocated { .. } => 1015,
            CaptureError::AllocationQuantityMismatch { .. } => 1016,
            CaptureError::AccountCannotAllocate(_) => 1017,
            CaptureError::ConflictingInstructions => 1018,
            CaptureError::GiveUpToSelf(_) => 1019,
            CaptureError::NoPendingGiveUp(_) => 1020,
            CaptureError::GiveUpWrongFirm { .. } => 1021,
            CaptureError::UnknownGroup(_) => 1022,
            CaptureError::GroupMismatch(_) => 1023,
            CaptureError::GroupEmpty(_) => 1024,
            CaptureError::NotAResidualAccount(_) => 1025,
            CaptureError::BusinessDateBackwards { .. } => 1026,
            CaptureError::DefinitionConflict(_) => 1027,
            CaptureError::Overflow(_) => 1028,
            CaptureError::TradeGivenUp(_) => 1029,
        }
    }

    /// A short stable name for logs, CSV output and docs (`UNKNOWN_INSTRUMENT`).
    pub fn name(&self) -> &'static str {
        match self {
            CaptureError::ReportIdReused(_) => "REPORT_ID_REUSED",
            CaptureError::BusinessDateNotOpen => "BUSINESS_DATE_NOT_OPEN",
            CaptureError::UnknownInstrument(_) => "UNKNOWN_INSTRUMENT",
            CaptureError::InstrumentExpired { .. } => "INSTRUMENT_EXPIRED",
            CaptureError::QuantityMustBePositive(_) => "QUANTITY_MUST_BE_POSITIVE",
            CaptureError::QuantityTooLarge(_) => "QUANTITY_TOO_LARGE",
            CaptureError::PriceOffTick { .. } => "PRICE_OFF_TICK",
            CaptureError::PremiumMustNotBeNegative(_) => "PREMIUM_MUST_NOT_BE_NEGATIVE",
            CaptureError::UnknownAccount(_) => "UNKNOWN_ACCOUNT",
            CaptureError::AccountNotCarriedByFirm { .. } => "ACCOUNT_NOT_CARRIED_BY_FIRM",
            CaptureError::TradeDateAfterBusinessDate { .. } => "TRADE_DATE_AFTER_BUSINESS_DATE",
            CaptureError::UnknownTrade(_) => "UNKNOWN_TRADE",
            CaptureError::TradeAlreadyCancelled(_) => "TRADE_ALREADY_CANCELLED",
            CaptureError::TradePendingGiveUp(_) => "TRADE_PENDING_GIVE_UP",
            CaptureError::GroupAlreadyAllocated { .. } => "GROUP_ALREADY_ALLOCATED",
            CaptureError::AllocationQuantityMismatch { .. } => "ALLOCATION_QUANTITY_MISMATCH",
            CaptureError::AccountCannotAllocate(_) => "ACCOUNT_CANNOT_ALLOCATE",
            CaptureError::ConflictingInstructions => "CONFLICTING_INSTRUCTIONS",
            CaptureError::GiveUpToSelf(_) => "GIVE_UP_TO_SELF",
            CaptureError::NoPendingGiveUp(_) => "NO_PENDING_GIVE_UP",
            CaptureError::GiveUpWrongFirm { .. } => "GIVE_UP_WRONG_FIRM",
            CaptureError::UnknownGroup(_) => "UNKNOWN_GROUP",
            CaptureError::GroupMismatch(_) => "GROUP_MISMATCH",
            CaptureError::GroupEmpty(_) => "GROUP_EMPTY",
            CaptureError::NotAResidualAccount(_) => "NOT_A_RESIDUAL_ACCOUNT",
            CaptureError::BusinessDateBackwards { .. } => "BUSINESS_DATE_BACKWARDS",
            CaptureError::DefinitionConflict(_) => "DEFINITION_CONFLICT",
            CaptureError::Overflow(_) => "OVERFLOW",
            CaptureError::TradeGivenUp(_) => "TRADE_GIVEN_UP",
        }
    }
}
