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

/// Largest encoded envelope accepted by `Envelope::decode`.
pub const ENVELOPE_BYTES_MAX: u64 = 1 << 20;

fn codec() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
        .with_limit(ENVELOPE_BYTES_MAX)
}

/// Why journal bytes did not decode into an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("envelope does not decode: {0}")]
pub struct DecodeError(pub String);

impl Envelope {
    /// Appends the journal encoding (bincode 1.3, fixed-width little-endian integers).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        use bincode::Options;
        // Writing plain data into a Vec cannot fail.
        let _ = codec().serialize_into(out, self);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(&mut out);
        out
    }

    /// Decodes journal bytes; trailing bytes and oversize input are errors.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        use bincode::Options;
        codec().deserialize(bytes).map_err(|e| DecodeError(e.to_string()))
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
    Rejected(CaptureError),
}

impl Outcome {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Outcome::Accepted { .. })
    }
}
