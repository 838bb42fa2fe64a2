//! What the engine is told, and what it answers.

use keel_domain::{
    Account, AveragePriceAllocation, CaptureError, Date, GiveUpResponse, Instrument, TradeReport,
};
use keel_settlement::{FeeSchedule, SettleError, SettlementPrices};
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
    /// Settlement prices for the open business date (replacing any loaded before for it).
    LoadSettlementPrices(SettlementPrices),
    /// The fee schedule from now on.
    LoadFeeSchedule(FeeSchedule),
    /// End of day for the open business date: variation margin, premium, fees, ledger.
    RunEndOfDay(Date),
    /// Expiry for the open business date, before its end of day: options in the money by at
    /// least `threshold` exercised and assigned, the rest abandoned; cash-settled futures closed
    /// at the final settlement price, physically settled ones flagged for delivery.
    ProcessExpiries {
        date: Date,
        threshold: keel_domain::Price,
    },
}

impl Command {
    /// The trade report this command carries, if it is one (for `Engine::probe`).
    pub fn trade_report(&self) -> Option<&TradeReport> {
        match self {
            Command::Trade(report) => Some(report),
            _ => None,
        }
    }
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

/// Largest encoded envelope: what a journal record's payload holds (16 MiB, docs/journal-format.md).
/// `Envelope::decode` refuses more, and `TenantStore::stage` refuses to apply a command whose
/// envelope is larger, so every command applied can be journaled and replayed. (It was 1 MiB
/// until the sixth session, and an admin command over it, a large settlement price file, was
/// journaled with an empty payload that replay could not decode.)
pub const ENVELOPE_BYTES_MAX: u64 = 16 << 20;

/// How an envelope's bytes encode integers (docs/journal-format.md, "Command payloads").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Fixed-width little-endian integers (journal format versions 1 to 3).
    Fixed,
    /// Variable-length integers (bincode's varint; journal format version 4 on): about 45%
    /// fewer bytes for a trade, most of its integers being small lengths and tags.
    Compact,
}

fn fixed() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
        .with_limit(ENVELOPE_BYTES_MAX)
}

fn compact() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
        .with_limit(ENVELOPE_BYTES_MAX)
}

/// Why journal bytes did not decode into an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("envelope does not decode: {0}")]
pub struct DecodeError(pub String);

impl Envelope {
    /// Appends the journal encoding (bincode 1.3, `Encoding::Compact`).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.encode_as_into(Encoding::Compact, out);
    }

    /// Appends the envelope in `encoding`: `Fixed` is what journals of format versions 1 to 3
    /// hold (kept for tests and tools that write them).
    ///
    /// Encoding has no size limit (a limit makes bincode measure the whole value first, a
    /// second pass over every command): the caller checks the length against
    /// `ENVELOPE_BYTES_MAX`.
    pub fn encode_as_into(&self, encoding: Encoding, out: &mut Vec<u8>) {
        use bincode::Options;
        // Writing plain data into a Vec without a limit cannot fail.
        let _ = match encoding {
            Encoding::Fixed => fixed().with_no_limit().serialize_into(out, self),
            Encoding::Compact => compact().with_no_limit().serialize_into(out, self),
        };
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(&mut out);
        out
    }

    /// Decodes journal bytes in the current encoding (`Encoding::Compact`); trailing bytes and
    /// oversize input are errors.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        Self::decode_as(bytes, Encoding::Compact)
    }

    /// Decodes journal bytes in `encoding` (the one its record's format version says).
    pub fn decode_as(bytes: &[u8], encoding: Encoding) -> Result<Envelope, DecodeError> {
        use bincode::Options;
        match encoding {
            Encoding::Fixed => fixed().deserialize(bytes),
            Encoding::Compact => compact().deserialize(bytes),
        }
        .map_err(|e| DecodeError(e.to_string()))
    }
}

/// The answer to one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Applied at this envelope's sequence.
    Accepted { sequence: u64 },
    /// The same instruction was accepted before, at `sequence`; nothing changed.
    Duplicate { sequence: u64 },
    /// Refused; nothing changed.
    Rejected(Reject),
}

/// Why a command was refused: a trade-capture rule or a settlement rule. Codes are stable and
/// distinct (1000s and 2000s; docs/reject-codes.md).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Reject {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Settle(#[from] SettleError),
}

impl Reject {
    pub fn code(&self) -> u16 {
        match self {
            Reject::Capture(error) => error.code(),
            Reject::Settle(error) => error.code(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Reject::Capture(error) => error.name(),
            Reject::Settle(error) => error.name(),
        }
    }
}

impl Outcome {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Outcome::Accepted { .. })
    }
}
