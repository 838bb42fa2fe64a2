//! Worked end-to-end scenarios through the engine, and its fault paths.
#![allow(clippy::unwrap_used, reason = "tests: a failed setup should fail loudly")]

mod support;

use keel_domain::{
    Amount, AveragePriceAllocation, GiveUpDecision, GiveUpResponse, Quantity, Side, Split,
};
use keel_engine::{Command, Encoding, Engine, EngineError, Envelope, Outcome};
use support::*;

#[test]
fn a_trading_day_through_the_engine() {
    let mut give_up = details("A1", 0, Side::Buy, 2, 0);
    give_up.give_up_to = Some("FIRMB".parse().unwrap());
    let mut omnibus = details("OMNI", 1, Side::Sell, 10, 5);
    omnibus.allocations = vec![
        Split { account: "A1".parse().unwrap(), quantity: Quantity::new(4) },
        Split { account: "A2".parse().unwrap(), quantity: Quantity::new(6) },
    ];
    let mut fills = Vec::new();
    for (i, ticks) in [0, 1, 1].into_iter().enumerate() {
        let mut fill = details("HOLD", 0, Side::Buy, 1, ticks);
        fill.average_price_group = Some("APG".parse().unwrap());
        fills.push(new_trade(&format!("F{i}"), fill));
    }
    let mut commands = vec![
        new_trade("T1", details("A1", 0, Side::Buy, 5, 0)), // A1 long 5 ESZ6 @ 5000
        new_trade("T2", details("A1", 0, Side::Sell, 3, 4)), // sells 3 @ 5001: +150
        amend("T2A", "T2", details("A1", 0, Side::Sell, 3, 8)), // now @ 5002: +300
        new_trade("T3", details("A2", 0, Side::Sell, 1, 0)),
        cancel("T3X", "T3"),
        new_trade("GU", give_up),
        Command::GiveUp(GiveUpResponse {
            report_id: "GUR".parse().unwrap(),
            trade: "GU".parse().unwrap(),
            firm: "FIRMB".parse().unwrap(),
            decision: GiveUpDecision::Accept { account: "B1".parse().unwrap() },
        }),
        new_trade("OM", omnibus),
    ];
    commands.extend(fills);
    commands.push(Command::AveragePrice(AveragePriceAllocation {
        report_id: "AP".parse().unwrap(),
        group: "APG".parse().unwrap(),
        splits: vec![
            Split { account: "A3".parse().unwrap(), quantity: Quantity::new(2) },
            Split { account: "A2".parse().unwrap(), quantity: Quantity::new(1) },
        ],
        residual_account: "RES".parse().unwrap(),
    }));
    let mut engine = engine_with(&[]);
    let outcomes = run(&mut engine, &commands);
    assert!(outcomes.iter().all(Outcome::is_accepted), "{outcomes:?}");

    let nanos = |text: &str| Amount::parse(text).unwrap().nanos();
    let p = |text: &str| keel_domain::Price::parse(text).unwrap().nanos();
    assert_eq!(
        summary(&engine),
        vec![
            ("A1".into(), "CLF7".into(), 0, 4, 0, vec![(-4, p("70.05"))]),
            ("A1".into(), "ESZ6".into(), 2, 0, nanos("300"), vec![(2, p("5000"))]),
            ("A2".into(), "CLF7".into(), 0, 6, 0, vec![(-6, p("70.05"))]),
            ("A2".into(), "ESZ6".into(), 1, 0, 0, vec![(1, p("5000.1667"))]),
            ("A3".into(), "ESZ6".into(), 2, 0, 0, vec![(2, p("5000.1667"))]),
            ("B1".into(), "ESZ6".into(), 2, 0, 0, vec![(2, p("5000"))]),
            // The holding account is flat; the 0.005 it made rounding up is moved to RES.
            ("HOLD".into(), "ESZ6".into(), 0, 0, nanos("0.005"), vec![]),
        ]
    );
    let cash: Vec<(String, i128)> = engine
        .cash_adjustments()
        .into_iter()
        .map(|(a, _, amount)| (a.id.to_string(), amount.nanos()))
        .collect();
    assert_eq!(cash, vec![("HOLD".into(), -nanos("0.005")), ("RES".into(), nanos("0.005"))]);
    assert_canonical(&engine);
}

/// Positions past the inline and heap forms (chunked bookings), with tombstones left by
/// cancels and amends, encode by hand exactly as serde does; so does the same state once the
/// tombstones are compacted away.
#[test]
fn large_positions_with_tombstones_encode_canonically() {
    let mut commands = Vec::new();
    for n in 0..2_000 {
        let side = if n % 3 == 0 { Side::Sell } else { Side::Buy };
        commands.push(new_trade(&format!("T{n}"), details("A1", 0, side, 1 + n % 4, n % 40)));
        commands.push(new_trade(&format!("G{n}"), details("G1", 1, side, 1, n % 40)));
    }
    for n in (0..2_000).step_by(5) {
        commands.push(cancel(&format!("X{n}"), &format!("T{n}")));
        commands.push(amend(
            &format!("M{n}"),
            &format!("G{n}"),
            details("G1", 1, Side::Sell, 2, 3),
        ));
    }
    let mut engine = engine_with(&commands);
    assert_canonical(&engine);
    let compacting: Vec<Command> = (0..2_000)
        .filter(|n| n % 5 != 0)
        .map(|n| cancel(&format!("Y{n}"), &format!("T{n}")))
        .collect();
    run(&mut engine, &compacting);
    assert_canonical(&engine);
}

#[test]
fn rejects_leave_positions_alone_and_still_take_a_sequence() {
    let mut engine = engine_with(&[new_trade("T1", details("A1", 0, Side::Buy, 1, 0))]);
    let before = summary(&engine);
    let last = engine.last_sequence();
    let outcomes = run(&mut engine, &[new_trade("T2", details("NOBODY", 0, Side::Buy, 1, 0))]);
    assert!(matches!(&outcomes[0], Outcome::Rejected(e) if e.name() == "UNKNOWN_ACCOUNT"));
    assert_eq!(summary(&engine), before);
    assert_eq!(engine.last_sequence(), last + 1);
}

#[test]
fn sequence_must_increase() {
    let mut engine = engine_with(&[]);
    let last = engine.last_sequence();
    let envelope =
        Envelope { sequence: last, timestamp_ns: 0, command: setup_commands().remove(0) };
    assert_eq!(engine.apply(&envelope), Err(EngineError::SequenceOutOfOrder { last, got: last }));
}

#[test]
fn restore_refuses_bad_snapshots() {
    let engine = engine_with(&[new_trade("T1", details("A1", 0, Side::Buy, 1, 0))]);
    let bytes = engine.snapshot();
    let other = "other".parse().unwrap();
    assert!(matches!(Engine::restore(other, &bytes), Err(EngineError::SnapshotTenant { .. })));
    let mut future = bytes.clone();
    future[0] = 99;
    assert!(matches!(
        Engine::restore(engine.tenant(), &future),
        Err(EngineError::SnapshotVersion { found: 99, .. })
    ));
    assert!(matches!(
        Engine::restore(engine.tenant(), &bytes[..bytes.len() - 1]),
        Err(EngineError::SnapshotCorrupt(_))
    ));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        Engine::restore(engine.tenant(), &trailing),
        Err(EngineError::SnapshotCorrupt(_))
    ));
    assert!(matches!(Engine::restore(engine.tenant(), &[]), Err(EngineError::SnapshotCorrupt(_))));
}

#[test]
fn envelopes_round_trip_through_the_journal_encoding() {
    let mut give_up = details("A1", 0, Side::Buy, 2, 0);
    give_up.give_up_to = Some("FIRMB".parse().unwrap());
    give_up.allocations =
        vec![Split { account: "A2".parse().unwrap(), quantity: Quantity::new(2) }];
    let mut commands = setup_commands();
    commands.push(new_trade("T1", give_up));
    commands.push(cancel("X1", "T1"));
    for (sequence, command) in commands.into_iter().enumerate() {
        let envelope = Envelope { sequence: sequence as u64 + 1, timestamp_ns: -5, command };
        let bytes = envelope.encode();
        assert_eq!(Envelope::decode(&bytes).unwrap(), envelope);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(Envelope::decode(&trailing).is_err());
        assert!(Envelope::decode(&bytes[..bytes.len() - 1]).is_err());
        // Journals of format versions 1 to 3 hold the fixed-width encoding: still read.
        for encoding in [Encoding::Fixed, Encoding::Compact] {
            let mut old = Vec::new();
            envelope.encode_as_into(encoding, &mut old);
            assert_eq!(Envelope::decode_as(&old, encoding).unwrap(), envelope, "{encoding:?}");
        }
        let mut fixed = Vec::new();
        envelope.encode_as_into(Encoding::Fixed, &mut fixed);
        assert!(bytes.len() < fixed.len(), "compact {} >= fixed {}", bytes.len(), fixed.len());
    }
}

/// Pins the journal's command encoding (format version 4). If this fails, the encoding
/// changed: bump the journal's FORMAT_VERSION, keep decoding the old one for older records, and
/// update docs/journal-format.md.
#[test]
fn compact_envelope_golden_bytes() {
    let envelope = Envelope {
        sequence: 1_234_567,
        timestamp_ns: 1_790_000_000_000_000_000,
        command: new_trade("L0-123456", details("ACC-00042", 2, Side::Buy, 5, 17)),
    };
    let hex: String = envelope.encode().iter().map(|b| format!("{b:02x}")).collect();
    let mut fixed = Vec::new();
    envelope.encode_as_into(Encoding::Fixed, &mut fixed);
    assert_eq!((envelope.encode().len(), fixed.len()), (78, 141), "a trade: 45% fewer bytes");
    let expected = concat!(
        "fc87d61200",           // sequence 1,234,567 (varint: 0xfc, then a u32)
        "fd0000e64708b7ae31",   // capture time (zigzag; 0xfd, then a u64)
        "03",                   // command: trade
        "09",                   // report id, 9 bytes:
        "4c302d313233343536",   // "L0-123456"
        "00",                   // action: new
        "09",                   // account, 9 bytes:
        "4143432d3030303432",   // "ACC-00042"
        "0a",                   // instrument, 10 bytes:
        "45535a362d4336303030", // "ESZ6-C6000"
        "00",                   // side: buy
        "0a",                   // quantity 5 (zigzag)
        "fd00658f090c000000",   // price in nanos (zigzag; 0xfd, then a u64)
        "fb60a2",               // trade date (days; 0xfb, then a u16)
        "00",                   // no venue
        "05",
        "4649524d41", // executing firm "FIRMA"
        "05",
        "4649524d41", // clearing firm "FIRMA"
        "00",         // no give-up
        "01",         // position effect: close
        "00",         // no average-price group
        "00",         // no allocations
    );
    assert_eq!(hex, expected);
}
