//! Exact decimal quantities as integer fixed point: prices, quantities, multipliers, money.
//!
//! Prices and money carry nine decimal places (`SCALE` units per whole). That is exact for every
//! listed tick in use (1/256 of a point needs eight) and keeps a price in an `i64` and any
//! notional in an `i128`. Only products that make sense exist: `Price::value(quantity,
//! multiplier) -> Amount`; there is no `Price * Price`. Rounding is explicit and named.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Decimal places carried by `Price` and `Amount`.
pub const SCALE_DECIMALS: u32 = 9;
/// Units per whole for `Price` and `Amount`.
pub const SCALE: i64 = 1_000_000_000;

/// Why a decimal string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecimalError {
    #[error("{0:?} is not a decimal number")]
    Syntax(String),
    #[error("{0:?} has more than {max} decimal places", max = SCALE_DECIMALS)]
    TooPrecise(String),
    #[error("{0:?} is out of range")]
    OutOfRange(String),
}

/// Parses `[-+]digits[.digits]` into an integer scaled by 10^`decimals`, exactly.
pub fn parse_scaled(text: &str, decimals: u32) -> Result<i128, DecimalError> {
    let syntax = || DecimalError::Syntax(text.to_owned());
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = body.split_once('.').unwrap_or((body, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(syntax());
    }
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits_ok(whole) || !digits_ok(fraction) {
        return Err(syntax());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > decimals as usize {
        return Err(DecimalError::TooPrecise(text.to_owned()));
    }
    let range = || DecimalError::OutOfRange(text.to_owned());
    let mut value: i128 = 0;
    for byte in whole.bytes().chain(fraction.bytes()) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(byte - b'0')))
            .ok_or_else(range)?;
    }
    let pad = decimals - fraction.len() as u32;
    value = value.checked_mul(10i128.pow(pad)).ok_or_else(range)?;
    Ok(if negative { -value } else { value })
}

/// Writes `value / 10^decimals` with the fewest decimal places that are exact, but at least
/// `min_decimals`.
pub fn format_scaled(
    f: &mut fmt::Formatter<'_>,
    value: i128,
    decimals: u32,
    min_decimals: u32,
) -> fmt::Result {
    let unit = 10u128.pow(decimals);
    let magnitude = value.unsigned_abs();
    let (whole, mut fraction) = (magnitude / unit, magnitude % unit);
    let mut places = decimals;
    while places > min_decimals && fraction % 10 == 0 {
        fraction /= 10;
        places -= 1;
    }
    let sign = if value < 0 { "-" } else { "" };
    if places == 0 {
        write!(f, "{sign}{whole}")
    } else {
        write!(f, "{sign}{whole}.{fraction:0width$}", width = places as usize)
    }
}

/// How a value that falls between two representable values is rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rounding {
    /// Half away from zero: 0.5 -> 1, -0.5 -> -1. Clearing houses' usual rule for cash.
    HalfAwayFromZero,
    /// Half to even ("banker's rounding"): 0.5 -> 0, 1.5 -> 2.
    HalfEven,
}

/// `numerator / denominator` rounded to an integer by `mode`. `denominator` must be positive.
pub fn div_round(numerator: i128, denominator: i128, mode: Rounding) -> i128 {
    debug_assert!(denominator > 0, "invariant: rounding divides by a positive number");
    let quotient = numerator.div_euclid(denominator);
    let remainder = numerator.rem_euclid(denominator);
    // Compare 2 * remainder with the denominator without overflowing.
    let twice = remainder * 2;
    match twice.cmp(&denominator) {
        std::cmp::Ordering::Less => quotient,
        std::cmp::Ordering::Greater => quotient + 1,
        std::cmp::Ordering::Equal => match mode {
            // Exactly half: quotient is the floor, so the value is quotient + 0.5.
            Rounding::HalfAwayFromZero if numerator < 0 => quotient,
            Rounding::HalfAwayFromZero => quotient + 1,
            Rounding::HalfEven if quotient % 2 == 0 => quotient,
            Rounding::HalfEven => quotient + 1,
        },
    }
}

/// A price per unit of an instrument, in `1/SCALE` of the quote currency. Futures prices may be
/// zero or negative (crude oil did trade below zero in April 2020); option premiums may not.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Price(i64);

impl Price {
    pub const ZERO: Price = Price(0);

    pub const fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    pub const fn nanos(self) -> i64 {
        self.0
    }

    /// Parses a decimal string exactly (`"5000.25"`, `"-37.63"`, `"110.015625"`).
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        let value = parse_scaled(text, SCALE_DECIMALS)?;
        i64::try_from(value).map(Self).map_err(|_| DecimalError::OutOfRange(text.to_owned()))
    }

    /// True when the price is a whole number of `tick`s. A non-positive tick accepts anything.
    pub fn is_on_tick(self, tick: Price) -> bool {
        tick.0 <= 0 || self.0 % tick.0 == 0
    }

    /// Rounds to `decimals` places (at most `SCALE_DECIMALS`).
    pub fn round_to_decimals(self, decimals: u32, mode: Rounding) -> Price {
        let step = 10i128.pow(SCALE_DECIMALS - decimals.min(SCALE_DECIMALS));
        let rounded = div_round(i128::from(self.0), step, mode) * step;
        // Rounding to fewer places moves the value by less than one step, which stays in range
        // for every price accepted by `parse`, whose magnitude is below i64::MAX / 10.
        Price(i64::try_from(rounded).unwrap_or(self.0))
    }

    /// The cash value of `quantity` contracts at this price: price x quantity x multiplier.
    /// `None` on overflow, which the limits on price, quantity and multiplier make unreachable
    /// for validated input.
    #[inline]
    pub fn value(self, quantity: Quantity, multiplier: Multiplier) -> Option<Amount> {
        i128::from(self.0)
            .checked_mul(i128::from(quantity.0))?
            .checked_mul(i128::from(multiplier.0))
            .map(Amount)
    }

    pub fn checked_sub(self, other: Price) -> Option<Price> {
        self.0.checked_sub(other.0).map(Price)
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_scaled(f, i128::from(self.0), SCALE_DECIMALS, 0)
    }
}

impl fmt::Debug for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Price({self})")
    }
}

/// A number of contracts. Trades carry a positive quantity; positions are signed (long > 0).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Quantity(i64);

impl Quantity {
    pub const ZERO: Quantity = Quantity(0);
    /// Largest quantity one trade report may carry.
    pub const TRADE_MAX: Quantity = Quantity(100_000_000);

    pub const fn new(contracts: i64) -> Self {
        Self(contracts)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        let value = parse_scaled(text, 0)?;
        i64::try_from(value).map(Self).map_err(|_| DecimalError::OutOfRange(text.to_owned()))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quantity({})", self.0)
    }
}

/// Currency amount per one point of price for one contract (ES: 50, CL: 1,000). Whole numbers
/// cover every listed contract we know of; a fractional one would need this type widened.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Multiplier(i64);

impl Multiplier {
    /// Largest accepted multiplier (KOSPI 200 is 250,000; JGB mini 100,000).
    pub const MAX: i64 = 100_000_000;

    pub fn new_checked(value: i64) -> Option<Self> {
        (1..=Self::MAX).contains(&value).then_some(Self(value))
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Debug for Multiplier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Multiplier({})", self.0)
    }
}

/// An ISO 4217 currency code.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");
    pub const EUR: Currency = Currency(*b"EUR");
    pub const GBP: Currency = Currency(*b"GBP");
    pub const JPY: Currency = Currency(*b"JPY");

    /// Three upper-case letters.
    pub fn new_checked(code: &str) -> Option<Self> {
        let bytes: [u8; 3] = code.as_bytes().try_into().ok()?;
        bytes.iter().all(u8::is_ascii_uppercase).then_some(Self(bytes))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Decimal places of the currency's smallest unit of cash (ISO 4217 minor units).
    pub fn minor_units(self) -> u32 {
        match &self.0 {
            b"JPY" | b"KRW" | b"CLP" | b"ISK" | b"VND" => 0,
            b"BHD" | b"KWD" | b"OMR" | b"JOD" | b"TND" => 3,
            _ => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

/// A signed amount of cash in `1/SCALE` of a currency unit. The currency travels beside it
/// (a position's P&L is always in its instrument's currency).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Amount(i128);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub const fn from_nanos(nanos: i128) -> Self {
        Self(nanos)
    }

    pub const fn nanos(self) -> i128 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        parse_scaled(text, SCALE_DECIMALS).map(Self)
    }

    #[inline]
    #[track_caller]
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    #[inline]
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// Rounds to the currency's smallest unit of cash.
    pub fn round_cash(self, currency: Currency, mode: Rounding) -> Amount {
        let step = 10i128.pow(SCALE_DECIMALS - currency.minor_units());
        Amount(div_round(self.0, step, mode) * step)
    }

    /// A formatter that prints the amount with the currency's minor units at least.
    pub fn display_in(self, currency: Currency) -> impl fmt::Display {
        struct Shown(i128, u32);
        impl fmt::Display for Shown {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                format_scaled(f, self.0, SCALE_DECIMALS, self.1)
            }
        }
        Shown(self.0, currency.minor_units())
    }
}

impl std::ops::Neg for Amount {
    type Output = Amount;
    fn neg(self) -> Amount {
        Amount(-self.0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_scaled(f, self.0, SCALE_DECIMALS, 0)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prices_parse_exactly() {
        let cases: &[(&str, Result<i64, &str>)] = &[
            ("5000.25", Ok(5_000_250_000_000)),
            ("0.015625", Ok(15_625_000)),
            ("-37.63", Ok(-37_630_000_000)),
            ("+1", Ok(1_000_000_000)),
            ("1.", Ok(1_000_000_000)),
            (".5", Ok(500_000_000)),
            ("1.0000000001", Err("more than 9 decimal places")),
            ("1.1234567890", Ok(1_123_456_789)),
            ("", Err("not a decimal")),
            ("-", Err("not a decimal")),
            ("1e5", Err("not a decimal")),
            ("1,5", Err("not a decimal")),
            ("99999999999", Err("out of range")),
        ];
        for (text, expected) in cases {
            match (Price::parse(text), expected) {
                (Ok(price), Ok(nanos)) => assert_eq!(price.nanos(), *nanos, "{text}"),
                (Err(error), Err(fragment)) => {
                    assert!(error.to_string().contains(fragment), "{text}: {error}")
                }
                (got, want) => panic!("{text}: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn prices_display_minimal_decimals() {
        for text in ["5000.25", "5000", "-37.63", "0.015625", "0.000000001"] {
            assert_eq!(Price::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn tick_checks() {
        let tick = Price::parse("0.25").unwrap();
        let cases = [("5000.25", true), ("5000.5", true), ("5000.1", false), ("-0.25", true)];
        for (text, on_tick) in cases {
            assert_eq!(Price::parse(text).unwrap().is_on_tick(tick), on_tick, "{text}");
        }
        let tick = Price::parse("0.015625").unwrap();
        assert!(Price::parse("110.515625").unwrap().is_on_tick(tick));
        assert!(!Price::parse("110.5156").unwrap().is_on_tick(tick));
    }

    #[test]
    fn rounding_rules() {
        let cases = [
            (5, 10, Rounding::HalfAwayFromZero, 1),
            (-5, 10, Rounding::HalfAwayFromZero, -1),
            (5, 10, Rounding::HalfEven, 0),
            (15, 10, Rounding::HalfEven, 2),
            (-15, 10, Rounding::HalfEven, -2),
            (-25, 10, Rounding::HalfEven, -2),
            (14, 10, Rounding::HalfAwayFromZero, 1),
            (-14, 10, Rounding::HalfAwayFromZero, -1),
            (-16, 10, Rounding::HalfAwayFromZero, -2),
        ];
        for (numerator, denominator, mode, expected) in cases {
            assert_eq!(
                div_round(numerator, denominator, mode),
                expected,
                "{numerator}/{denominator} {mode:?}"
            );
        }
    }

    #[test]
    fn cash_rounds_to_minor_units() {
        let amount = Amount::parse("1234.5651").unwrap();
        let usd = amount.round_cash(Currency::USD, Rounding::HalfAwayFromZero);
        assert_eq!(usd.display_in(Currency::USD).to_string(), "1234.57");
        let jpy = amount.round_cash(Currency::JPY, Rounding::HalfAwayFromZero);
        assert_eq!(jpy.display_in(Currency::JPY).to_string(), "1235");
        assert_eq!(Amount::parse("12").unwrap().display_in(Currency::USD).to_string(), "12.00");
    }

    #[test]
    fn value_is_price_times_quantity_times_multiplier() {
        let price = Price::parse("5000.25").unwrap();
        let value = price.value(Quantity::new(3), Multiplier::new_checked(50).unwrap()).unwrap();
        assert_eq!(value, Amount::parse("750037.5").unwrap());
    }

    proptest! {
        #[test]
        fn price_text_round_trips(nanos in -9_000_000_000_000_000_000i64..9_000_000_000_000_000_000i64) {
            let price = Price::from_nanos(nanos);
            prop_assert_eq!(Price::parse(&price.to_string()).unwrap(), price);
        }
    }
}
