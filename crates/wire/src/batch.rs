//! A direct decoder for the message that carries the load: a `SubmitBatch` of trade reports.
//!
//! serde's derived decoding of a trade returns each nested value by move (details into the
//! action, the action into the report, the report into the instruction, the instruction into
//! the vector), a few hundred bytes copied four or five times, and goes through a visitor per
//! identifier: 320 ns a trade on the benchmark machine, half of the session threads' time in a
//! closed-loop run. This reads bincode's fixed-width layout (docs/wire-protocol.md) straight
//! into place.
//!
//! It only ever accepts: for anything it does not decode itself (another message, a give-up
//! or average-price instruction) or would refuse (a bad tag, an invalid identifier, bytes
//! missing or left over), it answers `None` and the caller decodes with serde, which gives
//! the same value or names the error exactly as before. So the bytes a server accepts and the
//! errors it sends are unchanged; `fast_decode_agrees_with_serde` checks that on valid,
//! truncated and damaged frames.

use keel_domain::{
    AccountId, Date, ExchangeId, FirmId, GroupId, InstrumentId, PositionEffect, Price, Quantity,
    ReportId, Side, Split, TenantId, TradeAction, TradeDetails, TradeReport,
};

use crate::message::{ClientMessage, Instruction, SubmitBatch};

/// bincode's variant indices, in declaration order (a reorder is a protocol change and breaks
/// the golden-bytes test first).
const SUBMIT_BATCH: u32 = 1;
const TRADE: u32 = 0;
const NEW: u32 = 0;
const AMEND: u32 = 1;
const CANCEL: u32 = 2;

/// The smallest encoded trade instruction (tag, report id of one byte, cancel with a target of
/// one byte): bounds what a claimed count may make us allocate.
const TRADE_BYTES_MIN: usize = 4 + 9 + 4 + 9;

/// Decodes `body` (a payload after its version byte) when it is a `SubmitBatch` of trade
/// reports that serde would accept; `None` otherwise.
pub(crate) fn decode_submit_batch(body: &[u8]) -> Option<ClientMessage> {
    let mut reader = Reader { bytes: body };
    if reader.u32()? != SUBMIT_BATCH {
        return None;
    }
    let batch_id = reader.u64()?;
    let tenant = reader.ident(TenantId::from_prefix)?;
    let count = usize::try_from(reader.u64()?).ok()?;
    if count > reader.bytes.len() / TRADE_BYTES_MIN {
        return None;
    }
    let mut instructions = Vec::with_capacity(count);
    for _ in 0..count {
        if reader.u32()? != TRADE {
            return None;
        }
        let report_id = reader.ident(ReportId::from_prefix)?;
        let action = match reader.u32()? {
            NEW => TradeAction::New(reader.details()?),
            AMEND => {
                let target = reader.ident(ReportId::from_prefix)?;
                TradeAction::Amend { target, details: reader.details()? }
            }
            CANCEL => TradeAction::Cancel { target: reader.ident(ReportId::from_prefix)? },
            _ => return None,
        };
        instructions.push(Instruction::Trade(TradeReport { report_id, action }));
    }
    // bincode is configured to reject trailing bytes.
    if !reader.bytes.is_empty() {
        return None;
    }
    Some(ClientMessage::SubmitBatch(SubmitBatch { batch_id, tenant, instructions }))
}

/// The bytes not yet read.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline]
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }

    #[inline]
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[byte]| byte)
    }

    #[inline]
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    #[inline]
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    #[inline]
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_le_bytes)
    }

    #[inline]
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_le_bytes)
    }

    /// An identifier: a byte string (`u64` length, then the bytes) read by `read`, the type's
    /// `from_prefix`, from the unread bytes and the length (it copies a fixed window).
    #[inline(always)]
    fn ident<T, E>(&mut self, read: impl FnOnce(&[u8], usize) -> Result<T, E>) -> Option<T> {
        let length = usize::try_from(self.u64()?).ok()?;
        if length > self.bytes.len() {
            return None;
        }
        let value = read(self.bytes, length).ok()?;
        self.bytes = &self.bytes[length..];
        Some(value)
    }

    /// `Option`: a tag byte, 0 or 1 (bincode refuses any other).
    #[inline]
    fn option<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.u8()? {
            0 => Some(None),
            1 => read(self).map(Some),
            _ => None,
        }
    }

    #[inline]
    fn details(&mut self) -> Option<TradeDetails> {
        let account = self.ident(AccountId::from_prefix)?;
        let instrument = self.ident(InstrumentId::from_prefix)?;
        let side = match self.u32()? {
            0 => Side::Buy,
            1 => Side::Sell,
            _ => return None,
        };
        let quantity = Quantity::new(self.i64()?);
        let price = Price::from_nanos(self.i64()?);
        let trade_date = Date::from_days(self.i32()?);
        let venue = self.option(|r| r.ident(ExchangeId::from_prefix))?;
        let executing_firm = self.ident(FirmId::from_prefix)?;
        let clearing_firm = self.ident(FirmId::from_prefix)?;
        let give_up_to = self.option(|r| r.ident(FirmId::from_prefix))?;
        let position_effect = match self.u32()? {
            0 => PositionEffect::Open,
            1 => PositionEffect::Close,
            _ => return None,
        };
        let average_price_group = self.option(|r| r.ident(GroupId::from_prefix))?;
        let splits = usize::try_from(self.u64()?).ok()?;
        // Each split is at least a one-byte account and a quantity.
        if splits > self.bytes.len() / (9 + 8) {
            return None;
        }
        let mut allocations = Vec::with_capacity(splits);
        for _ in 0..splits {
            let account = self.ident(AccountId::from_prefix)?;
            allocations.push(Split { account, quantity: Quantity::new(self.i64()?) });
        }
        Some(TradeDetails {
            account,
            instrument,
            side,
            quantity,
            price,
            trade_date,
            venue,
            executing_firm,
            clearing_firm,
            give_up_to,
            position_effect,
            average_price_group,
            allocations,
        })
    }
}

#[cfg(test)]
mod tests {
    use keel_domain::{GiveUpDecision, GiveUpResponse};
    use proptest::prelude::*;

    use super::*;
    use crate::codec::{decode_payload, encode_frame};

    /// Identifiers of every length the types allow, from an alphabet with every class of
    /// allowed byte.
    fn ident(max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[A-Za-z0-9._:/-]{{1,{max}}}")).expect("regex")
    }

    fn details() -> impl Strategy<Value = TradeDetails> {
        let ids = (ident(24), ident(24), ident(16), ident(16));
        let options = (
            proptest::option::of(ident(12)),
            proptest::option::of(ident(16)),
            proptest::option::of(ident(24)),
        );
        let numbers = (any::<bool>(), any::<i64>(), any::<i64>(), any::<i32>(), any::<bool>());
        let splits = proptest::collection::vec((ident(24), any::<i64>()), 0..3);
        (ids, options, numbers, splits).prop_map(
            |(
                (account, instrument, executing, clearing),
                (venue, give_up, group),
                numbers,
                splits,
            )| {
                let (buy, quantity, price, days, close) = numbers;
                TradeDetails {
                    account: account.parse().expect("account"),
                    instrument: instrument.parse().expect("instrument"),
                    side: if buy { Side::Buy } else { Side::Sell },
                    quantity: Quantity::new(quantity),
                    price: Price::from_nanos(price),
                    trade_date: Date::from_days(days),
                    venue: venue.map(|v| v.parse().expect("venue")),
                    executing_firm: executing.parse().expect("firm"),
                    clearing_firm: clearing.parse().expect("firm"),
                    give_up_to: give_up.map(|f| f.parse().expect("firm")),
                    position_effect: if close {
                        PositionEffect::Close
                    } else {
                        PositionEffect::Open
                    },
                    average_price_group: group.map(|g| g.parse().expect("group")),
                    allocations: splits
                        .into_iter()
                        .map(|(a, q)| Split {
                            account: a.parse().expect("account"),
                            quantity: Quantity::new(q),
                        })
                        .collect(),
                }
            },
        )
    }

    /// Mostly trades (all three actions), sometimes a give-up response, which only serde
    /// decodes.
    fn instruction() -> impl Strategy<Value = Instruction> {
        let report = |id: String| -> ReportId { id.parse().expect("report id") };
        prop_oneof![
            4 => (ident(32), details()).prop_map(move |(id, d)| Instruction::Trade(TradeReport { report_id: report(id), action: TradeAction::New(d) })),
            2 => (ident(32), ident(32), details()).prop_map(move |(id, t, d)| Instruction::Trade(TradeReport { report_id: report(id), action: TradeAction::Amend { target: report(t), details: d } })),
            2 => (ident(32), ident(32)).prop_map(move |(id, t)| Instruction::Trade(TradeReport { report_id: report(id), action: TradeAction::Cancel { target: report(t) } })),
            1 => (ident(32), ident(16)).prop_map(move |(id, f)| Instruction::GiveUp(GiveUpResponse { report_id: report(id.clone()), trade: report(id), firm: f.parse().expect("firm"), decision: GiveUpDecision::Reject })),
        ]
    }

    fn batch() -> impl Strategy<Value = ClientMessage> {
        (any::<u64>(), ident(32), proptest::collection::vec(instruction(), 0..6)).prop_map(
            |(batch_id, tenant, instructions)| {
                ClientMessage::SubmitBatch(SubmitBatch {
                    batch_id,
                    tenant: tenant.parse().expect("tenant"),
                    instructions,
                })
            },
        )
    }

    /// The body (after the version byte) of `message`'s frame.
    fn body(message: &ClientMessage) -> Vec<u8> {
        let mut frame = Vec::new();
        encode_frame(message, &mut frame);
        frame[5..].to_vec()
    }

    /// What serde makes of `body`.
    fn serde(body: &[u8]) -> Option<ClientMessage> {
        let mut payload = vec![crate::PROTOCOL_VERSION];
        payload.extend_from_slice(body);
        decode_payload::<ClientMessage>(&payload, u32::MAX).ok()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// On every frame, valid or damaged, the direct decoder either gives serde's value or
        /// declines; on a valid batch of trades it never declines.
        #[test]
        fn fast_decode_agrees_with_serde(
            message in batch(),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        ) {
            let bytes = body(&message);
            let only_trades = matches!(&message, ClientMessage::SubmitBatch(b) if b.instructions.iter().all(|i| matches!(i, Instruction::Trade(_))));
            match decode_submit_batch(&bytes) {
                Some(fast) => prop_assert_eq!(&fast, &message),
                None => prop_assert!(!only_trades, "declined a valid batch of trades"),
            }
            // Cut short, with a byte too many, and with bytes changed (tags, lengths, option
            // markers, identifier bytes): whatever it accepts, serde accepts as the same.
            let mut damaged = vec![bytes[..cut.index(bytes.len() + 1)].to_vec()];
            let mut longer = bytes.clone();
            longer.push(0);
            damaged.push(longer);
            let mut flipped = bytes.clone();
            for (at, mask) in flips {
                if !flipped.is_empty() {
                    let at = at.index(flipped.len());
                    flipped[at] ^= mask;
                }
            }
            damaged.push(flipped);
            for bytes in damaged {
                if let Some(fast) = decode_submit_batch(&bytes) {
                    prop_assert_eq!(Some(fast), serde(&bytes));
                }
            }
        }
    }

    /// Frames it must leave to serde, which names what is wrong (or decodes another message).
    #[test]
    fn what_it_declines() {
        let trade = |id: &str| {
            Instruction::Trade(TradeReport {
                report_id: id.parse().expect("id"),
                action: TradeAction::Cancel { target: "T".parse().expect("id") },
            })
        };
        let good = ClientMessage::SubmitBatch(SubmitBatch {
            batch_id: 7,
            tenant: "demo".parse().expect("tenant"),
            instructions: vec![trade("A"), trade("B")],
        });
        let bytes = body(&good);
        assert_eq!(decode_submit_batch(&bytes), Some(good));
        // (name, bytes, whether serde decodes them)
        let mut bad_id = bytes.clone();
        let at = bytes.windows(1).position(|w| w == b"A").expect("report id A");
        bad_id[at] = b' ';
        let mut huge_count = bytes.clone();
        huge_count[4 + 8 + 8 + 4..4 + 8 + 8 + 4 + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut bad_action = bytes.clone();
        let action = 4 + 8 + 8 + 4 + 8 + 4 + 8 + 1;
        bad_action[action..action + 4].copy_from_slice(&9u32.to_le_bytes());
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("heartbeat", body(&ClientMessage::Heartbeat), true),
            ("identifier with a space", bad_id, false),
            ("count beyond the bytes", huge_count, false),
            ("unknown action", bad_action, false),
            ("empty", Vec::new(), false),
        ];
        for (name, bytes, serde_decodes) in cases {
            assert_eq!(decode_submit_batch(&bytes), None, "{name}");
            assert_eq!(serde(&bytes).is_some(), serde_decodes, "{name}");
        }
    }
}
