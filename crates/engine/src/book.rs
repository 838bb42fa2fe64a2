//! The tenant's positions: an arena of `Position`s in creation order with a hash index by
//! (account, instrument). Keeping positions out of the map's slots halves their memory (a
//! hash map's load factor would apply to 80-byte slots; here it applies to 16-byte ones).
//! A position that empties keeps its slot, so a key's slot never moves. The arenas are
//! `CowVec`s, so a snapshot image shares them and the shard copies only the chunks it writes.

use keel_domain::CowVec;
use keel_position_keeping::Position;
use keel_trade_capture::{AccountKey, InstrumentKey};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Positions are keyed by (account, instrument) packed in one integer.
pub(crate) fn position_key(account: AccountKey, instrument: InstrumentKey) -> u64 {
    (u64::from(account.0) << 32) | u64::from(instrument.0)
}

pub(crate) fn split_key(key: u64) -> (AccountKey, InstrumentKey) {
    (AccountKey((key >> 32) as u32), InstrumentKey(key as u32))
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PositionBook {
    keys: CowVec<u64>,
    positions: CowVec<Position>,
    #[serde(skip)]
    index: FxHashMap<u64, u32>,
}

impl PositionBook {
    #[inline]
    pub(crate) fn get_or_insert(&mut self, key: u64) -> &mut Position {
        let slot = *self.index.entry(key).or_insert_with(|| {
            self.keys.push(key);
            self.positions.push(Position::new());
            (self.positions.len() - 1) as u32
        });
        &mut self.positions[slot as usize]
    }

    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<&Position> {
        self.index.get(&key).map(|&slot| &self.positions[slot as usize])
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: u64) -> Option<&mut Position> {
        self.index.get(&key).map(|&slot| &mut self.positions[slot as usize])
    }

    /// Non-empty positions with their keys, in creation order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Position)> {
        self.keys.iter().copied().zip(&self.positions).filter(|(_, position)| !position.is_empty())
    }

    /// Every position, empty ones included (they may still be owed a true-up), with keys, in
    /// creation order.
    pub(crate) fn iter_all(&self) -> impl Iterator<Item = (u64, &Position)> {
        self.keys.iter().copied().zip(&self.positions)
    }

    /// The arenas without the index, sharing their chunks: for a snapshot image only.
    pub(crate) fn image(&self) -> PositionBook {
        PositionBook {
            keys: self.keys.clone(),
            positions: self.positions.clone(),
            index: FxHashMap::default(),
        }
    }

    /// Makes room for `positions` positions in all.
    pub(crate) fn reserve(&mut self, positions: usize) {
        let additional = positions.saturating_sub(self.positions.len());
        self.keys.reserve(additional);
        self.positions.reserve(additional);
        self.index.reserve(additional);
    }

    /// Rebuilds the index after deserialization.
    pub(crate) fn reindex(&mut self) {
        self.index = self.keys.iter().enumerate().map(|(slot, key)| (*key, slot as u32)).collect();
    }
}
