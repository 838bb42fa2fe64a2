//! What the engine is told, and what it answers.

use keel_domain::{
    Account, AveragePriceAllocation, CaptureError, Date, GiveUpResponse, Instrument, TradeReport,
};
use serde::{Deserialize, Serialize};

/// Everything that changes a tenant's state. Each is journaled before it is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Opens a clearing business date (dates only move forward).
    OpenBusinessDate(Date),
    DefineInstrument(Instrument),
    DefineAccount(Account),
    /// New, amend or cancel.
    Trade(TradeReport),
    GiveUp(GiveUpResponse),
    AveragePrice(AveragePriceAllocation),
}

/// A command with the tenant sequence and capture time assigned by the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Strictly increasing per tenant, starting at 1.
    pub sequence: u64,
    /// Capture time, nanoseconds since the Unix epoch (UTC).
    pub timestamp_ns: i64,
    pub command: Command,
}

/// The answer to one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Applied at this envelope's sequence.
    Accepted { sequence: u64 },
    /// The same instruction was accepted before, at `sequence`; nothing changed.
    Duplicate { sequence: u64 },
    /// Refused; nothing changed.
    Rejected(CaptureError),
}

impl Outcome {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Outcome::Accepted { .. })
    }
}
