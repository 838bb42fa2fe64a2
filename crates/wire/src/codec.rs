//! Frames: `u32` little-endian payload length, then the payload (version byte + bincode).

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Default largest payload accepted (1 MiB); servers may configure less or more.
pub const FRAME_BYTES_MAX: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("frame of {length} bytes is above the limit of {limit}")]
    FrameTooLarge { length: u32, limit: u32 },
    #[error("empty frame")]
    Empty,
    #[error("protocol version {0} is not supported (this build speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u8),
    #[error("frame does not decode: {0}")]
    Malformed(String),
    #[error("connection closed")]
    Closed,
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

fn options(limit: u32) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
        .with_limit(u64::from(limit))
}

/// Appends one whole frame for `message` to `out`.
pub fn encode_frame(message: &impl Serialize, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(PROTOCOL_VERSION);
    // Serializing plain data into a Vec without a limit cannot fail. (With a limit, bincode
    // measures the whole message in a pass of its own first; the peer's `frame_bytes_max`
    // bounds what it reads.)
    let _ = options(u32::MAX).with_no_limit().serialize_into(&mut *out, message);
    let length = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
}

/// Decodes a frame's payload (version byte + message).
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8], limit: u32) -> Result<T, WireError> {
    let (&version, body) = payload.split_first().ok_or(WireError::Empty)?;
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    options(limit).deserialize(body).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Decodes a client's frame payload: `decode_payload::<ClientMessage>`, with a batch of trade
/// reports read directly (`batch::decode_submit_batch`, several times faster) and everything
/// else, including every frame it would refuse, through serde as before.
pub fn decode_client_message(
    payload: &[u8],
    limit: u32,
) -> Result<crate::message::ClientMessage, WireError> {
    // Only within the limit, as `read_frame` always delivers; anything else is serde's to judge.
    if let (Some((&PROTOCOL_VERSION, body)), true) =
        (payload.split_first(), payload.len() <= limit as usize)
    {
        if let Some(message) = crate::batch::decode_submit_batch(body) {
            return Ok(message);
        }
    }
    decode_payload(payload, limit)
}

/// Reads one frame's payload into `buffer` (replacing its content). A clean end of stream
/// before a frame starts is `Closed`; one inside a frame is `Truncated`.
pub async fn read_frame(
    reader: &mut (impl AsyncRead + Unpin),
    buffer: &mut Vec<u8>,
    limit: u32,
) -> Result<(), WireError> {
    let mut length = [0u8; 4];
    let mut filled = 0;
    while filled < 4 {
        match reader.read(&mut length[filled..]).await? {
            0 if filled == 0 => return Err(WireError::Closed),
            0 => return Err(WireError::Truncated),
            n => filled += n,
        }
    }
    let length = u32::from_le_bytes(length);
    if length > limit {
        return Err(WireError::FrameTooLarge { length, limit });
    }
    if length == 0 {
        return Err(WireError::Empty);
    }
    buffer.clear();
    buffer.resize(length as usize, 0);
    reader.read_exact(buffer).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => WireError::Truncated,
        _ => WireError::Io(e),
    })?;
    Ok(())
}

/// Encodes and writes one frame.
pub async fn write_frame(
    writer: &mut (impl AsyncWrite + Unpin),
    message: &impl Serialize,
    scratch: &mut Vec<u8>,
) -> Result<(), WireError> {
    scratch.clear();
    encode_frame(message, scratch);
    writer.write_all(scratch).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::*;
    use keel_domain::{
        Date, PositionEffect, Price, Quantity, Side, TradeAction, TradeDetails, TradeReport,
    };

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn trade() -> Instruction {
        Instruction::Trade(TradeReport {
            report_id: "T1".parse().unwrap(),
            action: TradeAction::New(TradeDetails {
                account: "A1".parse().unwrap(),
                instrument: "ESZ6".parse().unwrap(),
                side: Side::Buy,
                quantity: Quantity::new(3),
                price: Price::parse("6050.25").unwrap(),
                trade_date: Date::parse("2026-11-27").unwrap(),
                venue: None,
                executing_firm: "F".parse().unwrap(),
                clearing_firm: "F".parse().unwrap(),
                give_up_to: None,
                position_effect: PositionEffect::Open,
                average_price_group: None,
                allocations: Vec::new(),
            }),
        })
    }

    /// Pins the wire format. If this fails, the protocol changed: bump PROTOCOL_VERSION and
    /// update docs/wire-protocol.md.
    #[test]
    fn golden_bytes() {
        let mut out = Vec::new();
        encode_frame(&ClientMessage::Heartbeat, &mut out);
        assert_eq!(hex(&out), "050000000103000000"); // length 5, version 1, variant 3
        out.clear();
        let logon = ClientMessage::Logon(Logon {
            tenant: "demo".parse().unwrap(),
            credential: "s3cret".into(),
            client_name: "c".into(),
        });
        encode_frame(&logon, &mut out);
        assert_eq!(
            hex(&out),
            concat!(
                "28000000",
                "01",       // payload length 40, protocol version 1
                "00000000", // ClientMessage::Logon
                "0400000000000000",
                "64656d6f", // tenant "demo"
                "0600000000000000",
                "733363726574", // credential "s3cret"
                "0100000000000000",
                "63", // client name "c"
            )
        );
        out.clear();
        let ack = ServerMessage::BatchAck {
            batch_id: 7,
            results: vec![AckResult::Accepted { sequence: 42 }],
        };
        encode_frame(&ack, &mut out);
        assert_eq!(
            hex(&out),
            "21000000010200000007000000000000000100000000000000000000002a00000000000000"
        );
        // A price is its nine-decimal fixed-point integer: 6050.25 = 6_050_250_000_000.
        out.clear();
        encode_frame(&Price::parse("6050.25").unwrap(), &mut out);
        assert_eq!(hex(&out), "0900000001808600af80050000");
    }

    #[test]
    fn messages_round_trip_and_bad_payloads_are_refused() {
        let batch = ClientMessage::SubmitBatch(SubmitBatch {
            batch_id: 9,
            tenant: "demo".parse().unwrap(),
            instructions: vec![trade(), trade()],
        });
        let mut out = Vec::new();
        encode_frame(&batch, &mut out);
        let payload = &out[4..];
        assert_eq!(decode_payload::<ClientMessage>(payload, FRAME_BYTES_MAX).unwrap(), batch);
        // The server's decoder gives the same answers, value or error, and keeps the limit.
        let mut cut = payload.to_vec();
        cut.truncate(payload.len() - 3);
        let mut wrong_version = payload.to_vec();
        wrong_version[0] = 9;
        for (bytes, limit) in [
            (payload.to_vec(), FRAME_BYTES_MAX),
            (payload.to_vec(), payload.len() as u32 - 10),
            (cut, FRAME_BYTES_MAX),
            (wrong_version, FRAME_BYTES_MAX),
            (Vec::new(), FRAME_BYTES_MAX),
        ] {
            let direct = format!("{:?}", decode_client_message(&bytes, limit));
            let serde = format!("{:?}", decode_payload::<ClientMessage>(&bytes, limit));
            assert_eq!(direct, serde, "{} bytes, limit {limit}", bytes.len());
        }
        let mut trailing = payload.to_vec();
        trailing.push(0);
        assert!(matches!(
            decode_payload::<ClientMessage>(&trailing, FRAME_BYTES_MAX),
            Err(WireError::Malformed(_))
        ));
        let mut version = payload.to_vec();
        version[0] = 9;
        assert!(matches!(
            decode_payload::<ClientMessage>(&version, FRAME_BYTES_MAX),
            Err(WireError::UnsupportedVersion(9))
        ));
        assert!(matches!(
            decode_payload::<ClientMessage>(&payload[..payload.len() - 3], FRAME_BYTES_MAX),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            decode_payload::<ClientMessage>(&[], FRAME_BYTES_MAX),
            Err(WireError::Empty)
        ));
        // A length prefix inside the message larger than the limit is refused, not allocated.
        let mut huge = vec![PROTOCOL_VERSION, 1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode_payload::<ClientMessage>(&huge, 1024),
            Err(WireError::Malformed(_))
        ));
        // An identifier that breaks the identifier rules is refused.
        let bad = ClientMessage::Logon(Logon {
            tenant: "demo".parse().unwrap(),
            credential: String::new(),
            client_name: String::new(),
        });
        let mut out = Vec::new();
        encode_frame(&bad, &mut out);
        let mut payload = out[4..].to_vec();
        payload[13] = b' ';
        assert!(matches!(
            decode_payload::<ClientMessage>(&payload, FRAME_BYTES_MAX),
            Err(WireError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn frames_read_back_and_limits_hold() {
        let mut out = Vec::new();
        encode_frame(&ClientMessage::Heartbeat, &mut out);
        encode_frame(&ClientMessage::Logout, &mut out);
        let mut reader = &out[..];
        let mut buffer = Vec::new();
        read_frame(&mut reader, &mut buffer, 64).await.unwrap();
        assert_eq!(decode_payload::<ClientMessage>(&buffer, 64).unwrap(), ClientMessage::Heartbeat);
        read_frame(&mut reader, &mut buffer, 64).await.unwrap();
        assert_eq!(decode_payload::<ClientMessage>(&buffer, 64).unwrap(), ClientMessage::Logout);
        assert!(matches!(read_frame(&mut reader, &mut buffer, 64).await, Err(WireError::Closed)));
        let mut oversize = &[0xff, 0xff, 0xff, 0x7f, 1][..];
        assert!(matches!(
            read_frame(&mut oversize, &mut buffer, 64).await,
            Err(WireError::FrameTooLarge { .. })
        ));
        let mut cut = &out[..6];
        assert!(matches!(read_frame(&mut cut, &mut buffer, 64).await, Err(WireError::Truncated)));
    }
}
