//! Reference data a tenant's trades are validated against, keyed densely for the hot path.

use keel_domain::{
    Account, AccountId, CaptureError, Date, ExchangeId, FirmId, Instrument, InstrumentId,
};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Index of an instrument in the tenant's master (definition order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstrumentKey(pub u32);

/// Index of an account in the tenant's account list (definition order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AccountKey(pub u32);

/// Index of a firm seen on a trade (executing firms, give-up targets), in order of first sight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FirmKey(pub u32);

/// Index of a venue seen on a trade, in order of first sight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VenueKey(pub u16);

/// Instruments, accounts and the open clearing business date.
///
/// The three tables that grow with a tenant sit behind reference counts, so that the image a
/// state pass takes on the shard (`image`) costs a count each rather than a copy: 20,000
/// accounts and their index were about 2.6 MB of fresh pages per image, 1 ms of the shard's
/// time. They are written only when an instrument, an account or a firm is first seen, which
/// copies a table an image still holds once (`Arc::make_mut`). Serialized as the tables
/// themselves (serde's `rc`), so no snapshot byte changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reference {
    business_date: Option<Date>,
    instruments: Arc<Vec<Instrument>>,
    accounts: Arc<Vec<Account>>,
    /// Firms and venues named on trades, interned so that trade records stay small.
    firms: Arc<Vec<FirmId>>,
    venues: Vec<ExchangeId>,
    #[serde(skip)]
    instrument_index: FxHashMap<InstrumentId, InstrumentKey>,
    #[serde(skip)]
    firm_index: FxHashMap<FirmId, FirmKey>,
    #[serde(skip)]
    venue_index: FxHashMap<ExchangeId, VenueKey>,
    #[serde(skip)]
    account_index: FxHashMap<AccountId, AccountKey>,
}

/// Most instruments and accounts one tenant may define (keys are `u32`).
pub const INSTRUMENTS_MAX: usize = 1_000_000;
pub const ACCOUNTS_MAX: usize = 10_000_000;
/// Most distinct firms and venues one tenant's trades may name.
pub const FIRMS_MAX: usize = 1_000_000;
pub const VENUES_MAX: usize = u16::MAX as usize;

impl Reference {
    pub fn business_date(&self) -> Option<Date> {
        self.business_date
    }

    /// Opens `date` for trading. Dates only move forward; re-opening the same date is a no-op.
    pub fn open_business_date(&mut self, date: Date) -> Result<(), CaptureError> {
        match self.business_date {
            Some(open) if date < open => {
                Err(CaptureError::BusinessDateBackwards { requested: date, open })
            }
            _ => {
                self.business_date = Some(date);
                Ok(())
            }
        }
    }

    /// Adds an instrument; redefining it with identical terms is a no-op, with other terms an
    /// error (a listed contract's terms never change under the same id).
    pub fn define_instrument(
        &mut self,
        instrument: Instrument,
    ) -> Result<InstrumentKey, CaptureError> {
        if let Some(&key) = self.instrument_index.get(&instrument.id) {
            return if self.instruments[key.0 as usize] == instrument {
                Ok(key)
            } else {
                Err(CaptureError::DefinitionConflict(format!("instrument {}", instrument.id)))
            };
        }
        if self.instruments.len() >= INSTRUMENTS_MAX {
            return Err(CaptureError::Overflow("instruments per tenant".into()));
        }
        let key = InstrumentKey(self.instruments.len() as u32);
        Arc::make_mut(&mut self.instruments).push(instrument);
        self.instrument_index.insert(instrument.id, key);
        Ok(key)
    }

    /// Adds an account; the same rules as instruments.
    pub fn define_account(&mut self, account: Account) -> Result<AccountKey, CaptureError> {
        if let Some(&key) = self.account_index.get(&account.id) {
            return if self.accounts[key.0 as usize] == account {
                Ok(key)
            } else {
                Err(CaptureError::DefinitionConflict(format!("account {}", account.id)))
            };
        }
        if self.accounts.len() >= ACCOUNTS_MAX {
            return Err(CaptureError::Overflow("accounts per tenant".into()));
        }
        let key = AccountKey(self.accounts.len() as u32);
        Arc::make_mut(&mut self.accounts).push(account);
        self.account_index.insert(account.id, key);
        Ok(key)
    }

    #[inline]
    pub fn instrument_key(&self, id: &InstrumentId) -> Option<InstrumentKey> {
        self.instrument_index.get(id).copied()
    }

    #[inline]
    pub fn account_key(&self, id: &AccountId) -> Option<AccountKey> {
        self.account_index.get(id).copied()
    }

    #[inline]
    pub fn instrument(&self, key: InstrumentKey) -> &Instrument {
        &self.instruments[key.0 as usize]
    }

    #[inline]
    pub fn account(&self, key: AccountKey) -> &Account {
        &self.accounts[key.0 as usize]
    }

    pub fn instruments(&self) -> &[Instrument] {
        &self.instruments
    }

    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// Checks that interning one trade's firms and venue cannot exceed the limits, so that a
    /// trade is refused before anything changes rather than half way.
    pub fn check_intern_capacity(&self) -> Result<(), CaptureError> {
        if self.firms.len() + 2 > FIRMS_MAX {
            return Err(CaptureError::Overflow("distinct firms per tenant".into()));
        }
        if self.venues.len() + 1 > VENUES_MAX {
            return Err(CaptureError::Overflow("distinct venues per tenant".into()));
        }
        Ok(())
    }

    /// The key of `firm`, adding it on first sight. Call `check_intern_capacity` first.
    pub fn intern_firm(&mut self, firm: FirmId) -> FirmKey {
        if let Some(&key) = self.firm_index.get(&firm) {
            return key;
        }
        let key = FirmKey(self.firms.len() as u32);
        Arc::make_mut(&mut self.firms).push(firm);
        self.firm_index.insert(firm, key);
        key
    }

    /// The key of `venue`, adding it on first sight. Call `check_intern_capacity` first.
    pub fn intern_venue(&mut self, venue: ExchangeId) -> VenueKey {
        if let Some(&key) = self.venue_index.get(&venue) {
            return key;
        }
        let key = VenueKey(self.venues.len() as u16);
        self.venues.push(venue);
        self.venue_index.insert(venue, key);
        key
    }

    pub fn firm(&self, key: FirmKey) -> FirmId {
        self.firms[key.0 as usize]
    }

    pub fn venue(&self, key: VenueKey) -> ExchangeId {
        self.venues[key.0 as usize]
    }

    /// A frozen copy for a snapshot image: the tables are shared and the indexes left out, so
    /// it serializes exactly like `self` but cannot look anything up by id.
    pub fn image(&self) -> Reference {
        Reference {
            business_date: self.business_date,
            instruments: Arc::clone(&self.instruments),
            accounts: Arc::clone(&self.accounts),
            firms: Arc::clone(&self.firms),
            venues: self.venues.clone(),
            instrument_index: FxHashMap::default(),
            firm_index: FxHashMap::default(),
            venue_index: FxHashMap::default(),
            account_index: FxHashMap::default(),
        }
    }

    /// Rebuilds the lookup indexes after deserialization.
    pub fn reindex(&mut self) {
        self.firm_index =
            self.firms.iter().enumerate().map(|(i, x)| (*x, FirmKey(i as u32))).collect();
        self.venue_index =
            self.venues.iter().enumerate().map(|(i, x)| (*x, VenueKey(i as u16))).collect();
        self.instrument_index = self
            .instruments
            .iter()
            .enumerate()
            .map(|(i, x)| (x.id, InstrumentKey(i as u32)))
            .collect();
        self.account_index =
            self.accounts.iter().enumerate().map(|(i, x)| (x.id, AccountKey(i as u32))).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_domain::{AccountKind, PositionMode};

    fn account(id: &str) -> Account {
        Account {
            id: id.parse().expect("account id"),
            firm: "FIRM1".parse().expect("firm"),
            kind: AccountKind::Customer,
            position_mode: PositionMode::Net,
        }
    }

    /// An image encodes exactly as the reference it was taken from, and keeps doing so while
    /// the live reference grows (the shared tables are copied on the first write, not
    /// changed under the image).
    #[test]
    fn an_image_encodes_as_its_source_and_stays_frozen() {
        let mut live = Reference::default();
        for id in ["A1", "A2", "A3"] {
            live.define_account(account(id)).expect("define");
        }
        live.intern_firm("FIRM9".parse().expect("firm"));
        let encode = |reference: &Reference| bincode::serialize(reference).expect("encode");
        let before = encode(&live);
        let image = live.image();
        assert_eq!(encode(&image), before);

        live.define_account(account("A4")).expect("define");
        live.intern_firm("FIRM8".parse().expect("firm"));
        assert_eq!(encode(&image), before, "the image moved with the live reference");
        assert_eq!(image.accounts().len(), 3);
        assert_eq!(live.accounts().len(), 4);
        assert_eq!(live.account_key(&"A4".parse().expect("id")), Some(AccountKey(3)));
    }
}
