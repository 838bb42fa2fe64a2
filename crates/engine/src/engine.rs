//! `Engine`: capture + positions + cash adjustments for one tenant.

use std::collections::BTreeMap;

use keel_domain::{Account, Amount, Currency, Instrument, TenantId};
use keel_position_keeping::{Position, PositionError};
use keel_trade_capture::{Accepted, AccountKey, Capture, Effect, InstrumentKey};
use rustc_hash::FxHashMap;

use crate::command::{Command, Envelope, Outcome};

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
    #[error("snapshot belongs to tenant {found}, not {expected}")]
    SnapshotTenant { found: TenantId, expected: TenantId },
}

/// Positions are keyed by (account, instrument) packed in one integer.
pub(crate) fn position_key(account: AccountKey, instrument: InstrumentKey) -> u64 {
    (u64::from(account.0) << 32) | u64::from(instrument.0)
}

pub(crate) fn split_key(key: u64) -> (AccountKey, InstrumentKey) {
    (AccountKey((key >> 32) as u32), InstrumentKey(key as u32))
}

/// One tenant's state.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) tenant: TenantId,
    pub(crate) capture: Capture,
    pub(crate) positions: FxHashMap<u64, Position>,
    /// Cash adjustments outside positions (average-price residuals), per account and currency.
    pub(crate) cash: BTreeMap<(AccountKey, Currency), Amount>,
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
    pub fn new(tenant: TenantId) -> Self {
        Self::from_parts(tenant, Capture::default(), FxHashMap::default(), BTreeMap::new(), 0, 0)
    }

    pub(crate) fn from_parts(
        tenant: TenantId,
        capture: Capture,
        positions: FxHashMap<u64, Position>,
        cash: BTreeMap<(AccountKey, Currency), Amount>,
        last_sequence: u64,
        last_timestamp_ns: i64,
    ) -> Self {
        Self {
            tenant,
            capture,
            positions,
            cash,
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
        let result = match &envelope.command {
            Command::Trade(report) => self.capture.apply_trade(report, sequence, &mut effects),
            Command::GiveUp(response) => {
                self.capture.apply_give_up(response, sequence, &mut effects)
            }
            Command::AveragePrice(allocation) => {
                self.capture.apply_average_price(allocation, sequence, &mut effects)
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
        };
        let applied = self.apply_effects(&effects);
        self.effects = effects;
        applied?;
        Ok(match result {
            Ok(Accepted::Applied) => Outcome::Accepted { sequence },
            Ok(Accepted::Duplicate { sequence }) => Outcome::Duplicate { sequence },
            Err(reason) => Outcome::Rejected(reason),
        })
    }

    fn apply_effects(&mut self, effects: &[Effect]) -> Result<(), EngineError> {
        for effect in effects {
            match *effect {
                Effect::Book { account, instrument, booking } => {
                    let reference = self.capture.reference();
                    let position = self
                        .positions
                        .entry(position_key(account, instrument))
                        .or_insert_with(|| {
                            Position::new(
                                reference.account(account).position_mode,
                                reference.instrument(instrument).multiplier,
                            )
                        });
                    position
                        .book(booking)
                        .map_err(|e| position_error(&self.capture, account, instrument, e))?;
                }
                Effect::Reverse { account, instrument, booking } => {
                    let key = position_key(account, instrument);
                    let fault = |e| position_error(&self.capture, account, instrument, e);
                    let position = self
                        .positions
                        .get_mut(&key)
                        .ok_or_else(|| fault(PositionError::UnknownBooking(booking)))?;
                    position.reverse(booking).map_err(fault)?;
                    if position.is_empty() {
                        self.positions.remove(&key);
                    }
                }
                Effect::Cash { account, currency, amount } => {
                    let balance = self.cash.entry((account, currency)).or_default();
                    *balance = balance.checked_add(amount).unwrap_or(*balance);
                }
            }
        }
        Ok(())
    }

    /// Every non-empty position, ordered by account then instrument id.
    pub fn positions(&self) -> Vec<PositionView<'_>> {
        let reference = self.capture.reference();
        let mut views: Vec<PositionView<'_>> = self
            .positions
            .iter()
            .map(|(key, position)| {
                let (account, instrument) = split_key(*key);
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
        self.positions.get(&key)
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
        self.positions.values().map(|p| p.long_lots().len() + p.short_lots().len()).sum()
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
