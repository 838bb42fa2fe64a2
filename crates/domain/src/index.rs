//! `SlotIndex`: an insert-only hash index from keys to `u32` positions in an arena, laid out so
//! that a batch can fetch its slots before it looks any of them up.
//!
//! The engine's two large lookups, report ids and positions, are each a hash index of
//! positions into a `CowVec` arena, and on a tenant of any size every lookup is a cache miss.
//! The shard looks a whole batch up before applying it (`Engine::probe`) so that those misses
//! overlap. With hashbrown's tables that overlap was poor: a lookup there is a dependent chain
//! (control group, then slot, then record) with data-dependent branches between, and each
//! mispredicted branch discards the loads behind it. Here a lookup's first slot is at an
//! address computed from the hash alone, so [`SlotIndex::touch`] can load it with no branch at
//! all; a loop touching a whole batch's slots keeps as many misses in flight as the core has
//! room for, which is what a prefetch instruction would do, in safe code. The lookups that
//! follow find their slots in cache.
//!
//! Linear probing over a power-of-two array of slots, at most 3/4 full. Nothing is ever
//! removed (report ids and positions stay for the tenant's life), so there are no tombstones.
//! The bucket is the top bits of the hash times 2^64/φ (Fibonacci hashing), so integer keys
//! with structure spread as well as hashed strings.
//!
//! An empty slot is all zeros, so a new index is zeroed memory that the kernel hands out page
//! by page as it is first touched: growing in line on the shard costs no fill of the whole
//! array (writing 16M empty slots of 8 bytes took 68 ms). An index built off the shard or
//! reserved ahead has its pages faulted in by whoever makes it instead
//! ([`SlotIndex::with_capacity_faulted`]).

use std::fmt;
use std::ops::ControlFlow;

/// What a slot holds: a key (or part of one) and the arena position it leads to. The all-zero
/// value is the empty slot (positions are stored plus one).
pub trait Slot: Copy + PartialEq {
    /// What a lookup compares before asking the caller: the whole key, or part of its hash.
    type Key: Copy + Eq;
    const EMPTY: Self;
    fn new(key: Self::Key, at: u32) -> Self;
    fn key(self) -> Self::Key;
    /// The arena position; only for a slot that is not empty.
    fn at(self) -> u32;
}

/// One word: 32 bits of the hash above, the position plus one below. The index cannot tell
/// two keys with the same 32 bits apart, so a lookup confirms a match against the arena
/// (`eq`); a false match costs an arena read once in 2^32 comparisons.
impl Slot for u64 {
    type Key = u32;
    const EMPTY: Self = 0;

    #[inline]
    fn new(key: u32, at: u32) -> Self {
        (u64::from(key) << 32) | (u64::from(at) + 1)
    }

    #[inline]
    fn key(self) -> u32 {
        (self >> 32) as u32
    }

    #[inline]
    fn at(self) -> u32 {
        (self as u32).wrapping_sub(1)
    }
}

/// Two words: the whole 64-bit key, and the position plus one. A lookup needs nothing else.
impl Slot for [u64; 2] {
    type Key = u64;
    const EMPTY: Self = [0, 0];

    #[inline]
    fn new(key: u64, at: u32) -> Self {
        [key, u64::from(at) + 1]
    }

    #[inline]
    fn key(self) -> u64 {
        self[0]
    }

    #[inline]
    fn at(self) -> u32 {
        (self[1] as u32).wrapping_sub(1)
    }
}

/// An index whose keys are 32 bits of a hash, confirmed against the arena: 8 bytes a slot.
pub type TaggedIndex = SlotIndex<u64>;

/// An index of whole 64-bit keys: 16 bytes a slot.
pub type KeyedIndex = SlotIndex<[u64; 2]>;

/// The 32 bits of `hash` a [`TaggedIndex`] keeps.
#[inline]
pub fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// Fewest slots an index that holds anything has.
const MIN_SLOTS: usize = 8;

/// 2^64 / φ, odd: multiplying by it spreads every bit of the hash into the top ones.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

/// A hash index from keys to `u32` arena positions: see the module documentation.
#[derive(Clone)]
pub struct SlotIndex<S> {
    /// A power of two long, or empty.
    slots: Vec<S>,
    /// 64 minus log2 of the slot count: the bucket is the product's top bits.
    shift: u32,
    len: usize,
}

impl<S: Slot> SlotIndex<S> {
    /// An empty index that has allocated nothing.
    pub const fn new() -> Self {
        Self { slots: Vec::new(), shift: 64, len: 0 }
    }

    /// An index that holds `capacity` entries before it must grow.
    pub fn with_capacity(capacity: usize) -> Self {
        if capacity == 0 {
            return Self::new();
        }
        let slots = capacity.saturating_mul(4).div_ceil(3).next_power_of_two().max(MIN_SLOTS);
        Self { slots: vec![S::EMPTY; slots], shift: 64 - slots.trailing_zeros(), len: 0 }
    }

    /// As [`SlotIndex::with_capacity`], with every page of the slots written once, for an
    /// index built away from the shard. A zeroed page the kernel has not handed out yet is
    /// mapped to the shared zero page when it is first read, and the first write after that
    /// costs a second fault and a TLB shootdown that interrupts every core (4% of all samples
    /// in `durable_submit`, from lookups and inserts in fresh indexes). Writing first
    /// costs one fault a page and no shootdown; here it is paid by the builder.
    pub fn with_capacity_faulted(capacity: usize) -> Self {
        match Self::with_capacity_faulted_with(capacity, || ControlFlow::Continue(())) {
            Some(index) => index,
            None => unreachable!("invariant: a builder that never stops is never stopped"),
        }
    }

    /// As `with_capacity_faulted`, calling `between` after every 64 KiB faulted in (16
    /// pages, some 50 us here): for a builder that paces itself or gives way
    /// (`keel_sched::GiveWay`), and that may be told to stop (`between` breaks: `None`).
    pub fn with_capacity_faulted_with(
        capacity: usize,
        mut between: impl FnMut() -> ControlFlow<()>,
    ) -> Option<Self> {
        let mut index = Self::with_capacity(capacity);
        let per_page = (4096 / std::mem::size_of::<S>()).max(1);
        for (page, slot) in index.slots.iter_mut().step_by(per_page).enumerate() {
            // Opaque, so that the store of what calloc already gave is not optimized away.
            *slot = std::hint::black_box(S::EMPTY);
            if page % 16 == 15 && between().is_break() {
                return None;
            }
        }
        Some(index)
    }

    /// Entries it holds before it must grow: 3/4 of its slots.
    pub fn capacity(&self) -> usize {
        self.slots.len() - self.slots.len() / 4
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where a lookup of `hash` starts.
    #[inline]
    fn home(&self, hash: u64) -> usize {
        (hash.wrapping_mul(FIBONACCI) >> self.shift) as usize
    }

    /// The position of the entry with `key` for which `eq` holds, if any. `eq` is asked only
    /// about entries whose slot key equals `key`.
    #[inline]
    pub fn find(&self, hash: u64, key: S::Key, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut at = self.home(hash);
        loop {
            let slot = self.slots[at];
            if slot == S::EMPTY {
                return None;
            }
            if slot.key() == key && eq(slot.at()) {
                return Some(slot.at());
            }
            at = (at + 1) & mask;
        }
    }

    /// Loads the slot a lookup of `hash` starts at and returns a value that depends on it,
    /// without a branch on what it holds: run over a batch before looking it up, it brings
    /// the batch's slots into cache together (see the module documentation).
    #[inline]
    pub fn touch(&self, hash: u64) -> u32 {
        if self.slots.is_empty() {
            return 0;
        }
        self.slots[self.home(hash)].at()
    }

    /// Adds an entry whose key is not in the index yet (the caller has looked). If the index
    /// is full it first grows to twice its capacity, placing every entry again at the hash
    /// `rehash` gives for it.
    ///
    /// # Panics
    /// If `at` is `u32::MAX`, which no arena of `u32` positions reaches.
    pub fn insert_unique(
        &mut self,
        hash: u64,
        key: S::Key,
        at: u32,
        rehash: impl Fn(S::Key, u32) -> u64,
    ) {
        assert!(at != u32::MAX, "arena position {at} does not fit an index slot");
        if self.len >= self.capacity() {
            // Lazily faulted: faulting a large index up front would stall the inserting
            // thread (16M slots of 8 bytes: 50 ms).
            let bigger = Self::with_capacity((self.capacity() * 2).max(1));
            self.move_into(bigger, &rehash);
        }
        self.place(hash, S::new(key, at));
        self.len += 1;
    }

    /// Makes room for `additional` more entries without growing, faulting the slots in now
    /// (see [`SlotIndex::with_capacity_faulted`]): a reserve is made before the load it is for.
    pub fn reserve(&mut self, additional: usize, rehash: impl Fn(S::Key, u32) -> u64) {
        let needed = self.len.saturating_add(additional);
        if needed > self.capacity() {
            self.move_into(Self::with_capacity_faulted(needed), &rehash);
        }
    }

    fn place(&mut self, hash: u64, slot: S) {
        let mask = self.slots.len() - 1;
        let mut at = self.home(hash);
        while self.slots[at] != S::EMPTY {
            at = (at + 1) & mask;
        }
        self.slots[at] = slot;
    }

    /// Places every entry in `bigger` (empty) and puts it in place of this index.
    fn move_into(&mut self, mut bigger: Self, rehash: &impl Fn(S::Key, u32) -> u64) {
        for &slot in self.slots.iter().filter(|&&slot| slot != S::EMPTY) {
            bigger.place(rehash(slot.key(), slot.at()), slot);
        }
        bigger.len = self.len;
        *self = bigger;
    }
}

impl<S: Slot> Default for SlotIndex<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> fmt::Debug for SlotIndex<S> {
    /// The size, not the slots (millions of them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotIndex")
            .field("len", &self.len)
            .field("slots", &self.slots.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn spread(key: u64) -> u64 {
        key.wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(31)
    }

    #[test]
    fn capacity_is_three_quarters_of_a_power_of_two() {
        // (asked for, slots, capacity)
        let cases = [(0, 0, 0), (1, 8, 6), (6, 8, 6), (7, 16, 12), (12, 16, 12), (13, 32, 24)];
        for (asked, slots, capacity) in cases {
            let index = KeyedIndex::with_capacity(asked);
            assert_eq!((index.slots.len(), index.capacity()), (slots, capacity), "{asked}");
            assert!(index.capacity() >= asked);
        }
        let big = TaggedIndex::with_capacity(1 << 20);
        assert_eq!(big.slots.len(), 2 << 20, "1M entries in 2M slots of 8 bytes");
    }

    #[test]
    fn slots_round_trip_and_no_entry_is_empty() {
        for (key, at) in [(0u32, 0u32), (u32::MAX, u32::MAX - 1), (7, 1 << 31)] {
            let slot = <u64 as Slot>::new(key, at);
            assert_ne!(slot, <u64 as Slot>::EMPTY);
            assert_eq!((slot.key(), slot.at()), (key, at));
            let wide = <[u64; 2] as Slot>::new(u64::from(key) << 32 | 5, at);
            assert_ne!(wide, <[u64; 2] as Slot>::EMPTY);
            assert_eq!((wide.key(), wide.at()), (u64::from(key) << 32 | 5, at));
        }
        let last = <[u64; 2] as Slot>::new(u64::MAX, u32::MAX - 1);
        assert_ne!(last, <[u64; 2] as Slot>::EMPTY, "the largest key is not empty");
    }

    #[test]
    fn an_empty_index_finds_nothing_and_touches_safely() {
        let index = KeyedIndex::new();
        assert_eq!(index.find(42, 42, |_| true), None);
        assert_eq!(index.touch(42), 0);
        assert!(index.is_empty());
    }

    /// Keys with the same 32-bit tag are told apart by `eq`, whatever order they came in.
    #[test]
    fn tagged_entries_with_one_tag_are_told_apart_by_the_arena() {
        let arena: Vec<u64> = (0..50).map(|n| n * 1_000).collect();
        let mut index = TaggedIndex::new();
        let hash = |_: u64| 0xABCD_0000_0000_1234_u64; // every key collides
        for (at, &key) in arena.iter().enumerate() {
            index.insert_unique(hash(key), tag(hash(key)), at as u32, |_, at| {
                hash(arena[at as usize])
            });
        }
        for (at, &key) in arena.iter().enumerate() {
            let found = index.find(hash(key), tag(hash(key)), |at| arena[at as usize] == key);
            assert_eq!(found, Some(at as u32));
        }
        assert_eq!(index.find(hash(7), tag(hash(7)), |at| arena[at as usize] == 7), None);
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn the_last_u32_is_refused() {
        KeyedIndex::new().insert_unique(1, 1, u32::MAX, |key, _| key);
    }

    proptest! {
        /// Inserts, reserves and lookups agree with a `HashMap` at every step, across growths,
        /// with keys drawn from a small range so that neighbours cluster.
        #[test]
        fn agrees_with_a_hash_map(
            steps in proptest::collection::vec((0u8..4, 0u64..3_000), 1..2_000),
        ) {
            let mut index = KeyedIndex::new();
            let mut map = HashMap::new();
            let rehash = |key: u64, _| spread(key);
            for (op, key) in steps {
                match op {
                    0 | 1 if !map.contains_key(&key) => {
                        let at = map.len() as u32;
                        index.insert_unique(spread(key), key, at, rehash);
                        map.insert(key, at);
                    }
                    2 => index.reserve(key as usize % 100, rehash),
                    _ => {}
                }
                prop_assert_eq!(index.find(spread(key), key, |_| true), map.get(&key).copied());
                prop_assert!(index.len() <= index.capacity());
                prop_assert_eq!(index.len(), map.len());
            }
            for (&key, &at) in &map {
                prop_assert_eq!(index.find(spread(key), key, |_| true), Some(at));
            }
        }
    }
}
