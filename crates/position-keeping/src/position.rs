//! One account's position in one instrument.

use std::collections::VecDeque;

use keel_domain::{Amount, Multiplier, PositionEffect, PositionMode, Price, Quantity, Side};
use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PositionError {
    #[error("booking {0:?} is not active in this position")]
    UnknownBooking(BookingId),
    #[error("booking {next:?} does not follow booking {last:?}")]
    BookingOutOfOrder { last: BookingId, next: BookingId },
    #[error("realized P&L or open cost overflows")]
    Overflow,
}

/// Net, gross, lots and realized P&L of one account in one instrument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    mode: PositionMode,
    multiplier: Multiplier,
    /// Active bookings in booking order: the position is their fold.
    bookings: Vec<Booking>,
    long_lots: VecDeque<Lot>,
    short_lots: VecDeque<Lot>,
    long_quantity: i64,
    short_quantity: i64,
    /// Sum of price x quantity over open lots, for the average open price.
    long_cost: i128,
    short_cost: i128,
    realized: Amount,
}

impl Position {
    pub fn new(mode: PositionMode, multiplier: Multiplier) -> Self {
        Self {
            mode,
            multiplier,
            bookings: Vec::new(),
            long_lots: VecDeque::new(),
            short_lots: VecDeque::new(),
            long_quantity: 0,
            short_quantity: 0,
            long_cost: 0,
            short_cost: 0,
            realized: Amount::ZERO,
        }
    }

    /// Long minus short contracts.
    pub fn net(&self) -> i64 {
        self.long_quantity - self.short_quantity
    }

    pub fn long(&self) -> i64 {
        self.long_quantity
    }

    pub fn short(&self) -> i64 {
        self.short_quantity
    }

    /// Realized P&L in the instrument's currency (unrounded: cash rounding is settlement's).
    pub fn realized(&self) -> Amount {
        self.realized
    }

    pub fn long_lots(&self) -> &VecDeque<Lot> {
        &self.long_lots
    }

    pub fn short_lots(&self) -> &VecDeque<Lot> {
        &self.short_lots
    }

    pub fn bookings(&self) -> &[Booking] {
        &self.bookings
    }

    pub fn mode(&self) -> PositionMode {
        self.mode
    }

    pub fn multiplier(&self) -> Multiplier {
        self.multiplier
    }

    /// True when nothing is booked: the position can be dropped.
    pub fn is_empty(&self) -> bool {
        self.bookings.is_empty()
    }

    /// Volume-weighted open price of one side, rounded half-even to nine decimals.
    pub fn average_open_price(&self, side: Side) -> Option<Price> {
        let (cost, quantity) = match side {
            Side::Buy => (self.long_cost, self.long_quantity),
            Side::Sell => (self.short_cost, self.short_quantity),
        };
        if quantity == 0 {
            return None;
        }
        let average = keel_domain::fixed::div_round(
            cost,
            i128::from(quantity),
            keel_domain::Rounding::HalfEven,
        );
        i64::try_from(average).ok().map(Price::from_nanos)
    }

    /// Books one more trade effect. Booking ids must increase. On error the position is
    /// unchanged.
    pub fn book(&mut self, booking: Booking) -> Result<(), PositionError> {
        if let Some(last) = self.bookings.last() {
            if last.id >= booking.id {
                return Err(PositionError::BookingOutOfOrder { last: last.id, next: booking.id });
            }
        }
        match self.apply(&booking) {
            Ok(()) => {
                self.bookings.push(booking);
                Ok(())
            }
            Err(error) => {
                // Overflow needs amounts far beyond any listed contract; undo by folding the
                // bookings that were there before rather than paying for a copy on every trade.
                self.refold()?;
                Err(error)
            }
        }
    }

    /// Takes a booking out (amend or cancel) and folds the remaining ones again, so the result
    /// is exactly the position that never saw it.
    pub fn reverse(&mut self, id: BookingId) -> Result<Booking, PositionError> {
        let index = self
            .bookings
            .binary_search_by_key(&id, |booking| booking.id)
            .map_err(|_| PositionError::UnknownBooking(id))?;
        let removed = self.bookings.remove(index);
        self.refold()?;
        Ok(removed)
    }

    /// Recomputes lots, quantities and realized P&L from the active bookings.
    fn refold(&mut self) -> Result<(), PositionError> {
        let bookings = std::mem::take(&mut self.bookings);
        let mut rebuilt = Position::new(self.mode, self.multiplier);
        let result = bookings.iter().try_for_each(|booking| rebuilt.apply(booking));
        rebuilt.bookings = bookings;
        *self = rebuilt;
        result
    }

    fn apply(&mut self, booking: &Booking) -> Result<(), PositionError> {
        let mut remaining = booking.quantity.get();
        debug_assert!(remaining > 0, "invariant: bookings carry a positive quantity");
        let closes = match self.mode {
            PositionMode::Net => true,
            PositionMode::Gross => booking.effect == PositionEffect::Close,
        };
        if closes {
            remaining = self.close_opposite(booking, remaining)?;
        }
        if remaining > 0 {
            self.open(booking, remaining)?;
        }
        Ok(())
    }

    fn open(&mut self, booking: &Booking, quantity: i64) -> Result<(), PositionError> {
        let cost = i128::from(booking.price.nanos()) * i128::from(quantity);
        let lot = Lot { booking: booking.id, quantity, price: booking.price };
        let (lots, total, open_cost) = match booking.side {
            Side::Buy => (&mut self.long_lots, &mut self.long_quantity, &mut self.long_cost),
            Side::Sell => (&mut self.short_lots, &mut self.short_quantity, &mut self.short_cost),
        };
        *open_cost = open_cost.checked_add(cost).ok_or(PositionError::Overflow)?;
        *total = total.checked_add(quantity).ok_or(PositionError::Overflow)?;
        lots.push_back(lot);
        Ok(())
    }

    /// Closes lots of the other side first-in first-out; returns the quantity left over.
    fn close_opposite(
        &mut self,
        booking: &Booking,
        mut remaining: i64,
    ) -> Result<i64, PositionError> {
        let (lots, total, open_cost) = match booking.side {
            Side::Buy => (&mut self.short_lots, &mut self.short_quantity, &mut self.short_cost),
            Side::Sell => (&mut self.long_lots, &mut self.long_quantity, &mut self.long_cost),
        };
        let multiplier = i128::from(self.multiplier.get());
        let mut realized = self.realized.nanos();
        while remaining > 0 {
            let Some(lot) = lots.front_mut() else { break };
            let matched = remaining.min(lot.quantity);
            // A closing sell earns (sell - open); a closing buy earns (open - buy).
            let per_unit = match booking.side {
                Side::Sell => i128::from(booking.price.nanos()) - i128::from(lot.price.nanos()),
                Side::Buy => i128::from(lot.price.nanos()) - i128::from(booking.price.nanos()),
            };
            let pnl = per_unit
                .checked_mul(i128::from(matched))
                .and_then(|v| v.checked_mul(multiplier))
                .ok_or(PositionError::Overflow)?;
            realized = realized.checked_add(pnl).ok_or(PositionError::Overflow)?;
            *open_cost -= i128::from(lot.price.nanos()) * i128::from(matched);
            *total -= matched;
            lot.quantity -= matched;
            remaining -= matched;
            if lot.quantity == 0 {
                lots.pop_front();
            }
        }
        self.realized = Amount::from_nanos(realized);
        Ok(remaining)
    }
}

#[cfg(test)]
mod tests;
