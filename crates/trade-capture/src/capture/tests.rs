use super::*;
use keel_domain::{AccountId, Date, FirmId, GroupId, InstrumentId, PositionMode, TradeDetails};

const MASTER: &str = "id,kind,exchange,product,currency,multiplier,tick_size,price_decimals,maturity,last_trade_date,settlement,underlying,put_call,strike,exercise_style,premium_style
ESZ6,future,CME,ES,USD,50,0.25,4,202612,2026-12-18,cash,,,,,
FGBLZ6,future,XEUR,FGBL,EUR,1000,0.01,4,202612,2026-11-20,physical,,,,,
ESZ6-C6000,option,CME,ES,USD,50,0.05,4,202612,2026-12-18,physical,ESZ6,call,6000,american,upfront
";

const ACCOUNTS: &str = "id,firm,kind,position_mode
C1,FIRMA,customer,net
C2,FIRMA,customer,net
OMNI,FIRMA,omnibus,net
HOLD,FIRMA,holding,net
RES,FIRMA,residual,net
B1,FIRMB,customer,net
";

fn id<T: std::str::FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    text.parse().unwrap()
}

fn date(text: &str) -> Date {
    Date::parse(text).unwrap()
}

fn capture() -> Capture {
    let mut capture = Capture::default();
    for instrument in keel_domain::instrument::load_instruments(MASTER.as_bytes()).unwrap() {
        capture.define_instrument(instrument).unwrap();
    }
    for account in keel_domain::account::load_accounts(ACCOUNTS.as_bytes()).unwrap() {
        capture.define_account(account).unwrap();
    }
    capture.open_business_date(date("2026-11-27")).unwrap();
    capture
}

fn details(account: &str, side: Side, quantity: i64, price: &str) -> TradeDetails {
    TradeDetails {
        account: id(account),
        instrument: id("ESZ6"),
        side,
        quantity: Quantity::new(quantity),
        price: Price::parse(price).unwrap(),
        trade_date: date("2026-11-27"),
        venue: Some(id("CME")),
        executing_firm: id("FIRMA"),
        clearing_firm: id("FIRMA"),
        give_up_to: None,
        position_effect: PositionEffect::Open,
        average_price_group: None,
        allocations: Vec::new(),
    }
}

fn new(report: &str, details: TradeDetails) -> Step {
    Step::Trade(TradeReport { report_id: id(report), action: TradeAction::New(details) })
}

fn amend(report: &str, target: &str, details: TradeDetails) -> Step {
    Step::Trade(TradeReport {
        report_id: id(report),
        action: TradeAction::Amend { target: id(target), details },
    })
}

fn cancel(report: &str, target: &str) -> Step {
    Step::Trade(TradeReport {
        report_id: id(report),
        action: TradeAction::Cancel { target: id(target) },
    })
}

fn give_up(report: &str, trade: &str, firm: &str, decision: GiveUpDecision) -> Step {
    Step::GiveUp(GiveUpResponse {
        report_id: id(report),
        trade: id(trade),
        firm: id(firm),
        decision,
    })
}

fn average(report: &str, group: &str, splits: &[(&str, i64)], residual: &str) -> Step {
    Step::Average(AveragePriceAllocation {
        report_id: id(report),
        group: id(group),
        splits: splits
            .iter()
            .map(|(a, q)| Split { account: id(a), quantity: Quantity::new(*q) })
            .collect(),
        residual_account: id(residual),
    })
}

fn with(mut details: TradeDetails, change: impl FnOnce(&mut TradeDetails)) -> TradeDetails {
    change(&mut details);
    details
}

enum Step {
    Trade(TradeReport),
    GiveUp(GiveUpResponse),
    Average(AveragePriceAllocation),
    OpenDate(&'static str),
    DefineAccount(Account),
}

fn run(
    capture: &mut Capture,
    step: &Step,
    sequence: u64,
    effects: &mut Vec<Effect>,
) -> Result<Accepted, CaptureError> {
    match step {
        Step::Trade(report) => capture.apply_trade(report, sequence, effects),
        Step::GiveUp(response) => capture.apply_give_up(response, sequence, effects),
        Step::Average(allocation) => capture.apply_average_price(allocation, sequence, effects),
        Step::OpenDate(text) => capture.open_business_date(date(text)).map(|()| Accepted::Applied),
        Step::DefineAccount(account) => {
            capture.define_account(*account).map(|()| Accepted::Applied)
        }
    }
}

fn state_bytes(capture: &Capture) -> Vec<u8> {
    bincode::serialize(capture).unwrap()
}

/// Every rejection, with the setup that provokes it. The rejected step must leave the state
/// byte-for-byte as it was and emit no effects.
#[test]
fn every_reject_code() {
    use Side::{Buy, Sell};
    let plain = || details("C1", Buy, 1, "5000.25");
    let cases: Vec<(&str, Vec<Step>, Step)> = vec![
        ("REPORT_ID_REUSED", vec![new("T1", plain())], new("T1", details("C1", Buy, 2, "5000.25"))),
        ("UNKNOWN_INSTRUMENT", vec![], new("T1", with(plain(), |d| d.instrument = id("NOPE")))),
        ("INSTRUMENT_EXPIRED", vec![], new("T1", with(plain(), |d| d.instrument = id("FGBLZ6")))),
        ("QUANTITY_MUST_BE_POSITIVE", vec![], new("T1", details("C1", Buy, 0, "5000"))),
        ("QUANTITY_MUST_BE_POSITIVE", vec![], new("T1", details("C1", Buy, -3, "5000"))),
        ("QUANTITY_TOO_LARGE", vec![], new("T1", details("C1", Buy, 100_000_001, "5000"))),
        ("PRICE_OFF_TICK", vec![], new("T1", details("C1", Buy, 1, "5000.10"))),
        (
            "PREMIUM_MUST_NOT_BE_NEGATIVE",
            vec![],
            new("T1", with(details("C1", Buy, 1, "-0.05"), |d| d.instrument = id("ESZ6-C6000"))),
        ),
        ("UNKNOWN_ACCOUNT", vec![], new("T1", details("NOBODY", Buy, 1, "5000"))),
        ("ACCOUNT_NOT_CARRIED_BY_FIRM", vec![], new("T1", details("B1", Buy, 1, "5000"))),
        (
            "TRADE_DATE_AFTER_BUSINESS_DATE",
            vec![],
            new("T1", with(plain(), |d| d.trade_date = date("2026-11-30"))),
        ),
        ("UNKNOWN_TRADE", vec![], amend("A1", "T9", plain())),
        ("UNKNOWN_TRADE", vec![new("T1", plain()), amend("A1", "T1", plain())], cancel("X1", "A1")),
        (
            "TRADE_ALREADY_CANCELLED",
            vec![new("T1", plain()), cancel("X1", "T1")],
            cancel("X2", "T1"),
        ),
        (
            "TRADE_ALREADY_CANCELLED",
            vec![new("T1", plain()), cancel("X1", "T1")],
            amend("A1", "T1", plain()),
        ),
        (
            "TRADE_PENDING_GIVE_UP",
            vec![new("T1", with(plain(), |d| d.give_up_to = Some(id("FIRMB"))))],
            cancel("X1", "T1"),
        ),
        (
            "TRADE_GIVEN_UP",
            vec![
                new("T1", with(plain(), |d| d.give_up_to = Some(id("FIRMB")))),
                give_up("G1", "T1", "FIRMB", GiveUpDecision::Accept { account: id("B1") }),
            ],
            amend("A1", "T1", plain()),
        ),
        (
            "GROUP_ALREADY_ALLOCATED",
            vec![
                new(
                    "F1",
                    with(details("HOLD", Buy, 2, "5000"), |d| {
                        d.average_price_group = Some(id("G"))
                    }),
                ),
                average("AP1", "G", &[("C1", 2)], "RES"),
            ],
            cancel("X1", "F1"),
        ),
        (
            "GROUP_ALREADY_ALLOCATED",
            vec![
                new(
                    "F1",
                    with(details("HOLD", Buy, 2, "5000"), |d| {
                        d.average_price_group = Some(id("G"))
                    }),
                ),
                average("AP1", "G", &[("C1", 2)], "RES"),
            ],
            new(
                "F2",
                with(details("HOLD", Buy, 2, "5000"), |d| d.average_price_group = Some(id("G"))),
            ),
        ),
        (
            "GROUP_ALREADY_ALLOCATED",
            vec![
                new(
                    "F1",
                    with(details("HOLD", Buy, 2, "5000"), |d| {
                        d.average_price_group = Some(id("G"))
                    }),
                ),
                average("AP1", "G", &[("C1", 2)], "RES"),
            ],
            average("AP2", "G", &[("C1", 2)], "RES"),
        ),
        (
            "ALLOCATION_QUANTITY_MISMATCH",
            vec![],
            new(
                "T1",
                with(details("OMNI", Buy, 5, "5000"), |d| {
                    d.allocations = vec![
                        Split { account: id("C1"), quantity: Quantity::new(2) },
                        Split { account: id("C2"), quantity: Quantity::new(2) },
                    ]
                }),
            ),
        ),
        (
            "ACCOUNT_CANNOT_ALLOCATE",
            vec![],
            new(
                "T1",
                with(details("C1", Buy, 2, "5000"), |d| {
                    d.allocations = vec![Split { account: id("C2"), quantity: Quantity::new(2) }]
                }),
            ),
        ),
        (
            "UNKNOWN_ACCOUNT",
            vec![],
            new(
                "T1",
                with(details("OMNI", Buy, 2, "5000"), |d| {
                    d.allocations = vec![Split { account: id("ZZ"), quantity: Quantity::new(2) }]
                }),
            ),
        ),
        (
            "ACCOUNT_NOT_CARRIED_BY_FIRM",
            vec![],
            new(
                "T1",
                with(details("OMNI", Buy, 2, "5000"), |d| {
                    d.allocations = vec![Split { account: id("B1"), quantity: Quantity::new(2) }]
                }),
            ),
        ),
        (
            "QUANTITY_MUST_BE_POSITIVE",
            vec![],
            new(
                "T1",
                with(details("OMNI", Buy, 2, "5000"), |d| {
                    d.allocations = vec![
                        Split { account: id("C1"), quantity: Quantity::new(3) },
                        Split { account: id("C2"), quantity: Quantity::new(-1) },
                    ]
                }),
            ),
        ),
        (
            "CONFLICTING_INSTRUCTIONS",
            vec![],
            new(
                "T1",
                with(details("OMNI", Buy, 2, "5000"), |d| {
                    d.give_up_to = Some(id("FIRMB"));
                    d.allocations = vec![Split { account: id("C1"), quantity: Quantity::new(2) }]
                }),
            ),
        ),
        (
            "CONFLICTING_INSTRUCTIONS",
            vec![],
            new(
                "T1",
                with(details("HOLD", Buy, 2, "5000"), |d| {
                    d.average_price_group = Some(id("G"));
                    d.allocations = vec![Split { account: id("C1"), quantity: Quantity::new(2) }]
                }),
            ),
        ),
        ("GIVE_UP_TO_SELF", vec![], new("T1", with(plain(), |d| d.give_up_to = Some(id("FIRMA"))))),
        (
            "NO_PENDING_GIVE_UP",
            vec![new("T1", plain())],
            give_up("G1", "T1", "FIRMB", GiveUpDecision::Reject),
        ),
        ("UNKNOWN_TRADE", vec![], give_up("G1", "T1", "FIRMB", GiveUpDecision::Reject)),
        (
            "GIVE_UP_WRONG_FIRM",
            vec![new("T1", with(plain(), |d| d.give_up_to = Some(id("FIRMB"))))],
            give_up("G1", "T1", "FIRMC", GiveUpDecision::Reject),
        ),
        (
            "ACCOUNT_NOT_CARRIED_BY_FIRM",
            vec![new("T1", with(plain(), |d| d.give_up_to = Some(id("FIRMB"))))],
            give_up("G1", "T1", "FIRMB", GiveUpDecision::Accept { account: id("C2") }),
        ),
        ("UNKNOWN_GROUP", vec![], average("AP1", "G", &[("C1", 2)], "RES")),
        (
            "GROUP_MISMATCH",
            vec![new(
                "F1",
                with(details("HOLD", Buy, 2, "5000"), |d| d.average_price_group = Some(id("G"))),
            )],
            new(
                "F2",
                with(details("HOLD", Sell, 2, "5000"), |d| d.average_price_group = Some(id("G"))),
            ),
        ),
        (
            "GROUP_EMPTY",
            vec![
                new(
                    "F1",
                    with(details("HOLD", Buy, 2, "5000"), |d| {
                        d.average_price_group = Some(id("G"))
                    }),
                ),
                cancel("X1", "F1"),
            ],
            average("AP1", "G", &[("C1", 2)], "RES"),
        ),
        (
            "NOT_A_RESIDUAL_ACCOUNT",
            vec![new(
                "F1",
                with(details("HOLD", Buy, 2, "5000"), |d| d.average_price_group = Some(id("G"))),
            )],
            average("AP1", "G", &[("C1", 2)], "C2"),
        ),
        (
            "ALLOCATION_QUANTITY_MISMATCH",
            vec![new(
                "F1",
                with(details("HOLD", Buy, 2, "5000"), |d| d.average_price_group = Some(id("G"))),
            )],
            average("AP1", "G", &[("C1", 3)], "RES"),
        ),
        (
            "ACCOUNT_CANNOT_ALLOCATE",
            vec![],
            new(
                "F1",
                with(details("C1", Buy, 2, "5000"), |d| d.average_price_group = Some(id("G"))),
            ),
        ),
        ("BUSINESS_DATE_BACKWARDS", vec![], Step::OpenDate("2026-11-26")),
        (
            "DEFINITION_CONFLICT",
            vec![],
            Step::DefineAccount(Account {
                id: id("C1"),
                firm: id("FIRMA"),
                kind: AccountKind::House,
                position_mode: PositionMode::Net,
            }),
        ),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (expected, setup, step) in &cases {
        let mut capture = capture();
        let mut effects = Vec::new();
        for (sequence, setup_step) in setup.iter().enumerate() {
            run(&mut capture, setup_step, sequence as u64 + 1, &mut effects)
                .unwrap_or_else(|e| panic!("{expected}: setup failed: {e}"));
        }
        let before = state_bytes(&capture);
        effects.clear();
        let error = run(&mut capture, step, 99, &mut effects).expect_err(expected);
        assert_eq!(error.name(), *expected, "{error}");
        assert!(effects.is_empty(), "{expected}: a rejection emits no effects");
        assert_eq!(state_bytes(&capture), before, "{expected}: a rejection changes nothing");
        seen.insert(error.code());
    }
    let mut fresh = Capture::default();
    fresh
        .define_instrument(keel_domain::instrument::load_instruments(MASTER.as_bytes()).unwrap()[0])
        .unwrap();
    let error = fresh
        .apply_trade(
            &TradeReport {
                report_id: id("T1"),
                action: TradeAction::New(details("C1", Side::Buy, 1, "5000")),
            },
            1,
            &mut Vec::new(),
        )
        .unwrap_err();
    assert_eq!(error, CaptureError::BusinessDateNotOpen);
    seen.insert(error.code());
    // Every code but OVERFLOW (1028), which the quantity, price and multiplier limits make
    // unreachable from validated input, is provoked above.
    let all: std::collections::BTreeSet<u16> = (1001..=1029).filter(|code| *code != 1028).collect();
    assert_eq!(seen, all);
}

fn booked(effects: &[Effect]) -> Vec<(String, Side, i64, String)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Book { account, booking, .. } => Some((
                account.0.to_string(),
                booking.side,
                booking.quantity.get(),
                booking.price.to_string(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn new_amend_cancel_and_duplicates() {
    let mut capture = capture();
    let mut effects = Vec::new();
    let t1 = new("T1", details("C1", Side::Buy, 3, "5000.25"));
    assert_eq!(run(&mut capture, &t1, 7, &mut effects), Ok(Accepted::Applied));
    assert_eq!(booked(&effects), vec![("0".into(), Side::Buy, 3, "5000.25".into())]);

    effects.clear();
    assert_eq!(run(&mut capture, &t1, 8, &mut effects), Ok(Accepted::Duplicate { sequence: 7 }));
    assert!(effects.is_empty());

    let a1 = amend("A1", "T1", details("C2", Side::Buy, 4, "5000.5"));
    assert_eq!(run(&mut capture, &a1, 9, &mut effects), Ok(Accepted::Applied));
    assert!(matches!(
        effects[0],
        Effect::Reverse { account: AccountKey(0), booking: BookingId(1), .. }
    ));
    assert_eq!(booked(&effects[1..]), vec![("1".into(), Side::Buy, 4, "5000.5".into())]);
    let key = capture.find_trade(&id("T1")).unwrap();
    assert_eq!(capture.trade(key).version, 2);
    assert_eq!(capture.find_trade(&id("A1")), None, "an amend's report id is not a trade id");

    effects.clear();
    assert_eq!(run(&mut capture, &cancel("X1", "T1"), 10, &mut effects), Ok(Accepted::Applied));
    assert!(matches!(
        effects[..],
        [Effect::Reverse { account: AccountKey(1), booking: BookingId(2), .. }]
    ));
    assert_eq!(capture.trade(key).status, TradeStatus::Cancelled);
    effects.clear();
    assert_eq!(
        run(&mut capture, &cancel("X1", "T1"), 11, &mut effects),
        Ok(Accepted::Duplicate { sequence: 10 })
    );
}

#[test]
fn give_up_accepted_moves_the_trade_and_rejected_keeps_it() {
    for (decision, expected_account, expected_status) in [
        (GiveUpDecision::Accept { account: id("B1") }, "B1", "given up"),
        (GiveUpDecision::Reject, "C1", "active"),
    ] {
        let mut capture = capture();
        let mut effects = Vec::new();
        let report = new(
            "T1",
            with(details("C1", Side::Sell, 2, "5000"), |d| {
                d.give_up_to = Some(id::<FirmId>("FIRMB"))
            }),
        );
        run(&mut capture, &report, 1, &mut effects).unwrap();
        let key = capture.find_trade(&id("T1")).unwrap();
        let TradeStatus::PendingGiveUp { to } = capture.trade(key).status else {
            panic!("expected a pending give-up, got {:?}", capture.trade(key).status)
        };
        assert_eq!(capture.reference().firm(to), id::<FirmId>("FIRMB"));
        effects.clear();
        run(&mut capture, &give_up("GU1", "T1", "FIRMB", decision), 2, &mut effects).unwrap();
        let trade = capture.trade(key);
        assert_eq!(
            capture.reference().account(trade.account).id,
            id::<AccountId>(expected_account)
        );
        let status = match trade.status {
            TradeStatus::GivenUp { .. } => "given up",
            TradeStatus::Active => "active",
            _ => "other",
        };
        assert_eq!(status, expected_status);
        if expected_status == "given up" {
            assert_eq!(booked(&effects), vec![("5".into(), Side::Sell, 2, "5000".into())]);
        } else {
            assert!(effects.is_empty());
        }
    }
}

#[test]
fn allocation_books_each_split() {
    let mut capture = capture();
    let mut effects = Vec::new();
    let splits = vec![
        Split { account: id("C1"), quantity: Quantity::new(3) },
        Split { account: id("C2"), quantity: Quantity::new(7) },
    ];
    run(
        &mut capture,
        &new("T1", with(details("OMNI", Side::Buy, 10, "5001"), |d| d.allocations = splits)),
        1,
        &mut effects,
    )
    .unwrap();
    assert_eq!(
        booked(&effects),
        vec![("0".into(), Side::Buy, 3, "5001".into()), ("1".into(), Side::Buy, 7, "5001".into())]
    );
    effects.clear();
    run(&mut capture, &cancel("X1", "T1"), 2, &mut effects).unwrap();
    assert_eq!(effects.iter().filter(|e| matches!(e, Effect::Reverse { .. })).count(), 2);
}

#[test]
fn average_price_group_allocates_at_rounded_vwap_with_residual() {
    let mut capture = capture();
    let mut effects = Vec::new();
    let group = Some(id::<GroupId>("APG1"));
    for (report, quantity, price) in [("F1", 1, "5000"), ("F2", 1, "5000.25"), ("F3", 1, "5000.25")]
    {
        run(
            &mut capture,
            &new(
                report,
                with(details("HOLD", Side::Buy, quantity, price), |d| {
                    d.average_price_group = group
                }),
            ),
            1,
            &mut effects,
        )
        .unwrap();
    }
    effects.clear();
    run(&mut capture, &average("AP1", "APG1", &[("C1", 2), ("C2", 1)], "RES"), 4, &mut effects)
        .unwrap();
    // VWAP 5000.1666..., rounded to the instrument's four decimals: 5000.1667.
    assert_eq!(
        booked(&effects),
        vec![
            ("3".into(), Side::Sell, 3, "5000.1667".into()),
            ("0".into(), Side::Buy, 2, "5000.1667".into()),
            ("1".into(), Side::Buy, 1, "5000.1667".into()),
        ]
    );
    // Clients pay 3 x 5000.1667 x 50 = 750025.005; the fills cost 750025: residual 0.005.
    let residual = Amount::parse("0.005").unwrap();
    let cash: Vec<(u32, Amount)> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Cash { account, amount, .. } => Some((account.0, *amount)),
            _ => None,
        })
        .collect();
    assert_eq!(cash, vec![(3, -residual), (4, residual)]);
    let allocation = capture.groups()[0].allocation.as_ref().unwrap();
    assert_eq!(allocation.average_price, Price::parse("5000.1667").unwrap());
}

#[test]
fn serde_round_trip_keeps_lookups_working() {
    let mut capture = capture();
    let mut effects = Vec::new();
    run(&mut capture, &new("T1", details("C1", Side::Buy, 1, "5000")), 1, &mut effects).unwrap();
    let bytes = state_bytes(&capture);
    let mut restored: Capture = bincode::deserialize(&bytes).unwrap();
    restored.reindex();
    assert_eq!(state_bytes(&restored), bytes);
    assert_eq!(
        restored.reference().instrument_key(&id::<InstrumentId>("ESZ6")),
        Some(InstrumentKey(0))
    );
    let t1 = new("T1", details("C1", Side::Buy, 1, "5000"));
    assert_eq!(run(&mut restored, &t1, 2, &mut effects), Ok(Accepted::Duplicate { sequence: 1 }));
}
