use super::*;
use keel_domain::{
    account::load_accounts, instrument::load_instruments, PositionEffect, PositionMode, Quantity,
    Side,
};
use keel_position_keeping::{Booking, BookingId, Terms};
use proptest::prelude::*;

const MASTER: &str = "id,kind,exchange,product,currency,multiplier,tick_size,price_decimals,maturity,last_trade_date,settlement,underlying,put_call,strike,exercise_style,premium_style
ESZ6,future,CME,ES,USD,50,0.25,4,202612,2026-12-18,cash,,,,,
ESZ6-C6000,option,CME,ES,USD,50,0.05,4,202612,2026-12-18,physical,ESZ6,call,6000,american,upfront
OGBLG7-C130,option,XEUR,OGBL,EUR,1000,0.01,4,202702,2027-02-19,physical,ESZ6,call,130,american,futures
";

fn instruments() -> Vec<Instrument> {
    load_instruments(MASTER.as_bytes()).unwrap()
}

fn account() -> Account {
    load_accounts("id,firm,kind,position_mode\nC1,F,customer,net\n".as_bytes()).unwrap()[0]
}

fn date(text: &str) -> Date {
    Date::parse(text).unwrap()
}

fn price(text: &str) -> Price {
    Price::parse(text).unwrap()
}

fn amount(text: &str) -> Amount {
    Amount::parse(text).unwrap()
}

struct Book {
    position: Position,
    terms: Terms,
    next: u64,
}

impl Book {
    fn new(instrument: &Instrument) -> Self {
        Book {
            position: Position::new(),
            terms: Terms { mode: PositionMode::Net, multiplier: instrument.multiplier },
            next: 0,
        }
    }

    fn trade(&mut self, side: Side, quantity: i64, at: &str) {
        self.next += 1;
        let booking = Booking {
            id: BookingId(self.next),
            side,
            quantity: Quantity::new(quantity),
            price: price(at),
            effect: PositionEffect::Open,
        };
        self.position.book(self.terms, booking).unwrap();
    }
}

fn run(
    settlement: &mut Settlement,
    day: &str,
    instrument: &Instrument,
    account: &Account,
    book: &Book,
    settle: Option<&str>,
) -> Result<EodReport, SettleError> {
    if let Some(settle) = settle {
        settlement.load_prices(date(day), [(instrument.id, price(settle))].into_iter().collect());
    }
    let inputs = [EodInput { key: 1, account, instrument, position: &book.position }];
    settlement.run_eod(date(day), Some(date(day)), inputs.iter().copied())
}

/// A hand-computed three-day futures sequence: opening trades, a partial close, a full close,
/// the settlement price moving up and down. Realized P&L at the end equals the VM paid.
#[test]
fn futures_variation_margin_worked_example() {
    let es = &instruments()[0];
    let account = account();
    let mut settlement = Settlement::default();
    let mut book = Book::new(es);
    // Day 1: buy 2 @ 6000, buy 1 @ 6010; settles 6005. VM = 2x5x50 - 1x5x50 = +250.
    book.trade(Side::Buy, 2, "6000");
    book.trade(Side::Buy, 1, "6010");
    let day1 = run(&mut settlement, "2026-11-23", es, &account, &book, Some("6005")).unwrap();
    assert_eq!(day1.variation_margin[&Currency::USD], amount("250"));
    // Day 2: yesterday's 3 marked 6005 -> 5990 (-2,250); sell 1 @ 6020 marked to 5990 (+1,500).
    book.trade(Side::Sell, 1, "6020");
    let day2 = run(&mut settlement, "2026-11-24", es, &account, &book, Some("5990")).unwrap();
    assert_eq!(day2.variation_margin[&Currency::USD], amount("-750"));
    // Day 3: 2 held marked 5990 -> 5980 (-1,000); sell 2 @ 6015 marked to 5980 (+3,500).
    book.trade(Side::Sell, 2, "6015");
    let day3 = run(&mut settlement, "2026-11-25", es, &account, &book, Some("5980")).unwrap();
    assert_eq!(day3.variation_margin[&Currency::USD], amount("2500"));
    // Flat now: realized (20+15+5 points x 50) = 2,000 = 250 - 750 + 2,500.
    assert_eq!(book.position.net(), 0);
    assert_eq!(book.position.realized(), amount("2000"));
    let customer = LedgerAccount::Customer(account.id);
    assert_eq!(settlement.ledger().balance(customer, Currency::USD), amount("2000"));
    assert_eq!(
        settlement.ledger().balance(LedgerAccount::ClearingHouse(es.exchange), Currency::USD),
        amount("-2000")
    );
    settlement.ledger().check().unwrap();
    // A flat position with nothing owed posts nothing on later days, even without a price.
    let day4 = run(&mut settlement, "2026-11-26", es, &account, &book, Some("5900")).unwrap();
    assert_eq!(day4.postings, 0);
    let instructions = settlement.ledger().payment_instructions(date("2026-11-24"));
    assert_eq!(instructions.len(), 1);
    assert_eq!(
        (instructions[0].amount, instructions[0].value_date),
        (amount("-750"), date("2026-11-25"))
    );
}

#[test]
fn premium_fees_and_futures_style_options() {
    let master = instruments();
    let (call, bund_call) = (&master[1], &master[2]);
    let account = account();
    let mut settlement = Settlement::default();
    settlement.load_fees(crate::fees::load_fees("exchange,product,account_kind,per_contract,currency\nCME,ES,customer,1.25,USD\nCME,*,*,2.00,USD\n".as_bytes()).unwrap());
    let mut book = Book::new(call);
    book.trade(Side::Buy, 2, "105.50");
    book.trade(Side::Sell, 1, "106");
    // Premium: the customer pays 2 x 105.50 x 50 = 10,550 and receives 1 x 106 x 50 = 5,300.
    // Fees: 3 contracts x 1.25 (the customer rule beats the catch-all).
    let report = run(&mut settlement, "2026-11-27", call, &account, &book, None).unwrap();
    assert_eq!(report.postings, 2);
    let postings = settlement.ledger().postings();
    assert_eq!(
        (postings[0].kind, postings[0].amount, postings[0].debit),
        (PostingKind::Premium, amount("5250"), LedgerAccount::Customer(account.id))
    );
    assert_eq!(
        (postings[1].kind, postings[1].amount, postings[1].credit),
        (PostingKind::Fee, amount("3.75"), LedgerAccount::FeeIncome)
    );
    assert_eq!(postings[0].value_date, date("2026-11-30"), "premium settles the next weekday");
    // A futures-style option is margined like a future.
    let mut bund = Book::new(bund_call);
    bund.trade(Side::Buy, 1, "0.85");
    settlement
        .load_prices(date("2026-11-30"), [(bund_call.id, price("0.92"))].into_iter().collect());
    let inputs =
        [EodInput { key: 2, account: &account, instrument: bund_call, position: &bund.position }];
    let report = settlement
        .run_eod(date("2026-11-30"), Some(date("2026-11-30")), inputs.iter().copied())
        .unwrap();
    assert_eq!(report.variation_margin[&Currency::EUR], amount("70"));
    settlement.ledger().check().unwrap();
}

#[test]
fn refusals_post_nothing() {
    let es = &instruments()[0];
    let account = account();
    let mut settlement = Settlement::default();
    let mut book = Book::new(es);
    book.trade(Side::Buy, 1, "6000");
    let error = run(&mut settlement, "2026-11-27", es, &account, &book, None).unwrap_err();
    assert_eq!(error, SettleError::MissingPrices(vec![es.id]));
    assert!(error.to_string().contains("ESZ6"));
    assert!(settlement.ledger().postings().is_empty());
    run(&mut settlement, "2026-11-27", es, &account, &book, Some("6001")).unwrap();
    assert_eq!(
        run(&mut settlement, "2026-11-27", es, &account, &book, Some("6001")),
        Err(SettleError::AlreadyRun(date("2026-11-27")))
    );
    let inputs = [EodInput { key: 1, account: &account, instrument: es, position: &book.position }];
    assert!(matches!(
        settlement.run_eod(date("2026-11-28"), Some(date("2026-11-27")), inputs.iter().copied()),
        Err(SettleError::NotTheOpenDate { .. })
    ));
    let master = instruments();
    let off_tick = crate::prices::validate(&[(es.id, price("6000.10"))], |id| {
        master.iter().find(|i| i.id == *id)
    });
    assert!(matches!(off_tick, Err(SettleError::PriceOffTick { .. })));
    assert_eq!(settlement.ledger().postings().len(), 1);
}

proptest! {
    /// Over any life of a futures position, closed at the end, the variation margin paid sums
    /// to its realized P&L (to within half a cent: each day trues up the rounding of the
    /// previous), and the ledger sums to zero after every day.
    #[test]
    fn variation_margin_over_a_life_equals_realized(days in prop::collection::vec((prop::collection::vec((any::<bool>(), 1i64..20, -200i64..200), 0..6), -400i64..400), 1..12)) {
        let es = &instruments()[0];
        let account = account();
        let mut settlement = Settlement::default();
        let mut book = Book::new(es);
        let mut day = date("2026-11-02");
        let tick = |ticks: i64| Price::from_nanos(6_000_000_000_000 + ticks * 250_000_000).to_string();
        for (trades, settle) in &days {
            for (buy, quantity, ticks) in trades {
                book.trade(if *buy { Side::Buy } else { Side::Sell }, *quantity, &tick(*ticks));
            }
            run(&mut settlement, &day.to_string(), es, &account, &book, Some(&tick(*settle))).unwrap();
            settlement.ledger().check().unwrap();
            day = crate::calendar::next_weekday(day);
        }
        // Close out at the last settlement price and run one more day.
        let net = book.position.net();
        let last = tick(days.last().unwrap().1);
        if net != 0 {
            book.trade(if net > 0 { Side::Sell } else { Side::Buy }, net.abs(), &last);
        }
        run(&mut settlement, &day.to_string(), es, &account, &book, Some(&last)).unwrap();
        let paid = settlement.ledger().balance(LedgerAccount::Customer(account.id), Currency::USD);
        let difference = (paid.nanos() - book.position.realized().nanos()).abs();
        prop_assert!(difference <= 5_000_000, "paid {paid} realized {}", book.position.realized());
    }
}
