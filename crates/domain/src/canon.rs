//! The snapshot encoding's fast path: the same bytes bincode writes (fixed-width little-endian
//! integers), written by hand for the records that make up nearly all of a tenant's state.
//!
//! Why: a state pass (the state hash, a snapshot) encodes the whole state. Through serde and
//! bincode, every field is a chain of calls into the writer, and at a million trades the
//! encoding took 100 ms where hashing its 140 MB took 60 (`state_pass` in
//! `benches/engine_apply.rs`). A background pass that long holds its copy-on-write image
//! longer, so the shard copies more chunks, and it competes with the shard for the cache the
//! whole time. The records here are plain fields: each is a few stores.
//!
//! The bytes must stay exactly bincode's, because the state hash is their BLAKE3 and journals
//! already carry state hashes: the tests here compare every impl with bincode on arbitrary
//! values, and the engine's tests compare whole snapshots.
//!
//! bincode 1.3 with fixed-width integers writes: integers little-endian at their width; `bool`
//! as one byte; a sequence or a string as a `u64` length, then its items; an array or a tuple
//! as its items; `Option` as a tag byte (0 or 1), then the value; an enum as its variant index
//! (`u32`), then the variant's fields; a struct or a newtype as its fields in order.

use serde::Serialize;

use crate::cow::CowVec;
use crate::date::Date;
use crate::fixed::{Amount, Price, Quantity};
use crate::trade::{PositionEffect, Side};

/// A value whose canonical (bincode fixed-width) encoding is written by hand.
pub trait Canon {
    /// Appends the encoding to `out`.
    fn canon(&self, out: &mut Vec<u8>);
}

/// Where a snapshot is encoded: values with a hand-written encoding go through
/// [`Canon`], the rest (small tables) through serde with bincode's options. An I/O error is
/// kept and returned by whoever finishes the sink; writes after it do nothing.
pub trait CanonSink {
    /// Appends `value`'s encoding.
    fn put<T: Canon + ?Sized>(&mut self, value: &T);
    /// Appends `value`'s bincode encoding.
    fn serde<T: Serialize + ?Sized>(&mut self, value: &T);

    /// A sequence's length prefix.
    fn len_prefix(&mut self, len: usize) {
        self.put(&(len as u64));
    }

    /// A `CowVec`: its length, then its elements (the bytes of a `Vec` of them).
    fn arena<T: Canon + Clone, const OWNED: bool>(&mut self, arena: &CowVec<T, OWNED>) {
        self.len_prefix(arena.len());
        for chunk in arena.chunks() {
            self.put(chunk);
        }
    }

    /// As [`CanonSink::arena`], consuming the arena: each group of its chunks is let go once
    /// encoded (`CowVec::drain_chunks`).
    fn arena_drained<T: Canon + Clone, const OWNED: bool>(&mut self, arena: CowVec<T, OWNED>) {
        self.len_prefix(arena.len());
        arena.drain_chunks(|chunk| self.put(chunk));
    }
}

macro_rules! canon_le {
    ($($t:ty),*) => {$(
        impl Canon for $t {
            #[inline]
            fn canon(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

canon_le!(u8, u16, u32, u64, i32, i64, i128);

impl Canon for bool {
    #[inline]
    fn canon(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl<T: Canon> Canon for Option<T> {
    #[inline]
    fn canon(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                value.canon(out);
            }
        }
    }
}

/// An array is a tuple: its items, no length.
impl<T: Canon, const N: usize> Canon for [T; N] {
    #[inline]
    fn canon(&self, out: &mut Vec<u8>) {
        self.iter().for_each(|item| item.canon(out));
    }
}

/// A run of items, no length: what a sequence's items are after its prefix.
impl<T: Canon> Canon for [T] {
    #[inline]
    fn canon(&self, out: &mut Vec<u8>) {
        out.reserve(std::mem::size_of_val(self));
        self.iter().for_each(|item| item.canon(out));
    }
}

/// An enum variant's index, as bincode writes it.
#[inline]
pub fn variant(index: u32, out: &mut Vec<u8>) {
    index.canon(out);
}

/// A string or byte string: length, then bytes.
#[inline]
pub fn bytes(value: &[u8], out: &mut Vec<u8>) {
    (value.len() as u64).canon(out);
    out.extend_from_slice(value);
}

impl Canon for Side {
    #[inline]
    fn canon(&self, out: &mut Vec<u8>) {
        variant(
            match self {
                Side::Buy => 0,
                Side::Sell => 1,
            },
            out,
        );
    }
}

impl Canon for PositionEffect {
    #[inline]
    fn canon(&self, out: &mut Vec<u8>) {
        variant(
            match self {
                PositionEffect::Open => 0,
                PositionEffect::Close => 1,
            },
            out,
        );
    }
}

impl Canon for Date {
    #[inline]
    fn canon(&self, out: &mut Vec<u8>) {
        self.days().canon(out);
    }
}

impl Canon for Price {
    #[inline]
    fn canon(&self, out: &mut Vec<u8>) {
        self.nanos().canon(out);
    }
}

impl Canon for Quantity {
    #[inline]
    fn canon(&self, out: &mut Vec<u8>) {
        self.get().canon(out);
    }
}

impl Canon for Amount {
    #[inline]
    fn canon(&self, out: &mut Vec<u8>) {
        self.nanos().canon(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn same<T: Canon + Serialize>(value: &T) {
        let mut ours = Vec::new();
        value.canon(&mut ours);
        let theirs = bincode_bytes(value);
        assert_eq!(ours, theirs);
    }

    fn bincode_bytes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        use bincode::Options;
        bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .with_little_endian()
            .serialize(value)
            .unwrap()
    }

    #[test]
    fn fixed_values_encode_as_bincode_does() {
        same(&Side::Buy);
        same(&"L3-1024".parse::<crate::ReportId>().unwrap());
        same(&"ACME-01".parse::<crate::AccountId>().unwrap());
        same(&Side::Sell);
        same(&PositionEffect::Open);
        same(&PositionEffect::Close);
        same(&true);
        same(&false);
        same(&None::<u32>);
        same(&Some(7u16));
        same(&[1u64, u64::MAX]);
        same(&Date::parse("2026-11-27").unwrap());
        let mut seq = Vec::new();
        [3i32, -4].as_slice().canon(&mut seq);
        assert_eq!(seq, bincode_bytes(&(3i32, -4i32)), "a slice is its items, no length");
        let mut text = Vec::new();
        bytes(b"R-1", &mut text);
        assert_eq!(text, bincode_bytes("R-1"));
    }

    proptest! {
        #[test]
        fn integers_and_amounts_encode_as_bincode_does(a in any::<u64>(), b in any::<i64>(), c in any::<i32>(), d in any::<i128>(), e in any::<Option<u32>>()) {
            same(&a);
            same(&b);
            same(&c);
            same(&d);
            same(&e);
            same(&Price::from_nanos(b));
            same(&Quantity::new(b));
            same(&Amount::from_nanos(d));
        }
    }
}
