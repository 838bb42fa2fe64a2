//! Calendar dates (trade dates, business dates, expiries) as days since 1970-01-01.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A proleptic Gregorian calendar date, stored as days since 1970-01-01 so that comparisons
/// and day arithmetic are integer operations. Text form is ISO 8601 `YYYY-MM-DD`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Date(i32);

/// Why a date string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a date of the form YYYY-MM-DD between 1900 and 2199")]
pub struct DateError(pub String);

impl Date {
    pub const fn from_days(days: i32) -> Self {
        Self(days)
    }

    pub const fn days(self) -> i32 {
        self.0
    }

    /// A date from its year, month and day, validated (1900..=2199).
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        if !(1900..=2199).contains(&year) || !(1..=12).contains(&month) {
            return None;
        }
        if day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Self(days_from_civil(year, month, day)))
    }

    pub fn parse(text: &str) -> Result<Self, DateError> {
        let error = || DateError(text.to_owned());
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(error());
        }
        let number = |range: std::ops::Range<usize>| -> Result<u32, DateError> {
            let part = &text[range];
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(error());
            }
            part.parse().map_err(|_| error())
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        Self::from_ymd(year as i32, month, day).ok_or_else(error)
    }

    /// (year, month, day).
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }

    pub fn add_days(self, days: i32) -> Self {
        Self(self.0 + days)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = self.ymd();
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Date({self})")
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil calendar algorithms (public domain), shifted so that March is the
// first month of the computational year and leap days fall at its end.
fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year as i32;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i32::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_and_print() {
        let cases: &[(&str, Option<i32>)] = &[
            ("1970-01-01", Some(0)),
            ("2026-11-27", Some(20_784)),
            ("2000-02-29", Some(11_016)),
            ("2100-02-29", None),
            ("2026-13-01", None),
            ("2026-00-10", None),
            ("2026-04-31", None),
            ("26-11-27", None),
            ("2026/11/27", None),
            ("2026-1a-27", None),
            ("1899-12-31", None),
        ];
        for (text, days) in cases {
            match (Date::parse(text), days) {
                (Ok(date), Some(days)) => {
                    assert_eq!(date.days(), *days, "{text}");
                    assert_eq!(date.to_string(), *text);
                }
                (Err(_), None) => {}
                (got, want) => panic!("{text}: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn every_day_round_trips_through_civil_form() {
        for days in
            Date::parse("1900-01-01").unwrap().days()..Date::parse("2199-12-31").unwrap().days()
        {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(Date::from_ymd(year, month, day).map(Date::days), Some(days));
        }
    }
}
