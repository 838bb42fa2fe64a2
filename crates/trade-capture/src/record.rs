//! What capture remembers: one record per trade, one entry per accepted report id, one record
//! per average-price group.

use keel_domain::{Date, GroupId, PositionEffect, Price, Quantity, Side};
use keel_position_keeping::{BookingId, EntryHint};
use serde::{Deserialize, Serialize};

use crate::reference::{AccountKey, FirmKey, InstrumentKey, VenueKey};

/// Index of a trade in booking order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TradeKey(pub u32);

/// Index of an average-price group in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupKey(pub u32);

/// One booking a trade holds: which account's position it sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub account: AccountKey,
    pub booking: BookingId,
    pub quantity: Quantity,
}

/// Where a trade is booked: one booking in the trade's account, or split across allocation
/// accounts (the splits live in `Capture`'s split table, keyed by trade, to keep this small).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    None,
    Single(BookingId),
    Split,
}

/// Trade lifecycle. Transitions (capture.rs): new -> Active or PendingGiveUp; PendingGiveUp ->
/// Active (accepted, moved; or rejected, stays); Active -> Active (amend); Active -> Cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TradeStatus {
    Active,
    PendingGiveUp {
        to: FirmKey,
    },
    /// Taken up by another firm: final for the executing side.
    GivenUp {
        from: AccountKey,
    },
    Cancelled,
}

/// A trade as booked now (after any amendments). Its trade id (the report id of the `New`
/// that created it) is the key that finds it in `Capture`'s report table. Kept to 80 bytes:
/// firms and venues are interned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeRecord {
    /// Account on the report (the allocating account for split trades).
    pub account: AccountKey,
    pub instrument: InstrumentKey,
    pub side: Side,
    pub quantity: Quantity,
    pub price: Price,
    pub trade_date: Date,
    pub effect: PositionEffect,
    pub executing_firm: FirmKey,
    pub venue: Option<VenueKey>,
    pub group: Option<GroupKey>,
    /// 1 for the original, +1 per amendment.
    pub version: u32,
    pub status: TradeStatus,
    pub placement: Placement,
    /// Where a `Placement::Single` booking sits in its position's entries, as far as known: a
    /// cache for its reversal's search, not state (see `EntryHint`). Fits the record's padding.
    #[serde(skip)]
    pub booked_at: EntryHint,
}

// Trade records are most of a tenant's memory: the booking hint had to fit the padding.
const _: () = assert!(std::mem::size_of::<TradeRecord>() == 80);

/// What kind of instruction a report id was accepted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportKind {
    New,
    Amend,
    Cancel,
    GiveUp,
    AveragePrice,
}

/// Fills booked to a holding account under one group id, until allocated at their average price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub id: GroupId,
    pub account: AccountKey,
    pub instrument: InstrumentKey,
    pub side: Side,
    /// Active fills in booking order.
    pub fills: Vec<TradeKey>,
    pub allocation: Option<GroupAllocation>,
}

/// The result of allocating a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupAllocation {
    pub average_price: Price,
    pub quantity: Quantity,
    /// Booking that takes the fills out of the holding account.
    pub holding: Placed,
    pub splits: Vec<Placed>,
    pub residual_account: AccountKey,
    pub residual: keel_domain::Amount,
}

/// The snapshot encoding by hand (see `keel_domain::canon`): trade records are most of a
/// tenant's state. Destructured, so that a new field does not compile until it is encoded.
mod canon {
    use keel_domain::canon::{variant, Canon};

    use super::{GroupKey, Placement, ReportKind, TradeKey, TradeRecord, TradeStatus};
    use crate::reference::{AccountKey, FirmKey, InstrumentKey, VenueKey};

    macro_rules! canon_newtype {
        ($($t:ty),*) => {$(
            impl Canon for $t {
                #[inline]
                fn canon(&self, out: &mut Vec<u8>) {
                    self.0.canon(out);
                }
            }
        )*};
    }

    canon_newtype!(TradeKey, AccountKey, InstrumentKey, FirmKey, VenueKey, GroupKey);

    impl Canon for TradeStatus {
        #[inline]
        fn canon(&self, out: &mut Vec<u8>) {
            match self {
                TradeStatus::Active => variant(0, out),
                TradeStatus::PendingGiveUp { to } => {
                    variant(1, out);
                    to.canon(out);
                }
                TradeStatus::GivenUp { from } => {
                    variant(2, out);
                    from.canon(out);
                }
                TradeStatus::Cancelled => variant(3, out),
            }
        }
    }

    impl Canon for Placement {
        #[inline]
        fn canon(&self, out: &mut Vec<u8>) {
            match self {
                Placement::None => variant(0, out),
                Placement::Single(booking) => {
                    variant(1, out);
                    booking.0.canon(out);
                }
                Placement::Split => variant(2, out),
            }
        }
    }

    impl Canon for ReportKind {
        #[inline]
        fn canon(&self, out: &mut Vec<u8>) {
            variant(
                match self {
                    ReportKind::New => 0,
                    ReportKind::Amend => 1,
                    ReportKind::Cancel => 2,
                    ReportKind::GiveUp => 3,
                    ReportKind::AveragePrice => 4,
                },
                out,
            );
        }
    }

    impl Canon for TradeRecord {
        #[inline]
        fn canon(&self, out: &mut Vec<u8>) {
            let TradeRecord {
                account,
                instrument,
                side,
                quantity,
                price,
                trade_date,
                effect,
                executing_firm,
                venue,
                group,
                version,
                status,
                placement,
                booked_at: _,
            } = self;
            account.canon(out);
            instrument.canon(out);
            side.canon(out);
            quantity.canon(out);
            price.canon(out);
            trade_date.canon(out);
            effect.canon(out);
            executing_firm.canon(out);
            venue.canon(out);
            group.canon(out);
            version.canon(out);
            status.canon(out);
            placement.canon(out);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use keel_domain::{Date, PositionEffect, Price, Quantity, Side};
        use keel_position_keeping::{BookingId, EntryHint};
        use proptest::prelude::*;

        fn bincode_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
            use bincode::Options;
            let options =
                bincode::DefaultOptions::new().with_fixint_encoding().with_little_endian();
            options.serialize(value).unwrap()
        }

        fn status(pick: u8, key: u32) -> TradeStatus {
            match pick % 4 {
                0 => TradeStatus::Active,
                1 => TradeStatus::PendingGiveUp { to: FirmKey(key) },
                2 => TradeStatus::GivenUp { from: AccountKey(key) },
                _ => TradeStatus::Cancelled,
            }
        }

        fn placement(pick: u8, booking: u64) -> Placement {
            match pick % 3 {
                0 => Placement::None,
                1 => Placement::Single(BookingId(booking)),
                _ => Placement::Split,
            }
        }

        proptest! {
            #[test]
            fn trade_records_encode_as_bincode_does(
                keys in any::<(u32, u32, u32)>(),
                numbers in any::<(i64, i64, i32, u32, u64)>(),
                picks in any::<(bool, bool, u8, u8)>(),
                venue in any::<Option<u16>>(),
                group in any::<Option<u32>>(),
            ) {
                let record = TradeRecord {
                    account: AccountKey(keys.0),
                    instrument: InstrumentKey(keys.1),
                    side: if picks.0 { Side::Buy } else { Side::Sell },
                    quantity: Quantity::new(numbers.0),
                    price: Price::from_nanos(numbers.1),
                    trade_date: Date::from_days(numbers.2),
                    effect: if picks.1 { PositionEffect::Open } else { PositionEffect::Close },
                    executing_firm: FirmKey(keys.2),
                    venue: venue.map(VenueKey),
                    group: group.map(GroupKey),
                    version: numbers.3,
                    status: status(picks.2, keys.0),
                    placement: placement(picks.3, numbers.4),
                    booked_at: EntryHint::NONE,
                };
                let mut ours = Vec::new();
                record.canon(&mut ours);
                prop_assert_eq!(ours, bincode_bytes(&record));
            }

            #[test]
            fn report_kinds_and_trade_keys_encode_as_bincode_does(pick in 0u8..5, key in any::<u32>()) {
                let kind = [ReportKind::New, ReportKind::Amend, ReportKind::Cancel, ReportKind::GiveUp, ReportKind::AveragePrice][pick as usize];
                let mut ours = Vec::new();
                kind.canon(&mut ours);
                TradeKey(key).canon(&mut ours);
                prop_assert_eq!(ours, bincode_bytes(&(kind, TradeKey(key))));
            }
        }
    }
}
