//! Property tests of the engine's invariants (proptest).
#![allow(clippy::unwrap_used, reason = "tests: a failed setup should fail loudly")]

mod support;

use keel_domain::{Multiplier, PositionMode, Side};
use keel_engine::{Command, Engine, Outcome};
use keel_position_keeping::{Booking, BookingId, Position, Terms};
use proptest::prelude::*;
use support::*;

/// (account index, instrument index, buy, quantity, price in ticks from the base).
type Row = (usize, usize, bool, i64, i64);

fn rows() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec(
        (0..ACCOUNT_IDS.len(), 0..INSTRUMENT_IDS.len(), any::<bool>(), 1i64..50, -40i64..40),
        1..120,
    )
}

fn side(buy: bool) -> Side {
    if buy {
        Side::Buy
    } else {
        Side::Sell
    }
}

fn trades(rows: &[Row]) -> Vec<Command> {
    rows.iter()
        .enumerate()
        .map(|(i, &(account, instrument, buy, quantity, ticks))| {
            new_trade(
                &format!("T{i}"),
                details(ACCOUNT_IDS[account], instrument, side(buy), quantity, ticks),
            )
        })
        .collect()
}

/// The fold of the accepted trades per (account, instrument), computed directly.
fn folded(rows: &[Row]) -> Summary {
    let engine = engine_with(&[]);
    let mut positions: std::collections::BTreeMap<(String, String), Position> = Default::default();
    for (i, &(account, instrument, buy, quantity, ticks)) in rows.iter().enumerate() {
        let d = details(ACCOUNT_IDS[account], instrument, side(buy), quantity, ticks);
        let mode =
            if ACCOUNT_IDS[account] == "G1" { PositionMode::Gross } else { PositionMode::Net };
        let multiplier = engine.capture().reference().instruments()[instrument].multiplier;
        let terms = Terms { mode, multiplier: Multiplier::new_checked(multiplier.get()).unwrap() };
        let position =
            positions.entry((d.account.to_string(), d.instrument.to_string())).or_default();
        position
            .book(
                terms,
                Booking {
                    id: BookingId(i as u64 + 1),
                    side: d.side,
                    quantity: d.quantity,
                    price: d.price,
                    effect: d.position_effect,
                },
            )
            .unwrap();
    }
    positions
        .into_iter()
        .map(|((account, instrument), p)| {
            let lots = p
                .lots(Side::Buy)
                .map(|l| (l.quantity, l.price.nanos()))
                .chain(p.lots(Side::Sell).map(|l| (-l.quantity, l.price.nanos())))
                .collect();
            (account, instrument, p.long(), p.short(), p.realized().nanos(), lots)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Positions equal the fold of the accepted trades, whatever the interleaving of accounts.
    #[test]
    fn positions_equal_the_fold_of_trades_in_any_account_order(rows in rows(), seed in any::<u64>()) {
        let engine = engine_with(&trades(&rows));
        prop_assert_eq!(summary(&engine), folded(&rows));

        // Interleave accounts differently, keeping each account's own order.
        let mut by_account: Vec<Vec<Command>> = vec![Vec::new(); ACCOUNT_IDS.len()];
        for (command, row) in trades(&rows).into_iter().zip(&rows) {
            by_account[row.0].push(command);
        }
        let mut state = seed | 1;
        let mut interleaved = Vec::new();
        while by_account.iter().any(|queue| !queue.is_empty()) {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            let queue = (state as usize) % by_account.len();
            if !by_account[queue].is_empty() {
                interleaved.push(by_account[queue].remove(0));
            }
        }
        prop_assert_eq!(summary(&engine_with(&interleaved)), summary(&engine));
    }

    /// Amending a trade and then cancelling it leaves positions and realized P&L as if it had
    /// never been booked.
    #[test]
    fn amend_then_cancel_equals_never_booked(rows in rows(), pick in any::<prop::sample::Index>(), amended in (0..ACCOUNT_IDS.len(), 0..INSTRUMENT_IDS.len(), any::<bool>(), 1i64..50, -40i64..40)) {
        let target = pick.index(rows.len());
        let mut commands = trades(&rows);
        let (account, instrument, buy, quantity, ticks) = amended;
        commands.push(amend("AMD", &format!("T{target}"), details(ACCOUNT_IDS[account], instrument, side(buy), quantity, ticks)));
        commands.push(cancel("CXL", &format!("T{target}")));
        let with = engine_with(&commands);
        let without_rows: Vec<Row> = rows.iter().enumerate().filter(|(i, _)| *i != target).map(|(_, r)| *r).collect();
        prop_assert_eq!(summary(&with), summary(&engine_with(&trades(&without_rows))));
    }

    /// A resubmitted report is a duplicate answered with its original sequence, and changes
    /// nothing.
    #[test]
    fn resubmitted_duplicate_changes_nothing(rows in rows(), pick in any::<prop::sample::Index>()) {
        let commands = trades(&rows);
        let mut engine = engine_with(&commands);
        let capture_before = engine.capture().clone();
        let positions_before = summary(&engine);
        let index = pick.index(commands.len());
        let outcome = run(&mut engine, &[commands[index].clone()]).remove(0);
        let setup = setup_commands().len() as u64;
        prop_assert_eq!(outcome, Outcome::Duplicate { sequence: setup + index as u64 + 1 });
        prop_assert_eq!(summary(&engine), positions_before);
        prop_assert_eq!(format!("{:?}", engine.capture()), format!("{capture_before:?}"));
    }

    /// Snapshot then restore reproduces the state hash, and the restored engine goes on exactly
    /// like the original.
    #[test]
    fn snapshot_restore_same_hash(rows in rows(), split in any::<prop::sample::Index>()) {
        let commands = trades(&rows);
        let at = split.index(commands.len());
        let mut original = engine_with(&commands[..at]);
        let mut restored = Engine::restore(original.tenant(), &original.snapshot()).unwrap();
        prop_assert_eq!(restored.state_hash(), original.state_hash());
        run(&mut original, &commands[at..]);
        run(&mut restored, &commands[at..]);
        prop_assert_eq!(restored.state_hash(), original.state_hash());
    }

    /// Two replays of one command list give the same hash; a different list a different one.
    #[test]
    fn replay_gives_the_same_hash(rows in rows()) {
        let commands = trades(&rows);
        let first = engine_with(&commands);
        let second = engine_with(&commands);
        prop_assert_eq!(first.state_hash(), second.state_hash());
        let shorter = engine_with(&commands[..commands.len() - 1]);
        prop_assert_ne!(first.state_hash(), shorter.state_hash());
    }

    /// An image taken mid-stream keeps the state it was taken at while the engine goes on: its
    /// snapshot is byte for byte that of an engine that stopped there, and the engine's own
    /// state is unaffected by the sharing. Later commands amend and cancel earlier trades, so
    /// they write into chunks the image shares. Rows repeat to span several chunks. A second
    /// image is consumed on another thread (`write_snapshot_into`, which lets its chunks go as
    /// it encodes them) while the engine writes: the same bytes.
    #[test]
    fn an_image_is_frozen_while_the_engine_goes_on(
        rows in rows(),
        split in any::<prop::sample::Index>(),
        repeat in 1usize..6,
    ) {
        let rows: Vec<Row> = rows.iter().cycle().take(rows.len() * repeat * 5).copied().collect();
        let commands = trades(&rows);
        let at = split.index(commands.len());
        let mut later: Vec<Command> = commands[at..].to_vec();
        for (n, &(account, instrument, buy, quantity, ticks)) in rows[..at].iter().enumerate().step_by(7) {
            let target = format!("T{n}");
            later.push(if n % 2 == 0 {
                cancel(&format!("C{n}"), &target)
            } else {
                let details = details(ACCOUNT_IDS[account], instrument, side(!buy), quantity, ticks);
                amend(&format!("M{n}"), &target, details)
            });
        }
        let mut engine = engine_with(&commands[..at]);
        let image = engine.image();
        let drained = engine.image();
        let drain = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            drained.write_snapshot_into(&mut bytes).unwrap();
            bytes
        });
        run(&mut engine, &later);
        let drained_bytes = drain.join().unwrap();
        let stopped = engine_with(&commands[..at]);
        prop_assert!(drained_bytes == stopped.snapshot(), "the consumed image wrote the same bytes");
        let mut image_bytes = Vec::new();
        image.write_snapshot_to(&mut image_bytes).unwrap();
        prop_assert!(image_bytes == stopped.snapshot(), "the image kept the state it was taken at");
        prop_assert_eq!(image.state_hash(), stopped.state_hash());
        prop_assert_eq!(image.last_sequence(), stopped.last_sequence());
        let mut all = commands[..at].to_vec();
        all.extend(later);
        prop_assert_eq!(engine.state_hash(), engine_with(&all).state_hash());
        assert_canonical(&engine);
    }
}
