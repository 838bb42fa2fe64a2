//! The tenant's positions: an arena of `Position`s in creation order with a hash index by
//! (account, instrument). Keeping positions out of the map's slots halves their memory (a
//! hash map's load factor would apply to 80-byte slots; here it applies to 16-byte ones).
//! A position that empties keeps its slot, so a key's slot never moves. The arenas are
//! `CowVec`s, so a snapshot image shares them and the shard copies only the chunks it writes.
//! The index grows incrementally, as the report index does (trade-capture's `reports.rs`): a
//! full index answers for the positions not yet moved while one twice its size takes new ones
//! and a few moved ones per insert, so a tenant passing 458k or 917k positions does not stall
//! for a rehash of all of them. The index is a `KeyedIndex` (keel-domain's `index.rs`), whose
//! first slot for a key can be loaded ahead of the lookup: [`PositionBook::touch`].

use std::hash::BuildHasher;

use keel_domain::index::KeyedIndex;
use keel_domain::CowVec;
use keel_position_keeping::Position;
use keel_trade_capture::{AccountKey, InstrumentKey};
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
    index: KeyedIndex,
    /// While the index grows: the full one it replaces, with `[next, end)` of the arena
    /// still only in it.
    #[serde(skip)]
    growing: Option<(KeyedIndex, usize, usize)>,
}

#[inline]
fn hash(key: u64) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(key)
}

fn rehash(key: u64, _: u32) -> u64 {
    hash(key)
}

/// Positions moved into a growing index per new position (see `reports.rs`'s `GROW_STEP`).
const GROW_STEP: usize = 4;

/// Positions whose bookings an encoding pass loads at once (see `write_canon`).
const TOUCH_BLOCK: usize = 16;

impl PositionBook {
    /// Writes the snapshot encoding (exactly `Serialize`'s bytes), positions by hand.
    pub(crate) fn write_canon(&self, sink: &mut impl keel_domain::CanonSink) {
        let PositionBook { keys, positions, index: _, growing: _ } = self;
        sink.arena(keys);
        sink.len_prefix(positions.len());
        // Positions sit in one arena but their bookings are scattered over the heap: touch a
        // block's bookings together, then encode them.
        let mut touched = 0;
        for chunk in positions.chunks() {
            for block in chunk.chunks(TOUCH_BLOCK) {
                touched ^= block.iter().fold(0, |touched, position| touched ^ position.touch());
                block.iter().for_each(|position| position.write_canon(sink));
            }
        }
        std::hint::black_box(touched);
    }

    /// As `write_canon` (the same bytes), consuming an image: each group of keys and of
    /// positions is let go once encoded, and with a position its bookings (`CowVec::
    /// drain_chunks`).
    pub(crate) fn write_canon_drained(self, sink: &mut impl keel_domain::CanonSink) {
        let PositionBook { keys, positions, index: _, growing: _ } = self;
        sink.arena_drained(keys);
        sink.len_prefix(positions.len());
        let mut touched = 0;
        positions.drain_chunks(|chunk| {
            for block in chunk.chunks(TOUCH_BLOCK) {
                touched ^= block.iter().fold(0, |touched, position| touched ^ position.touch());
                block.iter().for_each(|position| position.write_canon(sink));
            }
        });
        std::hint::black_box(touched);
    }

    #[inline]
    fn slot(&self, key: u64) -> Option<u32> {
        let hash = hash(key);
        let found = self.index.find(hash, key, |_| true);
        found.or_else(|| self.growing.as_ref().and_then(|(old, ..)| old.find(hash, key, |_| true)))
    }

    /// Loads the index slot where a lookup of `key` starts (in both indexes while one grows)
    /// and returns a value that depends on it: see `KeyedIndex::touch`.
    #[inline]
    pub(crate) fn touch(&self, key: u64) -> u32 {
        let hash = hash(key);
        let old = self.growing.as_ref().map_or(0, |(old, ..)| old.touch(hash));
        self.index.touch(hash) ^ old
    }

    #[inline]
    pub(crate) fn get_or_insert(&mut self, key: u64) -> &mut Position {
        let slot = match self.slot(key) {
            Some(slot) => slot,
            None => {
                if self.growing.is_some() {
                    self.move_some(GROW_STEP);
                } else if self.index.len() >= self.index.capacity() {
                    let capacity = (self.index.capacity() * 2).max(64);
                    let bigger = KeyedIndex::with_capacity(capacity);
                    let old = std::mem::replace(&mut self.index, bigger);
                    self.growing = Some((old, 0, self.keys.len()));
                }
                let slot = self.positions.len() as u32;
                self.keys.push(key);
                self.positions.push(Position::new());
                self.index.insert_unique(hash(key), key, slot, rehash);
                slot
            }
        };
        &mut self.positions[slot as usize]
    }

    /// Moves up to `count` positions' index entries into the growing index.
    fn move_some(&mut self, count: usize) {
        let Some((_, next, end)) = &mut self.growing else { return };
        let stop = (*end).min(next.saturating_add(count));
        for slot in *next..stop {
            let key = self.keys[slot];
            self.index.insert_unique(hash(key), key, slot as u32, rehash);
        }
        *next = stop;
        if stop == *end {
            self.growing = None;
        }
    }

    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<&Position> {
        self.slot(key).map(|slot| &self.positions[slot as usize])
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: u64) -> Option<&mut Position> {
        self.slot(key).map(|slot| &mut self.positions[slot as usize])
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
    pub(crate) fn image(&mut self) -> PositionBook {
        PositionBook {
            keys: self.keys.share(),
            positions: self.positions.share(),
            index: KeyedIndex::new(),
            growing: None,
        }
    }

    /// Makes room for `positions` positions in all.
    pub(crate) fn reserve(&mut self, positions: usize) {
        self.move_some(usize::MAX);
        let additional = positions.saturating_sub(self.positions.len());
        self.keys.reserve(additional);
        self.positions.reserve(additional);
        self.index.reserve(additional, rehash);
    }

    /// Rebuilds the index after deserialization.
    pub(crate) fn reindex(&mut self) {
        let mut index = KeyedIndex::with_capacity_faulted(self.keys.len());
        for (slot, &key) in self.keys.iter().enumerate() {
            index.insert_unique(hash(key), key, slot as u32, rehash);
        }
        self.index = index;
        self.growing = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every position is found at every point of the index's incremental growth, and a key
    /// is never given two slots.
    #[test]
    fn growth_is_incremental_and_finds_everything() {
        let mut book = PositionBook::default();
        let mut growths = 0;
        for n in 0..5_000u64 {
            let key = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let was_growing = book.growing.is_some();
            assert!(book.get(key).is_none());
            book.get_or_insert(key);
            growths += usize::from(book.growing.is_some() && !was_growing);
            if let Some((_, next, _)) = &book.growing {
                assert!(*next <= GROW_STEP * (n as usize + 1));
            }
            for probe in [0, n / 2, n] {
                let probe_key = probe.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                assert!(book.get(probe_key).is_some(), "{probe} after {n}");
                book.get_or_insert(probe_key);
            }
            assert_eq!(book.keys.len(), n as usize + 1, "no key got a second slot");
        }
        assert!(growths >= 4, "{growths}");
        book.reserve(10_000);
        assert!(book.growing.is_none());
    }
}
