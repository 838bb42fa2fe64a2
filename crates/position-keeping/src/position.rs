//! One account's position in one instrument.
//!
//! Memory layout is the point of this module: a position is its active bookings in booking
//! order, 32 bytes each, stored inline while there is one (most positions), on the heap
//! beyond, and in copy-on-write chunks once there are a thousand (`entries`). A booking's `open` field is what remains of it as an open lot, so the FIFO lots are
//! the bookings with `open > 0`, in order: there is no second copy of them. `long_head` and
//! `short_head` are the index of the first open lot of each side (0 when there is none), so FIFO
//! matching is amortized O(1) per booking. The heads are canonical (a function of the entries),
//! so equal positions compare and serialize equal however they were reached.
//!
//! A reversed booking (amend or cancel) stays in place as a tombstone (`reversed`, nothing
//! open) rather than being removed, so taking a booking out of a long position does not shift
//! every booking after it; tombstones are dropped in one pass once they are half the entries.
//! Equality and serialization see the compacted form: tombstones are never visible.
//!
//! Taking a booking out in net mode moves only the frontier between closed and open contracts
//! (`reverse_net`: FIFO pairs the k-th contract bought with the k-th sold), so amending an old
//! fill of a long position costs about what booking one does. Gross mode folds again from the
//! last flat point before the booking.

use keel_domain::{
    Amount, Canon, CanonSink, Multiplier, PositionEffect, PositionMode, Price, Quantity, Side,
};
use serde::{Deserialize, Serialize};

use crate::entries::Entries;

/// Identifies a booking within a tenant. Assigned by trade capture in booking order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BookingId(pub u64);

/// One trade's effect on one account's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    pub id: BookingId,
    pub side: Side,
    pub quantity: Quantity,
    pub price: Price,
    pub effect: PositionEffect,
}

/// An open lot: what is left of one booking that has not been closed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    pub booking: BookingId,
    pub quantity: i64,
    pub price: Price,
}

/// What a position needs to know about its account and instrument. Passed in rather than
/// stored: the engine has it at hand, and sixteen bytes per position add up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    pub mode: PositionMode,
    pub multiplier: Multiplier,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PositionError {
    #[error("booking {0:?} is not active in this position")]
    UnknownBooking(BookingId),
    #[error("booking {next:?} does not follow booking {last:?}")]
    BookingOutOfOrder { last: BookingId, next: BookingId },
    #[error("booking quantity {0} is outside 1..={max}", max = Quantity::TRADE_MAX)]
    QuantityOutOfRange(Quantity),
    #[error("realized P&L or open quantity overflows")]
    Overflow,
}

/// A booking as stored: 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    id: u64,
    price: i64,
    quantity: i32,
    /// What remains open of this booking, on its own side.
    open: i32,
    side: Side,
    effect: PositionEffect,
    /// Taken out by an amend or cancel: it counts for nothing and waits for compaction.
    /// Never serialized (serialization compacts).
    #[serde(skip)]
    reversed: bool,
}

impl Entry {
    fn booking(&self) -> Booking {
        Booking {
            id: BookingId(self.id),
            side: self.side,
            quantity: Quantity::new(i64::from(self.quantity)),
            price: Price::from_nanos(self.price),
            effect: self.effect,
        }
    }
}

/// Net, gross, lots and realized P&L of one account in one instrument.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Position {
    /// Active bookings in booking order: the position is their fold.
    entries: Entries<Entry>,
    long_head: u32,
    short_head: u32,
    long: i64,
    short: i64,
    realized: Amount,
    /// Known flat points (kept in gross mode): `(n, realized)` where the position had no open
    /// lot after its first `n` bookings. A gross-mode reversal refolds only from the last known
    /// flat point before the booking
    /// it removes, not from the first booking: for accounts that go flat (day traders, or any
    /// position closed and reopened) that bounds the work to the latest cycle. A cache: every
    /// entry is a true flat point of the current history, but not every flat point need be
    /// known (after a restore none are), so it is neither serialized nor compared.
    #[serde(skip)]
    flats: Vec<(u32, Amount)>,
    /// Entries that are tombstones (reversed bookings).
    #[serde(skip)]
    tombstones: u32,
}

/// Where a booking was placed in its position's entries when it was booked: the first place
/// a search for it looks. A booking only ever moves towards the front (compaction drops the
/// tombstones before it; a position that empties starts again at 0), so a hint is either
/// exact or a search step like any other: a read that narrows the range. It never changes an
/// outcome, only how many reads a search takes. Trade records keep one for their booking
/// (`TradeRecord::booked_at`); a cache like a position's flat points, it is not part of the
/// state: neither serialized nor compared (all hints are equal), and `NONE` after a restore.
#[derive(Debug, Clone, Copy)]
pub struct EntryHint(u32);

impl Default for EntryHint {
    fn default() -> Self {
        Self::NONE
    }
}

impl EntryHint {
    /// No hint: the search starts from the whole position.
    pub const NONE: EntryHint = EntryHint(u32::MAX);

    fn at(index: usize) -> Self {
        u32::try_from(index).map_or(Self::NONE, EntryHint)
    }

    fn index(self) -> Option<usize> {
        // (Not `self != NONE`: every hint equals every other.)
        (self.0 != Self::NONE.0).then_some(self.0 as usize)
    }
}

impl PartialEq for EntryHint {
    /// Every hint equals every other: a hint is a cache, and states that differ only in their
    /// hints are the same state.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for EntryHint {}

/// A search for one booking's place in a position, run a step at a time by
/// [`Position::search_step`]. Made for the position it searches: its bounds are that
/// position's.
#[derive(Debug, Clone, Copy)]
pub struct Search {
    id: u64,
    low: usize,
    high: usize,
    /// The first place to read, if hinted and inside the position (see [`EntryHint`]).
    guess: Option<usize>,
    interpolations: u8,
    /// Once done: the booking's index, or `None` if the position does not hold it.
    result: Option<Option<usize>>,
}

impl Search {
    pub fn new(position: &Position, id: BookingId) -> Self {
        Self::hinted(position, id, EntryHint::NONE)
    }

    /// A search that reads `hint`'s place first: one read when the booking has not moved.
    pub fn hinted(position: &Position, id: BookingId, hint: EntryHint) -> Self {
        let high = position.entries.len();
        let guess = hint.index().filter(|&at| at < high);
        Self { id: id.0, low: 0, high, guess, interpolations: 0, result: None }
    }

    /// `None` while the search goes on; then the booking's index, if the position holds it.
    pub fn result(&self) -> Option<Option<usize>> {
        self.result
    }
}

/// Tombstones are compacted away once there are this many and they are half the entries.
const TOMBSTONES_COMPACT_MIN: u32 = 32;

/// The serialized form: the compacted position's fields, in declaration order (the same bytes
/// as a derived `Serialize` of a position without tombstones).
#[derive(Serialize)]
struct PositionRepr<'a> {
    entries: LiveEntries<'a>,
    long_head: u32,
    short_head: u32,
    long: i64,
    short: i64,
    realized: Amount,
}

/// The entries that are not tombstones, as a sequence of known length (what a `SmallVec`
/// of just those entries would serialize to), without copying them.
struct LiveEntries<'a> {
    entries: &'a Entries<Entry>,
    live: usize,
}

impl Serialize for LiveEntries<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.live))?;
        for entry in self.entries.iter().filter(|entry| !entry.reversed) {
            seq.serialize_element(entry)?;
        }
        seq.end()
    }
}

impl Canon for Entry {
    #[inline]
    fn canon(&self, out: &mut Vec<u8>) {
        let Entry { id, price, quantity, open, side, effect, reversed: _ } = self;
        id.canon(out);
        price.canon(out);
        quantity.canon(out);
        open.canon(out);
        side.canon(out);
        effect.canon(out);
    }
}

impl Position {
    /// The heads renumbered as if the tombstones were gone (live entries before each head):
    /// what the compacted position would hold.
    fn canonical_heads(&self) -> (u32, u32) {
        if self.tombstones == 0 {
            return (self.long_head, self.short_head);
        }
        let live_before = |head: u32| {
            let before = self.entries.iter().take(head as usize);
            before.filter(|entry| !entry.reversed).count() as u32
        };
        (
            if self.long > 0 { live_before(self.long_head) } else { 0 },
            if self.short > 0 { live_before(self.short_head) } else { 0 },
        )
    }

    /// Loads the first booking and returns a value that depends on it: run over a few
    /// positions before encoding them, it brings their bookings (a heap array apiece, once
    /// there are two) into cache together rather than one miss at a time.
    #[inline]
    pub fn touch(&self) -> u64 {
        self.entries.get(0).map_or(0, |entry| entry.id)
    }

    /// Writes the snapshot encoding (exactly `Serialize`'s bytes), the bookings by hand
    /// (`keel_domain::canon`).
    pub fn write_canon(&self, sink: &mut impl CanonSink) {
        let (long_head, short_head) = self.canonical_heads();
        sink.len_prefix(self.entries.len() - self.tombstones as usize);
        for run in self.entries.runs() {
            if self.tombstones == 0 {
                sink.put(run);
            } else {
                // The live entries between tombstones, each stretch in one go.
                run.split(|entry| entry.reversed).for_each(|live| sink.put(live));
            }
        }
        sink.put(&long_head);
        sink.put(&short_head);
        sink.put(&self.long);
        sink.put(&self.short);
        sink.put(&self.realized);
    }
}

impl Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (long_head, short_head) = self.canonical_heads();
        PositionRepr {
            entries: LiveEntries {
                entries: &self.entries,
                live: self.entries.len() - self.tombstones as usize,
            },
            long_head,
            short_head,
            long: self.long,
            short: self.short,
            realized: self.realized,
        }
        .serialize(serializer)
    }
}

impl PartialEq for Position {
    fn eq(&self, other: &Self) -> bool {
        if self.tombstones > 0 || other.tombstones > 0 {
            return self.compacted() == other.compacted();
        }
        (&self.entries, self.long_head, self.short_head, self.long, self.short, self.realized)
            == (
                &other.entries,
                other.long_head,
                other.short_head,
                other.long,
                other.short,
                other.realized,
            )
    }
}

impl Eq for Position {}

impl Position {
    pub fn new() -> Self {
        Self::default()
    }

    /// Long minus short contracts.
    pub fn net(&self) -> i64 {
        self.long - self.short
    }

    pub fn long(&self) -> i64 {
        self.long
    }

    pub fn short(&self) -> i64 {
        self.short
    }

    /// Realized P&L in the instrument's currency (unrounded: cash rounding is settlement's).
    pub fn realized(&self) -> Amount {
        self.realized
    }

    /// Open lots of one side, oldest first.
    pub fn lots(&self, side: Side) -> impl Iterator<Item = Lot> + '_ {
        let (_, head) = self.open(side);
        self.entries.iter_from(head).filter(move |entry| entry.side == side && entry.open > 0).map(
            |entry| Lot {
                booking: BookingId(entry.id),
                quantity: i64::from(entry.open),
                price: Price::from_nanos(entry.price),
            },
        )
    }

    pub fn open_lot_count(&self) -> usize {
        self.entries.iter().filter(|entry| entry.open > 0).count()
    }

    /// Active bookings in booking order.
    pub fn bookings(&self) -> impl Iterator<Item = Booking> + '_ {
        self.entries.iter().filter(|entry| !entry.reversed).map(Entry::booking)
    }

    /// True when nothing is booked: the position can be dropped.
    pub fn is_empty(&self) -> bool {
        self.entries.len() == self.tombstones as usize
    }

    /// Reads what a booking will read (the open heads and the tail of the bookings) and
    /// returns a value that depends on it. Calling this for a batch's positions before applying
    /// the batch lets their cache misses overlap instead of stalling one booking at a time.
    #[inline]
    pub fn probe(&self) -> u64 {
        let at = |index: u32| self.entries.get(index as usize).map_or(0, |entry| entry.id);
        let last = self.entries.last().map_or(0, |entry| entry.id);
        at(self.long_head) ^ at(self.short_head) ^ last ^ self.long as u64
    }

    /// Volume-weighted open price of one side, rounded half-even to nine decimals.
    pub fn average_open_price(&self, side: Side) -> Option<Price> {
        let (cost, quantity) = self.lots(side).fold((0i128, 0i128), |(cost, quantity), lot| {
            let size = i128::from(lot.quantity);
            (cost + i128::from(lot.price.nanos()) * size, quantity + size)
        });
        if quantity == 0 {
            return None;
        }
        let average =
            keel_domain::fixed::div_round(cost, quantity, keel_domain::Rounding::HalfEven);
        i64::try_from(average).ok().map(Price::from_nanos)
    }

    /// Books one more trade effect. Booking ids must increase. On error the position is
    /// unchanged. Returns where the booking was placed, for a later reversal to look first.
    pub fn book(&mut self, terms: Terms, booking: Booking) -> Result<EntryHint, PositionError> {
        if let Some(last) = self.entries.last() {
            if last.id >= booking.id.0 {
                let last = BookingId(last.id);
                return Err(PositionError::BookingOutOfOrder { last, next: booking.id });
            }
        }
        let quantity = i32::try_from(booking.quantity.get())
            .ok()
            .filter(|q| *q > 0 && i64::from(*q) <= Quantity::TRADE_MAX.get())
            .ok_or(PositionError::QuantityOutOfRange(booking.quantity))?;
        self.entries.push(Entry {
            id: booking.id.0,
            price: booking.price.nanos(),
            quantity,
            open: 0,
            side: booking.side,
            effect: booking.effect,
            reversed: false,
        });
        let index = self.entries.len() - 1;
        if let Err(error) = self.apply(index, terms) {
            // Overflow needs amounts far beyond any listed contract; undo by folding the
            // bookings that were there before rather than paying for a copy on every trade.
            self.entries.pop();
            self.refold_from(terms, (0, Amount::ZERO))?;
            return Err(error);
        }
        if terms.mode == PositionMode::Gross {
            // Net mode reverses at the frontier (`reverse_net`) and needs no flat points.
            self.mark_if_flat();
        }
        Ok(EntryHint::at(index))
    }

    fn mark_if_flat(&mut self) {
        if self.long == 0 && self.short == 0 {
            self.flats.push((self.entries.len() as u32, self.realized));
        }
    }

    /// Takes a booking out (amend or cancel) and folds the remaining ones again, so the result
    /// is exactly the position that never saw it.
    pub fn reverse(&mut self, terms: Terms, id: BookingId) -> Result<Booking, PositionError> {
        self.reverse_hinted(terms, id, EntryHint::NONE)
    }

    /// `reverse`, the search for the booking starting at `hint` (see [`EntryHint`]).
    pub fn reverse_hinted(
        &mut self,
        terms: Terms,
        id: BookingId,
        hint: EntryHint,
    ) -> Result<Booking, PositionError> {
        let index = self
            .find(id.0, hint)
            .filter(|&index| !self.entries[index].reversed)
            .ok_or(PositionError::UnknownBooking(id))?;
        let removed = self.entries[index];
        let entry = &mut self.entries[index];
        entry.reversed = true;
        entry.open = 0;
        self.tombstones += 1;
        if self.is_empty() {
            *self = Position::default();
            return Ok(removed.booking());
        }
        if terms.mode == PositionMode::Net {
            self.reverse_net(removed, i128::from(terms.multiplier.get()))?;
        } else if removed.open == removed.quantity {
            // (No known flat point lies after it: it was open at every point since.)
            // A booking that is still wholly open closed nothing when it was booked, and FIFO
            // never reached it since (every later close stopped at an older lot), so nothing
            // else depends on it: taking it out only removes its own lot.
            self.take_open(removed.side, i64::from(removed.open));
        } else {
            // The flat point at or before the removed booking still holds; everything after it
            // is folded again.
            let keep = self.flats.partition_point(|(n, _)| *n as usize <= index);
            self.flats.truncate(keep);
            let start = self.flats.last().copied().unwrap_or((0, Amount::ZERO));
            self.refold_from(terms, start)?;
        }
        if self.tombstones >= TOMBSTONES_COMPACT_MIN
            && self.tombstones as usize * 2 >= self.entries.len()
        {
            *self = self.compacted();
        }
        Ok(removed.booking())
    }

    /// Net mode: takes out `removed` (already a tombstone with nothing open; this is its copy
    /// from before) by moving the frontier between closed and open contracts, not by folding
    /// the bookings after it again.
    ///
    /// Why it can: in net mode FIFO pairs the k-th contract bought with the k-th contract sold.
    /// (Both sides' contracts are closed in order, and only one side is ever open, so each
    /// close takes the next contract of each side.) The closed contracts are the first
    /// `min(bought, sold)` of each side and the rest of the larger side is open, oldest lot
    /// first; realized P&L is the closed sells' value less the closed buys', times the
    /// multiplier. Taking a booking out removes its contracts from its side: its open ones
    /// simply go; its closed ones are replaced by the oldest open ones of its side; if its side
    /// has too few open, the other side has that many closed contracts too many, and its newest
    /// closed ones open again. Each step works at the frontier, so a cancel costs the bookings
    /// the frontier crosses, however long the position: amending an old trade in a house
    /// account of a hundred thousand fills used to fold all of them again (since the last flat
    /// point, which in a position that hovers around flat without touching it is far back).
    fn reverse_net(&mut self, removed: Entry, multiplier: i128) -> Result<(), PositionError> {
        let side = removed.side;
        if removed.open > 0 {
            self.take_open(side, i64::from(removed.open));
        }
        let closed = removed.quantity - removed.open;
        if closed == 0 {
            return Ok(());
        }
        // Change in the value (price x contracts) of each side's closed contracts.
        let (refilled, refilled_value) = self.close_oldest(side, closed);
        let own = refilled_value - i128::from(removed.price) * i128::from(closed);
        let (reopened, reopened_value) = self.reopen_newest(side.opposite(), closed - refilled)?;
        debug_assert_eq!(refilled + reopened, closed, "invariant: the sides close equally");
        let other = -reopened_value;
        let (sold, bought) = match side {
            Side::Sell => (own, other),
            Side::Buy => (other, own),
        };
        let pnl = (sold - bought).checked_mul(multiplier).ok_or(PositionError::Overflow)?;
        let realized = self.realized.nanos().checked_add(pnl).ok_or(PositionError::Overflow)?;
        self.realized = Amount::from_nanos(realized);
        Ok(())
    }

    /// Closes up to `wanted` of `side`'s open contracts, oldest first, against nothing (the
    /// matching contracts are already closed): returns how many and their value.
    fn close_oldest(&mut self, side: Side, wanted: i32) -> (i32, i128) {
        let (open, mut index) = self.open(side);
        if open == 0 {
            return (0, 0);
        }
        let (mut taken, mut value) = (0, 0i128);
        while taken < wanted && index < self.entries.len() {
            let candidate = &self.entries[index];
            if candidate.side == side && candidate.open > 0 {
                let lot = &mut self.entries[index];
                let take = (wanted - taken).min(lot.open);
                lot.open -= take;
                value += i128::from(lot.price) * i128::from(take);
                taken += take;
            }
            index += 1;
        }
        self.take_open(side, i64::from(taken));
        (taken, value)
    }

    /// Opens `wanted` of `side`'s closed contracts again, newest first (the side has no open
    /// contracts, or its oldest open lot is where its closed contracts end): returns how many
    /// and their value.
    fn reopen_newest(&mut self, side: Side, wanted: i32) -> Result<(i32, i128), PositionError> {
        if wanted == 0 {
            return Ok((0, 0));
        }
        let mut index = match self.open(side) {
            (0, _) => self.entries.len(),
            (_, head) => head + 1,
        };
        let (mut given, mut value, mut first) = (0, 0i128, None);
        while given < wanted && index > 0 {
            index -= 1;
            let candidate = &self.entries[index];
            if candidate.side == side && !candidate.reversed && candidate.open < candidate.quantity
            {
                let lot = &mut self.entries[index];
                let give = (wanted - given).min(lot.quantity - lot.open);
                lot.open += give;
                value += i128::from(lot.price) * i128::from(give);
                given += give;
                first = Some(index as u32);
            }
        }
        let (total, head) = self.open_mut(side);
        if let Some(first) = first {
            *head = first;
        }
        *total = total.checked_add(i64::from(given)).ok_or(PositionError::Overflow)?;
        Ok((given, value))
    }

    /// Open contracts of `side` and the index of its first open lot (0 when there is none).
    fn open(&self, side: Side) -> (i64, usize) {
        match side {
            Side::Buy => (self.long, self.long_head as usize),
            Side::Sell => (self.short, self.short_head as usize),
        }
    }

    /// `open`, for writing.
    fn open_mut(&mut self, side: Side) -> (&mut i64, &mut u32) {
        match side {
            Side::Buy => (&mut self.long, &mut self.long_head),
            Side::Sell => (&mut self.short, &mut self.short_head),
        }
    }

    /// The index of booking `id`, looking first where `hint` says it was booked. Booking ids
    /// increase through the tenant's history, so in a long position they are spread about
    /// evenly: without a hint (or past a stale one) a few interpolation steps land next to the
    /// entry where a binary search would take a cache miss per halving of a multi-megabyte
    /// array; a binary search finishes whatever range is left.
    fn find(&self, id: u64, hint: EntryHint) -> Option<usize> {
        let mut search = Search::hinted(self, BookingId(id), hint);
        loop {
            self.search_step(&mut search);
            if let Some(found) = search.result() {
                return found;
            }
        }
    }

    /// One step of `search` (see [`Position::find`]): the hinted place first, if any, then an
    /// interpolation while the range is long (at most four), then a halving. Returns the id of
    /// the booking it read (0 once done), a value that depends on that read. `Engine::probe`
    /// runs a batch's searches a step at a time in lockstep, so that each round's reads, one
    /// per search, overlap their misses.
    #[inline]
    pub fn search_step(&self, search: &mut Search) -> u64 {
        if search.result.is_some() {
            return 0;
        }
        let (low, high) = (search.low, search.high);
        if low >= high {
            search.result = Some(None);
            return 0;
        }
        let at = if let Some(guess) = search.guess.take().filter(|at| (low..high).contains(at)) {
            guess
        } else if search.interpolations < 4 && high - low > 16 {
            search.interpolations += 1;
            match self.interpolate(search.id, low, high) {
                Some(guess) => guess,
                None => {
                    search.result = Some(None);
                    return 0;
                }
            }
        } else {
            low + (high - low) / 2
        };
        let seen = self.entries[at].id;
        match seen.cmp(&search.id) {
            std::cmp::Ordering::Equal => search.result = Some(Some(at)),
            std::cmp::Ordering::Less => search.low = at + 1,
            std::cmp::Ordering::Greater => search.high = at,
        }
        seen
    }

    /// Where in `[low, high)` booking `id` would be if the ids in it were evenly spread, or
    /// `None` if `id` is outside their range.
    #[inline]
    fn interpolate(&self, id: u64, low: usize, high: usize) -> Option<usize> {
        let (first, last) = (self.entries[low].id, self.entries[high - 1].id);
        if id < first || id > last {
            return None;
        }
        let span = u128::from(last - first).max(1);
        let offset = u128::from(id - first) * (high - 1 - low) as u128 / span;
        Some(low + offset as usize)
    }

    /// The same position without tombstones: the live entries (their open quantities are
    /// unchanged, tombstones held nothing), heads and flat points renumbered.
    fn compacted(&self) -> Position {
        let mut entries = Entries::with_capacity(self.entries.len() - self.tombstones as usize);
        let mut flats = Vec::with_capacity(self.flats.len());
        let mut pending_flats = self.flats.iter().peekable();
        let (mut long_head, mut short_head) = (0, 0);
        for (index, entry) in self.entries.iter().enumerate() {
            let renumbered = entries.len() as u32;
            while let Some(&&(n, realized)) = pending_flats.peek() {
                if n as usize > index {
                    break;
                }
                flats.push((renumbered, realized));
                pending_flats.next();
            }
            if self.long > 0 && index == self.long_head as usize {
                long_head = renumbered;
            }
            if self.short > 0 && index == self.short_head as usize {
                short_head = renumbered;
            }
            if !entry.reversed {
                entries.push(*entry);
            }
        }
        let live = entries.len() as u32;
        flats.extend(pending_flats.map(|&(_, realized)| (live, realized)));
        flats.dedup_by_key(|(n, _)| *n);
        Position {
            entries,
            long_head,
            short_head,
            long: self.long,
            short: self.short,
            realized: self.realized,
            flats,
            tombstones: 0,
        }
    }

    /// Recomputes lots, quantities and realized P&L from the active bookings.
    /// Folds the bookings from flat point `(n, realized)` on: the first `n` bookings hold no
    /// open lot there, so the rest is folded on an empty book. Flat points after `n` are found
    /// again on the way.
    fn refold_from(
        &mut self,
        terms: Terms,
        (start, realized): (u32, Amount),
    ) -> Result<(), PositionError> {
        debug_assert!(
            self.entries.iter().take(start as usize).all(|entry| entry.open == 0),
            "invariant: nothing is open at a flat point"
        );
        self.flats.retain(|(n, _)| *n <= start);
        (self.long_head, self.short_head, self.long, self.short) = (0, 0, 0, 0);
        self.realized = realized;
        for index in start as usize..self.entries.len() {
            if self.entries[index].reversed {
                continue;
            }
            self.apply(index, terms)?;
            if self.long == 0 && self.short == 0 {
                self.flats.push((index as u32 + 1, self.realized));
            }
        }
        Ok(())
    }

    /// Applies the booking at `index` against the lots of the bookings before it.
    fn apply(&mut self, index: usize, terms: Terms) -> Result<(), PositionError> {
        let closes = match terms.mode {
            PositionMode::Net => true,
            PositionMode::Gross => self.entries[index].effect == PositionEffect::Close,
        };
        let mut remaining = self.entries[index].quantity;
        if closes {
            remaining = self.close_opposite(index, i128::from(terms.multiplier.get()))?;
        }
        let entry = &mut self.entries[index];
        entry.open = remaining;
        if remaining > 0 {
            let side = entry.side;
            let (total, head) = self.open_mut(side);
            if *total == 0 {
                *head = index as u32;
            }
            *total = total.checked_add(i64::from(remaining)).ok_or(PositionError::Overflow)?;
        }
        Ok(())
    }

    /// Removes `quantity` open contracts of `side`, keeping the head canonical: the index of
    /// the first open lot of that side, or 0 when there is none.
    fn take_open(&mut self, side: Side, quantity: i64) {
        let (total, head) = self.open_mut(side);
        *total -= quantity;
        if *total == 0 {
            *head = 0;
            return;
        }
        let mut index = *head as usize;
        while index < self.entries.len()
            && !(self.entries[index].side == side && self.entries[index].open > 0)
        {
            index += 1;
        }
        *self.open_mut(side).1 = index as u32;
    }

    /// Closes lots of the other side first-in first-out against the booking at `index`;
    /// returns the quantity left over.
    fn close_opposite(&mut self, index: usize, multiplier: i128) -> Result<i32, PositionError> {
        let Entry { side, price, quantity, .. } = self.entries[index];
        let opposite = side.opposite();
        let (open_opposite, mut head) = self.open(opposite);
        if open_opposite == 0 {
            return Ok(quantity);
        }
        let mut remaining = quantity;
        let mut realized = self.realized.nanos();
        while remaining > 0 && head < index {
            // Skipped entries are only read: a write to a chunked position's entry checks
            // its chunk's sharing (an atomic operation) first.
            let candidate = &self.entries[head];
            if candidate.side != opposite || candidate.open == 0 {
                head += 1;
                continue;
            }
            let lot = &mut self.entries[head];
            let matched = remaining.min(lot.open);
            // A closing sell earns (sell - open); a closing buy earns (open - buy).
            let per_unit = match side {
                Side::Sell => i128::from(price) - i128::from(lot.price),
                Side::Buy => i128::from(lot.price) - i128::from(price),
            };
            let pnl = per_unit
                .checked_mul(i128::from(matched) * multiplier)
                .ok_or(PositionError::Overflow)?;
            realized = realized.checked_add(pnl).ok_or(PositionError::Overflow)?;
            lot.open -= matched;
            remaining -= matched;
            if lot.open == 0 {
                head += 1;
            }
        }
        *self.open_mut(opposite).1 = head as u32;
        self.take_open(opposite, i64::from(quantity - remaining));
        self.realized = Amount::from_nanos(realized);
        Ok(remaining)
    }
}

#[cfg(test)]
mod tests;
