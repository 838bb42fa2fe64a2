//! The per-tenant state machine. `Engine::apply(&Envelope) -> Outcome` runs trade capture and
//! position keeping; `state_hash` and `snapshot`/`restore` make replay verifiable.
//!
//! # Layout
//! - `command`: `Command` (everything that changes state), `Envelope` (sequence + timestamp),
//!   `Outcome` (accepted / duplicate / rejected).
//! - `engine`: `Engine`, applying commands, queries, `EngineError` for faults that stop a tenant.
//! - `book`: the positions arena with its (account, instrument) index.
//! - `snapshot`: the canonical encoding, BLAKE3 state hash, snapshot and restore, and
//!   `EngineImage`, the copy-on-write copy that lets another thread encode or hash the state.
//!
//! Nothing here touches a socket, a file, a clock or a thread: the business date, timestamps,
//! reference data and sequence numbers all arrive in commands, so the same commands always give
//! the same state and the same hash.

mod book;
pub mod command;
pub mod engine;
pub mod snapshot;

pub use command::{Command, DecodeError, Encoding, Envelope, Outcome, Reject, ENVELOPE_BYTES_MAX};
pub use engine::{Engine, EngineError, PositionView, PROBE_AHEAD};
pub use snapshot::{EngineImage, StateHash, SNAPSHOT_FORMAT_VERSION};
