//! Messages of the native protocol.

use keel_domain::{
    AccountId, Amount, AveragePriceAllocation, Currency, GiveUpResponse, InstrumentId, Price,
    ReportId, TenantId, TradeReport,
};
use serde::{Deserialize, Serialize};

/// Client to server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    Logon(Logon),
    SubmitBatch(SubmitBatch),
    Query(Query),
    Heartbeat,
    Logout,
}

/// The first message of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logon {
    pub tenant: TenantId,
    /// The tenant's secret, as shown once when the tenant was created.
    pub credential: String,
    /// Free text naming the client, for logs.
    pub client_name: String,
}

/// Instructions to apply in order. The server answers with one `BatchAck` carrying one result
/// per instruction, once every accepted one is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitBatch {
    /// Chosen by the client, echoed in the acknowledgement.
    pub batch_id: u64,
    /// Must be the tenant of the session: a batch for another tenant ends the session.
    pub tenant: TenantId,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Instruction {
    Trade(TradeReport),
    GiveUp(GiveUpResponse),
    AveragePrice(AveragePriceAllocation),
}

impl Instruction {
    pub fn report_id(&self) -> ReportId {
        match self {
            Instruction::Trade(report) => report.report_id,
            Instruction::GiveUp(response) => response.report_id,
            Instruction::AveragePrice(allocation) => allocation.report_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// Positions of one account, or of the whole tenant.
    Positions { query_id: u64, account: Option<AccountId> },
    /// Where a trade stands, by its original report id.
    TradeStatus { query_id: u64, report_id: ReportId },
}

/// Server to client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    LogonAck {
        tenant: TenantId,
        last_sequence: u64,
    },
    LogonReject {
        code: u16,
        text: String,
    },
    BatchAck {
        batch_id: u64,
        results: Vec<AckResult>,
    },
    Positions {
        query_id: u64,
        positions: Vec<PositionRow>,
    },
    TradeStatus {
        query_id: u64,
        status: Option<TradeStatusRow>,
    },
    Heartbeat,
    /// A protocol error; the server closes the connection after sending it.
    Error {
        code: u16,
        text: String,
    },
}

/// The fate of one instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckResult {
    /// Applied and durable at this tenant sequence.
    Accepted { sequence: u64 },
    /// Accepted before, at `sequence`; nothing changed.
    Duplicate { sequence: u64 },
    /// Refused: `code` is the stable reject code (docs/reject-codes.md).
    Rejected { code: u16, rule: String, text: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionRow {
    pub account: AccountId,
    pub instrument: InstrumentId,
    pub net: i64,
    pub long: i64,
    pub short: i64,
    pub average_long: Option<Price>,
    pub average_short: Option<Price>,
    pub realized: Amount,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeStatusRow {
    pub report_id: ReportId,
    pub account: AccountId,
    pub instrument: InstrumentId,
    pub version: u32,
    /// `active`, `pending-give-up`, `given-up` or `cancelled`.
    pub status: String,
    /// Sequence that accepted the trade's latest version.
    pub sequence: u64,
}

/// Protocol error codes (`ServerMessage::Error`, `LogonReject`). Stable: never renumbered.
pub mod error_code {
    pub const MALFORMED_FRAME: u16 = 1;
    pub const UNSUPPORTED_VERSION: u16 = 2;
    pub const FRAME_TOO_LARGE: u16 = 3;
    pub const NOT_LOGGED_ON: u16 = 4;
    pub const BAD_CREDENTIAL: u16 = 5;
    pub const TENANT_MISMATCH: u16 = 6;
    pub const BATCH_TOO_LARGE: u16 = 7;
    pub const TOO_MANY_CONNECTIONS: u16 = 8;
    pub const IDLE_TIMEOUT: u16 = 9;
    pub const SHUTTING_DOWN: u16 = 10;
    pub const TENANT_UNAVAILABLE: u16 = 11;
    pub const ALREADY_LOGGED_ON: u16 = 12;
}
