//! `Engine`: capture + positions + cash adjustments for one tenant.

use std::collections::BTreeMap;

use keel_domain::{Account, Amount, Currency, Instrument, TenantId};
use keel_position_keeping::{Position, PositionError, Search, Terms};
use keel_trade_capture::{
    Accepted, AccountKey, Capture, Effect, InstrumentKey, Placement, TradeKey,
};

use crate::book::{position_key, split_key, PositionBook};
use crate::command::{Command, Envelope, Outcome, Reject};
use keel_domain::{CaptureError, Date};
use keel_domain::{PositionEffect, TradeAction, TradeReport};
use keel_settlement::{
    EodInput, ExpiryInput, FeeSchedule, SettleError, Settlement, SettlementPrices,
};

/// A fault that must stop the tenant: the journal or the pipeline broke an invariant. Client
/// mistakes are never faults; they are `Outcome::Rejected`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("sequence {got} does not follow {last}")]
    SequenceOutOfOrder { last: u64, got: u64 },
    #[error("position of account {account} in {instrument}: {source}")]
    Position { account: String, instrument: String, source: PositionError },
    #[error("snapshot is unreadable: {0}")]
    SnapshotCorrupt(String),
    #[error("snapshot format {found} is not supported (this build reads {supported})")]
    SnapshotVersion { found: u32, supported: u32 },
    #[error("amount overflows: {0}")]
    Overflow(&'static str),
    /// The ledger failed its zero-sum check: a defect, so the tenant stops rather than goes on
    /// with cash that does not balance.
    #[error("ledger check failed: {0}")]
    LedgerUnbalanced(String),
    #[error("snapshot belongs to tenant {found}, not {expected}")]
    SnapshotTenant { found: TenantId, expected: TenantId },
}

/// How many trades to probe ([`Engine::probe`]) before applying them. Enough for the probe's
/// loads to overlap (a core keeps a few dozen misses in flight), and few enough that what they
/// bring in is still in the core's own cache when the trades are applied: probing a whole
/// 500-trade request and then applying it found part of the probed state evicted again, and
/// the lookups in `apply` missed a second time (4-5% of the shard's samples). Two tenants'
/// closed loop, 10 s, alternating: windows of 96 to 256 gave 1.01M-1.05M instructions/s
/// against 0.97M-0.99M for whole requests (docs/benchmarks.md, eleventh session).
pub const PROBE_AHEAD: usize = 128;

/// One tenant's state.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) tenant: TenantId,
    pub(crate) capture: Capture,
    pub(crate) positions: PositionBook,
    /// Cash adjustments outside positions (average-price residuals), per account and currency.
    pub(crate) cash: BTreeMap<(AccountKey, Currency), Amount>,
    /// End of day: prices, fees, the ledger, what each position has been paid.
    pub(crate) settlement: Settlement,
    pub(crate) last_sequence: u64,
    pub(crate) last_timestamp_ns: i64,
    /// Scratch space reused across commands so that applying one allocates nothing.
    effects: Vec<Effect>,
}

/// A position with its account and instrument resolved, for queries and reports.
#[derive(Debug, Clone, Copy)]
pub struct PositionView<'a> {
    pub account: &'a Account,
    pub instrument: &'a Instrument,
    pub position: &'a Position,
}

impl Engine {
    /// Sizes the tenant's tables for `trades` trades and `positions` positions in all, so
    /// that reaching them costs no table growth (a copy of the arena and a rehash, each a
    /// stall of tens of milliseconds at a million entries). Memory is reserved, not touched:
    /// the resident set grows as it is used. Never shrinks anything.
    pub fn reserve(&mut self, trades: usize, positions: usize) {
        self.capture.reserve_trades(trades);
        self.positions.reserve(positions);
    }

    /// The report index's next size, to build on another thread (`IndexJob::build`) and hand
    /// back with `install_index`: the shard then never spends a doubling's worth of moves.
    /// The engine works the same whether or not anyone runs the job (replay does not).
    pub fn index_job(&mut self) -> Option<keel_trade_capture::IndexJob> {
        self.capture.index_job()
    }

    /// The report index's entries and the entries it holds before it grows in line.
    pub fn index_fill(&self) -> (usize, usize) {
        self.capture.index_fill()
    }

    /// As `index_job`, offered only once the index is `num / den` full (at least half): for a
    /// caller with other background work under way.
    pub fn index_job_from(
        &mut self,
        num: usize,
        den: usize,
    ) -> Option<keel_trade_capture::IndexJob> {
        self.capture.index_job_from(num, den)
    }

    /// Installs a built report index, drops it if an in-line growth overtook it, or hands it
    /// back for another round over the reports accepted while it was built.
    pub fn install_index(
        &mut self,
        built: keel_trade_capture::BuiltIndex,
    ) -> keel_trade_capture::Install {
        self.capture.install_index(built)
    }

    pub fn new(tenant: TenantId) -> Self {
        Self::from_parts(
            tenant,
            Capture::default(),
            PositionBook::default(),
            BTreeMap::new(),
            Settlement::default(),
            0,
            0,
        )
    }

    pub(crate) fn from_parts(
        tenant: TenantId,
        capture: Capture,
        positions: PositionBook,
        cash: BTreeMap<(AccountKey, Currency), Amount>,
        settlement: Settlement,
        last_sequence: u64,
        last_timestamp_ns: i64,
    ) -> Self {
        Self {
            tenant,
            capture,
            positions,
            cash,
            settlement,
            last_sequence,
            last_timestamp_ns,
            effects: Vec::with_capacity(16),
        }
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    pub fn capture(&self) -> &Capture {
        &self.capture
    }

    /// The sequence of the last command applied (0 before the first).
    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    /// Applies one command. Rejections and duplicates change nothing but the sequence.
    pub fn apply(&mut self, envelope: &Envelope) -> Result<Outcome, EngineError> {
        if envelope.sequence <= self.last_sequence {
            return Err(EngineError::SequenceOutOfOrder {
                last: self.last_sequence,
                got: envelope.sequence,
            });
        }
        self.last_sequence = envelope.sequence;
        self.last_timestamp_ns = envelope.timestamp_ns;
        let sequence = envelope.sequence;
        let mut effects = std::mem::take(&mut self.effects);
        effects.clear();
        let result: Result<Accepted, Reject> = match &envelope.command {
            Command::LoadSettlementPrices(prices) => self.load_prices(prices).map_err(Reject::from),
            Command::LoadFeeSchedule(schedule) => self.load_fees(schedule).map_err(Reject::from),
            Command::RunEndOfDay(date) => self.run_eod(*date).map_err(Reject::from),
            Command::ProcessExpiries { date, threshold } => {
                self.process_expiries(*date, *threshold, &mut effects).map_err(Reject::from)
            }
            capture => self.apply_capture(capture, sequence, &mut effects).map_err(Reject::from),
        };
        let applied = self.apply_effects(&effects);
        self.effects = effects;
        applied?;
        if let Err(Reject::Settle(error @ SettleError::LedgerUnbalanced { .. })) = &result {
            return Err(EngineError::LedgerUnbalanced(error.to_string()));
        }
        Ok(match result {
            Ok(Accepted::Applied) => Outcome::Accepted { sequence },
            Ok(Accepted::Duplicate { sequence }) => Outcome::Duplicate { sequence },
            Err(reason) => Outcome::Rejected(reason),
        })
    }

    /// Reads, without changing anything, the state trade `reports` will touch (at most
    /// [`PROBE_AHEAD`] of them at a time, applied right after): the report index,
    /// the amended or cancelled trade, the account and the position. Applying a batch right
    /// after probing it finds that state in cache: the probes are independent loads, so the
    /// CPU overlaps their misses (about 100 ns each to DRAM), where applying one command at a
    /// time waits for each in turn. The return value only keeps the reads from being
    /// optimized away. Costs a second hash per lookup; pays off once the tenant's state is
    /// larger than the cache.
    ///
    /// It goes in passes, each a short loop whose loads do not depend on one another, and
    /// each finding in cache what the one before brought in: a lookup is a chain of misses
    /// (index slot, record, trade, position index slot, position, its bookings, and for an
    /// amend or cancel the search for the booking it reverses), and a loop that walked each
    /// chain to its end kept about one miss in flight.
    pub fn probe<'a, I>(&self, reports: I) -> u64
    where
        I: IntoIterator<Item = &'a TradeReport>,
        I::IntoIter: Clone,
    {
        let reports = reports.into_iter();
        let capture = &self.capture;
        let reference = capture.reference();
        let target = |report: &'a TradeReport| match &report.action {
            TradeAction::Amend { target, .. } | TradeAction::Cancel { target } => Some(target),
            TradeAction::New(_) => None,
        };
        let mut sum = 0_u64;
        // 1. The report index's slots for each report's own id and the one it amends or
        // cancels: loads with no branch on what they hold.
        for report in reports.clone() {
            sum = sum.wrapping_add(u64::from(capture.touch_report(&report.report_id)));
            if let Some(target) = target(report) {
                sum = sum.wrapping_add(u64::from(capture.touch_report(target)));
            }
        }
        // 2. The records the lookups compare, and the trades they name, each a chain of two
        // misses in its arena (the chunk's table entry, then the element), fetched a link at
        // a time for the whole batch: where each lookup's first match points (its slots are in
        // cache now), those records' chunk entries, the records, the trades' chunk entries,
        // the trades. A new report's own id mostly matches nothing and costs nothing here.
        let mut candidates = Vec::with_capacity(2 * reports.size_hint().0);
        for report in reports.clone() {
            candidates.extend(capture.report_candidate(&report.report_id));
            if let Some(target) = target(report) {
                candidates.extend(capture.report_candidate(target));
            }
        }
        for &at in &candidates {
            sum = sum.wrapping_add(capture.touch_report_chunk(at) as u64);
        }
        let trades: Vec<TradeKey> =
            candidates.iter().map(|&at| TradeKey(capture.touch_report_record(at))).collect();
        for &trade in &trades {
            sum = sum.wrapping_add(capture.touch_trade_chunk(trade) as u64);
        }
        for &trade in &trades {
            sum = sum.wrapping_add(u64::from(capture.touch_trade(trade)));
        }
        // The lookups themselves, everything they read now in cache.
        let record = |id| capture.report(id).map_or(0, |record| record.sequence);
        for report in reports.clone() {
            sum = sum.wrapping_add(record(&report.report_id));
            if let Some(target) = target(report) {
                sum = sum.wrapping_add(record(target));
            }
        }
        // 3. The positions they book to: the amended or cancelled trade's (its record and the
        // trade now in cache), and the new details' (account and instrument from the
        // small reference maps); then each of their index slots touched.
        let mut keys = Vec::with_capacity(2 * reports.size_hint().0);
        let mut reversals = Vec::new();
        for report in reports {
            let (target, details) = match &report.action {
                TradeAction::New(details) => (None, Some(details)),
                TradeAction::Amend { target, details } => (Some(target), Some(details)),
                TradeAction::Cancel { target } => (Some(target), None),
            };
            if let Some(trade) = target.and_then(|target| capture.find_trade(target)) {
                let trade = capture.trade(trade);
                let key = position_key(trade.account, trade.instrument);
                keys.push(key);
                if let Placement::Single(booking) = trade.placement {
                    reversals.push((key, booking, trade.booked_at));
                }
            }
            if let Some(details) = details {
                let account = reference.account_key(&details.account);
                let instrument = reference.instrument_key(&details.instrument);
                if let (Some(account), Some(instrument)) = (account, instrument) {
                    keys.push(position_key(account, instrument));
                }
            }
        }
        for &key in &keys {
            sum = sum.wrapping_add(u64::from(self.positions.touch(key)));
        }
        // 4. The positions and the bookings a booking reads.
        for &key in &keys {
            sum = sum.wrapping_add(self.positions.get(key).map_or(0, Position::probe));
        }
        // 5. Where each booking to be reversed sits in its position: one read where it was
        // booked (the trade record's hint), or, if it has moved since, a search through what
        // can be megabytes of bookings, a miss per step. The searches go a step at a time in
        // lockstep, so that each round's reads (one per search) overlap.
        let mut searches: Vec<_> = reversals
            .iter()
            .filter_map(|&(key, booking, hint)| {
                let position = self.positions.get(key)?;
                Some((position, Search::hinted(position, booking, hint)))
            })
            .collect();
        let mut searching = searches.len();
        while searching > 0 {
            searching = 0;
            for (position, search) in &mut searches {
                if search.result().is_none() {
                    sum = sum.wrapping_add(position.search_step(search));
                    searching += 1;
                }
            }
        }
        sum
    }

    /// Trade capture's commands.
    fn apply_capture(
        &mut self,
        command: &Command,
        sequence: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<Accepted, CaptureError> {
        match command {
            Command::Trade(report) => self.capture.apply_trade(report, sequence, effects),
            Command::GiveUp(response) => self.capture.apply_give_up(response, sequence, effects),
            Command::AveragePrice(allocation) => {
                self.capture.apply_average_price(allocation, sequence, effects)
            }
            Command::OpenBusinessDate(date) => {
                self.capture.open_business_date(*date).map(|()| Accepted::Applied)
            }
            Command::DefineInstrument(instrument) => {
                self.capture.define_instrument(*instrument).map(|()| Accepted::Applied)
            }
            Command::DefineAccount(account) => {
                self.capture.define_account(*account).map(|()| Accepted::Applied)
            }
            Command::LoadSettlementPrices(_)
            | Command::LoadFeeSchedule(_)
            | Command::RunEndOfDay(_)
            | Command::ProcessExpiries { .. } => {
                unreachable!("settlement commands are dispatched before capture's")
            }
        }
    }

    fn load_prices(&mut self, prices: &SettlementPrices) -> Result<Accepted, SettleError> {
        let reference = self.capture.reference();
        let open = reference.business_date().ok_or(SettleError::BusinessDateNotOpen)?;
        if prices.date != open {
            return Err(SettleError::NotTheOpenDate { requested: prices.date, open });
        }
        let lookup = |id: &keel_domain::InstrumentId| {
            reference.instrument_key(id).map(|key| reference.instrument(key))
        };
        let checked = keel_settlement::prices::validate(&prices.prices, lookup)?;
        self.settlement.load_prices(prices.date, checked);
        Ok(Accepted::Applied)
    }

    fn load_fees(&mut self, schedule: &FeeSchedule) -> Result<Accepted, SettleError> {
        schedule.validate(self.capture.reference().instruments().iter())?;
        self.settlement.load_fees(schedule.clone());
        Ok(Accepted::Applied)
    }

    fn run_eod(&mut self, date: Date) -> Result<Accepted, SettleError> {
        let reference = self.capture.reference();
        let inputs: Vec<EodInput<'_>> = self
            .positions
            .iter_all()
            .map(|(key, position)| {
                let (account, instrument) = split_key(key);
                EodInput {
                    key,
                    account: reference.account(account),
                    instrument: reference.instrument(instrument),
                    position,
                }
            })
            .collect();
        self.settlement.run_eod(date, reference.business_date(), inputs.iter().copied())?;
        Ok(Accepted::Applied)
    }

    fn process_expiries(
        &mut self,
        date: Date,
        threshold: keel_domain::Price,
        effects: &mut Vec<Effect>,
    ) -> Result<Accepted, SettleError> {
        let reference = self.capture.reference();
        let inputs: Vec<ExpiryInput<'_>> = self
            .positions
            .iter()
            .filter_map(|(key, position)| {
                let (account, instrument) = split_key(key);
                let instrument = reference.instrument(instrument);
                if instrument.last_trade_date != date {
                    return None;
                }
                let underlying = match instrument.kind {
                    keel_domain::InstrumentKind::Option(terms) => {
                        reference.instrument_key(&terms.underlying).map(|k| reference.instrument(k))
                    }
                    keel_domain::InstrumentKind::Future => None,
                };
                let account = reference.account(account);
                let (long, short) = (position.long(), position.short());
                Some(ExpiryInput { key, account, instrument, underlying, long, short })
            })
            .collect();
        let open = reference.business_date();
        let records = self.settlement.plan_expiries(date, open, &inputs, threshold)?;
        for record in &records {
            let (account, _) = split_key(record.key);
            for booking in &record.bookings {
                let reference = self.capture.reference();
                let instrument = reference
                    .instrument_key(&booking.instrument)
                    .ok_or(SettleError::UnknownInstrument(booking.instrument))?;
                let effect =
                    if booking.closes { PositionEffect::Close } else { PositionEffect::Open };
                let (side, quantity, price) = (booking.side, booking.quantity, booking.price);
                self.capture
                    .book_system(account, instrument, side, quantity, price, effect, effects);
            }
        }
        self.settlement.record_expiries(date, records);
        Ok(Accepted::Applied)
    }

    pub fn settlement(&self) -> &Settlement {
        &self.settlement
    }

    fn apply_effects(&mut self, effects: &[Effect]) -> Result<(), EngineError> {
        for effect in effects {
            match *effect {
                Effect::Book { account, instrument, booking, trade } => {
                    let terms = self.terms(account, instrument);
                    let key = position_key(account, instrument);
                    let position = self.positions.get_or_insert(key);
                    let at = position
                        .book(terms, booking)
                        .map_err(|e| position_error(&self.capture, account, instrument, e))?;
                    if let Some(trade) = trade {
                        self.capture.note_booked_at(trade, at);
                    }
                }
                Effect::Reverse { account, instrument, booking, hint } => {
                    let terms = self.terms(account, instrument);
                    let key = position_key(account, instrument);
                    let fault = |e| position_error(&self.capture, account, instrument, e);
                    let position = self
                        .positions
                        .get_mut(key)
                        .ok_or_else(|| fault(PositionError::UnknownBooking(booking)))?;
                    position.reverse_hinted(terms, booking, hint).map_err(fault)?;
                }
                Effect::Cash { account, currency, amount } => {
                    let balance = self.cash.entry((account, currency)).or_default();
                    *balance = balance
                        .checked_add(amount)
                        .ok_or(EngineError::Overflow("cash adjustment balance"))?;
                }
            }
        }
        Ok(())
    }

    #[inline]
    fn terms(&self, account: AccountKey, instrument: InstrumentKey) -> Terms {
        let reference = self.capture.reference();
        Terms {
            mode: reference.account(account).position_mode,
            multiplier: reference.instrument(instrument).multiplier,
        }
    }

    /// True when `command` was accepted before with identical content (see
    /// `Capture::is_duplicate`); reference-data and date commands never are.
    pub fn is_duplicate(&self, command: &Command) -> bool {
        match command {
            Command::Trade(report) => self.capture.is_duplicate(&report.report_id, report),
            Command::GiveUp(response) => self.capture.is_duplicate(&response.report_id, response),
            Command::AveragePrice(allocation) => {
                self.capture.is_duplicate(&allocation.report_id, allocation)
            }
            _ => false,
        }
    }

    /// Every non-empty position, ordered by account then instrument id.
    pub fn positions(&self) -> Vec<PositionView<'_>> {
        let reference = self.capture.reference();
        let mut views: Vec<PositionView<'_>> = self
            .positions
            .iter()
            .map(|(key, position)| {
                let (account, instrument) = split_key(key);
                PositionView {
                    account: reference.account(account),
                    instrument: reference.instrument(instrument),
                    position,
                }
            })
            .collect();
        views.sort_unstable_by(|a, b| {
            (a.account.id, a.instrument.id).cmp(&(b.account.id, b.instrument.id))
        });
        views
    }

    /// The position of `account` in `instrument`, if any is booked.
    pub fn position(
        &self,
        account: &keel_domain::AccountId,
        instrument: &keel_domain::InstrumentId,
    ) -> Option<&Position> {
        let reference = self.capture.reference();
        let key =
            position_key(reference.account_key(account)?, reference.instrument_key(instrument)?);
        self.positions.get(key)
    }

    /// Cash adjustments (average-price residuals), by account id and currency.
    pub fn cash_adjustments(&self) -> Vec<(&Account, Currency, Amount)> {
        let reference = self.capture.reference();
        self.cash
            .iter()
            .map(|((account, currency), amount)| (reference.account(*account), *currency, *amount))
            .collect()
    }

    /// Number of open lots over all positions.
    pub fn open_lots(&self) -> usize {
        self.positions.iter().map(|(_, p)| p.open_lot_count()).sum()
    }
}

fn position_error(
    capture: &Capture,
    account: AccountKey,
    instrument: InstrumentKey,
    source: PositionError,
) -> EngineError {
    let reference = capture.reference();
    EngineError::Position {
        account: reference.account(account).id.to_string(),
        instrument: reference.instrument(instrument).id.to_string(),
        source,
    }
}
