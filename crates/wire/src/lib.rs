//! keel's native protocol (docs/wire-protocol.md): each frame is a little-endian `u32` payload
//! length, then the payload: one protocol-version byte and a bincode 1.3.3 message with
//! fixed-width little-endian integers, a size limit, and no trailing bytes allowed.
//!
//! # Layout
//! - `message`: `ClientMessage` and `ServerMessage` and everything inside them; error codes.
//! - `codec`: frame encoding and decoding, sync (`encode_frame`, `decode_payload`,
//!   `decode_client_message`) and async (`read_frame`, `write_frame`), with `WireError`.
//! - `batch`: the direct decoder `decode_client_message` uses for batches of trade reports.
//!
//! Prices and money are keel's fixed-point integers (nine decimals), so they cross the wire as
//! exact `i64` / `i128` values: no decimal formatting, no floats, nothing lost.

mod batch;
pub mod codec;
pub mod message;

pub use codec::{
    decode_client_message, decode_payload, encode_frame, read_frame, write_frame, WireError,
    FRAME_BYTES_MAX, PROTOCOL_VERSION,
};
pub use message::*;
