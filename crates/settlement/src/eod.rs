//! The end-of-day run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use keel_domain::{
    Account, Amount, Currency, Date, Instrument, InstrumentId, InstrumentKind, Price, Rounding,
};
use keel_position_keeping::Position;
use serde::{Deserialize, Serialize};

use crate::calendar::next_weekday;
use crate::error::SettleError;
use crate::fees::FeeSchedule;
use crate::ledger::{Ledger, LedgerAccount, Posting, PostingKind};

/// One position as end of day sees it. `key` identifies the position across days.
#[derive(Debug, Clone, Copy)]
pub struct EodInput<'a> {
    pub key: u64,
    pub account: &'a Account,
    pub instrument: &'a Instrument,
    pub position: &'a Position,
}

/// What has been posted for one position so far, per kind (in the kind's currency).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accrued {
    pub variation_margin: Amount,
    pub premium: Amount,
    pub fees: Amount,
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EodReport {
    pub date: Date,
    pub positions: usize,
    pub postings: usize,
    /// Net variation margin paid to customers (negative: collected), per currency.
    pub variation_margin: BTreeMap<Currency, Amount>,
}

/// Prices, fee schedule, ledger and what each position has been paid, across days.
///
/// The large maps sit behind reference counts, so that cloning a `Settlement` (which every
/// engine image for a state pass does, on the shard) costs a count each, not a copy of a
/// million positions' accrued amounts: 35.6 ms per image after an end of day over 1,000,000
/// positions (`cargo bench --bench settlement -- image_after`). They change only in end-of-day
/// commands, which copy a map that an image still holds once (`Arc::make_mut`). Serialized as
/// the maps themselves (serde's `rc`), so no snapshot byte changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    prices: Arc<BTreeMap<Date, BTreeMap<InstrumentId, Price>>>,
    fees: FeeSchedule,
    accrued: Arc<BTreeMap<u64, Accrued>>,
    ledger: Ledger,
    runs: BTreeSet<Date>,
    /// Expiries processed, by date, with what each did.
    expiries: Arc<BTreeMap<Date, Vec<crate::expiry::ExpiryRecord>>>,
}

/// A movement computed for one position, before it is posted.
struct Movement {
    kind: PostingKind,
    amount: Amount,
    currency: Currency,
    counterparty: LedgerAccount,
}

impl Settlement {
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn fees(&self) -> &FeeSchedule {
        &self.fees
    }

    pub fn prices(&self, date: Date) -> Option<&BTreeMap<InstrumentId, Price>> {
        self.prices.get(&date)
    }

    /// Plans expiry for `date` (the open business date, not processed before): see
    /// `crate::expiry`. Nothing changes until `record_expiries`.
    pub fn plan_expiries(
        &self,
        date: Date,
        open: Option<Date>,
        inputs: &[crate::expiry::ExpiryInput<'_>],
        threshold: Price,
    ) -> Result<Vec<crate::expiry::ExpiryRecord>, SettleError> {
        check_open_date(date, open)?;
        if self.expiries.contains_key(&date) {
            return Err(SettleError::ExpiryAlreadyProcessed(date));
        }
        let empty = BTreeMap::new();
        crate::expiry::plan(date, inputs, self.prices.get(&date).unwrap_or(&empty), threshold)
    }

    /// Records what expiry did for `date` once its bookings are made.
    pub fn record_expiries(&mut self, date: Date, records: Vec<crate::expiry::ExpiryRecord>) {
        Arc::make_mut(&mut self.expiries).insert(date, records);
    }

    pub fn expiries_processed(&self, date: Date) -> bool {
        self.expiries.contains_key(&date)
    }

    pub fn expiries(&self, date: Date) -> &[crate::expiry::ExpiryRecord] {
        self.expiries.get(&date).map_or(&[], Vec::as_slice)
    }

    pub fn has_run(&self, date: Date) -> bool {
        self.runs.contains(&date)
    }

    pub fn accrued(&self, key: u64) -> Accrued {
        self.accrued.get(&key).copied().unwrap_or_default()
    }

    /// Stores validated prices for `date`, replacing earlier ones for that date.
    pub fn load_prices(&mut self, date: Date, prices: BTreeMap<InstrumentId, Price>) {
        Arc::make_mut(&mut self.prices).insert(date, prices);
    }

    pub fn load_fees(&mut self, schedule: FeeSchedule) {
        self.fees = schedule;
    }

    /// Runs end of day for `date` (which must be the open business date and not run before):
    /// variation margin for futures and futures-style options, premium for premium-style
    /// options, fees, each a true-up of what the position is owed to date against what was
    /// posted before. All or nothing: a refusal posts nothing.
    pub fn run_eod<'a>(
        &mut self,
        date: Date,
        open: Option<Date>,
        positions: impl Iterator<Item = EodInput<'a>> + Clone,
    ) -> Result<EodReport, SettleError> {
        check_open_date(date, open)?;
        if self.runs.contains(&date) {
            return Err(SettleError::AlreadyRun(date));
        }
        let empty = BTreeMap::new();
        let prices = self.prices.get(&date).unwrap_or(&empty);
        let missing: BTreeSet<InstrumentId> = positions
            .clone()
            .filter(|input| {
                is_margined(input.instrument)
                    && (!input.position.is_empty()
                        || self.accrued(input.key).variation_margin != Amount::ZERO)
            })
            .filter(|input| !prices.contains_key(&input.instrument.id))
            .map(|input| input.instrument.id)
            .collect();
        if !missing.is_empty() {
            return Err(SettleError::MissingPrices(missing.into_iter().collect()));
        }
        // Compute everything first, post after: nothing is posted half way.
        let mut planned: Vec<(EodInput<'a>, Vec<Movement>)> = Vec::new();
        for input in positions {
            let movements = self.movements(&input, prices)?;
            if !movements.is_empty() {
                planned.push((input, movements));
            }
        }
        let value_date = next_weekday(date);
        let mut report = EodReport {
            date,
            positions: planned.len(),
            postings: 0,
            variation_margin: BTreeMap::new(),
        };
        for (input, movements) in planned {
            let accrued = Arc::make_mut(&mut self.accrued).entry(input.key).or_default();
            for movement in movements {
                let slot = match movement.kind {
                    PostingKind::VariationMargin => &mut accrued.variation_margin,
                    PostingKind::Premium => &mut accrued.premium,
                    PostingKind::Fee => &mut accrued.fees,
                };
                *slot = slot
                    .checked_add(movement.amount)
                    .ok_or_else(|| SettleError::Overflow("accrued amount".into()))?;
                if movement.kind == PostingKind::VariationMargin {
                    let total = report.variation_margin.entry(movement.currency).or_default();
                    *total = total
                        .checked_add(movement.amount)
                        .ok_or_else(|| SettleError::Overflow("variation margin total".into()))?;
                }
                // Positive: the customer is owed; negative: the customer owes.
                let customer = LedgerAccount::Customer(input.account.id);
                let (debit, credit) = if movement.amount > Amount::ZERO {
                    (movement.counterparty, customer)
                } else {
                    (customer, movement.counterparty)
                };
                let amount =
                    if movement.amount > Amount::ZERO { movement.amount } else { -movement.amount };
                self.ledger.post(Posting {
                    id: 0,
                    business_date: date,
                    value_date,
                    kind: movement.kind,
                    debit,
                    credit,
                    amount,
                    currency: movement.currency,
                    instrument: input.instrument.id,
                })?;
                report.postings += 1;
            }
        }
        self.ledger.check()?;
        self.runs.insert(date);
        // Prices before this date are no longer needed: every true-up uses today's.
        Arc::make_mut(&mut self.prices).retain(|day, _| *day >= date);
        Ok(report)
    }

    /// The movements one position is owed today (rounded to the currency's cash unit).
    fn movements(
        &self,
        input: &EodInput<'_>,
        prices: &BTreeMap<InstrumentId, Price>,
    ) -> Result<Vec<Movement>, SettleError> {
        let instrument = input.instrument;
        let multiplier = i128::from(instrument.multiplier.get());
        let accrued = self.accrued(input.key);
        let clearing_house = LedgerAccount::ClearingHouse(instrument.exchange);
        let mut movements = Vec::new();
        let overflow =
            || SettleError::Overflow(format!("position {} in {}", input.account.id, instrument.id));
        let mut push =
            |kind, owed: i128, posted: Amount, currency, counterparty| -> Result<(), SettleError> {
                let due = owed.checked_sub(posted.nanos()).ok_or_else(overflow)?;
                let amount =
                    Amount::from_nanos(due).round_cash(currency, Rounding::HalfAwayFromZero);
                if amount != Amount::ZERO {
                    movements.push(Movement { kind, amount, currency, counterparty });
                }
                Ok(())
            };
        if is_margined(instrument) {
            // Everything still booked, marked to today's price: realized and unrealized P&L
            // to date. Variation margin is that, less what was paid before.
            let settle = prices.get(&instrument.id).map_or(0, |p| i128::from(p.nanos()));
            push(
                PostingKind::VariationMargin,
                marked_to(input.position, settle, multiplier).ok_or_else(overflow)?,
                accrued.variation_margin,
                instrument.currency,
                clearing_house,
            )?;
        } else {
            // Premium-style option: the buyer pays price x quantity x multiplier, which is the
            // bookings marked to zero.
            push(
                PostingKind::Premium,
                marked_to(input.position, 0, multiplier).ok_or_else(overflow)?,
                accrued.premium,
                instrument.currency,
                clearing_house,
            )?;
        }
        if let Some(rule) = self.fees.rule_for(instrument, input.account.kind) {
            let contracts: i128 =
                input.position.bookings().map(|b| i128::from(b.quantity.get())).sum();
            let owed = contracts.checked_mul(rule.per_contract.nanos()).ok_or_else(overflow)?;
            // Fees are owed by the customer: negative from its side.
            push(PostingKind::Fee, -owed, accrued.fees, rule.currency, LedgerAccount::FeeIncome)?;
        }
        Ok(movements)
    }
}

/// Every active booking marked to `mark` (price nanos): the sum of (mark - trade price) x
/// signed quantity x multiplier, in amount nanos. `None` on overflow.
fn marked_to(position: &Position, mark: i128, multiplier: i128) -> Option<i128> {
    position.bookings().try_fold(0i128, |sum, booking| {
        let signed = i128::from(booking.quantity.get() * booking.side.sign());
        (mark - i128::from(booking.price.nanos()))
            .checked_mul(signed * multiplier)
            .and_then(|value| sum.checked_add(value))
    })
}

/// End-of-day work runs for the open business date only.
fn check_open_date(date: Date, open: Option<Date>) -> Result<(), SettleError> {
    let open = open.ok_or(SettleError::BusinessDateNotOpen)?;
    if date != open {
        return Err(SettleError::NotTheOpenDate { requested: date, open });
    }
    Ok(())
}

/// Futures and futures-style options are marked to market daily; premium-style options are not.
fn is_margined(instrument: &Instrument) -> bool {
    match instrument.kind {
        InstrumentKind::Future => true,
        InstrumentKind::Option(terms) => {
            terms.premium_style == keel_domain::instrument::PremiumStyle::FuturesStyle
        }
    }
}

#[cfg(test)]
mod tests;
