//! Value dates. Cash from a business date's end of day settles on the next weekday (exchange
//! holidays are not modelled yet).

use keel_domain::Date;

/// Monday = 0 ... Sunday = 6. 1970-01-01 was a Thursday.
pub fn weekday(date: Date) -> u32 {
    (date.days() + 3).rem_euclid(7) as u32
}

/// The next weekday after `date`.
pub fn next_weekday(date: Date) -> Date {
    let next = date.add_days(1);
    match weekday(next) {
        5 => next.add_days(2),
        6 => next.add_days(1),
        _ => next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_dates_skip_weekends() {
        let cases = [
            ("2026-11-27", "2026-11-30"),
            ("2026-11-26", "2026-11-27"),
            ("2026-11-28", "2026-11-30"),
            ("2026-11-29", "2026-11-30"),
        ];
        for (business, value) in cases {
            assert_eq!(next_weekday(Date::parse(business).unwrap()).to_string(), value);
        }
        assert_eq!(weekday(Date::parse("2026-11-27").unwrap()), 4, "a Friday");
    }
}
