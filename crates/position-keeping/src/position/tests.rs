use super::*;
use proptest::prelude::*;

fn price(text: &str) -> Price {
    Price::parse(text).unwrap()
}

fn booking(
    id: u64,
    side: Side,
    quantity: i64,
    price_text: &str,
    effect: PositionEffect,
) -> Booking {
    Booking {
        id: BookingId(id),
        side,
        quantity: Quantity::new(quantity),
        price: price(price_text),
        effect,
    }
}

use PositionEffect::{Close, Open};
use Side::{Buy, Sell};

struct Case {
    name: &'static str,
    mode: PositionMode,
    trades: &'static [(Side, i64, &'static str, PositionEffect)],
    long: i64,
    short: i64,
    realized: &'static str,
    long_lots: &'static [(i64, &'static str)],
    short_lots: &'static [(i64, &'static str)],
}

#[test]
fn worked_examples() {
    let cases = [
        Case {
            name: "open long",
            mode: PositionMode::Net,
            trades: &[(Buy, 3, "5000.25", Open)],
            long: 3,
            short: 0,
            realized: "0",
            long_lots: &[(3, "5000.25")],
            short_lots: &[],
        },
        Case {
            name: "fifo partial close realizes against the oldest lot",
            mode: PositionMode::Net,
            trades: &[(Buy, 2, "100", Open), (Buy, 2, "101", Open), (Sell, 3, "102", Open)],
            long: 1,
            short: 0,
            // (102-100)*2*50 + (102-101)*1*50 = 250
            realized: "250",
            long_lots: &[(1, "101")],
            short_lots: &[],
        },
        Case {
            name: "net account flips from long to short",
            mode: PositionMode::Net,
            trades: &[(Buy, 2, "100", Open), (Sell, 5, "99.5", Open)],
            long: 0,
            short: 3,
            realized: "-50",
            long_lots: &[],
            short_lots: &[(3, "99.5")],
        },
        Case {
            name: "closing a short with a buy",
            mode: PositionMode::Net,
            trades: &[(Sell, 4, "100", Open), (Buy, 4, "98.75", Close)],
            long: 0,
            short: 0,
            realized: "250",
            long_lots: &[],
            short_lots: &[],
        },
        Case {
            name: "gross account keeps both sides open",
            mode: PositionMode::Gross,
            trades: &[(Buy, 2, "100", Open), (Sell, 1, "101", Open)],
            long: 2,
            short: 1,
            realized: "0",
            long_lots: &[(2, "100")],
            short_lots: &[(1, "101")],
        },
        Case {
            name: "gross close closes the opposite side first in first out",
            mode: PositionMode::Gross,
            trades: &[
                (Buy, 2, "100", Open),
                (Buy, 1, "103", Open),
                (Sell, 1, "101", Open),
                (Sell, 2, "104", Close),
            ],
            long: 1,
            short: 1,
            realized: "400",
            long_lots: &[(1, "103")],
            short_lots: &[(1, "101")],
        },
        Case {
            name: "gross close beyond the open quantity opens the remainder",
            mode: PositionMode::Gross,
            trades: &[(Buy, 1, "100", Open), (Sell, 3, "100.5", Close)],
            long: 0,
            short: 2,
            realized: "25",
            long_lots: &[],
            short_lots: &[(2, "100.5")],
        },
    ];
    let multiplier = Multiplier::new_checked(50).unwrap();
    for case in cases {
        let terms = Terms { mode: case.mode, multiplier };
        let mut position = Position::new();
        for (index, (side, quantity, price_text, effect)) in case.trades.iter().enumerate() {
            position
                .book(terms, booking(index as u64 + 1, *side, *quantity, price_text, *effect))
                .unwrap();
        }
        assert_eq!((position.long(), position.short()), (case.long, case.short), "{}", case.name);
        assert_eq!(position.net(), case.long - case.short, "{}", case.name);
        assert_eq!(position.realized(), Amount::parse(case.realized).unwrap(), "{}", case.name);
        let lots = |side| position.lots(side).map(|l| (l.quantity, l.price)).collect::<Vec<_>>();
        let expect =
            |lots: &[(i64, &str)]| lots.iter().map(|(q, p)| (*q, price(p))).collect::<Vec<_>>();
        assert_eq!(lots(Buy), expect(case.long_lots), "{}", case.name);
        assert_eq!(lots(Sell), expect(case.short_lots), "{}", case.name);
    }
}

#[test]
fn average_open_price_is_volume_weighted() {
    let terms = Terms { mode: PositionMode::Net, multiplier: Multiplier::new_checked(10).unwrap() };
    let mut position = Position::new();
    position.book(terms, booking(1, Buy, 1, "100", Open)).unwrap();
    position.book(terms, booking(2, Buy, 2, "101", Open)).unwrap();
    assert_eq!(position.average_open_price(Buy), Some(Price::from_nanos(100_666_666_667)));
    assert_eq!(position.average_open_price(Sell), None);
}

#[test]
fn cancel_reverses_realized_pnl() {
    let terms =
        Terms { mode: PositionMode::Net, multiplier: Multiplier::new_checked(1000).unwrap() };
    let mut position = Position::new();
    position.book(terms, booking(1, Buy, 5, "70.10", Open)).unwrap();
    position.book(terms, booking(2, Sell, 2, "71.00", Open)).unwrap();
    position.book(terms, booking(3, Buy, 1, "69.00", Open)).unwrap();
    assert_eq!(position.realized(), Amount::parse("1800").unwrap());
    position.reverse(terms, BookingId(2)).unwrap();
    assert_eq!(position.realized(), Amount::ZERO);
    assert_eq!(position.net(), 6);
    let first_lot = position.lots(Buy).next().unwrap();
    assert_eq!((first_lot.booking, first_lot.quantity), (BookingId(1), 5));
}

#[test]
fn reverse_and_order_errors() {
    let terms = Terms { mode: PositionMode::Net, multiplier: Multiplier::new_checked(1).unwrap() };
    let mut position = Position::new();
    position.book(terms, booking(5, Buy, 1, "1", Open)).unwrap();
    assert_eq!(
        position.book(terms, booking(5, Buy, 1, "1", Open)),
        Err(PositionError::BookingOutOfOrder { last: BookingId(5), next: BookingId(5) })
    );
    assert_eq!(
        position.reverse(terms, BookingId(4)),
        Err(PositionError::UnknownBooking(BookingId(4)))
    );
    assert_eq!(
        position.book(terms, booking(6, Buy, 0, "1", Open)),
        Err(PositionError::QuantityOutOfRange(Quantity::new(0)))
    );
    assert_eq!(position.net(), 1);
}

#[test]
fn overflow_leaves_the_position_unchanged() {
    let terms = Terms {
        mode: PositionMode::Net,
        multiplier: Multiplier::new_checked(Multiplier::MAX).unwrap(),
    };
    let mut position = Position::new();
    let huge = Price::from_nanos(i64::MAX);
    let max = Quantity::TRADE_MAX;
    let open = Booking { id: BookingId(1), side: Sell, quantity: max, price: huge, effect: Open };
    position.book(terms, open).unwrap();
    let mut id = 2;
    let mut failed = false;
    for _ in 0..10_000 {
        let before = position.clone();
        let close = Booking {
            id: BookingId(id),
            side: Buy,
            quantity: max,
            price: Price::from_nanos(i64::MIN),
            effect: Open,
        };
        id += 1;
        if position.book(terms, close).is_err() {
            assert_eq!(position, before);
            failed = true;
            break;
        }
        position
            .book(
                terms,
                Booking { id: BookingId(id), side: Sell, quantity: max, price: huge, effect: Open },
            )
            .unwrap();
        id += 1;
    }
    assert!(
        failed,
        "realized P&L should overflow i128 well before 10,000 round trips of this size"
    );
}

fn arbitrary_bookings() -> impl Strategy<Value = Vec<Booking>> {
    prop::collection::vec((any::<bool>(), 1i64..20, 90i64..110, any::<bool>()), 1..40).prop_map(
        |rows| {
            rows.into_iter()
                .enumerate()
                .map(|(index, (buy, quantity, whole, close))| Booking {
                    id: BookingId(index as u64 + 1),
                    side: if buy { Buy } else { Sell },
                    quantity: Quantity::new(quantity),
                    price: Price::from_nanos(whole * 250_000_000),
                    effect: if close { Close } else { Open },
                })
                .collect()
        },
    )
}

fn terms(mode: PositionMode) -> Terms {
    Terms { mode, multiplier: Multiplier::new_checked(25).unwrap() }
}

fn fold(mode: PositionMode, bookings: &[Booking]) -> Position {
    let mut position = Position::new();
    for booking in bookings {
        position.book(terms(mode), *booking).unwrap();
    }
    position
}

proptest! {
    /// Cash conservation: at any mark, realized P&L plus the open lots marked to it equals every
    /// booking marked to it. Holds in both modes, whatever the matching.
    #[test]
    fn realized_plus_open_equals_all_trades_marked(bookings in arbitrary_bookings(), gross in any::<bool>(), mark in 80i64..120) {
        let mode = if gross { PositionMode::Gross } else { PositionMode::Net };
        let position = fold(mode, &bookings);
        let mark = i128::from(mark) * 1_000_000_000;
        let all: i128 = bookings.iter().map(|b| (mark - i128::from(b.price.nanos())) * i128::from(b.quantity.get() * b.side.sign())).sum();
        let open: i128 = position.lots(Buy).map(|l| (mark - i128::from(l.price.nanos())) * i128::from(l.quantity)).sum::<i128>()
            - position.lots(Sell).map(|l| (mark - i128::from(l.price.nanos())) * i128::from(l.quantity)).sum::<i128>();
        prop_assert_eq!(position.realized().nanos() + open * 25, all * 25);
        let signed: i64 = bookings.iter().map(|b| b.quantity.get() * b.side.sign()).sum();
        prop_assert_eq!(position.net(), signed);
        prop_assert_eq!(position.long(), position.lots(Buy).map(|l| l.quantity).sum::<i64>());
        prop_assert_eq!(position.short(), position.lots(Sell).map(|l| l.quantity).sum::<i64>());
        if mode == PositionMode::Net {
            prop_assert!(position.long() == 0 || position.short() == 0);
        }
    }

    /// Reversing any booking gives exactly the position that never had it.
    #[test]
    fn reverse_equals_never_booked(bookings in arbitrary_bookings(), gross in any::<bool>(), pick in any::<prop::sample::Index>()) {
        let mode = if gross { PositionMode::Gross } else { PositionMode::Net };
        let mut position = fold(mode, &bookings);
        let removed = bookings[pick.index(bookings.len())];
        position.reverse(terms(mode), removed.id).unwrap();
        let rest: Vec<Booking> = bookings.iter().copied().filter(|b| b.id != removed.id).collect();
        prop_assert_eq!(position, fold(mode, &rest));
    }
}

/// Bookings interleaved with reversals of earlier live bookings: `(side, quantity, price,
/// close, reverse)`, where `reverse` picks a live booking to take out instead of booking.
fn arbitrary_history(
) -> impl Strategy<Value = Vec<(bool, i64, i64, bool, Option<prop::sample::Index>)>> {
    let step = (
        any::<bool>(),
        1i64..20,
        90i64..110,
        any::<bool>(),
        prop::option::weighted(0.45, any::<prop::sample::Index>()),
    );
    prop::collection::vec(step, 1..300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Long histories with many amends and cancels (enough for tombstones to be compacted away,
    /// some more than once): after every step the position equals, and serializes to the same
    /// bytes as, the fold of the bookings still live; reversing a booking twice is refused.
    /// Reversals look first where `book` said each booking was placed, as the engine's do: a
    /// hint that compaction or an emptied position made stale changes nothing.
    #[test]
    fn reversals_with_tombstones_equal_the_fold_of_the_survivors(history in arbitrary_history(), gross in any::<bool>()) {
        let mode = if gross { PositionMode::Gross } else { PositionMode::Net };
        let mut position = Position::new();
        let mut live: Vec<Booking> = Vec::new();
        let mut hints: Vec<EntryHint> = Vec::new();
        let mut reversed = Vec::new();
        for (index, (buy, quantity, whole, close, reverse)) in history.into_iter().enumerate() {
            match reverse {
                Some(pick) if !live.is_empty() => {
                    let at = pick.index(live.len());
                    let (removed, hint) = (live.remove(at), hints.remove(at));
                    prop_assert_eq!(position.reverse_hinted(terms(mode), removed.id, hint).unwrap(), removed);
                    reversed.push((removed.id, hint));
                }
                _ => {
                    let booking = Booking {
                        id: BookingId(index as u64 + 1),
                        side: if buy { Buy } else { Sell },
                        quantity: Quantity::new(quantity),
                        price: Price::from_nanos(whole * 250_000_000),
                        effect: if close { Close } else { Open },
                    };
                    hints.push(position.book(terms(mode), booking).unwrap());
                    live.push(booking);
                }
            }
            let expected = fold(mode, &live);
            prop_assert_eq!(&position, &expected);
            prop_assert_eq!(bincode::serialize(&position).unwrap(), bincode::serialize(&expected).unwrap());
            prop_assert_eq!(position.lots(Buy).collect::<Vec<_>>(), expected.lots(Buy).collect::<Vec<_>>());
            prop_assert_eq!(position.lots(Sell).collect::<Vec<_>>(), expected.lots(Sell).collect::<Vec<_>>());
            prop_assert_eq!(position.bookings().collect::<Vec<_>>(), live.clone());
            prop_assert_eq!(position.is_empty(), live.is_empty());
        }
        for (id, hint) in reversed {
            prop_assert_eq!(position.reverse(terms(mode), id), Err(PositionError::UnknownBooking(id)));
            prop_assert_eq!(position.reverse_hinted(terms(mode), id, hint), Err(PositionError::UnknownBooking(id)));
        }
    }
}

/// `find` (interpolation, then binary search) on evenly and unevenly spread booking ids, for
/// every id present and for ids between, below and above them.
#[test]
fn find_locates_every_booking_however_ids_are_spread() {
    let spreads: [(&str, Vec<u64>); 5] = [
        ("consecutive", (1..=1_000).collect()),
        ("strided", (1..=1_000).map(|n| n * 7).collect()),
        ("clustered", (1..=500).chain(1_000_000..1_000_500).collect()),
        ("geometric", (0..60).map(|n| 1_u64 << n).collect()),
        ("short", vec![5, 9, 12]),
    ];
    for (name, ids) in spreads {
        let mut position = Position::new();
        for &id in &ids {
            let booking = Booking {
                id: BookingId(id),
                side: Buy,
                quantity: Quantity::new(1),
                price: price("100"),
                effect: Open,
            };
            position.book(terms(PositionMode::Net), booking).unwrap();
        }
        // Run a step at a time (as the batch probe runs them): the same answer, in at most
        // four interpolations and a binary search of what is left; on evenly spread ids the
        // first step reads the booking itself.
        let stepped = |id: u64| {
            let mut search = Search::new(&position, BookingId(id));
            let (mut steps, mut first) = (0, None);
            while search.result().is_none() {
                let seen = position.search_step(&mut search);
                first.get_or_insert(seen);
                steps += 1;
            }
            assert!(steps <= 4 + 2 + ids.len().ilog2(), "{name}: {steps} steps for id {id}");
            (search.result().unwrap(), first.unwrap_or(0))
        };
        let evenly = matches!(name, "consecutive" | "strided");
        let len = ids.len();
        for (index, &id) in ids.iter().enumerate() {
            assert_eq!(position.find(id, EntryHint::NONE), Some(index), "{name}: id {id}");
            // A hint of the booking's own place is one read; any other hint (stale, as after a
            // compaction, or past the end) is a read that narrows the range like any step.
            let mut hinted = Search::hinted(&position, BookingId(id), EntryHint::at(index));
            assert_eq!(position.search_step(&mut hinted), id, "{name}: id {id}, hinted");
            assert_eq!(hinted.result(), Some(Some(index)), "{name}: id {id}, one hinted read");
            for hint in [0, len - 1, index / 2, (index + 1).min(len - 1), len, len + 7, usize::MAX]
            {
                let hint = EntryHint::at(hint);
                assert_eq!(position.find(id, hint), Some(index), "{name}: id {id}, hint {hint:?}");
                assert_eq!(
                    position.find(id + 1, hint),
                    ids.contains(&(id + 1)).then_some(index + 1)
                );
            }
            let (found, first) = stepped(id);
            assert_eq!(found, Some(index), "{name}: id {id}, stepped");
            assert!(!evenly || first == id, "{name}: id {id} first read {first}");
            if !ids.contains(&(id + 1)) {
                let absent = position.find(id + 1, EntryHint::NONE);
                assert_eq!(absent, None, "{name}: id {} is absent", id + 1);
                assert_eq!(stepped(id + 1).0, None, "{name}: id {} is absent, stepped", id + 1);
            }
        }
        assert_eq!(position.find(0, EntryHint::NONE), None, "{name}: below");
        assert_eq!(position.find(u64::MAX, EntryHint::NONE), None, "{name}: above");
        assert_eq!(position.find(0, EntryHint::at(0)), None, "{name}: below, hinted");
    }
    let empty = Position::new();
    let mut search = Search::new(&empty, BookingId(1));
    assert_eq!(empty.search_step(&mut search), 0);
    assert_eq!(search.result(), Some(None), "an empty position holds nothing");
}

/// A position past a chunk of bookings keeps them in copy-on-write chunks: booking, FIFO
/// closing and reversal (with compaction) still equal the fold of the live bookings, byte for
/// byte, and a copy taken mid-way (as a snapshot image takes one) keeps its state while the
/// original goes on.
#[test]
fn large_positions_fold_the_same_and_copies_stay_frozen() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    for mode in [PositionMode::Net, PositionMode::Gross] {
        let mut position = Position::new();
        let mut live: Vec<Booking> = Vec::new();
        let mut frozen: Option<(Position, Vec<Booking>)> = None;
        for step in 0..6_000u64 {
            if next(10) < 3 && !live.is_empty() {
                let removed = live.remove(next(live.len() as u64) as usize);
                assert_eq!(position.reverse(terms(mode), removed.id).expect("reverse"), removed);
            } else {
                let booking = Booking {
                    id: BookingId(step + 1),
                    side: if next(2) == 0 { Buy } else { Sell },
                    quantity: Quantity::new(1 + next(20) as i64),
                    price: Price::from_nanos((90 + next(20) as i64) * 250_000_000),
                    effect: if next(2) == 0 { Close } else { Open },
                };
                position.book(terms(mode), booking).expect("book");
                live.push(booking);
            }
            if step == 3_000 {
                frozen = Some((position.clone(), live.clone()));
            }
            if step % 1_000 == 999 {
                let expected = fold(mode, &live);
                assert_eq!(position, expected, "{mode:?} at step {step}");
                assert_eq!(
                    bincode::serialize(&position).expect("encode"),
                    bincode::serialize(&expected).expect("encode")
                );
            }
        }
        assert!(matches!(position.entries, Entries::Large(_)), "{mode:?} grew past a chunk");
        let (copy, live_then) = frozen.expect("taken");
        assert_eq!(copy, fold(mode, &live_then), "{mode:?}: the copy kept its state");
        assert_eq!(position, fold(mode, &live));
    }
}
