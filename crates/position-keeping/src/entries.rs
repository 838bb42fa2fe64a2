//! A position's bookings: inline while there is one, a plain heap array while the position is
//! small, and copy-on-write chunks (`CowVec`) once it holds a chunk's worth (256 bookings,
//! 8 KiB).
//!
//! Why: a snapshot or a state hash works on an image of the engine that shares its storage
//! (`Engine::image`), and the shard copies what it writes while the image lives. A position
//! is copied whole when its slot is first written; a house account that books a hundred
//! thousand fills in a contract would cost a 3 MiB copy on its next trade, and a tenant of a
//! few such positions a burst of hundreds of milliseconds right after every image. Chunked,
//! a large position costs one pointer per chunk to copy, and its first write after an image
//! copies only the chunk it touches (the tail for a new booking, the FIFO head for a close).
//! Small positions, the vast majority, keep the compact inline form.

use std::ops::{Index, IndexMut};

use keel_domain::CowVec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;

/// Bookings in booking order (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) enum Entries<T> {
    Small(SmallVec<[T; 1]>),
    Large(CowVec<T, false>),
}

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Entries::Small(SmallVec::new())
    }
}

impl<T: Clone + Send + 'static> Entries<T> {
    /// Bookings from which a position keeps them in chunks.
    pub(crate) const LARGE_FROM: usize = CowVec::<T>::chunk_len();

    pub(crate) fn with_capacity(capacity: usize) -> Self {
        if capacity >= Self::LARGE_FROM {
            let mut large = CowVec::new();
            large.reserve(capacity);
            Entries::Large(large)
        } else {
            Entries::Small(SmallVec::with_capacity(capacity))
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self {
            Entries::Small(small) => small.len(),
            Entries::Large(large) => large.len(),
        }
    }

    #[inline]
    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        match self {
            Entries::Small(small) => small.get(index),
            Entries::Large(large) => large.get(index),
        }
    }

    #[inline]
    pub(crate) fn last(&self) -> Option<&T> {
        match self {
            Entries::Small(small) => small.last(),
            Entries::Large(large) => large.last(),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, value: T) {
        match self {
            Entries::Small(small) if small.len() + 1 >= Self::LARGE_FROM => {
                let mut large: CowVec<T, false> = small.drain(..).collect();
                large.push(value);
                *self = Entries::Large(large);
            }
            Entries::Small(small) => small.push(value),
            Entries::Large(large) => large.push(value),
        }
    }

    /// Removes the last booking. A large position stays chunked (only `with_capacity` and
    /// growth choose the form).
    pub(crate) fn pop(&mut self) -> Option<T> {
        match self {
            Entries::Small(small) => small.pop(),
            Entries::Large(large) => large.pop(),
        }
    }

    /// The bookings from `start` on.
    pub(crate) fn iter_from(&self, start: usize) -> impl Iterator<Item = &T> + '_ {
        let (small, large) = match self {
            Entries::Small(small) => (small.get(start..).unwrap_or(&[]).iter(), None),
            Entries::Large(large) => ([].iter(), Some(large.iter_from(start))),
        };
        small.chain(large.into_iter().flatten())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.iter_from(0)
    }

    /// The entries in order, as runs of contiguous memory.
    pub(crate) fn runs(&self) -> impl Iterator<Item = &[T]> + '_ {
        let (small, large) = match self {
            Entries::Small(small) => (Some(small.as_slice()), None),
            Entries::Large(large) => (None, Some(large.chunks())),
        };
        small.into_iter().chain(large.into_iter().flatten())
    }
}

impl<T> Index<usize> for Entries<T> {
    type Output = T;

    #[inline]
    fn index(&self, index: usize) -> &T {
        match self {
            Entries::Small(small) => &small[index],
            Entries::Large(large) => &large[index],
        }
    }
}

impl<T: Clone + Send + 'static> IndexMut<usize> for Entries<T> {
    #[inline]
    fn index_mut(&mut self, index: usize) -> &mut T {
        match self {
            Entries::Small(small) => &mut small[index],
            Entries::Large(large) => &mut large[index],
        }
    }
}

impl<T: Clone + Send + 'static + PartialEq> PartialEq for Entries<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<T: Clone + Send + 'static + Eq> Eq for Entries<T> {}

/// Serialized as a sequence, like the `SmallVec` it replaced.
impl<T: Clone + Send + 'static + Serialize> Serialize for Entries<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Entries::Small(small) => small.serialize(serializer),
            Entries::Large(large) => large.serialize(serializer),
        }
    }
}

impl<'de, T: Clone + Send + 'static + Deserialize<'de>> Deserialize<'de> for Entries<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let small = SmallVec::<[T; 1]>::deserialize(deserializer)?;
        Ok(if small.len() >= Self::LARGE_FROM {
            Entries::Large(small.into_iter().collect())
        } else {
            Entries::Small(small)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_becomes_large_at_a_chunk_and_behaves_the_same() {
        let mut entries = Entries::<u64>::default();
        let mut vec = Vec::new();
        let large_from = Entries::<u64>::LARGE_FROM;
        for n in 0..(3 * large_from as u64) {
            entries.push(n);
            vec.push(n);
            let large = matches!(entries, Entries::Large(_));
            assert_eq!(large, vec.len() >= large_from, "at {}", vec.len());
        }
        entries[5] = 99;
        vec[5] = 99;
        for start in [0, 1, large_from, vec.len() - 1, vec.len(), vec.len() + 3] {
            assert!(entries.iter_from(start).eq(vec.iter().skip(start)), "from {start}");
        }
        assert_eq!(
            (entries.len(), entries.last(), entries.get(vec.len())),
            (vec.len(), vec.last(), None)
        );
        assert_eq!(entries.pop(), vec.pop());
        let bytes = bincode::serialize(&entries).expect("encode");
        assert_eq!(bytes, bincode::serialize(&vec).expect("encode"), "serialized like a Vec");
        let back: Entries<u64> = bincode::deserialize(&bytes).expect("decode");
        assert!(matches!(back, Entries::Large(_)));
        assert_eq!(back, entries);
        let small: Entries<u64> =
            bincode::deserialize(&bincode::serialize(&vec![1u64, 2]).expect("encode"))
                .expect("decode");
        assert!(matches!(small, Entries::Small(_)));
        assert!(matches!(Entries::<u64>::with_capacity(large_from), Entries::Large(_)));
    }

    /// A copy of a large position shares its chunks: writing one booking of the original
    /// leaves the copy as it was.
    #[test]
    fn a_copy_of_a_large_position_is_independent() {
        let mut original = Entries::<u64>::default();
        (0..5_000u64).for_each(|n| original.push(n));
        let copy = original.clone();
        original[10] = 1;
        original.push(7);
        assert_eq!((copy[10], copy.len()), (10, 5_000));
        assert_eq!((original[10], original.len()), (1, 5_001));
    }
}
