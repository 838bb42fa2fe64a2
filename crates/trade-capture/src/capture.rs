//! The capture state machine: one method per instruction, each all-or-nothing. Every check
//! runs before the first change, so a rejection leaves the state exactly as it was.

use std::hash::Hash;

use keel_domain::fixed::div_round;
use keel_domain::{
    Account, AccountKind, Amount, AveragePriceAllocation, CaptureError, Currency, GiveUpDecision,
    GiveUpResponse, GroupId, Instrument, PositionEffect, Price, Quantity, ReportId, Rounding, Side,
    Split, TradeAction, TradeDetails, TradeReport,
};
use keel_domain::{CanonSink, CowVec};
use keel_position_keeping::{Booking, BookingId, EntryHint};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::record::{
    GroupAllocation, GroupKey, GroupRecord, Placed, Placement, ReportKind, TradeKey, TradeRecord,
    TradeStatus,
};
use crate::reference::{AccountKey, InstrumentKey, Reference};
use crate::reports::{ReportRecord, ReportTable};
use crate::validate::{check_quantity, resolve, Resolved};

/// What an accepted instruction does to positions and cash, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Book {
        account: AccountKey,
        instrument: InstrumentKey,
        booking: Booking,
        /// The trade whose single booking this is: where the position places it goes back to
        /// the trade's record (`Capture::note_booked_at`), for its reversal to look there first.
        trade: Option<TradeKey>,
    },
    Reverse {
        account: AccountKey,
        instrument: InstrumentKey,
        booking: BookingId,
        /// Where the booking was placed, if known (see `EntryHint`).
        hint: EntryHint,
    },
    /// A cash adjustment outside positions (average-price rounding residuals).
    Cash { account: AccountKey, currency: Currency, amount: Amount },
}

/// How an instruction was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Accepted {
    /// Applied now, at the sequence given with it.
    Applied,
    /// The same report was accepted before, at `sequence`; nothing changed.
    Duplicate { sequence: u64 },
}

/// Trades, report ids and average-price groups of one tenant, over its reference data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Capture {
    reference: Reference,
    /// Copy-on-write, like the report table's records: `image` shares them.
    trades: CowVec<TradeRecord>,
    reports: ReportTable,
    /// Bookings of allocated trades, one per split.
    #[serde(serialize_with = "sorted::serialize", deserialize_with = "sorted::deserialize")]
    splits: FxHashMap<TradeKey, Box<[Placed]>>,
    groups: Vec<GroupRecord>,
    #[serde(skip)]
    group_index: FxHashMap<GroupId, GroupKey>,
    next_booking: u64,
}

/// The instructions on a new or amended trade beyond booking it to its account.
enum Instruction {
    Plain,
    GiveUp(keel_domain::FirmId),
    Allocate(Vec<(AccountKey, Quantity)>),
    Group(Option<GroupKey>),
}

impl Capture {
    /// Makes room for `trades` trades in all (report ids and trade records), so that a tenant
    /// sized for its volume never grows its tables (a copy and a rehash) in mid-session.
    pub fn reserve_trades(&mut self, trades: usize) {
        self.trades.reserve(trades.saturating_sub(self.trades.len()));
        self.reports.reserve(trades.saturating_sub(self.reports.len()));
    }

    /// A job building the report index's next size off this thread (`ReportTable::index_job`).
    pub fn index_job(&mut self) -> Option<crate::reports::IndexJob> {
        self.reports.index_job()
    }

    /// The report index's entries and capacity (`ReportTable::index_fill`).
    pub fn index_fill(&self) -> (usize, usize) {
        self.reports.index_fill()
    }

    /// As `index_job`, offered only from `num / den` full (`ReportTable::index_job_from`).
    pub fn index_job_from(&mut self, num: usize, den: usize) -> Option<crate::reports::IndexJob> {
        self.reports.index_job_from(num, den)
    }

    /// Installs what an `index_job` built, or hands it back for another round
    /// (`ReportTable::install_index`).
    pub fn install_index(&mut self, built: crate::reports::BuiltIndex) -> crate::reports::Install {
        self.reports.install_index(built)
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    pub fn trades(&self) -> &CowVec<TradeRecord> {
        &self.trades
    }

    /// Writes the snapshot encoding (exactly `Serialize`'s bytes) into `sink`, the trade and
    /// report arenas by hand (`keel_domain::canon`).
    pub fn write_canon(&self, sink: &mut impl CanonSink) {
        let Capture { reference, trades, reports, splits, groups, group_index: _, next_booking } =
            self;
        sink.serde(reference);
        sink.arena(trades);
        reports.write_canon(sink);
        let mut splits: Vec<_> = splits.iter().collect();
        splits.sort_unstable_by(|a, b| a.0.cmp(b.0));
        sink.serde(&splits);
        sink.serde(groups);
        sink.put(next_booking);
    }

    /// As `write_canon` (the same bytes), consuming an image: each group of the trade and
    /// report arenas is let go as soon as it is encoded, so that the shard's writes to what
    /// the pass has done with copy nothing (`CowVec::drain_chunks`).
    pub fn write_canon_drained(self, sink: &mut impl CanonSink) {
        let Capture { reference, trades, reports, splits, groups, group_index: _, next_booking } =
            self;
        sink.serde(&reference);
        sink.arena_drained(trades);
        reports.write_canon_drained(sink);
        let mut splits: Vec<_> = splits.iter().collect();
        splits.sort_unstable_by(|a, b| a.0.cmp(b.0));
        sink.serde(&splits);
        sink.serde(&groups);
        sink.put(&next_booking);
    }

    /// A frozen copy for writing a snapshot: the arenas' chunks are shared (copy-on-write)
    /// and the indexes are left out, so it costs one pointer per chunk plus the small tables.
    /// It serializes exactly like `self` but must not be queried: it cannot find anything.
    pub fn image(&mut self) -> Capture {
        Capture {
            reference: self.reference.image(),
            trades: self.trades.share(),
            reports: self.reports.image(),
            splits: self.splits.clone(),
            groups: self.groups.clone(),
            group_index: FxHashMap::default(),
            next_booking: self.next_booking,
        }
    }

    /// Where the position placed trade `key`'s single booking (from the engine, once it has
    /// applied the `Effect::Book` naming the trade): where that booking's reversal looks first.
    pub fn note_booked_at(&mut self, key: TradeKey, at: EntryHint) {
        self.trades[key.0 as usize].booked_at = at;
    }

    pub fn trade(&self, key: TradeKey) -> &TradeRecord {
        &self.trades[key.0 as usize]
    }

    /// The trade created by the `New` report `trade_id`.
    pub fn find_trade(&self, trade_id: &ReportId) -> Option<TradeKey> {
        let entry = self.reports.get(trade_id)?;
        (entry.kind == ReportKind::New).then_some(entry.trade)
    }

    /// The bookings an allocated trade was split into.
    pub fn splits(&self, key: TradeKey) -> &[Placed] {
        self.splits.get(&key).map_or(&[], |placed| placed)
    }

    pub fn report(&self, report_id: &ReportId) -> Option<&ReportRecord> {
        self.reports.get(report_id)
    }

    /// Loads the report index slot where a lookup of `report_id` starts, for a batch's probe
    /// (`ReportTable::touch`).
    #[inline]
    pub fn touch_report(&self, report_id: &ReportId) -> u32 {
        self.reports.touch(report_id)
    }

    /// The arena position of the report record a lookup of `report_id` would compare first
    /// (`ReportTable::candidate`), for a batch's probe.
    #[inline]
    pub fn report_candidate(&self, report_id: &ReportId) -> Option<u32> {
        self.reports.candidate(report_id)
    }

    /// Loads the chunk table entry of report record `at` (`CowVec::touch_chunk`).
    #[inline]
    pub fn touch_report_chunk(&self, at: u32) -> usize {
        self.reports.records().touch_chunk(at as usize)
    }

    /// Loads report record `at`, returning its trade key (0 past the end).
    #[inline]
    pub fn touch_report_record(&self, at: u32) -> u32 {
        self.reports.records().get(at as usize).map_or(0, |record| record.trade.0)
    }

    /// Loads the chunk table entry of trade `key` (`CowVec::touch_chunk`).
    #[inline]
    pub fn touch_trade_chunk(&self, key: TradeKey) -> usize {
        self.trades.touch_chunk(key.0 as usize)
    }

    /// Loads trade `key`, returning its account key's number (0 past the end).
    #[inline]
    pub fn touch_trade(&self, key: TradeKey) -> u32 {
        self.trades.get(key.0 as usize).map_or(0, |trade| trade.account.0)
    }

    pub fn groups(&self) -> &[GroupRecord] {
        &self.groups
    }

    pub fn open_business_date(&mut self, date: keel_domain::Date) -> Result<(), CaptureError> {
        self.reference.open_business_date(date)
    }

    pub fn define_instrument(&mut self, instrument: Instrument) -> Result<(), CaptureError> {
        self.reference.define_instrument(instrument).map(drop)
    }

    pub fn define_account(&mut self, account: Account) -> Result<(), CaptureError> {
        self.reference.define_account(account).map(drop)
    }

    /// Rebuilds derived indexes after deserialization.
    pub fn reindex(&mut self) {
        self.reference.reindex();
        self.reports.reindex();
        self.group_index =
            self.groups.iter().enumerate().map(|(i, g)| (g.id, GroupKey(i as u32))).collect();
    }

    /// New, amend or cancel. `sequence` is the tenant sequence of the command carrying it.
    pub fn apply_trade(
        &mut self,
        report: &TradeReport,
        sequence: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<Accepted, CaptureError> {
        let fingerprint = fingerprint(report);
        if let Some(duplicate) = self.check_report_id(&report.report_id, fingerprint)? {
            return Ok(duplicate);
        }
        let (trade, kind) = match &report.action {
            TradeAction::New(details) => {
                (self.new_trade(report.report_id, details, effects)?, ReportKind::New)
            }
            TradeAction::Amend { target, details } => {
                (self.amend(target, details, effects)?, ReportKind::Amend)
            }
            TradeAction::Cancel { target } => (self.cancel(target, effects)?, ReportKind::Cancel),
        };
        self.remember(report.report_id, fingerprint, sequence, trade, kind);
        Ok(Accepted::Applied)
    }

    /// True when `instruction` (a trade report, give-up response or average-price allocation
    /// under `report_id`) was accepted before with identical content: applying it again would
    /// answer `Duplicate` and change nothing.
    pub fn is_duplicate(&self, report_id: &ReportId, instruction: &impl Hash) -> bool {
        matches!(self.check_report_id(report_id, fingerprint(instruction)), Ok(Some(_)))
    }

    /// A booking made by the system rather than by a trade report (expiry: options closed,
    /// futures opened by exercise or assignment, futures closed at final settlement). It takes
    /// the next booking id like any other; it belongs to no trade and is never reversed.
    #[allow(clippy::too_many_arguments, reason = "a booking is these seven facts")]
    pub fn book_system(
        &mut self,
        account: AccountKey,
        instrument: InstrumentKey,
        side: Side,
        quantity: Quantity,
        price: Price,
        effect: PositionEffect,
        effects: &mut Vec<Effect>,
    ) {
        self.book(None, account, instrument, side, quantity, price, effect, effects);
    }

    /// The receiving firm accepts (the trade moves to its account) or rejects a give-up.
    pub fn apply_give_up(
        &mut self,
        response: &GiveUpResponse,
        sequence: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<Accepted, CaptureError> {
        let fingerprint = fingerprint(response);
        if let Some(duplicate) = self.check_report_id(&response.report_id, fingerprint)? {
            return Ok(duplicate);
        }
        let key =
            self.find_trade(&response.trade).ok_or(CaptureError::UnknownTrade(response.trade))?;
        let trade = self.trade(key);
        let TradeStatus::PendingGiveUp { to } = trade.status else {
            return Err(CaptureError::NoPendingGiveUp(response.trade));
        };
        let to = self.reference.firm(to);
        if response.firm != to {
            return Err(CaptureError::GiveUpWrongFirm { responder: response.firm, target: to });
        }
        let status = match response.decision {
            GiveUpDecision::Reject => TradeStatus::Active,
            GiveUpDecision::Accept { account } => {
                let target = self
                    .reference
                    .account_key(&account)
                    .ok_or(CaptureError::UnknownAccount(account))?;
                if self.reference.account(target).firm != to {
                    return Err(CaptureError::AccountNotCarriedByFirm { account, firm: to });
                }
                let from = trade.account;
                self.unplace(key, effects);
                let trade = &self.trades[key.0 as usize];
                let (instrument, side, quantity, price, effect) =
                    (trade.instrument, trade.side, trade.quantity, trade.price, trade.effect);
                let placed = self.book(
                    Some(key),
                    target,
                    instrument,
                    side,
                    quantity,
                    price,
                    effect,
                    effects,
                );
                let trade = &mut self.trades[key.0 as usize];
                trade.account = target;
                trade.placement = Placement::Single(placed.booking);
                TradeStatus::GivenUp { from }
            }
        };
        self.trades[key.0 as usize].status = status;
        self.remember(response.report_id, fingerprint, sequence, key, ReportKind::GiveUp);
        Ok(Accepted::Applied)
    }

    /// Allocates an average-price group at the volume-weighted price of its fills, rounded to the
    /// instrument's price decimals; the rounding residual goes to the named residual account.
    pub fn apply_average_price(
        &mut self,
        allocation: &AveragePriceAllocation,
        sequence: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<Accepted, CaptureError> {
        let fingerprint = fingerprint(allocation);
        if let Some(duplicate) = self.check_report_id(&allocation.report_id, fingerprint)? {
            return Ok(duplicate);
        }
        let group_key = *self
            .group_index
            .get(&allocation.group)
            .ok_or(CaptureError::UnknownGroup(allocation.group))?;
        let group = &self.groups[group_key.0 as usize];
        if group.allocation.is_some() {
            return Err(CaptureError::GroupAlreadyAllocated {
                trade: allocation.report_id,
                group: group.id,
            });
        }
        let (quantity, cost) = self.group_totals(group);
        if quantity == 0 {
            return Err(CaptureError::GroupEmpty(group.id));
        }
        let residual_account = self
            .reference
            .account_key(&allocation.residual_account)
            .ok_or(CaptureError::UnknownAccount(allocation.residual_account))?;
        if self.reference.account(residual_account).kind != AccountKind::Residual {
            return Err(CaptureError::NotAResidualAccount(allocation.residual_account));
        }
        let holding = self.reference.account(group.account);
        let splits =
            self.resolve_splits(&allocation.splits, holding.firm, Quantity::new(quantity))?;
        let (holding_account, instrument_key, side) = (group.account, group.instrument, group.side);
        let instrument = self.reference.instrument(instrument_key);
        let (currency, multiplier) = (instrument.currency, instrument.multiplier.get());
        let average = average_price(cost, quantity, u32::from(instrument.price_decimals))?;
        // The holding account buys (sells) at the fills' prices and gives up the lot at the
        // rounded average: what it is left with is the residual, moved to the residual account.
        let residual = (i128::from(average.nanos()) * i128::from(quantity) - cost)
            .checked_mul(i128::from(side.sign() * multiplier))
            .map(Amount::from_nanos)
            .ok_or(CaptureError::Overflow("average-price residual".into()))?;

        let out = self.book(
            None,
            holding_account,
            instrument_key,
            side.opposite(),
            Quantity::new(quantity),
            average,
            PositionEffect::Close,
            effects,
        );
        let placed = splits
            .iter()
            .map(|&(account, qty)| {
                self.book(
                    None,
                    account,
                    instrument_key,
                    side,
                    qty,
                    average,
                    PositionEffect::Open,
                    effects,
                )
            })
            .collect();
        if residual != Amount::ZERO {
            effects.push(Effect::Cash { account: holding_account, currency, amount: -residual });
            effects.push(Effect::Cash { account: residual_account, currency, amount: residual });
        }
        self.groups[group_key.0 as usize].allocation = Some(GroupAllocation {
            average_price: average,
            quantity: Quantity::new(quantity),
            holding: out,
            splits: placed,
            residual_account,
            residual,
        });
        let first_fill = self.groups[group_key.0 as usize].fills[0];
        self.remember(
            allocation.report_id,
            fingerprint,
            sequence,
            first_fill,
            ReportKind::AveragePrice,
        );
        Ok(Accepted::Applied)
    }

    /// `Some(Duplicate)` for an identical resubmission, an error for a different report under a
    /// used id, `None` for a fresh id.
    #[inline]
    fn check_report_id(
        &self,
        report_id: &ReportId,
        fingerprint: [u64; 2],
    ) -> Result<Option<Accepted>, CaptureError> {
        match self.reports.get(report_id) {
            None => Ok(None),
            Some(entry) if entry.fingerprint == fingerprint => {
                Ok(Some(Accepted::Duplicate { sequence: entry.sequence }))
            }
            Some(_) => Err(CaptureError::ReportIdReused(*report_id)),
        }
    }

    fn remember(
        &mut self,
        report_id: ReportId,
        fingerprint: [u64; 2],
        sequence: u64,
        trade: TradeKey,
        kind: ReportKind,
    ) {
        self.reports.insert(ReportRecord { id: report_id, kind, trade, fingerprint, sequence });
    }

    fn new_trade(
        &mut self,
        report_id: ReportId,
        details: &TradeDetails,
        effects: &mut Vec<Effect>,
    ) -> Result<TradeKey, CaptureError> {
        let resolved = resolve(&self.reference, details)?;
        let instruction = self.check_instructions(report_id, details, &resolved, None)?;
        if self.trades.len() >= u32::MAX as usize {
            return Err(CaptureError::Overflow("trades per tenant".into()));
        }
        let key = TradeKey(self.trades.len() as u32);
        self.trades.push(TradeRecord {
            account: resolved.account,
            instrument: resolved.instrument,
            side: details.side,
            quantity: details.quantity,
            price: details.price,
            trade_date: details.trade_date,
            effect: details.position_effect,
            executing_firm: self.reference.intern_firm(details.executing_firm),
            venue: details.venue.map(|venue| self.reference.intern_venue(venue)),
            group: None,
            version: 1,
            status: TradeStatus::Active,
            placement: Placement::None,
            booked_at: EntryHint::NONE,
        });
        self.place(key, details, instruction, effects);
        Ok(key)
    }

    fn amend(
        &mut self,
        target: &ReportId,
        details: &TradeDetails,
        effects: &mut Vec<Effect>,
    ) -> Result<TradeKey, CaptureError> {
        let key = self.amendable(target)?;
        let resolved = resolve(&self.reference, details)?;
        let instruction = self.check_instructions(*target, details, &resolved, Some(key))?;
        self.unplace(key, effects);
        let trade = &mut self.trades[key.0 as usize];
        trade.account = resolved.account;
        trade.instrument = resolved.instrument;
        trade.side = details.side;
        trade.quantity = details.quantity;
        trade.price = details.price;
        trade.trade_date = details.trade_date;
        trade.effect = details.position_effect;
        trade.executing_firm = self.reference.intern_firm(details.executing_firm);
        trade.venue = details.venue.map(|venue| self.reference.intern_venue(venue));
        trade.version += 1;
        trade.status = TradeStatus::Active;
        self.place(key, details, instruction, effects);
        Ok(key)
    }

    fn cancel(
        &mut self,
        target: &ReportId,
        effects: &mut Vec<Effect>,
    ) -> Result<TradeKey, CaptureError> {
        let key = self.amendable(target)?;
        self.unplace(key, effects);
        let trade = &mut self.trades[key.0 as usize];
        trade.status = TradeStatus::Cancelled;
        trade.version += 1;
        Ok(key)
    }

    /// The trade `target` names, if it may still be amended or cancelled.
    fn amendable(&self, target: &ReportId) -> Result<TradeKey, CaptureError> {
        let key = self.find_trade(target).ok_or(CaptureError::UnknownTrade(*target))?;
        let trade = self.trade(key);
        match trade.status {
            TradeStatus::Active => {}
            TradeStatus::Cancelled => return Err(CaptureError::TradeAlreadyCancelled(*target)),
            TradeStatus::PendingGiveUp { .. } => {
                return Err(CaptureError::TradePendingGiveUp(*target))
            }
            TradeStatus::GivenUp { .. } => return Err(CaptureError::TradeGivenUp(*target)),
        }
        if let Some(group) = trade.group {
            let group = &self.groups[group.0 as usize];
            if group.allocation.is_some() {
                return Err(CaptureError::GroupAlreadyAllocated {
                    trade: *target,
                    group: group.id,
                });
            }
        }
        Ok(key)
    }

    /// Checks give-up, allocation and average-price instructions. `amending` is the trade being
    /// replaced, which may stay in its own group.
    fn check_instructions(
        &self,
        report_id: ReportId,
        details: &TradeDetails,
        resolved: &Resolved,
        amending: Option<TradeKey>,
    ) -> Result<Instruction, CaptureError> {
        let allocates = !details.allocations.is_empty();
        let groups = details.average_price_group.is_some();
        if (details.give_up_to.is_some() && (allocates || groups)) || (allocates && groups) {
            return Err(CaptureError::ConflictingInstructions);
        }
        if let Some(firm) = details.give_up_to {
            if firm == details.clearing_firm {
                return Err(CaptureError::GiveUpToSelf(firm));
            }
            return Ok(Instruction::GiveUp(firm));
        }
        let account = self.reference.account(resolved.account);
        if (allocates || groups) && !account.kind.can_allocate() {
            return Err(CaptureError::AccountCannotAllocate(account.id));
        }
        if allocates {
            let splits =
                self.resolve_splits(&details.allocations, account.firm, details.quantity)?;
            return Ok(Instruction::Allocate(splits));
        }
        let Some(group_id) = details.average_price_group else { return Ok(Instruction::Plain) };
        let Some(&group_key) = self.group_index.get(&group_id) else {
            return Ok(Instruction::Group(None));
        };
        let group = &self.groups[group_key.0 as usize];
        if group.allocation.is_some() {
            return Err(CaptureError::GroupAlreadyAllocated { trade: report_id, group: group_id });
        }
        // An empty group (all fills cancelled) or one whose only fill is being amended may change
        // its account, instrument or side; otherwise every fill must agree.
        let only_member =
            group.fills.is_empty() || amending.is_some_and(|key| group.fills == [key]);
        let matches = group.account == resolved.account
            && group.instrument == resolved.instrument
            && group.side == details.side;
        if !matches && !only_member {
            return Err(CaptureError::GroupMismatch(group_id));
        }
        Ok(Instruction::Group(Some(group_key)))
    }

    /// Resolves allocation splits: known accounts of `firm`, positive quantities summing to
    /// `quantity` exactly.
    fn resolve_splits(
        &self,
        splits: &[Split],
        firm: keel_domain::FirmId,
        quantity: Quantity,
    ) -> Result<Vec<(AccountKey, Quantity)>, CaptureError> {
        let mut resolved = Vec::with_capacity(splits.len());
        let mut allocated: i64 = 0;
        for split in splits {
            let key = self
                .reference
                .account_key(&split.account)
                .ok_or(CaptureError::UnknownAccount(split.account))?;
            if self.reference.account(key).firm != firm {
                return Err(CaptureError::AccountNotCarriedByFirm { account: split.account, firm });
            }
            check_quantity(split.quantity)?;
            allocated = allocated.saturating_add(split.quantity.get());
            resolved.push((key, split.quantity));
        }
        if allocated != quantity.get() {
            return Err(CaptureError::AllocationQuantityMismatch {
                allocated: Quantity::new(allocated),
                quantity,
            });
        }
        Ok(resolved)
    }

    /// Books a (new or amended) trade according to its instruction.
    fn place(
        &mut self,
        key: TradeKey,
        details: &TradeDetails,
        instruction: Instruction,
        effects: &mut Vec<Effect>,
    ) {
        let trade = &self.trades[key.0 as usize];
        let (account, instrument, side, quantity, price, effect) = (
            trade.account,
            trade.instrument,
            trade.side,
            trade.quantity,
            trade.price,
            trade.effect,
        );
        let mut group = None;
        let (placement, status) = match instruction {
            Instruction::Plain => {
                let placed = self.book(
                    Some(key),
                    account,
                    instrument,
                    side,
                    quantity,
                    price,
                    effect,
                    effects,
                );
                (Placement::Single(placed.booking), TradeStatus::Active)
            }
            Instruction::GiveUp(to) => {
                let to = self.reference.intern_firm(to);
                let placed = self.book(
                    Some(key),
                    account,
                    instrument,
                    side,
                    quantity,
                    price,
                    effect,
                    effects,
                );
                (Placement::Single(placed.booking), TradeStatus::PendingGiveUp { to })
            }
            Instruction::Allocate(splits) => {
                let open = PositionEffect::Open;
                let placed = splits
                    .iter()
                    .map(|&(target, qty)| {
                        self.book(None, target, instrument, side, qty, price, open, effects)
                    })
                    .collect();
                self.splits.insert(key, placed);
                (Placement::Split, TradeStatus::Active)
            }
            Instruction::Group(existing) => {
                let group_id = details
                    .average_price_group
                    .unwrap_or_else(|| unreachable!("group instruction without a group id"));
                let group_key =
                    existing.unwrap_or_else(|| self.new_group(group_id, account, instrument, side));
                let record = &mut self.groups[group_key.0 as usize];
                (record.account, record.instrument, record.side) = (account, instrument, side);
                record.fills.push(key);
                group = Some(group_key);
                let placed = self.book(
                    Some(key),
                    account,
                    instrument,
                    side,
                    quantity,
                    price,
                    effect,
                    effects,
                );
                (Placement::Single(placed.booking), TradeStatus::Active)
            }
        };
        let trade = &mut self.trades[key.0 as usize];
        trade.placement = placement;
        trade.status = status;
        trade.group = group;
    }

    fn new_group(
        &mut self,
        id: GroupId,
        account: AccountKey,
        instrument: InstrumentKey,
        side: Side,
    ) -> GroupKey {
        let key = GroupKey(self.groups.len() as u32);
        self.groups.push(GroupRecord {
            id,
            account,
            instrument,
            side,
            fills: Vec::new(),
            allocation: None,
        });
        self.group_index.insert(id, key);
        key
    }

    /// Reverses every booking a trade holds and takes it out of its group.
    fn unplace(&mut self, key: TradeKey, effects: &mut Vec<Effect>) {
        let trade = &mut self.trades[key.0 as usize];
        let instrument = trade.instrument;
        match std::mem::replace(&mut trade.placement, Placement::None) {
            Placement::None => {}
            Placement::Single(booking) => {
                let (account, hint) = (trade.account, trade.booked_at);
                effects.push(Effect::Reverse { account, instrument, booking, hint });
            }
            Placement::Split => {
                for placed in self.splits.remove(&key).unwrap_or_default().iter() {
                    let (account, booking) = (placed.account, placed.booking);
                    let hint = EntryHint::NONE;
                    effects.push(Effect::Reverse { account, instrument, booking, hint });
                }
            }
        }
        if let Some(group) = trade.group.take() {
            self.groups[group.0 as usize].fills.retain(|fill| *fill != key);
        }
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "a booking is these seven facts and the trade it is for; a struct would only \
                  rename them"
    )]
    fn book(
        &mut self,
        trade: Option<TradeKey>,
        account: AccountKey,
        instrument: InstrumentKey,
        side: Side,
        quantity: Quantity,
        price: Price,
        effect: PositionEffect,
        effects: &mut Vec<Effect>,
    ) -> Placed {
        self.next_booking += 1;
        let booking = Booking { id: BookingId(self.next_booking), side, quantity, price, effect };
        effects.push(Effect::Book { account, instrument, booking, trade });
        Placed { account, booking: booking.id, quantity }
    }

    /// Total quantity and cost (sum of price x quantity, in price nanos) of a group's fills.
    fn group_totals(&self, group: &GroupRecord) -> (i64, i128) {
        group.fills.iter().fold((0, 0), |(quantity, cost), fill| {
            let trade = self.trade(*fill);
            (
                quantity + trade.quantity.get(),
                cost + i128::from(trade.price.nanos()) * i128::from(trade.quantity.get()),
            )
        })
    }
}

/// `cost / quantity` rounded half away from zero to `decimals` places.
fn average_price(cost: i128, quantity: i64, decimals: u32) -> Result<Price, CaptureError> {
    let step = 10i128
        .pow(keel_domain::fixed::SCALE_DECIMALS - decimals.min(keel_domain::fixed::SCALE_DECIMALS));
    let rounded = div_round(cost, i128::from(quantity) * step, Rounding::HalfAwayFromZero) * step;
    i64::try_from(rounded)
        .map(Price::from_nanos)
        .map_err(|_| CaptureError::Overflow("average price".into()))
}

/// xxh3-128 of an instruction's content: equal content, equal fingerprint; a collision between
/// different reports under one id needs about 2^64 tries. The content is gathered through its
/// `Hash` implementation into a stack buffer and hashed in one call, which is several times
/// faster than feeding the streaming hasher field by field.
fn fingerprint(value: &impl Hash) -> [u64; 2] {
    let mut hasher = Gather { buffer: [0; GATHER_BYTES], len: 0, overflow: None };
    value.hash(&mut hasher);
    let digest = match hasher.overflow {
        None => xxhash_rust::xxh3::xxh3_128(&hasher.buffer[..hasher.len]),
        Some(mut streaming) => {
            streaming.update(&hasher.buffer[..hasher.len]);
            streaming.digest128()
        }
    };
    [digest as u64, (digest >> 64) as u64]
}

const GATHER_BYTES: usize = 512;

/// A `Hasher` that only collects bytes; large inputs spill into a streaming xxh3.
struct Gather {
    buffer: [u8; GATHER_BYTES],
    len: usize,
    overflow: Option<xxhash_rust::xxh3::Xxh3>,
}

impl std::hash::Hasher for Gather {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > GATHER_BYTES {
            let streaming = self.overflow.get_or_insert_with(xxhash_rust::xxh3::Xxh3::new);
            streaming.update(&self.buffer[..self.len]);
            streaming.update(bytes);
            self.len = 0;
            return;
        }
        self.buffer[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn finish(&self) -> u64 {
        unreachable!("fingerprints are read with xxh3_128, not Hasher::finish")
    }
}

/// (De)serializes a hash map as a vector sorted by key, so that equal maps give equal bytes.
mod sorted {
    use std::hash::Hash;

    use rustc_hash::FxHashMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Ord + Serialize, V: Serialize, S: Serializer>(
        map: &FxHashMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(&K, &V)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        entries.serialize(serializer)
    }

    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<FxHashMap<K, V>, D::Error>
    where
        K: Eq + Hash + Deserialize<'de>,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(deserializer)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests;
