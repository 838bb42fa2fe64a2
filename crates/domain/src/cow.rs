//! `CowVec`: a growable array whose copy costs one pointer per chunk, not one per element.
//!
//! The engine's large tables (trades, report ids, positions) are arenas indexed by a dense
//! integer key. A snapshot or a state hash needs a frozen copy of them while the shard goes on
//! changing the originals; copying a million-entry arena stalls the shard for a tenth of a
//! second. `CowVec` stores its elements in fixed-size chunks; `share` puts them behind
//! reference counts, so the copy it returns shares every chunk, and the first write to a shared
//! chunk copies that chunk alone (about 8 KiB) before changing it, or takes it back whole if
//! the copy is gone: copy-on-write at the granularity of a page group, as `fork` gives Redis's
//! background save, but per tenant and without `unsafe`. Between copies the chunks are plain
//! owned arrays, and a write costs what a write to a `Vec` costs.
//!
//! Growth never moves existing elements (a new chunk is added), so pushing never stalls on a
//! reallocation of the whole arena either. Indexing is two loads: the chunk table is small
//! (a few words per chunk) and stays in cache.
//!
//! Serialized exactly like a `Vec<T>` (a length, then the elements), so swapping one for the
//! other changes no snapshot byte.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Index, IndexMut};
use std::sync::Arc;

use crate::stock;

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes a chunk aims at: small enough that copying one on a write is a few microseconds,
/// large enough that the chunk table of a million entries is a few thousand pointers.
const CHUNK_BYTES: usize = 8 << 10;

/// log2 of the elements per chunk for elements of `size` bytes: the largest power of two that
/// keeps a chunk within `CHUNK_BYTES`, and at least 16 elements.
const fn chunk_shift(size: usize) -> u32 {
    let per_chunk = match CHUNK_BYTES.checked_div(size) {
        Some(per_chunk) => per_chunk,
        None => CHUNK_BYTES, // zero-sized elements
    };
    let shift = if per_chunk <= 1 { 0 } else { usize::BITS - 1 - per_chunk.leading_zeros() };
    if shift < 4 {
        4
    } else {
        shift
    }
}

/// log2 of the chunks in a group (see `CowVec`). Small under test, so that the properties
/// cross group boundaries.
const GROUP_SHIFT: u32 = if cfg!(test) { 1 } else { 6 };
const GROUP: usize = 1 << GROUP_SHIFT;

/// A vector of `T` in chunks, the chunks in groups: `share` is O(groups + chunks written since
/// the last share), and writes copy a shared chunk (and its group's table) first.
///
/// A chunk is owned outright until a copy shares it, so the shard's writes cost no atomic
/// check and read no reference count: `Arc::get_mut` on every write was 10% of the engine's
/// time (a locked compare-and-swap on a header line apart from the data, often a cache miss).
/// [`CowVec::share`] turns the owned chunks into shared ones for a copy; the first write to a
/// shared chunk takes it back (without copying, if the copy is gone by then).
///
/// Groups of 64 chunks do the same one level up. A copy shares whole groups, so taking one
/// touches one reference count per group, plus one per chunk written since the last copy
/// (those become shared): a group nobody wrote to since is handed over as it is. With one
/// level, every chunk's reference count was touched by every image, each a cache miss: 8.8 ms
/// at 3.6M trades, a stall of the shard, when corrections follow their trades and only the
/// newest chunks change. The first write to a shared group copies its table (64 handles).
///
/// `OWNED = false` keeps every chunk and group shared, so that `clone` (`&self`) stays
/// O(groups): for a `CowVec` nested inside elements that are cloned when their own chunk is
/// copied (a large position's bookings).
pub struct CowVec<T, const OWNED: bool = true> {
    groups: Vec<Group<T>>,
    len: usize,
}

/// A chunk or a group: owned outright, or behind a reference count once a copy may share it.
#[derive(Debug)]
enum Slot<X> {
    Owned(X),
    Shared(Arc<X>),
}

/// Elements.
type Chunk<T> = Slot<Vec<T>>;
/// Chunks.
type Group<T> = Slot<Vec<Chunk<T>>>;

impl<X> Slot<X> {
    #[inline]
    fn get(&self) -> &X {
        match self {
            Slot::Owned(value) => value,
            Slot::Shared(value) => value,
        }
    }

    /// Another handle on a shared slot (what a copy holds).
    fn share(&self) -> Slot<X> {
        match self {
            Slot::Shared(shared) => Slot::Shared(Arc::clone(shared)),
            Slot::Owned(_) => unreachable!("invariant: only shared slots are handed to a copy"),
        }
    }

    /// Puts an owned slot behind a reference count, so that `share` may hand it out.
    fn make_shared(&mut self)
    where
        X: Default,
    {
        if let Slot::Owned(owned) = self {
            *self = Slot::Shared(Arc::new(std::mem::take(owned)));
        }
    }

    /// The slot for writing: as it is if owned; if shared, first copied (`copy`) while another
    /// handle holds it, and then owned again when `own` (else kept shared, and unique).
    #[inline]
    fn make_mut(&mut self, own: bool, copy: impl FnOnce(&X) -> X) -> &mut X
    where
        X: Default,
    {
        if let Slot::Shared(shared) = self {
            if Arc::get_mut(shared).is_none() {
                *shared = Arc::new(copy(shared));
            }
            if own {
                let owned = match Arc::get_mut(shared) {
                    Some(unique) => std::mem::take(unique),
                    None => unreachable!("invariant: a slot just copied has no other owner"),
                };
                *self = Slot::Owned(owned);
            }
        }
        match self {
            Slot::Owned(owned) => owned,
            Slot::Shared(shared) => match Arc::get_mut(shared) {
                Some(unique) => unique,
                None => unreachable!("invariant: a slot just copied has no other owner"),
            },
        }
    }
}

impl<T, const OWNED: bool> CowVec<T, OWNED> {
    const SHIFT: u32 = chunk_shift(std::mem::size_of::<T>());
    const CHUNK: usize = 1 << Self::SHIFT;
    const MASK: usize = Self::CHUNK - 1;

    pub const fn new() -> Self {
        Self { groups: Vec::new(), len: 0 }
    }

    /// Elements per chunk for this `T`.
    pub const fn chunk_len() -> usize {
        Self::CHUNK
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn chunk(&self, at: usize) -> &Chunk<T> {
        &self.groups[at >> GROUP_SHIFT].get()[at & (GROUP - 1)]
    }

    #[inline]
    pub fn get(&self, index: usize) -> Option<&T> {
        if index < self.len {
            Some(&self.chunk(index >> Self::SHIFT).get()[index & Self::MASK])
        } else {
            None
        }
    }

    /// Loads the table entry of the chunk that holds `index` and returns a value that depends
    /// on it (0 past the end): for a probe that fetches the entries of many lookups before any
    /// of them reads its element, so that the two misses of a lookup (chunk entry, element)
    /// each overlap with the other lookups' instead of following one another.
    #[inline]
    pub fn touch_chunk(&self, index: usize) -> usize {
        if index < self.len {
            self.chunk(index >> Self::SHIFT).get().len()
        } else {
            0
        }
    }

    /// Makes room in the group table for `additional` more elements. Chunks themselves are
    /// allocated as they fill: growth never copies elements, so there is nothing else to
    /// reserve.
    pub fn reserve(&mut self, additional: usize) {
        let groups = (self.len + additional).div_ceil(Self::CHUNK).div_ceil(GROUP);
        self.groups.reserve(groups.saturating_sub(self.groups.len()));
    }

    pub fn last(&self) -> Option<&T> {
        self.len.checked_sub(1).and_then(|last| self.get(last))
    }

    /// The elements in order.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            groups: self.groups.iter(),
            chunks: [].iter(),
            current: [].iter(),
            remaining: self.len,
        }
    }

    /// The elements from `start` on (none if `start` is past the end), without walking the
    /// ones before it.
    pub fn iter_from(&self, start: usize) -> Iter<'_, T> {
        if start >= self.len {
            return Iter { groups: [].iter(), chunks: [].iter(), current: [].iter(), remaining: 0 };
        }
        let at = start >> Self::SHIFT;
        let group = at >> GROUP_SHIFT;
        let chunks = self.groups[group].get();
        Iter {
            groups: self.groups[group + 1..].iter(),
            chunks: chunks[(at & (GROUP - 1)) + 1..].iter(),
            current: chunks[at & (GROUP - 1)].get()[start & Self::MASK..].iter(),
            remaining: self.len - start,
        }
    }

    /// The elements in order, a chunk at a time.
    pub fn chunks(&self) -> impl Iterator<Item = &[T]> {
        self.groups.iter().flat_map(|group| group.get().iter().map(|chunk| chunk.get().as_slice()))
    }

    /// The elements in order, a chunk at a time, consuming the vector: its hold on each group
    /// of chunks is let go as soon as `f` has seen the group's last chunk. For a copy that one
    /// pass reads through (a state pass over an engine image): the original's first write to
    /// a chunk the pass is done with then copies nothing, where a copy held to the end of the
    /// pass made every chunk the original wrote during it a copy.
    pub fn drain_chunks(self, mut f: impl FnMut(&[T])) {
        for group in self.groups {
            for chunk in group.get() {
                f(chunk.get());
            }
        }
    }

    /// How many chunks are shared with a copy (and would be copied by a write): those of a
    /// group a copy holds, and those a copy holds in a group of their own.
    pub fn shared_chunks(&self) -> usize {
        let held = |chunk: &Chunk<T>| matches!(chunk, Slot::Shared(shared) if Arc::strong_count(shared) > 1);
        self.groups
            .iter()
            .map(|group| match group {
                Slot::Shared(shared) if Arc::strong_count(shared) > 1 => shared.len(),
                group => group.get().iter().filter(|chunk| held(chunk)).count(),
            })
            .sum()
    }

    /// A copy sharing every chunk: O(groups), plus one small allocation per chunk and per
    /// group written since the last copy. The chunks and groups stay shared until each is next
    /// written.
    pub fn share(&mut self) -> Self {
        for group in &mut self.groups {
            if let Slot::Owned(chunks) = group {
                chunks.iter_mut().for_each(Slot::make_shared);
                group.make_shared();
            }
        }
        Self { groups: self.groups.iter().map(Slot::share).collect(), len: self.len }
    }
}

impl<T: Clone + Send + 'static, const OWNED: bool> CowVec<T, OWNED> {
    /// A copy of `chunk` with the full chunk capacity, so that pushing into a copied last
    /// chunk does not reallocate it. The buffer comes from the thread's stock, if any
    /// (`crate::stock`).
    fn copy_of(chunk: &[T]) -> Vec<T> {
        let mut copy = stock::chunk_if_stocked(Self::CHUNK);
        copy.extend_from_slice(chunk);
        copy
    }

    pub fn push(&mut self, value: T) {
        if self.len & Self::MASK == 0 {
            let mut chunk = stock::chunk(Self::CHUNK, &value);
            chunk.push(value);
            let chunk = if OWNED { Slot::Owned(chunk) } else { Slot::Shared(Arc::new(chunk)) };
            let chunks = self.len >> Self::SHIFT;
            if chunks & (GROUP - 1) == 0 {
                let mut group = Vec::with_capacity(GROUP);
                group.push(chunk);
                self.groups.push(if OWNED {
                    Slot::Owned(group)
                } else {
                    Slot::Shared(Arc::new(group))
                });
            } else {
                let last = self.groups.len() - 1;
                self.group_mut(last).push(chunk);
            }
        } else {
            let last = (self.len - 1) >> Self::SHIFT;
            self.chunk_mut(last).push(value);
        }
        self.len += 1;
    }

    /// Removes and returns the last element (copying its chunk first if it is shared).
    pub fn pop(&mut self) -> Option<T> {
        let last = self.len.checked_sub(1)? >> Self::SHIFT;
        let value = self.chunk_mut(last).pop();
        if self.chunk(last).get().is_empty() {
            let group = self.groups.len() - 1;
            self.group_mut(group).pop();
            if self.groups[group].get().is_empty() {
                self.groups.pop();
            }
        }
        self.len -= 1;
        value
    }

    #[inline]
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        if index < self.len {
            Some(&mut self.chunk_mut(index >> Self::SHIFT)[index & Self::MASK])
        } else {
            None
        }
    }

    /// Group `at`'s table, for writing: as it is if owned; if shared, copied first while a
    /// copy still holds it (its chunks stay shared), and then owned again (`OWNED`).
    #[inline]
    fn group_mut(&mut self, at: usize) -> &mut Vec<Chunk<T>> {
        self.groups[at].make_mut(OWNED, |chunks| chunks.iter().map(Slot::share).collect())
    }

    /// Chunk `at`, for writing: an owned chunk as it is; a shared one copied first if a copy
    /// still holds it, and then owned again (`OWNED`).
    #[inline]
    fn chunk_mut(&mut self, at: usize) -> &mut Vec<T> {
        let chunk = &mut self.group_mut(at >> GROUP_SHIFT)[at & (GROUP - 1)];
        chunk.make_mut(OWNED, |chunk| Self::copy_of(chunk))
    }
}

impl<T, const OWNED: bool> Default for CowVec<T, OWNED> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone, const OWNED: bool> Clone for CowVec<T, OWNED> {
    /// Shares the shared groups and chunks and copies the owned ones: O(len) unless every
    /// group is shared (`OWNED = false`, or just after `share`). Use [`CowVec::share`] for an
    /// image.
    fn clone(&self) -> Self {
        let chunk = |chunk: &Chunk<T>| match chunk {
            Slot::Shared(shared) => Slot::Shared(Arc::clone(shared)),
            Slot::Owned(owned) => {
                // (Not from the stock: a whole clone is not the shard's hot path.)
                let mut copy = Vec::with_capacity(Self::CHUNK);
                copy.extend_from_slice(owned);
                Slot::Owned(copy)
            }
        };
        let groups = self
            .groups
            .iter()
            .map(|group| match group {
                Slot::Shared(shared) => Slot::Shared(Arc::clone(shared)),
                Slot::Owned(chunks) => {
                    let mut copy = Vec::with_capacity(GROUP);
                    copy.extend(chunks.iter().map(chunk));
                    Slot::Owned(copy)
                }
            })
            .collect();
        Self { groups, len: self.len }
    }
}

impl<T, const OWNED: bool> Index<usize> for CowVec<T, OWNED> {
    type Output = T;

    #[inline]
    fn index(&self, index: usize) -> &T {
        assert!(index < self.len, "index {index} out of range for length {}", self.len);
        &self.chunk(index >> Self::SHIFT).get()[index & Self::MASK]
    }
}

impl<T: Clone + Send + 'static, const OWNED: bool> IndexMut<usize> for CowVec<T, OWNED> {
    #[inline]
    fn index_mut(&mut self, index: usize) -> &mut T {
        assert!(index < self.len, "index {index} out of range for length {}", self.len);
        &mut self.chunk_mut(index >> Self::SHIFT)[index & Self::MASK]
    }
}

impl<T: fmt::Debug, const OWNED: bool> fmt::Debug for CowVec<T, OWNED> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: PartialEq, const OWNED: bool> PartialEq for CowVec<T, OWNED> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<T: Eq, const OWNED: bool> Eq for CowVec<T, OWNED> {}

impl<T: Clone + Send + 'static, const OWNED: bool> FromIterator<T> for CowVec<T, OWNED> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut vec = CowVec::new();
        iter.into_iter().for_each(|value| vec.push(value));
        vec
    }
}

impl<T: Clone + Send + 'static, const OWNED: bool> Extend<T> for CowVec<T, OWNED> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        iter.into_iter().for_each(|value| self.push(value));
    }
}

impl<'a, T, const OWNED: bool> IntoIterator for &'a CowVec<T, OWNED> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

/// Iterator over a `CowVec`'s elements in order.
#[derive(Debug)]
pub struct Iter<'a, T> {
    groups: std::slice::Iter<'a, Group<T>>,
    chunks: std::slice::Iter<'a, Chunk<T>>,
    current: std::slice::Iter<'a, T>,
    remaining: usize,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    #[inline]
    fn next(&mut self) -> Option<&'a T> {
        loop {
            if let Some(value) = self.current.next() {
                self.remaining -= 1;
                return Some(value);
            }
            match self.chunks.next() {
                Some(chunk) => self.current = chunk.get().iter(),
                None => self.chunks = self.groups.next()?.get().iter(),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}

impl<T> Clone for Iter<'_, T> {
    fn clone(&self) -> Self {
        Iter {
            groups: self.groups.clone(),
            chunks: self.chunks.clone(),
            current: self.current.clone(),
            remaining: self.remaining,
        }
    }
}

impl<T: Serialize, const OWNED: bool> Serialize for CowVec<T, OWNED> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for value in self {
            seq.serialize_element(value)?;
        }
        seq.end()
    }
}

impl<'de, T: Deserialize<'de> + Clone + Send + 'static, const OWNED: bool> Deserialize<'de>
    for CowVec<T, OWNED>
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SeqVisitor<T, const OWNED: bool>(PhantomData<T>);

        impl<'de, T: Deserialize<'de> + Clone + Send + 'static, const OWNED: bool> Visitor<'de>
            for SeqVisitor<T, OWNED>
        {
            type Value = CowVec<T, OWNED>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }

            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<CowVec<T, OWNED>, A::Error> {
                let mut vec = CowVec::new();
                // The hint comes from the input: cap what it may reserve.
                vec.reserve(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(value) = seq.next_element()? {
                    vec.push(value);
                }
                Ok(vec)
            }
        }

        deserializer.deserialize_seq(SeqVisitor::<T, OWNED>(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_chunks<T, const OWNED: bool>(cow: &CowVec<T, OWNED>) -> impl Iterator<Item = &Chunk<T>> {
        cow.groups.iter().flat_map(|group| group.get())
    }

    thread_local! {
        static CLONES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// An element that counts its clones: a chunk copy clones every element in it.
    #[derive(Debug, PartialEq)]
    struct Counted(u64);

    impl Clone for Counted {
        fn clone(&self) -> Self {
            CLONES.with(|clones| clones.set(clones.get() + 1));
            Counted(self.0)
        }
    }

    /// A drained copy lets each group go once `f` has seen it: a write to a group it is done
    /// with copies nothing, a write to one it has not reached copies that chunk, and it sees
    /// the elements as they were when it was taken.
    #[test]
    fn drained_copies_let_go_of_what_they_have_passed() {
        let chunk = CowVec::<Counted>::chunk_len();
        let per_group = chunk * GROUP;
        let len = per_group * 4 + chunk / 2;
        let mut live: CowVec<Counted> = (0..len as u64).map(Counted).collect();
        let copy = live.share();
        CLONES.with(|clones| clones.set(0));
        let (mut seen, mut copied_behind, mut copied_ahead) = (Vec::new(), 0, 0);
        copy.drain_chunks(|elements| {
            let start = seen.len();
            seen.extend(elements.iter().map(|element| element.0));
            // The first element of the group before this chunk's: let go already.
            if let Some(behind) = (start / per_group).checked_sub(1) {
                let before = CLONES.with(std::cell::Cell::get);
                live[behind * per_group].0 += 1_000_000;
                copied_behind += CLONES.with(std::cell::Cell::get) - before;
            }
            // The last element: in a group not reached yet, until the last group.
            let before = CLONES.with(std::cell::Cell::get);
            live[len - 1].0 += 1;
            copied_ahead += CLONES.with(std::cell::Cell::get) - before;
        });
        assert_eq!(seen, (0..len as u64).collect::<Vec<_>>(), "the state it was taken at");
        assert_eq!(copied_behind, 0, "no copy of what the drain had let go");
        assert_eq!(copied_ahead, chunk / 2, "one copy of the last chunk, while still held");
    }

    /// A probe's touch of a chunk entry reads the chunk holding the index, shared or owned,
    /// and nothing past the end.
    #[test]
    fn touch_chunk_reads_the_chunk_holding_the_index() {
        let chunk = CowVec::<u64>::chunk_len();
        let mut cow: CowVec<u64> = (0..(chunk * 5 / 2) as u64).collect();
        let image = cow.share();
        cow[0] = 7; // the first chunk owned again, the others still shared
        let cases = [(0, chunk), (chunk - 1, chunk), (chunk, chunk), (2 * chunk, chunk / 2)];
        for (index, expected) in cases {
            assert_eq!(cow.touch_chunk(index), expected, "index {index}");
        }
        assert_eq!(cow.touch_chunk(chunk * 5 / 2), 0, "past the end");
        drop(image);
    }

    #[test]
    fn chunk_sizes_keep_chunks_near_8_kib() {
        let cases: [(usize, usize); 6] =
            [(0, 8192), (1, 8192), (8, 1024), (64, 128), (80, 64), (100_000, 16)];
        for (size, elements) in cases {
            assert_eq!(1usize << chunk_shift(size), elements, "element size {size}");
        }
    }

    #[test]
    fn behaves_like_a_vec_across_chunk_boundaries() {
        let mut cow = CowVec::<u64>::new();
        let mut vec = Vec::new();
        let chunk = CowVec::<u64>::chunk_len();
        for n in 0..(3 * chunk as u64 + 5) {
            cow.push(n * 3);
            vec.push(n * 3);
        }
        for at in [0, 1, chunk - 1, chunk, 2 * chunk + 1, vec.len() - 1] {
            cow[at] += 1;
            vec[at] += 1;
        }
        assert_eq!(cow.len(), vec.len());
        assert!(cow.iter().eq(vec.iter()));
        assert_eq!(cow.iter().len(), vec.len());
        for start in [0, 1, chunk - 1, chunk, chunk + 1, vec.len() - 1, vec.len(), vec.len() + 9] {
            assert!(cow.iter_from(start).eq(vec.iter().skip(start)), "from {start}");
            assert_eq!(cow.iter_from(start).len(), vec.len().saturating_sub(start));
        }
        assert_eq!(cow.get(vec.len()), None);
        assert_eq!(cow.get(chunk), Some(&vec[chunk]));
        while let Some(last) = vec.pop() {
            assert_eq!(cow.last(), Some(&last));
            assert_eq!(cow.pop(), Some(last));
            assert_eq!(cow.len(), vec.len());
        }
        assert_eq!((cow.pop(), cow.last(), cow.iter().count()), (None, None, 0));
        cow.push(5);
        assert_eq!(cow[0], 5);
    }

    #[test]
    fn a_copy_is_frozen_while_the_original_changes() {
        let chunk = CowVec::<u64>::chunk_len();
        let mut original: CowVec<u64> = (0..(2 * chunk as u64 + 10)).collect();
        let frozen = original.share();
        assert_eq!(original.shared_chunks(), 3);
        original[5] = 1_000;
        original.push(7);
        assert_eq!(original.shared_chunks(), 1, "the first and last chunks were copied");
        assert_eq!(frozen[5], 5);
        assert_eq!(frozen.len(), 2 * chunk + 10);
        assert_eq!(original[5], 1_000);
        assert_eq!(original[2 * chunk + 10], 7);
        drop(frozen);
        assert_eq!(original.shared_chunks(), 0);
    }

    #[test]
    fn chunks_are_owned_until_shared_and_taken_back_after() {
        let chunk = CowVec::<u64>::chunk_len();
        let mut owned: CowVec<u64> = (0..(2 * chunk as u64)).collect();
        let mut shared: CowVec<u64, false> = owned.iter().copied().collect();
        assert!(all_chunks(&owned).all(|c| matches!(c, Slot::Owned(_))));
        assert!(all_chunks(&shared).all(|c| matches!(c, Slot::Shared(_))));
        // A clone copies owned chunks (nothing shared) and shares shared ones.
        let cloned = owned.clone();
        assert_eq!((owned.shared_chunks(), cloned.shared_chunks()), (0, 0));
        let shared_clone = shared.clone();
        assert_eq!(shared.shared_chunks(), 2);
        drop(shared_clone);
        // A share hands out every chunk; a write takes its chunk back, copying it only while
        // the copy lives.
        let image = owned.share();
        assert_eq!(owned.shared_chunks(), 2);
        owned[0] = 7;
        assert!(matches!(*owned.chunk(0), Slot::Owned(_)));
        assert_eq!((owned.shared_chunks(), image[0]), (1, 0));
        drop(image);
        let address = owned.chunk(1).get().as_ptr();
        owned[chunk] = 9;
        assert!(matches!(*owned.chunk(1), Slot::Owned(_)));
        assert_eq!(owned.chunk(1).get().as_ptr(), address, "taken back, not copied");
        // The nested mode keeps a written chunk shared, so its clone stays cheap.
        shared[0] = 7;
        assert!(all_chunks(&shared).all(|c| matches!(c, Slot::Shared(_))));
        assert_eq!((owned[0], shared[0], cloned[0]), (7, 7, 0));
    }

    /// A second copy hands over the groups nobody wrote to since the first as they are (the
    /// same table, no chunk's count touched); the written group is a new table.
    #[test]
    fn a_copy_shares_untouched_groups_whole() {
        let chunk = CowVec::<u64>::chunk_len();
        let mut cow: CowVec<u64> = (0..(4 * GROUP * chunk) as u64).collect();
        let first = cow.share();
        cow[0] = 1;
        let second = cow.share();
        let group = |copy: &CowVec<u64>, at: usize| match &copy.groups[at] {
            Slot::Shared(shared) => Arc::clone(shared),
            Slot::Owned(_) => panic!("a copy's groups are shared"),
        };
        assert!(!Arc::ptr_eq(&group(&first, 0), &group(&second, 0)));
        for at in 1..4 {
            assert!(Arc::ptr_eq(&group(&first, at), &group(&second, at)), "group {at}");
            let untouched = |chunk: &Chunk<u64>| matches!(chunk, Slot::Shared(shared) if Arc::strong_count(shared) == 1);
            assert!(group(&second, at).iter().all(untouched), "group {at}");
        }
        assert_eq!((first[0], second[0], cow[0]), (0, 1, 1));
    }

    #[test]
    fn serializes_exactly_like_a_vec() {
        let vec: Vec<u32> = (0..20_000).map(|n| n * 7).collect();
        let cow: CowVec<u32> = vec.iter().copied().collect();
        let bytes = bincode::serialize(&vec).unwrap();
        assert_eq!(bincode::serialize(&cow).unwrap(), bytes);
        let back: CowVec<u32> = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, cow);
        assert_eq!(serde_json::to_string(&cow).unwrap(), serde_json::to_string(&vec).unwrap());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(u16),
        Set(usize, u16),
        Pop,
        Share,
        Clone,
        DropCopy,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            6 => any::<u16>().prop_map(Op::Push),
            3 => (any::<usize>(), any::<u16>()).prop_map(|(at, value)| Op::Set(at, value)),
            1 => Just(Op::Pop),
            1 => Just(Op::Share),
            1 => Just(Op::Clone),
            1 => Just(Op::DropCopy),
        ]
    }

    /// Runs `ops` on a `CowVec` and a `Vec` model side by side; see the property below.
    fn against_a_vec_model<const OWNED: bool>(
        ops: &[Op],
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let prefill = 2 * CowVec::<u16, OWNED>::chunk_len() + 100;
        let mut model: Vec<u16> = (0..prefill).map(|n| n as u16).collect();
        let mut cow: CowVec<u16, OWNED> = model.iter().copied().collect();
        let mut copies: Vec<(CowVec<u16, OWNED>, Vec<u16>)> = Vec::new();
        for op in ops {
            match *op {
                Op::Push(value) => {
                    model.push(value);
                    cow.push(value);
                }
                Op::Set(at, value) if !model.is_empty() => {
                    let at = at % model.len();
                    model[at] = value;
                    cow[at] = value;
                }
                Op::Set(..) => {}
                Op::Pop => proptest::prop_assert_eq!(cow.pop(), model.pop()),
                Op::Share => copies.push((cow.share(), model.clone())),
                Op::Clone => copies.push((cow.clone(), model.clone())),
                Op::DropCopy => drop(copies.pop()),
            }
            proptest::prop_assert_eq!(cow.len(), model.len());
            proptest::prop_assert_eq!(cow.last(), model.last());
        }
        proptest::prop_assert!(cow.iter().eq(model.iter()));
        for (copy, then) in &copies {
            proptest::prop_assert!(copy.iter().eq(then.iter()));
        }
        Ok(())
    }

    proptest::proptest! {
        /// Against a `Vec` model: any interleaving of pushes, writes, pops, copies (shared or
        /// cloned) and dropped copies leaves the vector equal to the model and every copy
        /// equal to the model as it was when the copy was taken (a write never shows through
        /// a shared chunk, and a chunk taken back from a dropped copy is the vector's own), in
        /// both chunk modes. Small elements (`u16`: 4,096 to a chunk) would rarely cross a
        /// chunk, so values are spread over a vector pre-filled past two chunks.
        #[test]
        fn copies_stay_frozen_against_a_vec_model(ops in proptest::collection::vec(op(), 1..200)) {
            against_a_vec_model::<true>(&ops)?;
            against_a_vec_model::<false>(&ops)?;
        }
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn indexing_past_the_end_panics_like_a_vec() {
        let cow: CowVec<u8> = (0..3).collect();
        let _ = cow[3];
    }
}
